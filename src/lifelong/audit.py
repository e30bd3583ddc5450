"""The append-only audit log of champion changes: every promotion, rejection and rollback.

MLflow keeps no alias history, so lifelong keeps one. **Where**: one MLflow run per event
in the experiment ``lifelong-audit``, the event's fields as run tags. Why there and not a
JSONL file:

* workers share nothing but MLflow and DVC. A file under ``LIFELONG_HOME`` is local to one
  worker (Celery workers run on different machines), and a JSONL *artifact* appended by
  read-modify-write on S3 loses one of two concurrent appends;
* creating a run is one atomic insert in the tracking database, so concurrent writers
  never lose or interleave each other's events, on SQLite as on PostgreSQL;
* nothing lifelong calls updates or deletes those runs: the log only grows. The events
  are also browsable in the MLflow UI next to the models they describe.

Each event carries a ``key`` (a hash of what makes it unique, e.g. promote + version +
trigger); recording an event whose key is already there is a no-op, so a retried task
never writes the same promotion twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

AUDIT_EXPERIMENT = "lifelong-audit"
EVENTS = ("promote", "reject", "rollback")
CHAMPION_MOVES = ("promote", "rollback")  # the events that move ``champion``
FIELDS = ("time", "event", "model", "version", "from", "trigger", "reason")
_MAX_TAG = 8000
_SAFE_KEY = re.compile(r"[A-Za-z0-9_.:/@+=-]{1,250}")  # a key that may go inside a filter string


def event_key(*parts: object) -> str:
    """A short stable id for an event (safe inside an MLflow filter string).

    >>> event_key("promote", "demand", "3", "airflow:daily/run1")
    'c44c544939afe476202d1e06'
    """
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:24]


def _now() -> tuple[str, int]:
    ns = time.time_ns()
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds"), ns


def find(client: MlflowClient, experiment_id: str, key: str) -> dict[str, Any] | None:
    """The event recorded under ``key``, if any."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.key = '{key}'", max_results=1)
    return _event(runs[0]) if runs else None


def record(
    client: MlflowClient,
    experiment_id: str,
    *,
    event: str,
    model: str,
    version: str | None,
    from_version: str | None,
    trigger: str,
    reason: str,
    key: str,
) -> dict[str, Any]:
    """Append one event (unless one with ``key`` exists: then return that one)."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    existing = find(client, experiment_id, key)
    if existing is not None:
        return existing
    if event in CHAMPION_MOVES:  # the pointer first: one ahead of the log is noticed (last_move), one behind is not
        client.set_experiment_tag(experiment_id, _move_tag(model), json.dumps({"key": key, "event": event}))
    stamp, ns = _now()
    tags = {
        "key": key,
        "event": event,
        "model": model,
        "version": version or "",
        "from": from_version or "",
        "trigger": trigger[:_MAX_TAG],
        "reason": reason[:_MAX_TAG],
        "time": stamp,
        "time_ns": str(ns),
    }
    run = client.create_run(
        experiment_id, start_time=ns // 1_000_000, tags=tags, run_name=f"{event} {model} v{version}"
    )
    client.set_terminated(run.info.run_id, "FINISHED", end_time=ns // 1_000_000)
    return _event(run)


def _event(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    out: dict[str, Any] = {name: tags.get(name) or None for name in FIELDS}
    out["audit_run_id"] = run.info.run_id
    return out


def _move_tag(model: str) -> str:
    """The audit experiment's tag that names ``model``'s last champion move (a hash for unusual names).

    >>> _move_tag("demand_forecaster")
    'last_champion_move.demand_forecaster'
    """
    plain = re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", model)
    return f"last_champion_move.{model if plain else event_key(model)}"


def last_move(client: MlflowClient, experiment_id: str, model: str) -> dict[str, Any] | None:
    """The newest promotion or rollback of ``model``, or None; its cost does not grow with the log.

    :func:`record` sets the experiment tag :func:`_move_tag` to the key of each champion move before it
    writes the event, so the read is the experiment's tags and the event found by its key (an exact
    match). A tag whose event is missing (a crash between the two writes) or no tag (a log written
    before the tag existed) falls back to the log itself, by exact-match tags.
    """
    raw = client.get_experiment(experiment_id).tags.get(_move_tag(model))
    try:
        key = json.loads(raw).get("key") if raw else None
    except (ValueError, AttributeError):
        key = None
    found = find(client, experiment_id, key) if isinstance(key, str) and _SAFE_KEY.fullmatch(key) else None
    if found is not None and found["model"] == model:
        return found
    return _newest_of(client, experiment_id, [f"tags.model = '{model}' and tags.event = '{k}'" for k in CHAMPION_MOVES])


def latest_of_version(
    client: MlflowClient, experiment_id: str, model: str, version: str, kinds: tuple[str, ...]
) -> dict[str, Any] | None:
    """The newest event among ``kinds`` of one version of ``model`` (a handful at most), or None."""
    unknown = [kind for kind in kinds if kind not in EVENTS]
    if unknown:
        raise ValueError(f"unknown audit event {unknown[0]!r}")
    wanted = [f"tags.model = '{model}' and tags.version = '{version}' and tags.event = '{k}'" for k in kinds]
    return _newest_of(client, experiment_id, wanted)


def _newest_of(client: MlflowClient, experiment_id: str, filters: list[str]) -> dict[str, Any] | None:
    """The newest event matching any of ``filters`` (one exact-match query each), or None."""
    found = [n for n in (_newest(client, experiment_id, wanted) for wanted in filters) if n is not None]
    return max(found, key=lambda n: n[0])[1] if found else None


def _newest(client: MlflowClient, experiment_id: str, wanted: str) -> tuple[int, dict[str, Any]] | None:
    """The newest event matching ``wanted`` with its ``time_ns``, read page by page with no ORDER BY on a
    tag (that sort joins the whole log); with a version in ``wanted``, one short page."""
    best: tuple[int, dict[str, Any]] | None = None
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=wanted, max_results=1000, page_token=token)
        for run in page:
            ns = int(run.data.tags.get("time_ns") or 0)
            if best is None or ns > best[0]:
                best = (ns, _event(run))
        token = page.token
        if not token:
            break
    return best


def events(client: MlflowClient, experiment_id: str, model: str) -> list[dict[str, Any]]:
    """Every event of ``model``, oldest first."""
    found: list[tuple[int, dict[str, Any]]] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.model = '{model}'",
            order_by=["attributes.start_time ASC"],
            max_results=1000,
            page_token=token,
        )
        found.extend((int(run.data.tags.get("time_ns") or 0), _event(run)) for run in page)
        token = page.token
        if not token:
            break
    found.sort(key=lambda pair: pair[0])
    return [event for _, event in found]
