"""Benchmark: the day-ahead forecast of vic_elec, incremental vs weekly retrain vs frozen vs the naive forecasts.

The forecast for local day D is issued from the data up to the end of D-1 (its 46/48/50
half-hours, :func:`lifelong.data.windows.day_ahead_sample`); every arm and every naive forecast
is scored on exactly those targets. The arms walk the days in memory with the data/ and learn/
APIs (no Airflow, no MLflow):

* **incremental**: a first model on the ``--warmup`` days (normalisation stats fitted there,
  once); then each day D, test-then-train: score the day-ahead forecast of D, then update on D's
  samples (every forecast origin whose last target falls on D; ``fit`` with the model's strategy,
  replay included). An update trains on every day after the model's last trained day: here one.
* **retrain**: every ``--retrain-every`` days, a fresh model of the same spec on all days before
  D (stats refitted on them); between retrains the latest one forecasts.
* **frozen**: trained once on the first ``--frozen`` days.
* **persistence** (last value of D-1), **daily naive** (same local clock time on D-1),
  **weekly naive** (same local clock time on D-7).

MASE = the arm's MAE over the weekly naive's MAE on the same targets (sums over the days judged).
Timed: ``make_strategy`` + ``fit`` for an update, ``LearnerState.new`` + ``fit`` for a retrain
(sample building excluded from both). Temperature at the target steps is the *observed*
temperature, standing in for the forecast an operator would have.

Usage: ``python -m bench.day_ahead [--quick] [--days N] [--types cnn_dayahead,cnn_dayahead_residual]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
import torch
from torch import Tensor

from bench.common import Report, Target, md_table, save_figure
from lifelong.config import ArchitectureSpec, DatasetSpec, ModelSpec, TrainSpec, load_params
from lifelong.data import schema, sources, windows
from lifelong.learn.metrics import predict
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit

MODEL = "demand_forecaster"
ARMS = ("incremental", "retrain", "frozen")
NAIVE = ("persistence", "daily_naive", "weekly_naive")
# the day-ahead architecture measured here (the block the README proposes for demand_forecaster):
# history 96 half-hours (two days) + 50 forecast steps (the longest local day)
ARCH = {"length": 146, "out_dim": 50, "channels": (16,), "kernel_size": 5, "pool": 2, "hidden": (64, 64)}
TRAIN = {"lr": 0.002, "lr_decay": 0.999, "lr_floor": 0.0001, "epochs": 8, "batch_size": 32, "patience": 3}


@dataclass(frozen=True)
class Config:
    days: int
    frozen_days: int
    warmup_days: int = 14
    retrain_every: int = 7


@dataclass
class Walk:
    """Per-day records (key = day number from the start): absolute errors summed, target counts, times."""

    abs_err: dict[str, dict[int, float]] = field(default_factory=dict)
    pct_err: dict[str, dict[int, float]] = field(default_factory=dict)
    steps: dict[int, int] = field(default_factory=dict)
    update_s: dict[int, float] = field(default_factory=dict)
    retrain_s: dict[int, float] = field(default_factory=dict)
    retrain_samples: dict[int, int] = field(default_factory=dict)

    def record(self, name: str, k: int, pred: Tensor, true: Tensor) -> None:
        err = (pred.double() - true.double()).abs()
        self.abs_err.setdefault(name, {})[k] = float(err.sum())
        self.pct_err.setdefault(name, {})[k] = float((100 * err / true.double().abs()).sum())
        self.steps[k] = int(true.numel())

    def mae(self, name: str, keys: list[int]) -> float:
        return sum(self.abs_err[name][k] for k in keys) / sum(self.steps[k] for k in keys)

    def mape(self, name: str, keys: list[int]) -> float:
        return sum(self.pct_err[name][k] for k in keys) / sum(self.steps[k] for k in keys)

    def mase(self, name: str, keys: list[int]) -> float:
        return self.mae(name, keys) / self.mae("weekly_naive", keys)


def day_spec(params_spec: ModelSpec, ds: DatasetSpec, kind: str) -> ModelSpec:
    arch = ArchitectureSpec(type=kind, in_channels=len(windows.dayahead_channels(ds)), **ARCH)  # type: ignore[arg-type]
    train = dataclasses.replace(params_spec.train, **TRAIN)
    return dataclasses.replace(params_spec, architecture=arch, train=train)


def frame_of(frame: pd.DataFrame, dates: pd.Series, first: date, last: date) -> pd.DataFrame:
    return frame[(dates >= str(first)) & (dates <= str(last))]


def samples(frame: pd.DataFrame, dates: pd.Series, ds: DatasetSpec, spec: ModelSpec, stats: dict, days: list[date]):
    """Training samples of ``days`` (every origin whose last target falls on one of them)."""
    back = windows.history_days(ds, spec.architecture)
    part = frame_of(frame, dates, days[0] - timedelta(days=back), days[-1])
    if len(days) == 1:
        return windows.forecast_samples(part, ds, spec.architecture, stats, targets_in=days[0])
    x, y = windows.forecast_samples(part, ds, spec.architecture, stats)
    return x, y  # every origin in the frame: the targets of days[0] - back .. days[-1] that have full inputs


def train_fresh(spec: ModelSpec, train: TrainSpec, x: Tensor, y: Tensor) -> tuple[LearnerState, float]:
    started = time.perf_counter()
    state = LearnerState.new(spec.architecture, train, spec.strategy)
    fit(state, x, y, train=train, strategy=make_strategy(spec.strategy, task_kind(spec.architecture), state))
    return state, time.perf_counter() - started


def update(state: LearnerState, spec: ModelSpec, x: Tensor, y: Tensor) -> float:
    started = time.perf_counter()
    fit(state, x, y, train=spec.train, strategy=make_strategy(spec.strategy, task_kind(spec.architecture), state))
    return time.perf_counter() - started


def forecast(state: LearnerState, x: Tensor, steps: int, stats: dict) -> Tensor:
    """The model's day-ahead forecast of the day's ``steps`` rows, in the data's units."""
    return windows.denormalise_target(predict(state.model, x)[0, :steps], stats).double()


