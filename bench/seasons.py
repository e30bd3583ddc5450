"""Benchmark: the four seasons of a year of vic_elec as tasks, learned day by day; does consolidation help?

The year runs from 2012-03-01 to 2013-02-28 (vic_elec starts on 2012-01-01, so the Southern summer
Dec-Feb comes last): autumn 2012-03-01..05-31, winter 06-01..08-31, spring 09-01..11-30, summer
2012-12-01..2013-02-28. In each season the 4th day and every 7th day after it are **held out**:
never trained on by any arm. A day's training samples (every forecast origin whose last target falls
on it, :func:`lifelong.data.windows.forecast_samples`) have targets that reach back 49 half-hours into
the day before, so a day whose samples' targets touch a held-out day is not trained on either: the
held-out targets are never seen, not even in part. Their demand does appear as *history* (inputs).

Every arm is the ``demand_forecaster`` of params.yaml (``cnn_dayahead``, its ``train`` block, one seed
per run in ``train.seed``), driven with the data/ and learn/ APIs in memory as ``bench/day_ahead.py``
does (its sample, update and forecast helpers; no Airflow, no MLflow). A first model learns the first
14 days of autumn (normalisation stats fitted there, once); then each training day in order:

* **naive**: fine-tuning on the day, no replay, no penalty;
* **replay**: the current default (params.yaml's strategy block: reservoir buffer, replay ratio);
* **ewc+replay (lambda)**: replay, plus at each season boundary ``learn.train.consolidate`` with the
  exact Fisher (``fisher_variant: exact``) on the closing season's training samples (subsampled to
  ``fisher_samples``), folded online (``F <- gamma F + F_new``) with the anchors at the boundary.
  Until the first boundary it *is* the replay arm (no Fisher yet: a zero penalty), so it is forked from
  that arm at the end of autumn (same weights, buffer and counters: what it would have been).
* **weekly retrain**: every 7th day from the end of the warm-up, a fresh model of the same spec on
  every training day so far (stats refitted on them); the model in force at a season's end is the
  latest one. Only the four in force at the season ends are trained (they are all the matrix reads);
  the year's cost is the sum over all its weekly retrains, *estimated* from those four's seconds per
  sample times each retrain's sample count.

After each season every arm forecasts the held-out days of every season seen so far, with the
day-ahead protocol of section 1 (the forecast of local day D issued at its midnight from the data up
to the end of D-1 and the known-future covariates of D; scored on D's 46/48/50 half-hours), and the
naive forecasts (persistence, daily and weekly seasonal naive) are scored on the same targets.

Usage: ``python -m bench.seasons [--quick] [--seeds 0,1,2] [--lambdas 1,10,100] [--jobs N]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from bench.common import OUT_DIR, Report, Target, md_table
from bench.day_ahead import forecast, samples, train_fresh, update
from lifelong.config import DatasetSpec, ModelSpec, load_params
from lifelong.data import schema, sources, windows
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import consolidate

MODEL = "demand_forecaster"
SEASONS: tuple[tuple[str, date, date], ...] = (
    ("autumn", date(2012, 3, 1), date(2012, 5, 31)),
    ("winter", date(2012, 6, 1), date(2012, 8, 31)),
    ("spring", date(2012, 9, 1), date(2012, 11, 30)),
    ("summer", date(2012, 12, 1), date(2013, 2, 28)),
)
HOLDOUT_FIRST, HOLDOUT_EVERY = 3, 7  # day index within the season: the 4th, 11th, 18th, ...
NAIVE = ("persistence", "daily_naive", "weekly_naive")
RETRAIN = "weekly retrain"


@dataclass(frozen=True)
class Config:
    seeds: tuple[int, ...]
    lambdas: tuple[float, ...]
    season_days: int | None = None  # only the first N days of each season (quick); None = all of it
    warmup_days: int = 14
    retrain_every: int = 7
    fisher_samples: int = 1024
    gamma: float = 1.0
    jobs: int = 1


@dataclass(frozen=True)
class Calendar:
    """The seasons' days, which are held out, and which are trained on (in order)."""

    names: tuple[str, ...]
    days: dict[str, list[date]]
    held_out: dict[str, list[date]]
    train: dict[str, list[date]]  # per season, the days whose samples never reach a held-out target

    @property
    def all_days(self) -> list[date]:
        return [d for name in self.names for d in self.days[name]]


