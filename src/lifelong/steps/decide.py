"""The decision steps: gate, promote, reject, rollback.

The gate judges a candidate's scores against the champion's on the same data
(:mod:`lifelong.gate`); ``promote`` and ``reject`` carry the decision into the registry,
where the ``champion`` alias is the one thing that says which version serves. Both write
the version's model card; a rejection and a rollback send an alert (:mod:`lifelong.notify`).
The automatic rollback is the daily ``watch`` step (:mod:`lifelong.steps.watch`).
"""

from __future__ import annotations

from lifelong import decisions, notify, registry
from lifelong.artifacts import ServingCheckFailed
from lifelong.gate import GateDecision, decide, for_task_addition
from lifelong.steps import cards
from lifelong.steps.changes import changes_model
from lifelong.steps.context import Context, RunInfo
from lifelong.steps.contracts import DecisionResult, EvaluationResult, RegistryOutcome, TaskEvaluationResult


@changes_model
def gate(
    model: str, evaluation: EvaluationResult | TaskEvaluationResult, *, run_info: RunInfo | dict | None = None
) -> DecisionResult:
    """Decide: promote only if no metric regresses past its tolerance in params.yaml.

    The decision is recorded on the candidate version with the evaluation it judged
    (:mod:`lifelong.decisions`): ``promote`` trusts that record, not the decision it is handed.
    A version that is champion already (the re-run of a promoted day) keeps the record that
    made it champion.
    """
    ctx = Context.of(model, run_info)
    spec = for_task_addition(ctx.spec.gate) if "tasks" in evaluation else ctx.spec.gate
    decision = decide(evaluation["candidate"], evaluation.get("champion"), spec)
    version, judged_against = evaluation["version"], evaluation.get("champion_version")
    result = DecisionResult(
        model=model,
        version=version,
        champion_version=judged_against,
        approved=decision.approved,
        reason=decision.reason,
        deltas=decision.deltas,
    )
    if registry.champion(model) != str(version):
        result["decision_sha256"] = registry.record_decision(
            model,
            version,
            decisions.body(
                model=model, version=version, champion_version=judged_against, approved=decision.approved,
                reason=decision.reason, deltas=decision.deltas, candidate=evaluation["candidate"],
                champion=evaluation.get("champion"), data_version=evaluation.get("data_version"),
            ),
        )  # fmt: skip
    return result


def _gate_decision(decision: DecisionResult) -> GateDecision:
    return GateDecision(approved=decision["approved"], reason=decision["reason"], deltas=decision.get("deltas", {}))


@changes_model
def promote(model: str, decision: DecisionResult, *, run_info: RunInfo | dict | None = None) -> RegistryOutcome:
    """Move ``champion`` to the candidate, unless the champion changed since the gate judged.

    The check is a compare-and-set on the alias: a run that was judged against v3 never
    overwrites a v4 that another run promoted meanwhile; the candidate is tagged ``stale``
    with that reason, and the re-run of the day judges it again against v4. The registry
    moves the alias only for a version whose *recorded* decision approves it against the
    champion of the moment (a decision handed in that says "approved" is not enough), and
    only once its serving model has loaded and answered its input example; a version whose
    serving model fails that check is rejected with the reason.
    """
    ctx = Context.of(model, run_info)
    current, judged_against = registry.champion(model), decision.get("champion_version")
    if current not in (judged_against, decision["version"]):
        reason = (
            f"champion moved from v{judged_against} to v{current} while this run was judged; "
            "re-run the day to judge it against the new champion"
        )
        stale = DecisionResult(**{**decision, "approved": False, "reason": reason})  # type: ignore[typeddict-item]
        return _rejected(ctx, stale, status=registry.STALE)
    try:
        outcome = registry.promote(model, decision["version"], _gate_decision(decision), trigger=ctx.run.trigger)
    except ServingCheckFailed as exc:
        failed = DecisionResult(**{**decision, "approved": False, "reason": str(exc)})  # type: ignore[typeddict-item]
        return _rejected(ctx, failed)
    cards.write(ctx, decision["version"], status="approved", reason=decision["reason"], replaced=outcome.get("from"))
    return outcome  # type: ignore[return-value]


@changes_model
def reject(model: str, decision: DecisionResult, *, run_info: RunInfo | dict | None = None) -> RegistryOutcome:
    """Keep the champion; tag the candidate rejected with the gate's reason."""
    return _rejected(Context.of(model, run_info), decision)


def _rejected(ctx: Context, decision: DecisionResult, *, status: str = "rejected") -> RegistryOutcome:
    version = decision["version"]
    outcome = registry.reject(ctx.model, version, _gate_decision(decision), trigger=ctx.run.trigger, status=status)
    if outcome.get("served"):  # judged again after it served: its record and card stay as they are
        return outcome  # type: ignore[return-value]
    champion = outcome.get("champion")
    stays = f"not promoted: v{champion} stays champion" if champion else "not promoted"
    cards.write(ctx, version, status="rejected", reason=decision["reason"], replaced=None, note=stays)
    notify.alert(
        "reject", model=ctx.model, date=ctx.run.logical_date, version=version, reason=decision["reason"],
        figures={"champion": champion, "deltas": decision.get("deltas", {})}, dag_run=notify.run_label(ctx.run),
    )  # fmt: skip
    return outcome  # type: ignore[return-value]


@changes_model(settle=False)  # registry.rollback settles: a re-run finishes its own interrupted rollback
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
