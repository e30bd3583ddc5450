"""What the steps read: the windows and arrays of an exact data version.

Every reader takes the :class:`~lifelong.data.snapshot.Snapshot` of the version the step was
handed, so a candidate is trained and judged on exactly the rows its lineage names.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

from torch import Tensor

from lifelong.config import DatasetSpec, ModelSpec
from lifelong.data import windows
from lifelong.data.snapshot import Snapshot, open_version
from lifelong.steps.context import Context, NotReady


def snapshot(ctx: Context, data_version: str) -> Snapshot:
    """The stored partitions of ``data_version``."""
    return open_version(ctx.settings, data_version)


def history_days(spec: ModelSpec, ds: DatasetSpec) -> int:
    """Days of history one day's windows need (input window + horizon), rounded up."""
    per_day = max(ds.rows_per_day or (48,))
    return math.ceil((spec.architecture.length + spec.architecture.out_dim) / per_day) + 1


def forecast_days(ctx: Context, snap: Snapshot, days: list[date], stats: dict) -> tuple[Tensor, Tensor]:
    """Windows whose last target step falls on each of ``days`` (concatenated)."""
    import torch

    xs, ys = [], []
    back = history_days(ctx.spec, ctx.dataset)
    for day in days:
        frame = snap.read_days(ctx.dataset, day - timedelta(days=back), day)
        if frame.empty:
            continue
        x, y = windows.forecast_windows(frame, ctx.dataset, ctx.spec.architecture, stats, targets_in=day)
        if len(x):
            xs.append(x)
            ys.append(y)
    if not xs:
        raise NotReady(f"no complete forecast windows for {', '.join(map(str, days))} in {ctx.dataset.name}")
    return torch.cat(xs), torch.cat(ys)


def task_arrays(ctx: Context, snap: Snapshot, task: str, split: str) -> tuple[Tensor, Tensor]:
    """The ``split`` (train / test) samples of ``task``."""
    frame = snap.read_task(ctx.dataset, task)
    return windows.classify_arrays(frame, ctx.dataset, ctx.spec.architecture, split=split)
