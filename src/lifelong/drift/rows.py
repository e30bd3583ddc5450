"""Row-level tests: each feature's rows of the day against the reference's rows (KS or PSI).

Small samples (the smaller side has at most ``ks_max_rows`` rows, e.g. one day of 48
half-hours) get a two-sample Kolmogorov-Smirnov test at a Bonferroni-corrected level
``ks_alpha / n_features``; large samples get the Population Stability Index (PSI), because
with thousands of rows KS calls any negligible difference significant. A feature is severe
when it drifted and its PSI reaches ``psi_severe``.

Rows of one day are not independent. Given ``day_column``, the KS p-value uses Kish's
effective sample sizes ``n / (1 + (m - 1) * ICC)``, with the intra-day correlation ICC
estimated on the reference. That corrects for a day being one smooth curve, but not for a
weekly cycle: a Saturday's rows differ from a fortnight's rows every week. For time series
in days, :mod:`lifelong.drift.days` (``DriftSpec.method = "days"``) is the default; these
tests remain for data without days and for ``method: rows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lifelong.config import DriftSpec
from lifelong.drift.report import DriftError, FeatureDrift

# --------------------------------------------------------------------------- statistics


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, epsilon: float = 1e-4) -> float:
    """Population Stability Index of ``current`` against ``reference``.

    Bins are the reference's quantiles (duplicates merged, so a discrete or constant
    feature gets fewer bins); each bin holds ``(lo, hi]``. Proportions are smoothed by
    ``epsilon`` so an empty bin gives a large but finite index.

    Parameters
    ----------
    reference, current
        1-d samples without NaN.
    bins
        Number of quantile bins taken from the reference.
    epsilon
        Additive smoothing of each bin's proportion.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> ref = rng.normal(0, 1, 5000)
    >>> round(psi(ref, rng.normal(0, 1, 5000)), 3)
    0.005
    >>> round(psi(ref, rng.normal(1, 1, 5000)), 2)
    0.94
    >>> psi(np.zeros(100), np.zeros(10))  # constant and unchanged
    0.0
    """
    inner = np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(inner)
    k = len(edges) + 1
    expected = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=k) / len(reference)
    actual = np.bincount(np.searchsorted(edges, current, side="left"), minlength=k) / len(current)
    expected = (expected + epsilon) / (1.0 + k * epsilon)
    actual = (actual + epsilon) / (1.0 + k * epsilon)
    return max(0.0, float(np.sum((actual - expected) * np.log(actual / expected))))


def column_values(frame: pd.DataFrame, feature: str, side: str) -> np.ndarray:
    """The finite values of one feature as floats (bools count as 0/1)."""
    if feature not in frame.columns:
        raise DriftError(f"drift: feature {feature!r} is missing from the {side} batch")
    try:
        values = frame[feature].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise DriftError(f"drift: feature {feature!r} is not numeric ({frame[feature].dtype})") from None
    return values


def finite_values(values: np.ndarray, feature: str, side: str) -> np.ndarray:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise DriftError(f"drift: feature {feature!r} has no values in the {side} batch")
    return values


def intraday_correlation(values: np.ndarray, days: np.ndarray) -> float:
    """One-way ANOVA intra-class correlation of ``values`` grouped by ``days``, clipped to [0, 1].

    0 means the rows of a day are as varied as rows of different days (independent);
    1 means a day is one value repeated, which is also the answer when no day varies
    within itself (a calendar flag, a constant). NaN values are ignored.

    Examples
    --------
    >>> rng = np.random.default_rng(4)
    >>> days = np.repeat(np.arange(14), 48)
    >>> round(intraday_correlation(rng.normal(0, 1, 672), days), 2)
    0.0
    >>> level = rng.normal(0, 1, 14)[days]  # each day has its own level
    >>> round(intraday_correlation(level + rng.normal(0, 0.5, 672), days), 2)
    0.79
    >>> intraday_correlation(np.zeros(672), days)  # a holiday flag on ordinary days
    1.0
    """
    keep = np.isfinite(values)
    frame = pd.DataFrame({"v": values[keep], "d": days[keep]})
    groups = frame.groupby("d", sort=False)["v"]
    sizes, means = groups.size(), groups.mean()
    k, n = len(sizes), len(frame)
    if k < 2 or n <= k:
        return 0.0
    m = float(sizes.mean())
    msb = float((sizes * (means - frame["v"].mean()) ** 2).sum()) / (k - 1)
    msw = float(((frame["v"] - groups.transform("mean")) ** 2).sum()) / (n - k)
    if msw <= 0:
        return 1.0
    return min(1.0, max(0.0, (msb - msw) / (msb + (m - 1.0) * msw)))


def _design_effect(days: np.ndarray, icc: float) -> float:
    """Kish's design effect ``1 + (m - 1) * ICC`` for rows clustered in days of mean size m."""
    m = len(days) / max(1, len(pd.unique(days)))
    return 1.0 + (m - 1.0) * icc


