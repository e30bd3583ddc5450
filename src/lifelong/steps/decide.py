"""The decision steps: gate, promote, reject, rollback.

The gate judges a candidate's scores against the champion's on the same data
(:mod:`lifelong.gate`); ``promote`` and ``reject`` carry the decision into the registry,
where the ``champion`` alias is the one thing that says which version serves.
"""

from __future__ import annotations

from lifelong import registry
from lifelong.gate import GateDecision, decide
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
        return registry.reject(model, decision["version"], _gate_decision(stale), trigger=ctx.run.trigger)
    return registry.promote(model, decision["version"], _gate_decision(decision), trigger=ctx.run.trigger)


def reject(model: str, decision: DecisionResult, *, run_info: RunInfo | dict | None = None) -> RegistryOutcome:
    """Keep the champion; tag the candidate rejected with the gate's reason."""
    ctx = Context.of(model, run_info)
    return registry.reject(model, decision["version"], _gate_decision(decision), trigger=ctx.run.trigger)


def rollback(
    model: str, *, to: str | None = None, reason: str, run_info: RunInfo | dict | None = None
) -> RegistryOutcome:
    """Point ``champion`` back (default: at ``previous``) and record why.

    Any registered model can be rolled back, also one no longer declared in params.yaml.
    """
    return registry.rollback(model, to=to, trigger=RunInfo.of(run_info).trigger, reason=reason)
