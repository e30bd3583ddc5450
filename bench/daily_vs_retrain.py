"""Benchmark: the daily incremental update vs retraining from scratch, on vic_elec.

Three arms walk the same consecutive days from the model's ``start_date``, in memory, with
the learn/ and data/windows APIs (no Airflow, no MLflow: this measures the cost of learning):

* **incremental**: as ``pipeline.update`` does: a first model on the ``warmup_days`` (the
  normalisation stats are fitted once, there), then on each day D the champion is updated on
  day D-1 with replay (``fit`` with the model's spec), and scored on day D. The gate is not
  emulated: every candidate becomes the champion, so this is the learning alone.
* **retrain**: every ``retrain_every``-th day (and the last day), a fresh model of the same
  spec (same epochs, patience, validation split, i.e. the same stopping rule) is trained on
  all history to date, with stats refitted on it; between retrains the latest one is scored.
* **frozen**: trained once on the first ``frozen_days`` and never again.

Timed: ``LearnerState.new`` + ``fit`` for a retrain, ``make_strategy`` + ``fit`` for an update
(window building is excluded from both). MAE is next-day MAE in MW on the 48 windows whose
targets fall on day D; the comparison covers the days after the frozen model's training days,
where all three arms are out of sample.

Usage: ``python -m bench.daily_vs_retrain [--quick] [--days N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
import torch
from torch import Tensor

from bench.common import Report, Target, md_table, save_figure
from lifelong.config import DatasetSpec, ModelSpec, load_params
from lifelong.data import sources, windows
from lifelong.learn import metrics
from lifelong.learn.metrics import predict
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit

MODEL = "demand_forecaster"
Raw = dict[date, tuple[Tensor, Tensor]]  # day -> windows in the data's units


@dataclass(frozen=True)
class Config:
    days: int
    frozen_days: int
    retrain_every: int = 7


@dataclass
class Arms:
    """Per-day records of the three arms (index = day number from the start)."""

    update_s: dict[int, float] = field(default_factory=dict)
    retrain_s: dict[int, float] = field(default_factory=dict)
    retrain_samples: dict[int, int] = field(default_factory=dict)
    mae: dict[str, dict[int, float]] = field(default_factory=lambda: {"incremental": {}, "retrain": {}, "frozen": {}})


def raw_windows(frame: pd.DataFrame, ds: DatasetSpec, spec: ModelSpec, days: list[date]) -> Raw:
    """Un-normalised windows per day (identity stats), so each arm can scale them with its own stats."""
    identity = {"columns": {c: {"mean": 0.0, "std": 1.0} for c in ds.features}, "target": ds.target}
    per_day = max(ds.rows_per_day or (48,))
    back = -(-(spec.architecture.length + spec.architecture.out_dim) // per_day) + 1
    out: Raw = {}
    for day in days:
        lo, hi = str(day - timedelta(days=back)), str(day)
        part = frame[(frame[ds.date_column] >= lo) & (frame[ds.date_column] <= hi)]
        out[day] = windows.forecast_windows(part, ds, spec.architecture, identity, targets_in=day)
    return out


def scaled(raw: Raw, days: list[date], stats: dict, ds: DatasetSpec) -> tuple[Tensor, Tensor]:
    """The windows of ``days``, normalised with ``stats`` (as forecast_windows would with them)."""
    x = torch.cat([raw[d][0] for d in days])
    y = torch.cat([raw[d][1] for d in days])
    mean = torch.tensor([stats["columns"][c]["mean"] for c in ds.features]).view(1, -1, 1)
    std = torch.tensor([stats["columns"][c]["std"] for c in ds.features]).view(1, -1, 1)
    target = stats["columns"][ds.target]
    return ((x - mean) / std).float(), ((y - target["mean"]) / target["std"]).float()


def day_mae(state: LearnerState, x: Tensor, y: Tensor, stats: dict) -> float:
    pred = windows.denormalise_target(predict(state.model, x), stats)
    return metrics.mae(pred, windows.denormalise_target(y, stats))


def train_fresh(spec: ModelSpec, x: Tensor, y: Tensor) -> tuple[LearnerState, float]:
    started = time.perf_counter()
    state = LearnerState.new(spec.architecture, spec.train, spec.strategy)
    fit(state, x, y, train=spec.train, strategy=make_strategy(spec.strategy, task_kind(spec.architecture), state))
    return state, time.perf_counter() - started


def update(state: LearnerState, spec: ModelSpec, x: Tensor, y: Tensor) -> float:
    started = time.perf_counter()
    fit(state, x, y, train=spec.train, strategy=make_strategy(spec.strategy, task_kind(spec.architecture), state))
    return time.perf_counter() - started


def walk(cfg: Config, spec: ModelSpec, ds: DatasetSpec, frame: pd.DataFrame, progress: bool = False) -> Arms:
    """Run the three arms day by day; see the module docstring."""
    start = date.fromisoformat(spec.start_date)
    days = [start + timedelta(days=i) for i in range(cfg.days)]
    raw = raw_windows(frame, ds, spec, days)
    frame_of = {d: frame[frame[ds.date_column] == str(d)] for d in days}
    warm = spec.warmup_days
    arms = Arms()

    def stats_of(upto: int) -> dict:
        return windows.fit_stats(pd.concat([frame_of[d] for d in days[:upto]]), ds)

    inc_stats = stats_of(warm)
    inc, _ = train_fresh(spec, *scaled(raw, days[:warm], inc_stats, ds))
    frozen_stats = stats_of(cfg.frozen_days)
    frozen, _ = train_fresh(spec, *scaled(raw, days[: cfg.frozen_days], frozen_stats, ds))
    retrained, re_stats = inc, inc_stats
    for k in range(warm, cfg.days):
        today = days[k]
        if k > warm:  # the champion learns yesterday, then is judged on today
            arms.update_s[k] = update(inc, spec, *scaled(raw, [days[k - 1]], inc_stats, ds))
        arms.mae["incremental"][k] = day_mae(inc, *scaled(raw, [today], inc_stats, ds), inc_stats)
        if (k - warm) % cfg.retrain_every == 0 or k == cfg.days - 1:
            re_stats = stats_of(k)
            x, y = scaled(raw, days[:k], re_stats, ds)
            retrained, arms.retrain_s[k] = train_fresh(spec, x, y)
            arms.retrain_samples[k] = len(x)
        arms.mae["retrain"][k] = day_mae(retrained, *scaled(raw, [today], re_stats, ds), re_stats)
        if k >= cfg.frozen_days:
            arms.mae["frozen"][k] = day_mae(frozen, *scaled(raw, [today], frozen_stats, ds), frozen_stats)
        if progress and k % 30 == 0:
            print(f"  day {k + 1}/{cfg.days}", file=sys.stderr, flush=True)
    return arms


def _mean(values: dict[int, float], keys: list[int]) -> float:
    return statistics.fmean(values[k] for k in keys)


def _update_median(arms: Arms, upto: int) -> float:
    """Median wall time of the 7 latest daily updates up to day ``upto`` (one update is a few ms: noisy)."""
    return statistics.median([arms.update_s[k] for k in sorted(arms.update_s) if k <= upto][-7:])


def plot(arms: Arms, cfg: Config, start: date) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    day = lambda k: start + timedelta(days=k)  # noqa: E731
    top.plot([day(k) for k in arms.update_s], list(arms.update_s.values()), lw=0.8, label="daily update")
    top.plot([day(k) for k in arms.retrain_s], list(arms.retrain_s.values()), "o-", ms=3, label="retrain from scratch")
    top.set_yscale("log")
    top.set_ylabel("wall time (s), 1 thread")
    top.legend()
    for name, values in arms.mae.items():
        series = pd.Series(values).rolling(7, min_periods=1).mean()
        bottom.plot([day(k) for k in series.index], series.to_numpy(), label=name)
    bottom.axvline(day(cfg.frozen_days), color="grey", ls=":", lw=1)
    bottom.set_ylabel("next-day MAE (MW), 7-day mean")
    bottom.legend()
    fig.suptitle(f"vic_elec: daily update vs retraining, {cfg.days} days")
    fig.autofmt_xdate()
    return fig


def bench(quick: bool, days: int | None = None) -> Report:
    torch.set_num_threads(1)
    started = time.perf_counter()
    cfg = Config(days=days or (45 if quick else 365), frozen_days=14 if quick else 60)
    params = load_params()
    spec = params.model(MODEL)
    ds = params.dataset(spec.dataset)
    frame = sources.load_source(ds)
    arms = walk(cfg, spec, ds, frame, progress=not quick)
    start = date.fromisoformat(spec.start_date)

    last = cfg.days - 1
    update_s = _update_median(arms, last)
    ratio = arms.retrain_s[last] / update_s
    judged = list(arms.mae["frozen"])
    mae = {name: _mean(values, judged) for name, values in arms.mae.items()}
    vs_retrain = (mae["incremental"] / mae["retrain"] - 1) * 100
    vs_frozen = (mae["incremental"] / mae["frozen"] - 1) * 100

    cost_rows = [
        [
            str(start + timedelta(days=k)),
            k + 1,
            arms.retrain_samples[k],
            f"{arms.retrain_s[k]:.2f}",
            f"{_update_median(arms, k):.3f}",
            f"{arms.retrain_s[k] / _update_median(arms, k):.0f}x",
        ]
        for k in sorted(arms.retrain_s)
        if k > spec.warmup_days
    ]
    step = max(1, len(cost_rows) // 8)
    cost_rows = cost_rows[::step] + ([cost_rows[-1]] if (len(cost_rows) - 1) % step else [])
    months = [judged[i : i + 30] for i in range(0, len(judged), 30)]
    if len(months) > 1 and len(months[-1]) < 10:  # no table row for a few days left over
        months[-2:] = [months[-2] + months[-1]]
    mae_rows = [
        [f"{start + timedelta(days=m[0])} .. {start + timedelta(days=m[-1])}", len(m)]
        + [f"{_mean(arms.mae[n], m):.1f}" for n in ("incremental", "retrain", "frozen")]
        for m in months
    ]
    mae_rows.append(
        ["**all judged days**", len(judged)] + [f"**{mae[n]:.1f}**" for n in ("incremental", "retrain", "frozen")]
    )
    link = save_figure(plot(arms, cfg, start), f"daily_vs_retrain_{'quick' if quick else 'full'}.png")
    markdown = "\n".join(
        [
            "Cost of keeping the model current (wall time of `LearnerState.new`+`fit` for a retrain on all "
            "history to date, vs `fit` of the daily update on day D-1 with replay; update time = median of "
            "the 7 latest updates):",
            "",
            md_table(["day", "day #", "retrain samples", "retrain (s)", "update (s)", "retrain / update"], cost_rows),
            "",
            f"Next-day MAE (MW) on the days after the frozen model's {cfg.frozen_days} training days "
            f"(retrain = the latest retrain, every {cfg.retrain_every}th day):",
            "",
            md_table(["days", "n", "incremental", "retrain", "frozen"], mae_rows),
            "",
            f"![daily update vs retraining]({link})",
        ]
    )
    targets = (
        Target(
            f"day-{cfg.days} update >= 50x cheaper than retraining",
            ratio >= 50,
            f"{ratio:.0f}x: retrain {arms.retrain_s[last]:.2f} s on {arms.retrain_samples[last]} windows, "
            f"update {update_s * 1000:.0f} ms" + ("; quick settings: the target is set for day 365" if quick else ""),
        ),
        Target(
            "incremental MAE within 3% of retraining",
            vs_retrain <= 3.0,
            f"{mae['incremental']:.1f} vs {mae['retrain']:.1f} MW: {vs_retrain:+.1f}%",
        ),
        Target(
            "incremental MAE clearly (>= 10%) below the frozen model",
            vs_frozen <= -10.0,
            f"{mae['incremental']:.1f} vs {mae['frozen']:.1f} MW: {vs_frozen:+.1f}%",
        ),
    )
    settings = (
        f"{'QUICK' if quick else 'FULL'}: {cfg.days} days of vic_elec from {start}, model `{MODEL}` as in "
        f"params.yaml ({spec.train.epochs} epochs, patience {spec.train.patience}, strategy {spec.strategy.name}), "
        f"warm-up {spec.warmup_days} days, retrain every {cfg.retrain_every} days, frozen on the first "
        f"{cfg.frozen_days} days, 1 torch thread"
    )
    return Report(
        key="daily_vs_retrain",
        title="1b. Rolling next-day windows of the seed forecaster (secondary metric; vic_elec)",
        settings=settings,
        markdown=markdown,
        targets=targets,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="45 days, frozen on the first 14")
    parser.add_argument("--days", type=int, default=None, help="days to walk (default 365, quick 45)")
    args = parser.parse_args(argv)
    report = bench(args.quick, args.days)
    return report.show()


if __name__ == "__main__":
    main(sys.argv[1:])
