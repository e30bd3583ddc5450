"""Task addition for a forecaster: another series as a task, through the steps ``lifelong add-task`` runs.

The second series is SYNTHETIC: vic_elec's demand of the same days scaled by 0.6 and shifted by
+400 MW ("another region"), written as a CSV in the test's project and declared as a data set.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from _project import project_with, quick_forecaster
from _steps_kit import DATASET, MODEL

pytestmark = pytest.mark.slow

FIRST_DAY = dt.date(2012, 3, 1)
OWN_DAYS = 4  # three warm-up days, and the day the first model is judged on
TASK, TASK_DAYS = "synth_region", 12  # 9 train days, 3 test days
TASK_END = FIRST_DAY + dt.timedelta(days=TASK_DAYS - 1)
SCALE, SHIFT = 0.6, 400.0
SECOND = "synth_second"
STRATEGY = {"strategy": "ewc+replay"}  # the trigger form's default


def _edit(raw: dict) -> None:
    quick_forecaster(raw, warmup=OWN_DAYS - 1, epochs=4, model=MODEL)
    own = raw["datasets"][DATASET]
    synthetic = {**copy.deepcopy(own), "loader": "raw/synth_region.csv"}
    raw["datasets"][TASK] = synthetic
    # the same CSV, but its day-ahead inputs would mean something else: a 7-day lag the model never had
    raw["datasets"]["other_lags"] = {**copy.deepcopy(synthetic), "lags": ["1d", "7d"]}
    raw["datasets"][SECOND] = copy.deepcopy(synthetic)  # a second region (same rows) for the refused day


def _write_synthetic_series(project: Path) -> None:
    from lifelong.config import load_params
    from lifelong.data import schema
    from lifelong.data.sources import load_source

    spec = load_params().dataset(DATASET)
    source = load_source(spec)
    days = schema.row_dates(spec, source)
    rows = source[(days >= str(FIRST_DAY)) & (days <= str(TASK_END))].copy()
    rows["Demand"] = rows["Demand"] * SCALE + SHIFT
    rows[spec.timestamp] = rows[spec.timestamp].map(lambda t: t.isoformat())
    (project / "raw").mkdir()
    rows.to_csv(project / "raw" / "synth_region.csv", index=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A champion trained by the daily steps on vic_elec, the synthetic region landed, the task added."""
    from lifelong import registry
    from lifelong.data import landing, store
    from lifelong.steps import daily, decide, run

    with project_with(tmp_path_factory.mktemp("fctask"), _edit) as project:
        store.ensure_repo()
        _write_synthetic_series(project)
        landing.simulate(DATASET, FIRST_DAY, OWN_DAYS)
        ingests = [daily.validate_ingest(MODEL, FIRST_DAY + dt.timedelta(days=i)) for i in range(OWN_DAYS)]
        day = FIRST_DAY + dt.timedelta(days=OWN_DAYS - 1)
        candidate = daily.update(MODEL, day, ingests[-1])
        decision = decide.gate(MODEL, daily.evaluate(MODEL, day, candidate))
        assert decision["approved"], decision["reason"]
        decide.promote(MODEL, decision)
        champion = registry.champion(MODEL)
        landing.simulate(TASK, FIRST_DAY, TASK_DAYS)
        refused = _refusals()
        results = run.run_task(MODEL, TASK, start=str(FIRST_DAY), end=str(TASK_END), overrides=STRATEGY)
        yield {"project": project, "champion": champion, "results": results, "refused": refused}


def _refusals() -> dict[str, str]:
    """The three bad pairings, tried before the good one: each refused before anything is read."""
    from lifelong.errors import TaskMismatch
    from lifelong.steps import run

    found = {}
    for name, task in (("wrong kind", "vibration_sim"), ("unknown", "no_such_region"), ("features", "other_lags")):
        with pytest.raises(TaskMismatch) as refused:
            run.run_task(MODEL, task, start=str(FIRST_DAY), end=str(TASK_END))
        found[name] = str(refused.value)
    return found


def test_bad_pairings_are_refused_with_the_mismatch_named_and_nothing_stored_or_trained(world) -> None:
    from lifelong import registry
    from lifelong.data import store

    refused = world["refused"]
    assert "forecast data sets" in refused["wrong kind"] and "vibration_sim" in refused["wrong kind"]
    assert "no data set 'no_such_region'" in refused["unknown"] and TASK in refused["unknown"]
    assert "lags ('1d', '7d')" in refused["features"] and "('1d',)" in refused["features"]
    assert store.stored_partitions("other_lags") == [] and store.stored_partitions("vibration_sim") == []
    kinds = [mv.tags.get("kind") for mv in registry._client().search_model_versions(f"name = '{MODEL}'")]
    assert kinds.count("task") == 1  # the good addition's candidate only


def test_the_task_is_ingested_day_by_day_and_learned_from_the_champion(world) -> None:
    from lifelong import registry
    from lifelong.config import load_params
    from lifelong.data import store, windows

    results = world["results"]
    ingest = results["validate_ingest"]
    assert ingest["dataset"] == TASK and ingest["partition"] == f"{FIRST_DAY}..{TASK_END}"
    assert len(store.stored_partitions(TASK)) == TASK_DAYS and ingest["rows"] == 48 * TASK_DAYS
    consolidation = results["consolidate"]
    assert consolidation["champion"] == world["champion"] and consolidation["fisher_task"] == DATASET
    state = registry.load_state_of(MODEL, results["learn_task"]["version"])
    assert state.tasks == [DATASET, TASK]
    assert state.fisher is not None and state.anchors is not None  # consolidated first (ewc+replay)
    champion = registry.load_state_of(MODEL, world["champion"])
    assert state.stats == champion.stats  # the model's own series keeps the model's normalisation
    train_days = store.read_days(TASK, FIRST_DAY, TASK_END - dt.timedelta(days=3))
    assert state.extra["task_stats"][TASK] == windows.fit_stats(train_days, load_params().dataset(TASK))