def calendar(cfg: Config, ds: DatasetSpec, arch_out_dim: int) -> Calendar:
    days, held = {}, {}
    for name, first, last in SEASONS:
        span = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        days[name] = span[: cfg.season_days] if cfg.season_days else span
        held[name] = [d for i, d in enumerate(days[name]) if i >= HOLDOUT_FIRST and (i - HOLDOUT_FIRST) % 7 == 0]
    held_set = {d for v in held.values() for d in v}
    train = {name: [d for d in v if not (target_days(ds, d, arch_out_dim) & held_set)] for name, v in days.items()}
    return Calendar(tuple(days), days, held, train)


def target_days(ds: DatasetSpec, day: date, out_dim: int) -> set[date]:
    """Local days the targets of ``day``'s training samples fall on: the earliest starts ``out_dim - 1``
    steps before the day's midnight."""
    first = schema.day_start(ds, day) - schema.step(ds) * (out_dim - 1)
    first_day = first.tz_convert(ds.timezone or "UTC").date()
    return {first_day + timedelta(days=i) for i in range((day - first_day).days + 1)}


@dataclass(frozen=True)
class HeldOut:
    """One held-out day: the day-ahead input (scaled with the stats it was built with), its rows in MW,
    and the naive forecasts of those rows."""

    x: Tensor
    steps: int
    true: Tensor
    naive: dict[str, Tensor]


def held_out_days(frame: pd.DataFrame, dates: pd.Series, ds: DatasetSpec, spec: ModelSpec, stats: dict,
                  days: list[date]) -> dict[date, HeldOut]:  # fmt: skip
    back = windows.history_days(ds, spec.architecture)
    out = {}
    for day in days:
        part = frame[(dates >= str(day - timedelta(days=back))) & (dates <= str(day))]
        x, _, steps = windows.day_ahead_sample(part, ds, spec.architecture, stats, day)
        stamps = part[ds.timestamp]
        rows = (stamps >= schema.day_start(ds, day)) & (stamps < schema.day_start(ds, day + timedelta(days=1)))
        true = torch.tensor(part.loc[rows, ds.target].to_numpy(dtype="float64"))
        out[day] = HeldOut(x, steps, true, windows.day_ahead_naive(part, ds, day))
    return out


def season_mae(state: LearnerState, stats: dict, held: dict[date, HeldOut], days: list[date]) -> float:
    """MAE (MW) of the day-ahead forecasts of ``days``: summed absolute error over all their rows."""
    err = sum(float((forecast(state, held[d].x, held[d].steps, stats) - held[d].true).abs().sum()) for d in days)
    return err / sum(held[d].steps for d in days)


def naive_mae(held: dict[date, HeldOut], days: list[date], name: str) -> float:
    return sum(float((held[d].naive[name] - held[d].true).abs().sum()) for d in days) / sum(held[d].steps for d in days)


