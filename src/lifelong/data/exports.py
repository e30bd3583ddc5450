"""A data version's files copied out of the DVC cache into a folder of their own.

``lifelong data checkout`` restores a version there by default, laid out as ``data/`` is
(``<dataset>/<partition>.parquet``), so that looking at old rows never moves the live store
that every model reads. The folder appears whole or not at all: the files are copied into a
temp folder beside it, each checked against the md5 it is cached under, then the temp folder
is renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from lifelong.data.dvcrepo import DataVersionError
from lifelong.data.files import fsync_dir


def md5_of(path: Path) -> str:
    """The md5 of a file's bytes (DVC 3's hash of a file)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _oid(cached: Path) -> str:
    """The md5 a cached object is stored under (``.../files/md5/ab/cdef...``)."""
    return "".join(cached.parts[-2:])


def holds(folder: Path, files: Mapping[str, Path]) -> bool:
    """Whether ``folder`` holds exactly ``files`` (relative path -> cached object), byte for byte."""
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    return found == set(files) and all(md5_of(folder / rel) == _oid(src) for rel, src in files.items())


def _remove_stale(parent: Path) -> None:
    """Temp folders of exports killed mid-copy (call under the store lock: none is in flight)."""
    for tmp in parent.glob(".*.tmp"):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)


def export(md5: str, files: Mapping[str, Path], target: Path, *, tidy: bool = False) -> bool:
    """Copy data version ``md5``'s cached ``files`` into the new folder ``target``.

    Returns False when ``target`` already held exactly these files (left as it is). Raises
    :class:`DataVersionError` when ``target`` holds anything else, or a cached file is corrupt.
    With ``tidy``, temp folders of earlier exports killed mid-copy beside ``target`` are removed
    first (the caller owns that folder and holds the store lock).
    """
    if target.exists() and not target.is_dir():
        raise DataVersionError(f"{target} exists and is not a folder: choose another --to")
    if target.is_dir() and any(target.iterdir()):
        if holds(target, files):
            return False
        raise DataVersionError(f"{target} is not empty and does not hold version {md5}: choose another --to")
    target.parent.mkdir(parents=True, exist_ok=True)
    if tidy:
        _remove_stale(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, src in files.items():
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            if md5_of(dest) != _oid(src):
                raise DataVersionError(f"data version {md5}: the cached copy of {rel} is corrupt (md5 mismatch)")
        if target.is_dir():
            target.rmdir()
        os.rename(tmp, target)
        fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True
