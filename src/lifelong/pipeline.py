"""The step functions that the DAGs, the CLI, ``dvc repro`` and the tests call.

Small JSON in, small JSON out: every function takes names, dates and small dicts and
returns a small dict (ids, versions, paths, metrics), so a step's result fits in an
Airflow XCom. Anything large travels through DVC (data) or MLflow (model state).

Daily update, **test-then-train**: when day D lands, the day's windows are first used to
*judge* (candidate and champion are scored on day D, which neither has seen), and the
candidate is the champion updated on day D-1 (plus replay). A day-ahead forecaster
learns a day only once its targets are known, so nothing is judged on data it trained
on. The first model is trained from scratch on ``warmup_days`` of history.

Every step is idempotent per (model, logical date, data version): a retry or re-run
finds the candidate it already registered instead of making a second one, and promotion
is a no-op when the alias already names the candidate.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from lifelong.config import DatasetSpec, ModelSpec, Params, load_params, load_settings, params_hash, to_jsonable
from lifelong.errors import LifelongError


class NotReady(LifelongError):
    """The step has nothing to do yet (e.g. fewer stored days than the warm-up needs)."""


# --------------------------------------------------------------------------- run context


@dataclass(frozen=True)
class RunInfo:
    """Who runs a step: an Airflow DAG run, or a person at the CLI."""

    dag_id: str | None = None
    dag_run_id: str | None = None
    logical_date: str | None = None
    try_number: int | None = None
    user: str | None = None

    @classmethod
    def of(cls, value: RunInfo | dict | None) -> RunInfo:
        if isinstance(value, RunInfo):
            return value
        return cls(**(value or {}))

    @property
    def trigger(self) -> str:
        if self.dag_id:
            return f"airflow:{self.dag_id}/{self.dag_run_id}"
        return f"cli:{self.user or _user()}"


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def _day(value: str | date) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise LifelongError(f"not a date: {value!r} (expected YYYY-MM-DD)") from None


def _specs(model: str, params: Params | None = None) -> tuple[Params, ModelSpec, DatasetSpec]:
    params = params or load_params()
    spec = params.model(model)
    return params, spec, params.dataset(spec.dataset)


def _lineage(spec: ModelSpec, data_version: str, device: str, run: RunInfo) -> Any:
    from lifelong import registry

    return registry.Lineage(
        dataset=spec.dataset,
        data_version=data_version,
        git_commit=registry.git_commit(),
        params_hash=params_hash(spec),
        device=device,
        dag_id=run.dag_id,
        dag_run_id=run.dag_run_id,
        logical_date=run.logical_date,
        try_number=run.try_number,
    )


def _progress(run: RunInfo):
    """Progress lines go to the task log under Airflow and to stderr at the CLI."""
    import logging
    import sys

    if run.dag_id:
        log = logging.getLogger("lifelong")
        return log.info
    return lambda msg: print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data steps


def validate_ingest(
    model: str, logical_date: str | date, *, file: str | None = None, run_info: RunInfo | dict | None = None
) -> dict:
    """Validate the day's landing file and append it to the versioned store."""
    from pathlib import Path

    from lifelong.data import store

    _, spec, _ = _specs(model)
    result = store.ingest(spec.dataset, day=_day(logical_date), file=Path(file) if file else None)
    return _jsonable(result)


def ingest_task(model: str, task: str, *, file: str | None = None, run_info: RunInfo | dict | None = None) -> dict:
    """Validate and store the landing file of a new task (task-addition DAG)."""
    from pathlib import Path

    from lifelong.data import store

    _, spec, ds = _specs(model)
    if ds.tasks and task not in ds.tasks:
        raise LifelongError(f"task {task!r} is not declared for dataset {ds.name} (known: {', '.join(ds.tasks)})")
    result = store.ingest(spec.dataset, task=task, file=Path(file) if file else None)
    return _jsonable(result)


