"""Drift: is the new day unlike the recent past, and is the champion suddenly worse at it?

Two kinds of evidence feed one decision (``none`` | ``drift`` | ``severe``):

* **Feature drift**, per feature, the new day against a reference window (the previous
  ``reference_days`` days). With a ``day_column`` (a time series stored in days) and
  ``DriftSpec.method = "days"`` (the default), :mod:`lifelong.drift.days` compares the
  day's curve with *similar* reference days (same weekday, weekday/weekend, or all, chosen
  on the reference) and calibrates the threshold on the reference itself: every reference
  day's distance from the others is the sample the new day is judged against. A weekly
  cycle is then not drift, and 48 correlated half-hours count as one day. Without a day
  column (or with ``method: rows``), :mod:`lifelong.drift.rows` tests the rows (KS on small
  samples, PSI on large ones, Bonferroni over features).
* **Performance drift** (:mod:`lifelong.drift.performance`): the champion's error on the
  new day against its recent errors (a calibrated score on the log error), and a
  Page-Hinkley test for a steady rise. One-sided: an error better than usual is never drift.

Fewer than ``min_reference_days`` reference days: the features are not tested (the
report's ``calibration`` says so, and a reason names it); the error evidence still counts.
Severe drift means "a task addition may be due"; it is reported, it never blocks the
daily update (the gate protects the champion).

>>> import numpy as np
>>> from lifelong.config import DriftSpec
>>> rng = np.random.default_rng(0)
>>> reference = pd.DataFrame({"load": rng.normal(0, 1, 14 * 48)})
>>> check(reference, pd.DataFrame({"load": rng.normal(0, 1, 48)}), ["load"], DriftSpec()).decision
'none'
>>> check(reference, pd.DataFrame({"load": rng.normal(3, 1, 48)}), ["load"], DriftSpec()).decision
'severe'
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lifelong.config import DriftSpec
from lifelong.drift import days, performance, rows
from lifelong.drift.performance import error_drift, page_hinkley
from lifelong.drift.plot import plot
from lifelong.drift.report import Decision, DriftError, DriftReport, FeatureDrift
from lifelong.drift.rows import feature_drift, intraday_correlation, psi

__all__ = [
    "Decision",
    "DriftError",
    "DriftReport",
    "FeatureDrift",
    "check",
    "error_drift",
    "feature_drift",
    "intraday_correlation",
    "page_hinkley",
    "plot",
    "psi",
]


def _reference_days(reference: pd.DataFrame, day_column: str) -> int:
    if day_column not in reference.columns:
        raise DriftError(f"drift: day column {day_column!r} is missing from the reference batch")
    return int(reference[day_column].nunique(dropna=True))


def check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    spec: DriftSpec,
    *,
    current_error: float | None = None,
    recent_errors: Sequence[float] = (),
    day_column: str | None = None,
) -> DriftReport:
    """Feature and performance drift of one batch, and the decision.

    ``severe`` if a feature's shift is severe or the error's score reaches
    ``error_z_severe``; ``drift`` if any feature drifted, the score reaches
    ``error_z_drift`` or the error has risen steadily (Page-Hinkley); otherwise ``none``.
    ``reasons`` says which evidence fired; ``calibration`` how the thresholds were set.
    Pass ``day_column`` when rows are a time series grouped in days: without it the rows are
    tested as rows, and 48 half-hours of a Saturday against a fortnight's rows look like drift
    every week. A data set without a date column can name its rows' days with
    ``lifelong.data.schema.row_dates`` (the local day of each timestamp).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> dates = pd.date_range("2024-01-07", periods=15)  # two weeks from a Sunday, then a Sunday
    >>> weekend = np.isin(dates.day_of_week, [5, 6])
    >>> shape = 1 + 0.3 * np.sin(np.linspace(0, 2 * np.pi, 48))
    >>> load = np.where(weekend, 0.7, 1.0)[:, None] * shape * (1 + rng.normal(0, 0.02, (15, 48)))
    >>> frame = pd.DataFrame({"day": np.repeat(dates.date, 48), "load": load.ravel()})
    >>> reference, sunday = frame.iloc[: 14 * 48], frame.iloc[14 * 48 :]
    >>> check(reference, sunday, ["load"], DriftSpec(), day_column="day").decision  # a weekend is not drift
    'none'
    >>> check(reference, sunday, ["load"], DriftSpec(method="rows")).decision  # 48 rows against a fortnight's
    'severe'
    >>> higher = check(reference, sunday.assign(load=sunday["load"] * 1.2), ["load"], DriftSpec(), day_column="day")
    >>> higher.decision, higher.reasons[0][:61]
    ('drift', 'load: the day is 0.1044 from similar reference days (weekday)')
    >>> report = check(reference, sunday, ["load"], DriftSpec(), day_column="day", current_error=140.0,
    ...                recent_errors=[100, 104, 96, 102, 98])
    >>> report.decision, report.reasons
    ('severe', ['champion error 140 is 9.7 sd above its recent mean 99.96 (log, z >= 6)'])
    >>> check(reference.iloc[: 5 * 48], sunday, ["load"], DriftSpec(), day_column="day").reasons
    ['not enough reference: 5 days (at least 7 to calibrate on); features not tested']
    """
    calibration: dict = {"features": len(features)}
    reasons: list[str] = []
    if day_column is not None and spec.method == "days":
        n_days = _reference_days(reference, day_column)
        calibration.update(method="days", reference_days=n_days, alpha=spec.day_alpha,
                           feature_alpha=spec.day_alpha / max(1, len(features)), severe_ratio=spec.severe_ratio,
                           similar_days=spec.similar_days)  # fmt: skip
        if n_days < spec.min_reference_days:
            if day_column not in current.columns:
                raise DriftError(f"drift: day column {day_column!r} is missing from the current batch")
            feats: list[FeatureDrift] = []
            calibration["status"] = "not enough reference"
            reasons.append(
                f"not enough reference: {n_days} days (at least {spec.min_reference_days} to calibrate on);"
                " features not tested"
            )
        else:
            feats = days.day_drift(reference, current, features, spec, day_column=day_column)
            calibration["status"] = "ok"
        fired = [days.reason(f) for f in feats if f.drifted]
    else:
        feats = rows.feature_drift(reference, current, features, spec, day_column=day_column)
        calibration.update(method="rows", status="ok", ks_alpha=spec.ks_alpha, psi_severe=spec.psi_severe)
        fired = [rows.reason(f, spec) for f in feats if f.drifted]
    error = error_drift(current_error, recent_errors, spec)
    calibration["error"] = {"z_drift": spec.error_z_drift, "z_severe": spec.error_z_severe,
                            "ph_delta": spec.error_ph_delta, "ph_lambda": spec.error_ph_lambda}  # fmt: skip
    error_reasons, error_severe = performance.reasons(error, spec)
    fired += error_reasons
    if any(f.severe for f in feats) or error_severe:
        decision: Decision = "severe"
    elif fired:
        decision = "drift"
    else:
        decision = "none"
    return DriftReport(decision=decision, features=feats, error=error, reasons=reasons + fired,
                       calibration=calibration)  # fmt: skip
