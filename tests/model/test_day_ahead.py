"""The day-ahead forecaster learns what the weekly seasonal naive cannot see: the target day's temperature.

A synthetic hourly series with a daily and a weekly pattern plus a temperature effect (the temperature
wanders from day to day, so last week's load is a poor guess of this week's): after a first model and
a few daily updates (test-then-train, replay), the model's day-ahead MAE is well below the weekly naive's
on the same targets.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

from lifelong.config import ArchitectureSpec, DatasetSpec, StrategySpec, TrainSpec
from lifelong.data import windows
from lifelong.learn import metrics
from lifelong.learn.metrics import predict
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit

SPEC = DatasetSpec(
    name="synthetic_load",
    kind="forecast",
    loader="synthetic",
    timestamp="t",
    features=("load", "temp"),
    target="load",
    frequency="1h",
    known_future=("temp",),
)
START = dt.date(2024, 1, 1)  # a Monday


def series(days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = pd.date_range(str(START), periods=24 * days, freq="1h", tz="UTC")
    hour, weekday = t.hour.to_numpy(), t.dayofweek.to_numpy()
    daily_mean = np.repeat(20 + np.cumsum(rng.normal(0, 3, days)).clip(-12, 12), 24)
    temp = daily_mean + 5 * np.sin(2 * np.pi * (hour - 9) / 24)
    load = 100 + 20 * np.sin(2 * np.pi * (hour - 6) / 24) - 15 * (weekday >= 5) + 3 * np.abs(temp - 18)
    return pd.DataFrame({"t": t, "load": load + rng.normal(0, 1, len(t)), "temp": temp})


def day(k: int) -> dt.date:
    return START + dt.timedelta(days=k)


@pytest.mark.parametrize("kind", ["cnn_dayahead", "cnn_dayahead_residual"])
def test_day_ahead_model_beats_the_weekly_naive_after_a_few_updates(kind):
    torch.manual_seed(0)
    frame = series(days=35)
    arch = ArchitectureSpec(
        type=kind, in_channels=len(windows.dayahead_channels(SPEC)), length=48, out_dim=24,
        channels=(8,), kernel_size=3, pool=2, hidden=(16, 16),
    )  # fmt: skip
    train = TrainSpec(lr=0.003, epochs=15, batch_size=32, patience=5, lr_decay=1.0)
    strategy = StrategySpec(name="replay", replay_capacity=500)
    stats = windows.fit_stats(frame[frame["t"] < pd.Timestamp(str(day(14)), tz="UTC")], SPEC)
    first = frame[frame["t"] < pd.Timestamp(str(day(14)), tz="UTC")]
    state = LearnerState.new(arch, train, strategy)
    x, y = windows.forecast_samples(first, SPEC, arch, stats)
    fit(state, x, y, train=train, strategy=make_strategy(strategy, task_kind(arch), state))
    model_err, naive_err = [], []
    for k in range(14, 35):  # test-then-train: score day k, then learn it
        xd, yd, steps = windows.day_ahead_sample(frame, SPEC, arch, stats, day(k))
        true = windows.denormalise_target(yd[0, :steps], stats)
        pred = windows.denormalise_target(predict(state.model, xd)[0, :steps], stats)
        if k >= 28:  # judged after two weeks of daily updates
            model_err.append(metrics.mae(pred, true))
            naive_err.append(metrics.mae(windows.day_ahead_naive(frame, SPEC, day(k))["weekly_naive"], true))
        xu, yu = windows.forecast_samples(frame, SPEC, arch, stats, targets_in=day(k))
        fit(state, xu, yu, train=train, strategy=make_strategy(strategy, task_kind(arch), state))
    assert np.mean(model_err) < 0.6 * np.mean(naive_err), (np.mean(model_err), np.mean(naive_err))
