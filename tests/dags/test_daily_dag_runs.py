"""The daily DAG end to end through Airflow (``dag.test`` on an embedded SQLite metadata DB).

One module-scoped workspace: a few real vic_elec days land, the DAG runs day by day, then
a malformed day and a poisoned-but-valid day are fed to it. Each test asserts on one part
of that history.

The forecaster learns with ``ewc+replay`` and a task shift is declared on a calendar boundary
(``BOUNDARY``, the day the first model is judged on; and the season's first day, before any model):
the consolidate branch runs there only, and the updates after it train against the Fisher.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from _project import project_with, quick_forecaster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = "demand_forecaster"
DAG = f"lifelong_daily__{MODEL}"
START = date(2012, 3, 1)
WARMUP = 3
BOUNDARY = START + timedelta(days=WARMUP)  # the first day of a new task: the first model is judged on it
SHIFT_DAY = BOUNDARY + timedelta(days=1)  # the run that learns it first (test-then-train)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Run days 1..WARMUP+3 (good), then a malformed day, then a poisoned day and the day after."""

    def edit(raw: dict) -> None:
        forecaster = quick_forecaster(raw, warmup=WARMUP, epochs=3, model=MODEL)
        forecaster["start_date"] = str(START)
        forecaster["strategy"].update({"name": "ewc+replay", "ewc_lambda": 100.0, "gamma": 0.9})
        forecaster["task_shift"] = {"seasons": True, "severe_days": 3, "dates": [str(BOUNDARY)], "recent_days": 2}

    with project_with(tmp_path_factory.mktemp("dagrun"), edit) as project:
        yield _run_days(project)
        shutil.rmtree(project, ignore_errors=True)


def _run_days(project: Path) -> dict:
    from lifelong import registry
    from lifelong.airflow.embedded_runner import run_dag
    from lifelong.data import landing, store

    store.ensure_repo()
    good_days = WARMUP + 3
    landing.simulate("vic_elec", START, good_days + 3)
    days = [START + timedelta(days=i) for i in range(good_days + 3)]
    bad_day, poisoned_day, after_poison = days[good_days], days[good_days + 1], days[good_days + 2]

    results = {r["logical_date"]: r for r in run_dag(DAG, [str(d) for d in days[:good_days]])}
    history = {"champion_before_bad": registry.champion(MODEL), "version_before_bad": store.data_version()}

    landing_dir = project / "data" / "landing" / "vic_elec"
    bad = pd.read_parquet(landing_dir / f"{bad_day}.parquet")
    bad.loc[bad.index[:5], "Demand"] = -1.0  # out of range: validation must refuse it
    bad.to_parquet(landing_dir / f"{bad_day}.parquet")
    frame = pd.read_parquet(landing_dir / f"{poisoned_day}.parquet")
    # valid (in range, not flat), but wrong: a meter reporting double. Not a within-day shuffle: that keeps
    # the day's level, and whether the gate then rejects depends on the calendar day (measured: shuffled
    # days starting 2012-02-28, 03-02 and 03-05 were promoted; doubled ones rejected on all four starts)
    frame["Demand"] = (frame["Demand"] * 2).clip(upper=14_900.0)
    frame.to_parquet(landing_dir / f"{poisoned_day}.parquet")

    results[str(bad_day)] = run_dag(DAG, [str(bad_day)])[0]
    history["champion_after_bad"] = registry.champion(MODEL)
    history["version_after_bad"] = store.data_version()
    # the data team fixes the batch (lands the real file again) and re-runs the day
    landing.simulate("vic_elec", bad_day, 1, force=True)
    history["fixed_day"] = run_dag(DAG, [str(bad_day)])[0]
    results.update({r["logical_date"]: r for r in run_dag(DAG, [str(poisoned_day), str(after_poison)])})
    return {
        "project": project,
        "results": results,
        "days": days,
        "history": history,
        "bad_day": bad_day,
        "poisoned_day": poisoned_day,
        "after_poison": after_poison,
    }


