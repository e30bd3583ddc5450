"""The MLflow record against a real SQLite store: layout, gate, promotion, rollback, audit, crashes."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas.testing
import pytest
import torch
import yaml
from _registry_kit import ARCH, MODEL, bless, mae, new_state, series, train, windows

from lifelong import cli, plots, registry
from lifelong.config import GateSpec
from lifelong.errors import RegistryError, StateError
from lifelong.gate import GateDecision, decide
from lifelong.learn.state import STATE_FILES

GATE = GateSpec(value={"mae": {"max": 0.5}}, change={"mae": {"max_increase_pct": 2.0}})
APPROVED = GateDecision(approved=True, reason="approved: test", deltas={})


def _client():
    return registry._client()


def _promote(version: str, decision: GateDecision, *, trigger: str) -> dict:
    """As ``decide.promote`` does after ``decide.gate``: the decision recorded on the version, then promote."""
    bless(version, decision)
    return registry.promote(MODEL, version, decision, trigger=trigger)


def _local(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def test_candidate_artifact_layout_and_lineage(store: Path, log, tmp_path: Path) -> None:
    state = new_state()
    x, y = windows(series(4, seed=0))
    epochs = train(state, x, y, steps=100)
    cand = log(state, "demo/daily/2024-01-02", {"mae": mae(state, x, y)}, epochs)
    client = _client()

    mv = client.get_model_version(MODEL, cand.version)
    assert mv.tags["run_id"] == cand.run_id and mv.tags["artifacts_complete"] == "true"
    assert mv.tags["validation_status"] == "pending"
    run = client.get_run(cand.run_id)
    for tags in (mv.tags, run.data.tags):  # lineage on the run AND the version
        assert tags["dataset"] == "synthetic" and tags["data_version"] == "md5-demo-daily-2024-01-02"
        assert tags["params_hash"] == "0123abcd" and tags["device"] == "cpu" and tags["try_number"] == "1"
        assert tags["dag_id"] == "lifelong_daily" and tags["git_commit"] == registry.git_commit()

    state_files = {Path(f.path).name for f in client.list_artifacts(cand.run_id, "state")}
    assert state_files <= set(STATE_FILES.values()) and {STATE_FILES["weights"], STATE_FILES["meta"]} <= state_files
    assert mv.tags["state_artifact_uri"].endswith(f"{cand.run_id}/artifacts/state")
    model_files = {Path(f.path).name for f in client.list_artifacts(cand.run_id, "model/data")}
    assert model_files == {"model.pt2"}  # torch.export graph, no pickle
    requirements = Path(client.download_artifacts(cand.run_id, "model/requirements.txt", str(tmp_path))).read_text()
    assert "torch==" in requirements and "+cpu" not in requirements
    assert [f.path for f in client.list_artifacts(cand.run_id, "plots")] == ["plots/loss_curves.png"]

    assert run.data.params["model.arch"] == "cnn_forecaster"
    assert [m.step for m in client.get_metric_history(cand.run_id, "train_loss")] == [0, 1]
    assert "registry_log_s" in run.data.metrics
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.source_type == "dvc"
    assert json.loads(dataset_input.dataset.source) == {"uri": "dvc://local/data/synthetic"}
    assert dataset_input.dataset.digest == "md5-demo-daily-2024-01-02"

    loaded = registry.load_state_of(MODEL, cand.version)  # rebuilt from spec + safetensors
    for name, tensor in state.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_log_candidate_is_idempotent_per_run_key(store: Path, log) -> None:
    state = new_state()
    first = log(state, "demo/daily/2024-01-02")
    again = log(state, "demo/daily/2024-01-02")
    assert again == first
    assert registry.find_candidate(MODEL, "demo/daily/2024-01-02")["version"] == first.version
    assert registry.find_candidate(MODEL, "demo/daily/2024-01-03") is None
    assert len(_client().search_model_versions(f"name = '{MODEL}'")) == 1


def test_gate_rejects_a_candidate_trained_on_shuffled_targets(store: Path, log) -> None:
    """Poisoned but valid: every value is in range, only the input-target pairing is broken."""
    x, y = windows(series(6, seed=1))
    held_x, held_y = windows(series(2, seed=2))
    champ = new_state()
    train(champ, x, y, steps=200)
    champ_metrics = {"mae": mae(champ, held_x, held_y)}
    first = decide(champ_metrics, None, GATE)
    assert first.approved, first.reason
    v1 = log(champ, "demo/day1", champ_metrics)
    _promote(v1.version, first, trigger="airflow:lifelong_daily/day1")

    poisoned = registry.load_state_of(MODEL, v1.version)
    new_x, new_y = windows(series(2, seed=3))
    shuffled = new_y[torch.randperm(len(new_y), generator=torch.Generator().manual_seed(0))]
    train(poisoned, new_x, shuffled, steps=100)
    clean = registry.load_state_of(MODEL, v1.version)
    train(clean, new_x, new_y, steps=20)

    champion_now = {"mae": mae(registry.load_state_of(MODEL, v1.version), held_x, held_y)}
    bad = decide({"mae": mae(poisoned, held_x, held_y)}, champion_now, GATE)
    good = decide({"mae": mae(clean, held_x, held_y)}, champion_now, GATE)
    assert not bad.approved and "% > 2% allowed" in bad.reason, bad.reason
    assert good.approved, good.reason

    v2 = log(poisoned, "demo/day2-poisoned", {"mae": mae(poisoned, held_x, held_y)})
    registry.reject(MODEL, v2.version, bad, trigger="airflow:lifelong_daily/day2")
    assert registry.champion(MODEL) == v1.version
    tags = _client().get_model_version(MODEL, v2.version).tags
    assert tags["validation_status"] == "rejected" and tags["reason"] == bad.reason
    assert json.loads(tags["deltas"])["mae"] > 0
    with pytest.raises(RegistryError, match="did not approve"):
        _promote(v2.version, bad, trigger="cli:someone")

    v3 = log(clean, "demo/day2", {"mae": mae(clean, held_x, held_y)})
    out = _promote(v3.version, good, trigger="airflow:lifelong_daily/day2b")
    assert (out["champion"], out["previous"], out["from"]) == (v3.version, v1.version, v1.version)
    tags = _client().get_model_version(MODEL, v3.version).tags
    assert tags["validation_status"] == "approved" and "promoted_at" in tags and tags["reason"] == good.reason


def _three_versions(log) -> tuple[str, str, str]:
    """v1 promoted, v2 promoted (previous = v1), v3 rejected."""
    versions = [log(new_state(seed=i), f"demo/day{i}").version for i in (1, 2, 3)]
    _promote(versions[0], APPROVED, trigger="airflow:daily/run1")
    _promote(versions[1], APPROVED, trigger="airflow:daily/run2")
    registry.reject(
        MODEL, versions[2], GateDecision(False, "rejected: mae +9% > 2% allowed"), trigger="airflow:daily/run3"
    )
    return versions[0], versions[1], versions[2]


def _declare(project: Path) -> None:
    """Declare MODEL in the workspace's params.yaml (as a copy of the forecaster) for the CLI's steps."""
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["models"][MODEL] = raw["models"]["demand_forecaster"]
    (project / "params.yaml").write_text(yaml.safe_dump(raw))


def test_rollback_and_its_refusals(store: Path, log, capsys) -> None:
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback(MODEL, trigger="cli:ops", reason="nothing yet")
    v1, v2, v3 = _three_versions(log)
    pending = log(new_state(seed=4), "demo/day4").version
    for target, message in ((v3, "was rejected"), (pending, "never approved"), ("99", "no such model version")):
        with pytest.raises(RegistryError, match=message):
            registry.rollback(MODEL, to=target, trigger="cli:ops", reason="try")
    assert registry.champion(MODEL) == v2

    # the CLI (a step: the model must be declared): JSON on success, one line and exit code 6 on refusal
    _declare(store)
    assert cli.main(["rollback", MODEL, "--reason", "v2 forecasts drift upward"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["champion"], out["from"], out["previous"], registry.champion(MODEL)) == (v1, v2, None, v1)
    tags = _client().get_model_version(MODEL, v2).tags
    assert tags["validation_status"] == "rolled_back" and tags["rolled_back_reason"] == "v2 forecasts drift upward"
    assert cli.main(["rollback", MODEL, "--to", v2, "--reason", "v2 was fine after all"]) == RegistryError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lifelong rollback: ") and "never re-instated" in err[0]
    with pytest.raises(RegistryError, match="promote a new candidate"):  # v1 was the first: nothing before it
        registry.rollback(MODEL, trigger="cli:ops", reason="again")
    with pytest.raises(RegistryError, match="rolled_back; refusing to promote"):
        _promote(v2, APPROVED, trigger="airflow:daily/run2-retried")
    with pytest.raises(RegistryError, match="is the champion"):
        registry.reject(MODEL, v1, GateDecision(False, "late"), trigger="cli:ops")
    assert registry.champion(MODEL) == v1


def test_rolling_back_twice_goes_further_back_and_never_to_a_demoted_version(store: Path, log) -> None:
    """v1..v4 promoted in turn; v2 demoted on the way: rollbacks go v4 -> v3 -> v1, then are refused."""
    v1, v2, v3, v4 = (log(new_state(seed=i), f"demo/day{i}").version for i in (1, 2, 3, 4))
    for i, version in enumerate((v1, v2), start=1):
        _promote(version, APPROVED, trigger=f"airflow:daily/run{i}")
    registry.rollback(MODEL, trigger="cli:ops", reason="v2 is bad")  # v2 demoted, v1 back
    for i, version in enumerate((v3, v4), start=3):
        _promote(version, APPROVED, trigger=f"airflow:daily/run{i}")
    assert registry.previous(MODEL) == v3

    first = registry.rollback(MODEL, trigger="cli:ops", reason="v4 is bad")
    assert (first["champion"], first["from"], first["previous"]) == (v3, v4, v1)  # previous skips demoted v2
    second = registry.rollback(MODEL, trigger="cli:ops", reason="v3 is bad too")
    assert (second["champion"], second["from"], second["previous"]) == (v1, v3, None)
    with pytest.raises(RegistryError, match="no previous champion to roll back to from v1"):
        registry.rollback(MODEL, trigger="cli:ops", reason="and v1?")
    for demoted in (v2, v3, v4):
        assert registry.status_of(MODEL, demoted) == "rolled_back"
        with pytest.raises(RegistryError, match="never re-instated"):
            registry.rollback(MODEL, to=demoted, trigger="cli:ops", reason="back?")
    assert registry.champion(MODEL) == v1 and registry.previous(MODEL) is None
    moves = [(e["event"], e["version"], e["from"]) for e in registry.history(MODEL) if e["event"] == "rollback"]
    assert moves == [("rollback", v1, v2), ("rollback", v3, v4), ("rollback", v1, v3)]

    # a keyed (automatic) rollback happens once: the same key again moves nothing
    v5 = log(new_state(seed=5), "demo/day5").version
    _promote(v5, APPROVED, trigger="airflow:daily/run5")
    once = registry.rollback(MODEL, to=v1, trigger="auto:airflow:daily/run6", reason="worse", key="auto-day6")
    again = registry.rollback(MODEL, to=v1, trigger="auto:airflow:daily/run6", reason="worse", key="auto-day6")
    assert once["changed"] is True and again["changed"] is False
    assert again["audit_run_id"] == once["audit_run_id"] and registry.champion(MODEL) == v1


def test_history_lists_every_change_once_in_order(store: Path, log, capsys) -> None:
    v1, v2, v3 = _three_versions(log)
    _promote(v2, APPROVED, trigger="airflow:daily/run2")  # a retried task: no second event
    registry.rollback(MODEL, trigger="cli:ops", reason="bad forecasts")
    with pytest.raises(RegistryError, match="no previous champion"):  # a second one: v1 was the first champion
        registry.rollback(MODEL, trigger="cli:ops", reason="again")
    events = registry.history(MODEL)
    assert [(e["event"], e["version"], e["from"]) for e in events] == [
        ("promote", v1, None),
        ("promote", v2, v1),
        ("reject", v3, v2),
        ("rollback", v1, v2),
    ]
    assert [e["trigger"] for e in events] == [
        "airflow:daily/run1",
        "airflow:daily/run2",
        "airflow:daily/run3",
        "cli:ops",
    ]
    assert events[2]["reason"] == "rejected: mae +9% > 2% allowed" and events[3]["reason"] == "bad forecasts"
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert registry.history("another_model") == []
    assert cli.main(["history", MODEL]) == 0
    assert [e["event"] for e in json.loads(capsys.readouterr().out)] == ["promote", "promote", "reject", "rollback"]


def test_daily_decisions_read_the_audit_log_by_exact_tags_never_the_whole_log(store: Path, log, monkeypatch) -> None:
    """Promote (and its retry), reject, the check that a version served, the last champion move and a
    rollback read their audit events by tags set when each event was recorded, one run per query: a
    day's cost does not grow with the log. Listing the log (``audit.events``) is for ``history`` only."""
    from lifelong import audit

    v1, v2 = (log(new_state(seed=i), f"demo/day{i}").version for i in (1, 2))
    listed = []
    real_events = audit.events
    monkeypatch.setattr(audit, "events", lambda *a, **k: listed.append(a) or real_events(*a, **k))
    _promote(v1, APPROVED, trigger="airflow:daily/run1")
    _promote(v2, APPROVED, trigger="airflow:daily/run2")
    retried = _promote(v2, APPROVED, trigger="airflow:daily/run2-retried")  # already champion: the last move
    assert (retried["event"], retried["version"], retried["changed"]) == ("promote", v2, False)
    v3 = log(new_state(seed=3), "demo/day3").version
    registry.reject(MODEL, v3, GateDecision(False, "worse"), trigger="airflow:daily/run3")
    served = registry.reject(MODEL, v1, GateDecision(False, "judged again"), trigger="airflow:daily/run1-rerun")
    assert served["served"] is True  # v1 served: the record of its promotion is found without the whole log
    assert registry.last_champion_move(MODEL)["version"] == v2
    assert not listed  # promote, its retry, reject: no listing of the log
    registry.rollback(MODEL, to=v1, trigger="cli:ops", reason="v2 is bad")
    assert registry.last_champion_move(MODEL)["event"] == "rollback"
    assert registry.latest_event(MODEL, v1, ("promote",))["trigger"] == "airflow:daily/run1"
    assert registry.latest_event(MODEL, v3, ("promote",)) is None
    assert registry.latest_event(MODEL, v3)["event"] == "reject"
    assert registry.last_champion_move("another_model") is None
    # the newest move is what the whole log says it is
    moves = [e for e in registry.history(MODEL) if e["event"] in audit.CHAMPION_MOVES]
    assert registry.last_champion_move(MODEL) == moves[-1]
    # the tag that names it ahead of the log (a crash between the two writes), or missing (a log written
    # before the tag existed): the log itself answers, by exact-match tags
    client = _client()
    experiment = client.get_experiment_by_name(audit.AUDIT_EXPERIMENT).experiment_id
    client.set_experiment_tag(experiment, audit._move_tag(MODEL), json.dumps({"key": "never-recorded"}))
    assert registry.last_champion_move(MODEL) == moves[-1]
    client.delete_experiment_tag(experiment, audit._move_tag(MODEL))
    assert registry.last_champion_move(MODEL) == moves[-1]
    _promote(log(new_state(seed=6), "demo/day6").version, APPROVED, trigger="airflow:daily/run6")
    assert registry.last_champion_move(MODEL) == registry.history(MODEL)[-1]  # the next move sets it again


