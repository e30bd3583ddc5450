"""A forecaster's tasks: other series, each a forecast data set of params.yaml, beside its own.

A forecaster's first task is its own data set (named by it: ``vic_elec``), learned day by day by
the daily DAG; a later one is another forecast data set (another region's demand) whose inputs
mean the same thing to the model: same target, features, frequency, lags and known-future
columns (:data:`PAIRED`). A task that the daily path opened on the model's own series (a regime,
not a data set) is read from the model's own data set.

The days of a task, and how they split (deterministic, nothing random):

* a new task's days are its data set's stored days in the data version;
* of a new task's days, the last :data:`TEST_SHARE` (at least one day) are the **test** days, the
  days before them the **train** days: a task is judged on the days after the ones it learned
  from, as a forecaster is used. The test days' forecasts read the train days as history (lags,
  input window), never as targets;
* the model's own data set's train days are its last :data:`OWN_WINDOW_DAYS` stored days up to
  the state's ``trained_through`` (the days it learned: what consolidation protects), its test
  days the last :data:`TEST_SHARE` of those: days it learned, so what the matrix follows on its
  first task is how much of them it keeps.

Normalisation, per task: the model's own data set (and a regime of it) keeps the model's
statistics (``state.stats``, fitted on its first series, which the served model and the daily
DAG use); a new series gets its own mean/std, fitted on its train days when it is learned and
kept in the state (``state.extra["task_stats"][task]``), so that every series reaches the
network on the same scale. Measured on a synthetic region at 0.6x and 0.3x the scale
(``python -m bench.forecast_task_stats``, README): with the model's statistics the new task's MAE
was 1.5x-1.8x higher and the first task's 1.4x-1.8x higher (more forgetting) than with per-task ones.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import date, timedelta

import torch
from torch import Tensor

from lifelong import registry
from lifelong.config import DatasetSpec
from lifelong.data import store, windows
from lifelong.data.snapshot import Snapshot
from lifelong.errors import LifelongError, RefusedBatch, TaskMismatch
from lifelong.learn import metrics
from lifelong.learn.state import LearnerState
from lifelong.steps import inputs
from lifelong.steps.context import Context, NotReady, parse_day
from lifelong.steps.contracts import IngestResult, Scores

# what the model's inputs are made of: a task's data set must agree on each
PAIRED = ("kind", "target", "features", "frequency", "lags", "known_future")
TEST_SHARE = 0.2
OWN_WINDOW_DAYS = 28
# a new task's range: enough days that the last fifth has a week of history (the weekly naive)
MIN_TASK_DAYS = 10
MAX_TASK_DAYS = 366


def is_forecaster(ctx: Context) -> bool:
    return ctx.dataset.kind == "forecast"


def task_dataset(ctx: Context, task: str) -> DatasetSpec:
    """The data set a task of the forecaster reads: a declared forecast data set, else its own."""
    found = ctx.params.datasets.get(task)
    return found if found is not None and found.kind == "forecast" else ctx.dataset


def for_task(ctx: Context, task: str) -> Context:
    """``ctx`` reading the task's data set (same model, same inputs)."""
    return dataclasses.replace(ctx, dataset=task_dataset(ctx, task))


def first_task(ctx: Context, state: LearnerState) -> list[str]:
    """The tasks ``state`` has learned, its own data set first when the state names none (a model
    the daily DAG trained, before any task addition)."""
    return list(state.tasks) or [ctx.dataset.name]


