"""Disk full during ingest or an artifact write: a clear error, no partial state left behind.

Two ways to fill a disk:

* ``LIFELONG_FAULT=enospc:<checkpoint>`` raises ``OSError(ENOSPC)`` exactly where a write
  would fail (always available);
* a real 4 MiB tmpfs mounted over the DVC cache and over the MLflow artifact root, filled to
  the last byte (needs root and ``mount``; skipped elsewhere).

Either way the error says "No space left on device", the batch stays in the landing folder
(a full disk is not bad data: nothing is quarantined, Airflow retries), the store and its
data version are as they were, no ``.tmp`` file remains, the champion is untouched, and the
same step succeeds once space is back.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import _faults_kit as kit
import pytest

INGEST_STEPS = {"validate": 1, "partition_write": 2, "dvc_push": 3}  # checkpoint -> day offset it fails


@pytest.fixture(scope="module")
def store_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with kit.in_process(tmp_path_factory.mktemp("enospc") / "project", days=4, stored=1) as project:
        yield project


@pytest.mark.parametrize("step", list(INGEST_STEPS))
def test_enospc_during_ingest_leaves_the_store_as_it_was(store_project, step, monkeypatch):
    from lifelong import locks
    from lifelong.config import load_settings
    from lifelong.data import store

    project = store_project
    the_day = kit.START + dt.timedelta(days=INGEST_STEPS[step])
    landed = project / "data" / "landing" / kit.DATASET / f"{the_day}.parquet"
    before, version = kit.store_state(project), store.current_version()

    monkeypatch.setenv("LIFELONG_FAULT", f"enospc:{step}")
    with pytest.raises(OSError) as full:
        store.ingest(kit.DATASET, day=the_day)
    assert full.value.errno == errno.ENOSPC and "No space left on device" in str(full.value)
    assert landed.exists(), "a good batch was moved away because the disk was full"
    assert not (project / "data" / "quarantine" / kit.DATASET / str(the_day)).exists()
    assert kit.store_state(project) == before
    assert store.current_version() == version
    assert not list(project.rglob("*.tmp"))
    with locks.hold(load_settings().home / "locks" / "dvc.lock", "test", timeout=1):
        pass

    monkeypatch.delenv("LIFELONG_FAULT")
    stored = store.ingest(kit.DATASET, day=the_day)  # space is back: the same batch goes in
    assert stored.rows == 48 and stored.data_version != version


@pytest.mark.slow
def test_enospc_while_logging_the_candidate(base):
    project = base.fresh()
    the_day = kit.day(4)
    full = kit.run(project, "run_day", kit.MODEL, the_day, fault="enospc:mlflow_log")
    assert full.error == "OSError" and "No space left on device" in full.message, full
    info = kit.ok(kit.run(project, "_faults_kit:inspect", kit.MODEL))
    kit.assert_safe(info)
    assert info["champion"] == base.first_run["promote"]["champion"]
    assert kit.day_versions(info, the_day) == {}  # nothing registered for the day
    ((_, run_),) = kit.day_runs(info, the_day).items()  # the run marked FAILED, its partial artifacts kept
    assert run_["status"] == "FAILED" and run_["artifacts_complete"] is None, run_
    assert "state" in run_["artifacts"] and "model" not in run_["artifacts"], run_

    kit.ok(kit.run(project, "run_day", kit.MODEL, the_day))
    kit.assert_day_correct(kit.ok(kit.run(project, "_faults_kit:inspect", kit.MODEL)), the_day)


# ----------------------------------------------------------------------------- a real full disk


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or done.returncode}")


def _fill(where: Path) -> Path:
    """Write zeros into ``where`` until the file system is full; returns the filler file."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs root and mount (the injected ENOSPC tests cover the same code)")
    mounted: list[Path] = []
    yield mounted
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
def test_real_full_disk_for_the_dvc_cache_and_the_artifact_store(tmp_path, mounts):
    project, artifacts = tmp_path / "project", tmp_path / "artifacts"
    kit.write_params(project)
    env = {"LIFELONG_ARTIFACT_ROOT": artifacts.as_uri()}
    kit.ok(kit.run(project, "lifelong.data.store:ensure_repo", env=env))
    for where in (project / ".dvc" / "cache", artifacts):
        _mount_tmpfs(where, "4m")
        mounts.append(where)
    kit.ok(kit.run(project, "_faults_kit:ingest_days", kit.MODEL, [kit.day(i) for i in range(3)], env=env))
    the_day = kit.day(3)  # the first model's day: its candidate is the first upload to the artifact store
    inspect = "_faults_kit:inspect"
    before = kit.ok(kit.run(project, inspect, kit.MODEL, env=env))

    # 1. the DVC cache is full: `dvc add` fails, the partition and data.dvc are put back
    filler = _fill(project / ".dvc" / "cache")
    refused = kit.run(project, "lifelong.steps.daily:validate_ingest", kit.MODEL, the_day, env=env)
    assert refused.error is not None and "No space left on device" in refused.message, refused
    filler.unlink()
    info = kit.ok(kit.run(project, inspect, kit.MODEL, env=env))
    assert the_day not in info["partitions"] and info["data_version"] == before["data_version"]
    assert info["dvc"]["workspace_matches"] and f"{the_day}.parquet" in info["landing"]
    assert info["quarantine"] == []
    kit.assert_safe(info)

    # 2. the artifact store is full: the candidate's upload fails, nothing is registered
    filler = _fill(artifacts)
    failed = kit.run(project, "run_day", kit.MODEL, the_day, env=env)
    assert failed.error is not None and "No space left on device" in failed.message, failed
    filler.unlink()
    info = kit.ok(kit.run(project, inspect, kit.MODEL, env=env))
    assert info["champion"] is None and kit.day_versions(info, the_day) == {}
    kit.assert_safe(info)

    # 3. space is back: the day runs as if nothing had happened
    kit.ok(kit.run(project, "run_day", kit.MODEL, the_day, env=env))
    kit.assert_day_correct(kit.ok(kit.run(project, inspect, kit.MODEL, env=env)), the_day)
