"""Issue 20, item 7 at the step level: a corrected past day gets an explicit outcome in the day's
report (never a silent skip), and runs a crash left RUNNING are closed by the next update."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pandas as pd
import pytest
from _steps_kit import DATASET, FIRST_DAY, MODEL, WARMUP_DAYS

THE_DAY = FIRST_DAY + dt.timedelta(days=WARMUP_DAYS)
NEXT_DAY = THE_DAY + dt.timedelta(days=1)


def _promote(candidate: dict, day: dt.date) -> None:
    from lifelong.steps import daily, decide

    evaluation = daily.evaluate(MODEL, day, candidate)
    decision = decide.gate(MODEL, {**evaluation, "candidate": {**evaluation["candidate"], "mae": 1.0}})
    assert decision["approved"], decision["reason"]
    assert decide.promote(MODEL, decision)["event"] == "promote"


def test_a_day_corrected_after_the_model_learned_it_is_reported_not_skipped(stored_days) -> None:
    from lifelong import registry
    from lifelong.data import landing
    from lifelong.steps import daily, outcomes
    from lifelong.steps.context import Context, NotReady

    _, ingests = stored_days
    ctx = Context.of(MODEL)

    # a crash left a run of the model RUNNING; the next update closes it
    client = registry._client()
    experiment = registry._experiment(client, MODEL)
    crashed = client.create_run(experiment, start_time=int(time.time() * 1000) - 3_600_000).info.run_id
    nxt = daily.validate_ingest(MODEL, NEXT_DAY)
    learned_the_day = daily.update(MODEL, NEXT_DAY, nxt)  # the first model: warm-up days up to THE_DAY
    assert learned_the_day["train_days"][-1] == str(THE_DAY)
    assert client.get_run(crashed).info.status == "FAILED"
    _promote(learned_the_day, NEXT_DAY)  # the champion has learned THE_DAY

    # THE_DAY corrected and re-ingested after that: stored, never learned, and the report says so
    batch = Path(landing.landed_file(DATASET, THE_DAY.isoformat()))
    frame = pd.read_parquet(batch)
    frame["Demand"] = frame["Demand"] * 1.05
    corrected = batch.with_name(f"{THE_DAY}-corrected.parquet")
    frame.to_parquet(corrected)
    again = daily.validate_ingest(MODEL, THE_DAY, file=str(corrected))
    assert again["replaced"] and again["changed"]
    with pytest.raises(NotReady, match="re-ingested with changed rows .* NOT learned") as refused:
        daily.update(MODEL, THE_DAY, again)
    assert refused.value.outcome is not None and refused.value.outcome["outcome"] == "corrected_after_learned"
    assert refused.value.outcome["trained_through"] == str(THE_DAY)
    # the DAG's report task gets no result from a skipped update: the recorded outcome reaches it
    summary = daily.report(MODEL, THE_DAY, {"validate_ingest": again, "update": None})
    written = json.loads(Path(summary["path"]).read_text())
    assert written["update_outcome"]["outcome"] == "corrected_after_learned"
    assert outcomes.for_report(ctx, THE_DAY, {"update": learned_the_day}) is None  # a candidate speaks for itself
    assert outcomes.for_report(ctx, THE_DAY, {"validate_ingest": ingests[-1]}) is None  # another run's data

    # an uncorrected past day is "past_day"; the day just promoted, re-run on a newer version, is "done"
    with pytest.raises(NotReady) as past:
        daily.update(MODEL, THE_DAY - dt.timedelta(days=1), {**ingests[-1], "replaced": False})
    assert past.value.outcome is not None and past.value.outcome["outcome"] == "past_day"
    with pytest.raises(NotReady, match="update for .* is done") as done:
        daily.update(MODEL, NEXT_DAY, again)
    assert done.value.outcome is not None and done.value.outcome["outcome"] == "done"
