"""The daily steps: validate_ingest, check_drift, update, evaluate, report.

Daily update, **test-then-train**: when day D lands, the day's windows are first used to
*judge* (candidate and champion are scored on day D, which neither has seen), and the
candidate is the champion updated on day D-1 (plus replay). A day-ahead forecaster learns a
day only once its targets are known, so nothing is judged on data it trained on. The first
model is trained from scratch on ``warmup_days`` of history.

Every step is idempotent per (model, logical date, data version): a retry or re-run finds
the candidate it already registered instead of making a second one.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from lifelong import drift, faults, notify, plots, recovery, registry
from lifelong.config import params_hash, to_jsonable
from lifelong.data import schema, store, windows
from lifelong.data.files import write_atomic
from lifelong.data.snapshot import Snapshot
from lifelong.errors import StateError
from lifelong.learn import metrics, train
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.steps import inputs, outcomes, shift
from lifelong.steps.changes import changes_model
from lifelong.steps.context import Context, NotReady, RunInfo, parse_day
from lifelong.steps.contracts import (
    CandidateResult,
    ConsolidationResult,
    DriftResult,
    EvaluationResult,
    IngestResult,
    ReportResult,
    Scores,
)


def validate_ingest(
    model: str, logical_date: str | date, *, file: str | None = None, run_info: RunInfo | dict | None = None
) -> IngestResult:
    """Validate the day's landing file and store it as a new data version."""
    ctx = Context.of(model, run_info)
    result = store.ingest(ctx.dataset.name, day=parse_day(logical_date), file=Path(file) if file else None)
    return IngestResult(**result.as_dict())  # type: ignore[typeddict-item]


def forecast_scores(state: LearnerState, x: Any, y: Any) -> Scores:
    """MAE, RMSE and sMAPE of ``state``'s model on windows ``(x, y)``, in the target's units."""
    assert state.stats is not None, "a forecaster's state carries its normalisation statistics"
    return metrics.model_forecast_errors(state.model, x, y, windows.target_scale(state.stats))


def day_scores(state: LearnerState, sample: inputs.DayAhead) -> Scores:
    """The day-ahead forecast's MAE, RMSE, MAPE and, where the naive forecasts could be made, their
    errors on the same targets and the MASE (the model's MAE over the weekly naive's)."""
    assert state.stats is not None, "a forecaster's state carries its normalisation statistics"
    pred, true = metrics.forecast_in_units(state.model, sample.x, sample.y, windows.target_scale(state.stats))
    pred, true = pred[0, : sample.steps], true[0, : sample.steps]
    if "weekly_naive" in sample.naive:
        return {k: float(v) for k, v in metrics.forecast_scores(pred, true, sample.naive).items()}
    return {**metrics.forecast_errors(pred, true), "mape": metrics.mape(pred, true), "steps": float(sample.steps)}


def score_day(ctx: Context, snap: Snapshot, state: LearnerState, day: date) -> Scores:
    """How ``state``'s model did on ``day``: its day-ahead forecast, or for a rolling-window model its
    windows whose last target falls on the day. :class:`NotReady` when the day cannot be scored."""
    return judge_day(ctx, snap, state, day)[0]


def judge_day(ctx: Context, snap: Snapshot, state: LearnerState, day: date) -> tuple[Scores, Any, Any]:
    """:func:`score_day`, and the input and target of the forecast it judged (a rolling-window
    model's last window of the day), read and built once for the scores and the candidate's figure."""
    if inputs.day_ahead(ctx.spec):
        sample = inputs.day_ahead_sample(ctx, snap, day, state.stats or {})
        return day_scores(state, sample), sample.x, sample.y
    x, y = inputs.forecast_days(ctx, snap, [day], state.stats or {})
    return forecast_scores(state, x, y), x[-1:], y[-1:]


