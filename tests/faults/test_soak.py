"""A seeded chaos soak: one fault a day, recovery, and the invariants after every day.

Days after the first champion are run one by one, each with one fault drawn by a seeded
random generator: a checkpoint of the daily path (:data:`lifelong.faults.CHECKPOINTS`: the
validation, the partition write, between ``dvc add`` and ``dvc push``, mid-training, mid-log,
between registering and completing a version, between approving and moving ``champion``,
between moving it and writing the audit event) and a kind:

* ``kill``: ``kill -9`` there, as a lost worker or the OOM killer;
* ``enospc``: ``ENOSPC`` raised there, a full disk at that write;
* ``mlflow_down``: the day's process is paused there (``pause:<checkpoint>``), the MLflow
  server is stopped (SIGTERM to its process group, as ``docker compose stop mlflow``), and the
  process goes on: its next MLflow call fails within seconds with the Airflow task's one-line
  error ("the MLflow server ... did not answer"), or, when it makes none, the day ends and
  the fault was harmless;
* ``postgres_restart``: paused there the same way, every connection of the MLflow server to
  its database is cut and new ones are refused for :data:`OUTAGE_S` seconds
  (``tests/production/topology.py``'s ``database_outage``) while the process goes on: it fails
  with the same one-line error, or rides the outage out on the MLflow client's retry.

The kinds are dealt in seeded shuffles of all four (``mlflow_down`` and ``postgres_restart``
within the first three days, so the quick run meets both), so any 4 days in a row from day 1 hold each kind once. Only
checkpoints the day reaches are drawn (``promote_alias`` and ``audit`` on the days the gate
approves, as an undisturbed run of the same days shows); every one of them is followed by
MLflow calls.

The store is the production one: the faulted days talk to a real MLflow tracking server
(``docker/mlflow-server.sh``, as docker-compose.yml's ``mlflow`` service: basic auth, a fresh
PostgreSQL database on the machine's server, artifacts served by the server from a local
folder instead of MinIO; :mod:`_mlflow_server`), on a project whose first champion is trained
through that server too. The undisturbed reference run stays on the embedded SQLite store
(the shared fault-test project): it only provides the store bytes, the champion's weights and
which checkpoints each day reaches; it runs while the server starts and the soak's own first
champion is trained.

The day runs in a child process that dies or fails there; the state is checked at that moment
(:func:`_faults_kit.assert_safe`, with the server back when it was stopped, and what the
checkpoint promises: a day killed before its partition is written has no partition and the
same ``data.dvc``; the champion has not moved unless the alias already had); the day is re-run
if it failed, as clearing the Airflow task does, and then checked whole: stored once,
``data.dvc`` pushed and every object of it re-hashed from the DVC remote, no MLflow run left
``RUNNING``, aliases on complete versions, the audit log replaying to ``champion``. At the end,
the store is byte-for-byte the one the undisturbed run leaves, and the champion's weights
equal its weights (allclose).

Quick in the suite (``LIFELONG_SOAK_DAYS``, default 3 days); ``make soak`` runs 30.
``LIFELONG_SOAK_SEED`` picks another draw. It prints ``faults injected N, recovered N, lost 0``
and the same per kind.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import _faults_kit as kit
import numpy as np
import pytest
from _mlflow_server import MlflowServer, mlflow_server, services_available

from lifelong import faults

pytestmark = [pytest.mark.slow, pytest.mark.production]

SOAK_DAYS = int(os.environ.get("LIFELONG_SOAK_DAYS", "3"))
SEED = int(os.environ.get("LIFELONG_SOAK_SEED", "0"))
FIRST = 4  # the base project's champion learned days 0-3
INSPECT = "_faults_kit:inspect"
RUN_DAY = "_faults_kit:run_day_as_task"
KINDS = ("kill", "enospc", "mlflow_down", "postgres_restart")
PAUSED = ("mlflow_down", "postgres_restart")  # injected while the day's process waits at the checkpoint
OUTAGE_S = 3.0  # how long PostgreSQL refuses the MLflow server's connections
# the checkpoints reached only when the day's candidate is approved
ON_APPROVAL = ("promote_alias", "audit")
# killed here, the day has stored nothing yet
BEFORE_STORING = ("validate", "partition_write")


def _days() -> list[str]:
    return [kit.day(FIRST + i) for i in range(SOAK_DAYS)]


def _kinds(rng: random.Random, n: int) -> list[str]:
    """``n`` kinds dealt in seeded shuffles of all of them; both new kinds among the first three."""
    out: list[str] = []
    while len(out) < n:
        deal = rng.sample(KINDS, len(KINDS))
        if not out and deal[-1] in PAUSED:  # the quick run (3 days) meets both topology faults
            swap = next(i for i, kind in enumerate(deal) if kind not in PAUSED)
            deal[swap], deal[-1] = deal[-1], deal[swap]
        out += deal
    return out[:n]


def _plan(reference: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """One (checkpoint, kind) a day, drawn among the checkpoints that day reaches."""
    rng = random.Random(SEED)
    # the kinds from a stream of their own: the first days' draw is the same whatever SOAK_DAYS
    kinds = _kinds(random.Random(f"kinds-{SEED}"), SOAK_DAYS)
    plan = {}
    for the_day, kind in zip(_days(), kinds, strict=True):
        reached = [c for c in faults.CHECKPOINTS if c not in ON_APPROVAL or "promote" in reference[the_day]]
        plan[the_day] = (rng.choice(reached), kind)
    return plan


def _run_days(project: Path, days: list[str]) -> dict[str, dict]:
    kit.run(project, "_faults_kit:land", days[0], len(days) + 1)
    return {d: kit.ok(kit.run(project, "run_day", kit.MODEL, d)) for d in days}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """The soak's MLflow server, started (not yet waited for: the test overlaps its start-up)."""
    if not services_available():
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 (and Redis on 6379, as the topology tests)")
    with mlflow_server(tmp_path_factory.mktemp("soak-mlflow")) as started:
        yield started


