"""``lifelong ...``: every step by hand, plus demo, status, history and rollback.

Each command is a thin wrapper over a function in ``lifelong.pipeline`` (or the module that
owns the step). Results go to stdout as JSON; a refusal is one line on stderr and a
non-zero exit, never a traceback (set ``LIFELONG_DEBUG=1`` to see one).
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


# ----------------------------------------------------------------- data commands (issue 3)


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    """simulate, ingest, data checkout."""


# ----------------------------------------------------------------- registry commands (issue 4)


def _add_registry_commands(sub: argparse._SubParsersAction) -> None:
    """history, rollback."""


# ----------------------------------------------------------------- pipeline commands (issue 5)


def _run_day(args: argparse.Namespace) -> dict:
    from lifelong import pipeline

    return pipeline.run_day(args.model, args.date, file=args.file)


def _add_task(args: argparse.Namespace) -> dict:
    from lifelong import pipeline

    overrides = {"strategy": args.strategy, "ewc_lambda": args.ewc_lambda, "epochs": args.epochs}
    return pipeline.run_task(args.model, args.task, file=args.file, overrides=overrides)


def _demo(args: argparse.Namespace) -> dict:
    from lifelong import demo

    return demo.main(days=args.days, tasks=tuple(args.tasks), epochs=args.epochs)


def _dag(args: argparse.Namespace) -> list[dict]:
    from lifelong.airflow.embedded import run_dag

    conf = json.loads(args.conf) if args.conf else None
    return run_dag(args.dag_id, args.dates or [None], conf=conf)


def _ui(args: argparse.Namespace) -> None:
    from lifelong import ui

    ui.serve(airflow_port=args.airflow_port, mlflow_port=args.mlflow_port)


def _status(args: argparse.Namespace) -> dict:
    from lifelong import pipeline

    return pipeline.status()


def _add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """run-day, add-task, dag, demo, status, ui."""
    p = sub.add_parser("run-day", help="validate, ingest, drift, update, evaluate, gate one day without Airflow")
    p.add_argument("model")
    p.add_argument("--date", required=True, help="YYYY-MM-DD")
    p.add_argument("--file", help="landing file (default: the day's file under data/landing)")
    p.set_defaults(handler=_run_day)

    p = sub.add_parser("add-task", help="teach a classifier a new task without Airflow")
    p.add_argument("model")
    p.add_argument("--task", required=True)
    p.add_argument("--file")
    p.add_argument("--strategy")
    p.add_argument("--ewc-lambda", type=float)
    p.add_argument("--epochs", type=int)
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
