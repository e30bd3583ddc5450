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


def latest(
    client: MlflowClient, experiment_id: str, model: str, kinds: tuple[str, ...] = EVENTS, *, version: str | None = None
) -> dict[str, Any] | None:
    """The newest event of ``model`` among ``kinds`` (of ``version`` when given), or None.

    Its cost does not grow with the log: one query per kind, on tags written when the event was
    recorded and matched exactly (``model``, ``event``, ``version``), newest first by ``time_ns``,
    one run returned. :func:`events` lists the whole log; the daily steps never need it.
    """
    found = []
    for kind in kinds:
        if kind not in EVENTS:
            raise ValueError(f"unknown audit event {kind!r}")
        wanted = f"tags.model = '{model}' and tags.event = '{kind}'"
        if version is not None:
            wanted += f" and tags.version = '{version}'"
        found += client.search_runs(
            [experiment_id], filter_string=wanted, order_by=["tags.time_ns DESC"], max_results=1
        )
    if not found:
        return None
    return _event(max(found, key=lambda run: int(run.data.tags.get("time_ns") or 0)))


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
