"""The task-addition steps: ingest_task, consolidate, learn_task, evaluate_all.

A task is a new machine type, a new region: learned without forgetting the ones before,
with the strategy of the trigger form (EWC, LwF, replay, or a mix), and measured as a new
row of the accuracy matrix over every task seen so far.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from lifelong import faults, notify, plots, recovery, registry, serving
from lifelong.config import STRATEGIES, ConfigError, ModelSpec, params_hash, to_jsonable
from lifelong.data import store
from lifelong.errors import LifelongError, RegistryError, TaskMismatch
from lifelong.learn import metrics, train
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.steps import forecast_tasks, inputs
from lifelong.steps.changes import changes_model
from lifelong.steps.context import Context, RunInfo
from lifelong.steps.contracts import (
    ConsolidationResult,
    IngestResult,
    TaskCandidateResult,
    TaskEvaluationResult,
)

OVERRIDES = ("strategy", "ewc_lambda", "epochs", "replay_capacity")


def ingest_task(
    model: str,
    task: str,
    *,
    file: str | None = None,
    start: str | None = None,
    end: str | None = None,
    run_info: RunInfo | dict | None = None,
) -> IngestResult:
    """Validate and store a new task's data (task-addition DAG), once its pairing with the model is checked.

    A classifier's task is a landing file (``file``, default ``<task>.parquet``); a forecaster's is
    another forecast data set, ingested day by day from ``start`` to ``end``
    (:func:`lifelong.steps.forecast_tasks.ingest_days`). A task that does not fit the model
    (:class:`TaskMismatch`) is refused before anything is read.
    """
    ctx = Context.of(model, run_info)
    if forecast_tasks.is_forecaster(ctx):
        ds = forecast_tasks.check_pairing(ctx, task)
        return forecast_tasks.ingest_days(ds, forecast_tasks.task_range(start, end))
    ds = ctx.dataset
    if task in ctx.params.datasets and task not in ds.tasks:
        kind = ctx.params.datasets[task].kind
        raise TaskMismatch(
            f"task {task!r} is a {kind} data set; {model} is a classifier, its tasks are those of {ds.name}"
            f" ({', '.join(ds.tasks) or 'its landing files'})"
        )
    if ds.tasks and task not in ds.tasks:
        raise TaskMismatch(f"task {task!r} is not declared for dataset {ds.name} (known: {', '.join(ds.tasks)})")
    if start is not None or end is not None:
        raise TaskMismatch(f"{model} is a classifier: its task is a landing file, not a date range")
    result = store.ingest(ds.name, task=task, file=Path(file) if file else None)
    return IngestResult(**result.as_dict())  # type: ignore[typeddict-item]


def task_spec(spec: ModelSpec, overrides: dict[str, Any] | None) -> ModelSpec:
    """The model spec with the trigger form's overrides (strategy, lambda, epochs, replay size).

    >>> from lifelong.config import ArchitectureSpec
    >>> spec = ModelSpec(name="m", dataset="d", architecture=ArchitectureSpec(type="mlp_classifier"))
    >>> task_spec(spec, {"strategy": "lwf", "epochs": 2, "ewc_lambda": None}).strategy.name
    'lwf'
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(OVERRIDES))
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a task-addition setting (allowed: {', '.join(OVERRIDES)})")
    strategy, train = spec.strategy, spec.train
    if "strategy" in given:
        if given["strategy"] not in STRATEGIES:
            raise ConfigError(f"strategy: must be one of {', '.join(STRATEGIES)}; got {given['strategy']!r}")
        strategy = dataclasses.replace(strategy, name=given["strategy"])
    if "ewc_lambda" in given:
        strategy = dataclasses.replace(strategy, ewc_lambda=float(given["ewc_lambda"]))
    if "replay_capacity" in given:
        strategy = dataclasses.replace(strategy, replay_capacity=int(given["replay_capacity"]))
    if "epochs" in given:
        train = dataclasses.replace(train, epochs=int(given["epochs"]))
    return dataclasses.replace(spec, strategy=strategy, train=train)


