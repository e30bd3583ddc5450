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


def _add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """update, evaluate, gate, demo, status, ui."""


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
