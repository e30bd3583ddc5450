"""Data versions: any recorded one restores byte-identical (into its own folder, or in place); concurrent
ingests never corrupt the store; a kill mid-write leaves nothing that the next ingest does not mend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _data_kit import day, digest, store_files

from lifelong import locks
from lifelong.config import load_settings
from lifelong.data import dvcrepo, store
from lifelong.data.dvcrepo import DataVersionError
from lifelong.data.landing import simulate
from lifelong.errors import LifelongError, StoreBusy


@pytest.fixture(scope="module")
def history(shared_workspace: Path) -> dict:
    """Three versions: day 1; days 1-2; day 1 corrected + day 2. Their store files, by version."""
    simulate("vic_elec", day("2012-02-01"), 3)
    versions = {}
    v1 = store.ingest("vic_elec", day=day("2012-02-01")).data_version
    versions[v1] = store_files(shared_workspace)
    v2 = store.ingest("vic_elec", day=day("2012-02-02")).data_version
    versions[v2] = store_files(shared_workspace)
    import pandas as pd

    landing = shared_workspace / "data" / "landing" / "vic_elec"
    corrected = pd.read_parquet(landing / "2012-02-01.parquet").assign(Temperature=lambda f: f["Temperature"] + 0.5)
    corrected.to_parquet(landing / "corrected.parquet", index=False)
    v3 = store.ingest("vic_elec", day=day("2012-02-01"), file=landing / "corrected.parquet").data_version
    versions[v3] = store_files(shared_workspace)
    assert len({v1, v2, v3}) == 3
    return {"order": [v1, v2, v3], "files": versions}


def _live(project: Path) -> tuple[bytes, dict[str, str]]:
    """data.dvc's bytes and every file under data/ (landing and quarantine included)."""
    return (project / "data.dvc").read_bytes(), digest(project / "data")


def test_checkout_restores_into_its_own_folder_and_leaves_the_live_store_alone(shared_workspace, history):
    live = _live(shared_workspace)
    v1, v2, _ = history["order"]
    restored = store.checkout(v1)
    folder = shared_workspace / ".lifelong" / "checkouts" / v1
    assert restored["restored_to"] == str(folder) and restored["in_place"] is False
    assert digest(folder) == history["files"][v1]  # exactly the version's files, byte-identical
    assert restored["datasets"] == {"vic_elec": {"partitions": 1, "rows": 48}} and restored["files"] == 1
    assert _live(shared_workspace) == live
    assert store.checkout(v1)["source"] == "folder"  # already there: checked, left as it is

    to = shared_workspace.parent / "v2-rows"
    assert store.checkout(v2, to=to)["files"] == 2 and digest(to) == history["files"][v2]
    with pytest.raises(DataVersionError, match="is not empty and does not hold version"):
        store.checkout(v1, to=to)
    with pytest.raises(LifelongError, match="not inside data/"):
        store.checkout(v1, to=shared_workspace / "data" / "old")
    assert _live(shared_workspace) == live and not [p for p in to.parent.iterdir() if p.name.endswith(".tmp")]


def test_version_files_names_each_cached_file_of_a_version(shared_workspace, history):
    v1, v2, _ = history["order"]
    files = dvcrepo.version_files(load_settings(), v2)
    assert sorted(files) == sorted(history["files"][v2])
    assert {rel: digest(path.parent)[path.name] for rel, path in files.items()} == history["files"][v2]
    with pytest.raises(DataVersionError, match="is not a data version"):
        dvcrepo.version_files(load_settings(), "../etc")


def test_every_version_restores_byte_identical_in_place(shared_workspace, history):
    landing_before = digest(shared_workspace / "data" / "landing")
    v1, v2, v3 = history["order"]
    for version in (v1, v2, v1, v3):
        restored = store.checkout(version, in_place=True)
        assert restored["data_version"] == version == store.data_version()
        assert store_files(shared_workspace) == history["files"][version]
        assert dvcrepo.last_good_file(load_settings()).read_bytes() == (shared_workspace / "data.dvc").read_bytes()
    assert restored["datasets"]["vic_elec"] == {"partitions": 2, "rows": 96}
    assert digest(shared_workspace / "data" / "landing") == landing_before  # checkout leaves landing alone


