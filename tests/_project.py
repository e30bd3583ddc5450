"""Isolated lifelong projects for tests: params.yaml, data/ and .lifelong/ of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def quick_forecaster(raw: dict, *, warmup: int, epochs: int = 2, model: str = "demand_forecaster") -> dict:
    """params.yaml's day-ahead forecaster made quick to warm up in a test: the 1-day lag only (no week of
    history needed before the first sample) and a half-day input history; ``warmup`` days for the first model.

    The weekly naive forecast still needs a week of history: before that a day is scored without it.
    """
    spec = raw["models"][model]
    raw["datasets"][spec["dataset"]]["lags"] = ["1d"]
    spec["architecture"].update({"in_channels": spec["architecture"]["in_channels"] - 1, "length": 74})
    spec["warmup_days"] = warmup
    spec["train"]["epochs"] = epochs
    return spec


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
