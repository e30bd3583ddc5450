"""Drift detection on vic_elec-shaped batches: one day of 48 half-hours against 14 days."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from lifelong.config import DriftSpec
from lifelong.drift import DriftError, check, error_drift, feature_drift, plot

ROWS_PER_DAY, REFERENCE_DAYS = 48, 14
FEATURES = ["Demand", "Temperature", "Load2"]
SPEC = DriftSpec()
ROWS = DriftSpec(method="rows")  # the row-level tests even where a day column is given


def iid_batch(rng: np.random.Generator, days: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Independent rows, ``days`` days of 48, one column per feature (optionally shifted, in sd)."""
    shift = shift or {}
    n = days * ROWS_PER_DAY
    frame = pd.DataFrame({f: rng.normal(shift.get(f, 0.0), 1.0, n) for f in FEATURES})
    frame["Date"] = np.repeat(np.arange(days), ROWS_PER_DAY)
    return frame


def day_batch(rng: np.random.Generator, days: int, first_day: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """Rows correlated within a day: a daily level (sd 0.5) plus half-hourly noise (sd 1)."""
    day = np.repeat(np.arange(first_day, first_day + days), ROWS_PER_DAY)
    level = rng.normal(0.0, 0.5, days)[day - first_day]
    return pd.DataFrame({"Temperature": shift + level + rng.normal(0.0, 1.0, len(day)), "Date": day})


def test_same_distribution_is_none_with_a_low_false_positive_rate() -> None:
    flagged = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        report = check(iid_batch(rng, REFERENCE_DAYS), iid_batch(rng, 1), FEATURES, SPEC)
        flagged += report.decision != "none"
    # Bonferroni at 0.01 over 3 features: at most ~1 % of clean days flagged
    assert flagged / 200 <= 0.03


def test_shifted_mean_is_drift() -> None:
    rng = np.random.default_rng(11)
    reference, current = iid_batch(rng, REFERENCE_DAYS), iid_batch(rng, 1, {"Temperature": 1.0})
    report = check(reference, current, FEATURES, dataclasses.replace(SPEC, psi_severe=100.0))
    assert report.decision == "drift"
    assert [f.feature for f in report.features if f.drifted] == ["Temperature"]
    assert report.reasons and report.reasons[0].startswith("Temperature: KS D=")
    assert all(f.test == "ks" and f.n_current == 48 and f.n_reference == 672 for f in report.features)


def test_large_shift_is_severe() -> None:
    rng = np.random.default_rng(12)
    report = check(iid_batch(rng, REFERENCE_DAYS), iid_batch(rng, 1, {"Demand": 4.0}), FEATURES, SPEC)
    assert report.decision == "severe"
    demand = report.features[0]
    assert demand.severe and demand.psi >= SPEC.psi_severe and demand.statistic > 0.9
    assert "severe" in report.reasons[0]


def test_large_samples_use_psi_not_ks() -> None:
    rng = np.random.default_rng(13)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 5000)})
    slightly = pd.DataFrame({"x": rng.normal(0.1, 1, 5000)})
    # KS calls a 0.1 sd shift significant at this size; PSI says it is negligible
    assert stats.ks_2samp(reference["x"], slightly["x"]).pvalue < SPEC.ks_alpha
    [small] = feature_drift(reference, slightly, ["x"], SPEC)
    assert (small.test, small.p_value, small.drifted) == ("psi", None, False)
    assert small.statistic == small.psi < SPEC.psi_threshold
    [large] = feature_drift(reference, pd.DataFrame({"x": rng.normal(1.0, 1, 5000)}), ["x"], SPEC)
    assert large.test == "psi" and large.drifted and large.severe


def test_bonferroni_corrects_over_features() -> None:
    rng = np.random.default_rng(14)
    reference, current = iid_batch(rng, REFERENCE_DAYS), iid_batch(rng, 1)
    # find a shift of Demand whose KS p-value lies between alpha / 3 and alpha
    for shift in np.linspace(0.2, 1.0, 81):
        p = stats.ks_2samp(reference["Demand"], current["Demand"] + shift).pvalue
        if SPEC.ks_alpha / 3 < p < SPEC.ks_alpha:
            break
    else:
        pytest.fail("no shift with a p-value in (alpha/3, alpha)")
    shifted = current.assign(Demand=current["Demand"] + shift)
    [alone] = feature_drift(reference, shifted, ["Demand"], SPEC)
    assert alone.drifted and alone.threshold == SPEC.ks_alpha
    corrected = feature_drift(reference, shifted, FEATURES, SPEC)
    assert not corrected[0].drifted and corrected[0].threshold == pytest.approx(SPEC.ks_alpha / 3)
    assert corrected[0].p_value == pytest.approx(alone.p_value)


def test_constant_feature() -> None:
    reference = pd.DataFrame({"Holiday": np.zeros(672, dtype=bool), "Date": np.repeat(np.arange(14), 48)})
    ordinary = pd.DataFrame({"Holiday": np.zeros(48, dtype=bool), "Date": np.full(48, 14)})
    [same] = feature_drift(reference, ordinary, ["Holiday"], SPEC)
    assert (same.statistic, same.p_value, same.psi, same.drifted) == (0.0, 1.0, 0.0, False)
    holiday = ordinary.assign(Holiday=True)
    [iid] = feature_drift(reference, holiday, ["Holiday"], SPEC)
    assert iid.statistic == 1.0 and iid.drifted and iid.severe
    # one holiday among ordinary days is one odd day, not drift, once days are the unit
    [by_day] = feature_drift(reference, holiday, ["Holiday"], SPEC, day_column="Date")
    assert by_day.design_effect == 48.0 and not by_day.drifted
    # the day-level test: a flag is one value a day, judged by its rank among 14 days (p >= 1/15)
    [flag] = check(reference, holiday, ["Holiday"], SPEC, day_column="Date").features
    assert flag.test == "day" and not flag.drifted and flag.p_value == pytest.approx(1 / 15)


