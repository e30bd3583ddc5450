"""One "day" of the restart-equivalence test: a forecaster updated with online EWC + replay.

Imported by ``test_restart.py`` in-process and run as a script in fresh processes::

    python restart_daily.py STATE_DIR DAY
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec
from lifelong.learn.state import LearnerState, load_state, save_state
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit

ARCH = ArchitectureSpec(
    type="cnn_forecaster", in_channels=2, length=24, out_dim=6, channels=(8,), kernel_size=3, pool=2
)
TRAIN = TrainSpec(lr=3e-3, lr_decay=0.98, lr_floor=1e-3, epochs=4, batch_size=16, patience=2, val_fraction=0.25, seed=3)
# ewc+replay: the online Fisher (gamma) and a buffer small enough that reservoir replacement happens
STRATEGY = StrategySpec(name="ewc+replay", ewc_lambda=50.0, gamma=0.9, fisher_samples=32, replay_capacity=40)


def day_data(day: int, n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of a noisy daily sine (channel 0) and a slow trend (channel 1); target: the next 6 values."""
    g = torch.Generator().manual_seed(1000 + day)
    t = torch.arange(n)[:, None] + torch.arange(ARCH.length + ARCH.out_dim)[None, :] + 50 * day
    series = torch.sin(2 * math.pi * t / 24) + 0.1 * torch.randn(t.shape, generator=g) + 0.01 * day
    trend = (t / 500.0).float()
    x = torch.stack([series[:, : ARCH.length], trend[:, : ARCH.length]], dim=1).float()
    return x, series[:, ARCH.length :].float()


def run_day(state: LearnerState, day: int) -> None:
    torch.set_num_threads(1)
    x, y = day_data(day)
    strategy = make_strategy(STRATEGY, "regression", state)
    fit(state, x, y, train=TRAIN, strategy=strategy)
    strategy.consolidate(state.model, x, y)
    state.extra["days"] = day + 1


def new_state() -> LearnerState:
    return LearnerState.new(ARCH, TRAIN, STRATEGY)


def main(directory: Path, day: int) -> None:
    state = new_state() if day == 0 else load_state(directory, ARCH)
    run_day(state, day)
    save_state(state, directory)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
