"""The shape of a data set's rows, read from its ``params.yaml`` block and nothing else.

A *forecast* data set has one row per time step: a UTC timestamp, optionally the local
calendar day it belongs to, scalar features and a target. A *classify* data set has one row
per recording: an id, a task, a train/test split, a label, and one array per feature column
(the signal). Everything here is pure pandas, so it serves the loaders, validation, the
store and the windows alike.

>>> from lifelong.config import DatasetSpec
>>> spec = DatasetSpec(name="d", kind="forecast", loader="x.csv", timestamp="ts",
...                    features=("y", "temp"), target="y", frequency="1h", timezone="Europe/Paris")
>>> columns(spec)
['ts', 'y', 'temp']
>>> import datetime as dt
>>> [day_rows(spec, dt.date(2024, m, d)) for m, d in ((3, 31), (6, 1), (10, 27))]  # DST on, none, off
[23, 24, 25]
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from lifelong.config import DatasetSpec

TIMESTAMP_UNIT = "us"


def columns(spec: DatasetSpec) -> list[str]:
    """The declared columns of ``spec``, in their stored order, each once."""
    if spec.kind == "forecast":
        names = [spec.timestamp, spec.date_column, spec.task_column, *spec.features, spec.target, spec.label]
    else:
        names = [spec.id_column, spec.task_column, spec.split_column, spec.label, *spec.features]
    out: list[str] = []
    for name in names:
        if name and name not in out:
            out.append(name)
    return out


def array_columns(spec: DatasetSpec) -> list[str]:
    """Columns holding one array (a signal) per row: the features of a classify data set."""
    return list(spec.features) if spec.kind == "classify" else []


def dtypes(spec: DatasetSpec) -> dict[str, str]:
    """Expected dtype per scalar column, as Great Expectations' ``type_`` names.

    ``Timestamp`` is pandas' tz-aware timestamp (a naive one does not match it).
    """
    kinds: dict[str, str] = {}
    if spec.kind == "forecast":
        kinds[spec.timestamp] = "Timestamp"
        for name in (*spec.features, spec.target):
            if name:
                kinds[name] = "float64"
    for name in (spec.date_column, spec.task_column, spec.split_column):
        if name:
            kinds[name] = "str"
    for name in (spec.id_column, spec.label):
        if name:
            kinds[name] = "int64"
    kinds.update(spec.dtypes)
    return {name: kind for name, kind in kinds.items() if name not in array_columns(spec)}


def step(spec: DatasetSpec) -> pd.Timedelta:
    """The time between two rows of a forecast data set."""
    return pd.Timedelta(spec.frequency)


def day_start(spec: DatasetSpec, day: dt.date) -> pd.Timestamp:
    """Local midnight of ``day`` in the data set's zone, as a UTC timestamp."""
    return pd.Timestamp(day).tz_localize(spec.timezone or "UTC").tz_convert("UTC")