@changes_model
def consolidate(
    model: str,
    task: str,
    ingest: IngestResult,
    *,
    overrides: dict[str, Any] | None = None,
    run_info: RunInfo | dict | None = None,
) -> ConsolidationResult:
    """Fold the exact Fisher of the champion on its latest task into the online Fisher.

    Starts from the champion every time, so a retry never folds the same task twice. The
    consolidated state is logged as an MLflow run (not a model version) for ``learn_task``.
    A forecaster whose champion has a task shift's consolidation pending (its candidate not yet
    promoted) starts from that consolidation instead (:func:`lifelong.steps.shift.starting_state`),
    so the shift's closed regime, its Fisher and the task it opened are not lost. Weights that have
    not moved since their last consolidation (:func:`at_anchors`, as there) are not folded again.
    """
    ctx = Context.of(model, run_info)
    ctx = ctx.with_spec(task_spec(ctx.spec, overrides))
    version = ingest["data_version"]
    champion = registry.champion(model)
    base = {"model": model, "task": task, "data_version": version}
    if champion is None:
        return ConsolidationResult(  # type: ignore[typeddict-item]
            **base, champion=None, consolidated=False, fisher_task=None, run_id=None, duration_s=0.0
        )
    from lifelong.steps import shift  # it folds with this module's fold

    state, pending = shift.starting_state(ctx, champion)
    if task in state.tasks:
        raise LifelongError(
            f"task {task!r} was already learned by {model} v{champion} (tasks: {', '.join(state.tasks)})"
        )
    previous = forecast_tasks.first_task(ctx, state)[-1]
    if pending:  # a task shift consolidated the champion: its regimes and Fisher are kept
        ctx.progress(f"v{champion} has a pending shift consolidation (run {pending}): the task addition starts from it")
    if at_anchors(state):
        x = y = None
        by = f" (by the pending task-shift run {pending})" if pending else ""
        why = f"v{champion}'s weights have not moved since they were consolidated{by}"
    else:
        x, y = inputs.task_arrays(ctx, inputs.snapshot(ctx, version), previous, "train")
        why = None
    folded = fold(ctx, state, x, y, champion=champion, closing=previous, opening=task, not_folded=why)
    return ConsolidationResult(  # type: ignore[typeddict-item]
        **base, champion=champion, consolidated=True, fisher_task=previous, run_id=folded.run_id,
        duration_s=folded.duration_s,
    )  # fmt: skip


def at_anchors(state: LearnerState) -> bool:
    """Whether the state's weights are the ones its last consolidation anchored (EWC's anchors, LwF's
    teacher): nothing was learned since, so a consolidation now would fold the same weights' Fisher again."""
    anchors = state.anchors
    if not anchors:
        return False
    named = [(name, p) for name, p in state.model.named_parameters() if name in anchors]
    return bool(named) and all(torch.equal(p.detach().cpu(), anchors[name].cpu()) for name, p in named)


@dataclasses.dataclass(frozen=True)
class Folded:
    """What :func:`fold` did: the run holding the consolidated state, its cost, the Fisher's sample count."""

    run_id: str
    duration_s: float
    fisher_samples: int


