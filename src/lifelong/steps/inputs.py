"""What the steps read: the windows and arrays of an exact data version.

Every reader takes the :class:`~lifelong.data.snapshot.Snapshot` of the version the step was
handed, so a candidate is trained and judged on exactly the rows its lineage names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from torch import Tensor

from lifelong.config import DatasetSpec, ModelSpec
from lifelong.data import windows
from lifelong.data.snapshot import Snapshot, open_version
from lifelong.steps.context import Context, NotReady


def snapshot(ctx: Context, data_version: str) -> Snapshot:
    """The stored partitions of ``data_version``."""
    return open_version(ctx.settings, data_version)


def day_ahead(spec: ModelSpec) -> bool:
    """Whether the model forecasts a whole day from the end of the day before (``cnn_dayahead*``)."""
    return spec.architecture.type in windows.DAYAHEAD_TYPES


def history_days(spec: ModelSpec, ds: DatasetSpec) -> int:
    """Local days before a day that its samples read (input window, horizon, lags), rounded up."""
    if day_ahead(spec):
        return windows.history_days(ds, spec.architecture)
    per_day = max(ds.rows_per_day or (48,))
    return math.ceil((spec.architecture.length + spec.architecture.out_dim) / per_day) + 1


def forecast_days(ctx: Context, snap: Snapshot, days: list[date], stats: dict) -> tuple[Tensor, Tensor]:
    """Training samples whose last target step falls on each of ``days`` (concatenated): every
    forecast origin for a day-ahead model, every rolling window for the others."""
    import torch

    xs, ys = [], []
    back = history_days(ctx.spec, ctx.dataset)
    samples = windows.forecast_samples if day_ahead(ctx.spec) else windows.forecast_windows
    for day in days:
        frame = snap.read_days(ctx.dataset, day - timedelta(days=back), day)
        if frame.empty:
            continue
        x, y = samples(frame, ctx.dataset, ctx.spec.architecture, stats, targets_in=day)
        if len(x):
            xs.append(x)
            ys.append(y)
    if not xs:
        raise NotReady(f"no complete forecast windows for {', '.join(map(str, days))} in {ctx.dataset.name}")
    return torch.cat(xs), torch.cat(ys)


@dataclass(frozen=True)
class DayAhead:
    """The forecast of one local day as an operator issues it, at the end of the day before.

    ``x`` is the model's input, ``y`` the day's actual values (normalised), ``steps`` the day's
    rows (46/48/50 half-hours: only ``y[0, :steps]`` are the day's), and ``naive`` the naive
    forecasts of those rows in the target's units (empty when the history they copy is missing).
    """

    x: Tensor
    y: Tensor
    steps: int
    naive: dict[str, Tensor]


def day_ahead_sample(ctx: Context, snap: Snapshot, day: date, stats: dict) -> DayAhead:
    """The day-ahead forecast of ``day``; :class:`NotReady` naming what is missing when it cannot be built."""
    frame = snap.read_days(ctx.dataset, day - timedelta(days=history_days(ctx.spec, ctx.dataset)), day)
    try:
        x, y, steps = windows.day_ahead_sample(frame, ctx.dataset, ctx.spec.architecture, stats, day)
    except windows.NoSample as exc:
        raise NotReady(str(exc)) from None
    try:
        naive = windows.day_ahead_naive(frame, ctx.dataset, day)
    except windows.NoSample:
        naive = {}  # the first week of data: nothing to copy from yet
    return DayAhead(x, y, steps, naive)


def task_arrays(ctx: Context, snap: Snapshot, task: str, split: str, state: Any = None) -> tuple[Tensor, Tensor]:
    """The ``split`` (train / test) samples of ``task``: a classifier's stored task, or for a forecaster
    the day-ahead samples of the task's train / test days, normalised with ``state``'s statistics
    (default: the champion's; :mod:`lifelong.steps.forecast_tasks` says which days)."""
    if ctx.dataset.kind == "forecast":
        from lifelong.steps import forecast_tasks

        return forecast_tasks.task_arrays(ctx, snap, task, split, state)
    frame = snap.read_task(ctx.dataset, task)
    return windows.classify_arrays(frame, ctx.dataset, ctx.spec.architecture, split=split)
