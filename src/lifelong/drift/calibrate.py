"""Judging one new value against a short, time-ordered sample of its kind (the reference's own).

Both drift tests end here: a day's log distance against the reference days' log distances,
and the champion's log error against its recent log errors. The sample is short (about
two weeks), autocorrelated (weather comes in spells) and may hold the start of the very
change being tested, so:

* **screening**: the sample's largest values are dropped while each is an outlier against
  the rest (Student-t prediction, Bonferroni over the values left, ``SCREEN_ALPHA``), at
  most a third of them: a step that entered the reference yesterday does not widen the
  yardstick it is judged with today;
* **effective size**: the rest count at ``n (1 - r) / (1 + r)`` (r the lag-1
  autocorrelation) in the spread and the degrees of freedom;
* **prediction**: ``t = (x - mean) / (sd * sqrt(1 + 1/n_eff))``, one-sided Student-t p-value.
"""

from __future__ import annotations

import math

import numpy as np

SCREEN_ALPHA = 0.05


def effective_days(values: np.ndarray) -> float:
    """How many independent values a time-ordered sample is worth: ``n (1 - r) / (1 + r)``, at least 3.

    >>> rng = np.random.default_rng(5)
    >>> round(effective_days(rng.normal(size=14)), 1)  # noise, slightly correlated by chance
    9.3
    >>> round(effective_days(np.cumsum(rng.normal(size=14))), 1)  # a random walk: a few days' worth
    3.7
    """
    n = len(values)
    if n < 4:
        return float(n)
    centred = values - values.mean()
    denominator = float(np.sum(centred**2))
    r = float(np.sum(centred[1:] * centred[:-1])) / denominator if denominator > 0 else 0.0
    r = min(max(r, 0.0), 0.9)
    return max(3.0, n * (1.0 - r) / (1.0 + r))


def _t(value: float, sample: np.ndarray, floor: float) -> tuple[float, float, float, float]:
    """Prediction t of ``value`` from ``sample``: (t, degrees of freedom, mean, corrected sd)."""
    n = len(sample)
    n_eff = min(float(n), effective_days(sample))
    sd = float(sample.std(ddof=1)) if n > 1 else 0.0
    if n_eff > 1.0 and n > 1:
        # the sample variance of correlated values underestimates theirs by about (1 - 1/n_eff) / (1 - 1/n)
        sd *= math.sqrt((1.0 - 1.0 / n) / (1.0 - 1.0 / n_eff))
    sd = max(sd, floor)
    mean = float(sample.mean())
    return (value - mean) / (sd * math.sqrt(1.0 + 1.0 / n_eff)), max(1.0, n_eff - 1.0), mean, sd


def screen(sample: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Which values of ``sample`` to keep: the largest dropped while each is an outlier against the rest.

    >>> screen(np.array([0.1, -0.2, 0.0, 0.3, -0.1, 0.2, -0.3, 4.0])).tolist()
    [True, True, True, True, True, True, True, False]
    >>> bool(screen(np.random.default_rng(1).normal(size=14)).all())
    True
    """
    from scipy import stats

    keep = np.ones(len(sample), dtype=bool)
    for _ in range(len(sample) // 3):
        idx = np.flatnonzero(keep)
        top = idx[np.argmax(sample[idx])]
        rest = sample[idx[idx != top]]
        if len(rest) < 3 or float(rest.std(ddof=1)) <= 0:
            break
        t, df, _, _ = _t(float(sample[top]), rest, floor)
        if float(stats.t.sf(t, df)) * len(idx) >= SCREEN_ALPHA:
            break
        keep[top] = False
    return keep


def predict(value: float, sample: np.ndarray, floor: float = 0.0) -> dict:
    """One-sided p-value of ``value`` (larger is unusual) against the screened, time-ordered ``sample``.

    >>> out = predict(2.0, np.array([0.1, -0.2, 0.0, 0.3, -0.1, 0.2, -0.3, 0.05]))
    >>> bool(out["t"] > 5), bool(out["p"] < 0.001), out["kept"]
    (True, True, 8)
    """
    from scipy import stats

    keep = screen(sample, floor)
    t, df, mean, sd = _t(value, sample[keep], floor)
    return {"t": t, "p": float(stats.t.sf(t, df)), "df": df, "mean": mean, "sd": sd, "kept": int(keep.sum())}