def fold(
    ctx: Context,
    state: LearnerState,
    x: Any,
    y: Any,
    *,
    champion: str,
    closing: str,
    opening: str,
    run_key: str | None = None,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    json_files: dict[str, Any] | None = None,
    not_folded: str | None = None,
) -> Folded:
    """The champion's state consolidated on its closing task ``(x, y)`` with the model's strategy, logged as
    an MLflow run (not a version) with the Fisher per layer, and announced: the one consolidation of
    both the task-addition DAG and the daily DAG's task shifts.

    EWC parts fold the exact per-sample Fisher into the online Fisher (``F <- gamma F + F_new``) and set
    the anchors; LwF sets its teacher; replay alone has nothing to fold (the consolidation is counted).

    ``not_folded`` (why): the state's weights were consolidated already and have not moved since
    (:func:`at_anchors`: a shift's pending consolidation, whose task no promoted version learned), so
    nothing is computed: folding the same weights' Fisher again would count their closing data twice.
    The run is logged all the same (the task list changed), with the reason as its ``not_folded`` param;
    ``x`` and ``y`` are not read.
    """
    started = time.perf_counter()
    spec = ctx.spec.strategy
    used = 0
    if not_folded is None:
        strategy = make_strategy(spec, task_kind(ctx.spec.architecture), state)
        train.consolidate(state, strategy, x, y, device=ctx.train_spec().device)
        if any(p.name == "ewc" for p in strategy.parts):
            used = min(len(x), spec.fisher_samples) if spec.fisher_samples > 0 else len(x)
    duration = round(time.perf_counter() - started, 3)
    skipped = {} if not_folded is None else {"not_folded": not_folded}
    run_id = registry.log_state_run(
        ctx.model,
        state,
        run_name=f"consolidate {closing} before {opening}",
        params={"strategy": spec.name, "fisher_task": closing, "champion": champion, **skipped, **(params or {})},
        metrics={"consolidate_s": duration, "fisher_samples": float(used), **(metrics or {})},
        plots={"fisher_per_layer": plots.fisher_magnitude(state.fisher)} if state.fisher else {},
        json_files=json_files,
        run_key=run_key,
    )
    done = f"consolidated before learning {opening}" if not_folded is None else f"closed, not folded ({not_folded})"
    notify.alert(
        "consolidate", model=ctx.model, version=champion, reason=f"{closing} {done}",
        figures={"fisher_task": closing, "task": opening, "run_id": run_id, "duration_s": duration},
        dag_run=notify.run_label(ctx.run),
    )  # fmt: skip
    return Folded(run_id, duration, used)


@changes_model
def learn_task(
    model: str,
    task: str,
    consolidation: ConsolidationResult,
    *,
    overrides: dict[str, Any] | None = None,
    run_info: RunInfo | dict | None = None,
) -> TaskCandidateResult:
    """Train the consolidated champion (or a fresh model, for the first task) on ``task``."""
    ctx = Context.of(model, run_info)
    ctx = ctx.with_spec(task_spec(ctx.spec, overrides))
    spec, version = ctx.spec, consolidation["data_version"]
    run_key = f"{model}/task/{task}/{version[:12]}/{params_hash(spec)}"
    recovery.close_crashed_runs(ctx.settings.home, model, closed_by=ctx.run.trigger)
    existing = registry.find_candidate(model, run_key)
    if existing is not None:
        return _task_candidate(existing, task, reused=True)
    if consolidation.get("run_id"):
        state = registry.load_state_from_run(consolidation["run_id"], spec.architecture)
    else:
        state = LearnerState.new(spec.architecture, spec.train, spec.strategy)
    snap = inputs.snapshot(ctx, version)
    if forecast_tasks.is_forecaster(ctx):
        forecast_tasks.fit_task_stats(ctx, snap, state, task)  # a new series on its own scale
    x, y = inputs.task_arrays(ctx, snap, task, "train", state)
    learned = forecast_tasks.first_task(ctx, state) if forecast_tasks.is_forecaster(ctx) else state.tasks
    strategy = make_strategy(spec.strategy, task_kind(spec.architecture), state)
    result = train.fit(
        state, x, y, train=ctx.train_spec(), strategy=strategy, task=len(learned), progress=ctx.progress,
        on_epoch=lambda _: faults.checkpoint("train_epoch"),
    )  # fmt: skip
    state.tasks = [*learned, task]
    source = forecast_tasks.task_dataset(ctx, task) if forecast_tasks.is_forecaster(ctx) else ctx.dataset
    candidate = registry.log_candidate(
        model,
        state,
        params={"model": to_jsonable(spec), "kind": "task", "task": task, "overrides": overrides or {}},
        metrics={"train_samples": float(len(x)), "duration_s": result.duration_s},
        epoch_metrics=result.epochs,
        plots={"loss_curves": plots.loss_curves(result.epochs)},
        lineage=registry.Lineage.of(ctx.run, spec, version, result.device),
        dataset_source=store.dvc_location(source.name),
        input_example=_serving_example(ctx, snap, task, state, x),
        run_key=run_key,
        kind="task",
        dataset=ctx.dataset,
    )
    info = {"model": model, "version": candidate.version, "run_id": candidate.run_id, "data_version": version}
    return _task_candidate(info, task, reused=False)


