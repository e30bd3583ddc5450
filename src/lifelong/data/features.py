"""Features of forecast *target* steps: lags of the target, the calendar, known-future covariates.

Pure pandas/numpy over stored rows (UTC timestamps in ``spec.timestamp``); the data set's local
zone is ``spec.timezone`` (UTC when None). What a day-ahead model sees at each step it forecasts:

* **lags** (``spec.lags``, default ``1d, 7d``). A lag of whole days is taken at the same *local
  clock time* that many days before (calendar position): demand follows the clock people live by,
  so on the day after a daylight-saving change the 18:00 of the day before is 18:00 again, not 17:00
  or 19:00 as a fixed 48-step lag would give. The two hours that are not one-to-one:

  - a clock time that did not exist on the lagged day (the hour skipped when daylight saving
    starts, e.g. 02:00 and 02:30) is read at the first instant after the skip (03:00), as pandas'
    ``nonexistent="shift_forward"`` does;
  - a clock time that happened twice on the lagged day (the hour repeated when it ends) is read at
    its first occurrence.

  Any other lag (``30min``, ``6h``) is a fixed duration. A lagged row that is not stored (a
  missing day, the start of the data) is **NaN** here; :mod:`lifelong.data.windows` drops every
  sample that would need it, so no sample carries a made-up value.
* **calendar**: time of day and day of week in the local zone, each as sin/cos (a day and a
  week are circles). A holiday flag is a data column (vic_elec's ``Holiday``): declare it in
  ``known_future`` like the temperature.
* **known-future covariates** (``spec.known_future``): the values of those columns *at the target
  step*, as an operator has them when issuing the forecast (a weather forecast, a calendar). On
  vic_elec the observed temperature stands in for a forecast of it.

A bring-your-own series with only a timestamp and a target gets the default lags and the
calendar without declaring anything.

>>> import pandas as pd
>>> from lifelong.config import DatasetSpec
>>> spec = DatasetSpec(name="toy", kind="forecast", loader="toy.csv", timestamp="t", features=("y",),
...                    target="y", frequency="6h", lags=("1d", "6h"))
>>> frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=6, freq="6h", tz="UTC"),
...                       "y": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
>>> out = target_features(frame, spec)
>>> out[["lag_1d", "lag_6h"]].to_numpy().tolist()  # NaN: before the first stored row
[[nan, nan], [nan, 0.0], [nan, 1.0], [nan, 2.0], [0.0, 3.0], [1.0, 4.0]]
>>> (out[["tod_sin", "tod_cos"]].round(3).to_numpy()[:2] + 0.0).tolist()  # 00:00 and 06:00
[[0.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lifelong.config import ConfigError, DatasetSpec, parse_duration

CALENDAR = ("tod_sin", "tod_cos", "dow_sin", "dow_cos")
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Lag:
    """One lag of the target: ``text`` as declared, its duration, and whether it is a calendar lag."""

    text: str
    duration: dt.timedelta
    steps: int  # the duration in rows of the data set

    @property
    def calendar(self) -> bool:
        """Whole days: taken at the same local clock time (see the module docstring)."""
        return self.duration % DAY == dt.timedelta(0)

    @property
    def name(self) -> str:
        return f"lag_{self.text}"


def parse_lag(text: str, frequency: str, key: str = "lags") -> Lag:
    """``"7d"`` against ``frequency`` (``"30min"``): a :class:`Lag` of 336 steps.

    >>> parse_lag("7d", "30min")
    Lag(text='7d', duration=datetime.timedelta(days=7), steps=336)
    >>> parse_lag("45min", "30min", "datasets.x.lags[0]")
    Traceback (most recent call last):
    ...
    lifelong.config.ConfigError: datasets.x.lags[0]: '45min' is not a whole number of 30min steps
    """
    duration = parse_duration(text, key)
    step = parse_duration(frequency, "frequency")
    if duration < step or duration % step:
        raise ConfigError(f"{key}: {text!r} is not a whole number of {frequency} steps")
    return Lag(text=text, duration=duration, steps=duration // step)


def lags(spec: DatasetSpec) -> list[Lag]:
    """The data set's declared lags, parsed."""
    return [parse_lag(t, spec.frequency, f"datasets.{spec.name}.lags[{i}]") for i, t in enumerate(spec.lags)]


