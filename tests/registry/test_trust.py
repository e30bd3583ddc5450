"""Issue 20, items 3, 4 and 7: nothing read back from MLflow or handed over by XCom is trusted.

A loaded version must match params.yaml's architecture and its write-once manifest; a
promotion needs a recorded approval against the champion of the moment and a serving
model that answers; a stale approval is judged again; runs left RUNNING by a crash are
closed by the next run of the model, and only then.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from _registry_kit import ARCH, MODEL, bless, new_state

from lifelong import registry
from lifelong.artifacts import ServingCheckFailed
from lifelong.config import ArchitectureSpec
from lifelong.errors import RegistryError, StateError
from lifelong.gate import GateDecision

APPROVED = GateDecision(approved=True, reason="approved: test", deltas={})


def _declare(project: Path) -> None:
    """MODEL in the workspace's params.yaml (the forecaster's gate, the test's small architecture)."""
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["models"][MODEL] = {**raw["models"]["demand_forecaster"], "architecture": {
        "type": ARCH.type, "in_channels": ARCH.in_channels, "length": ARCH.length, "out_dim": ARCH.out_dim,
        "channels": list(ARCH.channels), "kernel_size": ARCH.kernel_size, "pool": ARCH.pool,
    }}  # fmt: skip
    (project / "params.yaml").write_text(yaml.safe_dump(raw))


def test_a_version_loads_only_for_its_architecture_and_its_past(store: Path, log) -> None:
    v1 = log(new_state(), "demo/day1").version
    assert registry.load_state_of(MODEL, v1, ARCH).arch == ARCH
    wider = ArchitectureSpec(**{**ARCH.__dict__, "channels": (8,)})
    with pytest.raises(StateError, match=r"differs in channels: saved \[4\], params.yaml \[8\]"):
        registry.load_state_of(MODEL, v1, wider)

    future = new_state()
    future.trained_through = "2999-01-01"  # would make every later update a silent "already learned"
    v2 = log(future, "demo/day2").version
    with pytest.raises(StateError, match="trained_through 2999-01-01 is after .*cannot have learned the future"):
        registry.load_state_of(MODEL, v2, ARCH)


def test_a_forged_or_stale_approval_never_moves_champion(store: Path, log) -> None:
    _declare(store)
    from lifelong import decisions
    from lifelong.steps import decide

    v1, v2, v3 = (log(new_state(seed=i), f"demo/day{i}").version for i in (1, 2, 3))
    with pytest.raises(RegistryError, match="no approving gate decision is recorded on it .recorded: none"):
        registry.promote(MODEL, v1, APPROVED, trigger="cli:forger")
    assert registry.champion(MODEL) is None
    bless(v1)
    assert registry.promote(MODEL, v1, APPROVED, trigger="airflow:daily/run1")["champion"] == v1

    # the gate rejected v2 (recorded); an XCom rewritten to say "approved" is refused
    evaluation = {
        "model": MODEL, "version": v2, "champion_version": v1, "data_version": "md5-x",
        "candidate": {"mae": 900.0, "retention_mae": 100.0}, "champion": {"mae": 500.0, "retention_mae": 100.0},
    }  # fmt: skip
    verdict = decide.gate(MODEL, evaluation)  # type: ignore[arg-type]
    assert not verdict["approved"] and len(verdict["decision_sha256"]) == 64
    recorded = registry.recorded_decision(MODEL, v2)
    assert recorded is not None and recorded["champion_version"] == v1 and recorded["candidate"]["mae"] == 900.0
    forged = {**verdict, "approved": True, "reason": "approved: trust me"}
    with pytest.raises(RegistryError, match="no approving gate decision .*recorded: rejected"):
        decide.promote(MODEL, forged)  # type: ignore[arg-type]
    assert registry.champion(MODEL) == v1

    # the recorded decision edited into an approval no longer matches the run's write-once digest
    client = registry._client()
    edited = {**recorded, "approved": True}
    client.set_model_version_tag(MODEL, v2, decisions.DECISION_TAG, decisions.canonical(edited))
    client.set_model_version_tag(MODEL, v2, decisions.DIGEST_TAG, decisions.digest(edited))
    with pytest.raises(RegistryError, match="altered after the gate"):
        registry.promote(MODEL, v2, APPROVED, trigger="cli:forger")
    assert registry.champion(MODEL) == v1

    # v3 approved against v1; meanwhile another run promotes v4: v3's approval is stale
    evaluation3 = {**evaluation, "version": v3, "candidate": {"mae": 400.0, "retention_mae": 100.0}}
    approval = decide.gate(MODEL, evaluation3)  # type: ignore[arg-type]
    assert approval["approved"], approval["reason"]
    v4 = log(new_state(seed=4), "demo/day4").version
    bless(v4)
    registry.promote(MODEL, v4, APPROVED, trigger="airflow:daily/run4")
    stale = decide.promote(MODEL, approval)
    assert stale["event"] == "reject" and "re-run the day" in stale["reason"]
    assert registry.status_of(MODEL, v3) == "stale" and registry.champion(MODEL) == v4
    with pytest.raises(RegistryError, match=f"judged against v{v1}, but v{v4} is champion now"):
        registry.promote(MODEL, v3, APPROVED, trigger="cli:someone")
    # the re-run of the day judges v3 again, against v4, and can finish
    rerun = decide.gate(MODEL, {**evaluation3, "champion_version": v4})  # type: ignore[arg-type]
    assert rerun["approved"]
    done = decide.promote(MODEL, rerun)
    assert done["event"] == "promote" and registry.champion(MODEL) == v3 and registry.previous(MODEL) == v4


