"""Benchmark: where one daily DAG run's time goes, by task and by component.

In a temporary project, the warm-up days and the first model (the bootstrap day) run
in-process with ``steps.run.run_day``; then ONE run of ``lifelong_daily__demand_forecaster``
for the next day goes through Airflow (``dag.test`` in a child process, as
``lifelong.airflow.embedded_runner.run_dag`` starts it), so its ``update`` really trains (the
champion on day D-1 plus replay). The child is this module with ``--child``: it puts time
markers on lifelong's own functions (the component boundaries), then hands over to
``lifelong.airflow.dagrun_child.main``. Each marker books *exclusive* time (time inside nested
markers is booked to them), so the components add up to the steps' time:

* GX validation: ``data.validate.validate``; DVC: ``data.dvcrepo.*``; data reads: ``store.read_*``
  and ``windows.forecast_windows``; drift tests: ``drift.check``; training: ``learn.train.fit``;
  plots: ``lifelong.plots.*``, ``drift.plot`` and every ``Figure.savefig``; MLflow: every function
  of ``lifelong.registry``; git: ``registry.git_commit`` (lineage); lifelong glue: the rest of the
  pipeline step;
* Airflow start-up: child process start to the first step (interpreter, Airflow imports, DAG
  parse, DAG run creation); Airflow per-task overhead: between and around the steps (task
  runner, XComs, state updates in the metadata DB); Airflow shutdown: last step to exit (the
  child ends with ``dagrun_child.exit_process``, as the production child does).

The one-time ``airflow db migrate`` of a new home is reported apart (not a daily cost). For
comparison, the day before runs in-process (``run_day``, no Airflow) with the same markers.

Usage: ``python -m bench.daily_profile [--quick]``. Diagnostics (they slow the run): with
``BENCH_CPROFILE=FILE`` the child writes a cProfile of the DAG run to FILE; with
``BENCH_EXIT_TRACE=1`` it dumps every thread's stack to its log every 3 s while it exits.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import REPO, Report, Target, isolated_project, md_table

MODEL = "demand_forecaster"
DAG_ID = f"lifelong_daily__{MODEL}"
STEPS = {  # step -> its module in lifelong.steps
    "validate_ingest": "daily", "check_drift": "daily", "update": "daily", "evaluate": "daily",
    "gate": "decide", "promote": "decide", "reject": "decide", "watch": "watch", "report": "daily",
}  # fmt: skip
COMPONENTS: dict[str, list[tuple[str, str]]] = {
    "GX validation": [("lifelong.data.validate", "validate")],
    "DVC": [("lifelong.data.dvcrepo", n) for n in ("ensure", "record", "version", "restore")],
    "data reads + windows": [
        ("lifelong.data.snapshot", "Snapshot.read_days"),
        ("lifelong.data.snapshot", "Snapshot.read_task"),
        ("lifelong.data.windows", "forecast_windows"),
    ],
    "drift tests": [("lifelong.drift", "check")],
    "training (fit)": [("lifelong.learn.train", "fit")],
    "plots (matplotlib)": [("lifelong.drift", "plot")]
    + [("lifelong.plots", n) for n in ("loss_curves", "forecast_vs_actual", "accuracy_matrix", "fisher_magnitude")],
}


class Clock:
    """Exclusive time per (pipeline step, component), from wrappers put on functions."""

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []  # [component, started, time in nested markers]
        self.step: str | None = None
        self.totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.steps: list[dict[str, Any]] = []  # one per step call: name, wall start/end
        self.undo: list[Callable[[], None]] = []

    def wrap(self, fn: Callable, component: str) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [component, time.perf_counter(), 0.0]
            self.stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stack.pop()
                elapsed = time.perf_counter() - frame[1]
                self.totals[self.step or "(outside steps)"][component] += elapsed - frame[2]
                if self.stack:
                    self.stack[-1][2] += elapsed

        return timed

    def wrap_step(self, fn: Callable, name: str) -> Callable:
        inner = self.wrap(fn, "lifelong glue")

        @functools.wraps(fn)
        def step(*args: Any, **kwargs: Any) -> Any:
            outer, self.step = self.step, name
            started = time.time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.steps.append({"step": name, "start": started, "end": time.time()})
                self.step = outer

        return step

    def patch(self, owner: Any, name: str, wrapper: Callable) -> None:
        original = getattr(owner, name)
        setattr(owner, name, wrapper)
        self.undo.append(lambda: setattr(owner, name, original))

    def install(self) -> None:
        """Put the markers on (imports lifelong's heavy libraries: torch, MLflow, GX, DVC)."""
        from matplotlib.figure import Figure

        from lifelong import registry

        for component, places in COMPONENTS.items():
            for module_name, dotted in places:
                owner: Any = importlib.import_module(module_name)
                *classes, name = dotted.split(".")
                for cls in classes:
                    owner = getattr(owner, cls)
                self.patch(owner, name, self.wrap(getattr(owner, name), component))
        self.patch(Figure, "savefig", self.wrap(Figure.savefig, "plots (matplotlib)"))
        for name, fn in vars(registry).copy().items():
            if inspect.isfunction(fn) and fn.__module__ == registry.__name__:
                label = "git (lineage)" if name == "git_commit" else "MLflow (registry)"
                self.patch(registry, name, self.wrap(fn, label))
        for name, module_name in STEPS.items():
            module = importlib.import_module(f"lifelong.steps.{module_name}")
            self.patch(module, name, self.wrap_step(getattr(module, name), name))

    def uninstall(self) -> None:
        for undo in reversed(self.undo):
            undo()
        self.undo.clear()

    def result(self) -> dict[str, Any]:
        return {"totals": {s: dict(c) for s, c in self.totals.items()}, "steps": self.steps}


# --------------------------------------------------------------------------- the child (inside Airflow)


def child(request_json: str, out_file: str) -> int:
    """Run the DAG with markers on; write what they measured to ``out_file``."""
    child_start = time.time()
    from lifelong.airflow.dagrun_child import hold_full_collections

    hold_full_collections()  # as dagrun_child.main does first; here before the markers import torch & co.
    clock = Clock()
    started = time.perf_counter()
    clock.install()
    install_s = time.perf_counter() - started
    import airflow.dag_processing.dagbag as dagbag_module

    from lifelong.airflow import dagrun_child

    parse: dict[str, float] = {}
    original = dagbag_module.DagBag

    class TimedDagBag(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            began = time.perf_counter()
            super().__init__(*args, **kwargs)
            parse["dag_parse_s"] = time.perf_counter() - began

    dagbag_module.DagBag = TimedDagBag
    imported = time.time()
    profiler = None
    if os.environ.get("BENCH_CPROFILE"):  # where the Airflow time goes, function by function (slows the run)
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    code = dagrun_child.main(request_json)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_CPROFILE"])
    child_end = time.time()
    joins = _join_threads()
    out = {
        "child_start": child_start,
        "imported": imported,
        "child_end": child_end,
        "install_s": install_s,
        "joins": joins,
        **parse,
        **clock.result(),
    }
    Path(out_file).write_text(json.dumps(out))
    if os.environ.get("BENCH_EXIT_TRACE"):  # what a slow exit waits on: every thread's stack every 3 s
        import faulthandler

        faulthandler.dump_traceback_later(3, repeat=True)
    return code


def _join_threads() -> dict[str, float]:
    """Wait for the non-daemon threads left running (the interpreter would wait for them at exit), timed.

    First what the interpreter does before that wait: tell idle ``concurrent.futures`` pool workers
    (MLflow's artifact repositories keep some) to stop; joined without it, each would wait out the timeout.
    """
    import threading
    from concurrent.futures import thread as pool_threads

    waited = {}
    began = time.perf_counter()
    pool_threads._python_exit()  # registered with threading._register_atexit: runs before the join at exit
    waited["thread-pool workers"] = time.perf_counter() - began
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        began = time.perf_counter()
        thread.join(timeout=60)
        waited[thread.name] = time.perf_counter() - began
    return waited


# --------------------------------------------------------------------------- the parent


def _task_instances(home: Path) -> list[dict[str, Any]]:
    """Task instances of the last run, from the embedded metadata DB (times as epoch seconds)."""
    db = sqlite3.connect(home / "airflow" / "airflow.db")
    try:
        run_id = db.execute("select run_id from dag_run where dag_id=? order by id desc limit 1", (DAG_ID,)).fetchone()
        rows = db.execute(
            "select task_id, state, start_date, end_date from task_instance where dag_id=? and run_id=?",
            (DAG_ID, run_id[0]),
        ).fetchall()
    finally:
        db.close()
    return [{"task": t, "state": s, "start": _epoch(a), "end": _epoch(b)} for t, s, a, b in rows]


def _epoch(value: str | None) -> float | None:
    """A naive UTC timestamp of the metadata DB as epoch seconds."""
    if not value:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def _run_child(day: date, home: Path) -> dict[str, Any]:
    from lifelong.airflow.embedded_runner import ensure_airflow

    started = time.perf_counter()
    env = ensure_airflow()
    setup_s = time.perf_counter() - started
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src")])
    out_file = home / "profile.json"
    request = json.dumps({"dag_id": DAG_ID, "dates": [str(day)], "conf": None})
    log = home / "logs" / "profile-child.log"
    spawn = time.time()
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "bench.daily_profile", "--child", request, str(out_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
    exit_at = time.time()
    if done.returncode or not out_file.exists():
        raise RuntimeError(f"the profiled DAG run failed (exit {done.returncode}); see {log}")
    result = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("LIFELONG-")]
    return {
        **json.loads(out_file.read_text()),
        "spawn": spawn,
        "exit": exit_at,
        "setup_s": setup_s,
        "dag_result": result[0] if result else {},
        "task_instances": _task_instances(home),
    }


def _in_process_day(day: date) -> tuple[float, dict[str, Any]]:
    from lifelong.steps import run as pipeline

    clock = Clock()
    clock.install()
    try:
        started = time.perf_counter()
        pipeline.run_day(MODEL, day)
        return time.perf_counter() - started, clock.result()
    finally:
        clock.uninstall()


def _by_component(totals: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for components in totals.values():
        for name, seconds in components.items():
            out[name] += seconds
    return dict(out)


def profile(quick: bool) -> dict[str, Any]:
    """Run the days (see the module docstring); return every measurement."""
    from lifelong.config import load_params
    from lifelong.data import landing, store
    from lifelong.steps import run as pipeline

    warmup = 3 if quick else load_params().model(MODEL).warmup_days

    def edit(raw: dict) -> None:
        raw["models"][MODEL]["warmup_days"] = warmup

    with isolated_project(edit) as project:
        home = project / ".lifelong"
        start = date.fromisoformat(load_params().model(MODEL).start_date)
        store.ensure_repo()
        landing.simulate("vic_elec", start, warmup + 3)
        days = [start + timedelta(days=i) for i in range(warmup + 3)]
        before = []
        for day in days[: warmup + 1]:  # warm-up days, then the bootstrap day (first model)
            began = time.perf_counter()
            outcome = pipeline.run_day(MODEL, day)
            before.append({"day": str(day), "seconds": time.perf_counter() - began, "kind": _kind(outcome)})
        # the in-process day first, then the DAG run's day: the days stay in order
        in_process_s, in_process = _in_process_day(days[warmup + 1])
        measured = _run_child(days[warmup + 2], home)
        report = json.loads((home / "reports" / MODEL / "daily" / f"{days[warmup + 2]}.json").read_text())
    return {
        "warmup": warmup,
        "day": str(days[warmup + 2]),
        "in_process_day": str(days[warmup + 1]),
        "before": before,
        "airflow": measured,
        "report": report,
        "in_process_s": in_process_s,
        "in_process": in_process,
    }


def _kind(outcome: dict) -> str:
    if "skipped" in outcome:
        return "warm-up (update skipped)"
    return (outcome.get("update") or {}).get("kind", "?")


GROUPS = {"Airflow": "Airflow", "waiting": "Airflow", "child process exit": "Airflow", "MLflow": "MLflow",
          "git": "MLflow", "GX": "GX", "training": "training"}  # fmt: skip


def _group(component: str) -> str:
    return next((g for prefix, g in GROUPS.items() if component.startswith(prefix)), "other lifelong steps")


def _airflow_parts(run: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Airflow's own time, from the task instances' times and the steps' (all on one clock)."""
    steps = {s["step"]: s for s in run["steps"]}
    tis = sorted((t for t in run["task_instances"] if t["start"] and t["end"]), key=lambda t: t["start"])
    in_tis = sum(t["end"] - t["start"] for t in tis)
    in_steps = sum(s["end"] - s["start"] for s in steps.values())
    joined = sum(run["joins"].values())
    parts = {
        "Airflow start-up: process, imports, DAG parse, run creation": tis[0]["start"] - run["spawn"],
        "Airflow task runner around the steps (API calls, XComs, state)": in_tis - in_steps,
        "Airflow between tasks (dag.test loop)": tis[-1]["end"] - tis[0]["start"] - in_tis,
        "Airflow wrap-up after the last task": run["child_end"] - tis[-1]["end"],
        "waiting for Airflow's threads to end at exit": joined,
        "child process exit": run["exit"] - run["child_end"] - joined,
    }
    return parts, tis


def _task_rows(run: dict[str, Any], tis: list[dict[str, Any]]) -> list[list[Any]]:
    steps = {s["step"]: s for s in run["steps"]}
    rows = []
    for t in tis:
        step = steps.get(t["task"])
        parts = run["totals"].get(t["task"], {})
        top = ", ".join(f"{n} {v:.2f}" for n, v in sorted(parts.items(), key=lambda kv: -kv[1])[:3] if v >= 0.005)
        step_s = f"{step['end'] - step['start']:.2f}" if step else "-"
        rows.append([t["task"], t["state"], f"{t['end'] - t['start']:.2f}", step_s, top])
    return rows


def bench(quick: bool) -> Report:
    started = time.perf_counter()
    data = profile(quick)
    run = data["airflow"]
    wall = run["exit"] - run["spawn"]
    airflow, tis = _airflow_parts(run)
    components = {k: v for k, v in _by_component(run["totals"]).items() if k != "(outside steps)"}
    shares = {**airflow, **components}
    warm = _by_component(data["in_process"]["totals"])
    comp_rows = [
        [name, f"{s:.2f}", f"{100 * s / wall:.0f}%", f"{warm[name]:.2f}" if name in warm else "-"]
        for name, s in sorted(shares.items(), key=lambda kv: -kv[1])
    ]
    comp_rows.append(["**total**", f"**{wall:.2f}**", "100%", f"**{data['in_process_s']:.2f}**"])
    groups: dict[str, float] = defaultdict(float)
    for name, seconds in shares.items():
        groups[_group(name)] += seconds
    grouped = ", ".join(
        f"{g} {v:.1f} s ({100 * v / wall:.0f}%)" for g, v in sorted(groups.items(), key=lambda kv: -kv[1])
    )
    training = shares.get("training (fit)", 0.0)
    largest = max(groups, key=lambda g: groups[g])
    before = ", ".join(f"{b['day']} {b['kind']} {b['seconds']:.1f} s" for b in data["before"])
    waits = ", ".join(f"{n} {v:.1f} s" for n, v in run["joins"].items() if v >= 0.05) or "none"
    markdown = "\n".join(
        [
            f"**Where the time goes**: {grouped}. The daily update fits one day (48 windows) plus replay: "
            f"{training:.2f} s in the DAG run's fresh process, {warm.get('training (fit)', 0.0):.2f} s in the warm "
            f"in-process day. What dominates is paid once per process: Airflow's start-up and its task runner "
            f"(most of it on the first task: the in-process execution API generates its routes for every API "
            f"version Airflow supports on its first request), and the first use of MLflow (its imports, and "
            f"`torch._dynamo`, which the first optimizer and `torch.export` of the serving copy import) and of GX "
            f"(its imports); the same steps in a warm process (last column) take {data['in_process_s']:.1f} s in "
            f"all. Like the production child, this one holds the garbage collector's full collections during "
            f"its first run (a dozen of them while the libraries load, otherwise) and skips the interpreter's "
            f"teardown at exit (`dagrun_child.hold_full_collections`, `dagrun_child.exit_process`).",
            "",
            f"The profiled run: `{DAG_ID}` for {data['day']}, state {run['dag_result'].get('state', '?')}. "
            f"Before it, in-process: {before}; then {data['in_process_day']} in-process with the markers (the "
            f"last column below). One-time Airflow set-up of the new home (`db migrate`, pools): "
            f"{run['setup_s']:.1f} s, not counted. Start-up detail: interpreter "
            f"{run['child_start'] - run['spawn']:.1f} s, lifelong's modules (torch, pandas; MLflow, GX and DVC load "
            f"lazily in the tasks) {run['install_s']:.1f} s, "
            f"Airflow imports {run['imported'] - run['child_start'] - run['install_s']:.1f} s, DAG parse "
            f"{run.get('dag_parse_s', float('nan')):.2f} s, then dag.test until the first task starts. Non-daemon "
            f"threads waited for at exit: {waits}.",
            "",
            "By task (Airflow's task-instance duration, the pipeline step inside it, its largest components):",
            "",
            md_table(
                ["task", "state", "Airflow (s)", "step (s)", "largest components (s)"], _task_rows(run, tis), "llrrl"
            ),
            "",
            "By component, exclusive time (the last column: the day before, `steps.run.run_day` in the warm bench "
            "process, no Airflow):",
            "",
            md_table(["component", "DAG run (s)", "share", "warm in-process (s)"], comp_rows),
        ]
    )
    targets = (
        Target("one daily DAG run under 30 s", wall < 30.0, f"{wall:.1f} s from child process start to exit"),
        Target(
            "training is the largest share of the daily run",
            largest == "training",
            f"training {training:.2f} s ({100 * training / wall:.0f}%); largest: {largest} {groups[largest]:.1f} s",
        ),
    )
    settings = (
        f"{'QUICK' if quick else 'FULL'}: vic_elec, `{MODEL}` as in params.yaml except warm-up {data['warmup']} days; "
        "embedded Airflow (SQLite, dag.test in one child process), MLflow on SQLite, local DVC remote, CPU"
    )
    return Report(
        key="daily_profile",
        title="2. Where one daily DAG run's time goes",
        settings=settings,
        markdown=markdown,
        targets=targets,
        seconds=time.perf_counter() - started,
        extra={"shares": shares, "wall": wall},
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 warm-up days instead of the model's")
    parser.add_argument("--child", nargs=2, metavar=("REQUEST", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from lifelong.airflow.dagrun_child import exit_process

        exit_process(child(*args.child))  # ends as run_dags does in production
    report = bench(args.quick)
    return report.show()


if __name__ == "__main__":
    main(sys.argv[1:])
