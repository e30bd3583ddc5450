"""Landing files carry the real rows of their day (or task) and are never silently overwritten."""

from __future__ import annotations

import pandas as pd
import pytest
from _data_kit import day

from lifelong.data.landing import LandingConflict, land_tasks, simulate
from lifelong.errors import LifelongError


def test_simulate_cuts_real_days(shared_workspace):
    paths = simulate("vic_elec", day("2012-04-01"), 2)
    assert [p.name for p in paths] == ["2012-04-01.parquet", "2012-04-02.parquet"]
    assert paths[0].parent == shared_workspace / "data" / "landing" / "vic_elec"
    first = pd.read_parquet(paths[0])
    assert len(first) == 50  # daylight saving ends: 25 local hours
    assert (first["Date"] == "2012-04-01").all()
    assert str(first["Time"].iloc[0]) == "2012-03-31 13:00:00+00:00"  # real timestamps, in UTC


def test_simulate_never_overwrites_a_differing_file(shared_workspace):
    path = simulate("vic_elec", day("2012-01-10"), 1)[0]
    original = path.read_bytes()
    assert simulate("vic_elec", day("2012-01-10"), 1) == [path]  # identical: left alone
    edited = pd.read_parquet(path)
    edited.loc[0, "Demand"] += 1.0
    edited.to_parquet(path, index=False)
    hand_made = path.read_bytes()
    with pytest.raises(LandingConflict, match="exists with other content; pass --force"):
        simulate("vic_elec", day("2012-01-09"), 2)
    assert path.read_bytes() == hand_made
    assert not (path.parent / "2012-01-09.parquet").exists()  # all or nothing
    simulate("vic_elec", day("2012-01-10"), 1, force=True)
    assert path.read_bytes() == original


def test_simulate_outside_the_data_is_refused(shared_workspace):
    with pytest.raises(LifelongError, match=r"no rows for 2015-01-01 \(it covers 2012-01-01 to 2014-12-31\)"):
        simulate("vic_elec", day("2014-12-31"), 2)


def test_land_tasks_one_file_per_task(shared_workspace):
    paths = land_tasks("vibration_sim", ["M1", "M2"])
    assert [p.name for p in paths] == ["M1.parquet", "M2.parquet"]
    frame = pd.read_parquet(paths[1])
    assert set(frame["task"]) == {"M2"} and len(frame) == 600
    with pytest.raises(LifelongError, match="has no task 'M9'"):
        land_tasks("vibration_sim", ["M9"])
    with pytest.raises(LifelongError, match="is a classify data set: land it with --tasks"):
        simulate("vibration_sim", day("2012-01-01"), 1)
