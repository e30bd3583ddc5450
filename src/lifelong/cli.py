"""``lifelong ...``: every step by hand, plus demo, status, history and rollback.

Each command is a thin wrapper over a step of ``lifelong.steps`` (or the module that owns
the action). Results go to stdout as JSON (``task-matrix`` prints a table, JSON with ``--json``);
a refusal is one line on stderr and a non-zero exit, never a traceback (set ``LIFELONG_DEBUG=1``
to see one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lifelong.errors import LifelongError

Handler = Callable[[argparse.Namespace], Any]


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# ----------------------------------------------------------------- data commands


def _date(text: str) -> Any:
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _simulate(args: argparse.Namespace) -> Any:
    from lifelong.data import landing

    if args.tasks is not None:
        paths = landing.land_tasks(args.dataset, args.tasks or None, force=args.force)
    elif args.start is None:
        raise LifelongError("give --start and --days (forecast data) or --tasks (task data)")
    else:
        paths = landing.simulate(args.dataset, args.start, args.days, force=args.force)
    return {"dataset": args.dataset, "files": [str(p) for p in paths]}


def _ingest(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from lifelong.data import store

    file = Path(args.file) if args.file else None
    return store.ingest(args.dataset, day=args.date, task=args.task, file=file).as_dict()


def _data_checkout(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from lifelong.data import store

    if args.in_place and not args.yes:
        raise LifelongError("--in-place rewinds data/ and data.dvc for every model: add --yes to confirm")
    where = {"to": Path(args.to) if args.to else None, "in_place": args.in_place}
    if args.model_version is not None:
        from lifelong import registry

        if not args.model:
            raise LifelongError("--model-version needs --model NAME")
        version = registry.data_version_of(args.model, args.model_version)
        return {"model": args.model, "model_version": args.model_version, **store.checkout(version, **where)}
    if not args.version:
        raise LifelongError("give --version MD5, or --model NAME --model-version N")
    return store.checkout(args.version, **where)


def _data_status(args: argparse.Namespace) -> Any:
    from lifelong.data import store

    return store.status()


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """simulate, ingest, data checkout, data status."""
    p = sub.add_parser("simulate", help="cut the real data into landing files (one per day, or per task)")
    p.add_argument("--dataset", required=True, help="data set name (a block of params.yaml)")
    p.add_argument("--start", type=_date, help="first day, YYYY-MM-DD (forecast data)")
    p.add_argument("--days", type=int, default=1, help="how many days (default 1)")
    p.add_argument("--tasks", nargs="*", help="tasks to land (task data; none listed: every task)")
    p.add_argument("--force", action="store_true", help="overwrite landing files whose content differs")
    p.set_defaults(handler=_simulate)

    p = sub.add_parser("ingest", help="validate a landed batch and store it as a new data version")
    p.add_argument("--dataset", required=True, help="data set name (a block of params.yaml)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--date", type=_date, help="the logical day, YYYY-MM-DD (forecast data)")
    which.add_argument("--task", help="the task (task data)")
    p.add_argument("--file", help="the batch (default: its landing file under data/landing/<dataset>/)")
    p.set_defaults(handler=_ingest)

    p = sub.add_parser("data", help="the versioned data store")
    data = p.add_subparsers(dest="data_command", required=True)
    q = data.add_parser(
        "checkout",
        help="restore exactly the files of a recorded data version into a folder (data/ and data.dvc untouched)",
    )
    q.add_argument("--version", help="the data version (md5 in data.dvc, as ingest prints it)")
    q.add_argument("--model", help="with --model-version: restore the data that model version was trained on")
    q.add_argument("--model-version", help="a registered version of --model (its lineage names the data version)")
    where = q.add_mutually_exclusive_group()
    where.add_argument(
        "--to",
        metavar="DIR",
        help="where to restore it (default: <home>/checkouts/<md5>/, home being $LIFELONG_HOME or .lifelong/)",
    )
    where.add_argument("--in-place", action="store_true", help="rewind the live store (data/ and data.dvc) instead")
    q.add_argument("--yes", action="store_true", help="confirm --in-place")
    q.set_defaults(handler=_data_checkout)
    q = data.add_parser("status", help="the current data version and what the store holds")
    q.set_defaults(handler=_data_status)


# ----------------------------------------------------------------- registry commands


def _add_registry_commands(sub: argparse._SubParsersAction) -> None:
    """forecast, history, task-matrix, rollback."""
    p = sub.add_parser("forecast", help="the published day-ahead forecast of a model (default: the latest day)")
    p.add_argument("model", help="registered model name (as in params.yaml)")
    p.add_argument("--date", type=_date, help="the forecast day, YYYY-MM-DD (default: the latest published)")
    p.set_defaults(handler=_forecast)
    p = sub.add_parser("history", help="every promotion, rejection and rollback of a model, oldest first")
    p.add_argument("model", help="registered model name (as in params.yaml)")
    p.set_defaults(handler=_history)
    p = sub.add_parser(
        "task-matrix",
        help="a daily forecaster's task matrix over its regimes: each closed regime's last version's day-ahead "
        "MAE on every regime's days so far (days it learned: retention, not held-out error)",
    )
    p.add_argument("model", help="registered model name (a forecaster of params.yaml)")
    p.add_argument("--json", action="store_true", help="print the matrix as JSON instead of a table")
    p.set_defaults(handler=_task_matrix)
    p = sub.add_parser(
        "rollback",
        help="point the champion alias back (default: the newest older version that served and was never "
        "rolled back, from the audit history); the version rolled away from is tagged rolled_back",
    )
    p.add_argument("model", help="registered model name (as in params.yaml)")
    p.add_argument("--to", metavar="VERSION", help="the version to serve (an approved one, never a rolled_back one)")
    p.add_argument("--reason", default="manual rollback", help="why; recorded in the audit history")
    p.set_defaults(handler=_rollback)


def _forecast(args: argparse.Namespace) -> Any:
    from lifelong.steps import publish

    table = publish.read_forecast(args.model, args.date)
    first = table.iloc[0]
    rows = [
        {"timestamp": str(r.timestamp), "forecast": round(float(r.forecast), 3)} for r in table.itertuples(index=False)
    ]
    return {
        "model": args.model, "date": str(first["date"]), "model_version": str(first["model_version"]),
        "data_version": str(first["data_version"]), "issued_at": str(first["issued_at"]),
        "path": str(first["path"]), "rows": rows,
    }  # fmt: skip


def _history(args: argparse.Namespace) -> Any:
    from lifelong import registry

    return registry.history(args.model)


def _task_matrix(args: argparse.Namespace) -> Any:
    from lifelong.steps import regime_matrix

    found = regime_matrix.regime_matrix(args.model)
    if args.json:
        return found
    print("\n".join(regime_matrix.format_matrix(found)))
    return None


def _rollback(args: argparse.Namespace) -> Any:
    from lifelong.steps import decide

    return decide.rollback(args.model, to=args.to, reason=args.reason)


# ----------------------------------------------------------------- pipeline commands


def _run_day(args: argparse.Namespace) -> dict:
    from lifelong.steps import run

    return run.run_day(args.model, args.date, file=args.file, task_shift=args.task_shift)


def _add_task(args: argparse.Namespace) -> dict:
    from lifelong.steps import run

    overrides = {
        "strategy": args.strategy,
        "ewc_lambda": args.ewc_lambda,
        "epochs": args.epochs,
        "replay_capacity": args.replay_capacity,
    }
    return run.run_task(args.model, args.task, file=args.file, start=args.start, end=args.end, overrides=overrides)


def _step(args: argparse.Namespace) -> dict:
    """One daily step, its input and output as JSON files (what dvc.yaml's stages run).

    Each step is handed the previous one's output, so the data version recorded by ``validate``
    is the one ``update`` trains on and ``evaluate`` scores.
    """
    from pathlib import Path

    from lifelong.steps import daily

    given = json.loads(Path(args.input).read_text()) if args.input else None
    if args.step != "validate" and not given:
        raise LifelongError(f"step {args.step} needs --input: the previous step's JSON output")
    if args.step == "validate":
        result = daily.validate_ingest(args.model, args.date)
        # only what identifies the data: timings and report paths would make DVC rerun everything downstream
        result = {k: result[k] for k in ("dataset", "partition", "rows", "data_version")}
    elif args.step == "update":
        result = daily.update(args.model, args.date, given)
    else:
        result = daily.evaluate(args.model, args.date, given)
        result = {**result["candidate"], **{f"champion_{k}": v for k, v in (result["champion"] or {}).items()}}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return result


def _demo(args: argparse.Namespace) -> dict:
    from lifelong import demo

    return demo.main(days=args.days, tasks=tuple(args.tasks), epochs=args.epochs)


def _dag(args: argparse.Namespace) -> list[dict]:
    from lifelong.airflow.embedded_runner import run_dag

    conf = json.loads(args.conf) if args.conf else None
    return run_dag(args.dag_id, args.dates or [None], conf=conf)


def _ui(args: argparse.Namespace) -> None:
    from lifelong import ui

    ui.serve(airflow_port=args.airflow_port, mlflow_port=args.mlflow_port)


def _status(args: argparse.Namespace) -> dict:
    from lifelong.steps import run

    return run.status()


def _add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """run-day, add-task, dag, demo, status, ui."""
    p = sub.add_parser("run-day", help="validate, ingest, drift, update, evaluate, gate one day without Airflow")
    p.add_argument("model")
    p.add_argument("--date", required=True, help="YYYY-MM-DD")
    p.add_argument("--file", help="landing file (default: the day's file under data/landing)")
    p.add_argument("--task-shift", action="store_true", help="close the model's regime and open a new task on this day")
    p.set_defaults(handler=_run_day)

    p = sub.add_parser("step", help="one daily step with JSON files in and out (dvc.yaml stages)")
    p.add_argument("step", choices=["validate", "update", "evaluate"])
    p.add_argument("model")
    p.add_argument("--date", required=True)
    p.add_argument("--input", help="the previous step's JSON output")
    p.add_argument("--out", help="write the result here as JSON")
    p.set_defaults(handler=_step)

    p = sub.add_parser("add-task", help="teach a model a new task (a classifier's task, a forecaster's series)")
    p.add_argument("model")
    p.add_argument("--task", required=True, help="a task of a classifier's data set, or a forecast data set")
    p.add_argument("--file", help="a classifier's task file under data/landing/<dataset>/")
    p.add_argument("--start", help="a forecaster's task: its first day to ingest (YYYY-MM-DD)")
    p.add_argument("--end", help="a forecaster's task: its last day to ingest (YYYY-MM-DD)")
    p.add_argument("--strategy", help="naive, ewc, online_ewc, lwf, replay, ewc+replay, lwf+replay")
    p.add_argument("--ewc-lambda", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--replay-capacity", type=int, help="replay buffer size (the trigger form's replay_capacity)")
    p.set_defaults(handler=_add_task)

    p = sub.add_parser("dag", help="run a DAG through the embedded Airflow (dag.test), once per --date")
    p.add_argument("dag_id")
    p.add_argument("--dates", nargs="*", help="logical dates YYYY-MM-DD (none: one manual run)")
    p.add_argument("--conf", help="run configuration as JSON (task-addition parameters)")
    p.set_defaults(handler=_dag)

    p = sub.add_parser("demo", help="the main job: 30 days of vic_elec through Airflow, then FordA -> FordB")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--tasks", nargs="*", default=["FordA", "FordB"])
    p.add_argument("--epochs", type=int, default=None, help="override the classifier's epochs")
    p.set_defaults(handler=_demo)

    p = sub.add_parser("status", help="champions, stored data, last reports")
    p.set_defaults(handler=_status)

    p = sub.add_parser("ui", help="Airflow and MLflow UIs on 127.0.0.1 (Ctrl-C stops them)")
    p.add_argument("--airflow-port", type=int, default=8080)
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.set_defaults(handler=_ui)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lifelong", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_registry_commands(sub)
    _add_pipeline_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        result = handler(args)
    except LifelongError as exc:
        if os.environ.get("LIFELONG_DEBUG"):
            raise
        print(f"lifelong {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"lifelong {args.command}: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        _print_json(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