def test_nan_values_are_dropped_and_the_report_is_strict_json() -> None:
    rng = np.random.default_rng(15)
    reference, current = iid_batch(rng, REFERENCE_DAYS), iid_batch(rng, 1, {"Demand": 3.0})
    reference.loc[::7, "Temperature"] = np.nan
    current.loc[:4, "Demand"] = np.inf
    report = check(reference, current, FEATURES, SPEC, current_error=120.0, recent_errors=[100.0, 101.0, float("nan")])
    by_name = {f.feature: f for f in report.features}
    assert by_name["Temperature"].n_reference == 672 - 96 and by_name["Demand"].n_current == 43
    payload = json.dumps(report.to_json(), allow_nan=False)
    assert json.loads(payload)["decision"] == "severe"


def test_unusable_inputs_are_clear_errors() -> None:
    rng = np.random.default_rng(16)
    reference, current = iid_batch(rng, 2), iid_batch(rng, 1)
    with pytest.raises(DriftError, match="'Humidity' is missing from the current batch"):
        feature_drift(reference.assign(Humidity=1.0), current, ["Humidity"], SPEC)
    with pytest.raises(DriftError, match="no values in the current batch"):
        feature_drift(reference, current.assign(Demand=np.nan), ["Demand"], SPEC)
    with pytest.raises(DriftError, match="not numeric"):
        feature_drift(reference, current.assign(Demand="high"), ["Demand"], SPEC)
    with pytest.raises(DriftError, match="day column 'Day'"):
        feature_drift(reference, current, ["Demand"], SPEC, day_column="Day")


def test_error_drift_is_a_one_sided_score_on_the_log_error() -> None:
    history = [100.0, 104.0, 96.0, 102.0, 98.0]
    spike = error_drift(130.0, history, SPEC)
    # log(130 / 99.96) over the log sd 0.0316, widened by sqrt(1 + 1/5) for predicting one new day
    assert spike["z"] == pytest.approx(7.5814, abs=1e-4) and spike["scale"] == "log" and spike["p"] < 0.001
    assert error_drift(70.0, history, SPEC)["z"] < 0  # better than usual
    assert error_drift(None, history, SPEC) is None
    assert error_drift(130.0, history[:2], SPEC) is None  # fewer than error_min_history
    flat = error_drift(101.0, [100.0] * 5, SPEC)  # log sd floored at 0.01 (a 1 % change)
    assert flat["std"] == 0.01 and flat["z"] == pytest.approx(0.9084, abs=1e-3)
    assert error_drift(1.0, [0.0, 0.5, 0.2, 0.1], SPEC)["scale"] == "linear"  # a zero error: no logarithm


@pytest.mark.parametrize(("error", "decision"), [(70.0, "none"), (115.0, "drift"), (130.0, "severe")])
def test_error_decides_when_features_are_stable(error: float, decision: str) -> None:
    rng = np.random.default_rng(17)
    reference, current = iid_batch(rng, REFERENCE_DAYS), iid_batch(rng, 1)
    history = [100.0, 104.0, 96.0, 102.0, 98.0]  # log sd 0.032: 115 -> z 4.0, 130 -> z 7.6
    report = check(reference, current, FEATURES, SPEC, current_error=error, recent_errors=history)
    assert not any(f.drifted for f in report.features)
    assert report.decision == decision
    assert (len(report.reasons) == 1) == (decision != "none")


def test_day_column_calibrates_ks_for_rows_correlated_within_a_day() -> None:
    plain = by_day = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        reference, current = day_batch(rng, REFERENCE_DAYS), day_batch(rng, 1, first_day=REFERENCE_DAYS)
        plain += check(reference, current, ["Temperature"], ROWS).decision != "none"
        by_day += check(reference, current, ["Temperature"], ROWS, day_column="Date").decision != "none"
    # same process, yet rows-as-independent flags many days; days-as-units almost none
    assert plain / 60 >= 0.3
    assert by_day / 60 <= 0.05
    rng = np.random.default_rng(99)
    reference, far = day_batch(rng, REFERENCE_DAYS), day_batch(rng, 1, first_day=REFERENCE_DAYS, shift=5.0)
    report = check(reference, far, ["Temperature"], ROWS, day_column="Date")
    assert report.decision == "severe" and report.features[0].design_effect > 5


def test_plot_draws_histogram_and_ecdf_per_feature(tmp_path) -> None:
    rng = np.random.default_rng(18)
    reference, current = iid_batch(rng, REFERENCE_DAYS), iid_batch(rng, 1, {"Demand": 2.0})
    report = check(reference, current, FEATURES, SPEC, current_error=130.0, recent_errors=[100, 104, 96, 102, 98])
    fig = plot(report, reference, current)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * len(FEATURES)
    assert "severe" in fig.axes[0].get_title() and "z = 7.6" in fig.get_suptitle()
    fig.savefig(tmp_path / "drift.png", dpi=60)
    assert (tmp_path / "drift.png").stat().st_size > 10_000
