"""The champion/challenger gate: promote only if nothing regresses.

In the spirit of TFX's Evaluator, a :class:`~lifelong.config.GateSpec` holds two kinds of
threshold, both keyed by metric name (``mae``, ``retention_mae``, ``accuracy``,
``retention_accuracy``, ``task_acc/<task>``; a key may be a glob such as ``task_acc/*``):

* **value** thresholds bound the candidate alone: ``{"mae": {"max": 900}}``,
  ``{"accuracy": {"min": 0.6}}``. They always apply, so the very first model is judged too.
* a forecaster's day-ahead MASE (its MAE over the weekly seasonal naive's on the same targets)
  may not exceed ``1 + naive_tolerance_pct / 100``: a model that loses to copying last week is
  refused (``naive_tolerance_pct: null`` turns this off);
* likewise a classifier's accuracy on its new task may not fall below the accuracy of always
  answering the majority class of that task's training labels (``majority_accuracy``) by more
  than ``naive_tolerance_pct`` percent;
* **change** thresholds bound the candidate against the champion, measured on the same
  data: ``max_increase_pct``, ``max_increase`` (for errors), ``max_drop``,
  ``max_drop_pct`` (for accuracies; ``max_drop: 0.05`` is "no more than 5 points" for an
  accuracy in [0, 1]). They apply only when there is a champion.

A metric that a threshold needs but the candidate lacks, or that is NaN, fails its check:
the gate refuses what it cannot verify. A champion metric the candidate lacks fails too
(an earlier task silently dropped from the evaluation). A metric only the candidate has
(a brand-new task) has nothing to be compared with and is not checked for change. For the
same reason a glob that matches no metric (a value glob none of the candidate's, a change
glob none of either side's) fails, and a decision for which no threshold applied at all (an
empty ``gate:`` block, or change thresholds only for a first model) is a refusal: nothing
was verified.

>>> from lifelong.config import GateSpec
>>> spec = GateSpec(value={"mae": {"max": 1500.0}}, change={"mae": {"max_increase_pct": 2.0}})
>>> decide({"mae": 800.0}, None, spec).approved
True
>>> d = decide({"mae": 880.0}, {"mae": 800.0}, spec)
>>> d.approved, d.reason
(False, 'rejected: mae +10.00% > 2% allowed')
>>> d.deltas
{'mae': 80.0}
>>> decide({"mae": 800.0, "mase": 1.07}, None, spec).reason
'rejected: worse than the weekly seasonal naive forecast (mase 1.07 > max 1)'
>>> decide({"accuracy": 0.55, "majority_accuracy": 0.6}, None, GateSpec()).reason
'rejected: no better than always answering the majority class (accuracy 0.55 < min 0.6)'
>>> acc = GateSpec(change={"task_acc/*": {"max_drop": 0.05}})
>>> decide({"task_acc/A": 0.80, "task_acc/B": 0.9}, {"task_acc/A": 0.90}, acc).reason
'rejected: task_acc/A dropped 0.1 > 0.05 allowed'
>>> decide({"accuracy": 0.9}, {"accuracy": 0.9}, acc).reason
'rejected: no metric matches task_acc/*'
>>> decide({"accuracy": 0.9}, None, GateSpec(naive_tolerance_pct=None)).reason
'rejected: no threshold applies (first model): nothing was verified'
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lifelong.config import ConfigError, GateSpec

VALUE_BOUNDS = ("min", "max")
CHANGE_BOUNDS = ("max_increase", "max_increase_pct", "max_drop", "max_drop_pct")


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided and why; ``to_json()`` fits an XCom."""

    approved: bool
    reason: str
    deltas: dict[str, float] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _expand(pattern: str, names: set[str]) -> list[str]:
    """A threshold key: itself, or every metric it matches when it is a glob."""
    if _is_glob(pattern):
        return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))
    return [pattern]


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _unmatched(pattern: str, kind: str) -> dict[str, Any]:
    """A failing check: a glob threshold that matched no metric verified nothing."""
    return {"metric": pattern, "kind": kind, "passed": False, "detail": f"no metric matches {pattern}"}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _value_check(metric: str, bound: str, limit: float, value: Any) -> dict[str, Any]:
    check = {"metric": metric, "kind": "value", "bound": bound, "limit": limit, "value": value}
    if not _finite(value):
        return {**check, "passed": False, "detail": f"{metric} is {'missing' if value is None else value}"}
    ok = value >= limit if bound == "min" else value <= limit
    op = (">=" if ok else "<") if bound == "min" else ("<=" if ok else ">")
    return {**check, "passed": ok, "detail": f"{metric} {_fmt(value)} {op} {bound} {_fmt(limit)}"}


