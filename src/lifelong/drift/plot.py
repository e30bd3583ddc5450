"""The drift report as a picture: per feature, the two histograms and the two ECDFs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lifelong.drift.report import DriftReport, FeatureDrift
from lifelong.drift.rows import column_values, finite_values

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _statistic(f: FeatureDrift) -> str:
    if f.test == "ks":
        return f"KS D={f.statistic:.3f} p={f.p_value:.2g}"
    if f.test == "psi":
        return f"PSI={f.statistic:.3f}"
    if f.p_value is None:
        return "not tested"
    ratio = "" if f.ratio is None else f" ({f.ratio:.1f}x)"
    return f"day distance {f.statistic:.3g}{ratio} p={f.p_value:.2g}"


def plot(report: DriftReport, reference: pd.DataFrame, current: pd.DataFrame) -> Figure:
    """One row per feature: overlaid histograms and the two ECDFs, titled with the verdict.

    Built on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state), so it
    is safe in a worker process and needs no ``plt.close``. Fixed margins rather than a layout
    engine: constrained layout measures every label first, a third of the plot's time.
    """
    from matplotlib.figure import Figure

    rows = max(1, len(report.features))
    height = 2.6 * rows + 0.6  # inches; the margins below leave room for the suptitle, titles and tick labels
    fig = Figure(figsize=(10, height))
    margins = {"left": 0.08, "right": 0.98, "top": 1 - 0.6 / height, "bottom": 0.35 / height}
    axes = fig.subplots(rows, 2, squeeze=False, gridspec_kw={**margins, "hspace": 0.4, "wspace": 0.18})
    title = f"drift: {report.decision}"
    if report.error is not None:
        title += f"  |  champion error {report.error['value']:.4g} (z = {report.error['z']:.1f})"
    fig.suptitle(title)
    if not report.features:
        axes[0, 0].text(0.5, 0.5, "no features tested", ha="center", va="center")
    for row, f in zip(axes, report.features, strict=False):
        ref = finite_values(column_values(reference, f.feature, "reference"), f.feature, "reference")
        cur = finite_values(column_values(current, f.feature, "current"), f.feature, "current")
        lo, hi = float(min(ref.min(), cur.min())), float(max(ref.max(), cur.max()))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        row[0].hist(ref, bins=edges, density=True, alpha=0.5, label=f"reference (n={len(ref)})")
        row[0].hist(cur, bins=edges, density=True, alpha=0.5, label=f"current (n={len(cur)})")
        row[0].legend(fontsize="small")
        for values, label in ((ref, "reference"), (cur, "current")):
            xs = np.sort(values)
            row[1].step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=label)
        row[1].set_ylim(0, 1)
        verdict = "severe" if f.severe else "drift" if f.drifted else "ok"
        stat = _statistic(f)
        row[0].set_title(f"{f.feature}: {stat}, PSI={f.psi:.2f} -> {verdict}", fontsize="medium")
        row[1].set_title(f"{f.feature}: ECDF", fontsize="medium")
    return fig