def test_warmup_then_first_model_then_daily_updates(world):
    results, days = world["results"], world["days"]
    for day in days[:WARMUP]:
        tasks = results[str(day)]["tasks"]
        assert tasks["validate_ingest"] == "success"
        assert tasks["update"] == "skipped"  # warming up
        assert tasks["report"] == "success"
        assert results[str(day)]["state"] == "success"
    first = results[str(days[WARMUP])]["tasks"]
    assert first["update"] == "success" and first["promote"] == "success"
    for day in days[WARMUP + 1 : WARMUP + 3]:
        tasks = results[str(day)]["tasks"]
        assert tasks["update"] == "success" and tasks["gate"] == "success"
        assert "success" in (tasks["promote"], tasks["reject"])


def test_bad_day_stops_at_validation_and_leaves_model_untouched(world):
    tasks = world["results"][str(world["bad_day"])]["tasks"]
    assert tasks["validate_ingest"] == "failed"
    assert tasks["update"] == "upstream_failed"
    assert tasks["report"] == "success"  # the day's summary is written: a teardown runs whatever happened
    assert world["results"][str(world["bad_day"])]["state"] == "failed"  # and the run says the day failed
    history = world["history"]
    assert history["champion_after_bad"] == history["champion_before_bad"]
    assert history["version_after_bad"] == history["version_before_bad"]
    quarantined = world["project"] / "data" / "quarantine" / "vic_elec" / str(world["bad_day"])
    assert any(quarantined.iterdir())


def test_a_fixed_batch_re_runs_the_day(world):
    tasks = world["history"]["fixed_day"]["tasks"]
    assert tasks["validate_ingest"] == "success"
    assert tasks["update"] == "success"


def test_poisoned_day_is_rejected_by_the_gate(world):
    from lifelong import registry

    tasks = world["results"][str(world["after_poison"])]["tasks"]  # trains on the poisoned day
    assert tasks["update"] == "success"
    assert tasks["reject"] == "success" and tasks["promote"] == "skipped"
    events = [e for e in registry.history(MODEL) if e["event"] != "rollback"]  # the watch may act after the gate
    assert events[-1]["event"] == "reject"
    assert "mae" in events[-1]["reason"]


def _daily_report(world, day: date) -> dict:
    import json

    return json.loads((world["project"] / ".lifelong" / "reports" / MODEL / "daily" / f"{day}.json").read_text())


def _state_runs(kind_key: str) -> list:
    from lifelong.registry import _client

    client = _client()
    experiment = client.get_experiment_by_name(MODEL)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'state'", max_results=100)
    return [r for r in runs if f"/{kind_key}/" in r.data.tags.get("run_key", "")]


def test_one_consolidation_at_the_task_shift_then_updates_against_its_fisher(world):
    from lifelong import registry

    results, days = world["results"], world["days"]
    season = START + timedelta(days=1)  # learns 03-01 first, a season's first day: no champion to consolidate yet
    assert results[str(season)]["tasks"]["consolidate"] == "success"
    assert _daily_report(world, season)["consolidate"]["consolidated"] is False
    assert results[str(START)]["tasks"]["consolidate"] == "skipped"
    shift_tasks = results[str(SHIFT_DAY)]["tasks"]
    assert shift_tasks["task_shift"] == "success" and shift_tasks["consolidate"] == "success"
    assert shift_tasks["update"] == "success"
    for day in days[WARMUP : WARMUP + 3]:
        if day != SHIFT_DAY:  # calm days: the branch skips consolidate, and update still runs
            tasks = results[str(day)]["tasks"]
            assert tasks["consolidate"] == "skipped" and tasks["update"] == "success", day

    [run] = _state_runs("shift")  # exactly one consolidation, for all the re-runs and later days
    consolidation = _daily_report(world, SHIFT_DAY)["consolidate"]
    assert consolidation["run_id"] == run.info.run_id and consolidation["fisher_task"] == "0"
    assert consolidation["task"] == "1" and consolidation["reasons"] == [f"date listed ({BOUNDARY})"]
    assert run.data.metrics["fisher_samples"] == consolidation["fisher_samples"] > 0
    assert run.data.metrics["fisher_samples"] == run.data.metrics["replay_samples"] + run.data.metrics["recent_samples"]
    client = registry._client()
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/fisher_per_layer.png" in logged
    task_list = client.download_artifacts(run.info.run_id, "tasks.json", str(world["project"] / ".tmp-tasks"))
    regimes = __import__("json").loads(Path(task_list).read_text())
    assert regimes["tasks"] == ["0", "1"]
    assert [(r["task"], r["from"], r["to"]) for r in regimes["regimes"]] == [
        ("0", str(START), str(BOUNDARY - timedelta(days=1))), ("1", str(BOUNDARY), None)
    ]  # fmt: skip

    # every version from the shift on: task 1, a Fisher, and a non-zero EWC penalty in its update
    versions = client.search_model_versions(f"name = '{MODEL}'")
    later = [mv for mv in versions if mv.tags.get("kind") == "update" and mv.tags.get("task") == "1"]
    assert len(later) >= 4, [(mv.version, mv.tags.get("task")) for mv in versions]
    for mv in later:
        assert "state/fisher.safetensors" in {f.path for f in client.list_artifacts(mv.run_id, "state")}, mv.version
        assert "plots/fisher_per_layer.png" in {f.path for f in client.list_artifacts(mv.run_id, "plots")}
        assert client.get_run(mv.run_id).data.metrics["ewc_penalty"] > 0, mv.version
    before = [mv for mv in versions if mv.tags.get("kind") in ("bootstrap", "update") and mv not in later]
    assert before and all(mv.tags.get("task") == "0" for mv in before)


