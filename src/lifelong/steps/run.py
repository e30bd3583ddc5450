"""Every step of a DAG, in order, in this process: ``lifelong run-day``, ``add-task``, ``dvc repro``.

Each driver holds the model's lock (:mod:`lifelong.modellock`) for the whole run, not only
for each model-changing step (:mod:`lifelong.steps.changes`, re-entrant under it): two CLI
runs of one day would otherwise both train a candidate before either promotes, and both
candidates would pass the gate (tests/faults/test_concurrent.py).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from lifelong import modellock, notify, registry
from lifelong.config import load_params, load_settings
from lifelong.data import store
from lifelong.errors import RefusedBatch
from lifelong.steps import daily, decide, publish, shift, tasks, watch
from lifelong.steps.context import Context, NotReady, RunInfo, current_user


def _model_lock(ctx: Context, what: str) -> Any:
    return modellock.hold(ctx.settings.home, ctx.model, what)


def _decide(model: str, evaluation: Any, run: RunInfo) -> dict[str, Any]:
    """The gate, then promote or reject: the results under their step names."""
    decision = decide.gate(model, evaluation, run_info=run)
    if decision["approved"]:
        return {"gate": decision, "promote": decide.promote(model, decision, run_info=run)}
    return {"gate": decision, "reject": decide.reject(model, decision, run_info=run)}


def run_day(
    model: str, logical_date: str | date, *, file: str | None = None, task_shift: bool = False
) -> dict[str, Any]:
    """Every step of the daily DAG, in order (the data version of the day's ingest travels).

    On a task-shift day (``params.yaml``'s ``task_shift:``, or ``task_shift``: by hand) ``consolidate``
    runs before ``update``, which starts from the consolidated champion.

    ``watch`` runs once the day is stored, whether a candidate was trained or not (as in the DAG,
    where it follows promote / reject and a skipped update); never on a quarantined day. ``publish``
    follows it: the champion's forecast of the next day (skipped without a champion; a missing
    forecast-covariates file fails the run, with nothing published).
    """
    run = RunInfo(user=current_user())
    ctx = Context.of(model, run)  # an unknown model is refused before its name becomes part of a path
    results: dict[str, Any] = {}
    with _model_lock(ctx, f"run_day {model} {logical_date}"):
        try:
            try:
                ingest = daily.validate_ingest(model, logical_date, file=file, run_info=run)
            except RefusedBatch as exc:
                notify.alert("quarantine", model=model, date=str(logical_date), reason=str(exc))
                raise
            results["validate_ingest"] = ingest
            try:
                drift = results["check_drift"] = daily.check_drift(
                    model, logical_date, ingest, manual_shift=task_shift, run_info=run
                )
                consolidation = None
                if drift["task_shift"]["due"]:
                    consolidation = results["consolidate"] = shift.consolidate(
                        model, logical_date, ingest, drift, run_info=run
                    )
                candidate = results["update"] = daily.update(
                    model, logical_date, ingest, drift=drift, consolidation=consolidation, run_info=run
                )
                evaluation = results["evaluate"] = daily.evaluate(model, logical_date, candidate, run_info=run)
                results.update(_decide(model, evaluation, run))
            except NotReady as exc:
                results["skipped"] = str(exc)
                if exc.outcome is not None:
                    results["update_outcome"] = exc.outcome
            results["watch"] = watch.watch(model, logical_date, ingest, run_info=run)
            results["publish"] = publish.publish(model, logical_date, ingest, run_info=run)
        except NotReady as exc:
            results.setdefault("skipped", str(exc))
        finally:
            daily.report(model, logical_date, results, run_info=run)
    return results


def run_task(
    model: str,
    task: str,
    *,
    file: str | None = None,
    start: str | None = None,
    end: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every step of the task-addition DAG, in order (a forecaster's task: its days ``start`` to ``end``)."""
    run = RunInfo(user=current_user())
    ctx = Context.of(model, run)
    results: dict[str, Any] = {}
    with _model_lock(ctx, f"run_task {model} {task}"):
        ingest = results["validate_ingest"] = tasks.ingest_task(
            model, task, file=file, start=start, end=end, run_info=run
        )
        consolidation = results["consolidate"] = tasks.consolidate(
            model, task, ingest, overrides=overrides, run_info=run
        )
        candidate = results["learn_task"] = tasks.learn_task(
            model, task, consolidation, overrides=overrides, run_info=run
        )
        evaluation = results["evaluate_all"] = tasks.evaluate_all(model, candidate, run_info=run)
        results.update(_decide(model, evaluation, run))
    return results


def status() -> dict[str, Any]:
    """Champions, stored partitions and data version: what ``lifelong status`` prints."""
    params = load_params(load_settings().params_path)
    models = {}
    for name, spec in params.models.items():
        parts = store.stored_partitions(spec.dataset)
        models[name] = {
            "dataset": spec.dataset,
            "champion": registry.champion(name),
            "stored_partitions": len(parts),
            "last_partition": parts[-1] if parts else None,
        }
    return {"data_version": store.current_version(), "models": models}
