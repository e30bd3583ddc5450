"""The versioned data set: validate, append idempotently, record the version with DVC.

Layout: ``data/<dataset>/<YYYY-MM-DD>.parquet`` (one partition per local day) or
``data/<dataset>/task=<task>.parquet`` (one per task). :func:`ingest` is the
``validate_ingest`` step of the daily DAG:

1. check the file named is a batch lifelong may read (:func:`~lifelong.data.landing.check_batch_file`:
   a regular file inside the data set's landing folder or ``LIFELONG_LANDING_ALLOW``), else
   refuse it before anything is read or copied; read it; a file that cannot be read is
   quarantined with the reason;
2. validate it with its data set's Great Expectations suite; a failure is quarantined with
   the validation report, and :class:`~lifelong.errors.RefusedBatch` says what failed in one line;
3. under the store lock, replace that day's (or task's) partition - never append a second
   copy - then ``dvc add`` + ``dvc push``; if DVC fails the partition and ``data.dvc`` are
   put back as they were (atomically). Temp files of writers killed mid-write are removed and a
   broken ``data.dvc`` is put back from its last good copy first (:func:`dvcrepo.heal`).

Re-ingesting the same batch writes the same bytes, so the data version does not change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from lifelong import faults, locks
from lifelong.config import ConfigError, DatasetSpec, Settings, load_params, load_settings
from lifelong.data import dvcrepo, exports, schema
from lifelong.data.batch import UnreadableBatch, read_batch
from lifelong.data.dvcrepo import DataVersionError
from lifelong.data.files import parquet_bytes, read_parquet, remove_stale_tmp, write_atomic
from lifelong.data.landing import MissingBatch as MissingBatch  # raised by ingest, importable from here
from lifelong.data.landing import check_batch_file, check_task_name, landed_file
from lifelong.data.quarantine import quarantine
from lifelong.errors import LifelongError, RefusedBatch, StoreBusy

MD5 = dvcrepo.MD5


@dataclass(frozen=True)
class IngestResult:
    """What one ingest did; :meth:`as_dict` is the step's JSON output."""

    dataset: str
    partition: str  # "2012-01-05" or "task=FordA"
    rows: int
    data_version: str  # md5 of data.dvc (without ".dir")
    report_path: str  # the validation result, JSON
    data_docs_path: str  # the Data Docs page of that validation
    replaced: bool  # an earlier, different partition was replaced
    changed: bool = True  # False: the partition was already stored with these exact rows
    validation_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------- paths


def _store_lock(settings: Settings, what: str) -> Any:
    return locks.store_lock(settings.home, what)


def partition_name(spec: DatasetSpec, key: str) -> str:
    return key if spec.kind == "forecast" else f"task={key}"


def partition_path(settings: Settings, dataset: str, partition: str) -> Path:
    return settings.data_dir / dataset / f"{partition}.parquet"


def ensure_repo() -> None:
    """Make the project a DVC repository with its default remote configured (idempotent)."""
    settings = load_settings()
    with _store_lock(settings, "set up the DVC repository"):
        dvcrepo.ensure(settings)


def stored_partitions(dataset: str) -> list[str]:
    """The stored partitions of ``dataset``, sorted (days, or ``task=<name>``)."""
    folder = load_settings().data_dir / dataset
    return sorted(p.stem for p in folder.glob("*.parquet")) if folder.is_dir() else []


# ------------------------------------------------------------------------------- versions


def dvc_location(dataset: str) -> str:
    """Where a data set's versions live: the DVC remote, and the data set's folder in the store.

    >>> import os; os.environ["LIFELONG_DVC_REMOTE"] = "s3://bucket/dvc"
    >>> dvc_location("vic_elec")
    's3://bucket/dvc#data/vic_elec'
    >>> del os.environ["LIFELONG_DVC_REMOTE"]
    """
    remote = dvcrepo.without_credentials(dvcrepo.remote_url(load_settings()))  # it is logged to MLflow
    uri = remote if "://" in remote else Path(remote).resolve().as_uri()
    return f"{uri}#data/{dataset}"


def current_version() -> str | None:
    """The recorded data version, or None before the first ingest.

    Read under the store lock: ``dvc add`` rewrites ``data.dvc`` in place, so a reader
    racing an ingest could find it empty or half written.
    """
    settings = load_settings()
    with _store_lock(settings, "read the data version"):
        dvcrepo.heal(settings)
        return dvcrepo.version(settings)


def data_version() -> str:
    """The recorded data version: the md5 in ``data.dvc`` (without DVC's ``.dir`` suffix)."""
    found = current_version()
    if found is None:
        raise DataVersionError("no data version recorded yet: ingest a batch first")
    return found