def _jsonable(value: Any) -> dict:
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    return to_jsonable({k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in value.items()})


# --------------------------------------------------------------------------- forecast data


def _history_days(spec: ModelSpec, ds: DatasetSpec) -> int:
    """Days of history one day's windows need (input window + horizon), rounded up."""
    per_day = max(ds.rows_per_day or (48,))
    return math.ceil((spec.architecture.length + spec.architecture.out_dim) / per_day) + 1


def _forecast_days(spec: ModelSpec, ds: DatasetSpec, days: list[date], stats: dict):
    """Windows whose last target step falls on each of ``days`` (concatenated)."""
    import torch

    from lifelong.data import store, windows

    xs, ys = [], []
    back = _history_days(spec, ds)
    for day in days:
        frame = store.read_days(ds.name, day - timedelta(days=back), day)
        if frame.empty:
            continue
        x, y = windows.forecast_windows(frame, ds, spec.architecture, stats, targets_in=day)
        if len(x):
            xs.append(x)
            ys.append(y)
    if not xs:
        raise NotReady(f"no complete forecast windows for {', '.join(map(str, days))} in {ds.name}")
    return torch.cat(xs), torch.cat(ys)


def _stored_days(ds: DatasetSpec) -> set[date]:
    from lifelong.data import store

    return {date.fromisoformat(p) for p in store.stored_partitions(ds.name) if p[:4].isdigit()}


def check_drift(model: str, logical_date: str | date, *, run_info: RunInfo | dict | None = None) -> dict:
    """Compare the day's features (and the champion's error on it) with the recent past.

    Writes the report as JSON every day, and its plot (``plot_path``) on days with drift.
    """
    from lifelong import drift, registry
    from lifelong.data import store

    params, spec, ds = _specs(model)
    day = _day(logical_date)
    current = store.read_days(ds.name, day, day)
    reference = store.read_days(ds.name, day - timedelta(days=params.drift.reference_days), day - timedelta(days=1))
    error, recent = None, []
    champion = registry.champion(model)
    if champion is not None and ds.kind == "forecast":
        state = registry.load_state_of(model, champion)
        try:
            x, y = _forecast_days(spec, ds, [day], state.extra["stats"])
            error = _forecast_metrics(state, x, y)["mae"]
            recent = [h["mae"] for h in state.history if "mae" in h][-params.drift.reference_days :]
        except NotReady:
            pass
    if reference.empty:
        return {"decision": "none", "reasons": ["no reference window yet"], "features": [], "report_path": None}
    # the rows of one day are not independent: the day column lets the tests count them as fewer
    report = drift.check(
        reference,
        current,
        list(ds.features),
        params.drift,
        current_error=error,
        recent_errors=recent,
        day_column=ds.date_column,
    )
    out_dir = load_settings().reports_dir / model / "drift"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{day}.json"
    import json

    path.write_text(json.dumps(report.to_json(), indent=2, default=str))
    # the JSON holds every test; the picture (~0.5 s to draw) is for the days that need a look
    plot = out_dir / f"{day}.png"
    if report.decision == "none":
        plot.unlink(missing_ok=True)  # from an earlier run of the day that saw drift
    else:
        drift.plot(report, reference, current).savefig(plot, dpi=80)
    if report.decision == "severe":
        _progress(RunInfo.of(run_info))(
            f"severe drift on {day}: {'; '.join(report.reasons)} -- a task addition may be due"
        )
    return {**report.to_json(), "report_path": str(path), "plot_path": None if report.decision == "none" else str(plot)}


# --------------------------------------------------------------------------- model helpers


def _forecast_metrics(state: Any, x: Any, y: Any) -> dict[str, float]:
    """MAE, RMSE and sMAPE of ``state.model`` in the target's own units."""
    import torch

    from lifelong.data import windows
    from lifelong.learn import metrics

    stats = state.extra["stats"]
    state.model.eval()
    with torch.no_grad():
        pred = state.model(x)
    pred, true = windows.denormalise_target(pred, stats), windows.denormalise_target(y, stats)
    return {"mae": metrics.mae(pred, true), "rmse": metrics.rmse(pred, true), "smape": metrics.smape(pred, true)}


