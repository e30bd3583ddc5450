"""
# lifelong daily update

One DAG per forecasting model in `params.yaml` (`lifelong_daily__<model>`), run `@daily` with
catch-up, one run at a time, in date order.

| task | what it does |
| --- | --- |
| `validate_ingest` | Great Expectations validates the day's landing file; a failing batch is quarantined with its report and the run stops here (no retry). A good batch is stored as a new DVC data version, which every later task reads. |
| `check_drift` | The day's features against the reference window, and the champion's error on the new day against its history: none / drift / severe, logged to the day's run in the MLflow experiment `lifelong-drift` (report, and plot on drift days). It also decides whether the day is a **task shift** (`task_shift:` in `params.yaml`: `severe_days` consecutive severe days, a season's first day, listed month-days or dates; or this DAG's `task_shift` param when triggered by hand). Drift does not block. |
| `task_shift` | Branch: `consolidate` on a task shift, straight to `update` otherwise (`consolidate` is skipped and costs nothing). |
| `consolidate` | On a task shift only (`gpu` queue, the model's pool): the champion's exact per-sample Fisher on the closing regime (part of its replay buffer and its last days of data) folded into the online Fisher, anchors set, the next task id opened in the state (with its date range); logged as an MLflow run with the Fisher per layer and the task list, and tagged on the champion (`pending_consolidation`) until a candidate trained from it is promoted, so a rejected candidate does not lose the shift. A retry reuses that run; with a replay-only strategy it only opens the task. |
| `update` | Test-then-train: the champion (on a task shift, the consolidated champion; on a later day, its consolidation still pending if any) is updated on the previous day (plus replay, and the EWC penalty of the consolidated tasks where the strategy has one), on the `gpu` queue, in the model's one-slot pool. Logged to MLflow as a candidate version, tagged `drift=` and `task=`. |
| `evaluate` | Candidate and champion scored on the new day and on the retention set. |
| `gate` | Promote only if no metric regresses past its tolerance in `params.yaml`. |
| `promote` / `reject` | Move the `champion` alias (keeping `previous`), or tag the candidate rejected with the reason. Either writes the version's model card (its MLflow description). |
| `watch` | After either (or a skipped update), never on a quarantined day: the champion and the version before it (in shadow) scored on the new day; after `rollback.days` consecutive days worse by more than `rollback.tolerance_pct`, `champion` moves back automatically (audit `trigger=auto:...`, the demoted version tagged `rolled_back`, an alert). |
| `publish` | After `watch`: the champion's forecast of the next day, in the target's units, from the day's data version and the landed forecast covariates (`data/landing/<dataset>/forecast/<D+1>.parquet`), written to `.lifelong/forecasts/<model>/<D+1>.parquet` with its plot and logged to the champion's run. Skipped cleanly without a champion; a missing covariates file fails it (no retry) and nothing is published. |
| `report` | Always runs (a teardown): the day's summary under `.lifelong/reports/<model>/daily/`. The run's state is that of the tasks before it: a quarantined day or a failed `watch` or `publish` is a failed run. |

Nothing here holds logic: every task is one call into `lifelong.steps`. Quarantine, rejection, severe
drift, an automatic rollback and a task's final failure send an alert when `LIFELONG_ALERT_WEBHOOK` is set.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, Param, dag, get_current_context, task

from lifelong.airflow.decision_tasks import gate_then_promote_or_reject
from lifelong.airflow.task_runtime import call, default_args, project_env
from lifelong.config import load_params, pool_name


def _date(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value).replace(tzinfo=None) if value else None


def daily_dag(model: str, dataset: str, start: str, end: str | None, args: dict):
    data_asset = Asset(f"lifelong://data/{dataset}", group="lifelong-data")
    model_asset = Asset(f"lifelong://models/{model}", group="lifelong-models")
    pool = pool_name(model)

    @dag(
        dag_id=f"lifelong_daily__{model}",
        schedule="@daily",
        start_date=_date(start),
        end_date=_date(end),
        catchup=True,
        max_active_runs=1,
        default_args=args,
        doc_md=__doc__,
        tags=["lifelong", "daily", model],
        params={
            "task_shift": Param(
                False, type="boolean", description="Close the model's regime and open a new task on this day."
            )
        },
    )
    def lifelong_daily():
        @task(outlets=[data_asset])
        def validate_ingest() -> dict:
            ctx = get_current_context()
            return call("daily.validate_ingest", model, ctx["ds"], context=ctx)

        @task
        def check_drift(ingest: dict) -> dict:
            ctx = get_current_context()
            manual = bool(ctx["params"].get("task_shift"))
            return call("daily.check_drift", model, ctx["ds"], ingest, manual_shift=manual, context=ctx)

        @task.branch
        def task_shift(drift: dict) -> str:
            return "consolidate" if drift["task_shift"]["due"] else "update"

        @task(queue="gpu", pool=pool)
        def consolidate(ingest: dict, drift: dict) -> dict:
            ctx = get_current_context()
            return call("shift.consolidate", model, ctx["ds"], ingest, drift, context=ctx)

        # after consolidate, or with it skipped on a calm day; never after a failure upstream
        @task(queue="gpu", pool=pool, trigger_rule="none_failed_min_one_success")
        def update(ingest: dict, drift: dict) -> dict:
            ctx = get_current_context()
            consolidation = ctx["ti"].xcom_pull(task_ids="consolidate")
            return call("daily.update", model, ctx["ds"], ingest, drift=drift, consolidation=consolidation, context=ctx)

        @task
        def evaluate(candidate: dict) -> dict:
            ctx = get_current_context()
            return call("daily.evaluate", model, ctx["ds"], candidate, context=ctx)

        # after promote or reject, or a skipped update; not after a failure upstream (a quarantined day)
        @task(pool=pool, trigger_rule="none_failed")
        def watch(ingest: dict) -> dict:
            ctx = get_current_context()
            return call("watch.watch", model, ctx["ds"], ingest, context=ctx)

        @task(trigger_rule="none_failed")
        def publish(ingest: dict) -> dict:
            ctx = get_current_context()
            return call("publish.publish", model, ctx["ds"], ingest, context=ctx)

        @task(trigger_rule="all_done", retries=0)
        def report() -> dict:
            ctx = get_current_context()
            ti = ctx["ti"]
            names = [
                "validate_ingest",
                "check_drift",
                "consolidate",
                "update",
                "evaluate",
                "promote",
                "reject",
                "watch",
                "publish",
            ]
            results = {name: ti.xcom_pull(task_ids=name) for name in names}
            results["gate"] = ti.xcom_pull(task_ids="gate", key="decision")
            return call("daily.report", model, ctx["ds"], results, context=ctx)

        ingest = validate_ingest()
        drift = check_drift(ingest)
        consolidation, candidate = consolidate(ingest, drift), update(ingest, drift)
        task_shift(drift) >> [consolidation, candidate]
        consolidation >> candidate
        evaluation = evaluate(candidate)
        outcome = gate_then_promote_or_reject(evaluation, model_of=lambda _: model, pool=pool, outlets=[model_asset])
        watched = watch(ingest)
        outcome >> watched
        published = publish(ingest)
        watched >> published
        # a teardown: it runs whatever happened, and the run's state is its work's (a quarantined day, a
        # failed watch or publish fail the run), not the summary's success
        [*outcome, watched, published] >> report().as_teardown()

    return lifelong_daily()


project_env()
_params = load_params()  # once per parse, whatever the number of models (bench/dag_parse.py)
_args = default_args(_params)
for _name, _spec in _params.models.items():
    if _params.dataset(_spec.dataset).kind == "forecast":
        globals()[f"lifelong_daily__{_name}"] = daily_dag(_name, _spec.dataset, _spec.start_date, _spec.end_date, _args)
