"""The production topology, natively: the REST API, the Celery queues, the real daily DAG.

The session fixture ``production`` (conftest.py) starts the processes of docker-compose.yml
(see topology.py) on the machine's PostgreSQL and Redis and runs the probe DAG and two days
of the daily DAG on them. These tests check, through the Airflow REST API (with a token) and
the MLflow server's REST API (with basic auth), what ran where and what the registry holds;
the last one stops the topology and checks that every process, database and Redis key is gone.
"""

from __future__ import annotations

import datetime as dt
import json

import psutil
import pytest
import redis
import requests
from production_run import DAYS, MODEL, PROBE, START, WARMUP, Production, step_timings
from topology import REDIS_HOST, REDIS_PORT

pytestmark = [pytest.mark.production, pytest.mark.slow]


def _day(logical_date: str) -> dt.date:
    return dt.datetime.fromisoformat(logical_date.replace("Z", "+00:00")).date()


def test_authentication_is_on(production: Production) -> None:
    topo = production.topo
    search = f"{topo.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, timeout=60).status_code == 401
    assert requests.get(search, timeout=60, auth=(topo.mlflow_user, topo.mlflow_password)).status_code == 200
    # the server caches a successful login (docker/mlflow-server.sh), never a failed one
    assert requests.get(search, timeout=60, auth=(topo.mlflow_user, "wrong")).status_code == 401
    assert requests.get(f"{topo.airflow_url}/api/v2/dags", timeout=60).status_code == 401
    bad = {"username": topo.admin_user, "password": "wrong"}
    assert requests.post(f"{topo.airflow_url}/auth/token", json=bad, timeout=60).status_code == 401


def test_gpu_queue_runs_on_gpu_worker(production: Production) -> None:
    topo, run_id = production.topo, production.probe_run
    tis = topo.task_instances(PROBE, run_id)
    assert production.probe_state == "success", tis
    where = {t: topo.xcom(PROBE, run_id, t) for t in ("on_default", "on_gpu")}
    assert tis["on_gpu"]["queue"] == "gpu"
    assert tis["on_gpu"]["hostname"] == "airflow-worker-gpu"
    assert where["on_gpu"]["queues"] == "gpu"
    assert tis["on_default"]["queue"] == "default"
    assert tis["on_default"]["hostname"] == "airflow-worker"
    assert where["on_default"]["queues"] == "default"


def test_daily_dag_catches_up_missed_days_in_order(production: Production) -> None:
    runs = production.daily_runs
    states = {r["logical_date"]: (r["run_type"], r["state"]) for r in runs}
    assert [_day(r["logical_date"]) for r in runs] == [START + dt.timedelta(days=i) for i in range(DAYS)], states
    assert all(r["run_type"] == "scheduled" and r["state"] == "success" for r in runs), states
    # one run at a time, oldest first: each day started after the day before it had ended
    for before, after in zip(runs, runs[1:], strict=False):
        assert after["start_date"] >= before["end_date"], (before, after)


def test_update_runs_on_the_gpu_worker(production: Production) -> None:
    by_day = {_day(r["logical_date"]): production.daily_tis[r["dag_run_id"]] for r in production.daily_runs}
    days = sorted(by_day)
    for day in days[:WARMUP]:  # warming up: data is ingested, no model yet
        assert by_day[day]["validate_ingest"]["state"] == "success"
        assert by_day[day]["update"]["state"] == "skipped"
    first = by_day[days[WARMUP]]
    assert first["update"]["state"] == "success"
    assert first["update"]["queue"] == "gpu"
    assert first["update"]["hostname"] == "airflow-worker-gpu"
    assert first["promote"]["state"] == "success"
    gpu_tasks = {"update", "consolidate"}  # the daily DAG's two training steps: queue gpu
    for tis in by_day.values():
        ran = {t: ti for t, ti in tis.items() if ti["state"] == "success"}
        on_default = {t: ti for t, ti in ran.items() if t not in gpu_tasks}
        on_gpu = {t: ti for t, ti in ran.items() if t in gpu_tasks}
        assert on_default and {ti["hostname"] for ti in on_default.values()} == {"airflow-worker"}, ran
        assert all(ti["queue"] == "gpu" and ti["hostname"] == "airflow-worker-gpu" for ti in on_gpu.values()), ran


def test_tasks_start_from_a_worker_that_imported_the_pipeline(production: Production) -> None:
    """Each step ran in a process forked from a worker that had imported torch, MLflow, GX and DVC already
    (lifelong.airflow.celery_preload): no task paid for those imports."""
    records = [json.loads(line) for line in step_timings(production.workdir).read_text().splitlines()]
    ran = {(r["dag_run_id"], r["task_id"]) for r in records}
    expected = {
        (run_id, task)
        for run_id, tis in production.daily_tis.items()
        for task, ti in tis.items()
        if ti["state"] == "success" and task != "task_shift"  # the one task that calls no step
    }
    assert expected <= ran, expected - ran
    assert [r for r in records if not r["warm"]] == []
    assert all(r["process_started"] <= r["began"] <= r["ended"] for r in records)


def test_mlflow_server_registry_has_the_champion(production: Production) -> None:
    topo = production.topo
    auth = (topo.mlflow_user, topo.mlflow_password)
    api = f"{topo.mlflow_url}/api/2.0/mlflow"
    r = requests.get(
        f"{api}/registered-models/alias", params={"name": MODEL, "alias": "champion"}, auth=auth, timeout=60
    )
    assert r.status_code == 200, r.text
    version = r.json()["model_version"]
    assert "champion" in version["aliases"]
    assert version["status"] == "READY"
    run = requests.get(f"{api}/runs/get", params={"run_id": version["run_id"]}, auth=auth, timeout=60).json()["run"]
    # artifacts went through the server (proxied), not to a local file:// path of the worker
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:"), run["info"]["artifact_uri"]
    stored = list((production.workdir / "topology" / "mlartifacts").rglob("*.safetensors"))
    assert stored, "no safetensors under the MLflow server's artifact destination"
    # the worker's own home holds no MLflow store: the registry is the server's
    assert not (production.project / ".lifelong" / "mlflow.db").exists()
    assert not (production.project / ".lifelong" / "mlartifacts").exists()


def test_everything_it_started_is_stopped(production: Production) -> None:
    """Last test of the session's topology: stop it, then nothing may be left behind."""
    topo = production.topo
    production.close()
    print("topology timings (s):", json.dumps({k: round(v, 1) for k, v in topo.timings.items()}))
    left = [
        name
        for name, pid in topo.pids.items()
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert left == []
    assert topo.databases.exist() == []
    assert redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=topo.redis_db).dbsize() == 0
