"""Records a crash left half-finished, closed by the next run of the model.

A process killed while it logs a candidate (``kill -9``, the OOM killer, a lost worker)
leaves its MLflow run ``RUNNING`` for ever: never registered, never loadable, but listed as
running in the UI and by anyone who counts runs. The next model-changing step of that model
(``update``, ``learn_task``) marks such runs ``FAILED`` (tag ``lifelong.closed_as_crashed``)
with :func:`close_crashed_runs`, and only when that is safe:

* only runs that started before this process did: a run this process opened is its own;
* only while no other process can be writing a run of the model: every model-changing run
  holds the model's lock (:mod:`lifelong.modellock`). The lock is either held by this
  thread already (every model-changing step, ``run_day``, ``run_task``), inherited from the
  embedded runner that started this process, or taken here for
  the moment of the cleanup without waiting. When another process holds it, nothing is
  touched: its runs may be live, and the next run after it closes what is left.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from lifelong import modellock, registry
from lifelong.errors import StoreBusy


def process_started_ms() -> int:
    """When this process started (ms since the epoch)."""
    try:
        import psutil

        return int(psutil.Process(os.getpid()).create_time() * 1000)
    except Exception:  # noqa: BLE001 - no psutil, or /proc not readable: then "now" closes only older runs
        return int(time.time() * 1000)


def close_crashed_runs(home: Path, model: str, *, closed_by: str, started_ms: int | None = None) -> list[str]:
    """Mark FAILED the runs of ``model`` left RUNNING by processes that are gone; returns their ids."""
    before = process_started_ms() if started_ms is None else started_ms
    if modellock.held_here(model):
        return registry.fail_runs_left_running(model, before, closed_by=closed_by)
    try:
        with modellock.hold(home, model, f"close crashed runs of {model}", timeout=0):
            return registry.fail_runs_left_running(model, before, closed_by=closed_by)
    except StoreBusy:
        return []
