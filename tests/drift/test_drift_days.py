"""The day-level drift test and the error detector on half-hourly series with daily and weekly cycles."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from lifelong.config import DriftSpec
from lifelong.drift import DriftError, check, error_drift, page_hinkley, plot

SPEC = DriftSpec()
SLOT = np.arange(48)
WEEKDAY_SHAPE = 1.0 + 0.25 * np.exp(-(((SLOT - 16) / 4) ** 2)) + 0.35 * np.exp(-(((SLOT - 36) / 5) ** 2))
WEEKEND_SHAPE = 1.0 + 0.1 * np.exp(-(((SLOT - 20) / 5) ** 2)) + 0.3 * np.exp(-(((SLOT - 36) / 5) ** 2))


def demand(days: int, seed: int, start: str = "2024-01-01", step_day: int | None = None) -> pd.DataFrame:
    """Half-hourly demand: daily profile, weekends a third lower, day-to-day weather, noise; +20 % from ``step_day``."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days)
    weekend = np.asarray(dates.day_of_week >= 5)
    weather = np.zeros(days)
    for d in range(1, days):
        weather[d] = 0.7 * weather[d - 1] + rng.normal(0.0, 0.02)
    level = 4000.0 * np.where(weekend, 0.67, 1.0) * (1.0 + weather)
    if step_day is not None:
        level[step_day:] *= 1.2
    shape = np.where(weekend[:, None], WEEKEND_SHAPE, WEEKDAY_SHAPE)
    values = level[:, None] * shape * (1.0 + rng.normal(0.0, 0.01, (days, 48)))
    return pd.DataFrame({"Demand": values.ravel(), "Date": np.repeat(dates.strftime("%Y-%m-%d"), 48)})


def split(frame: pd.DataFrame, day: int, reference_days: int = 14) -> tuple[pd.DataFrame, pd.DataFrame]:
    dates = sorted(frame["Date"].unique())
    reference = frame[frame["Date"].isin(dates[max(0, day - reference_days) : day])]
    return reference, frame[frame["Date"] == dates[day]]


def test_a_weekly_cycle_is_not_drift() -> None:
    frame = demand(70, seed=1)
    decisions = {}
    for day in range(14, 70):
        reference, current = split(frame, day)
        decisions[current["Date"].iloc[0]] = check(reference, current, ["Demand"], SPEC, day_column="Date").decision
    weekend = [d for d in decisions if pd.Timestamp(d).day_of_week >= 5]
    assert len(weekend) == 16 and all(decisions[d] == "none" for d in weekend)
    assert sum(v != "none" for v in decisions.values()) <= 1  # 56 days without drift: at most one false alarm
    # the row-level KS of a Saturday's 48 rows against a fortnight's, without days as the unit, calls weekends drift
    rows = [check(*split(frame, day), ["Demand"], SPEC).decision for day in range(14, 70)
            if pd.Timestamp(sorted(frame["Date"].unique())[day]).day_of_week >= 5]  # fmt: skip
    assert rows.count("severe") >= 12


def test_a_step_change_is_drift_within_days_and_severe_on_weekdays() -> None:
    # changes on a Monday, a Thursday and a Tuesday: drift on the day or the next, severe by the next
    for seed, step in [(2, 35), (3, 38), (5, 36)]:
        frame = demand(step + 3, seed=seed, step_day=step)
        reports = [check(*split(frame, day), ["Demand"], SPEC, day_column="Date") for day in range(step, step + 2)]
        assert reports[0].decision != "none" or reports[1].decision != "none", seed
        assert "severe" in [r.decision for r in reports], [r.decision for r in reports]
        flagged = next(r for r in reports if r.decision != "none")
        assert flagged.reasons[0].startswith("Demand: the day is")
        assert flagged.features[0].ratio >= SPEC.severe_ratio and flagged.features[0].calibration["status"] == "ok"
    # a change on a Saturday is judged against the two weekends before it: drift, but later
    frame = demand(45, seed=4, step_day=40)
    decisions = [check(*split(frame, day), ["Demand"], SPEC, day_column="Date").decision for day in range(40, 43)]
    assert decisions[-1] == "drift" and decisions[:2] == ["none", "none"]


def test_severe_needs_the_day_before_to_have_drifted_too() -> None:
    frame = demand(36, seed=5, step_day=35)  # the last day alone is 20 % higher: one odd day
    [feature] = check(*split(frame, 35), ["Demand"], SPEC, day_column="Date").features
    assert feature.drifted and feature.ratio >= SPEC.severe_ratio and not feature.severe
    [alone] = check(*split(frame, 35), ["Demand"], DriftSpec(severe_days=1), day_column="Date").features
    assert alone.severe