def _accuracy(state: Any, x: Any, y: Any) -> float:
    import torch

    state.model.eval()
    with torch.no_grad():
        return float((state.model(x).argmax(dim=1) == y).float().mean())


def _train_spec(spec: ModelSpec) -> Any:
    """The model's training spec, with the device from the environment when it says "auto"."""
    import dataclasses

    if spec.train.device != "auto":
        return spec.train
    return dataclasses.replace(spec.train, device=load_settings().device)


def _fresh_state(spec: ModelSpec) -> Any:
    from lifelong.learn.state import LearnerState

    return LearnerState.new(spec.architecture, spec.train, spec.strategy)


# --------------------------------------------------------------------------- daily update


def update(
    model: str, logical_date: str | date, *, drift: dict | None = None, run_info: RunInfo | dict | None = None
) -> dict:
    """Train a candidate: the champion updated on day D-1, or a first model on the warm-up days."""
    from lifelong import plots, registry
    from lifelong.data import store, windows
    from lifelong.learn.models import task_kind
    from lifelong.learn.strategies import make_strategy
    from lifelong.learn.train import fit

    run = RunInfo.of(run_info)
    _, spec, ds = _specs(model)
    day = _day(logical_date)
    data_version = store.data_version()
    run_key = f"{model}/daily/{day}/{data_version[:12]}/{params_hash(spec)}"
    existing = registry.find_candidate(model, run_key)
    if existing is not None:
        return {**existing, "reused": True}

    stored = _stored_days(ds)
    champion = registry.champion(model)
    if champion is None:
        warmup = [day - timedelta(days=i) for i in range(spec.warmup_days, 0, -1)]
        missing = [d for d in warmup if d not in stored]
        if missing:
            raise NotReady(f"warming up: {len(warmup) - len(missing)}/{len(warmup)} days of history stored")
        history_frame = store.read_days(ds.name, warmup[0], warmup[-1])
        state = _fresh_state(spec)
        state.extra["stats"] = windows.fit_stats(history_frame, ds)
        train_days, kind = warmup, "bootstrap"
    else:
        state = registry.load_state_of(model, champion)
        previous = day - timedelta(days=1)
        learned = state.extra.get("trained_through")
        if learned and date.fromisoformat(learned) >= previous:  # a re-run after the day was promoted
            raise NotReady(f"{model} v{champion} has already learned {learned}: the update for {day} is done")
        if previous not in stored:
            raise NotReady(f"day {previous} is not stored yet: the update for {day} trains on it")
        train_days, kind = [previous], "update"
    x, y = _forecast_days(spec, ds, train_days, state.extra["stats"])
    strategy = make_strategy(spec.strategy, task_kind(spec.architecture), state)
    result = fit(state, x, y, train=_train_spec(spec), strategy=strategy, progress=_progress(run))
    state.extra["trained_through"] = str(train_days[-1])

    eval_x, eval_y = _forecast_days(spec, ds, [day], state.extra["stats"])
    metrics = _forecast_metrics(state, eval_x, eval_y)
    state.history[-1]["mae"] = metrics["mae"]  # the error history that drift checks compare against
    figures = {
        "loss_curves": plots.loss_curves(result.epochs),
        "forecast_vs_actual": _forecast_figure(state, eval_x, eval_y, day),
    }
    if state.fisher:
        figures["fisher_per_layer"] = plots.fisher_magnitude(state.fisher)
    candidate = registry.log_candidate(
        model,
        state,
        params={"model": to_jsonable(spec), "kind": kind, "train_days": [str(d) for d in train_days]},
        metrics={**metrics, "train_samples": float(len(x)), "duration_s": result.duration_s},
        epoch_metrics=result.epochs,
        plots=figures,
        lineage=_lineage(spec, data_version, result.device, run),
        dataset_source=store.dvc_location(ds.name),
        input_example=eval_x[:1].numpy(),
        run_key=run_key,
        kind=kind,
    )
    return {
        "model": model,
        "version": str(candidate.version),
        "run_id": candidate.run_id,
        "kind": kind,
        "date": str(day),
        "data_version": data_version,
        "reused": False,
        "drift": (drift or {}).get("decision"),
    }


