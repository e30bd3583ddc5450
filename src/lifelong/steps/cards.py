"""Writing a version's model card (:mod:`lifelong.model_card`) into its MLflow description.

Called when the gate's decision is recorded (promote, reject) and when a rollback demotes a
version. A card is documentation: a failure to write one is logged, never fails the step.
"""

from __future__ import annotations

import logging

from lifelong import model_card, registry
from lifelong.steps.context import Context


def write(ctx: Context, version: str | None, *, status: str, reason: str, replaced: str | None, note: str = "") -> None:
    """Describe ``version`` of ``ctx.model``: its data, task(s), strategy, decision, error and predecessor."""
    if not version:
        return
    try:
        record = registry.version_record(ctx.model, version)
        target = ctx.dataset.target
        facts = model_card.facts_of(
            ctx.model, version, record, status=status, reason=reason, replaced=replaced, note=note or None,
            **({"tasks": (target,)} if target and not record["params"].get("task") else {}),
        )  # fmt: skip
        registry.describe(ctx.model, version, model_card.render(facts))
    except Exception:  # noqa: BLE001 - documentation only
        logging.getLogger("lifelong").exception("could not write the model card of %s v%s", ctx.model, version)


def replaced_by_promotion(model: str, version: str) -> str | None:
    """The champion ``version``'s (latest) promotion replaced (from the audit history)."""
    event = registry.latest_event(model, version, ("promote",))
    return event["from"] if event is not None else None