def walk(cfg: Config, spec: ModelSpec, ds: DatasetSpec, frame: pd.DataFrame, arms: tuple[str, ...], log: bool) -> Walk:
    """Walk the days; see the module docstring. ``arms``: which of incremental/retrain/frozen to run."""
    start = date.fromisoformat(spec.start_date)
    days = [start + timedelta(days=i) for i in range(cfg.days)]
    dates = schema.row_dates(ds, frame)
    back = windows.history_days(ds, spec.architecture)
    out = Walk()

    def stats_of(upto: int) -> dict:
        return windows.fit_stats(frame_of(frame, dates, days[0], days[upto - 1]), ds)

    def history(upto: int, stats: dict) -> tuple[Tensor, Tensor]:
        return samples(frame, dates, ds, spec, stats, days[:upto])

    models: dict[str, tuple[LearnerState, dict]] = {}
    inc_stats = stats_of(cfg.warmup_days)
    if "incremental" in arms:
        models["incremental"] = (train_fresh(spec, spec.train, *history(cfg.warmup_days, inc_stats))[0], inc_stats)
    if "frozen" in arms:
        frozen_stats = stats_of(cfg.frozen_days)
        models["frozen"] = (train_fresh(spec, spec.train, *history(cfg.frozen_days, frozen_stats))[0], frozen_stats)
    for k in range(cfg.warmup_days, cfg.days):
        today = days[k]
        if "retrain" in arms and ((k - cfg.warmup_days) % cfg.retrain_every == 0 or k == cfg.days - 1):
            re_stats = stats_of(k)
            x, y = history(k, re_stats)
            state, out.retrain_s[k] = train_fresh(spec, spec.train, x, y)
            out.retrain_samples[k] = len(x)
            models["retrain"] = (state, re_stats)
        part = frame_of(frame, dates, today - timedelta(days=back), today)
        try:
            naive = windows.day_ahead_naive(part, ds, today)
            scored = {}
            for name, (state, stats) in models.items():
                x, y, steps = windows.day_ahead_sample(part, ds, spec.architecture, stats, today)
                scored[name] = forecast(state, x, steps, stats)
        except windows.NoSample as exc:
            print(f"  {today}: not judged ({exc})", file=sys.stderr)
            scored = {}
        if scored:
            stamps = part[ds.timestamp]
            rows = (stamps >= schema.day_start(ds, today)) & (stamps < schema.day_start(ds, today + timedelta(days=1)))
            true = torch.tensor(part.loc[rows, ds.target].to_numpy(dtype="float64"))
            for name, pred in scored.items():
                out.record(name, k, pred, true)
            for name in NAIVE:
                out.record(name, k, naive[name], true)
        # test-then-train: the incremental model learns D after being scored on it
        if "incremental" in arms:
            x, y = samples(frame, dates, ds, spec, inc_stats, [today])
            if len(x):
                out.update_s[k] = update(models["incremental"][0], spec, x, y)
        if log and k % 30 == 0:
            print(f"  {'+'.join(arms)}: day {k + 1}/{cfg.days}", file=sys.stderr, flush=True)
    return out


