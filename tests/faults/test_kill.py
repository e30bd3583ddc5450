"""Kill -9 at each step of the daily update, then re-run the day: the day ends correct.

The project has a first champion (v1, trained on the warm-up days). Day 5 is run in a
child process with ``LIFELONG_FAULT=<step>``: the child sends itself SIGKILL at that step
(once: a marker file records that the fault fired). Right after the kill nothing unsafe is
visible (the champion is complete and loadable, the store lock is free, no half-written
file); a re-run of the day in a fresh process then ends exactly as an undisturbed day does:
the day's rows stored once and pushed, at most one version promoted, the audit log whole.

What each fault leaves at the moment of the kill (docs/reliability.md, "Faults, what
lifelong does, and the test") is asserted between the kill and the re-run
(:func:`assert_state_at_the_kill`), and what the re-run does about it after it
(:func:`assert_the_rerun_mended_it`).
"""

from __future__ import annotations

import _faults_kit as kit
import pytest

pytestmark = pytest.mark.slow

THE_DAY = kit.day(4)
INSPECT = "_faults_kit:inspect"
# (checkpoint, what was happening when the worker died)
STEPS = [
    ("validate", "validating the landing file"),
    ("dvc_push", "holding the store lock between dvc add and dvc push"),
    ("train_epoch", "in the middle of training"),
    ("mlflow_log", "logging the candidate's run to MLflow"),
    ("register", "between registering the version and marking it complete"),
    ("promote_alias", "between tagging the version approved and moving the champion alias"),
    ("audit", "between moving the alias and writing the audit event"),
]


@pytest.fixture(scope="module")
def before(base) -> dict:
    """The project before the day: the first champion, the warm-up days stored and pushed."""
    return kit.ok(kit.run(base.fresh(), INSPECT, kit.MODEL))


@pytest.fixture(scope="module")
def reference(base) -> dict:
    """The undisturbed day, for comparison."""
    project = base.fresh()
    result = kit.ok(kit.run(project, "run_day", kit.MODEL, THE_DAY))
    kit.assert_day_correct(kit.ok(kit.run(project, INSPECT, kit.MODEL)), THE_DAY)
    return result


@pytest.mark.parametrize("step", [s for s, _ in STEPS], ids=[s for s, _ in STEPS])
def test_kill_9_then_rerun_the_day(base, before, reference, step, tmp_path):
    if step in ("promote_alias", "audit") and "promote" not in reference:
        pytest.skip(f"the reference day was rejected by the gate: {step} is never reached")
    project = base.fresh()
    marker = tmp_path / "fired"

    killed = kit.run(project, "run_day", kit.MODEL, THE_DAY, fault=step, marker=marker)
    assert killed.killed, f"expected a kill -9 at {step}: {killed}"
    assert marker.read_text().startswith(step)
    after_kill = kit.ok(kit.run(project, INSPECT, kit.MODEL))
    kit.assert_safe(after_kill, audit_may_lag=step == "audit")
    if step != "audit":  # the champion has not moved yet
        assert after_kill["champion"] == base.first_run["promote"]["champion"]
    assert_state_at_the_kill(step, before, after_kill)

    rerun = kit.ok(kit.run(project, "run_day", kit.MODEL, THE_DAY, fault=step, marker=marker))
    info = kit.ok(kit.run(project, INSPECT, kit.MODEL))
    kit.assert_day_correct(info, THE_DAY)
    # the day's outcome is the undisturbed one: same decision, same candidate (training is seeded)
    assert ("promote" in rerun) == ("promote" in reference)
    assert rerun["evaluate"]["candidate"]["mae"] == pytest.approx(reference["evaluate"]["candidate"]["mae"], rel=1e-4)
    if "promote" in rerun:
        assert info["champion"] == rerun["promote"]["champion"]
    assert_the_rerun_mended_it(step, before, after_kill, rerun, info)


def assert_state_at_the_kill(step: str, before: dict, now: dict) -> None:
    """What docs/reliability.md says each kill leaves, right after it (before any re-run)."""
    stored = step != "validate"  # the day's partition is written before `dvc add`
    pushed = step != "dvc_push"  # before it: the warm-up days' version, pushed; after it: the day's, pushed
    if stored:
        assert now["partitions"][THE_DAY] == {"rows": 48, "unique_times": 48}, now["partitions"]
        assert now["data_version"] != before["data_version"]
    else:  # nothing stored before validation ends: no partition, data.dvc and the data version unchanged
        assert now["partitions"] == before["partitions"] and now["data_version"] == before["data_version"]
        assert f"{THE_DAY}.parquet" in now["landing"] and now["quarantine"] == []
    # data.dvc always matches the workspace; after a kill during the push it names a version not yet pushed
    assert now["dvc"]["workspace_matches"] and now["dvc"]["pushed"] == pushed, now["dvc"]

    runs, versions = kit.day_runs(now, THE_DAY), kit.day_versions(now, THE_DAY)
    if step in ("validate", "dvc_push", "train_epoch"):  # nothing logged for the day
        assert runs == {} and versions == {}, (runs, versions)
    elif step == "mlflow_log":  # the run stays RUNNING with part of its artifacts, never registered
        ((run_id, run_),) = runs.items()
        assert run_["status"] == "RUNNING" and run_["artifacts_complete"] is None, run_
        assert "state" in run_["artifacts"] and "model" not in run_["artifacts"], run_
        assert versions == {}
    else:
        ((version, tags),) = versions.items()
        if step == "register":  # registered, never marked complete: neither loadable nor promotable
            assert tags["artifacts_complete"] is None and tags["validation_status"] == "pending", tags
        else:
            assert tags["artifacts_complete"] == "true" and tags["validation_status"] == "approved", tags
    if step == "audit":  # champion moved, the audit log one promotion short
        assert now["champion"] == next(iter(versions)) and now["previous"] == before["champion"]
        assert now["audit"] == before["audit"]
    else:
        assert now["champion"] == before["champion"] and now["audit"] == before["audit"]


def assert_the_rerun_mended_it(step: str, before: dict, at_kill: dict, rerun: dict, after: dict) -> None:
    """What the re-run does about what the kill left (docs/reliability.md)."""
    if step == "dvc_push":  # the identical partition found again, the version pushed by the re-run
        assert rerun["validate_ingest"]["changed"] is False
        assert after["data_version"] == at_kill["data_version"]
    if step == "mlflow_log":  # the killed run closed as crashed, a new run logged and registered
        ((killed, _),) = kit.day_runs(at_kill, THE_DAY).items()
        assert after["runs"][killed]["status"] == "FAILED" and after["runs"][killed]["closed_as_crashed"]
        assert all(tags["run_id"] != killed for tags in kit.day_versions(after, THE_DAY).values())
    if step == "register":  # the incomplete version abandoned, a complete one registered
        ((orphan, _),) = kit.day_versions(at_kill, THE_DAY).items()
        assert after["versions"][orphan]["validation_status"] == "abandoned"
        assert rerun["update"]["version"] != orphan
    if step in ("promote_alias", "audit"):  # the approved candidate found by its run key and promoted
        ((version, _),) = kit.day_versions(at_kill, THE_DAY).items()
        assert rerun["update"]["reused"] is True and after["champion"] == version
        promotions = [e for e in after["audit"] if e["event"] == "promote" and e["version"] == version]
        assert [e["from"] for e in promotions] == [before["champion"]]