def _ks_pvalue(statistic: float, n_reference: float, n_current: float) -> float:
    """Asymptotic two-sample KS p-value for (possibly fractional) effective sizes, Stephens' correction."""
    from scipy import stats

    root = math.sqrt(n_reference * n_current / (n_reference + n_current))
    return float(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * statistic))


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    spec: DriftSpec,
    *,
    day_column: str | None = None,
) -> list[FeatureDrift]:
    """Test each feature of ``current`` against ``reference`` (KS on small samples, PSI on large).

    NaN and infinite values are dropped per feature; bools count as 0/1. The KS level is
    Bonferroni-corrected over all ``features``. With ``day_column`` (a column present in
    both frames naming the day of each row), the KS p-value counts each frame's rows at
    their effective number ``n / design_effect`` (see :func:`intraday_correlation`).

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> ref = pd.DataFrame({"a": rng.normal(0, 1, 672), "b": rng.normal(0, 1, 672)})
    >>> cur = pd.DataFrame({"a": rng.normal(0, 1, 48), "b": rng.normal(1.5, 1, 48)})
    >>> [(f.feature, f.test, f.drifted) for f in feature_drift(ref, cur, ["a", "b"], DriftSpec())]
    [('a', 'ks', False), ('b', 'ks', True)]
    >>> feature_drift(ref, cur, ["a"], DriftSpec())[0].threshold  # 0.01 / 1 feature
    0.01
    """
    from scipy import stats

    if day_column is not None:
        for frame, side in ((reference, "reference"), (current, "current")):
            if day_column not in frame.columns:
                raise DriftError(f"drift: day column {day_column!r} is missing from the {side} batch")
    alpha = spec.ks_alpha / max(1, len(features))
    out = []
    for name in features:
        ref_all, cur_all = column_values(reference, name, "reference"), column_values(current, name, "current")
        ref, cur = finite_values(ref_all, name, "reference"), finite_values(cur_all, name, "current")
        index = psi(ref, cur, spec.psi_bins, spec.psi_epsilon)
        if min(len(ref), len(cur)) > spec.ks_max_rows:
            out.append(
                FeatureDrift(
                    feature=name,
                    test="psi",
                    statistic=index,
                    p_value=None,
                    drifted=index >= spec.psi_threshold,
                    severe=index >= spec.psi_severe,
                    psi=index,
                    threshold=spec.psi_threshold,
                    n_reference=len(ref),
                    n_current=len(cur),
                )
            )
            continue
        result = stats.ks_2samp(ref, cur)
        statistic, p_value, deff = float(result.statistic), float(result.pvalue), 1.0
        if day_column is not None:
            ref_days = reference[day_column].to_numpy()[np.isfinite(ref_all)]
            cur_days = current[day_column].to_numpy()[np.isfinite(cur_all)]
            icc = intraday_correlation(ref, ref_days)
            deff = _design_effect(cur_days, icc)
            p_value = _ks_pvalue(statistic, len(ref) / _design_effect(ref_days, icc), len(cur) / deff)
        drifted = p_value < alpha
        out.append(
            FeatureDrift(
                feature=name,
                test="ks",
                statistic=statistic,
                p_value=p_value,
                drifted=drifted,
                severe=drifted and index >= spec.psi_severe,
                psi=index,
                threshold=alpha,
                n_reference=len(ref),
                n_current=len(cur),
                design_effect=round(deff, 3),
            )
        )
    return out


def reason(f: FeatureDrift, spec: DriftSpec) -> str:
    """One line saying why a row-tested feature drifted."""
    if f.test == "ks":
        text = f"{f.feature}: KS D={f.statistic:.3f}, p={f.p_value:.2g} < {f.threshold:.2g}"
    else:
        text = f"{f.feature}: PSI {f.statistic:.3f} >= {f.threshold:g}"
    return text + (f" (PSI {f.psi:.2f} >= {spec.psi_severe:g}: severe)" if f.severe else "")