def check_drift(
    model: str,
    logical_date: str | date,
    ingest: IngestResult,
    *,
    manual_shift: bool = False,
    run_info: RunInfo | dict | None = None,
) -> DriftResult:
    """Compare the day's features (and the champion's error on it) with the recent past, and decide
    whether the day is a task shift (:mod:`lifelong.steps.shift`; ``manual_shift``: the run was
    triggered with ``task_shift``).

    Writes the report as JSON every day, and its plot (``plot_path``) on days with drift; both go to
    the day's run in the MLflow experiment ``lifelong-drift`` with the decision, registered version
    or not.
    """
    ctx = Context.of(model, run_info)
    day, version = parse_day(logical_date), ingest["data_version"]
    snap = inputs.snapshot(ctx, version)
    spec, ds = ctx.params.drift, ctx.dataset
    current = snap.read_days(ds, day, day)
    reference = snap.read_days(ds, day - timedelta(days=spec.reference_days), day - timedelta(days=1))
    error, recent = _champion_error(ctx, snap, day)
    base = {"model": model, "date": str(day), "data_version": version}
    if reference.empty:
        result = DriftResult(  # type: ignore[typeddict-item]
            **base, decision="none", reasons=["no reference window yet"], features=[], error=None,
            report_path=None, plot_path=None,
        )  # fmt: skip
        return _record_day(ctx, day, result, manual_shift)
    # the tests compare whole days (a day's rows are not independent): every row gets its local day,
    # from the data set's date column or, for a block without one, from its timestamp
    day_column = "__day"
    reference, current = (f.assign(**{day_column: schema.row_dates(ds, f).to_numpy()}) for f in (reference, current))
    report = drift.check(
        reference,
        current,
        list(ds.features),
        spec,
        current_error=error,
        recent_errors=recent,
        day_column=day_column,
    )
    out_dir = ctx.settings.reports_dir / model / "drift"
    out_dir.mkdir(parents=True, exist_ok=True)
    path, plot = out_dir / f"{day}.json", out_dir / f"{day}.png"
    body = report.to_json()
    path.write_text(json.dumps(body, indent=2, default=str))
    # the JSON holds every test; the picture (slow to draw) is for the days that need a look
    if report.decision == "none":
        plot.unlink(missing_ok=True)  # from an earlier run of the day that saw drift
    else:
        drift.plot(report, reference, current).savefig(plot, dpi=80)
    if report.decision == "severe":
        ctx.progress(f"severe drift on {day}: {'; '.join(report.reasons)} -- severe_days in a row: a task shift")
        notify.alert("severe_drift", model=model, date=str(day), reason="; ".join(report.reasons),
                     figures={"report": str(path)}, dag_run=notify.run_label(ctx.run))  # fmt: skip
    result = DriftResult(  # type: ignore[typeddict-item]
        **base, decision=body["decision"], reasons=body["reasons"], features=body["features"], error=body["error"],
        report_path=str(path), plot_path=None if report.decision == "none" else str(plot),
    )  # fmt: skip
    return _record_day(ctx, day, result, manual_shift)


def _record_day(ctx: Context, day: date, result: DriftResult, manual_shift: bool) -> DriftResult:
    """The day's task-shift decision on ``result``, and both kept in the day's ``lifelong-drift`` run."""
    result["task_shift"] = shift.decide(ctx, day, result["decision"], manual=manual_shift)
    if result["task_shift"]["due"]:
        ctx.progress(f"{day} is a task shift: {'; '.join(result['task_shift']['reasons'])}")
    files = [Path(p) for p in (result["report_path"], result["plot_path"]) if p and Path(p).is_file()]
    tags = {
        "decision": result["decision"],
        "reasons": "; ".join(result["reasons"]),
        "data_version": result["data_version"],
        "task_shift": str(result["task_shift"]["due"]).lower(),
        "task_shift_reasons": "; ".join(result["task_shift"]["reasons"]),
    }
    result["run_id"] = registry.record_drift_day(ctx.model, str(day), tags, files)
    return result


