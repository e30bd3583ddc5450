"""The DAG files: they parse fast, without errors, and carry their docs and Params."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    from lifelong.airflow.embedded_runner import airflow_env
    from lifelong.config import load_settings

    home = tmp_path_factory.mktemp("home")
    settings = load_settings({"LIFELONG_PROJECT_DIR": str(REPO), "LIFELONG_HOME": str(home)})
    env = airflow_env(settings, base={})
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        from airflow.dag_processing.dagbag import DagBag

        started = time.perf_counter()
        bag = DagBag(dag_folder=str(REPO / "dags"))
        bag.parse_seconds = time.perf_counter() - started
        yield bag
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"lifelong_daily__demand_forecaster", "lifelong_add_task"}


def test_dag_files_parse_fast(dagbag):
    """Parsing imports nothing heavy: what keeps it fast is structural, and asserted as such (the time it
    takes is measured in bench/, not here; a generous bound only catches a parse that hangs)."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "before = set(sys.modules)\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "print(json.dumps({'errors': list(bag.import_errors), 'new': sorted(set(sys.modules) - before)}))\n"
    )
    env = {**os.environ, "LIFELONG_PROJECT_DIR": str(REPO)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = ("torch", "mlflow", "great_expectations", "dvc", "pandas", "matplotlib", "scipy", "lifelong.steps")
    assert not found["errors"]
    assert not [m for m in found["new"] if m.split(".")[0] in heavy or m.startswith("lifelong.steps")]
    assert dagbag.parse_seconds < 10.0


def test_daily_dag_shape(dagbag):
    dag = dagbag.dags["lifelong_daily__demand_forecaster"]
    assert dag.max_active_runs == 1
    assert dag.catchup is True
    assert dag.doc_md and "test-then-train" in dag.doc_md.lower()
    ids = set(dag.task_ids)
    assert {"validate_ingest", "check_drift", "update", "evaluate", "gate", "promote", "reject", "report"} <= ids
    update = dag.get_task("update")
    assert update.queue == "gpu"
    assert update.pool == "lifelong__demand_forecaster"
    report = dag.get_task("report")
    # runs whatever happened (all done, there being no setup task), and leaves the run's state to the work
    assert report.is_teardown and report.trigger_rule == "all_done_setup_success"
    assert not any(dag.get_task(t).is_setup for t in report.upstream_task_ids)
    assert dag.get_task("validate_ingest").outlets


def test_daily_dag_consolidates_on_a_task_shift_only(dagbag):
    """check_drift > task_shift (a branch) > consolidate > update, and update also straight from the branch:
    it runs after consolidate or with it skipped, never after a failure."""
    dag = dagbag.dags["lifelong_daily__demand_forecaster"]
    branch, consolidate, update = (dag.get_task(t) for t in ("task_shift", "consolidate", "update"))
    assert "check_drift" in branch.upstream_task_ids
    assert branch.downstream_task_ids == {"consolidate", "update"}
    assert type(branch).__name__ == "_BranchPythonDecoratedOperator"
    assert "update" in consolidate.downstream_task_ids
    assert (consolidate.queue, consolidate.pool) == ("gpu", "lifelong__demand_forecaster")
    assert update.trigger_rule == "none_failed_min_one_success"
    assert dag.params["task_shift"] is False


def test_daily_dag_watches_after_either_decision_and_alerts_on_final_failure(dagbag):
    dag = dagbag.dags["lifelong_daily__demand_forecaster"]
    watch = dag.get_task("watch")
    assert watch.upstream_task_ids == {"validate_ingest", "promote", "reject"}
    assert watch.trigger_rule == "none_failed"  # after promote or reject or a skip; not after a quarantine
    assert watch.pool == "lifelong__demand_forecaster"
    assert "watch" in dag.get_task("report").upstream_task_ids
    for task in dag.tasks:
        assert task.on_failure_callback, task.task_id


def test_daily_dag_publishes_after_the_watch(dagbag):
    dag = dagbag.dags["lifelong_daily__demand_forecaster"]
    publish = dag.get_task("publish")
    assert publish.upstream_task_ids == {"validate_ingest", "watch"}
    assert publish.trigger_rule == "none_failed"  # skipped with the watch; never after a quarantine
    assert "publish" in dag.get_task("report").upstream_task_ids


def test_add_task_params_refuse_unknown_strategy(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    dag = dagbag.dags["lifelong_add_task"]
    assert dag.schedule is None or dag.timetable.summary in ("None", "")
    assert dag.params.get_param("strategy").resolve(value="lwf+replay") == "lwf+replay"
    assert dag.params.get_param("task").resolve(value="FordB") == "FordB"
    with pytest.raises(ParamValidationError):
        dag.params.get_param("strategy").resolve(value="magic")


@pytest.mark.parametrize("task", ["../../etc/passwd", "a;rm -rf /", "$(id)", "a b", "M1\n", "M1\nM2"])
def test_add_task_params_refuse_unsafe_task_names(dagbag, task):
    from airflow.sdk.definitions.param import ParamValidationError

    dag = dagbag.dags["lifelong_add_task"]
    with pytest.raises(ParamValidationError):
        dag.params.get_param("task").resolve(value=task)


@pytest.mark.parametrize(
    "file", ["/", "/proc/self/environ", "../../etc/passwd", "M1/../../x.csv", "./M1.csv", ".hidden", "M1.csv\n", "a;b"]
)
def test_add_task_file_param_is_a_path_under_the_landing_folder(dagbag, file):
    from airflow.sdk.definitions.param import ParamValidationError

    param = dagbag.dags["lifelong_add_task"].params.get_param("file")
    with pytest.raises(ParamValidationError):
        param.resolve(value=file)


def test_add_task_file_param_accepts_landing_files(dagbag):
    param = dagbag.dags["lifelong_add_task"].params.get_param("file")
    for file in ("FordB.parquet", "2024/FordB_v2.csv", None):
        assert param.resolve(value=file) == file


def test_add_task_dag_runs_the_fisher_and_the_training_on_the_gpu_queue(dagbag):
    dag = dagbag.dags["lifelong_add_task"]
    assert dag.get_task("consolidate").queue == dag.get_task("learn_task").queue == "gpu"
    assert dag.get_task("validate_ingest").queue != "gpu"


def test_add_task_form_takes_forecasters_and_a_date_range(dagbag):
    """A forecaster can be picked, its task's days given as start/end dates (whole values only); the
    pairing of model and task is checked by validate_ingest (tests/steps/test_forecast_task.py)."""
    from airflow.sdk.definitions.param import ParamValidationError

    params = dagbag.dags["lifelong_add_task"].params
    assert params.get_param("model").resolve(value="demand_forecaster") == "demand_forecaster"
    for name in ("start", "end"):
        assert params.get_param(name).resolve(value="2012-03-01") == "2012-03-01"
        assert params.get_param(name).resolve(value=None) is None
        for bad in ("2012-3-1", "2012-03-01\n", "yesterday"):
            with pytest.raises(ParamValidationError):
                params.get_param(name).resolve(value=bad)


def test_the_daily_dag_file_reads_params_once_whatever_the_number_of_models(tmp_path):
    """One DAG per model, but params.yaml read once per parse: read per DAG, the parse grew with the
    square of the models (10 s for 50; bench/dag_parse.py measures it)."""
    import json
    import subprocess
    import sys

    sys.path.insert(0, str(REPO))
    from bench.dag_parse import project_with_models

    project = project_with_models(tmp_path / "project", 3)
    probe = (
        "import json\n"
        "import lifelong.config as config\n"
        "calls = []\n"
        "real = config.load_params\n"
        "config.load_params = lambda *a, **k: calls.append(1) or real(*a, **k)\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags' / 'lifelong_daily.py')!r})\n"
        "print(json.dumps({'dags': sorted(bag.dag_ids), 'reads': len(calls), 'errors': list(bag.import_errors)}))\n"
    )
    env = {**os.environ, "LIFELONG_PROJECT_DIR": str(project), "LIFELONG_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert not found["errors"] and len(found["dags"]) == 3, found
    assert found["reads"] == 1, found