def _soak_project(root: Path, server: MlflowServer, days: list[str]) -> tuple[Path, str]:
    """A project whose first champion (days 0-3, as the shared base's) is in the server; days landed."""
    server.wait_ready()
    project = root / "project"
    kit.write_params(project)
    env = server.client_env()
    first = kit.ok(kit.run(project, "_faults_kit:build_base", kit.MODEL, [kit.day(i) for i in range(FIRST)], env=env))
    assert first.get("promote"), first
    kit.run(project, "_faults_kit:land", days[0], len(days) + 1, env=env)
    return project, first["promote"]["champion"]


def _paused_fault(project: Path, server: MlflowServer, the_day: str, checkpoint: str, kind: str, marker: Path):
    """Run the day paused at ``checkpoint``; stop the server or cut its database there; let it go on."""
    env = {**server.client_env(), faults.PAUSE_DIR_ENV: str(faults.pause_dir()), faults.PAUSE_S_ENV: "300"}
    started = kit.start(project, RUN_DAY, kit.MODEL, the_day, fault=f"pause:{checkpoint}", marker=marker, env=env)
    proc = started[0]
    while not faults.reached(checkpoint, timeout=1):
        if not proc.is_alive():
            child = kit.wait(started)
            raise AssertionError(f"{the_day}: never paused at {checkpoint}: {child.error}: {child.message}")
    if kind == "mlflow_down":
        server.stop()
        assert not server.healthy()
        faults.release(checkpoint)
        child = kit.wait(started)
        server.start()
    else:
        with server.outage():
            faults.release(checkpoint)
            time.sleep(OUTAGE_S)
        child = kit.wait(started)
    return child


