"""pandas to torch: the only bridge between ``lifelong.data`` and ``lifelong.learn``.

*Forecast*: a sample is the last ``arch.length`` steps of every feature (channels first)
and the next ``arch.out_dim`` steps of the target, both normalised with statistics fitted
once (:func:`fit_stats`, JSON, saved with the model so a later day is scaled the same way).
Windows never span a gap in the timestamps (a missing day), so every sample is real.
With ``targets_in=day`` only the windows whose *last* target step falls on that local day
are kept: each new day yields one sample per row of the day (48; 46 or 50 on daylight-saving days).

*Day-ahead* (the ``cnn_dayahead`` models): :func:`forecast_samples` gives a training sample per
forecast origin, :func:`day_ahead_sample` the forecast of local day D issued at its midnight (from
the data up to the end of D-1, targets D's 46/48/50 rows), :func:`day_ahead_naive` the persistence,
daily and weekly seasonal naive forecasts of the same targets; the layout of a sample is described
above :data:`DAYAHEAD_TYPES`. The rolling windows of :func:`forecast_windows` stay for the
``cnn_forecaster`` (a secondary metric).

*Classify*: one sample per recording, ``(channels = features, length)``; the class index is
the label's position in the block's ``labels``.

>>> import pandas as pd
>>> from lifelong.config import ArchitectureSpec, DatasetSpec
>>> spec = DatasetSpec(name="toy", kind="forecast", loader="toy.csv", timestamp="t",
...                    features=("y",), target="y", frequency="1h")
>>> frame = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=30, freq="1h", tz="UTC"),
...                       "y": [float(i) for i in range(30)]})
>>> stats = fit_stats(frame, spec)
>>> x, y = forecast_windows(frame, spec, ArchitectureSpec(type="cnn_forecaster", length=4, out_dim=2), stats)
>>> tuple(x.shape), tuple(y.shape)
((25, 1, 4), (25, 2))
>>> denormalise_target(y[0], stats).round().tolist()  # the two steps after 0, 1, 2, 3
[4.0, 5.0]
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

from lifelong.config import ArchitectureSpec, ConfigError, DatasetSpec, parse_duration
from lifelong.data import features, schema
from lifelong.errors import LifelongError


def _forecast_columns(spec: DatasetSpec) -> list[str]:
    return list(dict.fromkeys([*spec.features, *([spec.target] if spec.target else [])]))


def fit_stats(frame: pd.DataFrame, spec: DatasetSpec) -> dict:
    """Mean and standard deviation of every feature and the target (JSON-able)."""
    names = _forecast_columns(spec) if spec.kind == "forecast" else []
    columns = {}
    for name in names:
        values = frame[name].to_numpy(dtype=np.float64)
        mean = float(np.nanmean(values)) if values.size else 0.0
        std = float(np.nanstd(values)) if values.size else 1.0
        columns[name] = {"mean": mean if np.isfinite(mean) else 0.0, "std": std if std > 1e-8 else 1.0}
    return {"columns": columns, "target": spec.target, "rows": len(frame)}


def _normalised(frame: pd.DataFrame, names: list[str], stats: dict) -> np.ndarray:
    try:
        scale = [stats["columns"][n] for n in names]
    except KeyError as exc:
        raise ConfigError(f"normalisation stats have no column {exc.args[0]!r} (fitted on another data set?)") from None
    values = frame[names].to_numpy(dtype=np.float64)
    mean = np.array([s["mean"] for s in scale])
    std = np.array([s["std"] for s in scale])
    return ((values - mean) / std).astype(np.float32)


def _segments(timestamps: pd.Series, step: pd.Timedelta) -> list[tuple[int, int]]:
    """``[start, end)`` row ranges without a gap."""
    if timestamps.empty:
        return []
    breaks = np.flatnonzero(timestamps.diff().iloc[1:].to_numpy() != step.to_timedelta64()) + 1
    edges = [0, *breaks.tolist(), len(timestamps)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def forecast_windows(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    arch: ArchitectureSpec,
    stats: dict,
    *,
    targets_in: dt.date | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x``: (N, len(features), arch.length); ``y``: (N, arch.out_dim); both normalised, float32."""
    if arch.in_channels != len(spec.features):
        raise ConfigError(
            f"architecture in_channels={arch.in_channels} but data set {spec.name} has {len(spec.features)} features"
        )
    if not spec.target:
        raise ConfigError(f"datasets.{spec.name}.target: a forecast data set needs a target")
    frame = frame.sort_values(spec.timestamp, kind="stable").reset_index(drop=True)
    length, horizon = arch.length, arch.out_dim
    x_all = _normalised(frame, list(spec.features), stats)
    y_all = _normalised(frame, [spec.target], stats)[:, 0]
    dates = schema.row_dates(spec, frame).to_numpy() if targets_in is not None else None
    xs, ys = [], []
    for start, end in _segments(frame[spec.timestamp], schema.step(spec)):
        count = end - start - length - horizon + 1
        if count <= 0:
            continue
        index = np.arange(count)
        if dates is not None:
            last = start + index + length + horizon - 1
            index = index[dates[last] == targets_in.isoformat()]
        xs.append(sliding_window_view(x_all[start:end], length, axis=0)[index])
        ys.append(sliding_window_view(y_all[start + length : end], horizon)[index])
    if not xs:
        return torch.zeros(0, len(spec.features), length), torch.zeros(0, horizon)
    x = torch.from_numpy(np.ascontiguousarray(np.concatenate(xs)))
    y = torch.from_numpy(np.ascontiguousarray(np.concatenate(ys)))
    return x, y