def test_the_report_keeps_the_statistics_and_the_calibration() -> None:
    frame = demand(15, seed=6)
    report = check(*split(frame, 14), ["Demand"], SPEC, day_column="Date", current_error=120.0,
                   recent_errors=[100.0 + i for i in range(14)])  # fmt: skip
    payload = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert payload["calibration"]["method"] == "days" and payload["calibration"]["status"] == "ok"
    assert payload["calibration"]["reference_days"] == 14 and payload["calibration"]["feature_alpha"] == 0.01
    [feature] = payload["features"]
    assert feature["test"] == "day" and feature["n_reference"] == 14 * 48 and feature["n_current"] == 48
    assert feature["calibration"]["similar_days"] in ("weekday", "daytype", "all")
    assert {"t", "p", "df", "days_kept"} <= set(feature["calibration"]["distance_test"])
    assert payload["error"]["scale"] == "log" and payload["error"]["n"] == 14
    fig = plot(report, *split(frame, 14))
    assert "day distance" in fig.axes[0].get_title()


def test_not_enough_reference_days_is_said_and_the_error_still_counts() -> None:
    frame = demand(4, seed=7)
    reference, current = split(frame, 3)
    report = check(reference, current, ["Demand"], SPEC, day_column="Date")
    assert report.decision == "none" and report.features == []
    assert report.calibration["status"] == "not enough reference"
    assert report.reasons == ["not enough reference: 3 days (at least 7 to calibrate on); features not tested"]
    spike = check(reference, current, ["Demand"], SPEC, day_column="Date", current_error=300.0,
                  recent_errors=[100.0, 102.0, 98.0, 101.0])  # fmt: skip
    assert spike.decision == "severe" and spike.reasons[0].startswith("not enough reference")
    empty = check(reference.iloc[:0], current, ["Demand"], SPEC, day_column="Date")
    assert empty.calibration["reference_days"] == 0 and empty.decision == "none"
    with pytest.raises(DriftError, match="day column 'Day'"):
        check(reference, current, ["Demand"], SPEC, day_column="Day")


def test_nan_values_missing_rows_and_daylight_saving_days() -> None:
    frame = demand(16, seed=8)
    frame.loc[frame.index[::7], "Demand"] = np.nan  # scattered gaps
    frame.loc[frame["Date"] == "2024-01-05", "Demand"] = np.nan  # a reference day without values
    frame = frame.drop(frame[frame["Date"] == "2024-01-09"].index[:2])  # a 46-row day
    reference, current = split(frame, 15)
    current = current.copy()
    current.iloc[:20, 0] = np.inf
    report = check(reference, current, ["Demand"], SPEC, day_column="Date")
    [feature] = report.features
    assert feature.calibration["reference_days"] == 13 and feature.n_current == 28 - 4  # 48 - 20 - every 7th
    assert report.decision == "none"
    json.dumps(report.to_json(), allow_nan=False)
    mostly_missing = current.assign(Demand=np.where(np.arange(48) < 30, np.nan, current["Demand"]))
    [untested] = check(reference, mostly_missing, ["Demand"], SPEC, day_column="Date").features
    assert untested.p_value is None and untested.calibration["status"].startswith("not tested")
    with pytest.raises(DriftError, match="no values in the current batch"):
        check(reference, current.assign(Demand=np.nan), ["Demand"], SPEC, day_column="Date")


def test_integer_day_labels_count_as_day_numbers() -> None:
    frame = demand(22, seed=9)
    frame["Date"] = pd.factorize(frame["Date"])[0]
    report = check(*split(frame, 21), ["Demand"], SPEC, day_column="Date")
    assert report.decision == "none" and report.features[0].calibration["status"] == "ok"


def test_error_detector_calls_a_spike_and_a_steady_rise() -> None:
    history = list(100.0 * np.exp(np.random.default_rng(10).normal(0.0, 0.05, 14)))
    assert check_error(104.0, history).decision == "none"
    assert check_error(60.0, history).decision == "none"  # better than usual is never drift
    assert check_error(200.0, history).decision == "severe"
    # 8 % higher for the last five days and today: no single day stands out (z 1.1), the run does (PH 4.4)
    rising = history[:9] + [h * 1.08 for h in history[9:]]
    steady = check_error(108.0, rising, DriftSpec(error_ph_lambda=4.0))
    assert steady.error["z"] < SPEC.error_z_drift and steady.error["ph"] >= 4.0
    assert steady.decision == "drift" and "Page-Hinkley" in steady.reasons[0]
    assert check_error(108.0, rising).decision == "none"  # below the default alarm level (6)
    assert page_hinkley(np.zeros(10), 0.5, 1.0) == 0.0
    assert error_drift(float("nan"), history, SPEC) is None


def check_error(error: float, history: list[float], spec: DriftSpec = SPEC):
    frame = demand(15, seed=11)
    return check(*split(frame, 14), ["Demand"], spec, day_column="Date", current_error=error, recent_errors=history)


def test_a_day_is_checked_well_under_half_a_second() -> None:
    frame = demand(15, seed=12)
    frame["Temperature"] = frame["Demand"] / 200.0 + np.random.default_rng(0).normal(0, 1, len(frame))
    frame["Holiday"] = False
    reference, current = split(frame, 14)
    features = ["Demand", "Temperature", "Holiday"]
    check(reference, current, features, SPEC, day_column="Date")  # imports, caches
    started = time.perf_counter()
    for _ in range(5):
        check(reference, current, features, SPEC, day_column="Date", current_error=120.0, recent_errors=[100.0] * 14)
    assert (time.perf_counter() - started) / 5 < 0.25
