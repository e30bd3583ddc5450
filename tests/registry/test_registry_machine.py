"""A Hypothesis state machine over the registry: log, gate + promote, reject, rollback, and crashes.

Every rule is one registry operation on a real SQLite MLflow store with tiny states
(``_registry_kit``): log a candidate version, record a gate decision and promote or reject,
roll back (the manual way, ``registry.rollback``). Any rule may **crash** the "process"
part-way through, either

* at one of the fault checkpoints the kill tests use (``mlflow_log``, ``register``,
  ``promote_alias``, ``audit``; ``LIFELONG_FAULT=raise:<checkpoint>``), or
* before the n-th write the operation sends to MLflow (every ``MlflowClient`` write counts:
  a tag, an alias, a param, a run, an artifact): so between *any* two writes,

by raising :class:`lifelong.faults.InjectedCrash` (a ``BaseException``: nothing on the way
catches it, as nothing catches a kill). Right after a crash, what must hold at every instant
is checked; then the operation is re-run without a fault (the retry, or the operator running
it again), and after every step the invariants hold:

* ``champion`` names a complete, approved version (never a ``rolled_back`` one) that loads;
* ``previous`` is not ``champion`` and names a complete, approved version, or nothing;
* replaying the audit log ends at ``champion`` (``tests/_invariants.py``, shared with the
  kill tests).

Right after a crash (before the re-run) the first holds, and the audit log may be one move
short (the move's event is written last): it then ends at the version ``champion`` was moved
from; ``previous`` may be stale for that moment.

Seeded (``derandomize``): CI runs the same examples every time. ``LIFELONG_MACHINE_EXAMPLES``
and ``LIFELONG_MACHINE_STEPS`` make a longer local search (e.g. 100 and 20).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from _invariants import assert_audit_consistent, assert_champion_safe
from _registry_kit import ARCH, MODEL, bless, new_state
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from lifelong import faults, registry
from lifelong.errors import RegistryError
from lifelong.gate import GateDecision

EXAMPLES = int(os.environ.get("LIFELONG_MACHINE_EXAMPLES", "5"))
STEPS = int(os.environ.get("LIFELONG_MACHINE_STEPS", "7"))
CHECKPOINTS = ("mlflow_log", "register", "promote_alias", "audit")
WRITE_VERBS = ("set_", "delete_", "log_", "create_", "update_", "finalize_", "restore_")
APPROVE = GateDecision(True, "approved: machine")
REFUSE = GateDecision(False, "rejected: machine")

# a crash: none, at a named checkpoint, or before the n-th write to MLflow
crashes = (
    st.none()
    | st.sampled_from(CHECKPOINTS).map(lambda c: ("checkpoint", c))
    | st.integers(1, 14).map(lambda n: ("write", n))
)


class _WriteCrasher:
    """Counts every write an ``MlflowClient`` sends; raises InjectedCrash before the ``at``-th (once)."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.seen = 0

    def arm(self, at: int | None) -> None:
        self.at, self.seen = at, 0

    def before_write(self, name: str) -> None:
        if self.at is None:
            return
        self.seen += 1
        if self.seen == self.at:
            self.at = None  # once: what the dying process's context managers write afterwards goes through
            raise faults.InjectedCrash(f"crash injected before MLflow write {self.seen} ({name})")


