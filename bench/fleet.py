"""Benchmark: many models on one production deployment, and what a warm worker pays per day (issue 21, items 2-4).

The production topology of docker-compose.yml, started natively (``tests/production/topology.py``:
CeleryExecutor on Redis, the metadata database and an MLflow server with basic auth on
PostgreSQL, the scheduler, the dag-processor, the API server, and two Celery workers of one slot
each, queues ``default`` and ``gpu``; ``parallelism`` 16 as in docker-compose.yml), runs N
forecasters, ``fleet_001`` .. ``fleet_N``: params.yaml's ``demand_forecaster`` (vic_elec, the same
data set for all, a different training seed each; warm-up cut to 7 days), one daily DAG each. The
history each model needs is stored before the topology starts; then every DAG is unpaused and the
scheduler catches up two days per model: D1, the bootstrap day (the first version, on workers that
have not run these models yet), and D2, the first daily update (a worker that has already run a
day: the state a long-lived worker is in).

Every task's time is split from Airflow's task-instance record and the step's own record
(``LIFELONG_STEP_TIMINGS``, :mod:`lifelong.airflow.task_runtime`):

* **queue**: queued by the scheduler -> the task's process forked on a worker (Redis, Celery);
* **start**: process forked -> the step begins (Airflow's supervisor and task runner, the DAG file's
  parse, imports not preloaded);
* **work**: the step itself (``lifelong.steps``);
* **finish**: the step returned -> Airflow recorded the task's end (XComs, state);
* **between tasks**: the rest of a DAG run's wall time: the scheduler's latency from one task's end
  to the next one's queueing.

Orchestration overhead per model-day is everything but work; its ratio to work is the figure this
section tracks (``bench/results/fleet_history.jsonl`` keeps each run's ratio; the target is a lower
ratio than the last run's). Side by side in one run: workers that import the pipeline's libraries
once at start (``lifelong.airflow.celery_preload``, the deployment's setting) and Airflow's default
Celery settings (each task imports them), at N = 1.

Memory: the proportional set size (PSS: shared pages split between the processes sharing them) of
each service's process tree, sampled every second; the peak is reported, for the scheduler and the
dag-processor with N DAGs and for each worker.

Usage: ``python -m bench.fleet [--quick] [--models 1,10,50] [--cold-models 1] [--from-json FILE]``.
Full: N = 1, 10, 50 (preloaded) and N = 1 with the default settings; quick: N = 1, 4 and 1.
Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import OUT_DIR, REPO, RESULTS_DIR, Report, Target, isolated_project, md_table, wait_for_mlflow

PREFIX = "fleet_"
D1 = date(2012, 2, 1)  # the bootstrap day; D2 = D1 + 1, the first update
DAYS = 2
WARMUP = 7
# stored before D1: the warm-up days, and before them a week for the 7-day lag and the input's history
HISTORY = WARMUP + 9
FULL_MODELS, QUICK_MODELS = (1, 10, 50), (1, 4)
COLD_MODELS = (1,)
PARALLELISM = 16  # docker-compose.yml's AIRFLOW_PARALLELISM default
TARGET_RATIO = 1.5
# the steps of a D1 model-day (validate_ingest, check_drift, update, evaluate, gate, promote, watch, publish,
# report): a run cut short counts the model-days its ended steps make at this rate
STEPS_PER_MODEL_DAY = 9
DEFAULT_CELERY = "airflow.providers.celery.executors.default_celery.DEFAULT_CELERY_CONFIG"
SERVICES = ("airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-worker-gpu")
PARTS = ("queue", "start", "work", "finish")
HISTORY_FILE = RESULTS_DIR / "fleet_history.jsonl"
LAST_JSON = OUT_DIR / "fleet.json"


def dag_id(i: int) -> str:
    return f"lifelong_daily__{PREFIX}{i:03d}"


def _edit(n: int, days: int):
    def edit(raw: dict) -> None:
        base = raw["models"]["demand_forecaster"]
        models = {name: spec for name, spec in raw["models"].items() if name != "demand_forecaster"}
        for i in range(1, n + 1):
            spec = json.loads(json.dumps(base))
            spec["train"]["seed"] = i
            spec["warmup_days"] = WARMUP
            spec["start_date"], spec["end_date"] = str(D1), str(D1 + timedelta(days=days - 1))
            models[f"{PREFIX}{i:03d}"] = spec
        raw["models"] = models
        raw["run"]["model"] = f"{PREFIX}001"

    return edit


def _store_history() -> None:
    from lifelong.data import landing, store

    store.ensure_repo()
    first = D1 - timedelta(days=HISTORY)
    landing.simulate("vic_elec", first, HISTORY + DAYS + 1)
    for offset in range(HISTORY):
        store.ingest("vic_elec", day=first + timedelta(days=offset))


# --------------------------------------------------------------------------- running


class MemorySampler:
    """Samples the PSS of each service's process tree every ``period`` seconds; keeps the peaks."""

    def __init__(self, pids: dict[str, int], period: float = 1.0) -> None:
        self.pids, self.period = pids, period
        self.peak: dict[str, float] = defaultdict(float)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(self.period):
            for name, pid in self.pids.items():
                total = 0
                with contextlib.suppress(psutil.Error):
                    root = psutil.Process(pid)
                    for proc in [root, *root.children(recursive=True)]:
                        with contextlib.suppress(psutil.Error):
                            total += proc.memory_full_info().pss
                self.peak[name] = max(self.peak[name], total / 2**20)


