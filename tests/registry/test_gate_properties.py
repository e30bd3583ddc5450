"""Properties of the gate (``lifelong.gate.decide``), for any metrics and any thresholds Hypothesis draws.

* a metric a threshold needs that is missing, NaN or infinite is refused, and the reason names it;
* a glob that matches no metric is refused (it verified nothing);
* a gate under which no threshold applies refuses (nothing was verified);
* a candidate no worse than the champion on every metric passes every change threshold;
* monotonic in the tolerance: approved at tolerance t, approved at every t' > t.

Seeded (``derandomize``) so CI draws the same examples every run;
``LIFELONG_PROPERTY_EXAMPLES=2000`` for a longer local search.
"""

from __future__ import annotations

import math
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from lifelong.config import GateSpec
from lifelong.gate import decide

EXAMPLES = int(os.environ.get("LIFELONG_PROPERTY_EXAMPLES", "150"))
SEEDED = settings(max_examples=EXAMPLES, derandomize=True, deadline=None)

METRICS = ["mae", "retention_mae", "accuracy", "retention_accuracy", "task_acc/A", "task_acc/B"]
LOOSER = ("max", "max_increase", "max_increase_pct", "max_drop", "max_drop_pct")  # a larger limit admits more
CHANGE_BOUNDS = ("max_increase", "max_increase_pct", "max_drop", "max_drop_pct")
BAD_VALUES = [None, math.nan, math.inf, -math.inf]

values = st.floats(min_value=0.0, max_value=1e4, allow_nan=False) | st.sampled_from([0.0, 1.0])
limits = st.floats(min_value=-50.0, max_value=1e3, allow_nan=False)
metric_dicts = st.dictionaries(st.sampled_from(METRICS), values, max_size=len(METRICS))
value_bounds = st.dictionaries(st.sampled_from(("min", "max")), limits, min_size=1)
change_bounds = st.dictionaries(st.sampled_from(CHANGE_BOUNDS), limits, min_size=1)
keys = st.sampled_from([*METRICS, "task_acc/*", "retention_*"])


@st.composite
def gates(draw: st.DrawFn) -> GateSpec:
    return GateSpec(
        value=draw(st.dictionaries(keys, value_bounds, max_size=3)),
        change=draw(st.dictionaries(keys, change_bounds, max_size=3)),
        naive_tolerance_pct=draw(st.none() | limits),
    )


def _loosened(gate: GateSpec, by: float) -> GateSpec:
    """The same gate with every tolerance widened by ``by`` (a min lowered, every other limit raised)."""

    def widen(bounds: dict[str, float]) -> dict[str, float]:
        return {b: (limit - by if b == "min" else limit + by) for b, limit in bounds.items()}

    return GateSpec(
        value={k: widen(v) for k, v in gate.value.items()},
        change={k: widen(v) for k, v in gate.change.items()},
        naive_tolerance_pct=None if gate.naive_tolerance_pct is None else gate.naive_tolerance_pct + by,
    )


@SEEDED
@given(
    metric=st.sampled_from(METRICS),
    bad=st.sampled_from(BAD_VALUES),
    bounds=value_bounds,
    others=metric_dicts,
    champion=st.none() | metric_dicts,
)
def test_a_missing_or_non_finite_metric_a_value_threshold_needs_is_refused(metric, bad, bounds, others, champion):
    candidate = {**others, metric: bad}
    if bad is None:
        del candidate[metric]
    decision = decide(candidate, champion, GateSpec(value={metric: bounds}, naive_tolerance_pct=None))
    assert not decision.approved
    assert f"{metric} is {'missing' if bad is None else bad}" in decision.reason, decision.reason


@SEEDED
@given(
    metric=st.sampled_from(METRICS),
    bad=st.sampled_from(BAD_VALUES),
    bounds=change_bounds,
    champion_value=values,
    others=metric_dicts,
)
def test_a_champion_metric_the_candidate_lacks_or_has_as_nan_is_refused(metric, bad, bounds, champion_value, others):
    candidate = {**others, metric: bad}
    if bad is None:
        del candidate[metric]
    champion = {**others, metric: champion_value}
    decision = decide(candidate, champion, GateSpec(change={metric: bounds}, naive_tolerance_pct=None))
    assert not decision.approved and metric in decision.reason, decision.reason


