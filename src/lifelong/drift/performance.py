"""Performance drift: is the champion suddenly, or steadily, worse than its recent errors?

Targets arrive a day late, so the champion's error on a day is known the day after and its
daily errors form a short history (``reference_days`` of them). Daily errors are skewed
(a heat wave doubles a forecaster's error for a day), so both detectors work on the log
error, where a ratio is a ratio on any day:

* **One day**: the new log error scored as a prediction from the history (screened for
  outliers, counted at its effective size: :mod:`lifelong.drift.calibrate`),
  ``t = (log e - mean) / (sd * sqrt(1 + 1/n))`` (sd floored at 0.01, a 1 % change), judged
  against ``error_z_drift`` (drift) and ``error_z_severe`` (severe). One-sided: an error
  better than usual is never drift.
* **A steady rise**: Page-Hinkley over the history and the new day, in units of that sd:
  the cumulative excess of each day over the running mean, less a slack of
  ``error_ph_delta``, since its lowest point; ``error_ph_lambda`` or more is drift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lifelong.config import DriftSpec
from lifelong.drift import calibrate

# the sd of the log error is floored at this (a 1 % change), so a flat history does not turn a
# 0.1 % change into an infinite score; the same floor applies to the linear scale, relative to the mean
_MIN_RELATIVE_STD = 0.01


def page_hinkley(values: np.ndarray, delta: float, scale: float | None = None) -> float:
    """Page-Hinkley statistic for an increase of ``values`` towards the end, in units of ``scale``.

    ``scale`` defaults to the sd of all but the last value (floored at 0.01).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> flat = rng.normal(0, 1, 15)
    >>> round(page_hinkley(flat, 0.5), 1)
    0.0
    >>> round(page_hinkley(np.r_[flat[:5], flat[5:] + 4], 0.5, scale=1.0), 1)  # the last 10 days 4 sd higher
    11.5
    """
    if len(values) < 3:
        return 0.0
    if scale is None:
        scale = float(np.std(values[:-1], ddof=1))
    u = values / max(scale, _MIN_RELATIVE_STD)
    running = np.cumsum(u) / np.arange(1, len(u) + 1)
    m = np.cumsum(u - running - delta)
    return float(max(0.0, m[-1] - min(0.0, float(m.min()))))


def error_drift(current_error: float | None, recent_errors: Sequence[float], spec: DriftSpec) -> dict | None:
    """The champion's error on the new day against its recent errors (see the module docstring).

    Returns ``None`` when there is no error or fewer than ``spec.error_min_history`` finite
    past errors; otherwise the error, the history's geometric ``mean`` and log ``std``, the
    calibrated score ``z`` with its Student-t ``p``, ``n``, how many past errors were ``kept``
    after screening, the ``scale`` (``log``; ``linear`` when an error is zero or negative) and
    the Page-Hinkley statistic ``ph``.

    Examples
    --------
    >>> error_drift(130.0, [100.0, 104.0, 96.0, 102.0, 98.0], DriftSpec())  # doctest: +NORMALIZE_WHITESPACE
    {'value': 130.0, 'mean': 99.96, 'std': 0.0316, 'z': 7.5814, 'p': 0.000812, 'n': 5, 'kept': 5,
     'scale': 'log', 'ph': 6.4208}
    >>> error_drift(130.0, [100.0, 104.0], DriftSpec()) is None  # too little history
    True
    """
    if current_error is None or not math.isfinite(current_error):
        return None
    history = np.asarray([e for e in recent_errors if e is not None and math.isfinite(e)], dtype=float)
    n = len(history)
    if n < max(2, spec.error_min_history):
        return None
    log = bool(np.all(history > 0) and current_error > 0)
    series = np.log(np.append(history, current_error)) if log else np.append(history, current_error)
    floor = _MIN_RELATIVE_STD if log else max(_MIN_RELATIVE_STD * abs(float(history.mean())), 1e-12)
    fit = calibrate.predict(float(series[-1]), series[:-1], floor=floor)
    return {
        "value": float(current_error),
        "mean": round(math.exp(fit["mean"]) if log else fit["mean"], 4),
        "std": round(fit["sd"], 4),
        "z": round(fit["t"], 4),
        "p": float(f"{fit['p']:.3g}"),
        "n": n,
        "kept": fit["kept"],
        "scale": "log" if log else "linear",
        "ph": round(page_hinkley(series, spec.error_ph_delta, fit["sd"]), 4),
    }


def reasons(error: dict | None, spec: DriftSpec) -> tuple[list[str], bool]:
    """Why the error is drift (lines) and whether it is severe."""
    if error is None:
        return [], False
    out = []
    z = error["z"]
    if z >= spec.error_z_drift:
        bound = spec.error_z_severe if z >= spec.error_z_severe else spec.error_z_drift
        out.append(
            f"champion error {error['value']:.4g} is {z:.1f} sd above its recent mean {error['mean']:.4g}"
            f" ({error['scale']}, z >= {bound:g})"
        )
    # a spike alone is the one-day score's; Page-Hinkley speaks for a rise the score did not call
    if z < spec.error_z_drift and error.get("ph", 0.0) >= spec.error_ph_lambda:
        out.append(f"champion error has risen steadily: Page-Hinkley {error['ph']:.1f} >= {spec.error_ph_lambda:g}")
    return out, z >= spec.error_z_severe
