"""Isolated lifelong projects for tests: params.yaml, data/ and .lifelong/ of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def point_at(project: Path, mp: pytest.MonkeyPatch) -> None:
    """Make lifelong (settings, stores, cwd) use ``project`` until ``mp`` is undone."""
    mp.setenv("LIFELONG_PROJECT_DIR", str(project))
    mp.setenv("LIFELONG_HOME", str(project / ".lifelong"))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("LIFELONG_DEVICE", "cpu")
    mp.chdir(project)


@contextmanager
def project_with(root: Path, edit: Callable[[dict], None]) -> Iterator[Path]:
    """A project under ``root`` whose params.yaml is the repo's changed by ``edit``; for module-scoped fixtures."""
    project = root / "project"
    project.mkdir()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(raw)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    mp = pytest.MonkeyPatch()
    point_at(project, mp)
    try:
        yield project
    finally:
        mp.undo()
