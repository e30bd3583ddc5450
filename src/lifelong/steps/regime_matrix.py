"""A daily forecaster's task matrix over its regimes: how each regime's closing version forecasts
the days of every regime up to its own.

The daily path opens a new task (regime) of the model's own series at each task shift
(:mod:`lifelong.steps.shift`); the champion's state records them, with their date ranges, in
``state.extra["regimes"]``. Row ``i`` is the version that served when regime ``i`` closed: the
champion the shift's consolidation started from (its MLflow record,
:func:`lifelong.registry.shift_consolidation`); the last row is the current champion, whose regime
is still open. ``matrix[i][j]`` (``j <= i``) is that version's day-ahead MAE, in the target's units,
over the stored days of regime ``j`` (every day's steps pooled, as
:func:`lifelong.steps.forecast_tasks.task_scores` pools a task's test days); a ``naive`` row holds the
weekly seasonal naive's MAE (same half-hour a week before) on the same targets.

These are **not held-out** errors: the daily path is test-then-train, so each day was forecast
once before it was learned and every cell reads days its row's version has trained on. The
diagonal is how well a version fits the regime it has just learned; down a column, the same days
read by later versions, so a rise down a column is forgetting: the matrix measures retention.
``backward_transfer_mae`` follows the forecasters' task-addition matrix
(:func:`lifelong.steps.tasks.evaluate_all`): positive means earlier regimes' MAE rose.

A column holds the regime's days that have a full input window and a weekly naive (a week of
history stored before it): the model and the naive are scored on the same targets. Its samples
are built once and read by every row (the cost is one forward pass per day per row).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from lifelong import registry
from lifelong.data.snapshot import CachedSnapshot, Snapshot
from lifelong.errors import LifelongError
from lifelong.learn import metrics
from lifelong.learn.state import LearnerState
from lifelong.steps import forecast_tasks, inputs
from lifelong.steps.context import Context, NotReady
from lifelong.steps.shift import current_task

NAIVE = "weekly_naive"


@dataclass(frozen=True)
class Regime:
    """One task of the daily path: its id and the days it spans (``last``: the last day learned)."""

    task: str
    first: date
    last: date
    opened_by: tuple[str, ...]
    learned: bool = True  # False: closed by a second shift before any version learned a day of it


def regimes_of(state: LearnerState) -> list[Regime]:
    """The regimes ``state`` records, oldest first; the open one ends at ``trained_through``.

    A state from before regimes were recorded (or a model that never shifted) has one regime,
    from the first day its history names; none when it names no day at all.
    """
    recorded = [r for r in state.extra.get("regimes") or [] if isinstance(r, dict) and r.get("task")]
    if not recorded:
        first = next((h["date"] for h in state.history if h.get("date")), None)
        if first is None or state.trained_through is None:
            return []
        recorded = [{"task": current_task(state), "from": first, "to": None, "opened_by": []}]
    out = []
    for r in recorded:
        last = r.get("to") or state.trained_through
        if r.get("from") and last:
            out.append(
                Regime(
                    str(r["task"]),
                    date.fromisoformat(r["from"]),
                    date.fromisoformat(last),
                    tuple(r.get("opened_by") or ()),
                    r.get("learned", True) is not False,
                )
            )
    return out


def closing_version(model: str, closing: Regime, opened: Regime) -> str | None:
    """The version that served when ``closing`` ended: the champion that the consolidation opening
    ``opened`` started from (the shift ran the day after the opened regime's first day)."""
    shift_day = opened.first + timedelta(days=1)
    record = registry.shift_consolidation(model, str(shift_day))
    if record is None or record.get("fisher_task") not in (None, closing.task):
        return None
    return record.get("champion")


@dataclass
class _Column:
    """A regime's scored days: their day-ahead samples, built once with one set of statistics."""

    days: list[date]
    samples: list[inputs.DayAhead]


def _column(ctx: Context, snap: Snapshot, regime: Regime, stored: set[date], stats: dict) -> _Column:
    days, samples = [], []
    span = (regime.last - regime.first).days + 1
    for day in (regime.first + timedelta(days=k) for k in range(span)):
        if day not in stored:
            continue
        try:
            sample = inputs.day_ahead_sample(ctx, snap, day, stats)
        except NotReady:  # the first days of the data: no full input window yet
            continue
        if NAIVE in sample.naive:  # the model and the naive on the same targets
            days.append(day)
            samples.append(sample)
    return _Column(days, samples)


def _stats_key(stats: dict) -> str:
    return json.dumps(stats, sort_keys=True, default=str)


def regime_matrix(model: str) -> dict[str, Any]:
    """The champion's regimes and the matrix of their closing versions' day-ahead MAE (see the
    module docstring); JSON-ready (an empty cell, above the diagonal or of a version not found,
    is None).

    Keys: ``model``, ``champion``, ``data_version`` (the champion's: the days read), ``unit`` (the
    target column), ``tasks``, ``ranges`` (``[first, last]`` per regime), ``opened_by``,
    ``learned`` (False for a regime closed before any version learned a day of it), ``versions`` (row
    ``i``'s version), ``matrix``, ``naive`` (the weekly naive's MAE per column),
    ``days`` (days per column), ``average_mae`` (the last row's mean), ``backward_transfer_mae``
    and ``note`` (what the cells measure).
    """
    ctx = Context.of(model)
    if not forecast_tasks.is_forecaster(ctx) or not inputs.day_ahead(ctx.spec):
        raise LifelongError(f"{model} is not a day-ahead forecaster: its task matrix is the task-addition DAG's")
    champion = registry.champion(model)
    if champion is None:
        raise LifelongError(f"{model} has no champion yet: no regime has been learned")
    state = registry.load_state_of(model, champion, ctx.spec.architecture)
    regimes = regimes_of(state)
    data_version = registry.data_version_of(model, champion)
    base = inputs.snapshot(ctx, data_version)
    snap = CachedSnapshot(base.version, base.files)  # each stored day read once, whatever windows read it
    stored = snap.days(ctx.dataset.name)
    versions = [closing_version(model, r, regimes[i + 1]) for i, r in enumerate(regimes[:-1])]
    versions += [champion] if regimes else []
    states = {champion: state}
    columns: dict[tuple[int, str], _Column] = {}
    matrix: list[list[float]] = []
    naive: list[float] = [math.nan] * len(regimes)
    days: list[int] = [0] * len(regimes)
    for i, version in enumerate(versions):
        row = [math.nan] * len(regimes)
        if version is not None:
            row_state = states.get(version) or registry.load_state_of(model, version, ctx.spec.architecture)
            stats = row_state.stats or {}
            for j in range(i + 1):
                column = columns.get((j, _stats_key(stats)))
                if column is None:
                    column = columns[(j, _stats_key(stats))] = _column(ctx, snap, regimes[j], stored, stats)
                if not column.samples:
                    continue
                scores = forecast_tasks.pooled_scores(row_state, column.samples, stats)
                row[j], naive[j], days[j] = scores["mae"], scores[f"{NAIVE}_mae"], len(column.days)
        matrix.append(row)
    average = metrics.average_accuracy(matrix) if matrix else math.nan  # the last row's mean, as evaluate_all
    transfer = _learned_transfer(matrix, [r.learned for r in regimes])
    return {
        "model": model,
        "champion": champion,
        "data_version": data_version,
        "unit": ctx.dataset.target,
        "tasks": [r.task for r in regimes],
        "ranges": [[str(r.first), str(r.last)] for r in regimes],
        "opened_by": [list(r.opened_by) for r in regimes],
        "learned": [r.learned for r in regimes],
        "versions": versions,
        "matrix": [[_json(v) if j <= i else None for j, v in enumerate(row)] for i, row in enumerate(matrix)],
        "naive": {"metric": f"{NAIVE}_mae", "row": [_json(v) for v in naive]},
        "days": days,
        "average_mae": _json(average),
        "backward_transfer_mae": _json(transfer),
        "backward_transfer_sign": "positive: earlier regimes' MAE rose since they closed (forgetting)",
        "note": NOTE,
    }


def _learned_transfer(matrix: list[list[float]], learned: list[bool]) -> float:
    """Backward transfer over the regimes some version learned: a never-learned regime's diagonal is the
    previous version forecasting days it never trained on (held out), so a change from it is not forgetting.

    >>> _learned_transfer([[1.0, 0.0, 0.0], [2.0, 5.0, 0.0], [3.0, 4.0, 1.0]], [True, False, True])
    2.0
    """
    keep = [j for j, flag in enumerate(learned) if flag]
    if len(matrix) < 2 or len(keep) < 2:
        return 0.0
    return metrics.backward_transfer([[matrix[i][j] for j in keep] for i in keep])


NOTE = (
    "days each row's version has learned (test-then-train: each day was forecast once before it was "
    "learned): an earlier column measures retention (forgetting shows as a rise down the column), not "
    "held-out error"
)


def _json(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def format_matrix(found: dict[str, Any], unit: str = "") -> list[str]:
    """``found`` (:func:`regime_matrix`) as the lines the demo and ``lifelong task-matrix`` print:
    rows ``after <task>``, a column per task, one decimal, the weekly naive and the days per column."""
    tasks = found["tasks"]
    unit = unit or (f"{found['unit']}'s units" if found.get("unit") else "")
    if len(tasks) < 2:
        if not tasks:
            return [f"task matrix of {found['model']}: its champion records no task (no day learned)"]
        first, last = found["ranges"][0]
        return [f"task matrix of {found['model']}: one task so far, task {tasks[0]} ({first} to {last}); "
                "a task shift opens the next"]  # fmt: skip
    width = max(9, *(len(t) + 2 for t in tasks))
    label = max(16, *(len(f"after {t} (v{v})") + 2 for t, v in zip(tasks, found["versions"], strict=True)))

    def cells(values: list[Any]) -> str:
        return "".join(f"{'-' if v is None else f'{v:.1f}':>{width}}" for v in values)

    lines = [
        f"task matrix of {found['model']} over its regimes: day-ahead MAE{f' ({unit})' if unit else ''}; row = the "
        "version serving when that task closed (the last: the champion), column = that task's days",
        "  (days the row's version learned: test-then-train forecast each day once before learning it, so a column",
        "  measures retention and a rise down it is forgetting; not held-out error)",
        "  " + " " * label + "".join(f"{t:>{width}}" for t in tasks),
    ]
    learned = found.get("learned") or [True] * len(tasks)
    for task, version, row, flag in zip(tasks, found["versions"], found["matrix"], learned, strict=True):
        name = f"after {task} (v{version or '?'})" + ("" if flag else "*")
        lines.append("  " + name.ljust(label) + cells(row))
    lines.append("  " + "weekly naive".ljust(label) + cells(found["naive"]["row"]))
    lines.append("  " + "days".ljust(label) + "".join(f"{d:>{width}}" for d in found["days"]))
    spans = (f"{t} {r[0]}..{r[1]}" for t, r in zip(tasks, found["ranges"], strict=True))
    lines.append(f"  tasks: {'; '.join(spans)}")
    unlearned = [t for t, flag in zip(tasks, learned, strict=True) if not flag]
    if unlearned:
        lines.append(
            f"  * never learned: task {', '.join(unlearned)} closed by the next shift before a candidate trained on "
            "its days was promoted; its row is the version before it and its column is held-out error (left out "
            "of the backward transfer)"
        )
    average, transfer = found["average_mae"], found["backward_transfer_mae"]
    lines.append(
        f"  average (last row) {'-' if average is None else f'{average:.1f}'}, backward transfer "
        f"{'-' if transfer is None else f'{transfer:+.1f}'} (positive: earlier tasks' MAE rose, forgetting)"
    )
    return lines
