"""Celery settings of lifelong's Airflow workers: the pipeline's libraries imported once per worker.

Airflow 3's Celery worker runs each task instance in a process it forks from one of its pool
processes (``airflow.sdk.execution_time.supervisor``), and the pool processes are forks of the
worker's main process. What the main process imported, every task inherits; what a task imports
dies with it. A lifelong step needs torch, pandas, MLflow, Great Expectations and DVC: imported in
every task, they cost seconds of CPU per task, more than the step's own work on a daily day
(bench/RESULTS.md section 2d). Naming this module's :data:`CELERY_CONFIG` in ``[celery]
celery_config_options`` (``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS``, set for every Airflow
service in docker-compose.yml) makes the worker import :mod:`lifelong.airflow.worker_imports` once,
at start, before it forks its pool (Celery's ``imports`` setting, which only a worker reads).

This module itself stays cheap: the scheduler and the API server import it too, to build the
Celery app that sends tasks, and they never load the heavy libraries.
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

WORKER_IMPORTS = "lifelong.airflow.worker_imports"

CELERY_CONFIG = {
    **DEFAULT_CELERY_CONFIG,
    "imports": [*DEFAULT_CELERY_CONFIG.get("imports", ()), WORKER_IMPORTS],
}