def check_pairing(ctx: Context, task: str) -> DatasetSpec:
    """The data set of ``task`` when it can be a new task of the forecaster; :class:`TaskMismatch`
    naming what does not match otherwise (before anything is ingested or trained)."""
    own, model = ctx.dataset, ctx.model
    if task == own.name:
        raise TaskMismatch(f"task {task!r} is {model}'s own data set: its first task, learned by the daily DAG")
    forecast = sorted(n for n, d in ctx.params.datasets.items() if d.kind == "forecast" and n != own.name)
    if task not in ctx.params.datasets:
        known = ", ".join(forecast) or "none declared"
        raise TaskMismatch(
            f"task {task!r}: {model} is a forecaster, its tasks are forecast data sets of params.yaml "
            f"(declared: {known}); no data set {task!r}"
        )
    ds = ctx.params.datasets[task]
    if ds.kind != own.kind:
        raise TaskMismatch(
            f"task {task!r} is a {ds.kind} data set; {model} is a forecaster, its tasks are forecast data sets "
            f"(declared: {', '.join(forecast) or 'none'})"
        )
    mismatched = [f"{key} {getattr(ds, key)!r} (model's {own.name}: {getattr(own, key)!r})"
                  for key in PAIRED if getattr(ds, key) != getattr(own, key)]  # fmt: skip
    if mismatched:
        raise TaskMismatch(
            f"task {task!r} does not match {model}'s inputs: {'; '.join(mismatched)}; a forecaster's task "
            f"must have the same {', '.join(PAIRED)} as its data set"
        )
    champion = registry.champion(model)
    if champion is None:
        raise TaskMismatch(f"{model} has no champion yet: its first task, {own.name}, is learned by the daily DAG")
    known_tasks = first_task(ctx, registry.load_state_of(model, champion, ctx.spec.architecture))
    if task in known_tasks:
        raise TaskMismatch(
            f"task {task!r} was already learned by {model} v{champion} (tasks: {', '.join(known_tasks)})"
        )
    return ds


def task_range(start: str | date | None, end: str | date | None) -> list[date]:
    """The days ``start`` to ``end`` (inclusive) of a forecast task; refused unless both are given,
    in order, and :data:`MIN_TASK_DAYS` to :data:`MAX_TASK_DAYS` long.

    >>> [str(d) for d in task_range("2012-03-01", "2012-03-10")][-1]
    '2012-03-10'
    """
    if start is None or end is None:
        raise TaskMismatch("a forecast task is ingested over a date range: give start and end (YYYY-MM-DD)")
    first, last = parse_day(start), parse_day(end)
    count = (last - first).days + 1
    if not MIN_TASK_DAYS <= count <= MAX_TASK_DAYS:
        raise TaskMismatch(
            f"a forecast task needs {MIN_TASK_DAYS} to {MAX_TASK_DAYS} days (the last fifth are its test days, "
            f"each with a week of history); {first} to {last} is {count}"
        )
    return [first + timedelta(days=i) for i in range(count)]


def ingest_days(ds: DatasetSpec, days: list[date]) -> IngestResult:
    """Validate and store each landed day of a task (the per-day GX checks of the daily DAG).

    Every day is tried: a refused day is quarantined as usual, a day without a landing file is
    named; if any, the task addition is refused (:class:`RefusedBatch` listing them) and nothing
    is trained. The days that passed stay stored: valid data, and a re-run once the refused days
    are fixed finds them unchanged.
    """
    results, refused = [], []
    for day in days:
        try:
            results.append(store.ingest(ds.name, day=day))
        except RefusedBatch as exc:
            refused.append(f"{day} ({exc})")
        except store.MissingBatch as exc:
            refused.append(f"{day} (no landing file: {exc})")
    if refused:
        raise RefusedBatch(
            f"{ds.name}: {len(refused)} of {len(days)} days refused, task addition stopped, nothing trained: "
            + "; ".join(refused)
        )
    last = results[-1]
    return IngestResult(
        dataset=ds.name,
        partition=f"{days[0]}..{days[-1]}",
        rows=sum(r.rows for r in results),
        data_version=last.data_version,
        report_path=last.report_path,
        data_docs_path=last.data_docs_path,
        replaced=any(r.replaced for r in results),
        changed=any(r.changed for r in results),
        validation_s=round(sum(r.validation_s for r in results), 3),
    )


def split_days(days: list[date]) -> tuple[list[date], list[date]]:
    """``(train, test)``: the last :data:`TEST_SHARE` of ``days`` (at least one) test, the rest train.

    >>> train, test = split_days([date(2012, 3, d) for d in range(1, 11)])
    >>> len(train), [str(d) for d in test]
    (8, ['2012-03-09', '2012-03-10'])
    """
    days = sorted(days)
    test = max(1, math.ceil(len(days) * TEST_SHARE - 1e-9))
    return days[:-test], days[-test:]


def task_days(ctx: Context, snap: Snapshot, task: str, state: LearnerState, split: str) -> list[date]:
    """The ``split`` (train / test) days of ``task`` in ``snap`` (the module docstring's rule)."""
    ds = task_dataset(ctx, task)
    days = sorted(snap.days(ds.name))
    own = ds.name == ctx.dataset.name
    if own:
        learned = date.fromisoformat(state.trained_through) if state.trained_through else None
        days = [d for d in days if learned is None or d <= learned][-OWN_WINDOW_DAYS:]
    if len(days) < 2:
        raise NotReady(f"task {task!r}: {len(days)} stored day(s) of {ds.name}; a task needs train and test days")
    train, test = split_days(days)
    if split == "test":
        return test
    return days if own else train


