"""The production topology, natively: Celery routes the `gpu` queue to the GPU worker.

Starts the processes of docker-compose.yml (see topology.py) on the machine's PostgreSQL and
Redis, triggers a probe DAG through the Airflow REST API with a token, and checks which worker
ran each task; then checks that every process, database and Redis key is gone.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
import redis
import requests
from topology import REDIS_HOST, REDIS_PORT, production_topology, services_available

pytestmark = [pytest.mark.production, pytest.mark.slow]

DAGS = Path(__file__).parent / "dags"
PROBE = "lifelong_topology_probe"


@pytest.fixture(scope="module")
def _services() -> None:
    if not services_available():
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")


def test_gpu_queue_runs_on_gpu_worker(_services: None, tmp_path: Path) -> None:
    with production_topology(DAGS, tmp_path) as topo:
        # MLflow: authentication is on
        search = f"{topo.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(search, timeout=60).status_code == 401
        assert requests.get(search, timeout=60, auth=(topo.mlflow_user, topo.mlflow_password)).status_code == 200
        # Airflow: authentication is on
        assert requests.get(f"{topo.airflow_url}/api/v2/dags", timeout=60).status_code == 401

        topo.wait_for_dag(PROBE)
        topo.unpause(PROBE)
        run_id = topo.trigger(PROBE)
        state = topo.wait_for_run(PROBE, run_id, timeout=300)
        tis = topo.task_instances(PROBE, run_id)
        where = {t: topo.xcom(PROBE, run_id, t) for t in ("on_default", "on_gpu")}
        pids, dbs, redis_db, timings = topo.pids, topo.databases, topo.redis_db, topo.timings

    print("topology timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}))
    assert state == "success", tis
    assert tis["on_gpu"]["queue"] == "gpu"
    assert tis["on_gpu"]["hostname"] == "airflow-worker-gpu"
    assert where["on_gpu"]["queues"] == "gpu"
    assert tis["on_default"]["queue"] == "default"
    assert tis["on_default"]["hostname"] == "airflow-worker"
    assert where["on_default"]["queues"] == "default"

    # everything it started is gone: processes, databases, Redis keys
    assert not [
        name
        for name, pid in pids.items()
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert dbs.exist() == []
    assert redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db).dbsize() == 0