def _log_version(settings: Settings, entry: dict[str, Any]) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    with (settings.home / "data_versions.jsonl").open("a") as fh:
        fh.write(json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}) + "\n")


def _summary(folder: Path, ignored: tuple[Path, ...] = ()) -> dict[str, dict[str, int]]:
    """Partitions and rows of each data set folder under ``folder``."""
    import pyarrow.parquet as pq

    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p not in ignored):
        files = sorted(sub.glob("*.parquet"))
        out[sub.name] = {"partitions": len(files), "rows": sum(pq.ParquetFile(f).metadata.num_rows for f in files)}
    return out


def _store_summary(settings: Settings) -> dict[str, dict[str, int]]:
    return _summary(settings.data_dir, (settings.landing_dir, settings.quarantine_dir))


def checkout(version: str, *, to: Path | None = None, in_place: bool = False) -> dict[str, Any]:
    """Restore exactly the files of data version ``version`` (from the cache, else the remote).

    By default into a folder of its own, ``to`` (default ``<home>/checkouts/<md5>/``), laid out
    as ``data/`` is (``<dataset>/<partition>.parquet``): ``data.dvc`` and ``data/`` are left as
    they are. With ``in_place`` the live store itself (``data/`` and ``data.dvc``) is rewound.
    """
    md5 = version.strip().lower().removesuffix(".dir")
    if not MD5.fullmatch(md5):
        raise DataVersionError(f"{version!r} is not a data version (32 hex digits, the md5 in data.dvc)")
    settings = load_settings()
    if in_place and to is not None:
        raise LifelongError("give --to DIR or --in-place, not both")
    target = None if in_place else Path(to or settings.home / "checkouts" / md5).absolute()
    if target is not None and Path(os.path.realpath(target)).is_relative_to(os.path.realpath(settings.data_dir)):
        raise LifelongError(f"--to {target}: not inside data/ (DVC versions everything there); choose another folder")
    with _store_lock(settings, f"data checkout {md5}"):
        faults.checkpoint("checkout")
        dvcrepo.ensure(settings)
        if target is None:
            with contextlib.suppress(DataVersionError):  # a broken data.dvc is about to be replaced anyway
                dvcrepo.heal(settings)
            source = dvcrepo.restore(settings, md5)
        else:
            source = "cache" if dvcrepo.cached(settings, md5) else "remote"
            files = dvcrepo.version_files(settings, md5, fetch=True)
            if not exports.export(md5, files, target, tidy=target.parent == settings.home / "checkouts"):
                source = "folder"
    if target is None:
        _log_version(settings, {"data_version": md5, "checkout": True, "source": source})
        return {"data_version": md5, "source": source, "in_place": True, "datasets": _store_summary(settings)}
    return {
        "data_version": md5,
        "source": source,
        "in_place": False,
        "restored_to": str(target),
        "files": len(files),
        "datasets": _summary(target),
    }


def status() -> dict[str, Any]:
    """The recorded data version, what the store holds, and the last recorded versions."""
    settings = load_settings()
    log = settings.home / "data_versions.jsonl"
    recent = [json.loads(line) for line in log.read_text().splitlines()[-10:]] if log.exists() else []
    datasets = _store_summary(settings) if settings.data_dir.is_dir() else {}
    return {"data_version": current_version(), "datasets": datasets, "recent": recent}


# ------------------------------------------------------------------------------- reading