def _champion_error(ctx: Context, snap: Snapshot, day: date) -> tuple[float | None, list[float]]:
    """The champion's MAE on ``day`` and its recent daily MAEs (none for classifiers or before a champion)."""
    champion = registry.champion(ctx.model)
    if champion is None or ctx.dataset.kind != "forecast":
        return None, []
    state = registry.load_state_of(ctx.model, champion, ctx.spec.architecture)
    try:
        error = score_day(ctx, snap, state, day)["mae"]
    except NotReady:
        return None, []
    recent = [h["mae"] for h in state.history if "mae" in h][-ctx.params.drift.reference_days :]
    return error, recent


@changes_model
def update(
    model: str,
    logical_date: str | date,
    ingest: IngestResult,
    *,
    drift: DriftResult | None = None,
    consolidation: ConsolidationResult | None = None,
    run_info: RunInfo | dict | None = None,
) -> CandidateResult:
    """Train a candidate on the data version ``ingest`` recorded: the champion updated on day D-1,
    or a first model on the warm-up days.

    On a task-shift day the update starts from the consolidated champion that ``consolidation`` logged
    (:func:`lifelong.steps.shift.consolidate`), and trains against it with the model's strategy."""
    ctx = Context.of(model, run_info)
    spec, ds = ctx.spec, ctx.dataset
    day, version = parse_day(logical_date), ingest["data_version"]
    run_key = f"{model}/daily/{day}/{version[:12]}/{params_hash(spec)}"
    recovery.close_crashed_runs(ctx.settings.home, model, closed_by=ctx.run.trigger)
    existing = registry.find_candidate(model, run_key)
    if existing is not None:
        _record_drift(model, existing["version"], drift)
        return _candidate(existing, day, reused=True, drift=drift)

    snap = inputs.snapshot(ctx, version)
    stored = snap.days(ds.name)
    champion = registry.champion(model)
    if champion is None:
        warmup = [day - timedelta(days=i) for i in range(spec.warmup_days, 0, -1)]
        missing = [d for d in warmup if d not in stored]
        if missing:
            raise NotReady(f"warming up: {len(warmup) - len(missing)}/{len(warmup)} days of history stored")
        state = LearnerState.new(spec.architecture, spec.train, spec.strategy)
        state.stats = windows.fit_stats(snap.read_days(ds, warmup[0], warmup[-1]), ds)
        # the first model opens task 0 (lifelong.steps.shift closes it and opens the next on a task shift)
        state.extra["regimes"] = [{"task": "0", "from": str(warmup[0]), "to": None, "opened_by": []}]
        train_days, kind = warmup, "bootstrap"
    else:
        state = _starting_state(ctx, day, champion, drift, consolidation)
        previous = day - timedelta(days=1)
        learned = state.trained_through
        if learned and date.fromisoformat(learned) >= previous:  # a re-run after the day was promoted, or a past day
            raise outcomes.already_learned(ctx, day, ingest, champion, learned)
        if previous not in stored:
            raise NotReady(f"day {previous} is not stored yet: the update for {day} trains on it")
        train_days, kind = _days_to_learn(ctx, stored, learned, previous), "update"
    assert state.stats is not None
    x, y = inputs.forecast_days(ctx, snap, train_days, state.stats)
    strategy = make_strategy(spec.strategy, task_kind(spec.architecture), state)
    result = train.fit(
        state, x, y, train=ctx.train_spec(), strategy=strategy, progress=ctx.progress,
        on_epoch=lambda _: faults.checkpoint("train_epoch"),
    )  # fmt: skip
    state.trained_through = str(train_days[-1])

    penalty = float(strategy.penalty(state.model).detach())  # against the consolidated tasks (0 without EWC)
    scores, eval_x, eval_y = judge_day(ctx, snap, state, day)
    # the error history that drift checks and the daily-error plot read
    state.history[-1].update({"date": str(day), **{k: scores[k] for k in ("mae", "weekly_naive_mae") if k in scores}})
    figures = {
        "loss_curves": plots.loss_curves(result.epochs),
        "forecast_vs_actual": _forecast_figure(state, eval_x, eval_y, day),
        "daily_mae_vs_naive": plots.daily_errors(state.history),
    }
    if state.fisher:
        figures["fisher_per_layer"] = plots.fisher_magnitude(state.fisher)
    candidate = registry.log_candidate(
        model,
        state,
        params={"model": to_jsonable(spec), "kind": kind, "train_days": [str(d) for d in train_days]},
        metrics={
            **scores,
            "train_samples": float(len(x)),
            "duration_s": result.duration_s,
            "ewc_penalty": penalty,
            "tasks": float(len(state.tasks) or 1),
        },  # fmt: skip
        epoch_metrics=result.epochs,
        plots=figures,
        lineage=registry.Lineage.of(ctx.run, spec, version, result.device),
        dataset_source=store.dvc_location(ds.name),
        input_example=_serving_example(ctx, snap, day) if inputs.day_ahead(spec) else eval_x[:1].numpy(),
        run_key=run_key,
        kind=kind,
        dataset=ds,
    )
    _record_drift(model, candidate.version, drift, task=shift.current_task(state))
    info = {
        "model": model, "version": candidate.version, "run_id": candidate.run_id, "kind": kind,
        "data_version": version, "train_days": [str(d) for d in train_days],
    }  # fmt: skip
    return _candidate(info, day, reused=False, drift=drift)


