"""Day-level feature drift: is the new day unlike similar days of the reference?

A day of a half-hourly series is one curve of 48 correlated points, and a weekly cycle makes
a Saturday unlike a fortnight's rows every week, so the rows of a day are not tested as
rows. Each feature is tested in three steps:

1. **Profiles.** Every day becomes its curve over the day (the rows in time order, resampled
   to the reference's usual number of rows a day, so 46- and 50-row days compare too).
2. **Similar days.** A day is compared with the mean curve of the reference days of the same
   weekday, of the same day type (Monday-Friday or weekend), or all of them; ``auto`` picks
   whichever predicts the reference days best when each is left out in turn. Two distances
   are taken from the difference: its root mean square (level and shape together) and the
   root mean square about its own mean (the shape alone), each scaled by ``sqrt(1 + 1/k)``
   for a mean of k days.
3. **Calibration on the reference.** The same distances are computed for every reference
   day against the similar days on its longer side (leave one day out; the new day is then
   compared with as many of the nearest similar days, so both see the same lags). The new
   day's log distance is scored against theirs as a prediction (screened for outliers,
   counted at their effective number: :mod:`lifelong.drift.calibrate`), one-sided Student-t,
   and the smaller of the two p-values (doubled, Bonferroni) is tested at
   ``day_alpha / n_features``.

A drifted feature is **severe** when its distance is at least ``severe_ratio`` times the
reference days' median and it drifted on the ``severe_days - 1`` days before as well (each
tested against the reference days before it): a holiday or a heat wave is one odd day, a
new regime is odd day after day.

A feature with one value a day (a holiday flag, daily data) or with reference days all
alike has no spread to fit a tail to; its p-value is the rank of the day among the
reference days, ``(1 + #{d_i >= d}) / (n + 1)``, which one day alone cannot push below
``1 / (n + 1)``: one holiday is one odd day, not drift.

>>> import numpy as np, pandas as pd
>>> from lifelong.config import DriftSpec
>>> rng = np.random.default_rng(0)
>>> dates = pd.date_range("2024-01-01", periods=15).date
>>> shape = 1 + 0.3 * np.sin(np.linspace(0, 2 * np.pi, 48))  # a daily cycle
>>> frame = pd.DataFrame({"day": np.repeat(dates, 48), "load": np.tile(shape, 15) + rng.normal(0, 0.05, 720)})
>>> reference, current = frame[frame["day"] < dates[14]], frame[frame["day"] == dates[14]]
>>> [f.drifted for f in day_drift(reference, current, ["load"], DriftSpec(), day_column="day")]
[False]
>>> [(f.drifted, f.severe) for f in day_drift(reference, current.assign(load=current["load"] * 1.2), ["load"],
...                                           DriftSpec(), day_column="day")]  # severe: on two days running
[(True, False)]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lifelong.config import DriftSpec
from lifelong.drift import calibrate
from lifelong.drift.profiles import day_codes, day_numbers, profiles, weekdays
from lifelong.drift.report import FeatureDrift
from lifelong.drift.rows import column_values, finite_values, psi

SIMILAR = ("weekday", "daytype", "all")  # finest first: an empty choice falls back to the next


def _similar(day: int, weekday: int | None, times: np.ndarray, weekdays_: np.ndarray | None, choice: str,
             side: str, at_most: int | None = None) -> np.ndarray:  # fmt: skip
    """Indices of the days a day is compared with: on one side of it, similar, the nearest ``at_most``.

    No similar day on that side: the next coarser similarity (weekday, then day type, then all).
    """
    candidates = np.flatnonzero(times < day) if side == "past" else np.flatnonzero(times > day)
    for fallback in SIMILAR[SIMILAR.index(choice) :]:
        chosen = candidates
        if fallback != "all" and weekdays_ is not None and weekday is not None:
            wd = weekdays_[candidates]
            chosen = candidates[wd == weekday if fallback == "weekday" else (wd >= 5) == (weekday >= 5)]
        if len(chosen):
            nearest = np.argsort(np.abs(times[chosen] - day), kind="stable")[:at_most]
            return chosen[nearest]
    return candidates


def _parts(day: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(level, shape) of the day minus the pool's mean curve, each scaled by sqrt(1 + 1/k) for a mean of k days.

    level: the mean difference (signed); shape: the RMS of the difference about that mean.
    Only the slots where the day and the pool have values count.
    """
    scale = math.sqrt(1.0 + 1.0 / len(pool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a slot no pool day has: NaN, left out below
        diff = day - np.nanmean(pool, axis=0)
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return np.zeros(2)
    level = float(diff.mean())
    return np.array([level, float(np.sqrt(np.mean((diff - level) ** 2)))]) / scale


def parts(profile: np.ndarray, day: int, weekday: int | None, days: np.ndarray, times: np.ndarray,
          weekdays_: np.ndarray | None, choice: str, at_most: int | None = None) -> np.ndarray:  # fmt: skip
    """(level, shape) of a new day against (at most ``at_most`` of) the similar reference days before it."""
    side = "past" if np.any(times < day) else "future"
    return _parts(profile, days[_similar(day, weekday, times, weekdays_, choice, side, at_most)])


def leave_one_out(
    days: np.ndarray, times: np.ndarray, weekdays_: np.ndarray | None, choice: str
) -> tuple[np.ndarray, int]:
    """Each reference day's (level, shape) against the similar days on its longer side, and their usual number.

    A new day sees the reference from one side (the past), so each reference day is compared
    with the days on one side of it too: the side with more days (time reversed for the first
    half, which a stationary series does not tell apart). The new day is then compared with
    as many similar days as the median reference day was (the nearest), so that both are
    differences from a mean of as many days at the same lags.

    >>> days = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    >>> out, k = leave_one_out(days, np.arange(4), None, "all")
    >>> out[:, 0].round(3).tolist(), out[:, 1].tolist(), k
    ([-1.732, -1.225, 1.225, 1.732], [0.0, 0.0, 0.0, 0.0], 2)
    """
    out, sizes = np.empty((len(days), 2)), np.empty(len(days), dtype=np.int64)
    for i, day in enumerate(times):
        side = "past" if np.sum(times < day) >= np.sum(times > day) else "future"
        wd = None if weekdays_ is None else int(weekdays_[i])
        pool = _similar(int(day), wd, times, weekdays_, choice, side)
        out[i], sizes[i] = _parts(days[i], days[pool]), len(pool)
    return out, max(1, int(np.median(sizes)))


def _choose(
    days: np.ndarray, times: np.ndarray, weekdays_: np.ndarray | None, spec: DriftSpec
) -> tuple[str, np.ndarray, int]:
    """The similarity to use, the reference days' leave-one-out (level, shape) under it, and the pool size."""
    if weekdays_ is None:
        return "all", *leave_one_out(days, times, None, "all")
    if spec.similar_days != "auto":
        return spec.similar_days, *leave_one_out(days, times, weekdays_, spec.similar_days)
    scored = [(choice, *leave_one_out(days, times, weekdays_, choice)) for choice in reversed(SIMILAR)]
    # the best predictor of the reference days (least mean square difference); a tie goes to the coarser choice
    return min(scored, key=lambda item: float(np.mean(item[1] ** 2)))


def _rank(value: float, reference: np.ndarray) -> float:
    """The exact p-value of a day as unusual as ``value`` among exchangeable reference days."""
    return (1.0 + float(np.sum(reference >= value - 1e-12))) / (len(reference) + 1.0)


def _p_log(value: float, reference: np.ndarray, floor: float) -> tuple[float, dict]:
    """One-sided p-value of a distance among the reference days' (Student-t on logs; the rank without spread)."""
    unique = pd.unique(reference)
    if len(unique) < 3 or float(np.std(unique)) <= floor:
        return _rank(value, reference), {}
    fit = calibrate.predict(math.log(value + floor), np.log(unique + floor), floor=1e-3)
    return fit["p"], fit


def _summary(fit: dict) -> dict | None:
    if not fit:
        return None
    return {"t": round(fit["t"], 3), "p": float(f"{fit['p']:.3g}"), "mean": round(fit["mean"], 4),
            "sd": round(fit["sd"], 4), "df": round(fit["df"], 2), "days_kept": fit["kept"]}  # fmt: skip


def day_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    spec: DriftSpec,
    *,
    day_column: str,
    n_tests: int | None = None,
    confirm: bool = True,
) -> list[FeatureDrift]:
    """Test each feature's day(s) in ``current`` against the reference days (see the module docstring).

    ``n_tests``: how many tests share the level ``day_alpha`` (default ``len(features)``).
    A feature is severe only when the day is at least ``severe_ratio`` times the usual
    distance and each of the ``severe_days - 1`` last reference days drifted too, each
    against the reference days before it (``confirm=False``: today alone). A holiday or a heat
    wave is one odd day; a new regime is odd day after day.

    Rows are taken in the order given (time order within a day); NaN and infinite values are
    dropped, a day with under half its values is left out. A ``current`` batch of several
    days is tested day by day and reports its most unusual day (Bonferroni over its days).
    The caller checks there are enough reference days (``spec.min_reference_days``); a
    feature with fewer usable reference days is reported untested.
    """
    ref_codes, ref_labels = day_codes(reference, day_column, "reference")
    cur_codes, cur_labels = day_codes(current, day_column, "current")
    ref_weekdays, cur_weekdays = weekdays(ref_labels), weekdays(cur_labels)
    # one conversion for both, so labels that are neither dates nor numbers count on from the reference
    times_all = day_numbers(np.concatenate([ref_labels, cur_labels]))
    ref_times, cur_times = times_all[: len(ref_labels)], times_all[len(ref_labels) :]
    sizes = np.bincount(ref_codes[ref_codes >= 0], minlength=len(ref_labels))
    points = max(1, int(np.median(sizes))) if len(sizes) else 1
    n_tests_ = max(1, n_tests or len(features))
    alpha = spec.day_alpha / n_tests_
    out = []
    for name in features:
        ref_all, cur_all = column_values(reference, name, "reference"), column_values(current, name, "current")
        ref_rows, cur_rows = finite_values(ref_all, name, "reference"), finite_values(cur_all, name, "current")
        ref_days = profiles(ref_all, ref_codes, len(ref_labels), points)
        cur_days = profiles(cur_all, cur_codes, len(cur_labels), points)
        usable = np.isfinite(ref_days).any(axis=1)
        ref_days = ref_days[usable]
        ref_wd = None if ref_weekdays is None else ref_weekdays[usable]
        times = ref_times[usable]
        common = {
            "feature": name,
            "test": "day",
            "psi": psi(ref_rows, cur_rows, spec.psi_bins, spec.psi_epsilon),
            "threshold": alpha,
            "n_reference": len(ref_rows),
            "n_current": len(cur_rows),
        }
        tested = [i for i in range(len(cur_days)) if np.isfinite(cur_days[i]).any()]
        if len(ref_days) < max(2, spec.min_reference_days) or not tested:
            why = f"{len(ref_days)} reference days with values" if tested else "no day of the batch has values"
            calibration = {"status": f"not tested: {why}", "reference_days": int(len(ref_days))}
            out.append(FeatureDrift(statistic=0.0, p_value=None, drifted=False, severe=False,
                                    calibration=calibration, **common))  # fmt: skip
            continue
        choice, loo, pool_size = _choose(ref_days, times, ref_wd, spec)
        floor = 1e-6 * float(np.nanstd(ref_days)) + 1e-12
        combined = np.hypot(loo[:, 0], loo[:, 1])
        flat = points == 1 or not bool(np.any(np.nanmax(ref_days, axis=1) > np.nanmin(ref_days, axis=1)))
        worst: tuple[float, float, np.ndarray, dict, dict] | None = None
        for i in tested:
            wd = None if cur_weekdays is None else int(cur_weekdays[i])
            now = parts(cur_days[i], int(cur_times[i]), wd, ref_days, times, ref_wd, choice, pool_size)
            if flat:  # one value a day (a flag, daily data): no shape, and the level judged by its rank
                p, distance_fit, shape_fit = _rank(abs(float(now[0])), np.abs(loo[:, 0])), {}, {}
            else:
                p_distance, distance_fit = _p_log(float(np.hypot(*now)), combined, floor)
                p_shape, shape_fit = _p_log(float(now[1]), loo[:, 1], floor)
                p = min(1.0, 2.0 * min(p_distance, p_shape))  # Bonferroni over the two
            if worst is None or p < worst[1]:
                worst = (float(np.hypot(*now)), p, now, distance_fit, shape_fit)
        assert worst is not None
        d, p, now, distance_fit, shape_fit = worst
        p = min(1.0, p * len(tested))
        median = float(np.median(combined))
        ratio = d / median if median > 0 else (math.inf if d > 0 else 1.0)
        drifted = p < alpha
        calibration = {
            "status": "ok",
            "similar_days": choice,
            "pool_days": pool_size,
            "reference_days": int(len(ref_days)),
            "level": round(float(now[0]), 6),
            "shape": round(float(now[1]), 6),
            "distance_test": _summary(distance_fit) or "rank",
            "shape_test": _summary(shape_fit) or "rank",
            "median_distance": round(median, 6),
            "severe_ratio": spec.severe_ratio,
        }
        t = max((f["t"] for f in (distance_fit, shape_fit) if f), default=None)
        out.append(
            FeatureDrift(
                statistic=round(d, 6),
                p_value=p,
                drifted=drifted,
                severe=drifted
                and ratio >= spec.severe_ratio
                and (
                    not confirm or _persisted(reference, name, spec, day_column, n_tests_, ref_codes, len(ref_labels))
                ),
                z=None if t is None else round(t, 3),
                ratio=round(ratio, 3) if math.isfinite(ratio) else None,
                calibration=calibration,
                **common,
            )
        )
    return out


def _persisted(
    reference: pd.DataFrame, feature: str, spec: DriftSpec, day_column: str, n_tests: int, codes: np.ndarray, n: int
) -> bool:
    """Whether ``feature`` drifted on each of the ``severe_days - 1`` last reference days (against the days before)."""
    for back in range(1, spec.severe_days):
        last = n - back
        if last < spec.min_reference_days:
            return False
        before, day = reference[(codes >= 0) & (codes < last)], reference[codes == last]
        if day.empty:
            return False
        [previous] = day_drift(before, day, [feature], spec, day_column=day_column,
                               n_tests=n_tests, confirm=False)  # fmt: skip
        if not previous.drifted:
            return False
    return True


def reason(f: FeatureDrift) -> str:
    """One line saying why a day-tested feature drifted."""
    cal = f.calibration or {}
    ratio = "" if f.ratio is None else f" ({f.ratio:.1f}x the reference days' median)"
    text = (
        f"{f.feature}: the day is {f.statistic:.4g} from similar reference days ({cal.get('similar_days')}){ratio}, "
        f"p={f.p_value:.2g} < {f.threshold:.2g}"
    )
    return text + (f" (>= {cal.get('severe_ratio'):g}x, and drifted the day before: severe)" if f.severe else "")
