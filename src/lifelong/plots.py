"""The PNG plots logged with every candidate: loss curves, forecast vs actual, accuracy matrix, Fisher.

Each function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (so no
global figure registry to leak from a long-lived worker, and no GUI backend): the Agg
canvas renders it, ``mlflow.log_figure`` or ``fig.savefig`` writes it.

>>> fig = loss_curves([{"epoch": 0, "train_loss": 1.0, "val_loss": 1.2}, {"epoch": 1, "train_loss": 0.5}])
>>> [line.get_label() for line in fig.axes[0].lines]
['train_loss', 'val_loss']
>>> accuracy_matrix([[0.9], [0.7, 0.8]], ["A", "B"]).axes[0].get_title()
'accuracy matrix'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(width: float = 6.4, height: float = 3.6) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def loss_curves(epochs: Sequence[Mapping[str, Any]], title: str = "loss per epoch") -> Figure:
    """Every ``*loss`` key of the per-epoch records against the epoch (``epoch`` key or position)."""
    fig = _figure()
    ax = fig.add_subplot()
    keys = sorted({k for rec in epochs for k in rec if k.endswith("loss")})
    for key in keys:
        points = [
            (rec.get("epoch", i), float(rec[key]))
            for i, rec in enumerate(epochs)
            if isinstance(rec.get(key), int | float) and math.isfinite(rec[key])
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=key)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    if keys:
        ax.legend()
    ax.grid(alpha=0.3)
    return fig


def forecast_vs_actual(
    actual: Sequence[float] | np.ndarray,
    forecast: Sequence[float] | np.ndarray,
    index: Sequence[Any] | None = None,
    title: str = "forecast vs actual",
) -> Figure:
    """Actual and forecast values over the evaluation window, with the absolute error shaded."""
    actual, forecast = np.asarray(actual, dtype=float).ravel(), np.asarray(forecast, dtype=float).ravel()
    xs = list(index) if index is not None else list(range(len(actual)))
    fig = _figure(8.0, 3.6)
    ax = fig.add_subplot()
    ax.plot(xs, actual, label="actual", color="black", linewidth=1.5)
    ax.plot(xs, forecast, label="forecast", color="tab:orange", linewidth=1.5)
    ax.fill_between(xs, actual, forecast, color="tab:orange", alpha=0.2)
    mae = float(np.mean(np.abs(actual - forecast))) if len(actual) else float("nan")
    ax.set(xlabel="step" if index is None else "", ylabel="value", title=f"{title} (MAE {mae:.4g})")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def daily_errors(history: Sequence[Mapping[str, Any]], title: str = "day-ahead MAE per day") -> Figure:
    """The model's daily MAE beside the weekly seasonal naive's, from a state's update history."""
    days = [h for h in history if h.get("date") and h.get("mae") is not None]
    fig = _figure(8.0, 3.6)
    ax = fig.add_subplot()
    xs = [np.datetime64(h["date"]) for h in days]
    ax.plot(xs, [h["mae"] for h in days], label="model", color="tab:orange", linewidth=1.5)
    naive = [(x, h["weekly_naive_mae"]) for x, h in zip(xs, days, strict=True) if h.get("weekly_naive_mae") is not None]
    if naive:
        ax.plot([x for x, _ in naive], [v for _, v in naive], label="weekly naive", color="grey", linewidth=1.0)
    ax.set(ylabel="MAE", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return fig


def accuracy_matrix(matrix: Sequence[Sequence[float]], tasks: Sequence[str], *, metric: str = "accuracy") -> Figure:
    """Heatmap of ``matrix[i][j]``: ``metric`` on task j after training on task i (ragged rows allowed).

    ``accuracy`` is drawn on [0, 1]; an error (``mae``) on its own range, darker for lower (better).
    """
    n = max(len(tasks), max((len(r) for r in matrix), default=0))
    grid = np.full((len(matrix), n), np.nan)
    for i, row in enumerate(matrix):
        grid[i, : len(row)] = row
    names = list(tasks) + [f"task {j}" for j in range(len(tasks), n)]
    fig = _figure(1.2 + 0.9 * n, 1.0 + 0.7 * max(len(matrix), 1))
    ax = fig.add_subplot()
    if metric == "accuracy":
        low, high, cmap, fmt = 0.0, 1.0, "viridis", "{:.2f}"
    else:
        finite = grid[np.isfinite(grid)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        high = high if high > low else low + 1.0
        cmap, fmt = "viridis_r", "{:.0f}"
    image = ax.imshow(grid, vmin=low, vmax=high, cmap=cmap)
    middle = (low + high) / 2
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if not np.isnan(grid[i, j]):
                dark = grid[i, j] < middle if metric == "accuracy" else grid[i, j] > middle
                ax.text(j, i, fmt.format(grid[i, j]), ha="center", va="center", color="white" if dark else "k")
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(len(matrix)), names[: len(matrix)])
    ax.set(xlabel="tested on", ylabel="after training on")
    ax.set_title("accuracy matrix" if metric == "accuracy" else f"task matrix ({metric})")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def fisher_magnitude(fisher: Mapping[str, Any], title: str = "Fisher magnitude per layer") -> Figure:
    """Mean diagonal Fisher per parameter tensor (log scale): where EWC holds the weights hardest."""
    names = list(fisher)
    means = [float(np.abs(_numpy(fisher[n])).mean()) if _numpy(fisher[n]).size else 0.0 for n in names]
    fig = _figure(6.4, 1.2 + 0.35 * max(len(names), 1))
    ax = fig.add_subplot()
    positive = [m for m in means if m > 0]
    floor = min(positive) / 10 if positive else 0.0
    ax.barh(range(len(names)), [max(m, floor) for m in means], color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    if positive:
        ax.set_xscale("log")
        ax.set_xlim(left=floor)
    ax.set(xlabel="mean Fisher", title=title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _numpy(value: Any) -> np.ndarray:
    """A tensor or array as numpy, without importing torch here."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=float)


def published_forecast(
    actual_times: Sequence[Any], actual: Sequence[float], times: Sequence[Any], forecast: Sequence[float], title: str
) -> Figure:
    """A published day-ahead forecast after the last days of actuals, in the target's units."""
    fig = _figure(8.0, 3.6)
    ax = fig.add_subplot()
    ax.plot(list(actual_times), np.asarray(actual, dtype=float), label="actual", color="black", linewidth=1.2)
    ax.plot(list(times), np.asarray(forecast, dtype=float), label="forecast", color="tab:orange", linewidth=1.5)
    ax.set(ylabel="value", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