def _starting_state(
    ctx: Context, day: date, champion: str, drift: DriftResult | None, consolidation: ConsolidationResult | None
) -> LearnerState:
    """On a task-shift day the consolidated state its consolidation logged; on another day the champion's
    pending consolidation if an earlier shift left one (its candidate was rejected), else the champion's
    state (:func:`lifelong.steps.shift.starting_state`)."""
    due = bool(((drift or {}).get("task_shift") or {}).get("due"))
    if due and consolidation is None:
        raise StateError(f"{day} is a task shift but no consolidation was handed to the update: run consolidate first")
    if consolidation is None or not consolidation.get("run_id"):
        state, pending = shift.starting_state(ctx, champion)
        if pending:
            task = shift.current_task(state)
            ctx.progress(f"starting from the pending consolidation of v{champion} before task {task}")
        return state
    if consolidation.get("champion") != champion:
        raise StateError(
            f"the consolidation of {day} is of v{consolidation.get('champion')}, the champion is v{champion}: "
            "run consolidate again"
        )
    ctx.progress(f"starting from v{champion} consolidated before task {consolidation.get('task')}")
    return registry.load_state_from_run(consolidation["run_id"], ctx.spec.architecture)


def _record_drift(model: str, version: str, drift: DriftResult | None, *, task: str | None = None) -> None:
    """The day's drift check in the candidate's record: its report (and its plot, on a drift day) as
    artifacts under ``drift/``, and the version's tags ``drift=none|drift|severe`` and ``task=<id>``
    (the regime the model is learning: ``0`` until a task boundary opens another)."""
    tags = {} if task is None else {"task": task}
    if drift is not None:
        tags["drift"] = drift["decision"]
        files = [Path(p) for p in (drift.get("report_path"), drift.get("plot_path")) if p and Path(p).is_file()]
        if files:
            registry.log_artifacts_of(model, version, files, "drift")
    if tags:
        registry.tag_version(model, version, tags)


def _days_to_learn(ctx: Context, stored: set[date], learned: str | None, previous: date) -> list[date]:
    """Every stored day after the last one the champion learned, up to the day before: a day a
    rejected candidate trained on is learned again by the next update, never lost. At most
    ``max_catchup_days`` of them (the latest); the rest are said to be skipped."""
    start = date.fromisoformat(learned) + timedelta(days=1) if learned else previous
    days = [start + timedelta(days=i) for i in range((previous - start).days + 1)]
    days = [d for d in days if d in stored]
    limit = ctx.spec.max_catchup_days
    if len(days) > limit:
        ctx.progress(f"{len(days)} days since the champion last learned ({learned}): training on the latest {limit}")
        days = days[-limit:]
    return days


