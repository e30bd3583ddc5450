"""A seeded chaos soak: one fault a day, recovery, and the invariants after every day.

Days after the first champion are run one by one, each with one fault drawn by a seeded
random generator: a checkpoint of the daily path (:data:`lifelong.faults.CHECKPOINTS`: the
validation, the partition write, between ``dvc add`` and ``dvc push``, mid-training, mid-log,
between registering and completing a version, between approving and moving ``champion``,
between moving it and writing the audit event) and a kind (``kill -9``, as a lost worker or
the OOM killer; or ``ENOSPC``, a full disk at that write). Only checkpoints the day reaches
are drawn (``promote_alias`` and ``audit`` on the days the gate approves, as an undisturbed
run of the same days shows). The day runs in a child process that dies or fails there; the
state is checked at that moment (:func:`_faults_kit.assert_safe`, and what the checkpoint
promises: a day killed before its partition is written has no partition and the same
``data.dvc``); the day is re-run, as clearing the Airflow task does, and then checked whole:
stored once, ``data.dvc`` pushed and every object of it re-hashed from the DVC remote, no
MLflow run left ``RUNNING``, aliases on complete versions, the audit log replaying to
``champion``. At the end, the store is byte-for-byte the one an undisturbed run of the same
days leaves, and the champion's weights equal its weights (allclose).

Quick in the suite (``LIFELONG_SOAK_DAYS``, default 3 days); ``make soak`` runs 30.
``LIFELONG_SOAK_SEED`` picks another draw. Faults that need the production topology (the
MLflow server stopped, PostgreSQL restarting) are not drawn here: their tests are in
``tests/production/test_services.py``.
"""

from __future__ import annotations

import os
import random
import sys

import _faults_kit as kit
import numpy as np
import pytest

from lifelong import faults

pytestmark = pytest.mark.slow

SOAK_DAYS = int(os.environ.get("LIFELONG_SOAK_DAYS", "3"))
SEED = int(os.environ.get("LIFELONG_SOAK_SEED", "0"))
FIRST = 4  # the base project's champion learned days 0-3
INSPECT = "_faults_kit:inspect"
KINDS = ("kill", "enospc")
# the checkpoints reached only when the day's candidate is approved
ON_APPROVAL = ("promote_alias", "audit")
# killed here, the day has stored nothing yet
BEFORE_STORING = ("validate", "partition_write")


def _days() -> list[str]:
    return [kit.day(FIRST + i) for i in range(SOAK_DAYS)]


def _plan(reference: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """One (checkpoint, kind) a day, drawn among the checkpoints that day reaches."""
    rng = random.Random(SEED)
    plan = {}
    for the_day in _days():
        reached = [c for c in faults.CHECKPOINTS if c not in ON_APPROVAL or "promote" in reference[the_day]]
        plan[the_day] = (rng.choice(reached), rng.choice(KINDS))
    return plan


def _run_days(project, days: list[str]) -> dict[str, dict]:
    kit.run(project, "_faults_kit:land", days[0], len(days) + 1)
    return {d: kit.ok(kit.run(project, "run_day", kit.MODEL, d)) for d in days}


def test_a_seeded_soak_of_one_fault_a_day_loses_nothing(base, tmp_path):
    days = _days()
    # the undisturbed run, at the same path (the stores hold absolute paths)
    project = base.fresh()
    reference = _run_days(project, days)
    reference_store = kit.store_state(project)
    reference_weights = kit.ok(kit.run(project, "_faults_kit:champion_weights", kit.MODEL))
    # 48 rows a day, 46 or 50 on the daylight-saving change days
    rows = {d: p["rows"] for d, p in kit.ok(kit.run(project, INSPECT, kit.MODEL))["partitions"].items()}
    plan = _plan(reference)
    print(f"\nsoak plan (seed {SEED}): " + ", ".join(f"{d} {k}:{c}" for d, (c, k) in plan.items()), file=sys.stderr)

    project = base.fresh()
    kit.run(project, "_faults_kit:land", days[0], len(days) + 1)
    injected = recovered = 0
    champion = base.first_run["promote"]["champion"]
    for the_day in days:
        checkpoint, kind = plan[the_day]
        before = kit.store_state(project)
        marker = tmp_path / f"fired-{the_day}"
        faulted = kit.run(project, "run_day", kit.MODEL, the_day, fault=f"{kind}:{checkpoint}", marker=marker)
        assert marker.exists(), f"{the_day}: the fault {kind}:{checkpoint} never fired ({faulted})"
        injected += 1
        if kind == "kill":
            assert faulted.killed, f"{the_day}: expected a kill -9 at {checkpoint}: {faulted}"
        else:
            assert faulted.error == "OSError" and "No space left" in (faulted.message or ""), faulted
        # the state at the moment of the fault
        at_fault = kit.ok(kit.run(project, INSPECT, kit.MODEL))
        kit.assert_safe(at_fault, audit_may_lag=checkpoint == "audit")
        if checkpoint in BEFORE_STORING:
            assert the_day not in at_fault["partitions"], f"{the_day}: stored before the fault at {checkpoint}"
            assert kit.store_state(project) == before, f"{the_day}: the store changed before {checkpoint}"
        if checkpoint != "audit":  # the alias has not moved yet
            assert at_fault["champion"] == champion, f"{the_day}: champion moved before {checkpoint}"

        # recovery: the day re-run, as a cleared Airflow task would
        rerun = kit.ok(kit.run(project, "run_day", kit.MODEL, the_day, fault=f"{kind}:{checkpoint}", marker=marker))
        info = kit.ok(kit.run(project, INSPECT, kit.MODEL))
        kit.assert_day_correct(info, the_day, rows[the_day])
        assert info["running_runs"] == [], f"{the_day}: runs left RUNNING {info['running_runs']}"
        remote = kit.ok(kit.run(project, "_faults_kit:remote_verified"))
        assert remote["objects"] > 0 and remote["bad"] == [], f"{the_day}: DVC remote {remote}"
        assert ("promote" in rerun) == ("promote" in reference[the_day]), (the_day, rerun, reference[the_day])
        champion = info["champion"]
        recovered += 1

    store = kit.store_state(project)
    lost = sum(
        1
        for name, data in reference_store["files"].items()
        if store["files"].get(name) != data and any(d in name for d in days)
    )
    print(f"faults injected {injected}, recovered {recovered}, lost {lost}", file=sys.stderr)
    assert store == reference_store, "the store differs from the undisturbed run's"
    weights = kit.ok(kit.run(project, "_faults_kit:champion_weights", kit.MODEL))
    assert weights.keys() == reference_weights.keys()
    for name, values in weights.items():
        np.testing.assert_allclose(values, reference_weights[name], rtol=0, atol=1e-6, err_msg=name)
    assert (injected, recovered, lost) == (SOAK_DAYS, SOAK_DAYS, 0)
