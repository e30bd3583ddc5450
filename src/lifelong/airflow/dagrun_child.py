"""Child process of :func:`lifelong.airflow.embedded_runner.run_dag`: run DAG runs with ``dag.test``.

Started with the embedded Airflow environment. Prints one ``LIFELONG-RESULT {json}`` line
per run on stdout; everything Airflow logs goes to stderr (the caller's log file).

Two things keep a short-lived child fast: the garbage collector's full collections wait
until the first DAG run has ended (:func:`hold_full_collections`), and the process ends with
:func:`exit_process`: the interpreter's usual shutdown steps, then ``os._exit``, which skips
the seconds it would spend tearing down torch, Airflow, MLflow and GX module by module.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import NoReturn

from lifelong.airflow.embedded_runner import DAGS_DIR, RESULT_PREFIX

_GC_THRESHOLDS: tuple[int, int, int] | None = None  # the collector's own, while full collections are held


def hold_full_collections() -> None:
    """Put off the garbage collector's full collections (until :func:`release_full_collections`).

    A fresh child imports Airflow, torch, pandas, MLflow and GX during its first DAG run:
    well over a million objects that live as long as the process. CPython runs a full
    collection whenever its long-lived objects have grown by a quarter, so that growth alone
    costs a dozen full collections, each scanning everything, for almost no garbage (seconds
    of a daily run on 2 cores). Young collections go on as usual, so short-lived cycles are
    still freed; what survives them waits for the first full collection after the hold.
    """
    global _GC_THRESHOLDS
    if _GC_THRESHOLDS is None:
        _GC_THRESHOLDS = gc.get_threshold()
        gc.set_threshold(_GC_THRESHOLDS[0], _GC_THRESHOLDS[1], 1_000_000)


def release_full_collections() -> None:
    """Back to the collector's own thresholds (the heap grows slowly once the libraries are in)."""
    global _GC_THRESHOLDS
    if _GC_THRESHOLDS is not None:
        gc.set_threshold(*_GC_THRESHOLDS)
        _GC_THRESHOLDS = None


def main(request_json: str) -> int:
    hold_full_collections()
    request = json.loads(request_json)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # Airflow prints task logs to stdout; keep ours clean
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if request["dag_id"] not in bag.dags:
        errors = "; ".join(f"{k}: {v.splitlines()[-1]}" for k, v in bag.import_errors.items())
        print(
            RESULT_PREFIX + json.dumps({"error": f"no DAG {request['dag_id']}", "import_errors": errors}),
            file=real_stdout,
            flush=True,
        )
        return 2
    dag = bag.dags[request["dag_id"]]
    for value in request["dates"]:
        logical = datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None
        try:
            run = dag.test(logical_date=logical, run_conf=request.get("conf"))
        except Exception as exc:  # noqa: BLE001 - e.g. the trigger form's values fail their JSON schema
            logging.exception("run of %s for %s could not start", dag.dag_id, value)
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            result = {"logical_date": value, "run_id": None, "state": "refused", "tasks": {}, "error": message}
        else:
            tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
            result = {"logical_date": value, "run_id": run.run_id, "state": str(run.state), "tasks": tasks}
        print(RESULT_PREFIX + json.dumps(result), file=real_stdout, flush=True)
        release_full_collections()  # after the first run: its libraries are in
    return 0


def exit_process(code: int) -> NoReturn:
    """End the process as the interpreter would, minus its teardown (seconds after a DAG run).

    The steps of a normal exit that matter run first, in the interpreter's order: thread
    shutdown (idle thread-pool workers stopped, non-daemon threads joined), then every
    ``atexit`` handler (logging flushed and closed, Airflow's and MLflow's database engines
    disposed, an active MLflow run ended, file locks released). Nothing is left to write:
    each result line is flushed as it is printed, Airflow and MLflow commit every change to
    their stores as they go, and lifelong closes its files and locks before a task ends. What
    ``os._exit`` then skips is only freeing memory (modules, tensors, caches) object by object.
    """
    shutdown = getattr(threading, "_shutdown", None)  # what Py_FinalizeEx calls first
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed, or a broken pipe: nothing more can be written anyway
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_process(main(sys.argv[1]))
