"""Fixtures of the fault tests: one warmed-up project per module, restored from a snapshot before each test.

Building a project with a first champion costs ~30 s (three days stored, a first model
trained and registered), so it is built once for all the fault tests and snapshotted; each test starts from
an exact copy at the same absolute path (MLflow and DVC record absolute paths).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import _faults_kit as kit
import pytest


@dataclass(frozen=True)
class Base:
    project: Path
    snap: Path
    first_run: dict  # run_day of the bootstrap day: the first champion

    def fresh(self) -> Path:
        kit.restore(self.project, self.snap)
        return self.project


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    root = tmp_path_factory.mktemp("faults")
    project = root / "project"
    kit.write_params(project)
    days = [kit.day(i) for i in range(4)]
    first = kit.ok(kit.run(project, "_faults_kit:build_base", kit.MODEL, days))
    assert first.get("promote"), first
    snap = root / "snapshot"
    kit.snapshot(project, snap)
    yield Base(project, snap, first)
