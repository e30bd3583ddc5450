"""Topology probe: one task on the default queue, one on `gpu`; each reports which worker ran it.

Used by tests/production/test_topology.py to prove that the Celery queues route tasks to the
right workers of the production topology.
"""

from __future__ import annotations

import os
import socket

import pendulum
from airflow.sdk import dag, task


def _where() -> dict[str, object]:
    return {
        "queues": os.environ.get("LIFELONG_WORKER_QUEUES", ""),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }


@dag(
    dag_id="lifelong_topology_probe",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["lifelong", "test"],
)
def lifelong_topology_probe() -> None:
    @task(queue="default")
    def on_default() -> dict[str, object]:
        return _where()

    @task(queue="gpu")
    def on_gpu() -> dict[str, object]:
        return _where()

    on_default() >> on_gpu()


lifelong_topology_probe()