def target_scale(stats: dict) -> tuple[float, float]:
    """``(mean, std)`` the target was normalised with."""
    scale = stats["columns"][stats["target"]]
    return float(scale["mean"]), float(scale["std"])


def denormalise_target(y: torch.Tensor, stats: dict) -> torch.Tensor:
    """Normalised target values back in the data's units."""
    mean, std = target_scale(stats)
    return y * std + mean


def classify_arrays(
    frame: pd.DataFrame, spec: DatasetSpec, arch: ArchitectureSpec, *, split: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x``: (N, len(features), arch.length) float32; ``y``: (N,) class indices (int64)."""
    if arch.in_channels != len(spec.features):
        raise ConfigError(
            f"architecture in_channels={arch.in_channels} but data set {spec.name} has {len(spec.features)} features"
        )
    if arch.out_dim != len(spec.labels):
        raise ConfigError(f"architecture out_dim={arch.out_dim} but data set {spec.name} has {len(spec.labels)} labels")
    if split is not None:
        if not spec.split_column:
            raise ConfigError(f"datasets.{spec.name}.split_column: needed to select split {split!r}")
        frame = frame[frame[spec.split_column] == split]
    if frame.empty:
        return torch.zeros(0, len(spec.features), arch.length), torch.zeros(0, dtype=torch.long)
    index = {label: i for i, label in enumerate(spec.labels)}
    y = np.array([index[int(v)] for v in frame[spec.label]], dtype=np.int64)
    return classify_input(frame, spec, arch), torch.from_numpy(y)


def classify_input(frame: pd.DataFrame, spec: DatasetSpec, arch: ArchitectureSpec) -> torch.Tensor:
    """``x``: (N, len(features), arch.length) float32 from the recordings of ``frame`` (one signal a cell)."""
    x = np.stack([np.stack([np.asarray(v, dtype=np.float32) for v in frame[name]]) for name in spec.features], axis=1)
    if x.shape[2] != arch.length:
        raise ConfigError(f"architecture length={arch.length} but {spec.name} signals have {x.shape[2]} samples")
    return torch.from_numpy(np.ascontiguousarray(x))


# --------------------------------------------------------------------------- day-ahead samples
#
# A day-ahead sample is ONE tensor ``x: (C, L)`` with ``L = arch.length``: the first
# ``P = length - out_dim`` positions are the history up to the forecast origin, the last
# ``H = out_dim`` positions are the steps it forecasts. Channels (``dayahead_channels``):
#
#   0            the target; 0 at the forecast steps (unknown)
#   1 .. n       the lags of the target (lifelong.data.features), the seasonal-naive base first:
#                the 7d lag when declared, else the longest; at a forecast step a lag that falls
#                after the origin (a 1d lag 49 steps ahead) is read whole periods earlier (2d):
#                the latest value at that clock time known at the origin
#   4 calendar   sin/cos of the local time of day and day of week
#   covariates   the other features; at the forecast steps only the ``known_future`` ones, 0 otherwise
#   is_target    0 on the history, 1 on the forecast steps
#
# Everything is normalised with ``stats`` (lags with the target's), calendar and flag as they are.

DAYAHEAD_TYPES = ("cnn_dayahead", "cnn_dayahead_residual")


class NoSample(LifelongError, ValueError):
    """A day-ahead sample (or a naive forecast) cannot be built: the message says which rows are missing."""


def _dayahead_lags(spec: DatasetSpec) -> list[features.Lag]:
    declared = features.lags(spec)
    if not declared:
        return []
    weekly = [lag for lag in declared if lag.duration == dt.timedelta(days=7)]
    base = weekly[0] if weekly else max(declared, key=lambda lag: lag.duration)
    return [base, *(lag for lag in declared if lag is not base)]


def dayahead_channels(spec: DatasetSpec) -> list[str]:
    """The channel names of a day-ahead sample, in order (their count is ``architecture.in_channels``).

    >>> from lifelong.config import DatasetSpec
    >>> spec = DatasetSpec(name="csv", kind="forecast", loader="x.csv", features=("load",), target="load")
    >>> dayahead_channels(spec)
    ['load', 'lag_7d', 'lag_1d', 'tod_sin', 'tod_cos', 'dow_sin', 'dow_cos', 'is_target']
    """
    lag_names = [lag.name for lag in _dayahead_lags(spec)]
    return [str(spec.target), *lag_names, *features.CALENDAR, *features.covariates(spec), "is_target"]


def horizon(spec: DatasetSpec) -> int:
    """Rows of the longest local day: the ``out_dim`` a day-ahead model needs (50 for half-hours with DST)."""
    if spec.rows_per_day:
        return max(spec.rows_per_day)
    per_day = int(dt.timedelta(days=1) / parse_duration(spec.frequency, f"datasets.{spec.name}.frequency"))
    return per_day + (per_day // 24 if spec.timezone else 0)


def history_days(spec: DatasetSpec, arch: ArchitectureSpec) -> int:
    """Local days before day D that the samples of D (and its naive forecasts) read, rounded up."""
    per_day = max(spec.rows_per_day or (horizon(spec),))
    longest = max([lag.duration for lag in features.lags(spec)] + [dt.timedelta(days=7)])
    return -(-(arch.length + 2) // per_day) + -(-longest // dt.timedelta(days=1)) + 1


def _check_dayahead(spec: DatasetSpec, arch: ArchitectureSpec) -> None:
    if arch.type not in DAYAHEAD_TYPES:
        raise ConfigError(f"architecture.type: {arch.type!r} is not a day-ahead model ({', '.join(DAYAHEAD_TYPES)})")
    if not spec.target:
        raise ConfigError(f"datasets.{spec.name}.target: a forecast data set needs a target")
    channels = dayahead_channels(spec)
    if arch.in_channels != len(channels):
        raise ConfigError(
            f"architecture.in_channels: {arch.in_channels}, but day-ahead samples of {spec.name} have "
            f"{len(channels)} channels ({', '.join(channels)})"
        )
    if arch.out_dim < horizon(spec):
        longest = horizon(spec)
        raise ConfigError(f"architecture.out_dim: {arch.out_dim} is shorter than the longest day ({longest} rows)")
    if arch.length <= arch.out_dim:
        raise ConfigError(f"architecture.length: {arch.length} leaves no history before the {arch.out_dim} steps")
    if arch.type == "cnn_dayahead_residual" and not spec.lags:
        raise ConfigError(f"datasets.{spec.name}.lags: cnn_dayahead_residual corrects a lag; declare one")


@dataclass(frozen=True)
class _Series:
    """A sorted frame as arrays: timestamps, target and covariates normalised, row dates."""

    stamps: pd.DatetimeIndex
    target: np.ndarray  # (rows,) normalised
    covariates: np.ndarray  # (rows, n_cov) normalised
    calendar: np.ndarray  # (rows, 4)


def _series(frame: pd.DataFrame, spec: DatasetSpec, stats: dict) -> _Series:
    frame = frame.sort_values(spec.timestamp, kind="stable")
    covs = features.covariates(spec)
    stamps = pd.DatetimeIndex(frame[spec.timestamp])
    return _Series(
        stamps=stamps,
        target=_normalised(frame, [str(spec.target)], stats)[:, 0].astype(np.float64),
        covariates=_normalised(frame, covs, stats).astype(np.float64) if covs else np.zeros((len(frame), 0)),
        calendar=features.calendar(stamps, spec.timezone),
    )


def _lags_at(
    s: _Series, lag: features.Lag, zone: str | None, targets: pd.DatetimeIndex, index: np.ndarray, origins: np.ndarray
) -> np.ndarray:
    """``(n, H)``: the lag of ``targets[index]`` known at ``origins`` (ns); NaN when the row is not stored."""
    out = np.full(index.shape, np.nan)
    decided = np.zeros(index.shape, dtype=bool)
    for times in range(1, index.shape[1] // lag.steps + 3):
        when = features.lagged_times(targets, lag, zone, times)
        rows = pd.Index(s.stamps).get_indexer(when)[index]
        use = ~decided & (when.asi8[index] <= origins[:, None])
        out[use] = np.where(rows[use] >= 0, s.target[rows[use]], np.nan)
        decided |= use
    return out


def _pack(
    s: _Series,
    spec: DatasetSpec,
    arch: ArchitectureSpec,
    history: np.ndarray,
    targets: pd.DatetimeIndex,
    index: np.ndarray,
    known: np.ndarray,
) -> np.ndarray:
    """``x: (n, C, L)`` from history rows ``(n, P)``, target instants ``targets[index]`` ``(n, H)`` and the
    known-future covariates at them ``(n, H, n_cov)`` (normalised; unknown columns are zeroed here)."""
    lag_list = _dayahead_lags(spec)
    covs = features.covariates(spec)
    n, p = history.shape
    h = index.shape[1]
    x = np.zeros((n, len(dayahead_channels(spec)), p + h))
    x[:, 0, :p] = s.target[history]
    origins = s.stamps.asi8[history[:, -1]]
    for c, lag in enumerate(lag_list, start=1):
        rows = features.lag_rows(s.stamps, s.stamps, lag, spec.timezone)[history]
        x[:, c, :p] = np.where(rows >= 0, s.target[rows], np.nan)
        x[:, c, p:] = _lags_at(s, lag, spec.timezone, targets, index, origins)
    c = 1 + len(lag_list)
    x[:, c : c + 4, :p] = s.calendar[history].transpose(0, 2, 1)
    x[:, c : c + 4, p:] = features.calendar(targets, spec.timezone)[index].transpose(0, 2, 1)
    c += 4
    for k, name in enumerate(covs):
        x[:, c + k, :p] = s.covariates[history, k]
        if name in spec.known_future:
            x[:, c + k, p:] = known[:, :, k]
    x[:, -1, p:] = 1.0
    return x


def forecast_samples(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    arch: ArchitectureSpec,
    stats: dict,
    *,
    targets_in: dt.date | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Day-ahead training samples from every forecast origin: ``x (N, C, length)``, ``y (N, out_dim)``.

    An origin is any stored row with ``length - out_dim`` gap-free rows up to it and ``out_dim``
    after it; a sample that would need a row that is not stored (a lag into a missing day) is
    dropped. With ``targets_in=day``: the samples whose last target step falls on that local day
    (one per row of the day, as :func:`forecast_windows`).
    """
    _check_dayahead(spec, arch)
    frame = frame.sort_values(spec.timestamp, kind="stable").reset_index(drop=True)
    s = _series(frame, spec, stats)
    p, h = arch.length - arch.out_dim, arch.out_dim
    dates = schema.row_dates(spec, frame).to_numpy() if targets_in is not None else None
    origins = []
    for start, end in _segments(frame[spec.timestamp], schema.step(spec)):
        first, last = start + p - 1, end - 1 - h
        if last < first:
            continue
        index = np.arange(first, last + 1)
        if dates is not None:
            index = index[dates[index + h] == targets_in.isoformat()]
        origins.append(index)
    index = np.concatenate(origins) if origins else np.zeros(0, dtype=np.int64)
    if not len(index):
        return torch.zeros(0, arch.in_channels, arch.length), torch.zeros(0, h)
    history = index[:, None] + np.arange(-p + 1, 1)[None, :]
    future = index[:, None] + np.arange(1, h + 1)[None, :]
    x = _pack(s, spec, arch, history, s.stamps, future, s.covariates[future])
    y = s.target[future]
    keep = np.isfinite(x).all(axis=(1, 2)) & np.isfinite(y).all(axis=1)
    return torch.from_numpy(x[keep].astype(np.float32)), torch.from_numpy(y[keep].astype(np.float32))


def _day_targets(spec: DatasetSpec, day: dt.date, h: int) -> tuple[pd.DatetimeIndex, int]:
    start = schema.day_start(spec, day)
    return pd.DatetimeIndex(start + schema.step(spec) * np.arange(h)), schema.day_rows(spec, day)


def day_ahead_input(
    frame: pd.DataFrame, spec: DatasetSpec, arch: ArchitectureSpec, stats: dict, day: dt.date
) -> tuple[torch.Tensor, int]:
    """The forecast for local ``day`` as issued at its midnight: ``x (1, C, length)`` and the day's rows.

    Reads the ``length - out_dim`` rows up to the end of the day before, the lags, and the
    ``known_future`` columns of the day's rows (the only values of ``day`` it reads). Output
    positions past the day's rows (a 48-row day of a 50-step model) are padding: ignore them.
    Raises :class:`NoSample` naming what is missing.
    """
    x, _, steps = _day_ahead(frame, spec, arch, stats, day, with_target=False)
    return x, steps


def day_ahead_sample(
    frame: pd.DataFrame, spec: DatasetSpec, arch: ArchitectureSpec, stats: dict, day: dt.date
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`day_ahead_input` and the day's actual values: ``x (1, C, length)``, ``y (1, out_dim)``,
    ``n_steps``. Only ``y[0, :n_steps]`` are the day's; score those (the rest are 0)."""
    return _day_ahead(frame, spec, arch, stats, day, with_target=True)


def _day_ahead(
    frame: pd.DataFrame, spec: DatasetSpec, arch: ArchitectureSpec, stats: dict, day: dt.date, *, with_target: bool
) -> tuple[torch.Tensor, torch.Tensor, int]:
    _check_dayahead(spec, arch)
    s = _series(frame, spec, stats)
    p, h = arch.length - arch.out_dim, arch.out_dim
    targets, steps = _day_targets(spec, day, h)
    wanted = pd.DatetimeIndex(targets[0] - schema.step(spec) * np.arange(p, 0, -1))
    history = pd.Index(s.stamps).get_indexer(wanted)
    if (history < 0).any():
        raise NoSample(
            f"{spec.name}: the forecast for {day} needs the {p} rows before it, from {wanted[0]}; "
            f"{int((history < 0).sum())} are not stored"
        )
    rows = pd.Index(s.stamps).get_indexer(targets[:steps])
    known = np.zeros((h, len(features.covariates(spec))))
    needed = [k for k, name in enumerate(features.covariates(spec)) if name in spec.known_future]
    if needed or with_target:
        if (rows < 0).any():
            what = "its target" if with_target else f"its known-future columns ({', '.join(spec.known_future)})"
            raise NoSample(f"{spec.name}: {int((rows < 0).sum())} of the {steps} rows of {day} are not stored ({what})")
        known[:steps] = s.covariates[rows]
        known[steps:] = known[steps - 1]  # padding past the day's end: its last known values
    x = _pack(s, spec, arch, history[None, :], targets, np.arange(h)[None, :], known[None])
    if not np.isfinite(x).all():
        raise NoSample(f"{spec.name}: the forecast for {day} needs a lag or a covariate that is not stored")
    y = np.zeros((1, h))
    if with_target:
        y[0, :steps] = s.target[rows]
        if not np.isfinite(y).all():
            raise NoSample(f"{spec.name}: the target of {day} has missing values")
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32)), steps


