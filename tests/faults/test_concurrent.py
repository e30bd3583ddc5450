"""Two triggers for one model at once, outside Airflow's pool: both end correct.

Airflow serializes model-changing steps with a one-slot pool per model; a person at the CLI
(or ``dvc repro``) has no pool. Two ``run_day`` of the same model and day and an ingest of
the next day start together in three processes: the store lock orders the three ingests,
the model lock (``steps.run.run_day``) orders the two runs, and the second finds the day done.
"""

from __future__ import annotations

import _faults_kit as kit
import pytest

pytestmark = pytest.mark.slow

THE_DAY, NEXT_DAY = kit.day(4), kit.day(5)


def test_two_run_days_and_an_ingest_at_once(base):
    project = base.fresh()
    started = [
        kit.start(project, "run_day", kit.MODEL, THE_DAY),
        kit.start(project, "run_day", kit.MODEL, THE_DAY),
        kit.start(project, "lifelong.steps.daily:validate_ingest", kit.MODEL, NEXT_DAY),
    ]
    first, second, ingest = (kit.wait(s) for s in started)
    runs = [kit.ok(first), kit.ok(second)]
    kit.ok(ingest)
    info = kit.ok(kit.run(project, "_faults_kit:inspect", kit.MODEL))

    kit.assert_day_correct(info, THE_DAY)
    assert info["partitions"][NEXT_DAY] == {"rows": 48, "unique_times": 48}
    assert sorted(info["partitions"]) == [kit.day(i) for i in range(6)]
    promotions = [e for e in info["audit"] if e["event"] == "promote"]
    assert len(promotions) == 2, promotions  # the first champion, and one for the day
    # one run trained and decided the day; the other, serialized behind it by the model lock, found
    # the day done: it reused that candidate (same data version) or skipped (the next day was stored)
    decided = [r for r in runs if not r.get("skipped") and not r["update"]["reused"]]
    assert len(decided) == 1, runs
    for result in runs:
        if result is not decided[0]:
            assert result.get("skipped", "").endswith("is done") or result["update"]["reused"], result
    assert len(kit.day_versions(info, THE_DAY)) == 1, info["versions"]


def test_a_decided_day_run_again_after_the_next_day_landed_changes_nothing(base):
    """A new data version makes a new run key; the champion's ``trained_through`` still says the day is done."""
    project = base.fresh()
    first = kit.ok(kit.run(project, "run_day", kit.MODEL, THE_DAY))
    assert "promote" in first, first
    kit.ok(kit.run(project, "lifelong.steps.daily:validate_ingest", kit.MODEL, NEXT_DAY))
    again = kit.ok(kit.run(project, "run_day", kit.MODEL, THE_DAY))
    assert again["skipped"].endswith("the update for 2012-03-05 is done"), again
    info = kit.ok(kit.run(project, "_faults_kit:inspect", kit.MODEL))
    kit.assert_day_correct(info, THE_DAY)
    assert len(kit.day_versions(info, THE_DAY)) == 1 and info["champion"] == first["promote"]["champion"]


def test_two_daily_dag_triggers_of_one_day_at_once_through_airflow(base, monkeypatch):
    """Two ``lifelong daily`` (embedded Airflow) of one model and day at once, and a CLI ``run_day``.

    ``dag.test`` honours no pool, so ``embedded.run_dag`` holds the home's and the model's locks:
    the triggers run one after the other; the first decides the day, the others find it done.
    """
    import threading

    from lifelong.airflow.embedded_runner import run_dag

    project = base.fresh()
    for name, value in kit.project_env(project).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dag = f"lifelong_daily__{kit.MODEL}"
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(run_dag(dag, [THE_DAY]))) for _ in range(2)]
    for t in threads:
        t.start()
    cli = kit.ok(kit.run(project, "run_day", kit.MODEL, THE_DAY))
    for t in threads:
        t.join(timeout=600)
    assert len(results) == 2 and all(r[0]["state"] == "success" for r in results), results
    updates = sorted(r[0]["tasks"]["update"] for r in results)
    info = kit.ok(kit.run(project, "_faults_kit:inspect", kit.MODEL))
    kit.assert_day_correct(info, THE_DAY)
    promotions = [e for e in info["audit"] if e["event"] == "promote"]
    assert len(promotions) == 2, promotions  # the first champion, and one for the day
    # exactly one of the three decided the day; the others skipped (already learned) or reused it
    decided_by_cli = "promote" in cli or "reject" in cli
    assert updates.count("success") + decided_by_cli >= 1, (updates, cli)
    assert len(kit.day_versions(info, THE_DAY)) == 1, info["versions"]