def _serving_example(ctx: Context, snap: Snapshot, day: date) -> Any:
    """The served model's input example: the raw frame that forecasts ``day`` (lifelong.serving.input_frame)."""
    from lifelong import serving

    back = inputs.history_days(ctx.spec, ctx.dataset)
    history = snap.read_days(ctx.dataset, day - timedelta(days=back), day - timedelta(days=1))
    return serving.input_frame(ctx.dataset, history, snap.read_days(ctx.dataset, day, day))


def _candidate(info: dict[str, Any], day: date, *, reused: bool, drift: DriftResult | None) -> CandidateResult:
    return CandidateResult(
        model=info["model"],
        version=str(info["version"]),
        run_id=info["run_id"],
        kind=info.get("kind") or "update",
        date=str(day),
        data_version=info["data_version"],
        train_days=list(info.get("train_days") or []),
        reused=reused,
        drift=(drift or {}).get("decision"),
    )


def _forecast_figure(state: LearnerState, x: Any, y: Any, day: date) -> Any:
    """The day's last window: forecast beside what happened, in the target's units."""
    assert state.stats is not None
    pred, true = metrics.forecast_in_units(state.model, x[-1:], y[-1:], windows.target_scale(state.stats))
    return plots.forecast_vs_actual(true[0].tolist(), pred[0].tolist(), title=f"forecast for {day}")


def evaluate(
    model: str, logical_date: str | date, candidate: CandidateResult, *, run_info: RunInfo | dict | None = None
) -> EvaluationResult:
    """Score candidate and champion on the same data: day D and the retention set."""
    ctx = Context.of(model, run_info)
    day, version = parse_day(logical_date), candidate["data_version"]
    cand = registry.load_state_of(model, candidate["version"], ctx.spec.architecture)
    champion = registry.champion(model)
    champ = None
    if champion and champion != candidate["version"]:
        champ = registry.load_state_of(model, champion, ctx.spec.architecture)
    snap = inputs.snapshot(ctx, version)
    scores: dict[str, Scores] = {"candidate": score_day(ctx, snap, cand, day)}
    if champ is not None:
        scores["champion"] = score_day(ctx, snap, champ, day)
    # the retention set: the champion's replay buffer (what the serving model has learned), or
    # the first model's own buffer, so that every candidate is measured on what came before
    retention = (champ or cand).buffer
    if retention is not None and len(retention):
        rx, ry, _ = retention.contents()
        for name, state in (("candidate", cand), ("champion", champ)):
            if state is not None:
                scores[name]["retention_mae"] = forecast_scores(state, rx, ry)["mae"]
    registry.log_metrics(candidate["run_id"], {f"eval_{k}": v for k, v in scores["candidate"].items()})
    return EvaluationResult(
        model=model,
        version=candidate["version"],
        champion_version=champion if champ else None,
        data_version=version,
        candidate=scores["candidate"],
        champion=scores.get("champion"),
    )


def report(
    model: str, logical_date: str | date, results: dict[str, Any], *, run_info: RunInfo | dict | None = None
) -> ReportResult:
    """Write the day's summary (JSON) whatever happened upstream; return it."""
    ctx = Context.of(model, run_info)
    day = parse_day(logical_date)
    summary = {
        "model": model,
        "date": str(day),
        "champion": registry.champion(model),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **{k: v for k, v in results.items() if v is not None},
    }
    if "update_outcome" not in summary and (outcome := outcomes.for_report(ctx, day, results)) is not None:
        summary["update_outcome"] = outcome
    path = ctx.settings.reports_dir / model / "daily" / f"{day}.json"
    write_atomic(path, json.dumps(summary, indent=2, default=str).encode())
    return ReportResult(**summary, path=str(path))  # type: ignore[typeddict-item]
