"""Drift: is the new day unlike the recent past, and is the champion suddenly worse at it?

Two kinds of evidence feed one decision (``none`` | ``drift`` | ``severe``):

* **Feature drift**, per feature, the new batch against a reference window (the
  previous ``reference_days`` days). Small samples (the smaller side has at most
  ``ks_max_rows`` rows, e.g. one day of 48 half-hours) get a two-sample
  Kolmogorov-Smirnov test at a Bonferroni-corrected level ``ks_alpha / n_features``, so
  testing three features does not triple the false alarms. Large samples get the
  Population Stability Index (PSI), because with thousands of rows KS calls any
  negligible difference significant. PSI is computed for every feature as the *size*
  of the shift: a feature is severe when it drifted and its PSI reaches ``psi_severe``.
* **Rows of one day are not independent.** Half-hourly temperature is one smooth curve a
  day, so a plain KS test of one day against two weeks calls most real days "drifted"
  (on ``vic_elec``: 87 % of days severe). Given ``day_column``, the KS p-value uses
  Kish's effective sample sizes ``n / (1 + (m - 1) * ICC)``, with the intra-day
  correlation ICC estimated on the reference: one day then weighs what it is worth
  (on ``vic_elec``: 0.8 % of days flagged: cold snaps, Christmas demand). The price: one
  day is worth only a few independent rows, so a single day is flagged only when it is
  far outside the reference; the champion-error z-score is the sensitive daily signal.
* **Performance drift**: the champion's error on the new day as a z-score against its
  recent errors. One-sided: an error *better* than usual is never drift.

Severe drift means "a task addition may be due"; it is reported, it never blocks the
daily update (the gate protects the champion).

>>> import numpy as np, pandas as pd
>>> from lifelong.config import DriftSpec
>>> rng = np.random.default_rng(0)
>>> reference = pd.DataFrame({"load": rng.normal(0, 1, 14 * 48)})
>>> check(reference, pd.DataFrame({"load": rng.normal(0, 1, 48)}), ["load"], DriftSpec()).decision
'none'
>>> check(reference, pd.DataFrame({"load": rng.normal(3, 1, 48)}), ["load"], DriftSpec()).decision
'severe'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from lifelong.config import DriftSpec
from lifelong.errors import LifelongError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Decision = Literal["none", "drift", "severe"]

# the error history's standard deviation is floored at this fraction of its mean, so a
# perfectly flat history does not turn a 0.1 % change into an infinite z-score
_MIN_RELATIVE_STD = 0.01


class DriftError(LifelongError):
    """The frames handed to the drift check cannot be compared (missing or empty feature)."""


@dataclass(frozen=True)
class FeatureDrift:
    """The verdict on one feature.

    ``statistic`` is the KS distance *D* (``test == "ks"``) or the PSI (``test == "psi"``);
    ``threshold`` is what it was compared with (the corrected alpha for KS, the PSI
    threshold for PSI); ``psi`` is always the PSI, the effect size that decides severity.
    """

    feature: str
    test: Literal["ks", "psi"]
    statistic: float
    p_value: float | None
    drifted: bool
    severe: bool
    psi: float = 0.0
    threshold: float = 0.0
    n_reference: int = 0
    n_current: int = 0
    # Kish design effect of the current batch (1.0: rows treated as independent)
    design_effect: float = 1.0


@dataclass(frozen=True)
class DriftReport:
    """The day's drift decision with its evidence; ``to_json`` is what goes to XCom."""

    decision: Decision
    features: list[FeatureDrift] = field(default_factory=list)
    # champion error on the new day against its recent history: value, mean, std, z, n
    error: dict | None = None
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "decision": self.decision,
            "features": [asdict(f) for f in self.features],
            "error": dict(self.error) if self.error is not None else None,
            "reasons": list(self.reasons),
        }


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


def _values(frame: pd.DataFrame, feature: str, side: str) -> np.ndarray:
    """The finite values of one feature as floats (bools count as 0/1)."""
    if feature not in frame.columns:
        raise DriftError(f"drift: feature {feature!r} is missing from the {side} batch")
    try:
        values = frame[feature].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise DriftError(f"drift: feature {feature!r} is not numeric ({frame[feature].dtype})") from None
    return values


def _finite(values: np.ndarray, feature: str, side: str) -> np.ndarray:
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
        ref_all, cur_all = _values(reference, name, "reference"), _values(current, name, "current")
        ref, cur = _finite(ref_all, name, "reference"), _finite(cur_all, name, "current")
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


def error_drift(current_error: float | None, recent_errors: Sequence[float], spec: DriftSpec) -> dict | None:
    """The champion's error on the new day as a z-score against its recent errors.

    Returns ``None`` when there is no error or fewer than ``spec.error_min_history``
    finite past errors. The history's standard deviation is floored at 1 % of its mean.

    Examples
    --------
    >>> error_drift(130.0, [100.0, 104.0, 96.0, 102.0, 98.0], DriftSpec())
    {'value': 130.0, 'mean': 100.0, 'std': 3.1623, 'z': 9.4868, 'n': 5}
    >>> error_drift(130.0, [100.0, 104.0], DriftSpec()) is None  # too little history
    True
    """
    if current_error is None or not math.isfinite(current_error):
        return None
    history = np.asarray([e for e in recent_errors if e is not None and math.isfinite(e)], dtype=float)
    if len(history) < max(2, spec.error_min_history):
        return None
    mean = float(history.mean())
    std = max(float(history.std(ddof=1)), _MIN_RELATIVE_STD * abs(mean), 1e-12)
    z = (float(current_error) - mean) / std
    return {
        "value": float(current_error),
        "mean": round(mean, 6),
        "std": round(std, 4),
        "z": round(z, 4),
        "n": len(history),
    }