def weekly(spec: DatasetSpec) -> Lag:
    """The lag of one week (the weekly seasonal naive), whatever ``spec.lags`` declares."""
    return parse_lag("7d", spec.frequency)


def daily(spec: DatasetSpec) -> Lag:
    """The lag of one day (the daily seasonal naive)."""
    return parse_lag("1d", spec.frequency)


def covariates(spec: DatasetSpec) -> list[str]:
    """The features other than the target, in declared order."""
    return [f for f in spec.features if f != spec.target]


def lagged_times(timestamps: pd.DatetimeIndex, lag: Lag, zone: str | None, times: int = 1) -> pd.DatetimeIndex:
    """The UTC instants ``times`` lags before each of ``timestamps`` (tz-aware UTC).

    Across the day daylight saving ends in Melbourne (2012-04-01, 02:00-02:59 twice), a 1d lag keeps
    the clock time; the day after, both 02:00s map to the first one:

    >>> ts = pd.DatetimeIndex(pd.to_datetime(["2012-04-01 02:00+11:00", "2012-04-02 01:00+10:00",
    ...                                        "2012-04-02 02:00+10:00"], utc=True))
    >>> lag = parse_lag("1d", "30min")
    >>> [str(t) for t in lagged_times(ts, lag, "Australia/Melbourne").tz_convert("Australia/Melbourne")]
    ['2012-03-31 02:00:00+11:00', '2012-04-01 01:00:00+11:00', '2012-04-01 02:00:00+11:00']
    """
    if not lag.calendar:
        return timestamps - lag.duration * times
    zone = zone or "UTC"
    wall = timestamps.tz_convert(zone).tz_localize(None) - lag.duration * times
    first = np.ones(len(wall), dtype=bool)  # an ambiguous clock time: its first occurrence
    return wall.tz_localize(zone, ambiguous=first, nonexistent="shift_forward").tz_convert("UTC")


def lag_rows(stored: pd.DatetimeIndex, at: pd.DatetimeIndex, lag: Lag, zone: str | None, times: int = 1) -> np.ndarray:
    """Row numbers in ``stored`` (sorted, unique UTC timestamps) of the lagged instants; -1 where not stored."""
    return pd.Index(stored).get_indexer(lagged_times(at, lag, zone, times))


def calendar(timestamps: pd.DatetimeIndex, zone: str | None) -> np.ndarray:
    """``(n, 4)``: sin/cos of the local time of day and of the day of the week (Monday = 0)."""
    local = timestamps.tz_convert(zone or "UTC")
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    day = 2 * np.pi * np.asarray(seconds, dtype=np.float64) / 86400
    week = 2 * np.pi * np.asarray(local.dayofweek, dtype=np.float64) / 7
    return np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], axis=1)


def target_features(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Per stored row, the features it would have as a target step: ``lag_<text>`` (NaN where the
    lagged row is not stored), the calendar (:data:`CALENDAR`) and the known-future columns.

    The lags here are plain ones; a forecast issued at an origin only uses those it knows by then
    (:func:`lifelong.data.windows.forecast_samples`).
    """
    frame = frame.sort_values(spec.timestamp, kind="stable")
    stamps = pd.DatetimeIndex(frame[spec.timestamp])
    values = frame[spec.target].to_numpy(dtype=np.float64)
    out = pd.DataFrame(index=frame.index)
    for lag in lags(spec):
        rows = lag_rows(stamps, stamps, lag, spec.timezone)
        out[lag.name] = np.where(rows >= 0, values[rows], np.nan)
    out[list(CALENDAR)] = calendar(stamps, spec.timezone)
    for name in spec.known_future:
        out[name] = frame[name].to_numpy(dtype=np.float64)
    return out
