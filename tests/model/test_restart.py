"""Restart equivalence: daily updates interrupted by save/load end exactly where uninterrupted ones do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from restart_daily import ARCH, main, new_state, run_day

from lifelong.learn.state import LearnerState, load_state, save_state

DAYS = 10
HERE = Path(__file__).resolve().parent


def _uninterrupted() -> LearnerState:
    state = new_state()
    for day in range(DAYS):
        run_day(state, day)
    return state


def _assert_same(a: LearnerState, b: LearnerState) -> None:
    for (name, wa), (_, wb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.allclose(wa, wb, rtol=0, atol=1e-6), name
    assert a.fisher is not None and b.fisher is not None and a.anchors is not None and b.anchors is not None
    for name in a.fisher:
        assert torch.allclose(a.fisher[name], b.fisher[name], rtol=0, atol=1e-6), name
        assert torch.allclose(a.anchors[name], b.anchors[name], rtol=0, atol=1e-6), name
    assert a.buffer is not None and b.buffer is not None
    for ta, tb in zip(a.buffer.contents(), b.buffer.contents(), strict=True):
        assert torch.equal(ta, tb)
    assert a.buffer.meta() == b.buffer.meta()
    assert torch.equal(a.buffer.generator.get_state(), b.buffer.generator.get_state())
    assert a.history == b.history
    assert a.counters == b.counters
    assert a.extra == b.extra
    assert a.scheduler.state_dict() == b.scheduler.state_dict()
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for index in sa:
        for key in sa[index]:
            assert torch.allclose(sa[index][key], sb[index][key], rtol=0, atol=1e-6), (index, key)


def test_save_load_every_day_matches_uninterrupted(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    reference = _uninterrupted()
    assert reference.buffer is not None and reference.buffer.seen > reference.buffer.capacity  # replacement ran
    assert reference.counters["consolidations"] == DAYS
    for day in range(DAYS):
        main(tmp_path, day)
    _assert_same(reference, load_state(tmp_path, ARCH))
    # the LR schedule kept decaying across the updates, down to its floor
    lrs = [h["lr"] for h in reference.history]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1] >= 1e-3


@pytest.mark.slow
def test_fresh_process_every_day_matches_uninterrupted(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    for day in range(DAYS):
        subprocess.run(
            [sys.executable, str(HERE / "restart_daily.py"), str(tmp_path), str(day)], check=True, env=env, timeout=120
        )
    restored = load_state(tmp_path, ARCH)
    _assert_same(_uninterrupted(), restored)
    save_state(restored, tmp_path / "again")  # a loaded state saves back to the same bytes
    for name in ("weights.safetensors", "optimizer.safetensors", "buffer.safetensors", "fisher.safetensors"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
