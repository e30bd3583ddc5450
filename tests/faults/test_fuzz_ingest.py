"""Property: every malformed daily file is refused cleanly, quarantined, and the store is untouched.

Hypothesis draws one malformation at a time of a real vic_elec day (random bytes, truncated
Parquet, missing/extra/renamed columns, wrong types, NaN/inf, values out of range,
duplicated or missing rows, duplicated or misdated timestamps, a file over the size limit,
empty files), lands it as that day's file in either format, and ingests it. Whatever the
malformation: :class:`~lifelong.errors.RefusedBatch` with a one-line message, the file moved
to the quarantine with its report, the store (partitions, ``data.dvc``, data version) as
it was. One test per kind of malformation, seeded (``derandomize``), two examples each.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path

import _faults_kit as kit
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

GOOD_DAY, FUZZ_DAY = kit.START, kit.START + dt.timedelta(days=1)
MAX_MB = 0.25  # params.yaml's limit in this project, so that "huge" stays small
COLUMNS = ["Time", "Date", "Demand", "Temperature", "Holiday"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, pd.DataFrame]]:
    """A store holding one good day, and the next real day (as a frame) to break."""
    with kit.in_process(tmp_path_factory.mktemp("fuzz") / "project", days=2, stored=1, max_file_mb=MAX_MB) as project:
        yield project, pd.read_parquet(project / "data" / "landing" / kit.DATASET / f"{FUZZ_DAY}.parquet")


# ----------------------------------------------------------------------------- malformations

FRAME_KINDS = [
    "drop_column", "extra_column", "rename_column", "wrong_type", "nonfinite", "out_of_range", "null",
    "duplicate_time", "duplicate_row", "missing_rows", "shifted_times", "wrong_date_column", "flat_target",
    "header_only",
]  # fmt: skip
BYTE_KINDS = ["bytes", "truncated", "empty", "huge"]


def _malform(frame: pd.DataFrame, kind: str, data: st.DataObject) -> pd.DataFrame:
    frame = frame.copy()
    n = len(frame)
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5, unique=True), label="rows")
    column = data.draw(st.sampled_from(COLUMNS), label="column")
    if kind == "drop_column":
        return frame.drop(columns=[column])
    if kind == "extra_column":
        frame["extra"] = 1.0
        return frame
    if kind == "rename_column":
        return frame.rename(columns={column: column.lower() + "_"})
    if kind == "wrong_type":
        name = data.draw(st.sampled_from(["Demand", "Temperature", "Holiday", "Time"]), label="typed")
        if name == "Holiday":
            frame[name] = frame[name].astype(int)
        else:
            frame[name] = frame[name].astype(str) + data.draw(st.sampled_from([" MW", "x", "?"]), label="suffix")
        return frame
    if kind == "nonfinite":
        name = data.draw(st.sampled_from(["Demand", "Temperature"]), label="name")
        frame.loc[frame.index[rows], name] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]), label="value")
        return frame
    if kind == "out_of_range":
        name = data.draw(st.sampled_from(["Demand", "Temperature"]), label="name")
        low, high = {"Demand": (1000.0, 15000.0), "Temperature": (-10.0, 50.0)}[name]
        outside = st.one_of(
            st.floats(min_value=-1e12, max_value=low - 0.01), st.floats(min_value=high + 0.01, max_value=1e12)
        )
        frame.loc[frame.index[rows], name] = data.draw(outside, label="value")
        return frame
    if kind == "null":
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[rows], column] = None
        return frame
    if kind == "duplicate_time":
        i = data.draw(st.integers(1, n - 1), label="i")
        frame.loc[frame.index[i], "Time"] = frame["Time"].iloc[i - 1]
        return frame
    if kind == "duplicate_row":
        return pd.concat([frame, frame.iloc[rows[:1]]]).sort_values("Time", kind="stable")
    if kind == "missing_rows":
        return frame.drop(index=frame.index[rows])
    if kind == "shifted_times":  # a whole number of steps: rows leave the day (misdated)
        steps = data.draw(st.integers(-48 * 3, 48 * 3).filter(bool), label="steps")
        frame["Time"] = frame["Time"] + pd.Timedelta(minutes=30 * steps)
        return frame
    if kind == "wrong_date_column":
        frame["Date"] = str(FUZZ_DAY + dt.timedelta(days=data.draw(st.integers(-400, 400).filter(bool))))
        return frame
    if kind == "flat_target":  # a dead sensor: one value all day
        frame["Demand"] = float(frame["Demand"].iloc[0])
        return frame
    assert kind == "header_only"
    return frame.iloc[:0]


def _encode(frame: pd.DataFrame, suffix: str) -> bytes:
    if suffix == ".csv":
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _bytes(frame: pd.DataFrame, kind: str, data: st.DataObject) -> tuple[bytes, str]:
    if kind == "bytes":
        head = data.draw(st.sampled_from([b"", b"PAR1", b"Time,Date\n", b"\x80\x04"]), label="head")
        return head + data.draw(st.binary(min_size=1, max_size=2048), label="bytes"), data.draw(
            st.sampled_from([".parquet", ".csv"]), label="suffix"
        )
    if kind == "truncated":
        good = _encode(frame, ".parquet")
        return good[: data.draw(st.integers(0, len(good) - 1), label="cut")], ".parquet"
    if kind == "empty":
        return b"", data.draw(st.sampled_from([".parquet", ".csv"]), label="suffix")
    assert kind == "huge"
    big = pd.concat([frame] * 200, ignore_index=True)
    return big.to_csv(index=False).encode(), ".csv"


@settings(
    max_examples=2,  # per kind: 36 examples in all
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a GX validation per step would take minutes
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
@pytest.mark.parametrize("kind", FRAME_KINDS + BYTE_KINDS)
def test_malformed_daily_files_are_refused_and_the_store_is_untouched(project, kind, data):
    from lifelong.data import store
    from lifelong.errors import RefusedBatch

    project, good = project
    landing_dir = project / "data" / "landing" / kit.DATASET
    if kind in BYTE_KINDS:
        payload, suffix = _bytes(good, kind, data)
    else:
        suffix = data.draw(st.sampled_from([".parquet", ".csv"]), label="suffix")
        payload = _encode(_malform(good, kind, data), suffix)
    for leftover in landing_dir.glob(f"{FUZZ_DAY}.*"):
        leftover.unlink()
    landed = landing_dir / f"{FUZZ_DAY}{suffix}"
    landed.write_bytes(payload)
    before, version = kit.store_state(project), store.current_version()
    quarantine = project / "data" / "quarantine" / kit.DATASET / str(FUZZ_DAY)
    kept_before = set(quarantine.glob("*")) if quarantine.exists() else set()

    with pytest.raises(RefusedBatch) as refused:
        store.ingest(kit.DATASET, day=FUZZ_DAY)

    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{kit.DATASET} {FUZZ_DAY}: batch refused"), message
    assert not landed.exists(), "the refused file was left in the landing folder"
    kept = Path(refused.value.quarantined)
    assert kept.read_bytes() == payload
    assert json.loads(Path(refused.value.report).read_text())["reason"] in message
    assert set(quarantine.glob("*")) - kept_before == {kept, Path(refused.value.report)}
    assert kit.store_state(project) == before
    assert store.current_version() == version
    assert not list((project / "data").rglob("*.tmp"))


def test_timestamps_off_the_frequency_grid_are_refused(project):
    """Every row 7 minutes late: same day, same steps, but not on the data set's 30-minute grid."""
    from lifelong.data import store
    from lifelong.errors import RefusedBatch

    project, good = project
    landing_dir = project / "data" / "landing" / kit.DATASET
    for leftover in landing_dir.glob(f"{FUZZ_DAY}.*"):
        leftover.unlink()
    late = good.assign(Time=good["Time"] + pd.Timedelta(minutes=7))
    (landing_dir / f"{FUZZ_DAY}.parquet").write_bytes(_encode(late, ".parquet"))
    before = kit.store_state(project)
    try:
        with pytest.raises(RefusedBatch):
            store.ingest(kit.DATASET, day=FUZZ_DAY)
    finally:
        if kit.store_state(project) != before:  # accepted: put the store back for the other tests
            from lifelong.config import load_settings
            from lifelong.data import dvcrepo

            (project / "data" / kit.DATASET / f"{FUZZ_DAY}.parquet").unlink()
            (project / "data.dvc").write_text(before["data.dvc"])
            dvcrepo.record(load_settings())
