"""Reproducible without Airflow: ``dvc repro`` runs validate > update > evaluate from params.yaml,
reruns only what changed, and ``dvc params diff`` / ``dvc metrics diff`` compare runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from _project import quick_forecaster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
START = date(2012, 5, 1)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_dvc_repro_params_and_metrics(tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    quick_forecaster(raw, warmup=4)
    raw["run"] = {"model": "demand_forecaster", "date": str(START + timedelta(days=4))}
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
    (project / "src" / "lifelong").mkdir(parents=True)
    for part in ("data", "learn", "steps"):  # the stages' code dependencies, as in the repo
        shutil.copytree(REPO / "src" / "lifelong" / part, project / "src" / "lifelong" / part)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "LIFELONG_PROJECT_DIR": str(project),
        "LIFELONG_HOME": str(project / ".lifelong"),
        "LIFELONG_DEVICE": "cpu",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    _run(["git", "init", "-q"], project, env)
    # the warm-up days, landed and stored before the reproduced day (one process: the CLI's
    # simulate and ingest are tested in tests/data)
    store_days = (
        "import datetime as dt, sys\n"
        "from lifelong.data import landing, store\n"
        "start = dt.date.fromisoformat(sys.argv[1])\n"
        "landing.simulate('vic_elec', start, 5)\n"
        "for offset in range(4):\n"
        "    store.ingest('vic_elec', day=start + dt.timedelta(days=offset))\n"
    )
    _run([sys.executable, "-c", store_days, str(START)], project, env)
    dvc = [sys.executable, "-m", "dvc"]

    first = _run([*dvc, "repro"], project, env)
    assert "Running stage 'update'" in first and "Running stage 'evaluate'" in first
    metrics = json.loads((project / "reports" / "dvc" / "metrics.json").read_text())
    assert metrics["mae"] > 0
    _run(["git", "add", "-A"], project, env)
    _run(["git", "commit", "-qm", "first run"], project, env)

    again = _run([*dvc, "repro"], project, env)
    assert "Running stage 'validate'" in again  # always re-validated (idempotent)
    assert "Running stage 'update'" not in again  # nothing it depends on changed

    raw["models"]["demand_forecaster"]["train"]["lr"] = 0.01
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    changed = _run([*dvc, "repro"], project, env)
    assert "Running stage 'update'" in changed
    params_diff = _run([*dvc, "params", "diff"], project, env)
    assert "models.demand_forecaster.train.lr" in params_diff
    metrics_diff = _run([*dvc, "metrics", "diff", "--all"], project, env)
    assert "mae" in metrics_diff
