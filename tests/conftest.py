"""Shared fixtures: an isolated lifelong workspace per test.

A workspace is a temporary project folder (params.yaml copied from the repo, its own
``data/``, its own ``.lifelong/`` home with an embedded MLflow store and DVC remote), so
tests never touch the user's stores and can run in any order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _project import point_at

REPO = Path(__file__).resolve().parents[1]

# Keep torch and BLAS to one thread: the suite must run on 2 cores next to Airflow.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder with params.yaml; LIFELONG_* point at it."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    point_at(project, monkeypatch)
    return project


SHARED_FIXTURE_DIRS = ("tests/production", "tests/faults")  # session fixtures shared across their files
LONGEST_SCOPE = "tests/production"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    """Child processes a test starts (append them): any still running at the end is killed, all reaped."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under ``pytest -n 2 --dist loadscope`` (``make test``): whole files to a worker, and a whole
    directory where its files share a session fixture (the production topology, the faults'
    base project), so that no fixture is built twice. (``--dist loadgroup`` cannot be used:
    pytest-xdist 3.8 marks groups through ``Item._nodeid``, which pytest 9 no longer reads.)
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFixtureScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            shared = [d for d in SHARED_FIXTURE_DIRS if path.startswith(d + "/")]
            return shared[0] if shared else path

        def _assign_work_unit(self, node: object) -> None:
            # the longest chain first (the production topology's days through the scheduler, most of a
            # worker's share): started any later, it alone would set the suite's wall time
            if LONGEST_SCOPE in self.workqueue:
                self.workqueue.move_to_end(LONGEST_SCOPE, last=False)
            super()._assign_work_unit(node)  # type: ignore[arg-type]

    return ByFixtureScope(config, log)
