"""The gate's decision alone: value thresholds always, change thresholds only against a champion."""

from __future__ import annotations

import math

import pytest

from lifelong.config import ConfigError, GateSpec, load_params
from lifelong.gate import decide

FORECAST = GateSpec(
    value={"mae": {"max": 1500.0}},
    change={"mae": {"max_increase_pct": 2.0}, "retention_mae": {"max_increase_pct": 5.0}},
)
CLASSIFY = GateSpec(
    value={"accuracy": {"min": 0.6}},
    change={"retention_accuracy": {"max_drop": 0.10}, "task_acc/*": {"max_drop": 0.05}},
)


def test_first_model_is_judged_on_value_thresholds_only() -> None:
    ok = decide({"mae": 900.0, "retention_mae": 5000.0}, None, FORECAST)
    assert ok.approved and ok.deltas == {}
    assert [c["kind"] for c in ok.checks] == ["value"]
    bad = decide({"mae": 1600.0}, None, FORECAST)
    assert not bad.approved and bad.reason == "rejected: mae 1600 > max 1500"


def test_change_thresholds_against_the_champion() -> None:
    champion = {"mae": 800.0, "retention_mae": 700.0}
    within = decide({"mae": 810.0, "retention_mae": 730.0}, champion, FORECAST)
    assert within.approved, within.reason
    assert within.deltas == {"mae": 10.0, "retention_mae": 30.0}
    worse = decide({"mae": 810.0, "retention_mae": 800.0}, champion, FORECAST)
    assert not worse.approved
    assert worse.reason == "rejected: retention_mae +14.29% > 5% allowed"
    failed = [c for c in worse.checks if not c["passed"]]
    assert [c["metric"] for c in failed] == ["retention_mae"]


def test_no_earlier_task_may_drop_more_than_the_allowed_points() -> None:
    champion = {"accuracy": 0.9, "retention_accuracy": 0.85, "task_acc/FordA": 0.9}
    forgot = {"accuracy": 0.88, "retention_accuracy": 0.80, "task_acc/FordA": 0.80, "task_acc/FordB": 0.88}
    decision = decide(forgot, champion, CLASSIFY)
    assert not decision.approved
    assert "task_acc/FordA dropped 0.1 > 0.05 allowed" in decision.reason
    kept = {**forgot, "task_acc/FordA": 0.87, "retention_accuracy": 0.87}
    assert decide(kept, champion, CLASSIFY).approved  # the new task B has no champion value: not a change check


def test_a_classifier_no_better_than_the_majority_class_is_refused() -> None:
    beaten = decide({"accuracy": 0.70, "majority_accuracy": 0.75}, None, CLASSIFY)
    assert not beaten.approved
    assert beaten.reason == "rejected: no better than always answering the majority class (accuracy 0.7 < min 0.75)"
    assert decide({"accuracy": 0.80, "majority_accuracy": 0.75}, None, CLASSIFY).approved
    lenient = GateSpec(value=CLASSIFY.value, naive_tolerance_pct=10.0)  # 10% below the majority's 0.75: 0.675
    assert decide({"accuracy": 0.70, "majority_accuracy": 0.75}, None, lenient).approved
    off = GateSpec(value=CLASSIFY.value, naive_tolerance_pct=None)
    assert decide({"accuracy": 0.70, "majority_accuracy": 0.75}, None, off).approved
    unknown = decide({"accuracy": 0.9, "majority_accuracy": math.nan}, None, CLASSIFY)
    assert not unknown.approved  # a baseline that could not be measured verifies nothing


def test_missing_or_nan_metrics_fail_their_checks() -> None:
    assert not decide({"retention_mae": 1.0}, None, FORECAST).approved  # no mae: cannot verify the value bound
    nan = decide({"mae": math.nan}, None, FORECAST)
    assert not nan.approved and "mae is nan" in nan.reason
    dropped_task = decide({"accuracy": 0.9}, {"task_acc/FordA": 0.9}, CLASSIFY)
    assert not dropped_task.approved and "task_acc/FordA is missing" in dropped_task.reason


def test_unknown_bound_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gate.change.mae.max_growth: unknown bound"):
        decide({"mae": 1.0}, {"mae": 1.0}, GateSpec(change={"mae": {"max_growth": 2.0}}))


def test_params_yaml_gates_are_valid(workspace) -> None:
    for spec in load_params().models.values():
        decide({}, {}, spec.gate)  # raises on an unknown bound