def test_a_version_whose_serving_model_does_not_load_is_rejected_with_the_reason(store: Path, log) -> None:
    _declare(store)
    from lifelong.steps import decide

    v1 = log(new_state(), "demo/day1").version
    (pt2,) = (store / ".lifelong").rglob("model.pt2")
    pt2.write_bytes(b"PK\x03\x04 not a torch.export archive")  # a corrupted upload, or a tampered one
    bless(v1)
    with pytest.raises(ServingCheckFailed, match="cannot be loaded or run"):
        registry.promote(MODEL, v1, APPROVED, trigger="cli:ops")
    assert registry.champion(MODEL) is None
    outcome = decide.promote(MODEL, {"model": MODEL, "version": v1, "champion_version": None, "approved": True,
                                     "reason": "approved", "deltas": {}})  # fmt: skip
    assert outcome["event"] == "reject" and "serving check" in outcome["reason"]
    assert registry.status_of(MODEL, v1) == "rejected" and registry.champion(MODEL) is None

    # a model that loads but answers NaN is no better
    broken = new_state(seed=2)
    with torch.no_grad():
        broken.model[-1].bias.fill_(float("nan"))
    v2 = log(broken, "demo/day2").version
    bless(v2)
    with pytest.raises(ServingCheckFailed, match="not finite"):
        registry.promote(MODEL, v2, APPROVED, trigger="cli:ops")
    assert registry.champion(MODEL) is None


def test_runs_a_crash_left_running_are_closed_by_the_next_run_unless_another_holds_the_model(store: Path) -> None:
    from lifelong import modellock, recovery
    from lifelong.config import load_settings

    client = registry._client()
    experiment = registry._experiment(client, MODEL)
    now = int(time.time() * 1000)
    crashed = client.create_run(experiment, start_time=now - 60_000, run_name="killed -9").info.run_id
    mine = client.create_run(experiment, start_time=now, run_name="this process").info.run_id
    home = load_settings().home

    # another process holds the model's lock: its runs may be live, nothing is touched
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from lifelong import locks\n"
         "with locks.model_lock(Path(sys.argv[1]), sys.argv[2], 'another run'):\n"
         "    print('held', flush=True); time.sleep(60)", str(home), MODEL],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert recovery.close_crashed_runs(home, MODEL, closed_by="test", started_ms=now - 1000) == []
    finally:
        holder.kill()
        holder.wait()
    assert client.get_run(crashed).info.status == "RUNNING"

    # the next run of the model (holding the lock, or taking it for the moment) closes the crashed run only
    with modellock.hold(home, MODEL, "run_day"):
        closed = recovery.close_crashed_runs(home, MODEL, closed_by="airflow:daily/run2", started_ms=now - 1000)
    assert closed == [crashed]
    run = client.get_run(crashed)
    assert run.info.status == "FAILED" and "airflow:daily/run2" in run.data.tags["lifelong.closed_as_crashed"]
    assert client.get_run(mine).info.status == "RUNNING"
    assert json.loads("[]") == recovery.close_crashed_runs(home, MODEL, closed_by="again", started_ms=now - 1000)
