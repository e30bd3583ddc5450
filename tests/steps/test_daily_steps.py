"""The daily steps called directly, as the DAG, ``run_day`` and ``dvc repro`` call them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from _steps_kit import DATASET, FIRST_DAY, MODEL, WARMUP_DAYS

from lifelong.config import TaskShiftSpec

THE_DAY = FIRST_DAY + dt.timedelta(days=WARMUP_DAYS)


def test_a_candidate_is_trained_on_the_version_it_was_handed(stored_days) -> None:
    """A correction re-ingested while a run is under way changes neither what the run trains on nor its lineage."""
    from lifelong import registry
    from lifelong.data import landing, store, windows
    from lifelong.data.snapshot import open_version
    from lifelong.steps import daily
    from lifelong.steps.context import Context

    project, ingests = stored_days
    handed = ingests[-1]
    ctx = Context.of(MODEL)
    warmup = (FIRST_DAY, THE_DAY - dt.timedelta(days=1))
    original = open_version(ctx.settings, handed["data_version"]).read_days(ctx.dataset, *warmup)

    # the correction: the last warm-up day's demand restated 10% higher, stored as a new version
    corrected_day = THE_DAY - dt.timedelta(days=1)
    batch = Path(landing.landed_file(DATASET, corrected_day.isoformat()))
    frame = pd.read_parquet(batch)
    frame["Demand"] = frame["Demand"] * 1.1
    corrected = batch.with_name(f"{corrected_day}-corrected.parquet")
    frame.to_parquet(corrected)
    restated = store.ingest(DATASET, day=corrected_day, file=corrected)
    assert restated.data_version != handed["data_version"] and store.data_version() == restated.data_version

    # the run that was handed the earlier version reads exactly its rows
    again = open_version(ctx.settings, handed["data_version"]).read_days(ctx.dataset, *warmup)
    pd.testing.assert_frame_equal(again, original)
    candidate = daily.update(MODEL, THE_DAY, handed)
    assert candidate["data_version"] == handed["data_version"] and candidate["kind"] == "bootstrap"
    assert candidate["train_days"] == [str(FIRST_DAY + dt.timedelta(days=i)) for i in range(WARMUP_DAYS)]
    assert registry.data_version_of(MODEL, candidate["version"]) == handed["data_version"]
    state = registry.load_state_of(MODEL, candidate["version"])
    assert state.stats == windows.fit_stats(original, ctx.dataset)  # fitted on the rows before the correction
    assert state.trained_through == str(corrected_day)

    # a retry of the step finds the candidate it registered; the evaluation scores the same version
    assert daily.update(MODEL, THE_DAY, handed)["version"] == candidate["version"]
    evaluation = daily.evaluate(MODEL, THE_DAY, candidate)
    assert evaluation["data_version"] == handed["data_version"] and evaluation["champion"] is None
    assert set(evaluation["candidate"]) >= {"mae", "rmse", "smape", "retention_mae"}


def test_the_gate_and_the_registry_steps(stored_days) -> None:
    """gate -> promote makes the first champion; a retry is a no-op; with nothing before it, rollback is refused."""
    from lifelong import registry
    from lifelong.errors import RegistryError
    from lifelong.steps import daily, decide

    _, ingests = stored_days
    candidate = daily.update(MODEL, THE_DAY, ingests[-1])
    evaluation = daily.evaluate(MODEL, THE_DAY, candidate)
    decision = decide.gate(MODEL, {**evaluation, "candidate": {**evaluation["candidate"], "mae": 100.0}})
    assert decision["approved"] and decision["version"] == candidate["version"]
    assert decide.promote(MODEL, decision)["changed"] is True
    assert decide.promote(MODEL, decision)["changed"] is False
    assert registry.champion(MODEL) == candidate["version"]
    with pytest.raises(RegistryError, match="no previous champion"):
        decide.rollback(MODEL, reason="test")
    refused = decide.gate(MODEL, {**evaluation, "candidate": {**evaluation["candidate"], "mae": 1e9}})
    assert not refused["approved"] and "mae" in refused["reason"]


def test_a_step_refuses_a_version_the_cache_does_not_hold(stored_days) -> None:
    from lifelong.data.dvcrepo import DataVersionError
    from lifelong.steps import daily

    with pytest.raises(DataVersionError, match="neither in the local cache nor in the remote"):
        daily.update(MODEL, THE_DAY + dt.timedelta(days=1), {"data_version": "0" * 32})


def test_an_update_learns_every_day_since_the_champion_last_learned() -> None:
    """A day a rejected candidate trained on is learned again by the next update; a long gap is bounded."""
    from types import SimpleNamespace

    from lifelong.steps.daily import _days_to_learn

    said: list[str] = []
    ctx = SimpleNamespace(spec=SimpleNamespace(max_catchup_days=3), progress=said.append)
    day = dt.date(2012, 3, 10)
    stored = {day - dt.timedelta(days=i) for i in range(1, 20)} - {dt.date(2012, 3, 7)}
    assert _days_to_learn(ctx, stored, "2012-03-08", dt.date(2012, 3, 9)) == [dt.date(2012, 3, 9)]
    # two rejected days since the champion's last: both learned now (a missing day is skipped)
    assert _days_to_learn(ctx, stored, "2012-03-05", dt.date(2012, 3, 9)) == [
        dt.date(2012, 3, 6), dt.date(2012, 3, 8), dt.date(2012, 3, 9),
    ]  # fmt: skip
    assert not said
    assert _days_to_learn(ctx, stored, "2012-02-25", dt.date(2012, 3, 9)) == [
        dt.date(2012, 3, 6), dt.date(2012, 3, 8), dt.date(2012, 3, 9),
    ]  # fmt: skip
    assert "training on the latest 3" in said[0]


def test_the_days_drift_check_is_in_the_candidates_record(stored_days) -> None:
    """The drift report is an artifact of the candidate's run and its decision a tag of the version."""
    from lifelong import registry
    from lifelong.steps import daily

    _, ingests = stored_days
    drift = daily.check_drift(MODEL, THE_DAY, ingests[-1])
    assert drift["report_path"] and Path(drift["report_path"]).is_file()
    candidate = daily.update(MODEL, THE_DAY, ingests[-1], drift=drift)
    tags = registry._client().get_model_version(MODEL, candidate["version"]).tags
    assert tags["drift"] == drift["decision"] and tags["task"] == "0"
    stored = [f.path for f in registry._client().list_artifacts(candidate["run_id"], "drift")]
    assert f"drift/{THE_DAY}.json" in stored


