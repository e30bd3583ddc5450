"""What may be ingested: a regular file of the data set's landing folder (or of LIFELONG_LANDING_ALLOW).

Anything else - the root, /proc, a path climbing out with '..', a link pointing outside, a FIFO,
a directory - is refused before a byte is read: nothing is quarantined, nothing is stored, and
the error says which rule refused it without quoting the file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from _data_kit import day, digest, store_files

from lifelong.config import ConfigError
from lifelong.data import store
from lifelong.data.landing import ALLOW_ENV, MissingBatch, UnsafeBatchPath, check_batch_file, simulate
from lifelong.errors import RefusedBatch

DAY = "2012-03-06"


@pytest.fixture(scope="module")
def landed(shared_workspace: Path) -> Path:
    simulate("vic_elec", day("2012-03-05"), 2)
    store.ingest("vic_elec", day=day("2012-03-05"))
    return shared_workspace / "data" / "landing" / "vic_elec"


@pytest.fixture()
def unchanged(shared_workspace: Path, landed: Path):
    """Asserts, after the test, that the store, the data version, landing and quarantine did not move."""
    quarantine = shared_workspace / "data" / "quarantine"
    before = (store.data_version(), store_files(shared_workspace), digest(quarantine), digest(landed))
    yield
    assert (store.data_version(), store_files(shared_workspace), digest(quarantine), digest(landed)) == before


def _refused(file: str | Path, rule: str) -> str:
    with pytest.raises(UnsafeBatchPath) as refused:
        store.ingest("vic_elec", day=day(DAY), file=Path(file))
    message = str(refused.value)
    assert message.startswith(f"vic_elec {DAY}: refused ") and "\n" not in message, message
    assert rule in message and "nothing was read or copied" in message, message
    assert isinstance(refused.value, RefusedBatch) and refused.value.quarantined is None  # fails the task, no retry
    return message


def test_the_root_is_refused(unchanged):
    _refused("/", "is outside the landing folder")


def test_proc_self_environ_is_refused_and_never_read(unchanged, monkeypatch):
    monkeypatch.setenv("LIFELONG_TEST_SECRET", "environ-secret-Xq81")
    message = _refused("/proc/self/environ", "is on /proc")
    assert "environ-secret-Xq81" not in message


def test_dot_dot_out_of_the_landing_folder_is_refused(unchanged, landed):
    secret = landed.parents[2] / "secret.csv"  # the project folder: readable, but not a batch
    secret.write_text("password_hunter2,b\n1,2\n")
    try:
        message = _refused("../../../secret.csv", "is outside the landing folder")
        assert "hunter2" not in message
        _refused("../../etc/passwd", "is outside the landing folder")
        _refused(landed / ".." / ".." / ".." / "secret.csv", "is outside the landing folder")
    finally:
        secret.unlink()


def test_a_link_in_the_landing_folder_pointing_outside_is_refused(unchanged, landed, tmp_path):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("Time,Demand\n")
    link = landed / f"{DAY}.csv"
    link.symlink_to(outside)
    try:
        _refused(link, f"{outside} is outside the landing folder")
        _refused(f"{DAY}.csv", "is outside the landing folder")  # by its name in the landing folder
    finally:
        link.unlink()
    assert outside.read_text() == "Time,Demand\n"


def test_a_fifo_is_refused_without_blocking(unchanged, landed):
    fifo = landed / "feed.csv"
    os.mkfifo(fifo)
    try:
        _refused(fifo, "is a FIFO, not a regular file")
    finally:
        fifo.unlink()


def test_a_directory_is_refused_not_copied(unchanged, landed):
    folder = landed / "2012-03-06.parquet.d"
    folder.mkdir()
    (folder / "inner.parquet").write_bytes(b"x")
    try:
        _refused(folder, "is a directory, not a regular file")
        _refused(landed, "is a directory, not a regular file")
    finally:
        shutil.rmtree(folder)


def test_a_missing_file_in_the_landing_folder_is_a_missing_batch(unchanged):
    with pytest.raises(MissingBatch, match=f"vic_elec {DAY}: no batch at .*nothing-here.parquet"):
        store.ingest("vic_elec", day=day(DAY), file=Path("nothing-here.parquet"))


def test_a_relative_name_is_a_file_of_the_landing_folder(landed):
    assert check_batch_file("vic_elec", f"{DAY}.parquet") == (landed / f"{DAY}.parquet").resolve()
    result = store.ingest("vic_elec", day=day(DAY), file=Path(f"{DAY}.parquet"))
    assert result.rows == 48 and result.partition == DAY


def test_an_allowed_folder_is_read_and_a_refused_file_from_it_is_copied(landed, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv(ALLOW_ENV, os.pathsep.join(["", str(inbox)]))
    good = inbox / "corrected.parquet"
    frame = pd.read_parquet(landed / "2012-03-05.parquet")
    frame.to_parquet(good, index=False)
    assert store.ingest("vic_elec", day=day("2012-03-05"), file=good).rows == 48

    bad = inbox / "bad.csv"
    frame.assign(Demand=-1.0).to_csv(bad, index=False)
    with pytest.raises(RefusedBatch, match="Demand") as refused:
        store.ingest("vic_elec", day=day("2012-03-05"), file=bad)
    assert bad.exists() and refused.value.quarantined.read_bytes() == bad.read_bytes()  # copied, not moved

    _refused(tmp_path / "not-in-inbox.csv", f"or a folder of {ALLOW_ENV}")


def test_a_file_over_the_limit_from_an_allowed_folder_is_not_copied(shared_workspace, tmp_path, monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, str(tmp_path))
    big = tmp_path / "big.parquet"
    with big.open("wb") as fh:  # sparse: 300 MB on paper, over vic_elec's 200 MB limit
        fh.write(b"PAR1")
        fh.truncate(300 * 2**20)
    with pytest.raises(RefusedBatch, match="file too large") as refused:
        store.ingest("vic_elec", day=day(DAY), file=big)
    assert refused.value.quarantined is None and "left in place" in str(refused.value)
    assert "over the size limit" in refused.value.report.read_text()
    kept = sorted(p.name for p in refused.value.report.parent.iterdir() if "big" in p.name)
    assert kept == ["big.parquet.report.json"]  # the report only: no copy, no partial copy


@pytest.mark.parametrize("entry", ["/", "/proc", "/dev/shm"])
def test_an_allow_list_that_opens_everything_is_a_config_error(shared_workspace, monkeypatch, entry):
    monkeypatch.setenv(ALLOW_ENV, entry)
    with pytest.raises(ConfigError, match=ALLOW_ENV):
        check_batch_file("vic_elec", "/etc/passwd")
