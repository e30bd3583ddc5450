"""The reusable operators: importable without heavy libraries, wired and templated by Airflow."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from lifelong.airflow.operators import (
    DriftCheck,
    EWCConsolidate,
    IncrementalUpdate,
    PromotionGate,
    ValidateIngest,
    run_info_from_context,
)
from lifelong.pipeline import RunInfo


def test_run_info_from_a_task_context() -> None:
    context = {
        "dag_run": SimpleNamespace(dag_id="lifelong_daily__demand_forecaster", run_id="scheduled__2012-01-20"),
        "ti": SimpleNamespace(dag_id="lifelong_daily__demand_forecaster", try_number=2),
        "run_id": "scheduled__2012-01-20",
        "logical_date": datetime(2012, 1, 20, tzinfo=UTC),
        "ds": "2012-01-20",
    }
    info = run_info_from_context(context)
    assert info == {
        "dag_id": "lifelong_daily__demand_forecaster",
        "dag_run_id": "scheduled__2012-01-20",
        "logical_date": "2012-01-20T00:00:00+00:00",
        "try_number": 2,
    }
    run = RunInfo.of(info)  # what every pipeline step receives
    assert run.trigger == "airflow:lifelong_daily__demand_forecaster/scheduled__2012-01-20"


def test_run_info_of_a_manual_run_without_logical_date() -> None:
    context = {"ti": SimpleNamespace(dag_id="lifelong_add_task", try_number=1), "run_id": "manual__x"}
    info = run_info_from_context(context)
    assert info == {"dag_id": "lifelong_add_task", "dag_run_id": "manual__x", "logical_date": None, "try_number": 1}
    assert RunInfo.of(info).dag_id == "lifelong_add_task"


def test_importing_the_operators_leaves_heavy_libraries_alone() -> None:
    code = (
        "import sys, lifelong.airflow.operators\n"
        "names = ('torch', 'mlflow', 'great_expectations', 'dvc', 'lifelong.pipeline')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_operators_wire_xcom_dependencies_and_render_templates() -> None:
    from airflow.sdk import DAG

    with DAG("operators_demo", schedule=None, start_date=datetime(2012, 1, 1)) as dag:
        ingest = ValidateIngest(task_id="validate_ingest", model="demand_forecaster", file="{{ params.file }}")
        drift = DriftCheck(task_id="check_drift", model="demand_forecaster")
        update = IncrementalUpdate(
            task_id="update", model="demand_forecaster", drift=drift.output, queue="gpu", pool="lifelong_x"
        )
        gate = PromotionGate(task_id="gate", model="demand_forecaster", candidate=update.output, promote=False)
        consolidate = EWCConsolidate(task_id="consolidate", model="engine_classifier", task="{{ params.task }}")
        ingest >> drift
    assert drift.upstream_task_ids == {"validate_ingest"}
    assert update.upstream_task_ids == {"check_drift"}  # from the XComArg alone
    assert gate.upstream_task_ids == {"update"}
    assert (update.queue, update.pool, gate.promote) == ("gpu", "lifelong_x", False)

    context = {"ds": "2012-01-20", "dag": dag, "params": {"file": "data/landing/x.parquet", "task": "FordB"}}
    for op in (ingest, drift, consolidate):
        op.render_template_fields(context)
    assert (ingest.logical_date, ingest.file) == ("2012-01-20", "data/landing/x.parquet")
    assert drift.logical_date == "2012-01-20"
    assert consolidate.task == "FordB"


@pytest.mark.parametrize(
    ("operator", "fields"),
    [
        (ValidateIngest, {"model", "logical_date", "file", "task"}),
        (DriftCheck, {"model", "logical_date"}),
        (IncrementalUpdate, {"model", "logical_date", "drift"}),
        (EWCConsolidate, {"model", "task", "overrides"}),
        (PromotionGate, {"model", "logical_date", "candidate"}),
    ],
)
def test_every_argument_is_templated(operator: type, fields: set[str]) -> None:
    assert set(operator.template_fields) == fields
