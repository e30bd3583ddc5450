"""Promotion is not check-then-act: forced interleavings of two model-changing processes, and a
crash between the two alias writes.

Each case runs real steps (``decide.promote``, the ``lifelong rollback`` CLI, a step called the
way a Celery worker calls it, ``task_runtime.call``) in processes of their own against one real
SQLite MLflow store. The order is forced with ``pause:<checkpoint>`` faults, never with timing:
the first process pauses at ``lock_held`` holding the model's lock; only then the second is let
past ``step_start`` (the start of its step) and pauses at ``lock_wait`` once it has found the
lock held; then both are let go. Afterwards the registry is consistent: one champion,
``previous`` right, no move left half-done, the audit log replaying to the champion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _invariants import assert_audit_consistent, assert_champion_safe
from _registry_kit import ARCH, bless, new_state

from lifelong import faults, registry
from lifelong.gate import GateDecision

MODEL = "demand_forecaster"  # a model params.yaml declares: the steps refuse any other
SRC = str(Path(__file__).resolve().parents[2] / "src")
APPROVE = GateDecision(True, "approved: interleaving test")
REFUSE = GateDecision(False, "rejected: interleaving test")

PROMOTE = """
import json, sys
from lifelong.steps import decide
print("RESULT", json.dumps(decide.promote(sys.argv[1], json.loads(sys.argv[2]))), flush=True)
"""

AS_CELERY = """
import json, sys
from types import SimpleNamespace
from lifelong.airflow import task_runtime
dag_id = "lifelong_daily__" + sys.argv[1]
context = {
    "dag_run": SimpleNamespace(dag_id=dag_id, run_id="scheduled__2012-03-05T00:00:00+00:00", conf={}),
    "ti": SimpleNamespace(dag_id=dag_id, task_id="promote", try_number=1, task=SimpleNamespace(retries=2)),
    "logical_date": "2012-03-05T00:00:00+00:00",
}
out = task_runtime.call("decide." + sys.argv[3], sys.argv[1], json.loads(sys.argv[2]), context=context)
print("RESULT", json.dumps(out), flush=True)
"""


def _log(seed: int) -> str:
    lineage = registry.Lineage("vic_elec", f"md5-{seed}", "interleave", "0123abcd", "cpu")
    return registry.log_candidate(
        MODEL, new_state(seed), params={"kind": "update"}, metrics={"mae": 0.1},
        epoch_metrics=[{"epoch": 0, "train_loss": 1.0, "val_loss": 1.1}], plots={}, lineage=lineage,
        dataset_source="dvc://local/data/vic_elec", input_example=np.zeros((1, 1, ARCH.length), dtype=np.float32),
        run_key=f"interleave/day{seed}",
    ).version  # fmt: skip


def _decision(version: str, judged_against: str | None) -> dict:
    """What ``gate`` hands ``promote`` (the gate's record is written by ``bless``)."""
    return {"model": MODEL, "version": version, "champion_version": judged_against, "approved": True,
            "reason": APPROVE.reason, "deltas": {}}  # fmt: skip


def info() -> dict:
    """The registry as ``tests/_invariants.py`` reads it."""
    client = registry._client()
    versions = client.search_model_versions(f"name = '{MODEL}'", max_results=1000)
    champion = registry.champion(MODEL)
    return {
        "champion": champion,
        "previous": registry.previous(MODEL),
        "champion_loadable": champion is None or bool(registry.load_state_of(MODEL, champion, ARCH)),
        "versions": {
            str(mv.version): {k: mv.tags.get(k) for k in ("validation_status", "artifacts_complete", "rolling_back_to")}
            for mv in versions
        },
        "audit": registry.history(MODEL),
        "pending": registry._client().get_registered_model(MODEL).tags.get("lifelong.alias_move"),
    }


def assert_consistent(now: dict) -> None:
    """One champion, ``previous`` an approved other version (or none), no move left half-done, the log true."""
    assert_champion_safe(now)
    assert now["pending"] is None, now["pending"]
    assert now["previous"] != now["champion"], now
    if now["previous"] is not None:
        assert now["versions"][now["previous"]]["validation_status"] == "approved", now
    assert_audit_consistent(now)


@pytest.fixture
def pause(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pause"
    monkeypatch.setenv(faults.PAUSE_DIR_ENV, str(folder))
    for name in (faults.ENV, faults.MARKER_ENV, "LIFELONG_LOCK_URL", "LIFELONG_MODEL_LOCK_INHERITED"):
        monkeypatch.delenv(name, raising=False)
    return folder


def _start(args: list[str], procs: list, *, fault: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    if fault:
        env[faults.ENV] = fault
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    return proc


def _reached(name: str, proc: subprocess.Popen) -> None:
    while not faults.reached(name, timeout=1):
        if proc.poll() is not None:
            pytest.fail(f"exited (code {proc.returncode}) before checkpoint {name}: {proc.communicate()[1][-3000:]}")


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT ") :]) if lines else json.loads(out)


def _first_then_second(first: subprocess.Popen, second: subprocess.Popen) -> None:
    """Started together (their imports overlap): ``first`` takes the lock and pauses holding it; only
    then is ``second`` let past the start of its step, finds the lock held; then both go on."""
    _reached("lock_held", first)
    _reached("step_start", second)
    faults.release("step_start")
    _reached("lock_wait", second)
    faults.release("lock_wait")
    assert first.poll() is None and second.poll() is None
    faults.release("lock_held")


SECOND = "pause:step_start,pause:lock_wait"


def _champion(version: str) -> None:
    bless(version, model=MODEL)
    registry.promote(MODEL, version, APPROVE, trigger="test:setup")


def test_two_promoters_of_one_model_are_serialised(pause, procs):
    """Both candidates judged against v1; the second promoter waits, then finds v2 champion: stale."""
    v1, v2, v3 = _log(1), _log(2), _log(3)
    _champion(v1)
    bless(v2, model=MODEL)
    bless(v3, model=MODEL)
    first = _start(["-c", PROMOTE, MODEL, json.dumps(_decision(v2, v1))], procs, fault="pause:lock_held")
    second = _start(["-c", PROMOTE, MODEL, json.dumps(_decision(v3, v1))], procs, fault=SECOND)
    _first_then_second(first, second)
    promoted, refused = _result(first), _result(second)
    assert (promoted["champion"], promoted["previous"], promoted["changed"]) == (v2, v1, True)
    assert refused["event"] == "reject" and refused["champion"] == v2
    now = info()
    assert (now["champion"], now["previous"]) == (v2, v1)
    assert now["versions"][v3]["validation_status"] == registry.STALE
    assert [(e["event"], e["version"], e["from"]) for e in now["audit"]] == [
        ("promote", v1, None), ("promote", v2, v1), ("reject", v3, v2),
    ]  # fmt: skip
    assert_consistent(now)


def test_a_cli_rollback_and_a_celery_promote_are_serialised(pause, procs):
    """``lifelong rollback`` holds the lock; a promote run as a Celery task runs it waits, then finds
    the champion it was judged against rolled back: stale, and v1 serves."""
    v1, v2, v3 = _log(1), _log(2), _log(3)
    _champion(v1)
    _champion(v2)
    bless(v3, model=MODEL)  # judged against v2
    cli = ["-m", "lifelong.cli", "rollback", MODEL, "--reason", "v2 is bad"]
    first = _start(cli, procs, fault="pause:lock_held")
    celery = ["-c", AS_CELERY, MODEL, json.dumps(_decision(v3, v2)), "promote"]
    second = _start(celery, procs, fault=SECOND)
    _first_then_second(first, second)
    rolled, refused = _result(first), _result(second)
    assert (rolled["champion"], rolled["from"]) == (v1, v2)
    assert refused["event"] == "reject" and refused["champion"] == v1 and "re-run the day" in refused["reason"]
    now = info()
    assert (now["champion"], now["previous"]) == (v1, None)
    assert now["versions"][v2]["validation_status"] == registry.ROLLED_BACK
    assert [(e["event"], e["version"]) for e in now["audit"]] == [
        ("promote", v1), ("promote", v2), ("rollback", v1), ("reject", v3),
    ]  # fmt: skip
    assert_consistent(now)


def test_a_crash_between_the_two_alias_writes_is_completed_by_the_next_registry_operation(pause, monkeypatch):
    """``raise:alias_pair``: ``previous`` moved, ``champion`` not. A rejection of another version (any
    registry operation) first completes the recorded move, then acts on the whole pair."""
    v1, v2, v3 = _log(1), _log(2), _log(3)
    _champion(v1)
    bless(v2, model=MODEL)
    monkeypatch.setenv(faults.ENV, "raise:alias_pair")
    with pytest.raises(faults.InjectedCrash):
        registry.promote(MODEL, v2, APPROVE, trigger="test:crash")
    monkeypatch.delenv(faults.ENV)
    half = info()
    assert (half["champion"], half["previous"]) == (v1, v1) and half["pending"]  # what used to stay so
    assert_champion_safe(half)
    bless(v3, REFUSE, model=MODEL)
    registry.reject(MODEL, v3, REFUSE, trigger="test:next")
    now = info()
    assert (now["champion"], now["previous"]) == (v2, v1)
    assert [(e["event"], e["version"], e["from"]) for e in now["audit"]] == [
        ("promote", v1, None), ("promote", v2, v1), ("reject", v3, v2),
    ]  # fmt: skip
    assert_consistent(now)

    # a rollback cut the same way: completed by the next promote, which then refuses a decision judged
    # against the champion the rollback replaced
    v4 = _log(4)
    bless(v4, model=MODEL)  # judged against v2
    monkeypatch.setenv(faults.ENV, "raise:alias_pair")
    with pytest.raises(faults.InjectedCrash):
        registry.rollback(MODEL, trigger="test:ops", reason="v2 is bad")
    monkeypatch.delenv(faults.ENV)
    assert info()["champion"] == v2
    with pytest.raises(registry.RegistryError, match="judge it again"):
        registry.promote(MODEL, v4, APPROVE, trigger="test:next")
    now = info()
    assert (now["champion"], now["previous"]) == (v1, None)
    assert now["versions"][v2]["validation_status"] == registry.ROLLED_BACK
    assert_consistent(now)


def test_a_kill_between_the_two_alias_writes_is_completed_by_the_next_step(pause, procs):
    """``kill -9`` there (no ``finally``); the next model-changing step completes the move under the lock."""
    v1, v2 = _log(1), _log(2)
    _champion(v1)
    bless(v2, model=MODEL)
    killed = _start(["-c", PROMOTE, MODEL, json.dumps(_decision(v2, v1))], procs, fault="kill:alias_pair")
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert (registry.champion(MODEL), registry.previous(MODEL)) == (v1, v1)
    from lifelong.steps import decide

    again = decide.promote(MODEL, _decision(v2, v1))  # the Airflow retry; any step would complete the move
    assert (again["champion"], again["previous"], again["changed"]) == (v2, v1, False)
    now = info()
    assert [(e["event"], e["version"]) for e in now["audit"]] == [("promote", v1), ("promote", v2)]
    assert_consistent(now)


def test_a_rollback_run_again_after_a_crash_inside_its_move_finishes_it_and_goes_no_further(pause, monkeypatch):
    """``lifelong rollback`` (the step, under the lock) died between the alias writes; run again, it
    completes its own move (v2 serves) instead of rolling back once more (to v1)."""
    from lifelong.steps import decide

    v1, v2, v3 = _log(1), _log(2), _log(3)
    for version in (v1, v2, v3):
        _champion(version)
    monkeypatch.setenv(faults.ENV, "raise:alias_pair")
    with pytest.raises(faults.InjectedCrash):
        decide.rollback(MODEL, reason="v3 is bad")
    monkeypatch.delenv(faults.ENV)
    assert (registry.champion(MODEL), registry.previous(MODEL)) == (v3, v1)  # previous moved, champion not
    again = decide.rollback(MODEL, reason="v3 is bad (again)")
    assert (again["champion"], again["from"], again["reason"]) == (v2, v3, "v3 is bad")
    now = info()
    assert (now["champion"], now["previous"]) == (v2, v1)
    assert now["versions"][v3]["validation_status"] == registry.ROLLED_BACK
    assert [e["event"] for e in now["audit"]] == ["promote", "promote", "promote", "rollback"]
    assert_consistent(now)