def test_a_task_shift_with_the_replay_strategy_opens_a_task_once(stored_days) -> None:
    """The repo's forecaster replays only: its consolidation folds no Fisher, opens task 1 and logs it;
    a retry reuses that run; the update of the day starts from it, and refuses to start without it.
    The severe-drift streak is read back from the days' records in MLflow."""
    from lifelong import registry
    from lifelong.errors import StateError
    from lifelong.steps import daily, shift
    from lifelong.steps.context import Context

    ingest = daily.validate_ingest(MODEL, THE_DAY + dt.timedelta(days=1))  # the day judged
    champion = registry.champion(MODEL)  # promoted by test_the_gate_and_the_registry_steps
    assert champion is not None
    day = THE_DAY + dt.timedelta(days=1)
    for back, decision in ((3, "none"), (2, "severe"), (1, "severe")):
        registry.record_drift_day(MODEL, str(day - dt.timedelta(days=back)), {"decision": decision}, [])
    ctx = Context.of(MODEL)
    ctx = ctx.with_spec(dataclasses.replace(ctx.spec, task_shift=TaskShiftSpec(severe_days=3)))
    assert shift.decide(ctx, day, "severe") == {"due": True, "reasons": ["severe drift on 3 consecutive days"]}
    assert shift.decide(ctx, day, "drift")["due"] is False

    drift = {"decision": "none", "data_version": ingest["data_version"],
             "task_shift": {"due": True, "reasons": ["triggered by hand"]}}  # fmt: skip
    with pytest.raises(StateError, match="no consolidation was handed"):
        daily.update(MODEL, day, ingest, drift=drift)
    first = shift.consolidate(MODEL, day, ingest, drift)
    assert first["consolidated"] and first["fisher_task"] == "0" and first["task"] == "1"
    assert first["fisher_samples"] == 0  # replay only: no Fisher to compute
    retry = shift.consolidate(MODEL, day, ingest, drift)
    assert retry["reused"] and retry["run_id"] == first["run_id"]
    state = registry.load_state_from_run(first["run_id"])
    assert state.fisher is None and state.tasks == ["0", "1"] and state.counters["consolidations"] == 1
    candidate = daily.update(MODEL, day, ingest, drift=drift, consolidation=first)
    tags = registry._client().get_model_version(MODEL, candidate["version"]).tags
    assert tags["task"] == "1"
    assert registry.load_state_of(MODEL, candidate["version"]).extra["regimes"][-1]["from"] == str(THE_DAY)
