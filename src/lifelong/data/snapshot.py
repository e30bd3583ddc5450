"""The stored rows of one exact data version.

A step is handed the data version it works on (the ingest's output) and reads the partitions
*that* version recorded, never "whatever the store holds now". The files come from the DVC
cache, where each object is named by its content and never changes: a correction re-ingested
while a run is under way records a new version and leaves these files alone, so a candidate is
trained on exactly the rows its lineage names.

The version's ``.dir`` manifest (a JSON list of ``{"md5", "relpath"}``) maps each partition to
its object. Reading it costs one small file; DVC itself is not imported.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lifelong import locks
from lifelong.config import DatasetSpec, Settings
from lifelong.data import dvcrepo, schema
from lifelong.data.dvcrepo import DataVersionError
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
        frames = [read_parquet(self.files[n]) for n in names if n in self.files]
        if not frames:
            return pd.DataFrame(columns=schema.columns(spec))
        frame = pd.concat(frames, ignore_index=True)
        return frame.sort_values(spec.timestamp, kind="stable").reset_index(drop=True)

    def read_task(self, spec: DatasetSpec, task: str) -> pd.DataFrame:
        """The rows of one task of a classify data set."""
        name = f"{spec.name}/task={check_task_name(task)}.parquet"
        if name not in self.files:
            stored = ", ".join(self.partitions(spec.name)) or "nothing"
            raise LifelongError(f"{spec.name}: task {task!r} is not in data version {self.version[:12]} ({stored})")
        return read_parquet(self.files[name])


def cache_dir(settings: Settings) -> Path:
    """The DVC cache folder: ``cache.dir`` of the repo's config (local config first), else ``.dvc/cache``."""
    from configobj import ConfigObj

    dvc_dir = settings.project_dir / ".dvc"
    for name in ("config.local", "config"):
        path = dvc_dir / name
        if path.is_file():
            found = ConfigObj(str(path)).get("cache", {}).get("dir")
            if found:
                return (dvc_dir / found).resolve()
    return dvc_dir / "cache"


def _object(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def open_version(settings: Settings, version: str) -> Snapshot:
    """The snapshot of ``version`` from the local cache; a clear error when the cache lacks it."""
    md5 = version.removesuffix(".dir")
    cache = cache_dir(settings)
    manifest = _object(cache, f"{md5}.dir")
    if not manifest.is_file():
        with locks.store_lock(settings.home, f"read data version {md5[:12]}"):
            current = dvcrepo.version(settings)
        where = "" if current == md5 else f" (the store holds {current})"
        raise DataVersionError(
            f"data version {md5} is not in the local DVC cache {cache}{where}: "
            "restore it with `lifelong data checkout --version` first"
        )
    try:
        entries = json.loads(manifest.read_text())
        files = {entry["relpath"]: _object(cache, entry["md5"]) for entry in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise DataVersionError(f"data version {md5}: unreadable DVC manifest {manifest} ({exc})") from None
    missing = sorted(rel for rel, path in files.items() if not path.is_file())
    if missing:
        raise DataVersionError(
            f"data version {md5}: {len(missing)} file(s) missing from the DVC cache, e.g. {missing[0]}"
        )
    return Snapshot(md5, files)
