"""Refused batches, kept with the reason they were refused: ``data/quarantine/<dataset>/<key>/``.

A batch from the landing folder is moved there; a file given from anywhere else is copied
(lifelong does not delete files it does not own). Next to it lies ``<file>.report.json``:
the one-line reason, where the file came from, and the validation result when there was one.
A second refusal for the same key never overwrites the first: names get a ``-2``, ``-3`` suffix.

Only a regular file is kept: a directory, a FIFO, a device or a symbolic link is neither moved
nor copied (the report says so), and a copy stops at the data set's size limit, so a refused
file can never fill the volume. The report is written whatever happens to the file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lifelong.data.files import fsync_dir, tmp_name, write_atomic

CHUNK = 1 << 20


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-N.suffix`` for the first N not taken."""
    candidate = folder / name
    suffix = Path(name).suffix
    stem = name[: len(name) - len(suffix)]
    n = 2
    while candidate.exists() or candidate.with_name(candidate.name + ".report.json").exists():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def _copy_bounded(file: Path, target: Path, max_bytes: int) -> str | None:
    """Copy the regular file ``file`` to ``target`` if it holds at most ``max_bytes``; else why not."""
    fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return "not copied: not a regular file"
        tmp = tmp_name(target)
        try:
            copied = 0
            with tmp.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    copied += len(chunk)
                    if copied > max_bytes:
                        return f"not copied: over the size limit of {max_bytes / 2**20:g} MB"
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    shutil.copystat(file, target, follow_symlinks=False)
    return None


def _keep(file: Path, target: Path, *, move: bool, max_bytes: int) -> str | None:
    """Move or copy ``file`` to ``target``; None when it was kept, else the reason it was not."""
    try:
        info = os.lstat(file)
    except FileNotFoundError:
        return "not kept: the file is gone"
    if not stat.S_ISREG(info.st_mode):
        return f"not {'moved' if move else 'copied'}: not a regular file"
    try:
        if move:
            shutil.move(str(file), target)
            return None
        return _copy_bounded(file, target, max_bytes)
    except OSError as exc:
        return f"not kept: {exc.strerror or type(exc).__name__}"


def quarantine(
    file: Path,
    folder: Path,
    *,
    move: bool,
    reason: str,
    max_bytes: int,
    result: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path | None, Path]:
    """Move (or copy) ``file`` into ``folder`` with its report; returns (file or None, report).

    The file is None when it was not kept (see the module docstring); the report says why.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, file.name)
    not_kept = _keep(file, target, move=move, max_bytes=max_bytes)
    report = target.with_name(target.name + ".report.json")
    body = {
        "refused_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(file),
        "quarantined_as": None if not_kept else str(target),
        "reason": reason,
        **({"not_kept": not_kept} if not_kept else {}),
        **(extra or {}),
        "validation_result": result,
    }
    write_atomic(report, json.dumps(body, indent=2, default=str).encode())
    fsync_dir(folder)
    return (None if not_kept else target), report
