"""Secrets never reach MLflow or a log; task names with path traversal or shell syntax are refused.

(The scan for unsafe deserialisation - pickle, ``torch.load`` without ``weights_only=True``,
``yaml.load`` without a safe loader - is ``tests/code/test_security.py``.)
"""

from __future__ import annotations

import os
from pathlib import Path

import _faults_kit as kit
import pytest

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAULTSTESTKEY0001",
    "AWS_SECRET_ACCESS_KEY": "faults-aws-secret-7Hq2vX9",
    "MLFLOW_TRACKING_USERNAME": "faults-user",
    "MLFLOW_TRACKING_PASSWORD": "faults-mlflow-password-3Kd8",
    "MLFLOW_TRACKING_TOKEN": "faults-mlflow-token-Zp41",
}
REMOTE_PASSWORD = "faults-dvc-password-Qm77"
CREDENTIALED_REMOTE = f"https://dvcuser:{REMOTE_PASSWORD}@127.0.0.1:9/dvc"
NEEDLES = [REMOTE_PASSWORD, *(v for k, v in SECRETS.items() if k != "MLFLOW_TRACKING_USERNAME")]


def test_the_dvc_location_logged_to_mlflow_has_no_credentials(monkeypatch):
    from lifelong.data import store

    monkeypatch.setenv("LIFELONG_DVC_REMOTE", CREDENTIALED_REMOTE)
    assert store.dvc_location("vic_elec") == "https://127.0.0.1:9/dvc#data/vic_elec"
    monkeypatch.setenv("LIFELONG_DVC_REMOTE", f"s3://AKIAX:{REMOTE_PASSWORD}@bucket/dvc")
    assert store.dvc_location("vic_elec") == "s3://bucket/dvc#data/vic_elec"


@pytest.mark.slow
def test_no_secret_in_mlflow_params_tags_inputs_or_logs(base):
    """A day decided with credentials everywhere in the environment leaves none of them behind."""
    project = base.fresh()
    the_day = kit.day(4)
    # the day stored with the real (local) remote
    kit.ok(kit.run(project, "lifelong.steps.daily:validate_ingest", kit.MODEL, the_day, env=SECRETS))
    # the rest of the day with a remote that carries a password (the update logs the data's DVC location)
    env = {**SECRETS, "LIFELONG_DVC_REMOTE": CREDENTIALED_REMOTE}
    decided = kit.run(project, "_faults_kit:decide_day", kit.MODEL, the_day, env=env)
    kit.ok(decided)
    texts = kit.ok(kit.run(project, "_faults_kit:mlflow_texts", kit.MODEL, env=env))
    assert any("data_version" in t for t in texts) and any("127.0.0.1:9/dvc" in t for t in texts)
    logs = [p.read_text(errors="replace") for p in (project.parent / "child-runs").glob("*.log")]
    written = [
        p.read_text(errors="replace")
        for p in (project / ".lifelong").rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl", ".log", ".txt", ".yaml", ".html")
    ]
    for needle in NEEDLES:
        assert not [t for t in texts if needle in t], f"{needle} logged to MLflow"
        assert not [t for t in logs if needle in t], f"{needle} printed in a log"
        assert not [t for t in written if needle in t], f"{needle} written under .lifelong"


BAD_TASKS = [
    "../../etc/passwd", "/etc/passwd", "..", ".", "M1/../../x", "M1; rm -rf ~", "$(touch pwned)", "`touch pwned`",
    "M1 && touch pwned", "M1|id", "M1\nM2", "M1\n", "-rf", "", "M1\x00", "a" * 65,
]  # fmt: skip


@pytest.mark.parametrize("task", BAD_TASKS, ids=range(len(BAD_TASKS)))
def test_task_names_with_traversal_or_shell_syntax_are_refused(workspace: Path, task: str):
    from lifelong.data import store
    from lifelong.errors import LifelongError
    from lifelong.steps import run, tasks

    before = sorted(p.relative_to(workspace) for p in workspace.rglob("*"))
    for call, says in (
        (lambda: tasks.ingest_task("vibration_classifier", task), "is not declared"),
        (lambda: run.run_task("vibration_classifier", task), "is not declared"),
        # below the declared-tasks check: what learn_task and consolidate read through, and ingest itself
        (lambda: store.read_task("vibration_sim", task), "use letters, digits"),
        (lambda: store.ingest("vibration_sim", task=task), "use letters, digits"),
    ):
        with pytest.raises(LifelongError) as refused:
            call()
        message = str(refused.value)
        assert says in message and "\n" not in message.replace(repr(task), ""), message
    created = [p.relative_to(workspace) for p in workspace.rglob("*")]
    assert not [p for p in created if "pwned" in str(p) or "passwd" in str(p) or ".." in p.parts]
    assert not Path("pwned").exists() and not (Path.home() / "pwned").exists()
    assert set(before) <= set(created)


def test_unknown_models_and_strategies_are_refused(workspace: Path):
    from lifelong.errors import LifelongError
    from lifelong.steps import daily, run, tasks

    for call in (
        lambda: run.run_day("../../etc/passwd", "2012-03-05"),
        lambda: tasks.consolidate(
            "vibration_classifier", "M1", {"data_version": "0" * 32}, overrides={"strategy": "ewc; rm -rf ~"}
        ),
        lambda: daily.validate_ingest("demand_forecaster", "../../etc/passwd"),
    ):
        with pytest.raises(LifelongError):
            call()
    assert not (workspace / ".lifelong" / "locks" / "model-..").exists()
    assert os.path.exists("/etc/passwd")


@pytest.mark.parametrize("name", ["name\n", "a/../b", "..", "../x", "x/..", "/etc/passwd", "a\nb", "", "a b"])
def test_registry_names_and_artifact_paths_are_matched_whole_and_never_climb(name: str):
    """A trailing newline slips through ``re.match("^...$")``; '..' would climb out of a run's artifacts."""
    from lifelong import registry
    from lifelong.errors import RegistryError

    with pytest.raises(RegistryError) as refused:
        registry._check("artifact path", name)
    assert "\n" not in str(refused.value)


def test_registry_names_that_are_fine_stay_fine():
    from lifelong import registry

    for name in ("demand_forecaster", "eval/accuracy_matrix.json", "demo/daily/2012-01-03/ab12/cd34", "a..b", "v1.2"):
        assert registry._check("artifact path", name) == name
