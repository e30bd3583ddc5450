"""The four plots render to PNG without pyplot (no display, no global figure state)."""

from __future__ import annotations

import io

import numpy as np
import torch

from lifelong import plots


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


def test_every_plot_renders_a_png() -> None:
    figures = [
        plots.loss_curves([{"epoch": 0, "train_loss": 1.0, "val_loss": 1.3}, {"epoch": 1, "train_loss": 0.4}]),
        plots.forecast_vs_actual(np.sin(np.arange(48) / 5), np.sin(np.arange(48) / 5 + 0.2), title="day 2024-01-02"),
        plots.accuracy_matrix([[0.9], [0.7, 0.85], [0.65, 0.8, 0.9]], ["M1", "M2", "M3"]),
        plots.fisher_magnitude({"conv.weight": torch.rand(4, 1, 3), "conv.bias": torch.zeros(4)}),
    ]
    for fig in figures:
        assert _png(fig).startswith(b"\x89PNG")


def test_plots_carry_their_numbers() -> None:
    forecast = plots.forecast_vs_actual([1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
    assert forecast.axes[0].get_title() == "forecast vs actual (MAE 0.5)"
    heat = plots.accuracy_matrix([[0.9], [0.7, 0.85]], ["A", "B"])
    assert sorted(t.get_text() for t in heat.axes[0].texts) == ["0.70", "0.85", "0.90"]
    fisher = plots.fisher_magnitude({"a": torch.full((2,), 3.0), "b": torch.full((3,), 0.5)})
    assert [bar.get_width() for bar in fisher.axes[0].patches] == [3.0, 0.5]
