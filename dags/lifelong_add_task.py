"""
# lifelong task addition

Triggered by hand (**Trigger DAG w/ config**): teach a model a new task without forgetting the
ones it knows. A **classifier**'s task is a new machine type (a task of its data set, from a
landing file); a **forecaster**'s task is another series, e.g. another region's demand: a forecast
data set declared in params.yaml with the same target, features, frequency, lags and
known-future columns as the model's own, ingested day by day from `start` to `end` (at least 10
days; the last fifth are its test days). The form below is the interface: model, task, file or
start/end, strategy, EWC lambda, epochs, replay size. Values are checked against a JSON schema
before the run starts, and the pairing of model and task (wrong kind, unknown task, another feature
set) by the first task, before anything is ingested: refused at once, never retried, nothing trained.

| task | what it does |
| --- | --- |
| `validate_ingest` | Checks the pairing; Great Expectations validates the task's landing file, or each landed day of a forecaster's task. A refused batch (any refused day) is quarantined and the run stops, naming the days. |
| `consolidate` | The exact per-sample Fisher of the champion on its latest task (a forecaster's first task is its own data set: its last learned days), folded into the online Fisher; anchors move to the champion's weights. On the `gpu` queue: the Fisher is much faster on a GPU (bench/RESULTS.md section 5). |
| `learn_task` | Train on the new task with the chosen strategy (EWC penalty, LwF distillation, replay), on the `gpu` queue. |
| `evaluate_all` | Every task seen so far on its test split: the new row of the task matrix (accuracy, or a forecaster's day-ahead MAE beside the weekly naive's), its average and backward transfer (heatmap and `eval/task_matrix.json` in MLflow). |
| `gate` | Promote only if the new task is learned (a forecaster: MASE within its naive tolerance) and no earlier task drops (accuracy) or rises (MAE) past its tolerance. |
| `promote` / `reject` | Move the `champion` alias, or tag the candidate rejected with the reason. |
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from lifelong.airflow.decision_tasks import gate_then_promote_or_reject
from lifelong.airflow.task_runtime import call, default_args, project_env
from lifelong.config import STRATEGIES, TASKS_POOL, load_params

project_env()
_params = load_params()
_models = sorted(_params.models)  # classifiers and forecasters: ingest_task checks the pairing
_classifiers = [n for n in _models if _params.dataset(_params.models[n].dataset).kind == "classify"]
_tasks = sorted({t for m in _classifiers for t in _params.dataset(_params.models[m].dataset).tasks})
_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?![\s\S])"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(?![\s\S])"  # the whole value (a "$" lets "M1\n" in): no "/", no shell


@dag(
    dag_id="lifelong_add_task",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args=default_args(_params),
    tags=["lifelong", "task-addition"],
    params={
        "model": Param(
            _classifiers[0] if _classifiers else _models[0],
            type="string",
            enum=_models,
            description="Model to extend (a classifier or a forecaster of params.yaml).",
        ),
        "task": Param(
            _tasks[0] if _tasks else "",
            type="string",
            pattern=_NAME,
            description="A classifier's task (e.g. a machine type), or for a forecaster a forecast data set of params.yaml.",
        ),
        "file": Param(
            None,
            type=["null", "string"],
            pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}){0,7}(?![\s\S])",
            description="A file of data/landing/<dataset>/ (its name, or a path below it without ..); default <task>.parquet.",
        ),
        "start": Param(
            None, type=["null", "string"], pattern=_DAY, description="A forecaster's task: first day to ingest."
        ),
        "end": Param(
            None, type=["null", "string"], pattern=_DAY, description="A forecaster's task: last day to ingest."
        ),
        "strategy": Param(
            "ewc+replay", type="string", enum=list(STRATEGIES), description="Continual-learning strategy."
        ),
        "ewc_lambda": Param(None, type=["null", "number"], minimum=0, description="EWC penalty weight."),
        "epochs": Param(None, type=["null", "integer"], minimum=1, maximum=1000, description="Training epochs."),
        "replay_capacity": Param(
            None, type=["null", "integer"], minimum=0, maximum=1_000_000, description="Replay buffer size."
        ),
    },
)
def lifelong_add_task():
    def _form() -> tuple[str, str, dict]:
        p = get_current_context()["params"]
        overrides = {k: p.get(k) for k in ("strategy", "ewc_lambda", "epochs", "replay_capacity")}
        return p["model"], p["task"], overrides

    @task
    def validate_ingest() -> dict:
        ctx = get_current_context()
        model, name, _ = _form()
        p = ctx["params"]
        return call(
            "tasks.ingest_task", model, name, file=p.get("file"), start=p.get("start"), end=p.get("end"), context=ctx
        )

    @task(queue="gpu", pool=TASKS_POOL)
    def consolidate(ingest: dict) -> dict:
        model, name, overrides = _form()
        return call("tasks.consolidate", model, name, ingest, overrides=overrides, context=get_current_context())

    @task(queue="gpu", pool=TASKS_POOL)
    def learn_task(consolidation: dict) -> dict:
        model, name, overrides = _form()
        return call("tasks.learn_task", model, name, consolidation, overrides=overrides, context=get_current_context())

    @task
    def evaluate_all(candidate: dict) -> dict:
        model, _, _ = _form()
        return call("tasks.evaluate_all", model, candidate, context=get_current_context())

    evaluation = evaluate_all(learn_task(consolidate(validate_ingest())))
    gate_then_promote_or_reject(evaluation, model_of=lambda ctx: ctx["params"]["model"], pool=TASKS_POOL)


lifelong_add_task()