def test_crash_before_complete_leaves_the_champion_complete(store: Path, log, monkeypatch) -> None:
    """A worker dies after registering a version and before marking it complete (or moving the alias)."""
    v1 = log(new_state(seed=1), "demo/day1").version
    _promote(v1, APPROVED, trigger="airflow:daily/run1")

    def crash(model_name: str, version: str) -> None:
        raise KeyboardInterrupt("worker killed")

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(registry, "_before_complete", crash)
        log(new_state(seed=2), "demo/day2")
    client = _client()
    (orphan,) = [mv for mv in client.search_model_versions(f"name = '{MODEL}'") if str(mv.version) != v1]
    assert "artifacts_complete" not in orphan.tags
    assert registry.champion(MODEL) == v1
    assert client.get_model_version(MODEL, v1).tags["artifacts_complete"] == "true"
    for refused in (
        lambda: _promote(orphan.version, APPROVED, trigger="airflow:daily/run2"),
        lambda: registry.load_state_of(MODEL, orphan.version),
        lambda: registry.rollback(MODEL, to=orphan.version, trigger="cli:ops", reason="x"),
    ):
        with pytest.raises(RegistryError, match="incomplete"):
            refused()
    assert registry.find_candidate(MODEL, "demo/day2") is None

    retry = log(new_state(seed=2), "demo/day2")  # the task's retry makes a fresh, complete version
    assert retry.version not in (v1, orphan.version)
    assert client.get_model_version(MODEL, orphan.version).tags["validation_status"] == "abandoned"
    _promote(retry.version, APPROVED, trigger="airflow:daily/run2")
    assert registry.champion(MODEL) == retry.version


