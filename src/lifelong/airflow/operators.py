"""Reusable lifelong operators: compose lifelong steps into DAGs of your own.

Each operator is a thin :class:`airflow.sdk.BaseOperator` whose ``execute`` makes one
call (two or three for the gate) into :mod:`lifelong.pipeline` and returns the step's
small JSON result, which Airflow pushes to XCom. Errors map as in the shipped DAGs
(:mod:`lifelong.airflow.runtime`): a refused batch or a bad parameter fails at once
without retry, "nothing to do yet" skips, anything else raises for Airflow to retry.

Arguments are templated, and an upstream operator's ``.output`` can be passed straight
in (Airflow resolves it at run time and wires the dependency)::

    from lifelong.airflow.operators import DriftCheck, IncrementalUpdate, PromotionGate, ValidateIngest

    with DAG("my_daily", schedule="@daily", start_date=datetime(2012, 1, 15), catchup=True):
        ingest = ValidateIngest(task_id="validate_ingest", model="demand_forecaster")
        drift = DriftCheck(task_id="check_drift", model="demand_forecaster")
        update = IncrementalUpdate(
            task_id="update", model="demand_forecaster", drift=drift.output,
            queue="gpu", pool="lifelong_demand_forecaster",
        )
        ingest >> drift
        PromotionGate(task_id="gate", model="demand_forecaster", candidate=update.output)

Nothing heavy is imported here: :mod:`lifelong.pipeline` (and through it torch, MLflow,
Great Expectations) is imported inside ``execute``, so a DAG file using these operators
still parses fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

__all__ = [
    "DriftCheck",
    "EWCConsolidate",
    "IncrementalUpdate",
    "LifelongOperator",
    "PromotionGate",
    "ValidateIngest",
    "run_info_from_context",
]


def run_info_from_context(context: Mapping[str, Any]) -> dict:
    """Who runs the step, as the small dict :class:`lifelong.pipeline.RunInfo` takes.

    Keys: ``dag_id``, ``dag_run_id``, ``logical_date`` (ISO text, or ``None`` for a run
    without one) and ``try_number``. They become the lineage tags of what the step logs.
    """
    from lifelong.airflow.runtime import run_info

    return run_info(context)


class LifelongOperator(BaseOperator):
    """Base of the lifelong operators: one model, one pipeline step, JSON to XCom."""

    template_fields: Sequence[str] = ("model",)
    ui_color = "#e3f1e6"

    def __init__(self, *, model: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def call(self, step: str, *args: Any, context: Mapping[str, Any], **kwargs: Any) -> dict:
        """Run ``lifelong.pipeline.<step>`` with the task's run info and error mapping."""
        from lifelong import pipeline
        from lifelong.airflow.runtime import call

        return call(getattr(pipeline, step), *args, context=context, **kwargs)


class ValidateIngest(LifelongOperator):
    """Validate the day's landing file (Great Expectations) and append it to the DVC store.

    A failing batch is quarantined with its report and the task fails without retry;
    the model is untouched. With ``task`` set, ingests a task-addition data set instead
    of a day. Returns the ingest result (data version, rows, paths).
    """

    template_fields: Sequence[str] = ("model", "logical_date", "file", "task")

    def __init__(
        self,
        *,
        model: str,
        logical_date: str = "{{ ds }}",
        file: str | None = None,
        task: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self.logical_date = logical_date
        self.file = file or None
        self.task = task or None

    def execute(self, context: Any) -> dict:
        file = self.file or None  # an empty rendered template means "the default landing file"
        if self.task:
            return self.call("ingest_task", self.model, self.task, file=file, context=context)
        return self.call("validate_ingest", self.model, self.logical_date, file=file, context=context)


class DriftCheck(LifelongOperator):
    """KS / PSI per feature against the reference window, and the champion's error drift.

    Returns the drift report (``decision`` none / drift / severe, per-feature tests,
    reasons, report and plot paths). Severe drift is logged; it never fails the task.
    """

    template_fields: Sequence[str] = ("model", "logical_date")
    ui_color = "#fdf0d5"

    def __init__(self, *, model: str, logical_date: str = "{{ ds }}", **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        self.logical_date = logical_date

    def execute(self, context: Any) -> dict:
        return self.call("check_drift", self.model, self.logical_date, context=context)


class IncrementalUpdate(LifelongOperator):
    """Train a candidate: the champion updated on the previous day plus replay.

    Logs the candidate as an MLflow model version and returns its id (``version``,
    ``run_id``, ``kind``, ``data_version``, ``reused``). Idempotent per day and data
    version: a retry returns the candidate it already logged. Give it ``queue="gpu"``
    and a one-slot ``pool`` per model so two runs never change one model at once.
    """

    template_fields: Sequence[str] = ("model", "logical_date", "drift")
    ui_color = "#dbe9f6"

    def __init__(
        self,
        *,
        model: str,
        logical_date: str = "{{ ds }}",
        drift: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self.logical_date = logical_date
        self.drift = drift

    def execute(self, context: Any) -> dict:
        drift = self.drift if isinstance(self.drift, dict) else None
        return self.call("update", self.model, self.logical_date, drift=drift, context=context)


class EWCConsolidate(LifelongOperator):
    """Fold the champion's exact Fisher on its latest task into the online Fisher.

    Run before learning ``task``; ``overrides`` are the trigger form's strategy settings
    (strategy, ewc_lambda, epochs, replay_capacity). Returns the consolidation run id
    that the learning step starts from (``consolidated`` is false for a first task).
    """

    template_fields: Sequence[str] = ("model", "task", "overrides")
    ui_color = "#ece3f6"

    def __init__(self, *, model: str, task: str, overrides: dict | None = None, **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
        self.task = task
        self.overrides = overrides

    def execute(self, context: Any) -> dict:
        overrides = self.overrides if isinstance(self.overrides, dict) else None
        return self.call("consolidate", self.model, self.task, overrides=overrides, context=context)


class PromotionGate(LifelongOperator):
    """Evaluate a candidate against the champion, decide, and promote or reject it.

    ``candidate`` is the result of :class:`IncrementalUpdate` (or of a task-learning
    step: a result with a ``task`` key is scored on every task seen, else on the
    logical day and the retention set). The decision follows the gate in params.yaml.
    With ``promote=False`` the operator only decides and leaves the aliases alone.
    Returns ``{"decision": ..., "evaluation": ..., "action": "promoted" | "rejected" | None,
    "result": ...}``.
    """

    template_fields: Sequence[str] = ("model", "logical_date", "candidate")
    ui_color = "#f6dede"

    def __init__(
        self,
        *,
        model: str,
        candidate: dict,
        logical_date: str = "{{ ds }}",
        promote: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, **kwargs)
        self.candidate = candidate
        self.logical_date = logical_date
        self.promote = promote

    def execute(self, context: Any) -> dict:
        if not isinstance(self.candidate, dict) or "version" not in self.candidate:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"PromotionGate: candidate must be an update result, got {self.candidate!r}")
        if "task" in self.candidate:
            evaluation = self.call("evaluate_all", self.model, self.candidate, context=context)
        else:
            evaluation = self.call("evaluate", self.model, self.logical_date, self.candidate, context=context)
        decision = self.call("gate", self.model, evaluation, context=context)
        action, result = None, None
        if self.promote:
            action = "promoted" if decision["approved"] else "rejected"
            result = self.call("promote" if decision["approved"] else "reject", self.model, decision, context=context)
        return {"decision": decision, "evaluation": evaluation, "action": action, "result": result}