def _change(bound: str, cand: float, champ: float) -> tuple[float, str]:
    """The measured change for ``bound`` and how to print it."""
    if bound == "max_increase":
        return cand - champ, f"grew {_fmt(cand - champ)}"
    if bound == "max_drop":
        return champ - cand, f"dropped {_fmt(champ - cand)}"
    diff = cand - champ if bound == "max_increase_pct" else champ - cand
    # from a champion at 0 any change is infinitely many percent, in the direction of the change
    pct = 0.0 if diff == 0 else (math.copysign(math.inf, diff) if champ == 0 else 100.0 * diff / abs(champ))
    if bound == "max_increase_pct":
        return pct, f"{pct:+.2f}%"
    return pct, f"dropped {pct:.2f}%"


def _change_check(metric: str, bound: str, limit: float, cand: Any, champ: Any) -> dict[str, Any]:
    check = {"metric": metric, "kind": "change", "bound": bound, "limit": limit, "value": cand, "champion": champ}
    if not _finite(cand):
        return {**check, "passed": False, "detail": f"{metric} is {'missing' if cand is None else cand}"}
    change, text = _change(bound, float(cand), float(champ))
    unit = "%" if bound.endswith("_pct") else ""
    ok = change <= limit
    return {
        **check,
        "change": change,
        "passed": ok,
        "detail": f"{metric} {text} {'<=' if ok else '>'} {_fmt(limit)}{unit} allowed",
    }


def _validate(gate: GateSpec) -> None:
    for section, allowed in (("value", VALUE_BOUNDS), ("change", CHANGE_BOUNDS), ("task_change", CHANGE_BOUNDS)):
        for metric, bounds in getattr(gate, section).items():
            for bound in bounds:
                if bound not in allowed:
                    raise ConfigError(f"gate.{section}.{metric}.{bound}: unknown bound (allowed: {', '.join(allowed)})")


def for_task_addition(gate: GateSpec) -> GateSpec:
    """The gate of a task addition: ``change`` with ``task_change``'s thresholds added.

    >>> rise = {"max_increase_pct": 10.0}
    >>> g = for_task_addition(GateSpec(change={"mae": rise}, task_change={"task_mae/*": rise}))
    >>> sorted(g.change)
    ['mae', 'task_mae/*']
    """
    return replace(gate, change={**gate.change, **gate.task_change}, task_change={})


def decide(candidate: dict[str, float], champion: dict[str, float] | None, gate: GateSpec) -> GateDecision:
    """Judge ``candidate`` metrics against value thresholds and, if there is a champion, change thresholds.

    Both metric dicts must come from the same evaluation data (held-out window and retention set).
    """
    _validate(gate)
    checks: list[dict[str, Any]] = []
    for pattern, bounds in gate.value.items():
        matched = _expand(pattern, set(candidate))
        if bounds and not matched:
            checks.append(_unmatched(pattern, "value"))
        for metric in matched:
            for bound, limit in bounds.items():
                checks.append(_value_check(metric, bound, limit, candidate.get(metric)))
    if gate.naive_tolerance_pct is not None and "mase" in candidate:
        limit = 1.0 + gate.naive_tolerance_pct / 100.0
        check = _value_check("mase", "max", limit, candidate.get("mase"))
        if not check["passed"]:
            check["detail"] = f"worse than the weekly seasonal naive forecast ({check['detail']})"
        checks.append(check)
    if gate.naive_tolerance_pct is not None and "majority_accuracy" in candidate:
        majority = candidate["majority_accuracy"]
        limit = majority * (1.0 - gate.naive_tolerance_pct / 100.0) if _finite(majority) else math.nan
        check = _value_check("accuracy", "min", limit, candidate.get("accuracy"))
        if not check["passed"]:
            check["detail"] = f"no better than always answering the majority class ({check['detail']})"
        checks.append(check)
    if champion is not None:
        for pattern, bounds in gate.change.items():
            if bounds and _is_glob(pattern) and not _expand(pattern, set(champion) | set(candidate)):
                checks.append(_unmatched(pattern, "change"))
            for metric in _expand(pattern, set(champion)):
                if not _finite(champion.get(metric)):
                    continue  # the champion was never measured on it: nothing to regress from
                for bound, limit in bounds.items():
                    checks.append(_change_check(metric, bound, limit, candidate.get(metric), champion[metric]))
    deltas = {
        k: float(candidate[k]) - float(champion[k])
        for k in sorted(set(candidate) & set(champion or {}))
        if _finite(candidate[k]) and _finite(champion[k])  # type: ignore[index]
    }
    failed = [c for c in checks if not c["passed"]]
    if not checks:  # an empty gate block, or change thresholds only and no champion: nothing verified
        reason = "rejected: no threshold applies" + ("" if champion is not None else " (first model)")
        return GateDecision(approved=False, reason=reason + ": nothing was verified", deltas=deltas, checks=checks)
    if failed:
        reason = "rejected: " + "; ".join(c["detail"] for c in failed)
    else:
        reason = "approved: " + "; ".join(c["detail"] for c in checks)
    return GateDecision(approved=not failed, reason=reason, deltas=deltas, checks=checks)
