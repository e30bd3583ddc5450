"""The stored rows of one exact data version.

A step is handed the data version it works on (the ingest's output) and reads the partitions
*that* version recorded, never "whatever the store holds now". The files come from the DVC
cache, where each object is named by its content and never changes: a correction re-ingested
while a run is under way records a new version and leaves these files alone, so a candidate is
trained on exactly the rows its lineage names.

The version's ``.dir`` manifest (a JSON list of ``{"md5", "relpath"}``) maps each partition to
its object. Reading it costs one small file; DVC itself is imported only when the version has to
be fetched from the remote.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lifelong import locks
from lifelong.config import DatasetSpec, Settings
from lifelong.data import dvcrepo, schema
from lifelong.data.files import read_parquet
from lifelong.data.landing import check_task_name
from lifelong.errors import LifelongError


@dataclass(frozen=True)
class Snapshot:
    """The partitions of data version ``version``: ``"<dataset>/<partition>.parquet"`` -> a file."""

    version: str
    files: Mapping[str, Path]

    def partitions(self, dataset: str) -> list[str]:
        """The partitions of ``dataset`` in this version, sorted (days, or ``task=<name>``)."""
        prefix = f"{dataset}/"
        return sorted(
            rel[len(prefix) : -len(".parquet")]
            for rel in self.files
            if rel.startswith(prefix) and rel.endswith(".parquet") and "/" not in rel[len(prefix) :]
        )

    def days(self, dataset: str) -> set[dt.date]:
        """The stored days of a forecast data set."""
        return {dt.date.fromisoformat(p) for p in self.partitions(dataset) if p[:4].isdigit()}

    def read_days(self, spec: DatasetSpec, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Rows of the days ``start`` to ``end`` (inclusive), sorted by timestamp; absent days are skipped."""
        names = [f"{spec.name}/{start + dt.timedelta(days=i)}.parquet" for i in range((end - start).days + 1)]
        frames = [self._read(self.files[n]) for n in names if n in self.files]
        if not frames:
            return pd.DataFrame(columns=schema.columns(spec))
        frame = pd.concat(frames, ignore_index=True)
        return frame.sort_values(spec.timestamp, kind="stable").reset_index(drop=True)

    def _read(self, path: Path) -> pd.DataFrame:
        return read_parquet(path)

    def read_task(self, spec: DatasetSpec, task: str) -> pd.DataFrame:
        """The rows of one task of a classify data set."""
        name = f"{spec.name}/task={check_task_name(task)}.parquet"
        if name not in self.files:
            stored = ", ".join(self.partitions(spec.name)) or "nothing"
            raise LifelongError(f"{spec.name}: task {task!r} is not in data version {self.version[:12]} ({stored})")
        return read_parquet(self.files[name])


@dataclass(frozen=True)
class CachedSnapshot(Snapshot):
    """A :class:`Snapshot` that reads each partition file once (kept in memory), for a reader that
    builds many overlapping windows (a day-ahead sample reads a week and more before its day).
    The files are named by their content and never change, so what it returns is what a
    :class:`Snapshot` would read."""

    read: dict[Path, pd.DataFrame] = field(default_factory=dict, compare=False, repr=False)

    def _read(self, path: Path) -> pd.DataFrame:
        if path not in self.read:
            self.read[path] = read_parquet(path)
        return self.read[path]


def open_version(settings: Settings, version: str) -> Snapshot:
    """The snapshot of ``version``: from the local cache, else fetched from the DVC remote (a worker
    on another machine, or a cache that was cleared); a clear error when neither has it."""
    md5 = version.removesuffix(".dir")
    files = dvcrepo.cached_version_files(settings, md5)
    if files is None:
        with locks.store_lock(settings.home, f"fetch data version {md5[:12]}"):
            files = dvcrepo.version_files(settings, md5, fetch=True)
    return Snapshot(md5, files)