def _serving_example(ctx: Context, snap: Any, task: str, state: LearnerState, x: Any) -> Any:
    """The served model's input example: a classifier's first recordings of the task as a frame; a
    day-ahead forecaster's raw frame of a day of its own data set (what it serves), as the daily
    candidates'; else the first training window."""
    if task_kind(ctx.spec.architecture) == "classification":
        return serving.classify_example(ctx.dataset, snap.read_task(ctx.dataset, task))
    if not inputs.day_ahead(ctx.spec):
        return x[:1].numpy()
    day = forecast_tasks.task_days(ctx, snap, ctx.dataset.name, state, "test")[-1]
    back = inputs.history_days(ctx.spec, ctx.dataset)
    history = snap.read_days(ctx.dataset, day - timedelta(days=back), day - timedelta(days=1))
    return serving.input_frame(ctx.dataset, history, snap.read_days(ctx.dataset, day, day))


def _task_candidate(info: dict[str, Any], task: str, *, reused: bool) -> TaskCandidateResult:
    return TaskCandidateResult(
        model=info["model"],
        task=task,
        version=str(info["version"]),
        run_id=info["run_id"],
        data_version=info["data_version"],
        reused=reused,
    )


def evaluate_all(
    model: str, candidate: TaskCandidateResult, *, run_info: RunInfo | dict | None = None
) -> TaskEvaluationResult:
    """Every task seen so far, scored on its test split: the new row of the task matrix.

    A classifier's matrix holds accuracies (``eval/accuracy_matrix.json`` too, as before); a
    forecaster's holds the day-ahead MAE of each task's test days, with the weekly naive's MAE on the
    same targets beside it, and ``backward_transfer`` in MAE: the mean change of each earlier task's
    MAE since just after it was learned, so **positive is forgetting** (its error rose), the
    opposite sign of the classifiers' accuracy BWT. The champion is scored on the same data for the
    gate (``task_acc/<task>`` / ``task_mae/<task>``, and ``retention_*``: their mean over earlier tasks).
    """
    ctx = Context.of(model, run_info)
    snap = inputs.snapshot(ctx, candidate["data_version"])
    cand = registry.load_state_of(model, candidate["version"], ctx.spec.architecture)
    champion = registry.champion(model)
    champ = None
    if champion and champion != candidate["version"]:
        champ = registry.load_state_of(model, champion, ctx.spec.architecture)
    forecaster = forecast_tasks.is_forecaster(ctx)
    metric, key = ("mae", "task_mae") if forecaster else ("accuracy", "task_acc")
    tasks = cand.tasks
    champ_tasks = (forecast_tasks.first_task(ctx, champ) if forecaster else champ.tasks) if champ else []
    row, naive_row, scores, champ_scores = [], [], {}, {}
    for name in tasks:
        if forecaster:
            found = forecast_tasks.task_scores(ctx, snap, cand, name)
            row.append(found["mae"])
            naive_row.append(found.get("weekly_naive_mae"))
            if name == tasks[-1]:
                scores.update(found)  # the new task's MAE, MASE and naive errors: what the gate bounds
            if champ is not None and name in champ_tasks:
                champ_scores[f"{key}/{name}"] = forecast_tasks.task_scores(ctx, snap, champ, name)["mae"]
        else:
            x, y = inputs.task_arrays(ctx, snap, name, "test")
            row.append(metrics.model_accuracy(cand.model, x, y))
            naive_row.append(metrics.majority_accuracy(inputs.task_arrays(ctx, snap, name, "train")[1], y))
            if champ is not None and name in champ_tasks:
                champ_scores[f"{key}/{name}"] = metrics.model_accuracy(champ.model, x, y)
    earlier = _earlier_rows(model, champion, champ_scores, champ_tasks) if champ else []
    matrix = [list(r) for r in earlier] + [row]
    scores.update({metric: row[-1], **{f"{key}/{n}": v for n, v in zip(tasks, row, strict=True)}})
    if not forecaster:  # the majority class beside each task's accuracy, on the same test recordings
        scores.update({f"majority_acc/{n}": v for n, v in zip(tasks, naive_row, strict=True)})
        scores["majority_accuracy"] = naive_row[-1]  # the new task's: what the gate holds accuracy to
    if row[:-1]:
        scores[f"retention_{metric}"] = sum(row[:-1]) / len(row[:-1])
    if champ_scores:
        champ_scores[f"retention_{metric}"] = sum(champ_scores.values()) / len(champ_scores)
    average = metrics.average_accuracy(matrix)  # the mean of the last row, whatever it holds
    transfer = metrics.backward_transfer(matrix) if len(matrix) > 1 else 0.0
    summary = {
        f"average_{metric}": average,
        "backward_transfer" if not forecaster else "backward_transfer_mae": transfer,
    }
    registry.log_metrics(candidate["run_id"], {**scores, **summary})
    body: dict[str, Any] = {"metric": metric, "tasks": tasks, "matrix": matrix, "average": average,
                            "backward_transfer": transfer}  # fmt: skip
    # the naive baseline does not depend on the model: one value per task, on the new row's test data
    body["naive"] = {"metric": "weekly_naive_mae" if forecaster else "majority_accuracy", "row": naive_row}
    if forecaster:
        body["backward_transfer_sign"] = "positive: earlier tasks' MAE rose since they were learned (forgetting)"
    registry.log_figures(candidate["run_id"], {"task_matrix": plots.accuracy_matrix(matrix, tasks, metric=metric)})
    registry.log_json(candidate["run_id"], body, "eval/task_matrix.json")
    if not forecaster:
        registry.log_json(
            candidate["run_id"], {"tasks": tasks, "acc_matrix": matrix, "majority_accuracy": naive_row},
            "eval/accuracy_matrix.json",
        )  # fmt: skip
    naive = dict(zip(tasks, naive_row, strict=True))
    return TaskEvaluationResult(  # type: ignore[typeddict-item]
        model=model,
        version=candidate["version"],
        champion_version=champion if champ else None,
        data_version=candidate["data_version"],
        tasks=tasks,
        metric=metric,
        matrix=matrix,
        candidate=scores,
        champion=champ_scores or None,
        **({"acc_matrix": matrix, "majority_accuracy": naive} if not forecaster else {"naive_mae": naive}),
        **summary,
    )


def _earlier_rows(
    model: str, champion: str, champ_scores: dict[str, float], champ_tasks: list[str]
) -> list[list[float]]:
    """The rows of the champion's task matrix; for a champion that has none (a forecaster the daily
    DAG trained, before its first task addition) one row: its own scores on its tasks, now."""
    for path, rows in (("eval/task_matrix.json", "matrix"), ("eval/accuracy_matrix.json", "acc_matrix")):
        try:
            return registry.read_json(model, champion, path)[rows]
        except RegistryError:
            continue
    return [[champ_scores[f"task_mae/{n}"] for n in champ_tasks if f"task_mae/{n}" in champ_scores]]
