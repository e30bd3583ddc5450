"""Batches as they arrive: the real data cut into landing files, one per day or per task.

``lifelong simulate`` stands in for the upstream system that would drop a file each day:
``data/landing/<dataset>/<YYYY-MM-DD>.parquet`` holds the rows of that local day with their
real timestamps; for task data, ``data/landing/<dataset>/<task>.parquet`` holds one task.
A landing file that exists with other content is never overwritten without ``force``
(someone may have corrected it by hand); an identical one is left as it is.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd

from lifelong.config import DatasetSpec, load_params, load_settings
from lifelong.data import schema
from lifelong.data.files import parquet_bytes, write_atomic
from lifelong.data.sources import load_source
from lifelong.errors import LifelongError

TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # always fullmatch: "M1\n" is not a name


class LandingConflict(LifelongError):
    """A landing file exists with different content and ``force`` was not given."""


def check_task_name(task: str) -> str:
    """``task`` if it is safe as a file name, else a one-line error.

    >>> check_task_name("FordA")
    'FordA'
    >>> check_task_name("M1\\n")
    Traceback (most recent call last):
    ...
    lifelong.errors.LifelongError: task name 'M1\\n': use letters, digits, '_', '.' or '-' (at most 64)
    """
    if not isinstance(task, str) or not TASK_NAME.fullmatch(task):
        raise LifelongError(f"task name {task!r}: use letters, digits, '_', '.' or '-' (at most 64)")
    return task


def landing_path(dataset: str, key: str, suffix: str = ".parquet") -> Path:
    """Where the batch ``key`` (a day ``YYYY-MM-DD`` or a task) of ``dataset`` lands."""
    return load_settings().landing_dir / dataset / f"{key}{suffix}"


def landed_file(dataset: str, key: str) -> Path:
    """The landed batch: the Parquet file, else a CSV of the same name, else the Parquet path."""
    parquet = landing_path(dataset, key)
    csv = landing_path(dataset, key, ".csv")
    return csv if not parquet.exists() and csv.exists() else parquet


def _spec(dataset: str, kind: str) -> DatasetSpec:
    spec = load_params().dataset(dataset)
    if spec.kind != kind:
        how = "--start/--days" if spec.kind == "forecast" else "--tasks"
        raise LifelongError(f"{dataset} is a {spec.kind} data set: land it with {how}")
    return spec


def _land(files: dict[Path, pd.DataFrame], force: bool) -> list[Path]:
    """Write every file, or none when one would overwrite different content without ``force``."""
    encoded = {path: parquet_bytes(frame) for path, frame in files.items()}
    if not force:
        for path, data in encoded.items():
            if path.exists() and path.read_bytes() != data:
                raise LandingConflict(f"{path} exists with other content; pass --force to overwrite it")
    for path, data in encoded.items():
        if not (path.exists() and path.read_bytes() == data):
            write_atomic(path, data)
    return list(encoded)


def simulate(dataset: str, start: dt.date, days: int, *, force: bool = False) -> list[Path]:
    """Land ``days`` daily batches of a forecast data set from ``start``; returns their paths."""
    spec = _spec(dataset, "forecast")
    if days < 1:
        raise LifelongError(f"--days must be at least 1, got {days}")
    source = load_source(spec)
    dates = schema.row_dates(spec, source)
    first, last = dates.min(), dates.max()
    files = {}
    for offset in range(days):
        day = (start + dt.timedelta(days=offset)).isoformat()
        rows = source[dates == day].reset_index(drop=True)
        if rows.empty:
            raise LifelongError(f"{dataset} has no rows for {day} (it covers {first} to {last})")
        files[landing_path(dataset, day)] = rows
    return _land(files, force)


def land_tasks(dataset: str, tasks: list[str] | None = None, *, force: bool = False) -> list[Path]:
    """Land one file per task of a classify data set (default: every task of its block)."""
    spec = _spec(dataset, "classify")
    source = load_source(spec)
    wanted = list(tasks or spec.tasks)
    known = sorted(source[spec.task_column].unique()) if spec.task_column else []
    files = {}
    for task in wanted:
        check_task_name(task)
        if task not in known:
            raise LifelongError(f"{dataset} has no task {task!r} (it has {', '.join(known)})")
        files[landing_path(dataset, task)] = source[source[spec.task_column] == task].reset_index(drop=True)
    return _land(files, force)