def day_rows(spec: DatasetSpec, day: dt.date) -> int:
    """How many rows a complete ``day`` has: 24 h over the frequency, daylight saving included."""
    length = day_start(spec, day + dt.timedelta(days=1)) - day_start(spec, day)
    return int(length // step(spec))


def local_dates(spec: DatasetSpec, timestamps: pd.Series) -> pd.Series:
    """The local calendar day (``YYYY-MM-DD``) of each UTC timestamp; missing ones stay missing."""
    local = timestamps.dt.tz_convert(spec.timezone or "UTC")
    return local.dt.strftime("%Y-%m-%d").astype("str")


def grid_offsets(spec: DatasetSpec, timestamps: pd.Series) -> pd.Series:
    """Seconds each timestamp lies past the data set's grid (local midnight + whole steps): 0 on it.

    A frequency that does not divide a day has no daily grid: every offset is then 0.

    >>> from lifelong.config import DatasetSpec
    >>> spec = DatasetSpec(name="x", kind="forecast", loader="file:x", timestamp="t",
    ...                    features=("y",), target="y", frequency="30min", timezone="Australia/Melbourne")
    >>> ts = pd.Series(pd.to_datetime(["2012-01-01 13:00", "2012-01-01 13:37"], utc=True))
    >>> grid_offsets(spec, ts).tolist()
    [0.0, 420.0]
    """
    every = step(spec).total_seconds()
    if every <= 0 or 86400 % every:
        return pd.Series(0.0, index=timestamps.index)
    local = timestamps.dt.tz_convert(spec.timezone or "UTC")
    since_midnight = (local - local.dt.normalize()).dt.total_seconds()
    return since_midnight % every


def row_dates(spec: DatasetSpec, frame: pd.DataFrame) -> pd.Series:
    """The day each row belongs to: the date column when declared, else derived from the timestamp."""
    if spec.date_column:
        return frame[spec.date_column].astype("str")
    return local_dates(spec, frame[spec.timestamp])


# ----------------------------------------------------------------------------- conform


def _parse_timestamps(values: pd.Series, zone: str | None) -> pd.Series:
    """Parse to tz-aware UTC; naive values are local time in ``zone``; unparseable become NaT."""
    parsed = values
    if not isinstance(values.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(values):
        try:
            parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
        except (ValueError, TypeError):  # mixed offsets
            parsed = pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
    if not isinstance(parsed.dtype, pd.DatetimeTZDtype):
        try:
            parsed = parsed.dt.tz_localize(zone or "UTC", ambiguous="infer", nonexistent="NaT")
        except (ValueError, TypeError):
            parsed = parsed.dt.tz_localize(zone or "UTC", ambiguous="NaT", nonexistent="NaT")
    return parsed.dt.tz_convert("UTC").dt.as_unit(TIMESTAMP_UNIT)


def _as_signal(value: object) -> object:
    """A float32 array when ``value`` is array-like of numbers, else ``value`` unchanged."""
    if isinstance(value, np.ndarray | list | tuple):
        try:
            return np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            return value
    return value


def _collapse_wide(frame: pd.DataFrame, feature: str) -> pd.DataFrame:
    """Columns ``<feature>_0 .. <feature>_N`` (a wide CSV) become one array column."""
    prefix = f"{feature}_"
    wide = [c for c in frame.columns if isinstance(c, str) and c.startswith(prefix) and c[len(prefix) :].isdigit()]
    if not wide:
        return frame
    wide.sort(key=lambda c: int(c[len(prefix) :]))
    values = frame[wide].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float32)
    out = frame.drop(columns=wide)
    out[feature] = list(values)
    return out


def conform(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Lossless coercions of a frame read from a file, before validation.

    Timestamps are parsed to UTC, integer columns declared float become float, integral float
    columns declared int become int, signals become float32 arrays. Nothing is dropped and
    nothing invalid is repaired: validation judges what is left.
    """
    frame = frame.copy()
    for feature in array_columns(spec):
        if feature not in frame.columns:
            frame = _collapse_wide(frame, feature)
        if feature in frame.columns:
            frame[feature] = frame[feature].map(_as_signal).astype(object)
    kinds = dtypes(spec)
    for name, kind in kinds.items():
        if name not in frame.columns:
            continue
        values = frame[name]
        if kind == "Timestamp":
            frame[name] = _parse_timestamps(values, spec.timezone)
        elif kind == "str" and pd.api.types.is_datetime64_any_dtype(values):
            frame[name] = values.dt.strftime("%Y-%m-%d").astype("str")
        elif kind == "float64" and pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
            frame[name] = values.astype("float64")
        elif kind == "int64" and pd.api.types.is_float_dtype(values):
            finite = values.notna().all() and np.isfinite(values).all()
            if finite and (values == values.round()).all():
                frame[name] = values.astype("int64")
    return frame


def canonical(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """A validated frame as stored: declared columns in order, rows sorted, a fresh index."""
    frame = frame[columns(spec)]
    order = [spec.timestamp] if spec.kind == "forecast" else [c for c in (spec.task_column, spec.id_column) if c]
    if order:
        frame = frame.sort_values(order, kind="stable")
    return frame.reset_index(drop=True)