@SEEDED
@given(
    mase=st.sampled_from([math.nan, math.inf]),
    tolerance=limits,
    candidate=metric_dicts,
    champion=st.none() | metric_dicts,
)
def test_a_nan_mase_is_refused_whenever_the_naive_check_is_on(mase, tolerance, candidate, champion):
    decision = decide({**candidate, "mase": mase}, champion, GateSpec(naive_tolerance_pct=tolerance))
    assert not decision.approved and "mase is" in decision.reason, decision.reason


@SEEDED
@given(
    section=st.sampled_from(["value", "change"]),
    glob=st.sampled_from(["task_acc/*", "retention_*", "loss?"]),
    candidate=metric_dicts,
    champion=metric_dicts,
)
def test_a_glob_matching_no_metric_is_refused(section, glob, candidate, champion):
    prefix = glob.rstrip("*?")
    candidate = {k: v for k, v in candidate.items() if not k.startswith(prefix)}
    champion = {k: v for k, v in champion.items() if not k.startswith(prefix)}
    bounds = {"min": 0.0} if section == "value" else {"max_drop": 1.0}
    decision = decide(candidate, champion, GateSpec(**{section: {glob: bounds}}, naive_tolerance_pct=None))
    assert not decision.approved and f"no metric matches {glob}" in decision.reason, decision.reason


@SEEDED
@given(candidate=metric_dicts, champion=st.none() | metric_dicts, change=st.dictionaries(keys, change_bounds))
def test_no_threshold_that_applies_means_refused(candidate, champion, change):
    """An empty gate (or, for a first model, change thresholds only) verifies nothing: refused."""
    gate = GateSpec(change=change if champion is None else {}, naive_tolerance_pct=None)
    decision = decide(candidate, champion, gate)
    assert not decision.approved and decision.checks == [], decision.reason
    assert "no threshold applies" in decision.reason


@SEEDED
@given(
    champion=st.dictionaries(st.sampled_from(METRICS), values, min_size=1),
    bounds=st.dictionaries(st.sampled_from(METRICS), change_bounds, min_size=1),
    better=st.floats(min_value=0.0, max_value=1e3, allow_nan=False),
)
def test_a_candidate_no_worse_than_the_champion_passes_every_change_threshold(champion, bounds, better):
    """Errors (``max_increase*``) may go down and accuracies (``max_drop*``) up by any amount, from any value,
    0 included: with non-negative limits, no change threshold refuses it."""
    gate_change: dict[str, dict[str, float]] = {}
    candidate = dict(champion)
    for metric, metric_bounds in bounds.items():
        if metric not in champion:
            continue
        is_error = any(b.startswith("max_increase") for b in metric_bounds)
        kept = {b: abs(limit) for b, limit in metric_bounds.items() if b.startswith("max_increase") == is_error}
        gate_change[metric] = kept
        candidate[metric] = champion[metric] - better if is_error else champion[metric] + better
    decision = decide(candidate, champion, GateSpec(value={"mae": {}}, change=gate_change, naive_tolerance_pct=None))
    assert all(c["passed"] for c in decision.checks if c["kind"] == "change"), decision.reason


@SEEDED
@given(
    gate=gates(),
    candidate=metric_dicts,
    champion=st.none() | metric_dicts,
    mase=st.none() | values,
    wider=st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
)
def test_monotonic_in_the_tolerance(gate, candidate, champion, mase, wider):
    """A candidate approved at tolerance t is approved at every t' > t."""
    if mase is not None:
        candidate = {**candidate, "mase": mase}
    strict, loose = decide(candidate, champion, gate), decide(candidate, champion, _loosened(gate, wider))
    if strict.approved:
        assert loose.approved, f"approved at t, refused at t+{wider}: {loose.reason}"
    assert len(loose.checks) == len(strict.checks)  # the same checks, only the limits moved
