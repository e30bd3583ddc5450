"""Inside a running Airflow task: the run info and error mapping around one step call.

Kept apart from the DAG files so that they hold no logic. A task names its step as
``"<module>.<function>"`` of :mod:`lifelong.steps` (``"daily.update"``), imported when the task
runs, never when the DAG file is parsed. Errors map to Airflow outcomes:

* a refused batch, an invalid parameter or a task that does not fit its model fails the task
  at once (no retry: retrying cannot make bad data good);
* "nothing to do yet" (warming up, no day to train on) skips the task and its
  dependants, while the ``report`` task still runs;
* anything else (a store unreachable, a worker killed) raises, and Airflow retries
  with backoff.

A refused batch (quarantine) and a task's final failure (no retry left) also send an alert
(:mod:`lifelong.notify`; off unless ``LIFELONG_ALERT_WEBHOOK`` is set).

Each step's time is logged in the task's log (``step daily.update: 0.87 s``); with
``LIFELONG_STEP_TIMINGS`` naming a file, a JSON line per step call is appended to it as well:
when the task process started, when the step began and ended, and whether the process found
the pipeline's libraries already imported (a preloading worker, :mod:`.celery_preload`).
``bench/fleet.py`` reads them to split a task's time into queueing, start and work.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parents[3]
STEP_TIMINGS_ENV = "LIFELONG_STEP_TIMINGS"
log = logging.getLogger("lifelong.task")


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


def step_function(name: str) -> Callable[..., Any]:
    """The step ``"<module>.<function>"`` of :mod:`lifelong.steps`.

    >>> step_function("decide.gate").__name__
    'gate'
    """
    module, _, function = name.partition(".")
    found = getattr(importlib.import_module(f"lifelong.steps.{module}"), function, None)
    if not callable(found):
        raise LookupError(f"no step {name!r} in lifelong.steps")
    return found


def call(step: str, *args: Any, context: Mapping[str, Any], **kwargs: Any) -> Any:
    """Run the step ``step`` (``"daily.update"``) inside a task, mapping lifelong errors to Airflow outcomes."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from lifelong.config import ConfigError
    from lifelong.errors import MissingForecastInputs, RefusedBatch, StateError, TaskMismatch
    from lifelong.steps.context import NotReady

    project_env()
    info = run_info(context)
    warm = "torch" in sys.modules  # imported before the step: by a preloading worker, or an earlier step here
    began = time.time()
    outcome = "error"
    try:
        result = step_function(step)(*args, run_info=info, **kwargs)
        outcome = "ok"
        return result
    except NotReady as exc:
        outcome = "skipped"
        raise AirflowSkipException(str(exc)) from None
    except (RefusedBatch, ConfigError, StateError, MissingForecastInputs, TaskMismatch) as exc:
        if isinstance(exc, RefusedBatch):
            _alert_quarantine(args[0] if args else None, info, exc)
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:
        unreachable = service_unavailable(exc, try_number=info["try_number"], retries=_retries(context))
        if unreachable is None:
            raise
        raise unreachable from exc
    finally:
        _record_time(step, context, info, began, time.time(), outcome, warm)


def _record_time(
    step: str, context: Mapping[str, Any], info: dict, began: float, ended: float, outcome: str, warm: bool
) -> None:
    """The step's time in the task log and, with ``LIFELONG_STEP_TIMINGS`` set, as a JSON line in that file."""
    log.info("step %s: %.2f s (%s)", step, ended - began, outcome)
    path = os.environ.get(STEP_TIMINGS_ENV)
    if not path:
        return
    record = {
        **info, "task_id": getattr(context.get("ti"), "task_id", None), "step": step, "outcome": outcome,
        "pid": os.getpid(), "process_started": process_started(), "began": began, "ended": ended, "warm": warm,
    }  # fmt: skip
    try:
        with open(path, "a", encoding="utf-8") as out:  # one short write: appends from many tasks do not interleave
            out.write(json.dumps(record) + "\n")
    except OSError as exc:  # a profiling aid never fails the step it measured
        log.warning("could not append the step's time to %s: %s", path, exc)


