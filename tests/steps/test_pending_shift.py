"""A task shift whose day's candidate is rejected is kept: the consolidation stays pending on the champion
(``run_day`` in process, the ewc+replay strategy, the gate made to reject chosen days).

Days (FIRST_DAY = D): D..D+9 are stored first; the daily runs are D+10 (the first model, promoted),
D+11 (a shift by hand: task 1; rejected), D+12 (an update; rejected), D+13 (a second shift by hand
before any candidate of the first was promoted: task 2; rejected) and D+14 (an update; promoted).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _project import project_with, quick_forecaster
from _steps_kit import DATASET, FIRST_DAY, MODEL

pytestmark = pytest.mark.slow

STORED_FIRST = 10
RUN_DAYS = [FIRST_DAY + dt.timedelta(days=k) for k in range(10, 15)]
SHIFT_DAYS = {RUN_DAYS[1], RUN_DAYS[3]}
REJECTED_DAYS = set(RUN_DAYS[1:4])


def _edit(raw: dict) -> None:
    spec = quick_forecaster(raw, warmup=3, model=MODEL)
    spec["strategy"] = {"name": "ewc+replay", "ewc_lambda": 1000.0, "gamma": 0.9, "replay_capacity": 500}
    # every candidate passes the gate unless its day is made to fail it; no automatic shift or rollback
    spec["gate"] = {"value": {"mae": {"max": 1.0e9}}, "naive_tolerance_pct": None}
    spec["rollback"] = {"enabled": False}
    spec["task_shift"] = {**spec["task_shift"], "severe_days": None, "seasons": False}


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The daily runs of RUN_DAYS; on REJECTED_DAYS the gate judges the candidate with a MAE past its bound."""
    from lifelong import registry
    from lifelong.data import landing, store
    from lifelong.steps import daily, run

    judged: dict[str, Any] = {"day": None}
    real_decide = run._decide

    def decide(model: str, evaluation: Any, info: Any) -> dict[str, Any]:
        if judged["day"] in REJECTED_DAYS:
            evaluation = {**evaluation, "candidate": {**evaluation["candidate"], "mae": 1.0e12}}
        return real_decide(model, evaluation, info)

    mp = pytest.MonkeyPatch()
    mp.setattr(run, "_decide", decide)
    try:
        with project_with(tmp_path_factory.mktemp("pending"), _edit) as project:
            store.ensure_repo()
            landing.simulate(DATASET, FIRST_DAY, STORED_FIRST + len(RUN_DAYS) + 1)
            for k in range(STORED_FIRST):
                daily.validate_ingest(MODEL, FIRST_DAY + dt.timedelta(days=k))
            results, champions = {}, {}
            for day in RUN_DAYS:
                judged["day"] = day
                champions[day] = registry.champion(MODEL)
                results[day] = run.run_day(MODEL, day, task_shift=day in SHIFT_DAYS)
                assert ("reject" if day in REJECTED_DAYS else "promote") in results[day], results[day]
            yield {"results": results, "champions": champions, "final": registry.champion(MODEL), "project": project}
    finally:
        mp.undo()


def _candidate_state(results: dict) -> Any:
    from lifelong import registry

    return registry.load_state_of(MODEL, results["update"]["version"])


def _tasks(state: Any) -> list[str]:
    return [r["task"] for r in state.extra["regimes"]]


def test_the_update_after_a_rejected_shift_starts_from_its_consolidation(days: dict) -> None:
    from lifelong import registry

    first_champion = days["champions"][RUN_DAYS[1]]
    shifted = days["results"][RUN_DAYS[1]]["consolidate"]
    assert shifted["champion"] == first_champion and (shifted["fisher_task"], shifted["task"]) == ("0", "1")
    assert registry.pending_consolidation(MODEL, first_champion) is not None

    after = days["results"][RUN_DAYS[2]]
    assert "consolidate" not in after and days["champions"][RUN_DAYS[2]] == first_champion
    state = _candidate_state(after)
    assert _tasks(state) == ["0", "1"] and state.tasks == ["0", "1"]
    assert state.fisher is not None and state.anchors is not None  # the closed regime's EWC is carried on
    metrics = registry._client().get_run(after["update"]["run_id"]).data.metrics
    assert metrics["ewc_penalty"] > 0
    assert registry._client().get_model_version(MODEL, after["update"]["version"]).tags["task"] == "1"


