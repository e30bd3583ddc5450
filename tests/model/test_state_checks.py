"""A saved state is input: sizes are bounded before anything is allocated, every field is validated."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
import torch

from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec
from lifelong.errors import StateError
from lifelong.learn.state import STATE_FILES, LearnerState, load_state, save_state

ARCH = ArchitectureSpec(type="cnn_forecaster", in_channels=1, length=24, out_dim=4, channels=(4,))
TRAIN = TrainSpec(epochs=1, seed=1)
STRATEGY = StrategySpec(name="replay", replay_capacity=20)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.set_num_threads(1)
    state = LearnerState.new(ARCH, TRAIN, STRATEGY)
    assert state.buffer is not None
    state.buffer.add(torch.randn(8, 1, 24), torch.randn(8, 4))
    state.trained_through = "2012-03-04"
    save_state(state, tmp_path / "s")
    return tmp_path / "s"


def _edit(folder: Path, change: Callable[[dict], None]) -> None:
    path = folder / STATE_FILES["meta"]
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def test_a_sound_state_loads_with_its_architecture(saved: Path) -> None:
    state = load_state(saved, ARCH, not_after=date(2012, 3, 5))
    assert state.trained_through == "2012-03-04" and state.buffer is not None and len(state.buffer) == 8


def test_another_architecture_is_refused_naming_the_difference(saved: Path) -> None:
    other = ArchitectureSpec(type="cnn_forecaster", in_channels=1, length=24, out_dim=4, channels=(8,))
    with pytest.raises(StateError, match=r"differs in channels: saved \[4\], params.yaml \[8\]"):
        load_state(saved, other)


def test_a_huge_architecture_is_refused_before_anything_is_allocated(saved: Path) -> None:
    def huge(meta: dict) -> None:
        meta["arch"]["channels"] = [100_000] * 3  # ~2e11 parameters: an out-of-memory if built
        meta["arch"]["kernel_size"] = 9

    _edit(saved, huge)
    started = time.perf_counter()
    with pytest.raises(StateError, match="parameters .at most"):
        load_state(saved)
    assert time.perf_counter() - started < 5
    _edit(saved, lambda m: m["arch"].update(channels=[4] * 1000))
    with pytest.raises(StateError, match="layers"):
        load_state(saved)


def test_tensor_files_and_state_json_are_bounded_before_they_are_read(saved: Path) -> None:
    with (saved / STATE_FILES["weights"]).open("r+b") as fh:
        fh.truncate(50 << 20)  # sparse: 50 MiB of weights for ~100 parameters
    with pytest.raises(StateError, match="more than the architecture can need.*refused unread"):
        load_state(saved)
    with (saved / STATE_FILES["meta"]).open("ab") as fh:
        fh.truncate(65 << 20)
    with pytest.raises(StateError, match="state.json is .* bytes .*refused unread"):
        load_state(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["buffer"].update(capacity=10**9), "capacity"),
        (lambda m: m["buffer"].update(size=999), "size"),
        (lambda m: m["scheduler"].update(evil={"__class__": "os.system"}), "scheduler state has unexpected keys"),
        (lambda m: m["scheduler"].update(last_epoch="rm -rf"), "scheduler state last_epoch"),
        (lambda m: m["scheduler"].update(base_lrs=[float("nan")]), "scheduler state base_lrs"),
        (lambda m: m["optimizer"]["param_groups"][0].update(params=[0, 1, 2, 3, 4, 5]), "other parameters"),
        (lambda m: m["optimizer"]["scalars"].update({"0.step": "x"}), "optimizer scalars"),
        (lambda m: m["optimizer"]["param_groups"][0].update(hook="os.system"), "other keys"),
        (lambda m: m["optimizer"]["param_groups"][0].update(lr=[1, 2]), "lr=.* is not a plain value"),
        (lambda m: m["counters"].update(steps=-1), "counters"),
        (lambda m: m.update(history={"a": 1}), "history"),
        (lambda m: m.update(tasks=["../../etc"]), "task name"),
        (lambda m: m.update(stats={"columns": {"x": {"mean": float("inf")}}}), "stats"),
        (lambda m: m.update(trained_through="2099-01-01"), "cannot have learned the future"),
        (lambda m: m.update(trained_through="yesterday"), "not a date"),
        (lambda m: m.update(surprise=1), "unexpected keys"),
        (lambda m: m.update(extra=[1]), "extra"),
    ],
)
def test_every_field_of_state_json_is_validated(saved: Path, change: Callable[[dict], None], message: str) -> None:
    _edit(saved, change)
    with pytest.raises(StateError, match=message):
        load_state(saved, ARCH, not_after=date(2012, 3, 5))