def _forecast_figure(state: Any, x: Any, y: Any, day: date) -> Any:
    import torch

    from lifelong import plots
    from lifelong.data import windows

    with torch.no_grad():
        pred = windows.denormalise_target(state.model(x[-1:]), state.extra["stats"])[0]
    true = windows.denormalise_target(y[-1:], state.extra["stats"])[0]
    return plots.forecast_vs_actual(true.tolist(), pred.tolist(), title=f"day-ahead forecast for {day}")


def evaluate(model: str, logical_date: str | date, candidate: dict, *, run_info: RunInfo | dict | None = None) -> dict:
    """Score candidate and champion on the same data: day D and the retention set."""
    from lifelong import registry

    _, spec, ds = _specs(model)
    day = _day(logical_date)
    cand = registry.load_state_of(model, candidate["version"])
    champion = registry.champion(model)
    champ = registry.load_state_of(model, champion) if champion and champion != candidate["version"] else None
    x, y = _forecast_days(spec, ds, [day], cand.extra["stats"])
    scores = {"candidate": _forecast_metrics(cand, x, y), "champion": _forecast_metrics(champ, x, y) if champ else None}
    # the retention set: the champion's replay buffer (what the serving model has learned), or
    # the first model's own buffer, so that every candidate is measured on what came before
    retention = (champ or cand).buffer
    if retention is not None and len(retention):
        rx, ry, _ = retention.contents()
        for name, state in (("candidate", cand), ("champion", champ)):
            if state is not None:
                scores[name]["retention_mae"] = _forecast_metrics(state, rx, ry)["mae"]
    registry.log_metrics(candidate["run_id"], {f"eval_{k}": v for k, v in scores["candidate"].items()})
    return {
        "model": model,
        "version": candidate["version"],
        "champion_version": champion if champ else None,
        "candidate": scores["candidate"],
        "champion": scores["champion"],
    }


# --------------------------------------------------------------------------- gate


def gate(model: str, evaluation: dict, *, run_info: RunInfo | dict | None = None) -> dict:
    """Decide: promote only if no metric regresses past its tolerance in params.yaml."""
    from lifelong import registry

    _, spec, _ = _specs(model)
    decision = registry.decide(evaluation["candidate"], evaluation.get("champion"), spec.gate)
    return {
        "model": model,
        "version": evaluation["version"],
        "champion_version": evaluation.get("champion_version"),
        "approved": decision.approved,
        "reason": decision.reason,
        "deltas": decision.deltas,
    }


def promote(model: str, decision: dict, *, run_info: RunInfo | dict | None = None) -> dict:
    """Move ``champion`` to the candidate, unless the champion changed since the gate judged.

    The check is a compare-and-set on the alias: a run that was judged against v3 never
    overwrites a v4 that another run promoted meanwhile; it is rejected with that reason.
    """
    from lifelong import registry

    trigger = RunInfo.of(run_info).trigger
    current, judged_against = registry.champion(model), decision.get("champion_version")
    if current not in (judged_against, decision["version"]):
        stale = {
            **decision,
            "approved": False,
            "reason": f"champion moved from v{judged_against} to v{current} while this run was judged; re-run the day",
        }
        return registry.reject(model, decision["version"], _decision(stale), trigger=trigger)
    return registry.promote(model, decision["version"], _decision(decision), trigger=trigger)