def test_a_seeded_soak_of_one_fault_a_day_loses_nothing(base, server, tmp_path, monkeypatch):
    days = _days()
    env = server.client_env()
    # the soak's own project and first champion, through the server, while the reference runs
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        soak = pool.submit(_soak_project, tmp_path / "soak", server, days)
        # the undisturbed run, on the embedded store, at the shared base's path (the stores hold absolute paths)
        project = base.fresh()
        reference = _run_days(project, days)
        reference_store = kit.store_state(project)
        reference_weights = kit.ok(kit.run(project, "_faults_kit:champion_weights", kit.MODEL))
        # 48 rows a day, 46 or 50 on the daylight-saving change days
        rows = {d: p["rows"] for d, p in kit.ok(kit.run(project, INSPECT, kit.MODEL))["partitions"].items()}
        project, champion = soak.result()
    plan = _plan(reference)
    print(f"\nsoak plan (seed {SEED}): " + ", ".join(f"{d} {k}:{c}" for d, (c, k) in plan.items()), file=sys.stderr)

    injected: collections.Counter[str] = collections.Counter()
    recovered: collections.Counter[str] = collections.Counter()
    harmless: collections.Counter[str] = collections.Counter()
    for the_day in days:
        checkpoint, kind = plan[the_day]
        before = kit.store_state(project)
        marker = tmp_path / f"fired-{the_day}"
        spec = f"pause:{checkpoint}" if kind in PAUSED else f"{kind}:{checkpoint}"
        if kind in PAUSED:
            monkeypatch.setenv(faults.PAUSE_DIR_ENV, str(tmp_path / f"pause-{the_day}"))
            faulted = _paused_fault(project, server, the_day, checkpoint, kind, marker)
        else:
            faulted = kit.run(project, RUN_DAY, kit.MODEL, the_day, fault=spec, marker=marker, env=env)
        assert marker.exists(), f"{the_day}: the fault {kind}:{checkpoint} never fired ({faulted})"
        injected[kind] += 1
        failed = faulted.exitcode != 0 or faulted.error is not None
        if kind == "kill":
            assert faulted.killed, f"{the_day}: expected a kill -9 at {checkpoint}: {faulted}"
        elif kind == "enospc":
            assert faulted.error == "OSError" and "No space left" in (faulted.message or ""), faulted
        elif failed:  # a store that did not answer: the task's one line, Airflow retries
            assert faulted.error == "ServiceUnavailable" and "did not answer" in (faulted.message or ""), (
                f"{the_day}: {kind}:{checkpoint}: {faulted.error}: {faulted.message}\n{faulted.log[-3000:]}"
            )
            print(f"{the_day} {kind}:{checkpoint}: {faulted.message}", file=sys.stderr)
        else:
            harmless[kind] += 1
        # the state at the moment of the fault (the server back, when it was stopped)
        at_fault = kit.ok(kit.run(project, INSPECT, kit.MODEL, env=env))
        kit.assert_safe(at_fault, audit_may_lag=checkpoint == "audit" and failed)
        if checkpoint in BEFORE_STORING and kind not in PAUSED:
            assert the_day not in at_fault["partitions"], f"{the_day}: stored before the fault at {checkpoint}"
            assert kit.store_state(project) == before, f"{the_day}: the store changed before {checkpoint}"
        if checkpoint != "audit" and failed:  # the alias has not moved yet
            assert at_fault["champion"] == champion, f"{the_day}: champion moved before {checkpoint}"

        # recovery: the day re-run, as a cleared Airflow task would (a harmless fault left nothing to redo)
        if failed:
            rerun = kit.ok(kit.run(project, RUN_DAY, kit.MODEL, the_day, fault=spec, marker=marker, env=env))
        else:
            rerun = faulted.result
        info = kit.ok(kit.run(project, INSPECT, kit.MODEL, env=env))
        kit.assert_day_correct(info, the_day, rows[the_day])
        assert info["running_runs"] == [], f"{the_day}: runs left RUNNING {info['running_runs']}"
        remote = kit.ok(kit.run(project, "_faults_kit:remote_verified", env=env))
        assert remote["objects"] > 0 and remote["bad"] == [], f"{the_day}: DVC remote {remote}"
        assert ("promote" in rerun) == ("promote" in reference[the_day]), (the_day, rerun, reference[the_day])
        champion = info["champion"]
        recovered[kind] += 1

    store = kit.store_state(project)
    lost = sum(
        1
        for name, data in reference_store["files"].items()
        if store["files"].get(name) != data and any(d in name for d in days)
    )
    n_injected, n_recovered = sum(injected.values()), sum(recovered.values())
    print(f"faults injected {n_injected}, recovered {n_recovered}, lost {lost}", file=sys.stderr)
    for kind in KINDS:
        extra = f", {harmless[kind]} harmless (the day ended, no MLflow call failed)" if kind in PAUSED else ""
        print(f"  {kind}: injected {injected[kind]}, recovered {recovered[kind]}{extra}", file=sys.stderr)
    print(f"  MLflow server restarts: {server.restarts}", file=sys.stderr)
    assert store == reference_store, "the store differs from the undisturbed run's"
    weights = kit.ok(kit.run(project, "_faults_kit:champion_weights", kit.MODEL, env=env))
    assert weights.keys() == reference_weights.keys()
    for name, values in weights.items():
        np.testing.assert_allclose(values, reference_weights[name], rtol=0, atol=1e-6, err_msg=name)
    assert (n_injected, n_recovered, lost) == (SOAK_DAYS, SOAK_DAYS, 0)