TASK_STATS = "task_stats"  # the key of state.extra that holds each new series' statistics


def stats_for(ctx: Context, state: LearnerState, task: str) -> dict:
    """The statistics ``task`` is normalised with: the model's own for its own data set, else the
    task's own, kept in the state when it was learned (:func:`fit_task_stats`)."""
    if task_dataset(ctx, task).name == ctx.dataset.name:
        assert state.stats is not None, "a forecaster's state carries its normalisation statistics"
        return state.stats
    kept = state.extra.get(TASK_STATS, {})
    if not isinstance(kept, dict) or not isinstance(kept.get(task), dict):
        raise LifelongError(f"task {task!r}: the state holds no normalisation statistics for it (not learned)")
    return kept[task]


def fit_task_stats(ctx: Context, snap: Snapshot, state: LearnerState, task: str) -> dict:
    """Fit a new series' mean/std on its train days and keep them in ``state`` (``extra["task_stats"]``)."""
    days = task_days(ctx, snap, task, state, "train")
    ds = task_dataset(ctx, task)
    stats = windows.fit_stats(snap.read_days(ds, days[0], days[-1]), ds)
    state.extra = {**state.extra, TASK_STATS: {**state.extra.get(TASK_STATS, {}), task: stats}}
    return stats


def champion_state(ctx: Context) -> LearnerState:
    champion = registry.champion(ctx.model)
    if champion is None:
        raise LifelongError(f"{ctx.model} has no champion: its tasks are read with the champion's statistics")
    return registry.load_state_of(ctx.model, champion, ctx.spec.architecture)


def task_arrays(
    ctx: Context, snap: Snapshot, task: str, split: str, state: LearnerState | None = None
) -> tuple[Tensor, Tensor]:
    """Day-ahead training samples (every forecast origin) of the ``split`` days of ``task``, normalised
    with the task's statistics in ``state`` (default: the champion, the state a task addition starts from)."""
    state = state if state is not None else champion_state(ctx)
    days = task_days(ctx, snap, task, state, split)
    return inputs.forecast_days(for_task(ctx, task), snap, days, stats_for(ctx, state, task))


def task_scores(ctx: Context, snap: Snapshot, state: LearnerState, task: str) -> Scores:
    """``state``'s day-ahead forecasts of the test days of ``task``, in the target's units: MAE, RMSE,
    MAPE and MASE beside the naive forecasts' MAE on the same targets (:func:`metrics.forecast_scores`).

    A naive forecast that cannot be made on every test day (history missing) is left out; without
    the weekly naive, ``mase`` is NaN, which a gate that needs it refuses.
    """
    stats = stats_for(ctx, state, task)
    tctx = for_task(ctx, task)
    samples = [inputs.day_ahead_sample(tctx, snap, day, stats) for day in task_days(ctx, snap, task, state, "test")]
    return pooled_scores(state, samples, stats)


def pooled_scores(state: LearnerState, samples: list[inputs.DayAhead], stats: dict) -> Scores:
    """``state``'s day-ahead forecasts of ``samples`` (built with ``stats``), every day's steps pooled,
    in the target's units: :func:`metrics.forecast_scores` beside the naive forecasts that could be
    made on every day (``mase`` NaN without the weekly naive)."""
    x, y = torch.cat([s.x for s in samples]), torch.cat([s.y for s in samples])
    pred, true = metrics.forecast_in_units(state.model, x, y, windows.target_scale(stats))  # one batch
    pred = torch.cat([pred[k, : s.steps] for k, s in enumerate(samples)]).double()
    true = torch.cat([true[k, : s.steps] for k, s in enumerate(samples)]).double()
    common = set.intersection(*(set(s.naive) for s in samples))
    naive = {k: torch.cat([s.naive[k] for s in samples]).double() for k in sorted(common)}
    if "weekly_naive" in naive:
        return {k: float(v) for k, v in metrics.forecast_scores(pred, true, naive).items()}
    return {**metrics.forecast_errors(pred, true), "mape": metrics.mape(pred, true), "mase": math.nan,
            "steps": float(true.numel())}  # fmt: skip
