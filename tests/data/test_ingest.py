"""validate_ingest: good batches are stored once; every kind of bad batch is quarantined, nothing else moves.

Real Great Expectations and real DVC in one workspace shared by the module.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _data_kit import day, store_files

from lifelong.data import store
from lifelong.data.landing import land_tasks, simulate
from lifelong.errors import RefusedBatch

BAD_DAY = "2012-01-05"


@pytest.fixture(scope="module")
def landed(shared_workspace: Path) -> Path:
    simulate("vic_elec", day("2012-01-03"), 4)
    first = store.ingest("vic_elec", day=day("2012-01-04"))
    assert first.rows == 48 and first.changed and not first.replaced
    return shared_workspace


@pytest.fixture(scope="module")
def good(landed: Path) -> pd.DataFrame:
    """The real rows of the bad cases' day."""
    return pd.read_parquet(landed / "data" / "landing" / "vic_elec" / f"{BAD_DAY}.parquet")


def test_good_day_ingests_once(landed):
    first = store.ingest("vic_elec", day=day("2012-01-03"))
    files = store_files(landed)
    again = store.ingest("vic_elec", day=day("2012-01-03"))
    assert again.data_version == first.data_version == store.data_version()
    assert (again.changed, again.replaced, again.rows) == (False, False, 48)
    assert store_files(landed) == files
    rows = store.read_days("vic_elec", day("2012-01-03"), day("2012-01-04"))
    assert len(rows) == 96 and rows["Time"].is_unique and rows["Time"].is_monotonic_increasing
    assert store.read_days("vic_elec", day("2011-01-01"), day("2011-01-02")).empty  # nothing stored: empty
    report = json.loads(Path(first.report_path).read_text())
    assert report["validation_result"]["success"] is True
    assert Path(first.data_docs_path).is_file() and first.data_docs_path.endswith(".html")


def test_daylight_saving_days_have_46_and_50_rows(landed):
    simulate("vic_elec", day("2012-04-01"), 1)
    simulate("vic_elec", day("2012-10-07"), 1)
    assert store.ingest("vic_elec", day=day("2012-04-01")).rows == 50
    assert store.ingest("vic_elec", day=day("2012-10-07")).rows == 46


def test_a_corrected_day_replaces_its_partition(landed):
    path = landed / "data" / "landing" / "vic_elec" / "2012-01-06.parquet"
    store.ingest("vic_elec", day=day("2012-01-06"))
    corrected = pd.read_parquet(path)
    corrected["Demand"] += 10.0
    fixed = path.with_name("fixed-2012-01-06.csv")  # a corrected file, landed beside the first
    corrected.to_csv(fixed, index=False)
    result = store.ingest("vic_elec", day=day("2012-01-06"), file=fixed)
    assert result.replaced and result.rows == 48
    stored = store.read_days("vic_elec", day("2012-01-06"), day("2012-01-06"))
    assert np.allclose(stored["Demand"], corrected["Demand"]) and len(stored) == 48


# ----------------------------------------------------------------------------- bad batches

Writer = Callable[[pd.DataFrame, Path], Path]


def _parquet(frame: pd.DataFrame, folder: Path, name: str = f"{BAD_DAY}.parquet") -> Path:
    frame.to_parquet(folder / name, index=False)
    return folder / name


def _csv(frame: pd.DataFrame, folder: Path) -> Path:
    frame.to_csv(folder / f"{BAD_DAY}.csv", index=False)
    return folder / f"{BAD_DAY}.csv"