def test_a_second_shift_before_a_promotion_opens_exactly_one_more_task(days: dict) -> None:
    from lifelong import registry

    champion = days["champions"][RUN_DAYS[3]]
    assert champion == days["champions"][RUN_DAYS[1]]  # nothing promoted since the first shift
    second = days["results"][RUN_DAYS[3]]["consolidate"]
    assert (second["fisher_task"], second["task"]) == ("1", "2")
    assert registry.pending_consolidation(MODEL, champion) == second["run_id"]
    consolidated = registry.load_state_from_run(second["run_id"])
    assert consolidated.tasks == ["0", "1", "2"] and _tasks(consolidated) == ["0", "1", "2"]
    # task 1 was never learned before it closed: it spans its days of data, up to task 2's first
    task1 = consolidated.extra["regimes"][1]
    assert (task1["from"], task1["to"], task1["learned"]) == (str(RUN_DAYS[0]), str(RUN_DAYS[1]), False)
    assert consolidated.extra["regimes"][2]["from"] == str(RUN_DAYS[2])


def test_a_second_shift_before_a_promotion_folds_nothing_again(days: dict) -> None:
    """The pending state's weights are the first shift's: its Fisher was folded on them once, and is kept
    as it was (a second fold would count the replayed data of task 0 twice)."""
    import torch

    from lifelong import registry

    first = registry.load_state_from_run(days["results"][RUN_DAYS[1]]["consolidate"]["run_id"])
    second_run = days["results"][RUN_DAYS[3]]["consolidate"]["run_id"]
    second = registry.load_state_from_run(second_run)
    assert first.counters["consolidations"] == second.counters["consolidations"] == 1
    assert first.fisher is not None and second.fisher is not None
    assert all(torch.equal(first.fisher[k], second.fisher[k]) for k in first.fisher)
    assert all(torch.equal(first.anchors[k], second.anchors[k]) for k in first.anchors)
    assert "task 1 was never learned" in registry.run_params(second_run)["not_folded"]
    assert days["results"][RUN_DAYS[3]]["consolidate"]["fisher_samples"] == 0


def test_once_promoted_the_champion_records_both_shifts(days: dict) -> None:
    from lifelong import registry
    from lifelong.steps import regime_matrix

    final = days["final"]
    assert final == days["results"][RUN_DAYS[4]]["update"]["version"]
    state = registry.load_state_of(MODEL, final)
    assert state.tasks == ["0", "1", "2"] and _tasks(state) == ["0", "1", "2"]
    assert state.trained_through == str(RUN_DAYS[3])  # every day since the first champion's last, learned
    assert registry.pending_consolidation(MODEL, final) is None  # the new champion's next update: its own state
    found = regime_matrix.regime_matrix(MODEL)
    assert found["tasks"] == ["0", "1", "2"] and found["learned"] == [True, False, True]
    lines = regime_matrix.format_matrix(found)
    assert any(line.strip().startswith("after 1 (") and "*" in line for line in lines)
    assert any("never learned: task 1" in line for line in lines)


