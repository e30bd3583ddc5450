"""Refused batches, kept with the reason they were refused: ``data/quarantine/<dataset>/<key>/``.

A batch from the landing folder is moved there; a file given from anywhere else is copied
(lifelong does not delete files it does not own). Next to it lies ``<file>.report.json``:
the one-line reason, where the file came from, and the validation result when there was one.
A second refusal for the same key never overwrites the first: names get a ``-2``, ``-3`` suffix.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


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


def quarantine(
    file: Path,
    folder: Path,
    *,
    move: bool,
    reason: str,
    result: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Move (or copy) ``file`` into ``folder`` with its report; returns (file, report) paths."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, file.name)
    if file.exists():
        if move:
            shutil.move(str(file), target)
        elif file.is_dir():
            shutil.copytree(file, target)
        else:
            shutil.copy2(file, target)
    report = target.with_name(target.name + ".report.json")
    body = {
        "refused_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(file),
        "quarantined_as": str(target),
        "reason": reason,
        **(extra or {}),
        "validation_result": result,
    }
    report.write_text(json.dumps(body, indent=2, default=str))
    return target, report