def _paged(topo: Any, path: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        sep = "&" if "?" in path else "?"
        page = topo.api("GET", f"{path}{sep}limit=100&offset={len(items)}")[key]
        items += page
        if len(page) < 100:
            return items


def _wait_for_runs(topo: Any, n: int, days: int, timeout: float) -> list[dict[str, Any]]:
    from topology import TERMINAL_RUN_STATES, TopologyError

    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        runs = _paged(topo, f"/dags/~/dagRuns?dag_id_pattern={PREFIX}", "dag_runs")
        done = [r for r in runs if r["state"] in TERMINAL_RUN_STATES]
        if len(done) >= n * days:
            return runs
        for s in topo.services.values():
            s.check_alive()
        if time.monotonic() - last_report > 30:
            print(f"[fleet] N={n}: {len(done)}/{n * days} model-days done", file=sys.stderr, flush=True)
            last_report = time.monotonic()
        if time.monotonic() > deadline:
            raise TopologyError(f"N={n}: {len(done)} of {n * days} DAG runs ended after {timeout:.0f} s")
        time.sleep(3)


def run_fleet(n: int, *, preload: bool, days: int = DAYS, timeout: float = 7200.0) -> dict[str, Any]:
    """Catch up ``days`` days of N forecasters through the native production topology; the raw records."""
    sys.path.insert(0, str(REPO / "tests" / "production"))
    from topology import production_topology

    began = time.time()
    with isolated_project(_edit(n, days)) as project:
        _store_history()
        workdir = project.parent / "topology"
        dags = project.parent / "dags"
        dags.mkdir()
        (dags / "lifelong_daily.py").write_text((REPO / "dags" / "lifelong_daily.py").read_text())
        timings = project.parent / "step-timings.jsonl"
        extra = {"LIFELONG_STEP_TIMINGS": str(timings)}
        if not preload:
            extra["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] = DEFAULT_CELERY
        with production_topology(dags, workdir, project_dir=project, parallelism=PARALLELISM, extra_env=extra) as topo:
            t_parse = time.monotonic()
            for i in range(1, n + 1):
                topo.wait_for_dag(dag_id(i), timeout=600)
            parsed_s = time.monotonic() - t_parse
            pids = {name: topo.pids[name] for name in SERVICES}
            with MemorySampler(pids) as memory:
                for i in range(1, n + 1):
                    topo.unpause(dag_id(i))
                runs = _wait_for_runs(topo, n, days, timeout)
            tis = _paged(topo, f"/dags/~/dagRuns/~/taskInstances?dag_id_pattern={PREFIX}", "task_instances")
            startup = dict(topo.timings)
        steps = [json.loads(line) for line in timings.read_text().splitlines()] if timings.exists() else []
    return {
        "n": n, "preload": preload, "runs": runs, "task_instances": tis, "steps": steps, "parsed_s": parsed_s,
        "memory_peak_mib": dict(memory.peak), "topology_startup": startup, "seconds": time.time() - began,
    }  # fmt: skip


def auth_requests(count: int = 40) -> list[list[Any]]:
    """One MLflow request with basic auth, the server's login cache off and on (docker/mlflow-server.sh):
    client latency and the server's CPU per request, side by side on the same server build."""
    import secrets
    import socket
    import subprocess
    import tempfile

    import psutil
    import requests

    rows = []
    for ttl in (0, 60):
        with tempfile.TemporaryDirectory(prefix="lifelong-auth-") as tmp:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            password = secrets.token_hex(12)
            env = {
                **os.environ, "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp}/mlflow.db",
                "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{tmp}/auth.db", "MLFLOW_AUTH_ADMIN_PASSWORD": password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16), "MLFLOW_ARTIFACTS_DESTINATION": f"{tmp}/art",
                "MLFLOW_AUTH_CONFIG_PATH": f"{tmp}/auth.ini", "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port),
                "MLFLOW_WORKERS": "1", "MLFLOW_AUTH_CACHE_TTL_S": str(ttl),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }  # fmt: skip
            log = Path(tmp) / "server.log"
            with log.open("wb") as out:
                server = subprocess.Popen(["bash", str(REPO / "docker" / "mlflow-server.sh")], env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
            try:
                wait_for_mlflow(f"http://127.0.0.1:{port}", server, log)
                session = requests.Session()
                session.auth = ("admin", password)
                session.get(url, timeout=60).raise_for_status()  # the first login (and the cache's fill)
                tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
                cpu0 = sum(sum(p.cpu_times()[:2]) for p in tree)
                began = time.perf_counter()
                for _ in range(count):
                    session.get(url, timeout=60).raise_for_status()
                latency = (time.perf_counter() - began) / count
                cpu = (sum(sum(p.cpu_times()[:2]) for p in tree) - cpu0) / count
            finally:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)
        rows.append([f"{ttl} s" + (" (off)" if ttl == 0 else ""), f"{latency * 1000:.0f}", f"{cpu * 1000:.0f}"])
    return rows


def snapshot(airflow_dsn: str, timings: Path, n: int, preload: bool = True) -> dict[str, Any]:
    """The raw records of a fleet run still going, read from its Airflow metadata database and its step
    timings file (``--snapshot``), for a run that cannot finish in the time there is: split() reports
    the task instances that ended, and the rate at which they did."""
    import psycopg

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    with psycopg.connect(airflow_dsn) as conn:
        runs = [
            {"dag_id": d, "dag_run_id": r, "logical_date": iso(ld), "state": st, "queued_at": iso(q),
             "start_date": iso(sd), "end_date": iso(ed)}
            for d, r, ld, st, q, sd, ed in conn.execute(
                "SELECT dag_id, run_id, logical_date, state, queued_at, start_date, end_date FROM dag_run")
        ]  # fmt: skip
        tis = [
            {"dag_id": d, "dag_run_id": r, "task_id": t, "state": st, "queued_when": iso(q), "end_date": iso(ed),
             "hostname": h}
            for d, r, t, st, q, ed, h in conn.execute(
                "SELECT dag_id, run_id, task_id, state, queued_dttm, end_date, hostname FROM task_instance")
        ]  # fmt: skip
    steps = [json.loads(line) for line in timings.read_text().splitlines()]
    return {
        "n": n, "preload": preload, "runs": runs, "task_instances": tis, "steps": steps, "parsed_s": 0.0,
        "memory_peak_mib": {}, "topology_startup": {}, "seconds": 0.0, "cut_at": time.time(),
    }  # fmt: skip


# --------------------------------------------------------------------------- analysis


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def split(record: dict[str, Any]) -> dict[str, Any]:
    """Per task (by day: D1, D2) and per model-day, where the time went; wall, throughput, utilisation."""
    # a run is (dag id, run id): every model's DAG has a run "scheduled__<day>"
    steps = {(s["dag_id"], s["dag_run_id"], s["task_id"]): s for s in record["steps"] if s["outcome"] != "error"}
    runs = {_key(r): r for r in record["runs"] if r["dag_id"].startswith(f"lifelong_daily__{PREFIX}")}
    day_of = {rid: str(_day(r["logical_date"])) for rid, r in runs.items()}
    by_task: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    per_run: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: dict.fromkeys(PARTS, 0.0))
    busy: dict[str, float] = defaultdict(float)
    for ti in record["task_instances"]:
        rid = _key(ti)
        step = steps.get((*rid, ti["task_id"]))
        if rid not in runs or ti["state"] != "success" or step is None:
            continue
        queued, ended = _ts(ti.get("queued_when")), _ts(ti.get("end_date"))
        if queued is None or ended is None:
            continue
        parts = {
            "queue": step["process_started"] - queued,
            "start": step["began"] - step["process_started"],
            "work": step["ended"] - step["began"],
            "finish": ended - step["ended"],
        }
        for part, seconds in parts.items():
            by_task[(day_of[rid], ti["task_id"])][part].append(seconds)
            per_run[rid][part] += seconds
        busy[ti.get("hostname") or "?"] += ended - step["process_started"]
    cut_at = record.get("cut_at")
    if cut_at is None:
        wall = _wall(runs.values())
        first_day = [r for rid, r in runs.items() if day_of[rid] == str(D1)]
        model_days, d1_per_model_day = float(len(runs)), _wall(first_day) / len(first_day)
    else:  # a run cut short (snapshot()): the model-days its ended steps make, at STEPS_PER_MODEL_DAY a day
        wall = cut_at - min(t for r in runs.values() if (t := _ts(r.get("queued_at") or r.get("start_date"))))
        model_days = sum(len(v["work"]) for v in by_task.values()) / STEPS_PER_MODEL_DAY
        d1_per_model_day = wall / model_days
    run_walls = {rid: (_ts(r["end_date"]) or 0) - (_ts(r.get("start_date")) or 0) for rid, r in runs.items()}
    for rid, parts in per_run.items():
        parts["between tasks"] = max(0.0, run_walls[rid] - sum(parts[p] for p in PARTS))
    ended = {rid for rid, r in runs.items() if r.get("end_date")}
    return {
        "n": record["n"], "preload": record["preload"], "model_days": model_days, "wall_s": wall,
        "per_model_day_s": wall / model_days, "model_days_per_hour": model_days / wall * 3600,
        "d1_per_model_day_s": d1_per_model_day, "cut": cut_at is not None,
        "first_queued": min(t for r in runs.values() if (t := _ts(r.get("queued_at") or r.get("start_date")))),
        "by_task": {f"{d}/{t}": {p: statistics.mean(v) for p, v in parts.items()} for (d, t), parts in by_task.items()},
        "per_run": {
            day: _mean_parts([per_run[rid] for rid in per_run if day_of[rid] == day and rid in ended])
            for day in _days(runs)
        },
        "utilisation": {host: seconds / wall for host, seconds in busy.items()},
        "parsed_s": record["parsed_s"], "memory_peak_mib": record["memory_peak_mib"],
    }  # fmt: skip


