"""Moving ``champion`` and ``previous`` as one recorded move that a crash cannot leave half-done.

A promotion moves two aliases (``previous`` to the old champion, ``champion`` to the new
version), a rollback the same two the other way, and each also tags a version and writes an
audit event. MLflow sets one alias per call, so a process killed between the calls used to
leave ``previous == champion`` (or a rolled-back version not yet tagged so) until that same
step was re-run. Here a move is written down first, then carried out, then crossed out:

1. the registered model is tagged ``lifelong.alias_move`` with the whole move as JSON:
   the two aliases, the version tags to set, the audit event (with its key);
2. ``previous`` is set (or removed), then ``champion`` (checkpoint ``alias_pair`` between);
3. the version tags are set and the audit event is written (idempotent by its key);
4. the tag is removed.

Every step is idempotent, so the move can be completed from its record by anyone: the
start of every model-changing step (:func:`lifelong.steps.changes.changes_model`, under the
model's lock) and every registry operation that moves or judges against ``champion``
(``promote``, ``reject``, ``rollback``) first completes a move left pending
(:func:`lifelong.registry.settle`). Completion runs only under the model's lock (or in a
caller that owns the model, as the tests do): a reader never writes.

While a move is pending ``champion`` still names a complete, approved version: both ends of
every move are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lifelong import faults
from lifelong.errors import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient

PENDING = "lifelong.alias_move"  # registered-model tag: the move under way
CHAMPION, PREVIOUS = "champion", "previous"


@dataclass(frozen=True)
class Move:
    """What one promotion or rollback changes, in the order it is applied."""

    champion: str
    previous: str | None
    event: dict[str, Any]  # the audit event's fields (:func:`lifelong.audit.record`), without its key
    key: str  # the audit event's key: writing it twice records it once
    version_tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Move:
        """The move recorded in the tag (one line of error when the tag was mangled).

        >>> m = Move("3", "2", {"event": "promote"}, "k", {"3": {"promoted_at": "t"}})
        >>> Move.from_json(m.to_json()) == m
        True
        """
        try:
            data = json.loads(raw)
            move = cls(**data)
            if not isinstance(move.champion, str) or not isinstance(move.event, dict):
                raise TypeError("champion and event")
            return move
        except (ValueError, TypeError) as exc:
            raise RegistryError(
                f"tag {PENDING} does not hold an alias move ({exc}); fix or delete it by hand"
            ) from None


Record = Callable[[Move], dict[str, Any]]  # writes the move's audit event, returns it


def pending(client: MlflowClient, model: str) -> Move | None:
    """The move recorded on ``model`` and not finished, if any (None when the model is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(model).tags
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    raw = tags.get(PENDING)
    return Move.from_json(raw) if raw else None


def move(client: MlflowClient, model: str, change: Move, *, record: Record, before_event: str | None = None) -> dict:
    """Record ``change``, carry it out, cross it out; returns the audit event with the aliases after it.

    ``before_event``: a fault checkpoint between the aliases and the rest (promote's ``audit``).
    """
    client.set_registered_model_tag(model, PENDING, change.to_json())
    return complete(client, model, change, record=record, before_event=before_event)


def complete(
    client: MlflowClient, model: str, change: Move, *, record: Record, before_event: str | None = None
) -> dict[str, Any]:
    """Carry out ``change`` (recorded already) from wherever a crash stopped it, and cross it out."""
    _set(client, model, PREVIOUS, change.previous)
    faults.checkpoint("alias_pair")
    _set(client, model, CHAMPION, change.champion)
    if before_event:
        faults.checkpoint(before_event)
    for version, tags in change.version_tags.items():
        for key, value in tags.items():
            client.set_model_version_tag(model, version, key, value)
    event = record(change)
    client.delete_registered_model_tag(model, PENDING)
    return {**event, "champion": change.champion, "previous": change.previous, "changed": True}


def _set(client: MlflowClient, model: str, alias: str, version: str | None) -> None:
    if version is not None:
        client.set_registered_model_alias(model, alias, version)
        return
    from mlflow.exceptions import MlflowException

    try:
        client.delete_registered_model_alias(model, alias)
    except MlflowException as exc:  # not set: nothing to remove
        if getattr(exc, "error_code", "") not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