def _walk_job(cfg: Config, kind: str, arms: tuple[str, ...], log: bool) -> Walk:
    """One walk in its own process (the arms are independent: the bench runs them side by side)."""
    torch.set_num_threads(1)
    params = load_params()
    base = params.model(MODEL)
    ds = params.dataset(base.dataset)
    return walk(cfg, day_spec(base, ds, kind), ds, sources.load_source(ds), arms, log)


def walks(cfg: Config, types: tuple[str, ...], log: bool) -> dict[str, Walk]:
    """The main type's three arms and the other types' incremental arm, in parallel processes.

    Each arm runs in a process of its own with one torch thread; the arms finish at different times,
    so their update and retrain times are measured under different loads (the cost table is indicative;
    the cost target is measured back to back in one process, :func:`cost_at`).
    """
    jobs = [(types[0], ("incremental", "frozen")), (types[0], ("retrain",))]
    jobs += [(kind, ("incremental",)) for kind in types[1:]]
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_walk_job, cfg, kind, arms, log) for kind, arms in jobs]
        results = [f.result() for f in futures]
    main = results[0]
    retrain = results[1]
    main.abs_err["retrain"], main.pct_err["retrain"] = retrain.abs_err["retrain"], retrain.pct_err["retrain"]
    main.retrain_s, main.retrain_samples = retrain.retrain_s, retrain.retrain_samples
    return {types[0]: main, **{kind: w for (kind, _), w in zip(jobs[2:], results[2:], strict=True)}}


def cost_at(cfg: Config, spec: ModelSpec, ds: DatasetSpec, frame: pd.DataFrame, k: int) -> tuple[float, float, int]:
    """Back to back in this process: a retrain on the days before day ``k`` (stats refitted), then the
    median of 7 updates of copies of that model on day ``k`` (with replay). Returns seconds, seconds, samples."""
    start = date.fromisoformat(spec.start_date)
    days = [start + timedelta(days=i) for i in range(k + 1)]
    dates = schema.row_dates(ds, frame)
    stats = windows.fit_stats(frame_of(frame, dates, days[0], days[k - 1]), ds)
    x, y = samples(frame, dates, ds, spec, stats, days[:k])
    state, retrain_s = train_fresh(spec, spec.train, x, y)
    xd, yd = samples(frame, dates, ds, spec, stats, [days[k]])
    updates = [update(copy.deepcopy(state), spec, xd, yd) for _ in range(7)]
    return retrain_s, statistics.median(updates), len(x)


