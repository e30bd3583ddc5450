"""Kill -9 inside a real Airflow run of the daily DAG, then run the day again through Airflow.

``dag.test`` runs the tasks inside the DAG-run process, so the kill takes down the whole
run, as a lost worker takes down its task; Airflow's scheduler would retry that task, here
the day is run again. The second run clears the task instances of that date and runs them
all: the ingest finds its partition stored, the update trains the candidate the killed
try never logged, and the day ends as an undisturbed one.
"""

from __future__ import annotations

import _faults_kit as kit
import pytest

pytestmark = pytest.mark.slow

DAG = f"lifelong_daily__{kit.MODEL}"


def test_kill_9_in_the_middle_of_training_under_airflow_then_rerun(base, tmp_path, monkeypatch):
    from lifelong.airflow.embedded_runner import run_dag
    from lifelong.errors import LifelongError

    project = base.fresh()
    the_day = kit.day(4)
    for name, value in kit.project_env(project).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LIFELONG_FAULT", "train_epoch")
    monkeypatch.setenv("LIFELONG_FAULT_MARKER", str(tmp_path / "fired"))

    with pytest.raises(LifelongError, match="exit -9"):
        run_dag(DAG, [the_day])
    assert (tmp_path / "fired").exists()
    kit.assert_safe(kit.ok(kit.run(project, "_faults_kit:inspect", kit.MODEL)))

    [rerun] = run_dag(DAG, [the_day])
    assert rerun["state"] == "success", rerun
    assert rerun["tasks"]["update"] == "success" and rerun["tasks"]["report"] == "success", rerun
    kit.assert_day_correct(kit.ok(kit.run(project, "_faults_kit:inspect", kit.MODEL)), the_day)