def test_a_task_addition_while_a_shift_is_pending_starts_from_it(days: dict) -> None:
    """With the old champion serving (both shifts pending on it), a forecaster's task addition starts from
    the pending consolidation (its regimes and Fisher), folding nothing again; not from the champion's
    own state, which would lose both shifts once the new task's candidate is promoted."""
    import torch

    from lifelong import registry
    from lifelong.steps import tasks

    old, day = days["champions"][RUN_DAYS[3]], RUN_DAYS[3]
    pending = days["results"][day]["consolidate"]["run_id"]
    with _champion_for_a_while(old, days["final"]):
        result = tasks.consolidate(MODEL, "another_series", days["results"][day]["validate_ingest"])
    assert result["champion"] == old and result["consolidated"]
    state = registry.load_state_from_run(result["run_id"])
    assert state.tasks == ["0", "1", "2"] and _tasks(state) == ["0", "1", "2"]
    before = registry.load_state_from_run(pending)
    assert all(torch.equal(before.fisher[k], state.fisher[k]) for k in before.fisher)
    assert pending in registry.run_params(result["run_id"])["not_folded"]  # nothing folded again


@contextmanager
def _champion_for_a_while(version: str, then: str) -> Iterator[None]:
    """The ``champion`` alias on ``version`` (as after a rollback to it), back on ``then`` afterwards."""
    from lifelong import registry

    client = registry._client()
    client.set_registered_model_alias(MODEL, "champion", version)
    try:
        yield
    finally:
        client.set_registered_model_alias(MODEL, "champion", then)


def test_a_rerun_of_the_second_shift_reuses_its_run_and_task_ids(days: dict) -> None:
    """Re-run on the old champion: the run is found by its key and the tag set again; the tasks are the
    run's own, not one more opened from the pending state (which is that very run)."""
    from lifelong.steps import shift

    day = RUN_DAYS[3]
    results = days["results"][day]
    with _champion_for_a_while(days["champions"][day], days["final"]):
        again = shift.consolidate(MODEL, day, results["validate_ingest"], results["check_drift"])
    assert again["reused"] and again["run_id"] == results["consolidate"]["run_id"]
    assert (again["fisher_task"], again["task"]) == ("1", "2")


def test_a_rerun_of_the_second_shift_under_other_params_starts_where_it_started(days: dict) -> None:
    """Another run key (params.yaml changed): a new run, from the first shift's consolidation again
    (its ``started_from``), not from the pending one of this very day: task 2 is opened once."""
    import yaml

    from lifelong import registry
    from lifelong.steps import shift

    day, params = RUN_DAYS[3], days["project"] / "params.yaml"
    results, before = days["results"][day], params.read_text()
    raw = yaml.safe_load(before)
    raw["models"][MODEL]["task_shift"]["recent_days"] -= 1
    params.write_text(yaml.safe_dump(raw))
    try:
        with _champion_for_a_while(days["champions"][day], days["final"]):
            again = shift.consolidate(MODEL, day, results["validate_ingest"], results["check_drift"])
    finally:
        params.write_text(before)
    assert not again["reused"] and again["run_id"] != results["consolidate"]["run_id"]
    assert (again["fisher_task"], again["task"]) == ("1", "2")
    first = days["results"][RUN_DAYS[1]]["consolidate"]["run_id"]
    assert registry.run_params(again["run_id"])["started_from"] == first
    assert registry.load_state_from_run(again["run_id"]).tasks == ["0", "1", "2"]


def test_the_demo_names_a_shift_the_champion_has_pending(days: dict) -> None:
    """With the old champion serving (both shifts pending on it) the demo says so under the matrix;
    with the promoted one it names neither."""
    from lifelong import demo

    shifts = [
        {"date": str(d), "outcome": "rejected", "consolidation": days["results"][d]["consolidate"]}
        for d in sorted(SHIFT_DAYS)
    ]
    assert not any("the shift of" in line for line in demo._forecaster_task_matrix(shifts))
    old = days["champions"][RUN_DAYS[3]]
    with _champion_for_a_while(old, days["final"]):
        lines = [line for line in demo._forecaster_task_matrix(shifts) if "the shift of" in line]
    assert len(lines) == 2 and all("is pending" in line and f"updates of v{old} start from" in line for line in lines)
    assert lines[0].startswith(f"  the shift of {RUN_DAYS[1]} (task 1) is pending")