def reject(model: str, decision: dict, *, run_info: RunInfo | dict | None = None) -> dict:
    from lifelong import registry

    return registry.reject(model, decision["version"], _decision(decision), trigger=RunInfo.of(run_info).trigger)


def _decision(decision: dict) -> Any:
    from lifelong import registry

    return registry.GateDecision(
        approved=decision["approved"], reason=decision["reason"], deltas=decision.get("deltas", {}), checks=[]
    )


def report(model: str, logical_date: str | date, results: dict, *, run_info: RunInfo | dict | None = None) -> dict:
    """Write the day's summary (JSON) whatever happened upstream; return it."""
    import json

    from lifelong import registry

    day = _day(logical_date)
    summary = {
        "model": model,
        "date": str(day),
        "champion": registry.champion(model),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **{k: v for k, v in results.items() if v is not None},
    }
    out_dir = load_settings().reports_dir / model / "daily"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{day}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)
    return {**summary, "path": str(path)}


# --------------------------------------------------------------------------- task addition

STRATEGIES = ("naive", "ewc", "online_ewc", "lwf", "replay", "ewc+replay", "lwf+replay")


def _task_spec(spec: ModelSpec, overrides: dict | None) -> ModelSpec:
    """The model spec with the trigger form's overrides (strategy, lambda, epochs, replay size)."""
    import dataclasses

    from lifelong.config import ConfigError

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    strategy, train = spec.strategy, spec.train
    if "strategy" in overrides:
        if overrides["strategy"] not in STRATEGIES:
            raise ConfigError(f"strategy: must be one of {', '.join(STRATEGIES)}; got {overrides['strategy']!r}")
        strategy = dataclasses.replace(strategy, name=overrides["strategy"])
    if "ewc_lambda" in overrides:
        strategy = dataclasses.replace(strategy, ewc_lambda=float(overrides["ewc_lambda"]))
    if "replay_capacity" in overrides:
        strategy = dataclasses.replace(strategy, replay_capacity=int(overrides["replay_capacity"]))
    if "epochs" in overrides:
        train = dataclasses.replace(train, epochs=int(overrides["epochs"]))
    return dataclasses.replace(spec, strategy=strategy, train=train)


def _task_arrays(spec: ModelSpec, ds: DatasetSpec, task: str, split: str):
    from lifelong.data import store, windows

    frame = store.read_task(ds.name, task)
    if frame.empty:
        raise NotReady(f"task {task} of {ds.name} is not stored: ingest it first")
    return windows.classify_arrays(frame, ds, spec.architecture, split=split)


def consolidate(
    model: str, task: str, *, overrides: dict | None = None, run_info: RunInfo | dict | None = None
) -> dict:
    """Fold the exact Fisher of the champion on its latest task into the online Fisher.

    Starts from the champion every time, so a retry never folds the same task twice. The
    consolidated state is logged as an MLflow run (not a model version) for ``learn_task``.
    """
    from lifelong import registry
    from lifelong.learn.models import task_kind
    from lifelong.learn.strategies import make_strategy
    from lifelong.learn.train import consolidate as consolidate_state

    _, spec, ds = _specs(model)
    spec = _task_spec(spec, overrides)
    champion = registry.champion(model)
    if champion is None:
        return {"model": model, "task": task, "champion": None, "consolidated": False, "run_id": None}
    state = registry.load_state_of(model, champion)
    seen = list(state.extra.get("tasks", []))
    if task in seen:
        raise LifelongError(f"task {task!r} was already learned by {model} v{champion} (tasks: {', '.join(seen)})")
    previous = seen[-1]
    x, y = _task_arrays(spec, ds, previous, "train")
    started = time.perf_counter()
    strategy = make_strategy(spec.strategy, task_kind(spec.architecture), state)
    consolidate_state(state, strategy, x, y, device=_train_spec(spec).device)
    duration = time.perf_counter() - started
    run_id = registry.log_state_run(
        model,
        state,
        run_name=f"consolidate {previous} before {task}",
        params={"strategy": spec.strategy.name, "fisher_task": previous, "champion": champion},
        metrics={"consolidate_s": duration, "fisher_samples": float(len(x))},
        plots={"fisher_per_layer": _fisher_plot(state)} if state.fisher else {},
    )
    return {
        "model": model,
        "task": task,
        "champion": champion,
        "consolidated": True,
        "fisher_task": previous,
        "run_id": run_id,
        "duration_s": round(duration, 3),
    }


