"""Replay buffers: the policies keep what they promise, and a restored buffer chooses as the original."""

from __future__ import annotations

import pytest
import torch

from lifelong.learn.replay import ReplayBuffer


def _stream(n: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.arange(start, start + n)
    return ids[:, None].float().repeat(1, 3), ids % 4


def test_restored_buffer_makes_the_same_future_choices() -> None:
    for policy in ("reservoir", "class_balanced"):
        original = ReplayBuffer(20, policy, seed=5)
        original.add(*_stream(30))
        original.sample(7)
        restored = ReplayBuffer.restore(original.tensors(), original.meta())
        for buf in (original, restored):
            buf.add(*_stream(50, start=30), task=1)
        assert all(torch.equal(a, b) for a, b in zip(original.contents(), restored.contents(), strict=True))
        for _ in range(3):
            xa, ya = original.sample(9)
            xb, yb = restored.sample(9)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert original.meta() == restored.meta()


def test_reservoir_keeps_every_sample_with_equal_probability() -> None:
    kept = torch.zeros(400)
    runs = 60
    for seed in range(runs):
        buf = ReplayBuffer(40, seed=seed)
        buf.add(*_stream(400))
        x, _, _ = buf.contents()
        kept[x[:, 0].long()] += 1
    rate = kept / runs  # each sample is kept with probability 40 / 400
    assert abs(rate[:200].mean() - 0.1) < 0.02 and abs(rate[200:].mean() - 0.1) < 0.02


def test_class_balanced_equalises_an_imbalanced_stream() -> None:
    buf = ReplayBuffer(60, "class_balanced", seed=0)
    y = torch.tensor([0] * 500 + [1] * 40 + [2] * 300)
    buf.add(torch.randn(len(y), 2), y)
    counts = torch.bincount(buf.contents()[1], minlength=3).tolist()
    assert counts == [20, 20, 20], counts
    assert buf.meta()["class_seen"] == {"0": 500, "1": 40, "2": 300}


def test_sampling_and_tasks() -> None:
    buf = ReplayBuffer(10, seed=0)
    buf.add(*_stream(6), task=3)
    x, y = buf.sample(6)
    assert sorted(x[:, 0].tolist()) == [0, 1, 2, 3, 4, 5]  # without replacement
    assert buf.sample(25)[0].shape == (25, 3)  # with replacement when asked for more
    assert buf.contents()[2].tolist() == [3] * 6
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3).sample(1)
    with pytest.raises(ValueError, match="policy"):
        ReplayBuffer(3, "fifo")
    with pytest.raises(ValueError, match="integer class labels"):
        ReplayBuffer(3, "class_balanced").add(torch.zeros(2, 1), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="do not fit"):
        buf.add(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