# --------------------------------------------------------------------------- decision


def _reason(f: FeatureDrift, spec: DriftSpec) -> str:
    if f.test == "ks":
        text = f"{f.feature}: KS D={f.statistic:.3f}, p={f.p_value:.2g} < {f.threshold:.2g}"
    else:
        text = f"{f.feature}: PSI {f.statistic:.3f} >= {f.threshold:g}"
    return text + (f" (PSI {f.psi:.2f} >= {spec.psi_severe:g}: severe)" if f.severe else "")


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

    ``severe`` if a feature's shift is severe or the error's z-score reaches
    ``error_z_severe``; ``drift`` if any feature drifted or the z-score reaches
    ``error_z_drift``; otherwise ``none``. ``reasons`` says which evidence fired. Pass
    ``day_column`` when rows are a time series grouped in days (see :func:`feature_drift`).

    Examples
    --------
    >>> rng = np.random.default_rng(3)
    >>> ref, cur = pd.DataFrame({"x": rng.normal(0, 1, 672)}), pd.DataFrame({"x": rng.normal(0, 1, 48)})
    >>> report = check(ref, cur, ["x"], DriftSpec(), current_error=140.0, recent_errors=[100, 104, 96, 102, 98])
    >>> report.decision, report.reasons
    ('severe', ['champion error 140 is 12.6 sd above its recent mean 100 (z >= 6)'])
    """
    feats = feature_drift(reference, current, features, spec, day_column=day_column)
    error = error_drift(current_error, recent_errors, spec)
    reasons = [_reason(f, spec) for f in feats if f.drifted]
    z = error["z"] if error is not None else -math.inf
    if z >= spec.error_z_drift:
        bound = spec.error_z_severe if z >= spec.error_z_severe else spec.error_z_drift
        reasons.append(
            f"champion error {error['value']:.4g} is {z:.1f} sd above its recent mean {error['mean']:.4g}"
            f" (z >= {bound:g})"
        )
    if any(f.severe for f in feats) or z >= spec.error_z_severe:
        decision: Decision = "severe"
    elif reasons:
        decision = "drift"
    else:
        decision = "none"
    return DriftReport(decision=decision, features=feats, error=error, reasons=reasons)


# --------------------------------------------------------------------------- plot


def plot(report: DriftReport, reference: pd.DataFrame, current: pd.DataFrame) -> Figure:
    """One row per feature: overlaid histograms and the two ECDFs, titled with the verdict.

    Built on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state), so it
    is safe in a worker process and needs no ``plt.close``. Fixed margins rather than a layout
    engine: constrained layout measures every label first, a third of the plot's time.
    """
    from matplotlib.figure import Figure

    rows = max(1, len(report.features))
    height = 2.6 * rows + 0.6  # inches; the margins below leave room for the suptitle, titles and tick labels
    fig = Figure(figsize=(10, height))
    margins = {"left": 0.08, "right": 0.98, "top": 1 - 0.6 / height, "bottom": 0.35 / height}
    axes = fig.subplots(rows, 2, squeeze=False, gridspec_kw={**margins, "hspace": 0.4, "wspace": 0.18})
    title = f"drift: {report.decision}"
    if report.error is not None:
        title += f"  |  champion error {report.error['value']:.4g} (z = {report.error['z']:.1f})"
    fig.suptitle(title)
    if not report.features:
        axes[0, 0].text(0.5, 0.5, "no features tested", ha="center", va="center")
    for row, f in zip(axes, report.features, strict=False):
        ref = _finite(_values(reference, f.feature, "reference"), f.feature, "reference")
        cur = _finite(_values(current, f.feature, "current"), f.feature, "current")
        lo, hi = float(min(ref.min(), cur.min())), float(max(ref.max(), cur.max()))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        row[0].hist(ref, bins=edges, density=True, alpha=0.5, label=f"reference (n={len(ref)})")
        row[0].hist(cur, bins=edges, density=True, alpha=0.5, label=f"current (n={len(cur)})")
        row[0].legend(fontsize="small")
        for values, label in ((ref, "reference"), (cur, "current")):
            xs = np.sort(values)
            row[1].step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=label)
        row[1].set_ylim(0, 1)
        verdict = "severe" if f.severe else "drift" if f.drifted else "ok"
        stat = f"KS D={f.statistic:.3f} p={f.p_value:.2g}" if f.test == "ks" else f"PSI={f.statistic:.3f}"
        row[0].set_title(f"{f.feature}: {stat}, PSI={f.psi:.2f} -> {verdict}", fontsize="medium")
        row[1].set_title(f"{f.feature}: ECDF", fontsize="medium")
    return fig