@dataclass
class SeedRun:
    """What one seed measured. ``mae[arm][r][c]``: after season r, on season c's held-out days (c <= r)."""

    seed: int
    mae: dict[str, list[list[float]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # learning time of the year per arm
    consolidations: list[dict] = field(default_factory=list)
    penalties: list[dict] = field(default_factory=list)
    retrains: list[dict] = field(default_factory=list)
    retrain_year_samples: list[int] = field(default_factory=list)  # every weekly retrain's sample count
    naive: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seasons_done: int = 0


def arm_specs(base: ModelSpec, cfg: Config, seed: int) -> dict[str, ModelSpec]:
    train = dataclasses.replace(base.train, seed=seed, device="cpu")
    replay = dataclasses.replace(base, train=train)
    specs = {
        "naive": dataclasses.replace(replay, strategy=dataclasses.replace(base.strategy, name="naive")),
        "replay": replay,
    }
    for lam in cfg.lambdas:
        ewc = dataclasses.replace(base.strategy, name="ewc+replay", ewc_lambda=lam, gamma=cfg.gamma,
                                  fisher_variant="exact", fisher_samples=cfg.fisher_samples)  # fmt: skip
        specs[ewc_name(lam)] = dataclasses.replace(replay, strategy=ewc)
    return specs


def ewc_name(lam: float) -> str:
    return f"ewc+replay λ={lam:g}"


def run_seed(cfg: Config, seed: int, checkpoint: str | None = None) -> SeedRun:
    """One seed's year, every arm; see the module docstring. After each season what is measured so far
    goes to ``checkpoint`` (JSON), so that a run stopped part way still reports the seasons it finished."""
    began = time.perf_counter()
    torch.set_num_threads(1)
    params = load_params()
    base = params.model(MODEL)
    ds = params.dataset(base.dataset)
    frame = sources.load_source(ds)
    dates = schema.row_dates(ds, frame)
    cal = calendar(cfg, ds, base.architecture.out_dim)
    specs = arm_specs(base, cfg, seed)
    out = SeedRun(seed, counts={"held_out": sum(len(v) for v in cal.held_out.values()),
                                "trained": sum(len(v) for v in cal.train.values())})  # fmt: skip
    first = cal.names[0]
    warm = [d for d in cal.days[first][: cfg.warmup_days] if d in cal.train[first]]
    stats = windows.fit_stats(frame[dates.isin([str(d) for d in warm])], ds)
    daily = {d: samples(frame, dates, ds, base, stats, [d]) for n in cal.names for d in cal.train[n]}
    held = held_out_days(frame, dates, ds, base, stats, [d for n in cal.names for d in cal.held_out[n]])
    out.naive = {k: [naive_mae(held, cal.held_out[n], k) for n in cal.names] for k in NAIVE}

    def cat(days: list[date]) -> tuple[Tensor, Tensor]:
        kept = [daily[d] for d in days if len(daily[d][0])]
        return torch.cat([x for x, _ in kept]), torch.cat([y for _, y in kept])

    states: dict[str, LearnerState] = {}
    for arm in ("naive", "replay"):
        states[arm], out.seconds[arm] = train_fresh(specs[arm], specs[arm].train, *cat(warm))
    retrain_days = [d for d in cal.all_days[cfg.warmup_days :: cfg.retrain_every]]
    every_train_day = [d for n in cal.names for d in cal.train[n]]
    out.retrain_year_samples = [sum(len(daily[t][0]) for t in every_train_day if t < d) for d in retrain_days]
    for r, name in enumerate(cal.names):
        todo = [d for d in cal.train[name] if d not in warm]
        for arm, state in states.items():
            for d in todo:
                if len(daily[d][0]):
                    out.seconds[arm] += update(state, specs[arm], *daily[d])
        for arm, state in states.items():
            row = [season_mae(state, stats, held, cal.held_out[c]) for c in cal.names[: r + 1]]
            out.mae.setdefault(arm, []).append(row)
            if arm.startswith("ewc") and r > 0:
                penalty = make_strategy(specs[arm].strategy, "regression", state).penalty(state.model)
                out.penalties.append({"arm": arm, "season": name, "penalty": float(penalty.detach()),
                                      "train_loss": state.history[-1]["train_loss"]})  # fmt: skip
        in_force = max(d for d in retrain_days if d <= cal.days[name][-1])
        out.mae.setdefault(RETRAIN, []).append(
            retrain_row(cfg, ds, frame, dates, specs["replay"], cal, r, in_force, out)
        )
        out.seasons_done = r + 1
        if checkpoint:
            Path(checkpoint).write_text(json.dumps({"config": dataclasses.asdict(cfg), "run": dataclasses.asdict(out)}))
        print(f"[seasons] seed {seed}: {name} done, {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        if r == len(cal.names) - 1:
            break
        if r == 0:  # the ewc arms are the replay arm until the first boundary
            for lam in cfg.lambdas:
                states[ewc_name(lam)] = copy.deepcopy(states["replay"])
                out.seconds[ewc_name(lam)] = out.seconds["replay"]
                out.mae[ewc_name(lam)] = copy.deepcopy(out.mae["replay"])
        x_task, y_task = cat(cal.train[name])
        for lam in cfg.lambdas:
            arm = ewc_name(lam)
            state = states[arm]
            started = time.perf_counter()
            consolidate(state, make_strategy(specs[arm].strategy, task_kind(base.architecture), state), x_task, y_task,
                        device="cpu")  # fmt: skip
            seconds = time.perf_counter() - started
            out.seconds[arm] += seconds
            assert state.fisher is not None
            values = torch.cat([f.flatten() for f in state.fisher.values()])
            out.consolidations.append({
                "arm": arm, "after": name, "seconds": seconds, "samples": min(len(x_task), cfg.fisher_samples),
                "of": len(x_task), "fisher_mean": float(values.mean()), "fisher_median": float(values.median()),
                "fisher_max": float(values.max()),
            })  # fmt: skip
    return out


def retrain_row(cfg: Config, ds: DatasetSpec, frame: pd.DataFrame, dates: pd.Series, spec: ModelSpec, cal: Calendar,
                r: int, day: date, out: SeedRun) -> list[float]:  # fmt: skip
    """The weekly retrain in force after season ``r`` (trained at midnight of ``day`` on every training day
    before it, stats refitted there), scored on the held-out days of seasons 0..r."""
    before = [d for n in cal.names for d in cal.train[n] if d < day]
    stats = windows.fit_stats(frame[dates.isin([str(d) for d in before])], ds)
    parts = [samples(frame, dates, ds, spec, stats, [d]) for d in before]
    x = torch.cat([p[0] for p in parts if len(p[0])])
    y = torch.cat([p[1] for p in parts if len(p[1])])
    state, seconds = train_fresh(spec, spec.train, x, y)
    out.retrains.append({"day": str(day), "samples": len(x), "seconds": seconds})
    seen = cal.names[: r + 1]
    held = held_out_days(frame, dates, ds, spec, stats, [d for n in seen for d in cal.held_out[n]])
    return [season_mae(state, stats, held, cal.held_out[c]) for c in seen]


def run(cfg: Config, mode: str) -> list[SeedRun]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    checkpoints = [str(seed_file(mode, s)) for s in cfg.seeds]
    if cfg.jobs <= 1 or len(cfg.seeds) == 1:
        return [run_seed(cfg, s, c) for s, c in zip(cfg.seeds, checkpoints, strict=True)]
    with ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_seed, [cfg] * len(cfg.seeds), cfg.seeds, checkpoints))


def seed_file(mode: str, seed: int) -> Path:
    return OUT_DIR / f"seasons_{mode}_seed{seed}.json"


def _config(raw: dict) -> Config:
    return Config(**{**raw, "seeds": tuple(raw["seeds"]), "lambdas": tuple(raw["lambdas"])})


def load_partial(mode: str, cfg: Config) -> tuple[Config, list[SeedRun], str]:
    """The seeds' checkpoints of a run stopped part way: the seeds that finished every season when two or
    more did, else every seed cut to the seasons all of them finished. Returns a note saying which."""
    found = [json.loads(f.read_text()) for s in cfg.seeds if (f := seed_file(mode, s)).exists()]
    if not found:
        raise FileNotFoundError(f"--reuse: no saved run in {OUT_DIR}")
    runs = [SeedRun(**d["run"]) for d in found]
    whole = [r for r in runs if r.seasons_done == len(SEASONS)]
    if len(whole) >= 2 or len(whole) == len(runs):
        kept, note = whole, f"seeds {[r.seed for r in whole]} of {list(cfg.seeds)} finished the year"
    else:
        done = min(r.seasons_done for r in runs)
        kept = [cut(r, done) for r in runs]
        note = f"the run was stopped: every seed finished the first {done} season(s), reported alone"
    saved = _config(found[0]["config"])
    return dataclasses.replace(saved, seeds=tuple(r.seed for r in kept)), kept, note


def cut(run: SeedRun, seasons: int) -> SeedRun:
    """``run`` as it stood after ``seasons`` seasons."""
    mae = {arm: rows[:seasons] for arm, rows in run.mae.items() if len(rows) >= seasons}
    return dataclasses.replace(run, mae=mae, retrains=run.retrains[:seasons], seasons_done=seasons)


# --------------------------------------------------------------------------- the report


def mean_sd(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def final_mean(run: SeedRun, arm: str) -> float:
    """Mean over the seasons of the MAE after the year (the last row of the matrix)."""
    return statistics.fmean(run.mae[arm][-1])


def forgetting(run: SeedRun, arm: str) -> float:
    """Mean over the seasons before the last of (MAE after the year - MAE just after learning it), MW:
    backward transfer in MAE terms (positive = forgot)."""
    rows = run.mae[arm]
    n = len(rows)
    return statistics.fmean(rows[-1][c] - rows[c][c] for c in range(n - 1))


def learned_mean(run: SeedRun, arm: str) -> float:
    """Mean over the seasons of the MAE right after learning each (the matrix's diagonal): plasticity."""
    return statistics.fmean(run.mae[arm][c][c] for c in range(len(run.mae[arm])))


def report(cfg: Config, runs: list[SeedRun], names: tuple[str, ...], quick: bool, seconds: float,
           spec: ModelSpec, note: str = "") -> Report:  # fmt: skip
    arms = list(runs[0].mae)
    order = ["naive", "replay", *[ewc_name(lam) for lam in cfg.lambdas], RETRAIN]
    arms = [a for a in order if a in arms]
    first = runs[0]
    n_seeds = len(runs)
    sd_note = f"mean ± sd over {n_seeds} seeds" if n_seeds > 1 else "1 seed"
    lines = [
        "Seasons (Southern hemisphere) as tasks, learned in this order: "
        + "; ".join(f"{n} {cal_span(cfg, n)}" for n in names)
        + f". Held out: the 4th day of each season and every 7th after it ({first.counts['held_out']} days), never "
        f"trained on; a day whose samples' targets reach into a held-out day (the day after it) is not trained on "
        f"either: {first.counts['trained']} training days. MAE in MW of the day-ahead forecast of the held-out days "
        f"(section 1's protocol), {sd_note}. These are not section 1's figures (each day forecast by the model of "
        "the day before): here a season's held-out days are forecast by the model as it stands at a season's end, up "
        "to a year later, with the stats of the first 14 days: they measure what is retained.",
        "",
        "Naive forecasts on the same held-out days (deterministic):",
        "",
        md_table(
            ["forecast", *names],
            [[k.replace("_", " "), *[f"{v:.1f}" for v in first.naive[k][: len(names)]]] for k in NAIVE],
        ),
        "",
    ]
    for arm in arms:
        rows = []
        for r, name in enumerate(names):
            cells = [mean_sd([run.mae[arm][r][c] for run in runs]) if c <= r else "" for c in range(len(names))]
            rows.append([f"after {name}", *cells, mean_sd([statistics.fmean(run.mae[arm][r]) for run in runs])])
        lines += [f"**{arm}** (row: after season; column: season's held-out days; last: mean of the seen seasons):",
                  "", md_table(["", *names, "mean"], rows), ""]  # fmt: skip
    summary = []
    for arm in arms:
        final = [final_mean(run, arm) for run in runs]
        kept = [earlier_mean(run, arm) for run in runs]
        forgot = [forgetting(run, arm) for run in runs]
        learned = [learned_mean(run, arm) for run in runs]
        estimated = arm == RETRAIN
        cost = [retrain_year_s(run) if estimated else run.seconds[arm] for run in runs]
        summary.append(
            [
                arm,
                mean_sd(final),
                mean_sd(kept),
                mean_sd(learned),
                mean_sd(forgot),
                mean_sd(cost, 0) + (" (est.)" * estimated),
            ]
        )
    lines += [
        "After the year: mean MAE over the four seasons' held-out days, and over the three earlier ones; just "
        "learned = mean over the seasons of the MAE right after learning each (the diagonal); forgetting = "
        "mean over the first three seasons of (MAE after the year - MAE right after learning that season), MW "
        "(positive = forgot); the year's learning time in seconds (first model, updates and consolidations; the "
        "weekly retrain's estimated as said above). Times are wall-clock of one torch thread on a machine shared "
        "with other work, the arms of a seed in one process one after another: compare them within this table only.",
        "",
        md_table(
            [
                "strategy",
                "after the year, 4 seasons (MW)",
                "3 earlier seasons (MW)",
                "just learned (MW)",
                "forgetting (MW)",
                "year's learning (s)",
            ],
            summary,
        ),  # fmt: skip
        "",
    ]
    cons = [c for run in runs for c in run.consolidations]
    if cons:
        rows = []
        for arm in [ewc_name(lam) for lam in cfg.lambdas]:
            for name in names[:-1]:
                sel = [c for c in cons if c["arm"] == arm and c["after"] == name]
                used = f"{sel[0]['samples']} of {sel[0]['of']}"
                rows.append([arm, name, mean_sd([c["seconds"] for c in sel], 2), used,
                             f"{statistics.fmean(c['fisher_mean'] for c in sel):.3g}",
                             f"{statistics.fmean(c['fisher_median'] for c in sel):.3g}",
                             f"{statistics.fmean(c['fisher_max'] for c in sel):.3g}"])  # fmt: skip
        lines += [
            "Each consolidation (exact Fisher, `learn/train.py::consolidate`, on the CPU, one thread; the Fisher "
            f"after folding, gamma {cfg.gamma}, mean over the seeds):",
            "",
            md_table(["arm", "after", "seconds", "Fisher samples", "F mean", "F median", "F max"], rows),
            "",
        ]
        pens = [p for run in runs for p in run.penalties]
        prow = []
        for arm in [ewc_name(lam) for lam in cfg.lambdas]:
            for name in names[1:]:
                sel = [p for p in pens if p["arm"] == arm and p["season"] == name]
                prow.append([arm, name, f"{statistics.fmean(p['penalty'] for p in sel):.4g}",
                             f"{statistics.fmean(p['train_loss'] for p in sel):.4g}"])  # fmt: skip
        lines += [
            "The EWC penalty at the end of each season after a boundary, beside the last update's training loss "
            "(MSE on normalised targets, replayed samples included): how hard the penalty pulls at that lambda:",
            "",
            md_table(["arm", "end of", "penalty", "train loss"], prow),
            "",
        ]
    retr = [r for run in runs for r in run.retrains]
    lines += [
        "Weekly retrains measured (the ones in force at the season ends; every seed): "
        + ", ".join(f"{r['day']}: {r['samples']} samples {r['seconds']:.1f} s" for r in runs[0].retrains)
        + (f" (seed {runs[0].seed}); {len(retr)} in all." if retr else "."),
        "",
    ]
    verdict, targets = verdict_of(cfg, runs, arms)
    lines += [verdict]
    settings = (
        f"{'QUICK' if quick else 'FULL'}: seeds {list(cfg.seeds)}, "
        + (f"the first {cfg.season_days} days of each season" if cfg.season_days else "whole seasons")
        + f", `{MODEL}` (`{spec.architecture.type}`, train {train_settings(spec)}), replay capacity "
        f"{spec.strategy.replay_capacity} ratio {spec.strategy.replay_ratio}, EWC lambdas {list(cfg.lambdas)}, "
        f"gamma {cfg.gamma}, exact Fisher on up to {cfg.fisher_samples} samples, warm-up {cfg.warmup_days} days, "
        f"retrain every {cfg.retrain_every} days, {cfg.jobs} process(es) of 1 torch thread"
        + (f"; {note}" if note else "")
    )
    return Report("seasons", "1c. Seasons as tasks: naive vs replay vs ewc+replay vs weekly retrain (vic_elec)",
                  settings, "\n".join(lines), targets, seconds)  # fmt: skip


def train_settings(spec: ModelSpec) -> dict:
    """params.yaml's train block as the arms use it (the seed is the run's, the device the CPU)."""
    return {k: v for k, v in dataclasses.asdict(spec.train).items() if k not in ("seed", "device")}


def cal_span(cfg: Config, name: str) -> str:
    first, last = next((f, la) for n, f, la in SEASONS if n == name)
    if cfg.season_days:
        last = min(last, first + timedelta(days=cfg.season_days - 1))
    return f"{first}..{last}"


def retrain_year_s(run: SeedRun) -> float:
    per_sample = statistics.median(r["seconds"] / r["samples"] for r in run.retrains)
    return per_sample * sum(run.retrain_year_samples)


def earlier_mean(run: SeedRun, arm: str) -> float:
    """Mean MAE after the year over the seasons before the last: what is retained."""
    return statistics.fmean(run.mae[arm][-1][:-1])


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and sd over seeds of ``a - b`` (each seed's arms share its first model and data)."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    return statistics.fmean(d), (statistics.stdev(d) if len(d) > 1 else float("nan"))


def scale_notes(cfg: Config, runs: list[SeedRun], best_ewc: str) -> list[str]:
    """What the lambdas mean at this Fisher's scale: the penalty over the training loss, and the price in
    plasticity (MAE on the season just learned) of the best ewc arm against replay."""
    ratios = {}
    for lam in cfg.lambdas:
        sel = [p for run in runs for p in run.penalties if p["arm"] == ewc_name(lam)]
        ratios[lam] = statistics.fmean(p["penalty"] / p["train_loss"] for p in sel) if sel else float("nan")
    fisher = [c["fisher_mean"] for run in runs for c in run.consolidations]
    learned = [learned_mean(run, best_ewc) - learned_mean(run, "replay") for run in runs]
    return [
        f"Scale: the folded Fisher's mean entry is {min(fisher):.3g} to {max(fisher):.3g} (exact, on normalised "
        "targets); at the end of a season the penalty is "
        + ", ".join(f"{100 * r:.0f}% (λ={lam:g})" for lam, r in ratios.items())
        + " of the training loss, so the grid runs from a light to a strong pull.",
        f"Price in plasticity: on the season just learned, {best_ewc} - replay = "
        f"{statistics.fmean(learned):+.1f} MW (mean over seasons and seeds).",
    ]


def verdict_of(cfg: Config, runs: list[SeedRun], arms: list[str]) -> tuple[str, tuple[Target, ...]]:
    """Which strategy wins after the year, by how much, and whether beyond the seeds' sd (paired by seed)."""
    finals = {arm: [final_mean(run, arm) for run in runs] for arm in arms}
    earlier = {arm: [earlier_mean(run, arm) for run in runs] for arm in arms}
    multi = len(runs) > 1

    def beats(a: str, b: str, by: dict[str, list[float]]) -> bool:
        m, s = paired(by[a], by[b])
        return multi and m < 0 and -m > s

    def vs(a: str, b: str, by: dict[str, list[float]]) -> str:
        m, s = paired(by[a], by[b])
        return f"{m:+.1f} ± {s:.1f} MW" if multi else f"{m:+.1f} MW (1 seed: no sd)"

    incremental = [a for a in arms if a != RETRAIN]
    best = min(incremental, key=lambda a: statistics.fmean(finals[a]))
    best_earlier = min(incremental, key=lambda a: statistics.fmean(earlier[a]))
    ewcs = [a for a in incremental if a.startswith("ewc")]
    best_ewc = min(ewcs, key=lambda a: statistics.fmean(finals[a]))
    ewc_wins = beats(best_ewc, "replay", finals)
    default_beaten = best != "replay" and beats(best, "replay", finals)
    lines = [
        f"After the year, the lowest mean MAE over the four seasons' held-out days among the "
        f"incremental strategies is **{best}**'s, {mean_sd(finals[best])} MW; replay (the default) "
        f"{mean_sd(finals['replay'])} MW"
        + ("." if best == "replay" else f": {best} - replay = {vs(best, 'replay', finals)}."),
        f"On the three earlier seasons alone (retention), the lowest is {best_earlier}'s, "
        f"{mean_sd(earlier[best_earlier])} MW (replay {mean_sd(earlier['replay'])})."
        + ("" if best_earlier == "replay" else f" {best_earlier} - replay = {vs(best_earlier, 'replay', earlier)}."),
        f"Best ewc+replay ({best_ewc}) - replay: {vs(best_ewc, 'replay', finals)} after the year: "
        + (
            "**better beyond the sd**."
            if ewc_wins
            else "**not better beyond the sd**."
            if multi
            else "one seed: no sd."
        ),
        f"Replay - naive fine-tuning: {vs('replay', 'naive', finals)}.",
        *scale_notes(cfg, runs, best_ewc),
        f"{best} - weekly retrain ({mean_sd(finals[RETRAIN])} MW): {vs(best, RETRAIN, finals)}.",
    ]
    if not multi:
        recommendation = "one seed: no recommendation (run the full settings)."
    elif ewc_wins:
        lam = best_ewc.split("=")[1]
        recommendation = (f"`demand_forecaster` strategy `ewc+replay` with `ewc_lambda: {lam}` (exact Fisher, gamma "
                          f"{cfg.gamma}, consolidating at each season boundary).")  # fmt: skip
    elif default_beaten:
        recommendation = f"`{best}` (it beats the default beyond the sd; ewc+replay does not beat replay)."
    else:
        recommendation = "keep `replay`: no strategy beats it beyond the seeds' sd on this year."
    lines.append(f"Recommendation (params.yaml is not changed by this bench; the lead decides): {recommendation}")
    detail = f"best {best} {statistics.fmean(finals[best]):.1f} vs replay {statistics.fmean(finals['replay']):.1f} MW"
    targets = (
        Target("the default forecaster strategy (replay) is not beaten beyond the seed sd after the year",
               (not default_beaten) if multi else None,
               detail + ("" if best == "replay" else f"; {best} - replay = {vs(best, 'replay', finals)}")),
        Target("ewc+replay, consolidating at each season boundary, beats replay beyond the seed sd after the year",
               ewc_wins if multi else None, f"{best_ewc} - replay = {vs(best_ewc, 'replay', finals)}"),
    )  # fmt: skip
    return "\n".join(["**Verdict.**", "", *(f"- {line}" for line in lines)]), targets


def bench(quick: bool, seeds: tuple[int, ...] | None = None, lambdas: tuple[float, ...] | None = None,
          jobs: int | None = None, reuse: bool = False) -> Report:  # fmt: skip
    torch.set_num_threads(1)
    started = time.perf_counter()
    seeds = seeds or ((0,) if quick else (0, 1, 2))
    cfg = Config(
        seeds=seeds,
        lambdas=lambdas or (1.0, 10.0, 100.0),
        season_days=21 if quick else None,
        jobs=jobs or (1 if quick else len(seeds)),
    )
    params = load_params()
    spec = params.model(MODEL)
    mode = "quick" if quick else "full"
    saved = OUT_DIR / f"seasons_{mode}.json"
    note = ""
    if reuse and saved.exists():  # the report of a run already made: its settings and wall time come with it
        data = json.loads(saved.read_text())
        runs = [SeedRun(**r) for r in data["runs"]]
        cfg, seconds = _config(data["config"]), float(data["seconds"])
        note = f"reported from the run started {data.get('started', '?')} at commit {data.get('commit', '?')}"
    elif reuse:  # a run stopped part way: what its seeds saved after each season
        cfg, runs, note = load_partial(mode, cfg)
        seconds = float("nan")
    else:
        from bench.run import commit

        when, head = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), commit()
        runs = run(cfg, mode)
        seconds = time.perf_counter() - started
        data = {"config": dataclasses.asdict(cfg), "seconds": seconds, "started": when, "commit": head,
                "runs": [dataclasses.asdict(r) for r in runs]}  # fmt: skip
        saved.write_text(json.dumps(data))
    done = min(r.seasons_done for r in runs)
    if done < 2:
        raise ValueError(f"only {done} season(s) measured: nothing to compare")
    names = tuple(n for n, _, _ in SEASONS)[:done]
    return report(cfg, runs, names, quick, seconds, spec, note)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, the first 21 days of each season")
    parser.add_argument("--seeds", default="", help="comma-separated train seeds (default 0,1,2; quick 0)")
    parser.add_argument("--lambdas", default="", help="EWC lambdas (default 1,10,100)")
    parser.add_argument("--jobs", type=int, default=None, help="processes, one seed each (default: seeds; quick 1)")
    parser.add_argument("--reuse", action="store_true", help="report the run saved in bench/out (no training)")
    return parser.parse_args(argv)


def bench_args(argv: list[str]) -> Report:
    """:func:`bench` with command-line arguments (``bench/run.py`` passes ``BENCH_SEASONS_ARGS``)."""
    args = parse(argv)
    seeds = tuple(int(s) for s in args.seeds.split(",") if s) or None
    lambdas = tuple(float(s) for s in args.lambdas.split(",") if s) or None
    return bench(args.quick, seeds, lambdas, args.jobs, args.reuse)


def main(argv: list[str] | None = None) -> str:
    return bench_args(sys.argv[1:] if argv is None else argv).show()


if __name__ == "__main__":
    main(sys.argv[1:])