def _key(record: dict[str, Any]) -> tuple[str, str]:
    return record["dag_id"], record["dag_run_id"]


def _wall(runs: Iterable[dict[str, Any]]) -> float:
    """From the first run's queueing to the last run's end."""
    runs = list(runs)
    starts = [_ts(r.get("queued_at") or r.get("start_date")) for r in runs]
    ends = [_ts(r.get("end_date")) for r in runs]
    return max(e for e in ends if e) - min(s for s in starts if s)


def _day(logical_date: str) -> date:
    return datetime.fromisoformat(logical_date.replace("Z", "+00:00")).date()


def _days(runs: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({str(_day(r["logical_date"])) for r in runs.values()})


def _mean_parts(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [*PARTS, "between tasks"]
    return {k: statistics.mean(r[k] for r in rows) for k in keys} if rows else {}


def overhead_ratio(parts: dict[str, float]) -> float:
    """Orchestration per model-day (queue, start, finish, between tasks) over the steps' work."""
    return (sum(parts.values()) - parts["work"]) / parts["work"]


# --------------------------------------------------------------------------- report


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def report(
    results: list[dict[str, Any]],
    auth: list[list[Any]],
    *,
    quick: bool,
    seconds: float,
    history: Path = HISTORY_FILE,
    record: bool = True,
    note: str = "",
) -> Report:
    """The section; ``record``: append this run's overhead ratio to ``history`` (a live full run only)."""
    warm = sorted((r for r in results if r["preload"]), key=lambda r: r["n"])
    cold = [r for r in results if not r["preload"]]
    lines: list[str] = []
    lines += ["### N models, one deployment (workers preloaded, the deployment's setting)", ""]
    rows = []
    for r in warm:
        util = ", ".join(f"{h} {u:.0%}" for h, u in sorted(r["utilisation"].items()))
        mem = r["memory_peak_mib"]
        n = f"{r['n']} (cut short: {r['model_days']:.1f} model-days' steps ended)" if r.get("cut") else r["n"]
        rows.append([
            n, f"{r['model_days']:.0f}", f"{r['wall_s']:.0f}", f"{r['d1_per_model_day_s']:.1f}",
            f"{r['model_days_per_hour']:.0f}", util, _fmt(mem.get("airflow-scheduler"), 0),
            _fmt(mem.get("airflow-dag-processor"), 0), _fmt(mem.get("airflow-worker"), 0),
            _fmt(mem.get("airflow-worker-gpu"), 0), f"{r['parsed_s']:.0f}",
        ])  # fmt: skip
    lines.append(md_table(
        ["N", "model-days", "wall (s)", f"per model-day, {D1} (s)", "model-days/hour", "worker utilisation",
         "scheduler PSS (MiB)", "dag-processor PSS (MiB)", "worker PSS (MiB)", "gpu worker PSS (MiB)",
         "until all DAGs parsed (s)"], rows))  # fmt: skip
    lines += ["", "Per model-day, mean over the model-days of each day (s): D1 bootstrap, D2 first update.", ""]
    rows = []
    for r in [*warm, *cold]:
        label = "preloaded" if r["preload"] else "Airflow default (each task imports)"
        for day, parts in r["per_run"].items():
            if parts:
                rows.append([r["n"], label, day, *(_fmt(parts[p]) for p in [*PARTS, "between tasks"]),
                             _fmt(overhead_ratio(parts))])  # fmt: skip
        if r.get("cut"):  # no run ended: the sum over its steps of their means (between tasks unknown)
            sums = {p: sum(t[p] for t in r["by_task"].values()) for p in PARTS}
            rows.append([r["n"], f"{label}; cut short: sum of its steps' means", str(D1),
                         *(_fmt(sums[p]) for p in PARTS), "-", "-"])  # fmt: skip
    lines.append(md_table(["N", "workers", "day", *PARTS, "between tasks", "overhead / work"], rows))
    # section 2's column: a warm worker's day, by task
    base = next((r for r in warm if r["n"] == 1), None)
    targets: list[Target] = []
    if base is not None:
        d2 = max(base["per_run"])
        lines += ["", f"**A production day by task** (N = 1, {d2}: workers that have run a day; s):", ""]
        cold1 = next((r for r in cold if r["n"] == 1), None)
        rows = []
        for key, parts in sorted(base["by_task"].items()):
            day, task = key.split("/")
            if day != d2:
                continue
            other = (cold1 or {}).get("by_task", {}).get(key, {})
            rows.append([task, *(_fmt(parts[p]) for p in PARTS), _fmt(other.get("start"))])
        lines.append(md_table(["task", *PARTS, "start, Airflow default"], rows))
        ratio = overhead_ratio(base["per_run"][d2])
        this_run = datetime.fromtimestamp(base["first_queued"], UTC).isoformat(timespec="seconds")
        previous = _previous_ratio(history, this_run)
        targets.append(Target(
            "orchestration overhead per model-day on a warm worker lower than the last run's (ratio to the step work)",
            None if previous is None else ratio < previous,
            f"{ratio:.2f}x the work now; " + ("no earlier full run recorded" if previous is None else
                                             f"{previous:.2f}x the last run"),
        ))  # fmt: skip
        if record and not quick:
            _append_history(history, ratio, this_run)
        if cold1 is not None:
            now, before = sum(base["per_run"][d2].values()), sum(cold1["per_run"][max(cold1["per_run"])].values())
            targets.append(Target(
                "a warm worker's model-day shorter with the preloading workers than with Airflow's default "
                "(there, each step's imports count as its work)", now < before,
                f"{now:.1f} s vs {before:.1f} s: {now / before:.2f}x",
            ))  # fmt: skip
        for r in warm:
            if r["n"] != 1:
                factor = r["d1_per_model_day_s"] / base["d1_per_model_day_s"]
                targets.append(Target(
                    f"per-model-day time at N = {r['n']} within {TARGET_RATIO}x of N = 1 ({D1}, wall time over "
                    "the model-days)", factor <= TARGET_RATIO,
                    f"{r['d1_per_model_day_s']:.1f} s vs {base['d1_per_model_day_s']:.1f} s: {factor:.2f}x",
                ))  # fmt: skip
    lines += [
        "", "**One MLflow request with basic auth** (`experiments/search`, one server worker, the same server "
        "build, side by side): the login cache of docker/mlflow-server.sh (`MLFLOW_AUTH_CACHE_TTL_S`) off and on. "
        "Off, every request re-derives the password hash.", "",
        md_table(["login cache TTL", "latency (ms)", "server CPU per request (ms)"], auth),
    ]  # fmt: skip
    settings = (
        f"{'QUICK' if quick else 'FULL'}: N = {', '.join(str(r['n']) for r in warm)} forecasters (vic_elec for all, "
        f"seed 1..N); N = 1: {DAYS} days ({D1} bootstrap, then the first update), larger N: {D1}; the native "
        "production topology "
        f"(CeleryExecutor on Redis, PostgreSQL, MLflow server with basic auth, 2 one-slot workers, parallelism "
        f"{PARALLELISM}); DVC local remote"
    )
    settings += f". {note}" if note else ""
    return Report("fleet", "2d. Many models on one deployment, and a production day", settings, "\n".join(lines),
                  tuple(targets), seconds, extra={"results": results})  # fmt: skip


def _history(history: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in history.read_text().splitlines() if line.strip()] if history.exists() else []


def _previous_ratio(history: Path, this_run: str) -> float | None:
    """The newest recorded ratio of another run than ``this_run`` (a report rebuilt from a run's records
    is not compared with that run's own entry)."""
    earlier = [e for e in _history(history) if e.get("run") != this_run]
    return float(earlier[-1]["ratio"]) if earlier else None


def _append_history(history: Path, ratio: float, this_run: str) -> None:
    """Record ``this_run``'s ratio once (``this_run``: when its first DAG run was queued, UTC)."""
    if any(e.get("run") == this_run for e in _history(history)):
        return
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as out:
        out.write(json.dumps({"run": this_run, "ratio": round(ratio, 4)}) + "\n")


def bench_args(argv: list[str]) -> Report:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", help="comma-separated N (preloaded workers)")
    parser.add_argument("--cold-models", help="comma-separated N with Airflow's default Celery settings")
    parser.add_argument("--from-json", type=Path, help="report the raw records of an earlier run")
    parser.add_argument("--note", default="", help="a sentence on the run added to the settings (e.g. the load)")
    parser.add_argument(
        "--record",
        action="store_true",
        help="with --from-json: append its overhead ratio to the history (a full run reported apart)",
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped bench still stops its topology
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        records, auth = saved["fleets"], saved["auth"]
    else:
        print("[fleet] MLflow basic auth, login cache off and on ...", file=sys.stderr, flush=True)
        auth = auth_requests()
        models = [int(x) for x in args.models.split(",")] if args.models else list(
            QUICK_MODELS if args.quick else FULL_MODELS)  # fmt: skip
        cold = [int(x) for x in args.cold_models.split(",")] if args.cold_models else list(COLD_MODELS)
        records = []
        for n, preload in [*((c, False) for c in cold), *((m, True) for m in models)]:
            days = DAYS if n == 1 else 1  # a warm worker's day is N = 1's second; the fleets compare on D1
            print(f"[fleet] N={n} {'preloaded' if preload else 'default'} workers, {days} day(s) ...",
                  file=sys.stderr, flush=True)  # fmt: skip
            records.append(run_fleet(n, preload=preload, days=days))
            LAST_JSON.parent.mkdir(parents=True, exist_ok=True)
            LAST_JSON.write_text(json.dumps({"fleets": records, "auth": auth}))
    fleets = [split(r) for r in records]
    seconds = time.monotonic() - began
    return report(
        fleets, auth, quick=args.quick, seconds=seconds, record=args.from_json is None or args.record, note=args.note
    )


def bench(quick: bool) -> Report:
    """``bench/run.py``'s entry; ``BENCH_FLEET_ARGS`` adds arguments (e.g. ``--models 1,10``, or
    ``--from-json bench/results/fleet.json`` to report the committed records of a run made apart)."""
    return bench_args((["--quick"] if quick else []) + shlex.split(os.environ.get("BENCH_FLEET_ARGS", "")))


def main(argv: list[str] | None = None) -> str:
    return bench_args(sys.argv[1:] if argv is None else argv).show()


if __name__ == "__main__":
    main()
