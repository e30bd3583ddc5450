"""Batches as they arrive: the real data cut into landing files, one per day or per task.

``lifelong simulate`` stands in for the upstream system that would drop a file each day:
``data/landing/<dataset>/<YYYY-MM-DD>.parquet`` holds the rows of that local day with their
real timestamps, and ``data/landing/<dataset>/forecast/<YYYY-MM-DD>.parquet`` the forecast
covariates of the day after it (the timestamp and the ``known_future`` columns: what the
``publish`` step forecasts that day from; on vic_elec the recorded Temperature and Holiday stand
in for a weather forecast). For task data, ``data/landing/<dataset>/<task>.parquet`` holds one task.
A landing file that exists with other content is never overwritten without ``force``
(someone may have corrected it by hand); an identical one is left as it is.

What may be ingested is checked before a byte is read (:func:`check_batch_file`): the path
is resolved, symbolic links followed, and must name a regular file inside the data set's
landing folder, ``data/landing/<dataset>/``, or inside a folder of ``LIFELONG_LANDING_ALLOW``
(folders separated by ``os.pathsep``, ``:`` on Linux; relative ones are taken from the
project folder). A relative path names a file in the landing folder (or, when there is none
there, one relative to the current directory). Directories, FIFOs, devices, sockets and
anything on ``/proc``, ``/sys`` or ``/dev`` are refused, wherever they are.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from pathlib import Path

import pandas as pd

from lifelong.config import ConfigError, DatasetSpec, Settings, load_params, load_settings
from lifelong.data import schema
from lifelong.data.files import parquet_bytes, write_atomic
from lifelong.data.sources import load_source
from lifelong.errors import LifelongError, RefusedBatch

TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # always fullmatch: "M1\n" is not a name
ALLOW_ENV = "LIFELONG_LANDING_ALLOW"
SPECIAL = (Path("/proc"), Path("/sys"), Path("/dev"))  # files whose content is the machine's, not a batch


class LandingConflict(LifelongError):
    """A landing file exists with different content and ``force`` was not given."""


class MissingBatch(LifelongError):
    """There is no batch to ingest (nothing landed for that day or task)."""


class UnsafeBatchPath(RefusedBatch):
    """The file named as a batch is not one lifelong may read: refused before anything was read.

    Nothing is quarantined (``quarantined`` and ``report`` are None): the file is not a batch.
    """

    quarantined: Path | None = None
    report: Path | None = None


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


def allowed_folders(settings: Settings, dataset: str) -> list[Path]:
    """The folders a batch of ``dataset`` may be read from, resolved: its landing folder first,
    then those of ``LIFELONG_LANDING_ALLOW``."""
    folders = [Path(os.path.realpath(settings.landing_dir / dataset))]
    for entry in os.environ.get(ALLOW_ENV, "").split(os.pathsep):
        if not entry.strip():
            continue
        folder = Path(os.path.realpath(settings.project_dir / entry.strip()))
        if folder == Path(folder.anchor) or any(folder.is_relative_to(s) for s in SPECIAL):
            raise ConfigError(f"{ALLOW_ENV}: {entry!r} would let any file be a batch; name the folders batches land in")
        folders.append(folder)
    return folders


def _kind(mode: int) -> str | None:
    """What a file that is not a regular file is, in words; None for a regular file."""
    for test, what in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def check_batch_file(dataset: str, file: Path | str, *, label: str | None = None) -> Path:
    """The real path of the batch ``file`` of ``dataset``, once it is known to be one lifelong may read.

    Nothing is opened: the path is resolved (symbolic links followed) and must lie inside an
    :func:`allowed_folders` folder, then it must exist (else :class:`MissingBatch`) and be a
    regular file. Any other case raises :class:`UnsafeBatchPath`, naming the rule.
    """
    settings = load_settings()
    label = label or dataset
    given = str(file)
    if "\x00" in given or not given.strip():
        raise UnsafeBatchPath(f"{label}: refused {given!r}: not a file name; nothing was read or copied")
    path = Path(given)
    if not path.is_absolute():  # a file of the landing folder, else one of the current directory
        here = settings.landing_dir / dataset / path
        path = here if os.path.lexists(here) or not os.path.lexists(path) else Path.cwd() / path
    real = Path(os.path.realpath(path))
    folders = allowed_folders(settings, dataset)
    special = next((s for s in SPECIAL if real.is_relative_to(s)), None)
    if special is not None:
        rule = f"it is on {special}, where files are the machine's, not batches"
    elif not any(real.is_relative_to(folder) for folder in folders):
        more = f"or a folder of {ALLOW_ENV}" if len(folders) > 1 else f"set {ALLOW_ENV} to allow other folders"
        rule = f"{real} is outside the landing folder {folders[0]} ({more})"
    else:
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            raise MissingBatch(f"{label}: no batch at {path} (land one first, e.g. with lifelong simulate)") from None
        except OSError:
            return real  # e.g. no permission: reading it says why, and the file is quarantined
        what = _kind(mode)
        if what is None:
            return real
        rule = f"{real} is {what}, not a regular file"
    raise UnsafeBatchPath(f"{label}: refused {given!r}: {rule}; nothing was read or copied")


def landing_path(dataset: str, key: str, suffix: str = ".parquet") -> Path:
    """Where the batch ``key`` (a day ``YYYY-MM-DD`` or a task) of ``dataset`` lands."""
    return load_settings().landing_dir / dataset / f"{key}{suffix}"


def forecast_inputs_path(dataset: str, day: dt.date | str) -> Path:
    """Where the forecast covariates of ``day`` (its ``known_future`` columns, issued the day before) land."""
    return load_settings().landing_dir / dataset / "forecast" / f"{day}.parquet"


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
    """Land ``days`` daily batches of a forecast data set from ``start``; returns their paths.

    With each day, where the data has the day after it, the forecast covariates of that next day
    (:func:`forecast_inputs_path`) land too (not in the returned list: they are not batches).
    """
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
        following = (start + dt.timedelta(days=offset + 1)).isoformat()
        ahead = source[dates == following]
        if spec.known_future and not ahead.empty:
            columns = [spec.timestamp, *spec.known_future]
            files[forecast_inputs_path(dataset, following)] = ahead[columns].reset_index(drop=True)
    batches = {landing_path(dataset, (start + dt.timedelta(days=i)).isoformat()) for i in range(days)}
    return [path for path in _land(files, force) if path in batches]


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
