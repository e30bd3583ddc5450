"""The tasks both DAGs end with: ``gate`` branches to ``promote`` or ``reject``.

Written once and wired into a DAG at parse time, inside its ``@dag`` function; each task is
one call into :mod:`lifelong.steps.decide` when it runs. Only ``airflow.sdk`` is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow.sdk import get_current_context, task

from lifelong.airflow.task_runtime import call

ModelOf = Callable[[Mapping[str, Any]], str]


def gate_then_promote_or_reject(evaluation: Any, *, model_of: ModelOf, pool: str, outlets: Sequence[Any] = ()) -> list:
    """``gate(evaluation) >> [promote, reject]``; returns the two outcome tasks.

    ``model_of(context)`` names the model (fixed for a daily DAG, the trigger form's for a task
    addition). The gate's decision travels to the outcome tasks as the XCom ``decision``, and
    is recorded on the candidate version by the gate step itself: ``promote`` moves the alias
    only for the recorded approval (:mod:`lifelong.decisions`), so a rewritten XCom cannot.
    """

    @task.branch
    def gate(evaluation: dict) -> str:
        ctx = get_current_context()
        decision = call("decide.gate", model_of(ctx), evaluation, context=ctx)
        ctx["ti"].xcom_push(key="decision", value=decision)
        return "promote" if decision["approved"] else "reject"

    def _outcome(step: str) -> dict:
        ctx = get_current_context()
        decision = ctx["ti"].xcom_pull(task_ids="gate", key="decision")
        return call(step, model_of(ctx), decision, context=ctx)

    @task(pool=pool, outlets=list(outlets))
    def promote() -> dict:
        return _outcome("decide.promote")

    @task(pool=pool)
    def reject() -> dict:
        return _outcome("decide.reject")

    outcome = [promote(), reject()]
    gate(evaluation) >> outcome
    return outcome
