"""Helpers of the data tests (imported as ``_data_kit``; fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make_workspace(root: Path, mp: pytest.MonkeyPatch) -> Path:
    project = root / "project"
    project.mkdir(parents=True)
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    mp.setenv("LIFELONG_PROJECT_DIR", str(project))
    mp.setenv("LIFELONG_HOME", str(project / ".lifelong"))
    mp.delenv("LIFELONG_DVC_REMOTE", raising=False)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("LIFELONG_DEVICE", "cpu")
    mp.chdir(project)
    return project


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative names)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def store_files(project: Path) -> dict[str, str]:
    """The versioned part of data/: everything but landing/ and quarantine/."""
    data = project / "data"
    return {
        name: sha
        for name, sha in digest(data).items()
        if not name.startswith(("landing" + os.sep, "quarantine" + os.sep))
    }