class _Payload:
    """Unpickling this writes a marker file: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickled_state_file_is_refused_and_never_unpickled(store: Path, log, tmp_path: Path) -> None:
    cand = log(new_state(), "demo/day1")
    client = _client()
    run = client.get_run(cand.run_id)
    weights = _local(run.info.artifact_uri) / "state" / STATE_FILES["weights"]
    marker = tmp_path / "unpickled"
    weights.write_bytes(pickle.dumps(_Payload(marker)))

    with pytest.raises(StateError, match="does not match its recorded sha256"):
        registry.load_state_of(MODEL, cand.version)
    # a manifest tag rewritten to match no longer hashes to the run's write-once param
    manifest = json.loads(run.data.tags["state_sha256"])
    manifest[STATE_FILES["weights"]] = hashlib.sha256(weights.read_bytes()).hexdigest()
    client.set_tag(cand.run_id, "state_sha256", json.dumps(manifest))
    with pytest.raises(StateError, match="does not match its state_manifest_sha256 param"):
        registry.load_state_of(MODEL, cand.version)
    # and were the digests to match, the file is recognised as not-safetensors before it is parsed
    from lifelong.artifacts import verify_state

    with pytest.raises(StateError, match="not a safetensors file"):
        verify_state(weights.parent, manifest, "tampered")
    assert not marker.exists()


def test_git_commit_and_lineage_tags(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LIFELONG_GIT_COMMIT", raising=False)
    assert registry.git_commit(tmp_path) == "unknown"
    monkeypatch.setenv("LIFELONG_GIT_COMMIT", "abc123")
    assert registry.git_commit() == "abc123"
    lineage = registry.Lineage("vic_elec", "d41d8cd9", "abc123", "ph", "cuda:0", dag_id="lifelong_daily")
    assert lineage.tags() == {
        "dataset": "vic_elec",
        "data_version": "d41d8cd9",
        "git_commit": "abc123",
        "params_hash": "ph",
        "device": "cuda:0",
        "dag_id": "lifelong_daily",
    }


@pytest.mark.slow  # real GX validation and DVC add/push/checkout: ~10 s CPU
def test_lineage_round_trip_to_the_restored_rows(store: Path, log) -> None:
    """model version -> its data_version tag -> `data checkout` -> exactly the rows it was trained on."""
    import datetime as dt

    from lifelong.data import store as data_store
    from lifelong.data.landing import simulate

    first, second = dt.date(2012, 1, 3), dt.date(2012, 1, 4)
    simulate("vic_elec", first, 2)
    data_store.ingest("vic_elec", day=first)
    trained_on = data_store.read_days("vic_elec", first, second)
    cand = log(new_state(), "demo/daily/2012-01-03", data_version=data_store.data_version())
    data_store.ingest("vic_elec", day=second)
    assert len(data_store.read_days("vic_elec", first, second)) == 2 * len(trained_on)

    tags = _client().get_model_version(MODEL, cand.version).tags
    restored = data_store.checkout(tags["data_version"])  # into a folder of its own
    assert restored["data_version"] == tags["data_version"] and restored["files"] == 1
    kept = pandas.read_parquet(Path(restored["restored_to"]) / "vic_elec" / f"{first}.parquet")
    pandas.testing.assert_frame_equal(kept, trained_on)
    data_store.checkout(tags["data_version"], in_place=True)  # the live store rewound
    pandas.testing.assert_frame_equal(data_store.read_days("vic_elec", first, second), trained_on)


def test_evaluation_extras_and_state_runs(store: Path, log) -> None:
    """What the evaluate / consolidate steps add after a candidate is logged."""
    cand = log(new_state(), "demo/task/M1")
    registry.log_metrics(cand.run_id, {"eval_mae": 0.25, "task_acc/M1": 0.9})
    registry.log_figures(cand.run_id, {"accuracy_matrix": plots.accuracy_matrix([[0.9]], ["M1"])})
    registry.log_json(cand.run_id, {"tasks": ["M1"], "acc_matrix": [[0.9]]}, "eval/accuracy_matrix.json")
    assert registry.read_json(MODEL, cand.version, "eval/accuracy_matrix.json") == {
        "tasks": ["M1"],
        "acc_matrix": [[0.9]],
    }
    with pytest.raises(RegistryError, match="no artifact eval/missing.json"):
        registry.read_json(MODEL, cand.version, "eval/missing.json")
    run = _client().get_run(cand.run_id)
    assert run.data.metrics["eval_mae"] == 0.25 and "plots/accuracy_matrix.png" in {
        f.path for f in _client().list_artifacts(cand.run_id, "plots")
    }

    state = registry.load_state_of(MODEL, cand.version)
    state.fisher = {n: torch.ones_like(p) for n, p in state.model.named_parameters()}
    run_id = registry.log_state_run(MODEL, state, run_name="consolidate M1", params={"fisher_task": "M1"}, metrics={})
    back = registry.load_state_from_run(run_id, ARCH)
    assert set(back.fisher) == set(state.fisher) and all(
        torch.equal(back.fisher[n], state.fisher[n]) for n in state.fisher
    )
    assert len(_client().search_model_versions(f"name = '{MODEL}'")) == 1  # a state run registers no version


def test_log_model_skips_mlflows_scan_of_every_distribution_and_puts_its_state_back(monkeypatch) -> None:
    """Our pins are the installed versions: MLflow checks them against a map of just those packages."""
    from mlflow.utils import requirements_utils as reqs

    from lifelong import artifacts

    monkeypatch.setattr(reqs, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(reqs, "_PACKAGES_TO_MODULES", None)
    with registry._pinned_requirements_map():
        pinned = artifacts.PIP_REQUIREMENTS_PACKAGES + artifacts.PYFUNC_PACKAGES  # the pyfunc's too
        assert set(reqs._MODULES_TO_PACKAGES) == set(pinned)
        reqs.warn_dependency_requirement_mismatches(artifacts.pip_requirements(pinned))  # the check still runs
    assert reqs._MODULES_TO_PACKAGES is None and reqs._PACKAGES_TO_MODULES is None
    scanned = {"torch": ["torch"], "yaml": ["PyYAML"]}
    monkeypatch.setattr(reqs, "_MODULES_TO_PACKAGES", scanned)
    with registry._pinned_requirements_map():  # MLflow scanned already: nothing changes
        assert reqs._MODULES_TO_PACKAGES is scanned
    assert reqs._MODULES_TO_PACKAGES is scanned