def _raw(data: bytes, name: str = f"{BAD_DAY}.parquet") -> Writer:
    def write(_: pd.DataFrame, folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return write


def _truncated(frame: pd.DataFrame, folder: Path) -> Path:
    path = _parquet(frame, folder)
    path.write_bytes(path.read_bytes()[:-100])
    return path


def _too_large(_: pd.DataFrame, folder: Path) -> Path:
    path = folder / f"{BAD_DAY}.parquet"
    with path.open("wb") as fh:  # sparse: 60 MB on paper, nothing on disk
        fh.write(b"PAR1")
        fh.truncate(60 * 2**20)
    return path


def _csv_cut_mid_line(frame: pd.DataFrame, folder: Path) -> Path:
    path = _csv(frame, folder)
    path.write_bytes(path.read_bytes()[:-30])
    return path


def _edit(change: Callable[[pd.DataFrame], pd.DataFrame], as_csv: bool = False) -> Writer:
    def write(frame: pd.DataFrame, folder: Path) -> Path:
        changed = change(frame.copy())
        return _csv(changed, folder) if as_csv else _parquet(changed, folder)

    return write


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        if isinstance(value, str) and frame[column].dtype != object:
            frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return change


def _next_day(frame: pd.DataFrame) -> pd.DataFrame:
    other = pd.read_parquet(Path.cwd() / "data" / "landing" / "vic_elec" / "2012-01-06.parquet")
    return other


BAD = {
    "zero bytes": (_raw(b""), "empty file (0 bytes)"),
    "whitespace csv": (_raw(b"  \n\n", f"{BAD_DAY}.csv"), "empty CSV"),
    "header only": (_edit(lambda f: f.iloc[:0], as_csv=True), "no rows (header only)"),
    "garbage bytes": (_raw(bytes(range(256)) * 8), "not a Parquet file"),
    "truncated parquet": (_truncated, "truncated Parquet file"),
    "gzip named csv": (_raw(gzip.compress(b"Time,Demand\n"), f"{BAD_DAY}.csv"), "looks like a gzip archive"),
    "json": (_raw(b'{"Time": []}', f"{BAD_DAY}.json"), "unsupported file type '.json'"),
    "far too large": (_too_large, "file too large: 60.0 MB over the limit of 50 MB"),
    "latin-1 text": (_raw("Time,Demand\n2012,caf\xe9\n".encode("latin-1"), f"{BAD_DAY}.csv"), "not UTF-8 text"),
    "ragged csv": (_raw(b"a,b\n1,2\n3,4,5,6\n", f"{BAD_DAY}.csv"), "malformed CSV"),
    "mis-dated": (_edit(_next_day), "rows outside the day ['2012-01-05']"),
    "missing column": (_edit(lambda f: f.drop(columns="Temperature")), "missing columns ['Temperature']"),
    "extra column": (_edit(lambda f: f.assign(Price=1.0)), "unexpected columns ['Price']"),
    "text in a number column": (
        _edit(_set("Demand", 3, "about 4000"), as_csv=True),
        "Demand: expected type float64, got str",
    ),
    "missing value": (_edit(_set("Demand", 7, np.nan)), "Demand: 1 missing values"),
    "infinite value": (_edit(_set("Temperature", 2, np.inf)), "Temperature: 1 values outside [-10.0, 50.0]"),
    "out of range": (_edit(_set("Demand", 3, 99999.0)), "Demand: 1 values outside [1000.0, 15000.0] (e.g. 99999.0)"),
    "duplicate row": (_edit(lambda f: pd.concat([f, f.iloc[[9]]]).sort_values("Time")), "2 duplicated rows"),
    "not sorted": (_edit(lambda f: f.iloc[::-1]), "Time: not strictly increasing"),
    "missing rows": (_edit(lambda f: f.drop(index=[20, 21])), "expected 48 rows for the day, got 46"),
    "truncated csv": (_csv_cut_mid_line, "Demand: 1 missing values"),
    "off the half-hour grid": (
        _edit(lambda f: f.assign(Time=f["Time"].where(f.index != 5, f["Time"] + pd.Timedelta("7min")))),
        "Time: 2 steps not 30min apart",
    ),
    "date disagrees with time": (_edit(_set("Date", 0, "2012-01-04")), "rows whose date is not their timestamp's"),
    "flat-lined sensor": (_edit(lambda f: f.assign(Demand=4000.0)), "Demand: only 1 distinct value (flat line)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_batch_is_quarantined(landed, good, case):
    write, expected = BAD[case]
    landing = landed / "data" / "landing" / "vic_elec"
    version, files = store.data_version(), store_files(landed)
    path = write(good, landing)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(RefusedBatch) as refused:
        store.ingest("vic_elec", day=day(BAD_DAY), file=path)

    message = str(refused.value)
    assert expected in message, message
    assert message.startswith(f"vic_elec {BAD_DAY}: batch refused, ") and "\n" not in message
    kept, report = refused.value.quarantined, refused.value.report
    assert not path.exists(), "a refused landing file is moved, not left to be ingested again"
    assert kept.parent == landed / "data" / "quarantine" / "vic_elec" / BAD_DAY
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == sha, "nothing lost"
    body = json.loads(report.read_text())
    assert expected in body["reason"]
    if body["validation_result"] is not None:  # validated and failed: the GX result and its Data Docs page
        assert body["validation_result"]["success"] is False and Path(body["data_docs"]).is_file()
    assert store.data_version() == version and store_files(landed) == files


def test_a_file_from_an_allowed_folder_is_copied_not_moved(landed, tmp_path, monkeypatch):
    monkeypatch.setenv("LIFELONG_LANDING_ALLOW", str(tmp_path))
    outside = tmp_path / "mine.parquet"
    outside.write_bytes(b"")
    with pytest.raises(RefusedBatch, match="empty file"):
        store.ingest("vic_elec", day=day(BAD_DAY), file=outside)
    assert outside.exists()


# ----------------------------------------------------------------------------- task data


def test_task_batch_ingests_and_bad_signals_are_refused(landed):
    path = land_tasks("vibration_sim", ["M1"])[0]
    good = pd.read_parquet(path)
    result = store.ingest("vibration_sim", task="M1")
    assert (result.partition, result.rows) == ("task=M1", 600)
    assert len(store.read_task("vibration_sim", "M1")) == 600
    version = store.data_version()

    short = good.copy()
    short.at[4, "signal"] = short.at[4, "signal"][:100]
    nan = good.copy()
    nan.at[1, "signal"] = np.where(np.arange(256) == 3, np.nan, nan.at[1, "signal"]).astype(np.float32)
    cases = {
        "signal: 1 recordings not of length 256": short,
        "signal: 1 recordings with NaN or infinite values": nan,
        "label: 2 values not in [0, 1, 2, 3]": good.assign(label=good["label"].where(good.index > 1, 7)),
        "task: 600 values not in ['M2']": good,  # M1's rows handed in as task M2
        "2 duplicated rows": pd.concat([good, good.iloc[[3]].assign(sample=10_000)], ignore_index=True),
    }
    for expected, frame in cases.items():
        task = "M2" if "'M2'" in expected else "M1"
        bad = path.with_name(f"{task}.parquet")
        frame.to_parquet(bad, index=False)
        with pytest.raises(RefusedBatch) as refused:
            store.ingest("vibration_sim", task=task, file=bad)
        assert expected in str(refused.value), str(refused.value)
        assert refused.value.quarantined.parent.name == task
    assert store.data_version() == version
