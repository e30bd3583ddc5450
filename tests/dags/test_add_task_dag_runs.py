"""The task-addition DAG end to end through Airflow, on the small synthetic vibration tasks."""

from __future__ import annotations

import pytest
from _project import project_with

pytestmark = pytest.mark.slow

MODEL = "vibration_classifier"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    def edit(raw: dict) -> None:
        raw["models"][MODEL]["train"]["epochs"] = 3
        raw["datasets"]["vibration_sim"]["options"]["samples_per_class"] = 40

    with project_with(tmp_path_factory.mktemp("addtask"), edit):
        yield _run_tasks()


def _run_tasks() -> dict:
    from lifelong.airflow.embedded_runner import run_dag
    from lifelong.data import landing, store

    store.ensure_repo()
    landing.land_tasks("vibration_sim", ["M1", "M2"])
    first = run_dag("lifelong_add_task", [None], conf={"model": MODEL, "task": "M1", "strategy": "ewc+replay"})[0]
    second = run_dag("lifelong_add_task", [None], conf={"model": MODEL, "task": "M2", "strategy": "ewc+replay"})[0]
    bad = run_dag("lifelong_add_task", [None], conf={"model": MODEL, "task": "M3", "strategy": "magic"})
    return {"first": first, "second": second, "bad": bad}


def test_first_task_trains_a_model_from_scratch(runs):
    tasks = runs["first"]["tasks"]
    assert runs["first"]["state"] == "success"
    assert tasks["consolidate"] == "success" and tasks["learn_task"] == "success"
    assert tasks["promote"] == "success" or tasks["reject"] == "success"


def test_second_task_consolidates_and_fills_the_accuracy_matrix(runs):
    from lifelong import registry

    tasks = runs["second"]["tasks"]
    assert tasks["consolidate"] == "success" and tasks["evaluate_all"] == "success"
    assert "success" in (tasks["promote"], tasks["reject"])
    versions = registry.history(MODEL)
    assert versions, "every gate decision is in the audit history"
    latest = max(int(v) for v in {e["version"] for e in versions})
    matrix = registry.read_json(MODEL, str(latest), "eval/accuracy_matrix.json")
    assert matrix["tasks"] == ["M1", "M2"]
    assert [len(row) for row in matrix["acc_matrix"]] == [1, 2]
    # beside each task's accuracy, the majority class's on the same test recordings (4 balanced classes)
    assert len(matrix["majority_accuracy"]) == 2 and all(0.0 < m < 0.5 for m in matrix["majority_accuracy"])
    logged = registry.version_record(MODEL, str(latest))["metrics"]
    assert logged["majority_accuracy"] == matrix["majority_accuracy"][-1] and "majority_acc/M1" in logged
    state = registry.load_state_of(MODEL, str(latest))
    assert state.fisher is not None and state.anchors is not None  # consolidated before learning M2


def test_the_trigger_form_refuses_an_unknown_strategy(runs):
    (bad,) = runs["bad"]
    assert bad["state"] == "refused"
    assert "magic" in bad["error"] or "strategy" in bad["error"]