def _fisher_plot(state: Any) -> Any:
    from lifelong import plots

    return plots.fisher_magnitude(state.fisher)


def learn_task(
    model: str,
    task: str,
    consolidation: dict,
    *,
    overrides: dict | None = None,
    run_info: RunInfo | dict | None = None,
) -> dict:
    """Train the consolidated champion (or a fresh model, for the first task) on ``task``."""
    from lifelong import registry
    from lifelong.data import store
    from lifelong.learn.models import task_kind
    from lifelong.learn.strategies import make_strategy
    from lifelong.learn.train import fit

    run = RunInfo.of(run_info)
    _, spec, ds = _specs(model)
    spec = _task_spec(spec, overrides)
    data_version = store.data_version()
    run_key = f"{model}/task/{task}/{data_version[:12]}/{params_hash(spec)}"
    existing = registry.find_candidate(model, run_key)
    if existing is not None:
        return {**existing, "reused": True}
    if consolidation.get("run_id"):
        state = registry.load_state_from_run(consolidation["run_id"], spec.architecture)
    else:
        state = _fresh_state(spec)
        state.extra["tasks"] = []
    x, y = _task_arrays(spec, ds, task, "train")
    task_id = len(state.extra["tasks"])
    strategy = make_strategy(spec.strategy, task_kind(spec.architecture), state)
    result = fit(state, x, y, train=_train_spec(spec), strategy=strategy, task=task_id, progress=_progress(run))
    state.extra["tasks"] = [*state.extra["tasks"], task]
    from lifelong import plots

    candidate = registry.log_candidate(
        model,
        state,
        params={"model": to_jsonable(spec), "kind": "task", "task": task, "overrides": overrides or {}},
        metrics={"train_samples": float(len(x)), "duration_s": result.duration_s},
        epoch_metrics=result.epochs,
        plots={"loss_curves": plots.loss_curves(result.epochs)},
        lineage=_lineage(spec, data_version, result.device, run),
        dataset_source=store.dvc_location(ds.name),
        input_example=x[:1].numpy(),
        run_key=run_key,
        kind="task",
    )
    return {
        "model": model,
        "task": task,
        "version": str(candidate.version),
        "run_id": candidate.run_id,
        "data_version": data_version,
        "reused": False,
    }


def evaluate_all(model: str, candidate: dict, *, run_info: RunInfo | dict | None = None) -> dict:
    """Accuracy on every task seen so far: the new row of the accuracy matrix."""
    from lifelong import plots, registry
    from lifelong.learn import metrics

    _, spec, ds = _specs(model)
    cand = registry.load_state_of(model, candidate["version"])
    champion = registry.champion(model)
    champ = registry.load_state_of(model, champion) if champion and champion != candidate["version"] else None
    tasks: list[str] = cand.extra["tasks"]
    row, champ_scores = [], {}
    for name in tasks:
        x, y = _task_arrays(spec, ds, name, "test")
        row.append(_accuracy(cand, x, y))
        if champ is not None and name in champ.extra.get("tasks", []):
            champ_scores[f"task_acc/{name}"] = _accuracy(champ, x, y)
    earlier_rows = registry.read_json(model, champion, "eval/accuracy_matrix.json")["acc_matrix"] if champ else []
    matrix = [list(r) for r in earlier_rows] + [row]
    scores = {"accuracy": row[-1], **{f"task_acc/{n}": a for n, a in zip(tasks, row, strict=True)}}
    earlier = row[:-1]
    if earlier:
        scores["retention_accuracy"] = sum(earlier) / len(earlier)
    if champ_scores:
        champ_scores["retention_accuracy"] = sum(champ_scores.values()) / len(champ_scores)
    summary = {
        "average_accuracy": metrics.average_accuracy(matrix),
        "backward_transfer": metrics.backward_transfer(matrix) if len(matrix) > 1 else 0.0,
    }
    registry.log_metrics(candidate["run_id"], {**scores, **summary})
    registry.log_figures(candidate["run_id"], {"accuracy_matrix": plots.accuracy_matrix(matrix, tasks)})
    registry.log_json(candidate["run_id"], {"tasks": tasks, "acc_matrix": matrix}, "eval/accuracy_matrix.json")
    return {
        "model": model,
        "version": candidate["version"],
        "champion_version": champion if champ else None,
        "tasks": tasks,
        "acc_matrix": matrix,
        "candidate": scores,
        "champion": champ_scores or None,
        **summary,
    }


