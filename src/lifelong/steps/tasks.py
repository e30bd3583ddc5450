"""The task-addition steps: ingest_task, consolidate, learn_task, evaluate_all.

A task is a new machine type, a new region: learned without forgetting the ones before,
with the strategy of the trigger form (EWC, LwF, replay, or a mix), and measured as a new
row of the accuracy matrix over every task seen so far.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from lifelong import faults, notify, plots, recovery, registry, serving
from lifelong.config import STRATEGIES, ConfigError, ModelSpec, params_hash, to_jsonable
from lifelong.data import store
from lifelong.errors import LifelongError
from lifelong.learn import metrics, train
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.steps import inputs
from lifelong.steps.context import Context, RunInfo
from lifelong.steps.contracts import (
    ConsolidationResult,
    IngestResult,
    TaskCandidateResult,
    TaskEvaluationResult,
)

OVERRIDES = ("strategy", "ewc_lambda", "epochs", "replay_capacity")


def ingest_task(
    model: str, task: str, *, file: str | None = None, run_info: RunInfo | dict | None = None
) -> IngestResult:
    """Validate and store the landing file of a new task (task-addition DAG)."""
    ctx = Context.of(model, run_info)
    ds = ctx.dataset
    if ds.tasks and task not in ds.tasks:
        raise LifelongError(f"task {task!r} is not declared for dataset {ds.name} (known: {', '.join(ds.tasks)})")
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
    state = registry.load_state_of(model, champion, ctx.spec.architecture)
    if task in state.tasks:
        raise LifelongError(
            f"task {task!r} was already learned by {model} v{champion} (tasks: {', '.join(state.tasks)})"
        )
    previous = state.tasks[-1]
    x, y = inputs.task_arrays(ctx, inputs.snapshot(ctx, version), previous, "train")
    folded = fold(ctx, state, x, y, champion=champion, closing=previous, opening=task)
    return ConsolidationResult(  # type: ignore[typeddict-item]
        **base, champion=champion, consolidated=True, fisher_task=previous, run_id=folded.run_id,
        duration_s=folded.duration_s,
    )  # fmt: skip


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
) -> Folded:
    """The champion's state consolidated on its closing task ``(x, y)`` with the model's strategy, logged as
    an MLflow run (not a version) with the Fisher per layer, and announced: the one consolidation of
    both the task-addition DAG and the daily DAG's task shifts.

    EWC parts fold the exact per-sample Fisher into the online Fisher (``F <- gamma F + F_new``) and set
    the anchors; LwF sets its teacher; replay alone has nothing to fold (the consolidation is counted).
    """
    started = time.perf_counter()
    strategy = make_strategy(ctx.spec.strategy, task_kind(ctx.spec.architecture), state)
    train.consolidate(state, strategy, x, y, device=ctx.train_spec().device)
    duration = round(time.perf_counter() - started, 3)
    uses_fisher = any(p.name == "ewc" for p in strategy.parts)
    spec = ctx.spec.strategy
    used = min(len(x), spec.fisher_samples) if spec.fisher_samples > 0 else len(x)
    used = used if uses_fisher else 0
    run_id = registry.log_state_run(
        ctx.model,
        state,
        run_name=f"consolidate {closing} before {opening}",
        params={"strategy": spec.name, "fisher_task": closing, "champion": champion, **(params or {})},
        metrics={"consolidate_s": duration, "fisher_samples": float(used), **(metrics or {})},
        plots={"fisher_per_layer": plots.fisher_magnitude(state.fisher)} if state.fisher else {},
        json_files=json_files,
        run_key=run_key,
    )
    notify.alert(
        "consolidate", model=ctx.model, version=champion, reason=f"{closing} consolidated before learning {opening}",
        figures={"fisher_task": closing, "task": opening, "run_id": run_id, "duration_s": duration},
        dag_run=notify.run_label(ctx.run),
    )  # fmt: skip
    return Folded(run_id, duration, used)


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
    x, y = inputs.task_arrays(ctx, inputs.snapshot(ctx, version), task, "train")
    strategy = make_strategy(spec.strategy, task_kind(spec.architecture), state)
    result = train.fit(
        state, x, y, train=ctx.train_spec(), strategy=strategy, task=len(state.tasks), progress=ctx.progress,
        on_epoch=lambda _: faults.checkpoint("train_epoch"),
    )  # fmt: skip
    state.tasks = [*state.tasks, task]
    candidate = registry.log_candidate(
        model,
        state,
        params={"model": to_jsonable(spec), "kind": "task", "task": task, "overrides": overrides or {}},
        metrics={"train_samples": float(len(x)), "duration_s": result.duration_s},
        epoch_metrics=result.epochs,
        plots={"loss_curves": plots.loss_curves(result.epochs)},
        lineage=registry.Lineage.of(ctx.run, spec, version, result.device),
        dataset_source=store.dvc_location(ctx.dataset.name),
        input_example=_serving_example(ctx, version, task, x),
        run_key=run_key,
        kind="task",
        dataset=ctx.dataset,
    )
    info = {"model": model, "version": candidate.version, "run_id": candidate.run_id, "data_version": version}
    return _task_candidate(info, task, reused=False)


def _serving_example(ctx: Context, version: str, task: str, x: Any) -> Any:
    """The served model's input example: a classifier's first recordings of the task as a frame."""
    if task_kind(ctx.spec.architecture) != "classification":
        return x[:1].numpy()
    return serving.classify_example(ctx.dataset, inputs.snapshot(ctx, version).read_task(ctx.dataset, task))


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
    """Accuracy on every task seen so far: the new row of the accuracy matrix."""
    ctx = Context.of(model, run_info)
    snap = inputs.snapshot(ctx, candidate["data_version"])
    cand = registry.load_state_of(model, candidate["version"], ctx.spec.architecture)
    champion = registry.champion(model)
    champ = None
    if champion and champion != candidate["version"]:
        champ = registry.load_state_of(model, champion, ctx.spec.architecture)
    tasks = cand.tasks
    row, champ_scores = [], {}
    for name in tasks:
        x, y = inputs.task_arrays(ctx, snap, name, "test")
        row.append(metrics.model_accuracy(cand.model, x, y))
        if champ is not None and name in champ.tasks:
            champ_scores[f"task_acc/{name}"] = metrics.model_accuracy(champ.model, x, y)
    earlier_rows = registry.read_json(model, champion, "eval/accuracy_matrix.json")["acc_matrix"] if champ else []
    matrix = [list(r) for r in earlier_rows] + [row]
    scores = {"accuracy": row[-1], **{f"task_acc/{n}": a for n, a in zip(tasks, row, strict=True)}}
    if row[:-1]:
        scores["retention_accuracy"] = sum(row[:-1]) / len(row[:-1])
    if champ_scores:
        champ_scores["retention_accuracy"] = sum(champ_scores.values()) / len(champ_scores)
    summary = {
        "average_accuracy": metrics.average_accuracy(matrix),
        "backward_transfer": metrics.backward_transfer(matrix) if len(matrix) > 1 else 0.0,
    }
    registry.log_metrics(candidate["run_id"], {**scores, **summary})
    registry.log_figures(candidate["run_id"], {"accuracy_matrix": plots.accuracy_matrix(matrix, tasks)})
    registry.log_json(candidate["run_id"], {"tasks": tasks, "acc_matrix": matrix}, "eval/accuracy_matrix.json")
    return TaskEvaluationResult(
        model=model,
        version=candidate["version"],
        champion_version=champion if champ else None,
        data_version=candidate["data_version"],
        tasks=tasks,
        acc_matrix=matrix,
        candidate=scores,
        champion=champ_scores or None,
        **summary,  # type: ignore[typeddict-item]
    )