def test_a_version_comes_back_from_the_remote_when_the_cache_is_gone(shared_workspace, history):
    v1, v2, v3 = history["order"]
    shutil.rmtree(shared_workspace / ".dvc" / "cache")
    live = _live(shared_workspace)
    restored = store.checkout(v2, to=shared_workspace.parent / "from-remote")
    assert restored["source"] == "remote" and digest(Path(restored["restored_to"])) == history["files"][v2]
    assert _live(shared_workspace) == live  # fetched without pointing data.dvc anywhere
    restored = store.checkout(v1, in_place=True)
    assert restored["source"] == "remote"
    assert store_files(shared_workspace) == history["files"][v1]
    store.checkout(v3, in_place=True)
    assert store_files(shared_workspace) == history["files"][v3]


def test_an_unknown_version_changes_nothing(shared_workspace, history):
    version, files = store.data_version(), store_files(shared_workspace)
    live = _live(shared_workspace)
    for where in ({"in_place": True}, {}):
        with pytest.raises(DataVersionError, match="neither in the local cache nor in the remote"):
            store.checkout("0123456789abcdef0123456789abcdef", **where)
        with pytest.raises(DataVersionError, match="is not a data version"):
            store.checkout("HEAD~1", **where)
    assert store.data_version() == version and store_files(shared_workspace) == files
    assert _live(shared_workspace) == live
    assert not (shared_workspace / ".lifelong" / "checkouts" / "0123456789abcdef0123456789abcdef").exists()


def test_an_emptied_data_dvc_is_put_back_from_the_last_good_copy(shared_workspace, history, caplog):
    """A kill inside `dvc add` can leave data.dvc empty: the next reader or ingest puts the last good one back."""
    dvc_file = shared_workspace / "data.dvc"
    good, version = dvc_file.read_bytes(), store.data_version()
    for broken in (b"", b"outs: [\n  {md5: "):
        dvc_file.write_bytes(broken)
        with caplog.at_level("WARNING", logger="lifelong.data"):
            assert store.current_version() == version
        assert dvc_file.read_bytes() == good
        assert "was empty or unparseable" in caplog.text and "data.dvc.last-good" in caplog.text
        caplog.clear()
    dvc_file.write_bytes(b"")
    again = store.ingest("vic_elec", day=day("2012-02-02"))  # the ingest mends it under the lock, then records
    assert again.data_version == version == store.data_version() and not again.changed


def test_temp_files_of_killed_writers_are_removed_by_the_next_ingest(shared_workspace, history):
    from lifelong.data.files import _host_tag

    dead = 2**22 + 12345  # above pid_max's default: no such process
    data = shared_workspace / "data"
    leftovers = [
        data / "vic_elec" / f".2012-02-01.parquet.{dead}-{_host_tag()}.tmp",  # store: removed under the lock
        data / "vic_elec" / ".2012-02-01.parquet.77.tmp",  # an older writer's name: removed too
        shared_workspace / f".data.dvc.{dead}-{_host_tag()}.tmp",
        data / "landing" / "vic_elec" / f".2012-02-09.parquet.{dead}-{_host_tag()}.tmp",  # landing: a dead writer
    ]
    alive = data / "landing" / "vic_elec" / f".2012-02-10.parquet.1-{_host_tag()}.tmp"  # pid 1 runs: left alone
    for path in [*leftovers, alive]:
        path.write_bytes(b"half a parquet file")
    version = store.data_version()
    assert store.ingest("vic_elec", day=day("2012-02-02")).data_version == version  # the tmp files were never versioned
    assert [p for p in leftovers if p.exists()] == [] and alive.exists()
    alive.unlink()


