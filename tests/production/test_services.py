"""Services failing in the middle of a run, in the production topology.

After the session's catch-up (production_run.py), the model's ``end_date`` in params.yaml is
moved on by a day (and the DAG file re-parsed through the REST API), twice; the scheduler runs
each new day, each time with a service failing:

1. the MLflow server stopped before the run: the tasks that need it retry with backoff
   (params.yaml ``retry``) and then fail with a one-line message naming the server; the day's
   data is stored once, nothing is registered, ``champion`` does not move. The server comes
   back and the run is cleared; while it runs again, the update task's process is killed
   (kill -9) on the GPU worker: Airflow retries it on its own, and the day ends correct. (One
   day for both faults: each day through the scheduler costs minutes of the suite.)
2. PostgreSQL "restarting" while the update trains: every connection to the topology's
   databases (Airflow's and MLflow's) is cut and new ones are refused for a few seconds.
   The run ends (after Airflow's retries, or cleared once if it failed) with the day correct.

"Correct" is ``tests/faults``' definition (``_faults_kit.assert_day_correct``), read from the
MLflow server and the worker's project by a separate process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from production_run import DAILY, DAYS, MODEL, RETRIES, START, Production
from topology import _http_ok, database_outage

pytestmark = [pytest.mark.production, pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "faults"))
import _faults_kit as kit  # noqa: E402

OUTAGE_S = 8


def _inspect(production: Production) -> dict:
    """``_faults_kit.inspect`` in a fresh process with the workers' environment (MLflow server, project)."""
    code = "import json, sys, _faults_kit as k; print('INSPECT' + json.dumps(k.inspect(sys.argv[1]), default=str))"
    env = dict(production.topo.env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS / "faults"), str(TESTS), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code, MODEL],
        env=env,
        cwd=production.project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.rpartition("INSPECT")[2])


def _task_log(production: Production, run_id: str, task_id: str, attempt: int) -> str:
    logs = Path(production.topo.env["AIRFLOW_HOME"]) / "logs"
    found = list(logs.rglob(f"dag_id={DAILY}/run_id={run_id}/task_id={task_id}/attempt={attempt}.log"))
    return found[0].read_text(errors="replace") if found else ""


def _schedule_one_more_day(production: Production) -> tuple[dt.date, str]:
    """Move ``end_date`` on by a day and have the DAG re-parsed; return the day and the scheduler's run of it."""
    topo, path = production.topo, production.project / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    spec = raw["models"][MODEL]
    the_day = dt.date.fromisoformat(str(spec["end_date"])) + dt.timedelta(days=1)
    spec["end_date"] = str(the_day)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    topo.api("PUT", f"/parseDagFile/{topo.api('GET', f'/dags/{DAILY}/details')['file_token']}")
    deadline = time.monotonic() + 300
    while True:
        [last] = topo.api("GET", f"/dags/{DAILY}/dagRuns?order_by=-logical_date&limit=1")["dag_runs"]
        if last["logical_date"].startswith(str(the_day)):
            return the_day, str(last["dag_run_id"])
        assert time.monotonic() < deadline, f"no run of {the_day} after 300 s; last: {last}"
        time.sleep(2)


def _wait_until_running(production: Production, run_id: str, task_id: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while production.topo.task_instances(DAILY, run_id).get(task_id, {}).get("state") != "running":
        assert time.monotonic() < deadline, production.topo.task_instances(DAILY, run_id)
        time.sleep(0.5)


def test_mlflow_server_stopped_tasks_retry_then_fail_clearly_and_the_next_run_succeeds(production: Production):
    topo = production.topo
    before = _inspect(production)
    assert before["champion"] is not None

    topo.stop_service("mlflow")
    try:
        the_day, run_id = _schedule_one_more_day(production)
        assert the_day == START + dt.timedelta(days=DAYS)
        assert topo.wait_for_run(DAILY, run_id, timeout=420) == "failed"
        tis = topo.task_instances(DAILY, run_id)
        assert tis["validate_ingest"]["state"] == "success", tis  # needs no MLflow: the day is stored
        failed = [t for t, ti in tis.items() if ti["state"] == "failed" and t != "report"]
        assert failed, {t: ti["state"] for t, ti in tis.items()}
        for task_id in failed:
            assert tis[task_id]["try_number"] == RETRIES + 1, tis[task_id]  # retried, with backoff
            last = _task_log(production, run_id, task_id, RETRIES + 1)
            assert f"the MLflow server {topo.mlflow_url} did not answer" in last, last[-3000:]
            assert f"try {RETRIES + 1} of {RETRIES + 1}, the last" in last, last[-3000:]
            first = _task_log(production, run_id, task_id, 1)
            assert f"try 1 of {RETRIES + 1}: Airflow retries with backoff" in first, first[-3000:]
    finally:
        topo.start_service("mlflow", _http_ok(f"{topo.mlflow_url}/health"))

    during = _inspect(production)
    kit.assert_safe(during)
    assert during["champion"] == before["champion"] and during["versions"] == before["versions"]
    assert during["partitions"][str(the_day)] == {"rows": 48, "unique_times": 48}

    failed_tries = tis["update"]["try_number"]
    topo.clear_run(DAILY, run_id)  # the server is back: run the day again
    _kill_the_update(production, run_id)  # and lose its update's process on the way: Airflow retries it
    assert topo.wait_for_run(DAILY, run_id, timeout=420) == "success", topo.task_instances(DAILY, run_id)
    update = topo.task_instances(DAILY, run_id)["update"]
    # the cleared run's first try was killed, its retry succeeded, both on the GPU worker
    assert update["try_number"] == failed_tries + 2 and update["hostname"] == "airflow-worker-gpu", update
    kit.assert_day_correct(_inspect(production), str(the_day))


def test_postgres_restarting_mid_update_leaves_nothing_corrupt_and_the_day_ends_correct(production: Production):
    topo = production.topo
    the_day, run_id = _schedule_one_more_day(production)
    assert the_day == START + dt.timedelta(days=DAYS + 1)
    _wait_until_running(production, run_id, "update")
    with topo.restarting() as restarted:
        with database_outage(topo.databases):
            time.sleep(OUTAGE_S)
        state = topo.wait_for_run(DAILY, run_id, timeout=420)
        tries = {t: (ti["state"], ti["try_number"]) for t, ti in topo.task_instances(DAILY, run_id).items()}
        print(f"after the outage: run {state}; restarted: {restarted}; tasks: {tries}")
        if state != "success":  # every retry fell inside the outage: run the day again
            kit.assert_safe(_inspect(production))
            topo.clear_run(DAILY, run_id)
            state = topo.wait_for_run(DAILY, run_id, timeout=420)
    assert state == "success", topo.task_instances(DAILY, run_id)
    kit.assert_day_correct(_inspect(production), str(the_day))


def _task_processes(worker: Any) -> list[psutil.Process]:
    """The processes running a task on ``worker``: below its Celery pool process (worker > pool > task)."""
    main = psutil.Process(worker.proc.pid)
    pool = main.children()
    return [p for child in pool for p in child.children(recursive=True)]


def _kill_the_update(production: Production, run_id: str) -> None:
    """kill -9 of the update task's process on the GPU worker (a lost worker, the OOM killer)."""
    _wait_until_running(production, run_id, "update")
    deadline = time.monotonic() + 60
    while not (victims := _task_processes(production.topo.services["airflow-worker-gpu"])):
        assert time.monotonic() < deadline, "no task process under the GPU worker"
        time.sleep(0.2)
    for process in victims:
        process.send_signal(signal.SIGKILL)
