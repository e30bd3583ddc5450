"""What the day's report says when ``update`` has nothing to train: never a silent skip.

When the champion has already learned the day an update would train on, ``update`` stops
with :class:`~lifelong.steps.context.NotReady` (Airflow: the task is skipped). Three cases
look alike from there and mean different things to whoever reads the report:

* ``done``: the champion learned day D-1, as the update of day D would have: a re-run of a
  day that was promoted. Nothing is lost.
* ``corrected_after_learned``: day D was re-ingested with other rows (a corrected batch)
  after the champion had learned it (it learned through D or later). The correction is
  stored as a new data version, but no model learns it: lifelong never re-learns a past
  day. Whoever corrected it should know that (re-train from the warm-up to learn it).
* ``past_day``: the run of a day older than what the champion has learned (a backfill):
  nothing to update.

:func:`already_learned` builds the NotReady with its outcome and records the outcome under
``<home>/reports/<model>/outcomes/<day>.json``; :func:`for_report` hands it to the day's
report when ``update`` produced no candidate (in a DAG the skipped task hands on nothing).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lifelong.data.files import write_atomic
from lifelong.steps.context import Context, NotReady


def _path(ctx: Context, day: date) -> Path:
    return ctx.settings.reports_dir / ctx.model / "outcomes" / f"{day}.json"


def already_learned(ctx: Context, day: date, ingest: dict[str, Any], champion: str, learned: str) -> NotReady:
    """The NotReady of an update for ``day`` whose champion has learned through ``learned`` (>= day - 1)."""
    model, learned_day = ctx.model, date.fromisoformat(learned)
    corrected = bool(ingest.get("replaced")) and bool(ingest.get("changed"))
    version = str(ingest.get("data_version", ""))[:12]
    if learned_day < day:
        kind = "done"
        message = f"{model} v{champion} has already learned {learned}: the update for {day} is done"
        if corrected:  # the message still ends "is done": callers and tests read it so
            message = (
                f"{model} v{champion} has already learned {learned}; the corrected {day} (data version {version}) "
                f"is learned by the update of {day + timedelta(days=1)}: the update for {day} is done"
            )
    elif corrected:
        kind = "corrected_after_learned"
        message = (
            f"{day} was re-ingested with changed rows (data version {version}) after {model} v{champion} had "
            f"learned it (trained through {learned}): the correction is stored but NOT learned; lifelong never "
            "re-learns a past day (retrain from the warm-up days to learn it)"
        )
    else:
        kind = "past_day"
        message = f"{model} v{champion} has learned through {learned}, after {day}: nothing to update for a past day"
    outcome = {
        "outcome": kind, "message": message, "date": str(day), "champion": champion, "trained_through": learned,
        "data_version": ingest.get("data_version"), "corrected": corrected,
    }  # fmt: skip
    write_atomic(_path(ctx, day), json.dumps(outcome, indent=2).encode())
    return NotReady(message, outcome=outcome)


def for_report(ctx: Context, day: date, results: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded outcome of ``day``'s update when the results hold no candidate; else None.

    Only an outcome recorded for the data version this run ingested: one left by an earlier
    run of the day on other data says nothing about this one.
    """
    if results.get("update") is not None:
        return None
    try:
        outcome = json.loads(_path(ctx, day).read_text())
    except (OSError, ValueError):
        return None
    ingested = (results.get("validate_ingest") or {}).get("data_version")
    return outcome if isinstance(outcome, dict) and ingested and outcome.get("data_version") == ingested else None
