"""A day as a curve: rows grouped by their day, in time order, on a common grid; the day's weekday and number.

>>> import numpy as np
>>> codes, labels = day_codes(pd.DataFrame({"day": ["2024-01-07", "2024-01-06", "2024-01-07"]}), "day", "current")
>>> codes.tolist(), labels.tolist(), weekdays(labels).tolist(), day_numbers(labels).tolist()
([1, 0, 1], ['2024-01-06', '2024-01-07'], [5, 6], [19728, 19729])
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from lifelong.drift.report import DriftError


def day_codes(frame: pd.DataFrame, day_column: str, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Each row's day number (-1 for a row without a day) and the sorted day labels."""
    if day_column not in frame.columns:
        raise DriftError(f"drift: day column {day_column!r} is missing from the {side} batch")
    codes, labels = pd.factorize(frame[day_column], sort=True)
    return np.asarray(codes), np.asarray(labels)


def weekdays(labels: np.ndarray) -> np.ndarray | None:
    """Day of the week (Monday 0) of each day label; integers count as day numbers; None if neither.

    >>> weekdays(np.array(["2024-01-06", "2024-01-07"])).tolist()
    [5, 6]
    >>> weekdays(np.arange(5, 9)).tolist()
    [5, 6, 0, 1]
    >>> weekdays(np.array(["a", "b"])) is None
    True
    """
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64) % 7
    if labels.dtype.kind == "f":
        return None if not np.isfinite(labels).all() else np.floor(labels).astype(np.int64) % 7
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pd.DatetimeIndex(pd.to_datetime(labels)).day_of_week.to_numpy().astype(np.int64)
    except (ValueError, TypeError, OverflowError):
        return None


def profiles(values: np.ndarray, codes: np.ndarray, n_days: int, points: int) -> np.ndarray:
    """One row per day: its values in row order, resampled to ``points``.

    Gaps inside a day are interpolated; slots before the first or after the last value stay
    NaN (nothing is extrapolated); a day with under half its values is all NaN.

    >>> profiles(np.array([1.0, 3.0, 5.0, np.nan, 2.0, 2.0]), np.array([0, 0, 0, 1, 1, 1]), 2, 3).tolist()
    [[1.0, 3.0, 5.0], [nan, 2.0, 2.0]]
    """
    out = np.full((n_days, points), np.nan)
    keep = codes >= 0
    v, c = values[keep], codes[keep]
    order = np.argsort(c, kind="stable")
    counts = np.bincount(c, minlength=n_days)
    grid = (np.arange(points) + 0.5) / points
    for day, chunk in enumerate(np.split(v[order], np.cumsum(counts)[:-1])):
        ok = np.isfinite(chunk)
        if ok.sum() < max(1, math.ceil(len(chunk) / 2)):
            continue
        if len(chunk) == points and ok.all():
            out[day] = chunk
            continue
        at = (np.flatnonzero(ok) + 0.5) / len(chunk)
        row = np.interp(grid, at, chunk[ok])
        half = 0.5 / len(chunk)
        row[(grid < at[0] - half) | (grid > at[-1] + half)] = np.nan
        out[day] = row
    return out


def day_numbers(labels: np.ndarray) -> np.ndarray:
    """Each day label as a day number (dates as days since 1970, integers as themselves, else positions).

    >>> day_numbers(np.array(["2024-01-06", "2024-01-09"])).tolist()
    [19728, 19731]
    """
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stamps = pd.DatetimeIndex(pd.to_datetime(labels))
        return np.asarray((stamps.normalize() - pd.Timestamp("1970-01-01")).days, dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        return np.arange(len(labels), dtype=np.int64)
