"""The decision steps: gate, promote, reject, rollback.

The gate judges a candidate's scores against the champion's on the same data
(:mod:`lifelong.gate`); ``promote`` and ``reject`` carry the decision into the registry,
where the ``champion`` alias is the one thing that says which version serves. Both write
the version's model card; a rejection and a rollback send an alert (:mod:`lifelong.notify`).
The automatic rollback is the daily ``watch`` step (:mod:`lifelong.steps.watch`).
"""

from __future__ import annotations

from lifelong import notify, registry
from lifelong.gate import GateDecision, decide
from lifelong.steps import cards
from lifelong.steps.context import Context, RunInfo
from lifelong.steps.contracts import DecisionResult, EvaluationResult, RegistryOutcome, TaskEvaluationResult


def gate(
    model: str, evaluation: EvaluationResult | TaskEvaluationResult, *, run_info: RunInfo | dict | None = None
) -> DecisionResult:
    """Decide: promote only if no metric regresses past its tolerance in params.yaml."""
    ctx = Context.of(model, run_info)
    decision = decide(evaluation["candidate"], evaluation.get("champion"), ctx.spec.gate)
    return DecisionResult(
        model=model,
        version=evaluation["version"],
        champion_version=evaluation.get("champion_version"),
        approved=decision.approved,
        reason=decision.reason,
        deltas=decision.deltas,
    )


def _gate_decision(decision: DecisionResult) -> GateDecision:
    return GateDecision(approved=decision["approved"], reason=decision["reason"], deltas=decision.get("deltas", {}))


def promote(model: str, decision: DecisionResult, *, run_info: RunInfo | dict | None = None) -> RegistryOutcome:
    """Move ``champion`` to the candidate, unless the champion changed since the gate judged.

    The check is a compare-and-set on the alias: a run that was judged against v3 never
    overwrites a v4 that another run promoted meanwhile; it is rejected with that reason.
    """
    ctx = Context.of(model, run_info)
    current, judged_against = registry.champion(model), decision.get("champion_version")
    if current not in (judged_against, decision["version"]):
        stale = DecisionResult(
            **{  # type: ignore[typeddict-item]
                **decision,
                "approved": False,
                "reason": f"champion moved from v{judged_against} to v{current} while this run was judged; "
                "re-run the day",
            }
        )
        return _rejected(ctx, stale)
    outcome = registry.promote(model, decision["version"], _gate_decision(decision), trigger=ctx.run.trigger)
    cards.write(ctx, decision["version"], status="approved", reason=decision["reason"], replaced=outcome.get("from"))
    return outcome  # type: ignore[return-value]


def reject(model: str, decision: DecisionResult, *, run_info: RunInfo | dict | None = None) -> RegistryOutcome:
    """Keep the champion; tag the candidate rejected with the gate's reason."""
    return _rejected(Context.of(model, run_info), decision)


def _rejected(ctx: Context, decision: DecisionResult) -> RegistryOutcome:
    version = decision["version"]
    outcome = registry.reject(ctx.model, version, _gate_decision(decision), trigger=ctx.run.trigger)
    champion = outcome.get("champion")
    stays = f"not promoted: v{champion} stays champion" if champion else "not promoted"
    cards.write(ctx, version, status="rejected", reason=decision["reason"], replaced=None, note=stays)
    notify.alert(
        "reject", model=ctx.model, date=ctx.run.logical_date, version=version, reason=decision["reason"],
        figures={"champion": champion, "deltas": decision.get("deltas", {})}, dag_run=notify.run_label(ctx.run),
    )  # fmt: skip
    return outcome  # type: ignore[return-value]


def rollback(
    model: str, *, to: str | None = None, reason: str, run_info: RunInfo | dict | None = None
) -> RegistryOutcome:
    """Point ``champion`` back (default: the newest older version that served and was never rolled
    back, from the audit history) and record why; the version rolled away from is tagged rolled_back."""
    ctx = Context.of(model, run_info)
    outcome = registry.rollback(model, to=to, trigger=ctx.run.trigger, reason=reason)
    demoted(ctx, outcome, reason)
    return outcome  # type: ignore[return-value]


def demoted(ctx: Context, outcome: dict, reason: str) -> None:
    """Rewrite the card of the version a rollback demoted (nothing when nothing moved)."""
    if outcome.get("changed") and outcome.get("from"):
        version = outcome["from"]
        cards.write(
            ctx, version, status="rolled_back", reason=reason, replaced=cards.replaced_by_promotion(ctx.model, version),
            note=f"rolled back to v{outcome['version']} ({outcome.get('trigger')})",
        )  # fmt: skip