def _update_median(w: Walk, upto: int) -> float:
    """Median wall time of the 7 latest daily updates up to day ``upto`` (one update is a few ms: noisy)."""
    return statistics.median([w.update_s[k] for k in sorted(w.update_s) if k <= upto][-7:])


def plot(w: Walk, judged: list[int], start: date, kind: str) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    day = [start + timedelta(days=k) for k in judged]
    for name, style in (("weekly_naive", "-"), ("incremental", "-"), ("retrain", ":")):
        if name in w.abs_err:
            ax.plot(day, [w.abs_err[name][k] / w.steps[k] for k in judged], style, lw=0.9, label=name.replace("_", " "))
    ax.set_ylabel("day-ahead MAE (MW), per day")
    ax.set_title(f"vic_elec 2012, day-ahead: {kind} updated daily vs the weekly seasonal naive")
    ax.legend()
    fig.autofmt_xdate()
    return fig


def _months(judged: list[int], start: date) -> list[tuple[str, list[int]]]:
    groups: dict[str, list[int]] = {}
    for k in judged:
        groups.setdefault((start + timedelta(days=k)).strftime("%Y-%m"), []).append(k)
    return list(groups.items())


def bench(
    quick: bool, days: int | None = None, types: tuple[str, ...] = ("cnn_dayahead", "cnn_dayahead_residual")
) -> Report:  # noqa: E501
    torch.set_num_threads(1)
    started = time.perf_counter()
    cfg = Config(days=days or (75 if quick else 365), frozen_days=30 if quick else 60)
    params = load_params()
    base = params.model(MODEL)
    ds = params.dataset(base.dataset)
    start = date.fromisoformat(base.start_date)
    main_kind = types[0]
    spec = day_spec(base, ds, main_kind)
    variants = walks(cfg, types, log=not quick)
    w = variants[main_kind]
    judged = [k for k in sorted(w.steps) if k >= cfg.frozen_days]

    names = [*ARMS, *NAIVE]
    rows = []
    for month, keys in _months(judged, start):
        maes = [f"{w.mae(n, keys):.1f}" for n in names]
        rows.append([month, len(keys), *maes, f"{w.mase('incremental', keys):.3f}"])
    rows.append(
        ["**all judged days**", len(judged)]
        + [f"**{w.mae(n, judged):.1f}**" for n in names]
        + [f"**{w.mase('incremental', judged):.3f}**"]
    )
    total = [[n.replace("_", " "), f"{w.mae(n, judged):.1f}", f"{w.mape(n, judged):.2f}", f"{w.mase(n, judged):.3f}"]
             for n in names]  # fmt: skip
    arch_rows = [
        [f"`{kind}`", f"{v.mae('incremental', judged):.1f}", f"{v.mape('incremental', judged):.2f}",
         f"{v.mase('incremental', judged):.3f}", f"{_update_median(v, cfg.days - 1) * 1000:.0f}"]
        for kind, v in variants.items()
    ]  # fmt: skip
    frame = sources.load_source(ds)
    retrain_s, update_s, retrain_n = cost_at(cfg, spec, ds, frame, cfg.days - 1)
    ratio = retrain_s / update_s
    cost_rows = [
        [str(start + timedelta(days=k)), k + 1, w.retrain_samples[k], f"{w.retrain_s[k]:.2f}",
         f"{_update_median(w, k):.3f}", f"{w.retrain_s[k] / _update_median(w, k):.0f}x"]
        for k in sorted(w.retrain_s) if k > cfg.warmup_days
    ]  # fmt: skip
    step = max(1, len(cost_rows) // 8)
    cost_rows = cost_rows[::step] + ([cost_rows[-1]] if (len(cost_rows) - 1) % step else [])
    link = save_figure(plot(w, judged, start, main_kind), f"day_ahead_{'quick' if quick else 'full'}.png")
    mase = w.mase("incremental", judged)
    mape = w.mape("incremental", judged)
    vs_retrain = (w.mae("incremental", judged) / w.mae("retrain", judged) - 1) * 100
    markdown = "\n".join(
        [
            f"Day-ahead errors over the {len(judged)} judged days (after the frozen model's {cfg.frozen_days} "
            "training days), every forecast on the same targets (each local day's 46/48/50 half-hours, issued "
            "at its midnight); MASE = MAE / weekly naive MAE:",
            "",
            md_table(["forecast", "MAE (MW)", "MAPE (%)", "MASE"], total),
            "",
            "By month (MAE, MW; last column the incremental model's MASE):",
            "",
            md_table(["month", "days", *[n.replace("_", " ") for n in names], "MASE inc."], rows),
            "",
            "Architectures, incremental arm only (same protocol, same days):",
            "",
            md_table(["type", "MAE (MW)", "MAPE (%)", "MASE", "update (ms)"], arch_rows),
            "",
            f"Cost at day {cfg.days}, back to back in one process: a retrain (`LearnerState.new`+`fit` on the "
            f"{retrain_n} samples of all days to date) {retrain_s:.2f} s; the daily update of that model on the "
            f"day's samples with replay (`fit`, median of 7) {update_s * 1000:.0f} ms: **{ratio:.0f}x**.",
            "",
            "Cost along the year, as the arms ran (in parallel processes, so under different loads: indicative; "
            "update time = median of the 7 latest updates of the incremental arm):",
            "",
            md_table(["day", "day #", "retrain samples", "retrain (s)", "update (s)", "retrain / update"], cost_rows),
            "",
            f"![day-ahead MAE per day, model vs weekly naive]({link})",
        ]
    )
    targets = (
        Target("incremental day-ahead MASE <= 0.65 (vs weekly naive)", mase <= 0.65,
               f"{mase:.3f}: {w.mae('incremental', judged):.1f} vs {w.mae('weekly_naive', judged):.1f} MW"),
        Target("incremental day-ahead MAPE <= 3.5%", mape <= 3.5, f"{mape:.2f}%"),
        Target("incremental within 3% of the weekly retrain", vs_retrain <= 3.0,
               f"{w.mae('incremental', judged):.1f} vs {w.mae('retrain', judged):.1f} MW: {vs_retrain:+.1f}%"),
        Target(f"day-{cfg.days} update >= 50x cheaper than a retrain", ratio >= 50,
               f"{ratio:.0f}x: retrain {retrain_s:.2f} s on {retrain_n} samples, update {update_s * 1000:.0f} ms, "
               "back to back in one process" + ("; quick settings: the target is set for day 365" if quick else "")),
    )  # fmt: skip
    settings = (
        f"{'QUICK' if quick else 'FULL'}: {cfg.days} days of vic_elec from {start}, `{main_kind}` "
        f"({ARCH}), training as params.yaml's `{MODEL}` with {TRAIN}, strategy {spec.strategy.name} "
        f"(capacity {spec.strategy.replay_capacity}), lags {list(ds.lags)}, known future {list(ds.known_future)} "
        f"(observed temperature standing in for a forecast), warm-up {cfg.warmup_days} days, retrain every "
        f"{cfg.retrain_every} days, frozen on the first {cfg.frozen_days} days, 1 torch thread"
    )
    return Report(
        key="day_ahead",
        title="1. Day-ahead forecast: incremental vs retraining vs the naive forecasts (vic_elec)",
        settings=settings,
        markdown=markdown,
        targets=targets,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="75 days, frozen on the first 30")
    parser.add_argument("--days", type=int, default=None, help="days to walk (default 365, quick 75)")
    parser.add_argument("--types", default="cnn_dayahead,cnn_dayahead_residual", help="architectures; first = main")
    args = parser.parse_args(argv)
    report = bench(args.quick, args.days, tuple(args.types.split(",")))
    return report.show()


if __name__ == "__main__":
    main(sys.argv[1:])
