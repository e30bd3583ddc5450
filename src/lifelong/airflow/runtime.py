"""What a DAG task needs around a ``lifelong.pipeline`` call: run info and error mapping.

Kept apart from the DAG files so that they hold no logic, and apart from
``operators.py`` so that TaskFlow DAGs and operator users share one behaviour:

* a refused batch or an invalid parameter fails the task at once (no retry: retrying
  cannot make bad data good);
* "nothing to do yet" (warming up, no day to train on) skips the task and its
  dependants, while the ``report`` task still runs;
* anything else (a store unreachable, a worker killed) raises, and Airflow retries
  with backoff.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parents[3]


def project_env() -> None:
    """Point lifelong at its project when Airflow did not say where it is."""
    if "LIFELONG_PROJECT_DIR" not in os.environ and (REPO_DIR / "params.yaml").exists():
        os.environ["LIFELONG_PROJECT_DIR"] = str(REPO_DIR)


def run_info(context: Mapping[str, Any]) -> dict:
    """The small, JSON-able description of the running task instance."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    logical = context.get("logical_date")
    return {
        "dag_id": getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", None),
        "dag_run_id": getattr(dag_run, "run_id", None) or context.get("run_id"),
        "logical_date": logical.isoformat() if hasattr(logical, "isoformat") else logical,
        "try_number": getattr(ti, "try_number", None),
    }


def call(step: Callable[..., dict], *args: Any, context: Mapping[str, Any], **kwargs: Any) -> dict:
    """Run one pipeline step inside a task, mapping lifelong errors to Airflow outcomes."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from lifelong.config import ConfigError
    from lifelong.errors import RefusedBatch, StateError
    from lifelong.pipeline import NotReady

    project_env()
    try:
        return step(*args, run_info=run_info(context), **kwargs)
    except NotReady as exc:
        raise AirflowSkipException(str(exc)) from None
    except (RefusedBatch, ConfigError, StateError) as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from None