def test_the_drift_check_is_kept_in_mlflow_every_day(world):
    """Item 5: the day's drift decision and report on its own MLflow run, registered version or not."""
    from lifelong import registry

    client = registry._client()
    warming = START + timedelta(days=2)  # no model yet, so no version: the record is there all the same
    for day in (warming, SHIFT_DAY):
        record = registry.drift_record(MODEL, str(day))
        assert record is not None and record["decision"] in ("none", "drift", "severe"), day
        assert f"drift/{day}.json" in {f.path for f in client.list_artifacts(record["run_id"], "drift")}
    assert registry.drift_record(MODEL, str(SHIFT_DAY))["task_shift"] == "true"
    assert registry.drift_record(MODEL, str(warming))["task_shift"] == "false"


def test_a_task_shift_in_fresh_processes_equals_a_continuous_run(world):
    """The DAG consolidated in one task's process and updated in another, through MLflow; here the same
    champion is consolidated and updated in one go, in memory: the same Fisher, anchors and weights."""
    import torch

    from lifelong import registry
    from lifelong.learn import train
    from lifelong.learn.strategies import make_strategy
    from lifelong.steps import inputs, shift
    from lifelong.steps.context import Context

    consolidation = _daily_report(world, SHIFT_DAY)["consolidate"]
    candidate = _daily_report(world, SHIFT_DAY)["update"]
    ctx = Context.of(MODEL)
    arch = ctx.spec.architecture
    state = registry.load_state_of(MODEL, consolidation["champion"], arch)
    x, y, _ = shift.closing_regime(ctx, state, consolidation["data_version"])
    strategy = make_strategy(ctx.spec.strategy, "regression", state)
    train.consolidate(state, strategy, x, y, device="cpu")
    logged = registry.load_state_from_run(consolidation["run_id"], arch)
    assert state.fisher is not None and logged.fisher is not None and state.anchors is not None
    for name in state.fisher:
        assert torch.allclose(state.fisher[name], logged.fisher[name], rtol=0, atol=1e-6), name
        assert torch.allclose(state.anchors[name], logged.anchors[name], rtol=0, atol=1e-6), name

    snap = inputs.snapshot(ctx, candidate["data_version"])
    days = [date.fromisoformat(d) for d in candidate["train_days"]]
    tx, ty = inputs.forecast_days(ctx, snap, days, state.stats)
    train.fit(state, tx, ty, train=ctx.train_spec(), strategy=strategy)
    updated = registry.load_state_of(MODEL, candidate["version"], arch)
    for (name, a), (_, b) in zip(state.model.state_dict().items(), updated.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-6), name