def process_started() -> float:
    """When this process started, as a Unix time, to the kernel's clock tick (10 ms).

    psutil's ``create_time`` adds the start to the boot time of ``/proc/stat``, which is whole
    seconds: up to a second off, more than a task's queueing. Here the boot time is the wall clock
    less ``CLOCK_BOOTTIME``, the clock the process's start is counted on (Linux; psutil elsewhere).
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5), counted after the command's closing parenthesis
        booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return booted + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, AttributeError):
        import psutil

        return psutil.Process().create_time()


def _alert_quarantine(model: Any, info: dict, exc: Exception) -> None:
    from lifelong import notify

    notify.alert(
        "quarantine", model=str(model) if model else None, date=info.get("logical_date"), reason=str(exc),
        dag_run=notify.run_label(info),
    )  # fmt: skip


def _model_of(context: Mapping[str, Any]) -> str | None:
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("ti"), "dag_id", None) or ""
    if dag_id.startswith("lifelong_daily__"):
        return dag_id.partition("__")[2]
    conf = getattr(dag_run, "conf", None) or {}
    params = context.get("params") or {}
    return conf.get("model") or params.get("model")


def on_final_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every lifelong task: an alert when a task failed for good.

    Airflow calls it only once no retry is left (a retry calls ``on_retry_callback``); a refused
    batch was alerted as a quarantine already, so it is not alerted twice. Never raises.
    """
    from lifelong import notify

    try:
        exc = context.get("exception")
        text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc or "failed")
        if "RefusedBatch" in text:
            return
        info = run_info(context)
        task_id = getattr(context.get("ti"), "task_id", None)
        retries = _retries(context)
        notify.alert(
            "task_failed", model=_model_of(context), date=info.get("logical_date"), reason=f"{task_id}: {text}",
            figures={"task": task_id, "try_number": info.get("try_number"), "retries": retries},
            dag_run=notify.run_label(info),
        )  # fmt: skip
    except Exception:  # noqa: BLE001 - a callback never fails anything
        import logging

        logging.getLogger("lifelong.notify").exception("on_failure_callback")


def _retries(context: Mapping[str, Any]) -> int | None:
    task = getattr(context.get("ti"), "task", None) or context.get("task")
    return getattr(task, "retries", None)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def service_unavailable(exc: BaseException, try_number: int | None = None, retries: int | None = None):
    """A :class:`~lifelong.errors.ServiceUnavailable` with a one-line message when ``exc`` says a
    store did not answer (the MLflow server down, its database restarting), else ``None``.

    >>> import requests
    >>> from mlflow.exceptions import MlflowException
    >>> try:
    ...     try:
    ...         raise requests.ConnectionError("Connection refused")
    ...     except requests.ConnectionError:
    ...         raise MlflowException("API request to http://mlflow:5000/api/2.0/x failed")
    ... except MlflowException as e:
    ...     print(service_unavailable(e, try_number=1, retries=2))
    the MLflow server http://mlflow:5000 did not answer (Connection refused); try 1 of 3: Airflow retries with backoff
    >>> print(service_unavailable(MlflowException(
    ...     "API request to http://mlflow:5000/api/2.0/x failed with exception "
    ...     "Max retries exceeded (Caused by ResponseError('too many 503 error responses'))")))
    the MLflow server http://mlflow:5000 did not answer (too many 503 error responses); run it again once it is back
    >>> service_unavailable(ValueError("a bug")) is None
    True
    """
    import re

    import requests

    from lifelong.errors import ServiceUnavailable

    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain)
    down = any(isinstance(e, requests.ConnectionError | requests.Timeout) for e in chain)
    server_error = "MlflowException" in names and re.search(r"error code 5\d\d|status code 5\d\d|too many 5\d\d", text)
    database = "OperationalError" in names
    if not (down or server_error or database):
        return None
    if database:
        what = "the database"
    else:
        url = re.search(r"(https?://[^/\s]+)", text)
        what = f"the MLflow server {url.group(1) if url else ''}".rstrip()
    reason = re.search(
        r"Connection refused|timed out|Name or service not known|error code 5\d\d|too many 5\d\d error responses"
        r"|terminat\w+",
        text,
    )
    detail = f" ({reason.group(0)})" if reason else ""
    if try_number and retries is not None and try_number > retries:
        then = f"try {try_number} of {retries + 1}, the last: clear the task to run it again once it is back"
    elif try_number and retries is not None:
        then = f"try {try_number} of {retries + 1}: Airflow retries with backoff"
    else:
        then = "run it again once it is back"
    return ServiceUnavailable(f"{what} did not answer{detail}; {then}")


def default_args(params: Any = None) -> dict[str, Any]:
    """``retries``, ``retry_delay`` and backoff of every lifelong task, from ``params.yaml``'s ``retry``
    (``params``: the already loaded :class:`~lifelong.config.Params`, which a DAG file building one DAG
    per model passes, so that the file is not read once per DAG), and the alert on a task's final failure."""
    from datetime import timedelta

    from lifelong.config import load_params

    retry = (params or load_params()).retry
    return {
        "retries": retry.retries,
        "retry_delay": timedelta(seconds=retry.delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=retry.max_delay_s),
        "on_failure_callback": on_final_failure,
    }
