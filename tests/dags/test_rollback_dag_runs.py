"""The daily DAG rolls back, by itself, a champion that slipped past the gate (issue 19's "done when").

Through Airflow (``dag.test`` on an embedded SQLite metadata DB), with a local webhook; the
watch is set to 5% worse on 2 consecutive days.

Why the bad champion is injected rather than grown from a poisoned day: measured on these young
models (3 warm-up days), a poisoned-but-valid day does not leave a champion that stays worse. A
day of doubled demand, admitted by a lenient gate, gave a candidate within 0.6% of the version
before it on the next day (that day's input windows carry the poisoned history for both
models), and the update after it was 46% better again; a 20% bias made the next candidate
*better*. So the test does what such a day does in the registry: the candidate that learned day
``POISONED`` is a biased copy of the champion, forecasting about six standard deviations high,
as doubled demand would teach it (copies 0.8 and 2 standard deviations high were recovered from
by the very next update, and one with its output layer negated was as good as the champion:
these young models learn fast and forecast little more than the level), and it is promoted as if
the gate had approved it. The DAG then runs on: the next day
has nothing to train (the bad version learned it already) and the watch finds it worse than the
version it replaced; the day after, a candidate trained on top of it is still compared with that
version, and ``champion`` moves back (audit ``trigger=auto:airflow:...``, the alert); the next
update starts from the restored version.
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from _project import project_with, quick_forecaster
from _webhook import Webhook

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = "demand_forecaster"
DAG = f"lifelong_daily__{MODEL}"
START = date(2012, 3, 1)
WARMUP = 3
DAYS = [START + timedelta(days=i) for i in range(WARMUP + 4)]
POISONED = DAYS[WARMUP]  # the first model's day: the bad version is the candidate that learned it
AFTER = DAYS[WARMUP + 1 :]  # run through Airflow: nothing to train, the rollback, an update from the restored
ROLLBACK_DAYS = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    def edit(raw: dict) -> None:
        forecaster = quick_forecaster(raw, warmup=WARMUP, epochs=3, model=MODEL)
        forecaster["start_date"] = str(START)
        forecaster["rollback"] = {"enabled": True, "tolerance_pct": 5.0, "days": ROLLBACK_DAYS}

    mp = pytest.MonkeyPatch()
    with project_with(tmp_path_factory.mktemp("rollbackdag"), edit) as project, Webhook() as hook:
        mp.setenv("LIFELONG_ALERT_WEBHOOK", hook.url)
        mp.setenv("LIFELONG_ALERT_BACKOFF_S", "0.05")
        try:
            yield _run_days(project, hook)
        finally:
            mp.undo()
            shutil.rmtree(project, ignore_errors=True)


def _slipped_past_the_gate(good: str, ingest: dict) -> str:
    """Register and promote a biased copy of ``good`` that has learned ``POISONED``."""
    import torch

    from lifelong import registry
    from lifelong.config import to_jsonable
    from lifelong.steps import decide, inputs
    from lifelong.steps.context import Context

    ctx = Context.of(MODEL)
    state = registry.load_state_of(MODEL, good)
    last = [m for m in state.model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv1d)][-1]
    with torch.no_grad():
        last.bias.add_(6.0)  # forecasts ~6 standard deviations high: the level a meter reporting double teaches
    state.trained_through = str(POISONED)
    x, _ = inputs.forecast_days(ctx, inputs.snapshot(ctx, ingest["data_version"]), [POISONED], state.stats)
    bad = registry.log_candidate(
        MODEL, state, params={"model": to_jsonable(ctx.spec), "kind": "update", "train_days": [str(POISONED)]},
        metrics={}, epoch_metrics=[], plots={},
        lineage=registry.Lineage.of(ctx.run, ctx.spec, ingest["data_version"], "cpu"),
        dataset_source="dvc://test", input_example=x[:1].numpy(), run_key="test/poisoned",
    ).version  # fmt: skip
    approved = {
        "model": MODEL, "version": bad, "champion_version": good, "approved": True,
        "reason": "approved: mae +4.0% <= 5% allowed (the poisoned day's bias slipped through)", "deltas": {},
    }  # fmt: skip
    # as the gate records it: the approval is on the version, which is what promote trusts
    from lifelong import decisions

    registry.record_decision(MODEL, bad, decisions.body(**approved, candidate={}, champion=None, data_version=None))
    decide.promote(MODEL, approved)
    return bad


def _run_days(project: Path, hook: Webhook) -> dict:
    from lifelong import registry
    from lifelong.airflow.embedded_runner import run_dag
    from lifelong.data import landing, store
    from lifelong.steps import run

    store.ensure_repo()
    landing.simulate("vic_elec", START, len(DAYS))
    first = [run.run_day(MODEL, day) for day in DAYS[: WARMUP + 1]]  # the same steps, without Airflow: faster
    good = registry.champion(MODEL)
    bad = _slipped_past_the_gate(good, first[-1]["validate_ingest"])
    results = {r["logical_date"]: r for r in run_dag(DAG, [str(d) for d in AFTER])}
    reports = {
        str(d): json.loads((project / ".lifelong" / "reports" / MODEL / "daily" / f"{d}.json").read_text())
        for d in AFTER
    }
    return {"good": good, "bad": bad, "results": results, "reports": reports, "alerts": list(hook.documents)}


def test_a_champion_that_slipped_past_the_gate_is_rolled_back_within_n_days(world):
    from lifelong import registry

    good, bad, reports, results = world["good"], world["bad"], world["reports"], world["results"]
    watched = {day: reports[day]["watch"] for day in sorted(reports)}
    summary = json.dumps(watched, indent=1)
    day1, day2, day3 = (str(d) for d in AFTER)
    assert results[day1]["tasks"]["update"] == "skipped" and results[day1]["tasks"]["watch"] == "success"
    assert (watched[day1]["status"], watched[day1]["shadow"], watched[day1]["streak"]) == ("worse", good, 1), summary
    assert watched[day2]["status"] == "rolled_back" and watched[day2]["shadow"] == good, summary
    assert results[day2]["tasks"]["watch"] == "success"

    (event,) = [e for e in registry.history(MODEL) if e["event"] == "rollback"]
    assert (
        event["trigger"].startswith(f"auto:airflow:{DAG}/")
        and f"on {ROLLBACK_DAYS} consecutive days" in event["reason"]
    )
    assert event["version"] == good and int(event["from"]) >= int(bad)  # the bad line demoted, the good one back
    assert registry.status_of(MODEL, event["from"]) == "rolled_back"

    (alert,) = [a for a in world["alerts"] if a["event"] == "rollback"]
    assert (alert["model"], alert["date"], alert["version"]) == (MODEL, day2, good)
    assert alert["dag_run"].startswith(f"{DAG}/") and alert["figures"]["streak"] == ROLLBACK_DAYS

    # the next update continues from the restored version: judged against it, trained from its state
    assert results[day3]["tasks"]["update"] == "success"
    assert reports[day3]["evaluate"]["champion_version"] == good
    assert watched[day3]["status"] in ("no_shadow", "ok", "worse") and watched[day3]["champion"] in (
        good,
        reports[day3]["update"]["version"],
    )


def test_the_store_and_registry_are_consistent_after_it(world):
    sys.path.insert(0, str(REPO / "tests" / "faults"))
    try:
        from _faults_kit import assert_safe, inspect
    finally:
        sys.path.pop(0)
    info = inspect(MODEL)
    assert_safe(info)
    assert all(info["partitions"][str(day)]["rows"] == 48 for day in DAYS)
    assert all(state != "failed" for r in world["results"].values() for state in r["tasks"].values())