def _wrap(crasher: _WriteCrasher, name: str, method):  # noqa: ANN001, ANN202 - any MlflowClient method
    @functools.wraps(method)
    def write(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        crasher.before_write(name)
        return method(*args, **kwargs)

    return write


@pytest.fixture
def write_crasher(monkeypatch: pytest.MonkeyPatch) -> _WriteCrasher:
    crasher = _WriteCrasher()
    for name in dir(mlflow.MlflowClient):
        if name.startswith(WRITE_VERBS) and callable(getattr(mlflow.MlflowClient, name)):
            monkeypatch.setattr(mlflow.MlflowClient, name, _wrap(crasher, name, getattr(mlflow.MlflowClient, name)))
    return crasher


def _log(seed: int) -> str:
    """A candidate version of a tiny untrained model, keyed by ``seed`` (a retry returns the same version)."""
    lineage = registry.Lineage("synthetic", f"md5-{seed}", "machine", "0123abcd", "cpu")
    candidate = registry.log_candidate(
        MODEL, new_state(seed), params={"kind": "update"}, metrics={"mae": 0.1},
        epoch_metrics=[{"epoch": 0, "train_loss": 1.0, "val_loss": 1.1}], plots={}, lineage=lineage,
        dataset_source="dvc://local/data/synthetic", input_example=np.zeros((1, 1, ARCH.length), dtype=np.float32),
        run_key=f"machine/day{seed}",
    )  # fmt: skip
    return candidate.version


def registry_info() -> dict:
    """The model's registry as the invariants read it (``tests/_invariants.py``)."""
    client = registry._client()
    versions = client.search_model_versions(f"name = '{MODEL}'", max_results=1000)
    champion = registry.champion(MODEL)
    loadable: str | bool = False
    if champion is not None:
        try:
            registry.load_state_of(MODEL, champion, ARCH)
            loadable = True
        except Exception as exc:  # noqa: BLE001 - the invariant reports it
            loadable = f"{type(exc).__name__}: {exc}"
    return {
        "champion": champion,
        "previous": registry.previous(MODEL),
        "champion_loadable": loadable,
        "versions": {
            str(mv.version): {k: mv.tags.get(k) for k in ("validation_status", "artifacts_complete", "rolling_back_to")}
            for mv in versions
        },
        "audit": registry.history(MODEL),
    }


def assert_invariants(info: dict) -> None:
    """After every step (a crash included, once the re-run is done)."""
    assert_champion_safe(info)
    if info["champion"] is not None:
        assert info["previous"] != info["champion"], f"previous is champion v{info['champion']}"
    if info["previous"] is not None:
        tags = info["versions"][info["previous"]]
        assert tags["artifacts_complete"] == "true" and tags["validation_status"] == "approved", tags
    assert_audit_consistent(info)


def assert_safe_at_the_crash(info: dict) -> None:
    """Right after a crash, before the re-run: what serves is right, the log at most one move short.

    ``previous`` may be stale for that moment: a promotion writes it before ``champion``, a
    rollback after; the re-run completes the pair.
    """
    assert_champion_safe(info)
    assert_audit_consistent(info, lagging=True)


@pytest.mark.slow
def test_registry_state_machine(store: Path, write_crasher: _WriteCrasher, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = store / ".lifelong"  # an empty, migrated store
    examples = iter(range(10**6))
    monkeypatch.setenv("LIFELONG_HOME", str(empty))  # put back after the test
    monkeypatch.delenv(faults.ENV, raising=False)
    monkeypatch.delenv(faults.MARKER_ENV, raising=False)

    class RegistryMachine(RuleBasedStateMachine):
        """Each example starts from an empty, migrated store; ``logged`` holds the versions it made."""

        @initialize()
        def fresh_store(self) -> None:
            # a home of its own per example: SQLAlchemy keeps an engine per store URI, so a store is never
            # replaced in place
            home = store / f"example-{next(examples)}"
            shutil.copytree(empty, home)
            os.environ["LIFELONG_HOME"] = str(home)
            self.logged: list[str] = []
            self.seeds = 0

        @contextlib.contextmanager
        def _crashing(self, crash: tuple[str, object] | None) -> Iterator[None]:
            """Run the body with ``crash`` armed; swallow the injected crash (the process "died")."""
            if crash and crash[0] == "checkpoint":
                os.environ[faults.ENV] = f"raise:{crash[1]}"
            elif crash:
                write_crasher.arm(int(crash[1]))  # type: ignore[arg-type]
            try:
                yield
            except faults.InjectedCrash as crashed:
                event(f"crashed: {crashed}")
                print(f"machine: crashed: {crashed}", file=sys.stderr)  # shown with -rP: which windows were hit
                os.environ.pop(faults.ENV, None)
                write_crasher.arm(None)
                assert_safe_at_the_crash(registry_info())
            finally:
                os.environ.pop(faults.ENV, None)
                write_crasher.arm(None)

        def _attempt(self, crash: tuple[str, object] | None, operation) -> object:  # noqa: ANN001
            """``operation()`` with ``crash`` armed; after a crash, check, then re-run it without one."""
            with self._crashing(crash):
                return operation()
            return operation()  # reached only after a crash: the retry

        @rule(crash=crashes)
        def log_candidate(self, crash) -> None:  # noqa: ANN001
            self.seeds += 1
            seed = self.seeds
            version = self._attempt(crash, lambda: _log(seed))
            assert registry.find_candidate(MODEL, f"machine/day{seed}")["version"] == version
            self.logged.append(str(version))

        @precondition(lambda self: self.logged)
        @rule(pick=st.integers(0, 50), approve=st.booleans(), crash=crashes)
        def gate_then_promote_or_reject(self, pick: int, approve: bool, crash) -> None:  # noqa: ANN001
            """As ``decide.gate`` then ``decide.promote`` / ``decide.reject``: the decision recorded, then acted on."""
            version = self.logged[pick % len(self.logged)]
            before = registry_info()
            status = before["versions"][version]["validation_status"]
            is_champion = before["champion"] == version
            decision = APPROVE if approve else REFUSE

            def act() -> dict:
                bless(version, decision)
                if approve:
                    return registry.promote(MODEL, version, decision, trigger=f"machine:{version}")
                return registry.reject(MODEL, version, decision, trigger=f"machine:{version}")

            try:
                self._attempt(crash, act)
            except RegistryError as refused:
                refusable = status in ("rejected", "rolled_back", "abandoned") if approve else is_champion
                assert refusable, f"v{version} ({status}) refused: {refused}"
                assert registry.champion(MODEL) == before["champion"]
                return
            assert registry.champion(MODEL) == (version if approve else before["champion"])

        @precondition(lambda self: self.logged)
        @rule(crash=crashes)
        def rollback(self, crash) -> None:  # noqa: ANN001
            before = registry_info()
            target = registry.fallback(MODEL, before["champion"]) if before["champion"] else None
            try:
                with self._crashing(crash):
                    registry.rollback(MODEL, trigger="machine:ops", reason="machine")
                    assert registry.champion(MODEL) == target
                    return
                # crashed: the operator runs the same rollback again, naming the version it was going to
                registry.rollback(MODEL, to=target, trigger="machine:ops", reason="machine (again)")
            except RegistryError as refused:
                assert target is None, f"rollback to v{target} refused: {refused}"
                assert registry.champion(MODEL) == before["champion"]
                return
            assert registry.champion(MODEL) == target

        @invariant()
        def registry_is_safe(self) -> None:
            if hasattr(self, "logged"):
                assert_invariants(registry_info())

    run_state_machine_as_test(
        RegistryMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[p for p in Phase if p != Phase.shrink or not os.environ.get("LIFELONG_MACHINE_NO_SHRINK")],
        ),
    )


def test_what_the_machine_found(store: Path, write_crasher: _WriteCrasher) -> None:
    """Its findings, pinned (the seeded examples need not reach them): a promotion that died between
    ``previous`` and ``champion``; a rollback that died after moving ``champion`` and before its record
    (the re-run found ``champion`` already there and recorded nothing: the log never replayed to it
    again); a version that served, judged again and rejected (its promotion then contradicted its tag)."""
    v1, v2 = _log(1), _log(2)
    bless(v1)
    registry.promote(MODEL, v1, APPROVE, trigger="machine:1")
    bless(v2)
    write_crasher.arm(6)  # promote's writes: 3 tags on the version, the recorded move (aliases.py), previous, champion
    with pytest.raises(faults.InjectedCrash, match="set_registered_model_alias"):
        registry.promote(MODEL, v2, APPROVE, trigger="machine:2")
    assert_safe_at_the_crash(registry_info())
    registry.promote(MODEL, v2, APPROVE, trigger="machine:2")
    assert_invariants(registry_info())
    assert (registry.champion(MODEL), registry.previous(MODEL)) == (v2, v1)

    write_crasher.arm(5)  # rollback's writes: its intent, the recorded move, previous, champion, the demoted's tags
    with pytest.raises(faults.InjectedCrash, match="set_model_version_tag"):
        registry.rollback(MODEL, trigger="machine:ops", reason="v2 is bad")
    at_crash = registry_info()
    assert at_crash["champion"] == v1 and at_crash["versions"][v2]["validation_status"] == "approved"
    assert_safe_at_the_crash(at_crash)
    again = registry.rollback(MODEL, trigger="machine:ops", reason="v2 is bad (again)")  # finishes it, no further
    assert (again["champion"], again["from"], again["reason"], again["changed"]) == (v1, v2, "v2 is bad", True)
    info = registry_info()
    assert info["versions"][v2]["validation_status"] == "rolled_back" and info["previous"] is None
    assert_invariants(info)
    assert [e["event"] for e in info["audit"]] == ["promote", "promote", "rollback"]

    # judged again after it served (its day re-run): nothing is re-tagged, the log stays true
    for served in (v2, v1):
        bless(served, REFUSE)
    kept = registry.reject(MODEL, v2, REFUSE, trigger="machine:2")
    assert kept["served"] and kept["event"] is None and registry.status_of(MODEL, v2) == "rolled_back"
    with pytest.raises(RegistryError, match="is the champion"):
        registry.reject(MODEL, v1, REFUSE, trigger="machine:1")
    assert_invariants(registry_info())