def day_ahead_naive(frame: pd.DataFrame, spec: DatasetSpec, day: dt.date) -> dict[str, torch.Tensor]:
    """The naive forecasts of local ``day``'s rows, in the data's units, on the targets
    :func:`day_ahead_sample` scores: ``persistence`` (the last value of the day before),
    ``daily_naive`` (the same local clock time the day before), ``weekly_naive`` (a week before).

    Raises :class:`NoSample` when one of them reads a row that is not stored.
    """
    frame = frame.sort_values(spec.timestamp, kind="stable")
    stamps = pd.DatetimeIndex(frame[spec.timestamp])
    values = frame[str(spec.target)].to_numpy(dtype=np.float64)
    targets, steps = _day_targets(spec, day, schema.day_rows(spec, day))
    origin = pd.Index(stamps).get_indexer(pd.DatetimeIndex([targets[0] - schema.step(spec)]))[0]
    if origin < 0:
        raise NoSample(f"{spec.name}: persistence for {day} needs the last row of the day before")
    out = {"persistence": np.full(steps, values[origin])}
    for name, lag in (("daily_naive", features.daily(spec)), ("weekly_naive", features.weekly(spec))):
        rows = features.lag_rows(stamps, targets, lag, spec.timezone)
        if (rows < 0).any():
            raise NoSample(f"{spec.name}: {name} for {day} needs {lag.text} before its rows; not all are stored")
        out[name] = values[rows]
    return {k: torch.from_numpy(v) for k, v in out.items()}
