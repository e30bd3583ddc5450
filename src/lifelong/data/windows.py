"""pandas to torch: the only bridge between ``lifelong.data`` and ``lifelong.learn``.

*Forecast*: a sample is the last ``arch.length`` steps of every feature (channels first)
and the next ``arch.out_dim`` steps of the target, both normalised with statistics fitted
once (:func:`fit_stats`, JSON, saved with the model so a later day is scaled the same way).
Windows never span a gap in the timestamps (a missing day), so every sample is real.
With ``targets_in=day`` only the windows whose *last* target step falls on that local day
are kept: each new day yields one sample per row of the day (48; 46 or 50 on daylight-saving days).

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

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

from lifelong.config import ArchitectureSpec, ConfigError, DatasetSpec
from lifelong.data import schema


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
    x = np.stack([np.stack(frame[name].to_numpy()).astype(np.float32) for name in spec.features], axis=1)
    if x.shape[2] != arch.length:
        raise ConfigError(f"architecture length={arch.length} but {spec.name} signals have {x.shape[2]} samples")
    index = {label: i for i, label in enumerate(spec.labels)}
    y = np.array([index[int(v)] for v in frame[spec.label]], dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
