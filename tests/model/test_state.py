"""LearnerState on disk: round trip, flat size, and refusal of corrupt or mismatched states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec
from lifelong.errors import StateError
from lifelong.learn.state import STATE_FILES, LearnerState, load_state, save_state, state_complete
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit

ARCH = ArchitectureSpec(type="cnn_classifier", in_channels=1, length=32, out_dim=3, channels=(4,), hidden=(8,))
TRAIN = TrainSpec(epochs=1, batch_size=16, seed=1)
STRATEGY = StrategySpec(name="ewc+replay", replay_capacity=30, replay_policy="class_balanced", fisher_samples=16)


def _data(seed: int, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 32, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.set_num_threads(1)
    state = LearnerState.new(ARCH, TRAIN, STRATEGY)
    strategy = make_strategy(STRATEGY, "classification", state)
    x, y = _data(0)
    fit(state, x, y, train=TRAIN, strategy=strategy, task=0)
    strategy.consolidate(state.model, x, y)
    state.extra["tasks"] = ["A"]
    save_state(state, tmp_path / "s")
    return tmp_path / "s"


def test_round_trip_keeps_everything(saved: Path) -> None:
    state = load_state(saved, ARCH)
    assert state_complete(saved)
    assert sorted(p.name for p in saved.iterdir()) == sorted(STATE_FILES.values())
    assert state.fisher is not None and state.anchors is not None and state.buffer is not None
    assert len(state.buffer) == 24 and state.buffer.policy == "class_balanced"
    assert state.counters["updates"] == 1 and state.counters["consolidations"] == 1
    assert state.extra == {"tasks": ["A"]} and len(state.history) == 1
    assert state.strategy_spec == STRATEGY and state.train_spec == TRAIN
    # no pickle anywhere: every tensor file is safetensors, the rest JSON
    assert json.loads((saved / "state.json").read_text())["format"].startswith("lifelong.learner_state/")


def test_state_size_flat_across_20_consolidations(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    state = LearnerState.new(ARCH, TRAIN, STRATEGY)
    strategy = make_strategy(STRATEGY, "classification", state)
    sizes: list[dict[str, int]] = []
    for task in range(20):
        x, y = _data(task)
        strategy.observe(x, y, task)  # fills the buffer past its capacity
        strategy.consolidate(state.model, x, y)
        save_state(state, tmp_path)
        sizes.append({p.name: p.stat().st_size for p in tmp_path.iterdir()})
    assert state.counters["consolidations"] == 20
    tensor_files = [{k: v for k, v in s.items() if k.endswith(".safetensors")} for s in sizes[2:]]
    assert all(s == tensor_files[0] for s in tensor_files)  # byte-identical sizes once the buffer is full
    totals = [sum(s.values()) for s in sizes[2:]]
    assert max(totals) - min(totals) <= 64  # state.json: counters gain a digit at most


def test_refuses_other_architecture(saved: Path) -> None:
    other = ArchitectureSpec(type="cnn_classifier", in_channels=1, length=32, out_dim=4, channels=(4,), hidden=(8,))
    with pytest.raises(StateError, match="saved for architecture"):
        load_state(saved, other)


def test_refuses_truncated_tensor_file(saved: Path) -> None:
    path = saved / STATE_FILES["weights"]
    path.write_bytes(path.read_bytes()[:-100])
    assert not state_complete(saved)
    with pytest.raises(StateError, match="weights.safetensors is corrupt"):
        load_state(saved)


def test_refuses_bad_checksum(saved: Path) -> None:
    meta = json.loads((saved / "state.json").read_text())
    meta["files"]["fisher"]["sha256"] = "0" * 64
    (saved / "state.json").write_text(json.dumps(meta))
    with pytest.raises(StateError, match="fisher.safetensors is corrupt"):
        load_state(saved)


def test_refuses_garbage_json(saved: Path) -> None:
    (saved / "state.json").write_text("{not json")
    assert not state_complete(saved)
    with pytest.raises(StateError, match="not valid JSON"):
        load_state(saved)


def test_refuses_missing_file_and_missing_state(saved: Path, tmp_path: Path) -> None:
    (saved / STATE_FILES["buffer"]).unlink()
    with pytest.raises(StateError, match="buffer.safetensors is missing"):
        load_state(saved)
    with pytest.raises(StateError, match="no state.json"):
        load_state(tmp_path / "nowhere")


def test_refuses_tensor_of_wrong_shape_even_with_matching_checksum(saved: Path) -> None:
    """A consistent but wrong file (e.g. hand-edited, checksum recomputed) still fails the shape check."""
    import hashlib

    from safetensors.torch import load_file, save_file

    path = saved / STATE_FILES["anchors"]
    anchors = load_file(path)
    name = next(iter(anchors))
    anchors[name] = torch.zeros(2, 2)
    save_file(anchors, path)
    meta = json.loads((saved / "state.json").read_text())
    meta["files"]["anchors"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (saved / "state.json").write_text(json.dumps(meta))
    with pytest.raises(StateError, match=r"anchors\[.*\] has shape"):
        load_state(saved)