def read_days(dataset: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """The stored rows of the days ``start`` to ``end`` (inclusive), sorted by timestamp.

    Days not stored are simply absent (check ``frame.empty`` or the dates); with none stored
    the frame is empty, with the data set's columns.
    """
    settings = load_settings()
    spec = load_params().dataset(dataset)
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    paths = [partition_path(settings, dataset, d) for d in days]
    frames = [read_parquet(p) for p in paths if p.exists()]
    if not frames:
        return pd.DataFrame(columns=schema.columns(spec))
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(spec.timestamp, kind="stable").reset_index(drop=True)


def read_task(dataset: str, task: str) -> pd.DataFrame:
    """The stored rows of one task."""
    path = partition_path(load_settings(), dataset, f"task={check_task_name(task)}")
    if not path.exists():
        raise LifelongError(f"{dataset}: task {task!r} is not stored (stored: {stored_partitions(dataset)})")
    return read_parquet(path)


# ------------------------------------------------------------------------------- ingest


def _refuse(
    settings: Settings, spec: DatasetSpec, key: str, file: Path, reason: str, result: dict | None = None, **extra: Any
) -> NoReturn:
    move = file.is_relative_to(os.path.realpath(settings.landing_dir / spec.name))  # ours: moved, else copied
    folder = settings.quarantine_dir / spec.name / key
    max_bytes = int(spec.max_file_mb * 2**20)
    kept, report = quarantine(file, folder, move=move, reason=reason, max_bytes=max_bytes, result=result, extra=extra)
    where = f"quarantined: {kept}" if kept else f"file {'left in place' if file.exists() else 'gone'}, report: {report}"
    error = RefusedBatch(f"{spec.name} {key}: batch refused, {reason} ({where})")
    error.quarantined = kept  # type: ignore[attr-defined]
    error.report = report  # type: ignore[attr-defined]
    raise error


def _key(spec: DatasetSpec, day: dt.date | None, task: str | None) -> str:
    if spec.kind == "forecast":
        if day is None or task is not None:
            raise LifelongError(f"{spec.name} is a forecast data set: ingest it by --date")
        return day.isoformat()
    if task is None or day is not None:
        raise LifelongError(f"{spec.name} is a classify data set: ingest it by --task")
    return check_task_name(task)


def _tidy(settings: Settings) -> None:
    """Under the store lock, before a write: remove temp files of writers killed mid-write (every
    writer of the store holds this lock, so none is in flight), and mend a broken ``data.dvc``."""
    skip = (settings.landing_dir, settings.quarantine_dir)
    removed = remove_stale_tmp(settings.data_dir, locked=True, skip=skip)
    for file in (dvcrepo.dvc_file(settings), dvcrepo.last_good_file(settings)):
        removed += remove_stale_tmp(file.parent, locked=True, of=(file.name,))
    removed += remove_stale_tmp(settings.landing_dir)  # landing writers take no lock: only dead ones
    if removed:
        dvcrepo.log.warning("removed %d temp file(s) of writers killed mid-write: %s", len(removed), removed)
    try:
        dvcrepo.heal(settings)
    except DataVersionError as exc:  # no good copy: `dvc add` writes data.dvc again from data/
        dvcrepo.log.warning("%s; recording the store as it is", exc)
        dvcrepo.dvc_file(settings).unlink(missing_ok=True)


def ingest(
    dataset: str, *, day: dt.date | None = None, task: str | None = None, file: Path | None = None
) -> IngestResult:
    """Validate one batch and store it as a new data version (see the module docstring)."""
    settings = load_settings()
    spec = load_params().dataset(dataset)
    key = _key(spec, day, task)
    file = check_batch_file(dataset, file if file is not None else landed_file(dataset, key), label=f"{dataset} {key}")

    try:
        raw = read_batch(file, max_mb=spec.max_file_mb)
    except UnreadableBatch as exc:
        _refuse(settings, spec, key, file, str(exc))
    try:
        frame = schema.conform(raw, spec)
        from lifelong.data.validate import validate

        outcome = validate(frame, spec, key)
        faults.checkpoint("validate")
    except (ConfigError, StoreBusy, OSError):  # the machine failed, not the batch (e.g. disk full): retry, keep it
        raise
    except Exception as exc:  # a batch odd enough to break a check: keep it, say so, no traceback
        _refuse(settings, spec, key, file, f"could not be validated: {exc}", error=traceback.format_exc())
    if not outcome.success:
        _refuse(settings, spec, key, file, outcome.summary(), outcome.result, data_docs=outcome.data_docs_path)

    partition = partition_name(spec, key)
    data = parquet_bytes(schema.canonical(frame, spec))
    target = partition_path(settings, dataset, partition)
    with _store_lock(settings, f"ingest {dataset} {key}"):
        dvcrepo.ensure(settings)
        _tidy(settings)
        before = target.read_bytes() if target.exists() else None
        dvc_path = dvcrepo.dvc_file(settings)
        dvc_before = dvc_path.read_bytes() if dvc_path.exists() else None
        changed = before != data
        if changed:
            faults.checkpoint("partition_write")
            write_atomic(target, data)
        try:
            version = dvcrepo.record(settings)
        except BaseException:
            if changed and before is not None:
                write_atomic(target, before)
            elif changed:
                target.unlink(missing_ok=True)
            if dvc_before is not None:
                write_atomic(dvc_path, dvc_before)
            else:
                dvc_path.unlink(missing_ok=True)
            raise

    report = settings.reports_dir / "validation" / dataset / f"{key}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    body = {"dataset": dataset, "partition": partition, "rows": len(frame), "data_version": version}
    report.write_text(json.dumps({**body, "validation_result": outcome.result}, indent=2, default=str))
    _log_version(settings, {**body, "changed": changed})
    return IngestResult(
        dataset=dataset,
        partition=partition,
        rows=len(frame),
        data_version=version,
        report_path=str(report),
        data_docs_path=outcome.data_docs_path,
        replaced=changed and before is not None,
        changed=changed,
        validation_s=round(outcome.seconds, 3),
    )