# --------------------------------------------------------------------------- without Airflow


def _model_lock(model: str, what: str) -> Any:
    """One run of ``model`` at a time on this machine, as the model's Airflow pool does across workers.

    Two CLI runs of one day would otherwise both train a candidate before either promotes,
    and both candidates would pass the gate (tests/faults/test_concurrent.py).
    """
    from lifelong.data import lock

    _specs(model)  # an unknown model is refused before its name becomes part of a path
    return lock.model_lock(load_settings().home, model, what)


def run_day(model: str, logical_date: str | date, *, file: str | None = None) -> dict:
    """Every step of the daily DAG, in order, in this process (CLI, ``dvc repro``)."""
    run = RunInfo(user=_user())
    results: dict[str, Any] = {}
    with _model_lock(model, f"run_day {model} {logical_date}"):
        try:
            results["validate_ingest"] = validate_ingest(model, logical_date, file=file, run_info=run)
            results["check_drift"] = check_drift(model, logical_date, run_info=run)
            results["update"] = update(model, logical_date, drift=results["check_drift"], run_info=run)
            results["evaluate"] = evaluate(model, logical_date, results["update"], run_info=run)
            results["gate"] = gate(model, results["evaluate"], run_info=run)
            step = promote if results["gate"]["approved"] else reject
            results[step.__name__] = step(model, results["gate"], run_info=run)
        except NotReady as exc:
            results["skipped"] = str(exc)
        finally:
            report(model, logical_date, results, run_info=run)
    return results


def run_task(model: str, task: str, *, file: str | None = None, overrides: dict | None = None) -> dict:
    """Every step of the task-addition DAG, in order, in this process."""
    run = RunInfo(user=_user())
    with _model_lock(model, f"run_task {model} {task}"):
        results: dict[str, Any] = {"validate_ingest": ingest_task(model, task, file=file, run_info=run)}
        results["consolidate"] = consolidate(model, task, overrides=overrides, run_info=run)
        results["learn_task"] = learn_task(model, task, results["consolidate"], overrides=overrides, run_info=run)
        results["evaluate_all"] = evaluate_all(model, results["learn_task"], run_info=run)
        results["gate"] = gate(model, results["evaluate_all"], run_info=run)
        step = promote if results["gate"]["approved"] else reject
        results[step.__name__] = step(model, results["gate"], run_info=run)
    return results


def status() -> dict:
    """Champions, stored partitions and data version: what ``lifelong status`` prints."""
    from lifelong import registry
    from lifelong.data import store

    params = load_params()
    models = {}
    for name, spec in params.models.items():
        parts = store.stored_partitions(spec.dataset)
        models[name] = {
            "dataset": spec.dataset,
            "champion": registry.champion(name),
            "stored_partitions": len(parts),
            "last_partition": parts[-1] if parts else None,
        }
    return {"data_version": store.data_version(), "models": models}