def test_every_task_is_scored_in_mae_beside_the_naive_and_the_gate_decides(world) -> None:
    import math

    from lifelong import registry

    results = world["results"]
    evaluation = results["evaluate_all"]
    assert evaluation["metric"] == "mae" and evaluation["tasks"] == [DATASET, TASK]
    matrix = evaluation["matrix"]
    assert [len(r) for r in matrix] == [1, 2]
    champion_own = evaluation["champion"][f"task_mae/{DATASET}"]
    assert matrix[0] == [champion_own]  # the daily champion had no matrix: its own row, measured now
    cand = evaluation["candidate"]
    assert cand["mae"] == matrix[1][1] == cand[f"task_mae/{TASK}"]
    assert cand["mase"] == pytest.approx(cand["mae"] / cand["weekly_naive_mae"])
    assert evaluation["naive_mae"][TASK] == cand["weekly_naive_mae"] > 0
    assert evaluation["average_mae"] == pytest.approx((matrix[1][0] + matrix[1][1]) / 2)
    assert evaluation["backward_transfer_mae"] == pytest.approx(matrix[1][0] - matrix[0][0])  # > 0: forgetting
    stored = registry.read_json(MODEL, evaluation["version"], "eval/task_matrix.json")
    assert stored["metric"] == "mae" and stored["matrix"] == matrix and stored["tasks"] == [DATASET, TASK]
    assert stored["naive"]["row"][1] == cand["weekly_naive_mae"]

    from lifelong.gate import decide, for_task_addition
    from lifelong.steps.context import Context

    decision = results["gate"]
    judged = decide(cand, evaluation["champion"], for_task_addition(Context.of(MODEL).spec.gate))
    assert judged.approved == decision["approved"] and judged.reason == decision["reason"]
    checks = {(c["metric"], c["bound"]): c for c in judged.checks}
    assert ("mase", "max") in checks and (f"task_mae/{DATASET}", "max_increase_pct") in checks
    rise = 100 * (cand[f"task_mae/{DATASET}"] - champion_own) / champion_own
    assert checks[(f"task_mae/{DATASET}", "max_increase_pct")]["change"] == pytest.approx(rise)
    assert decision["approved"] == all(c["passed"] for c in checks.values())
    # on these days the new series is learned well enough (MASE < 1) and vic_elec's MAE does not rise
    assert decision["approved"], decision["reason"]
    assert "promote" in results and "reject" not in results
    assert registry.champion(MODEL) == evaluation["version"]
    assert math.isfinite(cand["retention_mae"])


def test_a_refused_day_stops_the_addition_with_the_days_named(world) -> None:
    """Another region's two landed days, the second corrupt: the ingest of the task's range refuses the
    addition naming that day (quarantined as any refused day), the day that passed stays stored.
    (``ingest_task`` runs it first, so nothing after it runs: no candidate is trained.)"""
    import pandas as pd

    from lifelong.config import load_params, load_settings
    from lifelong.data import landing, store
    from lifelong.errors import RefusedBatch
    from lifelong.steps import forecast_tasks

    good, bad = FIRST_DAY, FIRST_DAY + dt.timedelta(days=1)
    landing.simulate(SECOND, good, 2)
    path = landing.landed_file(SECOND, str(bad))
    frame = pd.read_parquet(path)
    frame.assign(Demand=-frame["Demand"]).to_parquet(path)  # a negative demand: outside the block's range
    with pytest.raises(RefusedBatch) as refused:
        forecast_tasks.ingest_days(load_params().dataset(SECOND), [good, bad])
    message = str(refused.value)
    assert "1 of 2 days refused" in message and f"{bad} (" in message and "nothing trained" in message
    assert (load_settings().quarantine_dir / SECOND / str(bad)).is_dir()
    assert store.stored_partitions(SECOND) == [str(good)]


def test_in_airflow_a_bad_pairing_fails_the_first_task_without_retry(world) -> None:
    """validate_ingest's call maps TaskMismatch to AirflowFailException: failed at once, never retried
    (a DAG run costs half a minute; the DAG's form takes forecasters: tests/dags/test_dagbag.py)."""
    from airflow.sdk.exceptions import AirflowFailException

    from lifelong.airflow.task_runtime import call

    with pytest.raises(AirflowFailException, match="TaskMismatch: task 'other_lags' does not match"):
        call("tasks.ingest_task", MODEL, "other_lags", start=str(FIRST_DAY), end=str(TASK_END), context={})


def test_the_daily_updates_go_on_learning_the_own_series_after_the_addition(world) -> None:
    """The next day's daily update starts from the task addition's champion, learns vic_elec's day with
    the new series' Fisher as the penalty, and is tagged with the daily path's task (regime 0), not the
    series the addition learned (``state.tasks[-1]``)."""
    from lifelong import registry
    from lifelong.data import landing
    from lifelong.steps import daily

    champion = registry.champion(MODEL)
    day = FIRST_DAY + dt.timedelta(days=OWN_DAYS)
    landing.simulate(DATASET, day, 1)
    candidate = daily.update(MODEL, day, daily.validate_ingest(MODEL, day))
    assert candidate["train_days"] == [str(day - dt.timedelta(days=1))]
    state = registry.load_state_of(MODEL, candidate["version"])
    assert state.tasks == [DATASET, TASK] and state.fisher is not None  # the addition's consolidation carried on
    assert registry.version_record(MODEL, candidate["version"])["tags"]["task"] == "0"
    assert registry.champion(MODEL) == champion  # a candidate only: nothing judged or moved
