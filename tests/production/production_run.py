"""The session's production run: a project, the topology on it, and the DAG runs it did.

:func:`production_run` prepares a project of its own, starts the topology of
docker-compose.yml (topology.py) on it and, before returning, has run:

* the probe DAG (one task per queue), triggered through the REST API with a token;
* the real daily DAG ``lifelong_daily__demand_forecaster`` over two landed days of
  vic_elec (a warm-up day, then the first model; the two days before are already in the
  store, as history the first windows need), unpaused through the REST API and caught up
  by the scheduler, one run at a time, in date order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODEL = "demand_forecaster"
DAILY = f"lifelong_daily__{MODEL}"
PROBE = "lifelong_topology_probe"
START = dt.date(2012, 3, 1)
DAYS = 2  # a warm-up day, then the first model
WARMUP = 1
# days already stored before START: a window's input is the two days before its target day, so
# the first model (trained on START's windows, on day START+1) needs the two days before START
HISTORY = 2
# days landed after the caught-up ones, for test_services.py (which moves end_date on, a day at a time)
EXTRA_DAYS = 2
# Airflow's retries in this project (params.yaml `retry`), short so that a failing task fails in seconds;
# one retry is enough to see both the first try's and the last try's message
RETRIES, RETRY_DELAY_S = 1, 3


@dataclass
class Production:
    """The running topology and what it has done; ``close()`` stops it (idempotent)."""

    topo: Any  # topology.Topology
    project: Path
    workdir: Path
    probe_run: str
    probe_state: str
    daily_runs: list[dict[str, Any]]
    daily_tis: dict[str, dict[str, dict[str, Any]]]
    _stack: contextlib.ExitStack = field(repr=False)
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._stack.close()


def _edit_params(raw: dict) -> None:
    from _project import quick_forecaster

    spec = quick_forecaster(raw, warmup=WARMUP, model=MODEL)
    spec["start_date"] = str(START)
    spec["end_date"] = str(START + dt.timedelta(days=DAYS - 1))
    raw["retry"] = {"retries": RETRIES, "delay_s": RETRY_DELAY_S, "max_delay_s": 4 * RETRY_DELAY_S}


def _prepare_project(root: Path) -> Path:
    """A project whose params.yaml covers DAYS days: HISTORY days already stored, DAYS + EXTRA_DAYS landed."""
    from _project import project_with

    with project_with(root, _edit_params) as project:
        from lifelong.data import landing, store

        store.ensure_repo()
        first = START - dt.timedelta(days=HISTORY)
        landing.simulate("vic_elec", first, HISTORY + DAYS + EXTRA_DAYS)
        for offset in range(HISTORY):
            store.ingest("vic_elec", day=first + dt.timedelta(days=offset))
    return project


def _dags_folder(root: Path) -> Path:
    """The daily DAG file of the repository and the probe DAG, side by side."""
    folder = root / "dags"
    folder.mkdir()
    shutil.copy(REPO / "dags" / "lifelong_daily.py", folder)
    shutil.copy(Path(__file__).parent / "dags" / f"{PROBE}.py", folder)
    return folder


def _wait_for_daily_runs(topo: Any, timeout: float) -> list[dict[str, Any]]:
    """Poll until the scheduler has created DAYS runs of the daily DAG and all of them ended."""
    from topology import TERMINAL_RUN_STATES, TopologyError

    deadline = time.monotonic() + timeout
    while True:
        runs = topo.api("GET", f"/dags/{DAILY}/dagRuns?order_by=logical_date&limit=50")["dag_runs"]
        if len(runs) >= DAYS and all(r["state"] in TERMINAL_RUN_STATES for r in runs):
            return list(runs)
        for s in topo.services.values():
            s.check_alive()
        if time.monotonic() > deadline:
            states = [(r["logical_date"], r["state"]) for r in runs]
            raise TopologyError(f"daily runs not done after {timeout:.0f}s: {states}")
        time.sleep(3)


def step_timings(root: Path) -> Path:
    """The file the tasks append their step times to (``LIFELONG_STEP_TIMINGS``)."""
    return root / "step-timings.jsonl"


def production_run(root: Path) -> Production:
    """Start the topology under ``root`` and run the DAGs; the caller must ``close()`` the result."""
    from topology import production_topology

    project = _prepare_project(root)
    stack = contextlib.ExitStack()
    try:
        t0 = time.monotonic()
        # MLflow's client retries a failed request 7 times over minutes by default; here once, so that
        # a server that is down fails the task in seconds and Airflow's retries (params.yaml) take over
        quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
        quick["LIFELONG_STEP_TIMINGS"] = str(step_timings(root))  # each step's time, one JSON line per call
        topo = stack.enter_context(
            production_topology(_dags_folder(root), root / "topology", project_dir=project, extra_env=quick)
        )
        topo.wait_for_dag(PROBE)
        topo.wait_for_dag(DAILY)
        topo.unpause(PROBE)
        probe_run = topo.trigger(PROBE)
        topo.unpause(DAILY)  # catchup=True: the scheduler runs the missed days, oldest first
        probe_state = topo.wait_for_run(PROBE, probe_run, timeout=300)
        runs = _wait_for_daily_runs(topo, timeout=600)
        topo.timings["dag runs"] = time.monotonic() - t0
        tis = {r["dag_run_id"]: topo.task_instances(DAILY, r["dag_run_id"]) for r in runs}
        return Production(topo, project, root, probe_run, probe_state, runs, tis, stack)
    except BaseException:
        stack.close()
        raise