def test_a_held_lock_is_named_in_the_error(shared_workspace, history, monkeypatch):
    monkeypatch.setenv("LIFELONG_LOCK_TIMEOUT_S", "0.3")
    version = store.data_version()
    busy = rf"store busy: held by pid {os.getpid()} .* \(a long dvc push\)"
    with (
        locks.hold(load_settings().home / "locks" / "dvc.lock", "a long dvc push"),
        pytest.raises(StoreBusy, match=busy),
    ):
        store.ingest("vic_elec", day=day("2012-02-03"))
    assert store.data_version() == version


def test_the_version_is_never_read_half_written(shared_workspace, history):
    """``dvc add`` rewrites data.dvc in place; a reader waits for the writer's lock, never sees it empty."""
    version = store.data_version()
    dvc_file = shared_workspace / "data.dvc"
    full = dvc_file.read_text()
    emptied, release = threading.Event(), threading.Event()

    def writer() -> None:
        with locks.hold(load_settings().home / "locks" / "dvc.lock", "dvc add"):
            dvc_file.write_text("")
            emptied.set()
            release.wait(5)
            dvc_file.write_text(full)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert emptied.wait(5)
        threading.Timer(0.3, release.set).start()
        assert store.data_version() == version
    finally:
        release.set()
        thread.join()


def _cli(project: Path, *args: str) -> subprocess.Popen:
    """``lifelong ...`` from the project root with the embedded defaults (no LIFELONG_* set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELONG_")}
    return subprocess.Popen(
        [sys.executable, "-m", "lifelong.cli", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # two fresh processes, each importing Great Expectations and DVC
def test_concurrent_ingests_do_not_corrupt_the_store(tmp_path):
    """Two processes at once, two days: both partitions stored once, data.dvc true to data/ (no lost update)."""
    from _data_kit import make_workspace

    with pytest.MonkeyPatch.context() as mp:
        project = make_workspace(tmp_path, mp)
        simulate("vic_elec", day("2013-03-01"), 2)
        runs = [_cli(project, "ingest", "--dataset", "vic_elec", "--date", d) for d in ("2013-03-01", "2013-03-02")]
        outputs = [run.communicate(timeout=300) for run in runs]
        for run, (out, err) in zip(runs, outputs, strict=True):
            assert run.returncode == 0, err
            json.loads(out)
        assert store.stored_partitions("vic_elec") == ["2013-03-01", "2013-03-02"]
        rows = store.read_days("vic_elec", day("2013-03-01"), day("2013-03-02"))
        assert len(rows) == 96 and rows["Time"].is_unique
        versions = [json.loads(out)["data_version"] for out, _ in outputs]
        assert len(set(versions)) == 2 and store.data_version() in versions  # the later one saw both days
        from dvc.repo import Repo

        with Repo(str(project)) as repo:
            assert repo.status(targets=[str(project / "data.dvc")]) == {}  # data.dvc matches data/ exactly
            assert project / ".lifelong" / "dvc-remote" == Path(repo.config["remote"]["local"]["url"])


def test_dvc_never_walks_lifelongs_home(shared_workspace, history):
    """DVC walks the workspace on every add and push: the home inside the project (MLflow artifacts, the DVC
    remote, reports: files every day) is ignored, so a day's ingest does not slow down as it fills."""
    settings = load_settings()
    home = settings.home.resolve().relative_to(shared_workspace.resolve()).as_posix()
    assert f"/{home}/" in (shared_workspace / ".dvcignore").read_text().splitlines()
    # a DVC file there that claims data/ too: DVC would refuse the overlap if it walked the home
    stray = settings.home / "somewhere" / "stray.dvc"
    stray.parent.mkdir(parents=True, exist_ok=True)
    back = os.path.relpath(settings.data_dir, stray.parent)
    stray.write_text(f"outs:\n- path: {back}\n  md5: 0123456789abcdef0123456789abcdef.dir\n")
    try:
        assert store.ingest("vic_elec", day=day("2012-02-02")).data_version == store.data_version()
    finally:
        shutil.rmtree(stray.parent)
