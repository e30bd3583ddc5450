"""pandas to torch: windows of the real series, one sample per new row of a day; signals as (N, C, L)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import torch

from lifelong.config import ArchitectureSpec, ConfigError, load_params
from lifelong.data import windows
from lifelong.data.sources import load_source


@pytest.fixture(scope="module")
def params():
    from _data_kit import REPO

    return load_params(REPO / "params.yaml")


# the seed's rolling-window forecaster (params.yaml's demand_forecaster is now day-ahead)
ROLLING = ArchitectureSpec(type="cnn_forecaster", in_channels=3, length=96, out_dim=48, channels=(16,))


@pytest.fixture(scope="module")
def week(params):
    frame = load_source(params.dataset("vic_elec"))
    return frame[(frame["Date"] >= "2012-03-28") & (frame["Date"] <= "2012-04-03")].reset_index(drop=True)


def test_forecast_windows_of_a_day(params, week):
    spec, arch = params.dataset("vic_elec"), ROLLING
    stats = windows.fit_stats(week, spec)
    json.dumps(stats)  # JSON-able, saved with the model
    # a day's full 48 samples need 96 + 48 - 1 rows before its last one: three days of history
    x, y = windows.forecast_windows(week, spec, arch, stats, targets_in=dt.date(2012, 3, 30))
    assert x.shape[0] == 1
    x, y = windows.forecast_windows(week, spec, arch, stats, targets_in=dt.date(2012, 3, 31))
    assert x.shape == (48, 3, 96) and y.shape == (48, 48) and x.dtype == y.dtype == torch.float32
    x, y = windows.forecast_windows(week, spec, arch, stats, targets_in=dt.date(2012, 4, 1))
    assert x.shape[0] == 50  # daylight saving ends: one sample per row of the day
    # the last window of the day targets its last 48 rows, in the data's units after denormalising
    day = week[week["Date"] == "2012-04-01"]
    expected = torch.tensor(day["Demand"].to_numpy()[-48:], dtype=torch.float32)
    assert torch.allclose(windows.denormalise_target(y[-1], stats), expected, rtol=1e-4)
    # and its input is the 96 steps before those, Demand first
    start = len(week[week["Date"] < "2012-04-01"]) + len(day) - 48 - 96
    inputs = torch.tensor(week["Demand"].to_numpy()[start : start + 96], dtype=torch.float32)
    scale = stats["columns"]["Demand"]
    assert torch.allclose(x[-1, 0] * scale["std"] + scale["mean"], inputs, rtol=1e-4)


def test_windows_never_span_a_gap(params, week):
    spec, arch = params.dataset("vic_elec"), ROLLING
    stats = windows.fit_stats(week, spec)
    gap = week[week["Date"] != "2012-03-31"]
    all_x, _ = windows.forecast_windows(week, spec, arch, stats)
    gap_x, _ = windows.forecast_windows(gap, spec, arch, stats)
    # 3 days before the gap (144 rows) and 3 after (146): each yields rows - 96 - 48 + 1 windows
    assert gap_x.shape[0] == (144 - 143) + (146 - 143) < all_x.shape[0]
    x, _ = windows.forecast_windows(gap, spec, arch, stats, targets_in=dt.date(2012, 4, 1))
    assert x.shape[0] == 0  # the day after a gap has no full history yet


def test_classify_arrays(params):
    spec = params.dataset("vibration_sim")
    arch = params.model("vibration_classifier").architecture
    frame = load_source(spec)
    frame = frame[frame["task"] == "M3"]
    x, y = windows.classify_arrays(frame, spec, arch, split="test")
    assert x.shape == (120, 1, 256) and y.dtype == torch.long and set(y.tolist()) == {0, 1, 2, 3}
    wrong = ArchitectureSpec(type="cnn_classifier", in_channels=1, length=500, out_dim=4)
    with pytest.raises(ConfigError, match="length=500 but vibration_sim signals have 256 samples"):
        windows.classify_arrays(frame, spec, wrong)
