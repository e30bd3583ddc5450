"""Features of forecast target steps and day-ahead samples, exact on small hand-made frames."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

from lifelong.config import ArchitectureSpec, ConfigError, DatasetSpec, parse_params
from lifelong.data import features, windows

ZONE = "Australia/Melbourne"
SPEC = DatasetSpec(
    name="mel",
    kind="forecast",
    loader="x.csv",
    timestamp="t",
    features=("y", "temp"),
    target="y",
    frequency="30min",
    timezone=ZONE,
    lags=("1d", "7d"),
    known_future=("temp",),
)


def local_days(first: str, last: str, zone: str | None = ZONE, freq: str = "30min") -> pd.DatetimeIndex:
    """Every grid instant from local midnight of ``first`` to the end of ``last``, as UTC."""
    start = pd.Timestamp(first).tz_localize(zone or "UTC")
    end = (pd.Timestamp(last) + pd.Timedelta(days=1)).tz_localize(zone or "UTC")
    return pd.date_range(start, end, freq=freq, inclusive="left").tz_convert("UTC")


def code(stamps: pd.DatetimeIndex) -> np.ndarray:
    """Each row's value names its local day and clock time: DDHHMM, + 0.5 for the second of a repeated hour."""
    local = stamps.tz_convert(ZONE)
    value = (local.day * 10000 + local.hour * 100 + local.minute).to_numpy(dtype=np.float64)
    repeated = pd.Series(value).duplicated().to_numpy()
    return value + 0.5 * repeated


def frame_of(stamps: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"t": stamps, "y": code(stamps), "temp": np.arange(len(stamps), dtype=np.float64)})


def lag_of(frame: pd.DataFrame, when: str, name: str = "lag_1d", spec: DatasetSpec = SPEC) -> list[float]:
    """The lag of the rows at local clock time ``when`` ("2012-04-02 02:00"), one per occurrence."""
    out = features.target_features(frame, spec)
    local = frame["t"].dt.tz_convert(ZONE).dt.strftime("%Y-%m-%d %H:%M")
    return out.loc[(local == when).to_numpy(), name].tolist()


def test_calendar_lags_across_daylight_saving_end():
    # 2012-04-01: 03:00 AEDT becomes 02:00 AEST, the day has 50 rows (02:00-02:30 twice)
    frame = frame_of(local_days("2012-03-31", "2012-04-02"))
    assert frame["t"].dt.tz_convert(ZONE).dt.strftime("%d").value_counts()[["31", "01", "02"]].tolist() == [48, 50, 48]
    assert lag_of(frame, "2012-04-01 02:00") == [310200.0, 310200.0]  # both occurrences: the 02:00 before
    assert lag_of(frame, "2012-04-02 02:00") == [10200.0]  # the first of the two 02:00s
    assert lag_of(frame, "2012-04-02 18:00") == [11800.0]  # same clock time, not 48 rows (17:00)
    assert lag_of(frame, "2012-04-01 18:00") == [311800.0]
    assert np.isnan(lag_of(frame, "2012-03-31 18:00")).all()  # before the first stored day


def test_calendar_lags_across_daylight_saving_start():
    # 2012-10-07: 02:00 AEST becomes 03:00 AEDT, the day has 46 rows (no 02:00, 02:30)
    frame = frame_of(local_days("2012-10-06", "2012-10-08"))
    assert len(frame) == 48 + 46 + 48
    assert lag_of(frame, "2012-10-07 03:00") == [60300.0]
    assert lag_of(frame, "2012-10-08 02:00") == [70300.0]  # 02:00 did not exist on the 7th: its 03:00
    assert lag_of(frame, "2012-10-08 02:30") == [70300.0]
    assert lag_of(frame, "2012-10-08 01:30") == [70130.0]


def test_a_missing_day_gives_no_lag_and_no_sample():
    stamps = local_days("2012-05-01", "2012-05-16")
    frame = frame_of(stamps)
    gap = frame[frame["t"].dt.tz_convert(ZONE).dt.day != 5].reset_index(drop=True)
    assert all(np.isnan(lag_of(gap, "2012-05-06 10:00")))  # 1d: the 5th is missing
    assert all(np.isnan(lag_of(gap, "2012-05-12 10:00", "lag_7d")))  # 7d: the 5th again
    assert lag_of(gap, "2012-05-13 10:00", "lag_7d") == [61000.0]
    arch = ArchitectureSpec(
        type="cnn_dayahead", in_channels=len(windows.dayahead_channels(SPEC)), length=58, out_dim=50
    )
    stats = windows.fit_stats(gap, SPEC)
    # (day, rolling samples, day-ahead sample, naive forecasts): a sample reads the 7d lags of its history
    # (8 rows) and of its 50 targets, so the missing 5th rules out the 6th (1d), the 12th and 13th (7d)
    # and the rolling samples of the 14th whose inputs reach the 12th (history up to 13th 03:00: 9 of them)
    for day, rolling, sample, naive in ((6, 0, False, False), (12, 0, False, False), (13, 0, False, True),
                                        (14, 39, True, True)):  # fmt: skip
        x, _ = windows.forecast_samples(gap, SPEC, arch, stats, targets_in=dt.date(2012, 5, day))
        assert len(x) == rolling and torch.isfinite(x).all()
        if sample:
            assert windows.day_ahead_sample(gap, SPEC, arch, stats, dt.date(2012, 5, day))[2] == 48
        else:
            with pytest.raises(windows.NoSample, match="needs a lag or a covariate that is not stored|not stored"):
                windows.day_ahead_sample(gap, SPEC, arch, stats, dt.date(2012, 5, day))
        if naive:
            assert len(windows.day_ahead_naive(gap, SPEC, dt.date(2012, 5, day))["weekly_naive"]) == 48
        else:
            with pytest.raises(windows.NoSample):
                windows.day_ahead_naive(gap, SPEC, dt.date(2012, 5, day))


def test_day_ahead_sample_of_the_50_row_day():
    frame = frame_of(local_days("2012-03-20", "2012-04-02"))
    identity = {"columns": {c: {"mean": 0.0, "std": 1.0} for c in ("y", "temp")}, "target": "y"}
    channels = windows.dayahead_channels(SPEC)
    assert channels == ["y", "lag_7d", "lag_1d", "tod_sin", "tod_cos", "dow_sin", "dow_cos", "temp", "is_target"]
    arch = ArchitectureSpec(type="cnn_dayahead", in_channels=len(channels), length=60, out_dim=50)
    x, y, steps = windows.day_ahead_sample(frame, SPEC, arch, identity, dt.date(2012, 4, 1))
    assert steps == 50 and x.shape == (1, 9, 60) and y.shape == (1, 50)
    day = frame[frame["t"].dt.tz_convert(ZONE).dt.day == 1]
    assert y[0].tolist() == day["y"].tolist()  # the day's 50 rows, issued at its midnight
    assert x[0, 0, :10].tolist() == code(local_days("2012-03-31", "2012-03-31"))[-10:].tolist()
    assert x[0, 0, 10:].abs().sum() == 0  # the target is unknown at the forecast steps
    naive = windows.day_ahead_naive(frame, SPEC, dt.date(2012, 4, 1))
    assert torch.equal(x[0, 1, 10:].double(), naive["weekly_naive"])
    assert torch.equal(x[0, 2, 10:].double(), naive["daily_naive"])
    assert naive["persistence"].tolist() == [312330.0] * 50
    assert x[0, 7, 10:].tolist() == day["temp"].tolist()  # known future: the target day's temperature
    assert x[0, 8].tolist() == [0.0] * 10 + [1.0] * 50
    # the same instants as an origin of the rolling training samples (whose last target is 04-01 23:30)
    rolling, _ = windows.forecast_samples(frame, SPEC, arch, identity, targets_in=dt.date(2012, 4, 1))
    assert torch.equal(rolling[-1], x[0])


def test_a_48_row_day_is_padded_and_a_lag_past_the_origin_reads_a_period_earlier():
    frame = frame_of(local_days("2012-04-28", "2012-05-10"))
    identity = {"columns": {c: {"mean": 0.0, "std": 1.0} for c in ("y", "temp")}, "target": "y"}
    arch = ArchitectureSpec(type="cnn_dayahead", in_channels=9, length=60, out_dim=50)
    x, y, steps = windows.day_ahead_sample(frame, SPEC, arch, identity, dt.date(2012, 5, 9))
    assert steps == 48 and y[0, 48:].tolist() == [0.0, 0.0]
    # steps 49 and 50 are 00:00 and 00:30 of the 10th: their 1d lag (the 9th) is after the origin: the 8th's
    assert x[0, 2, 10 + 48 :].tolist() == [80000.0, 80030.0]
    assert x[0, 7, 10 + 48 :].tolist() == [x[0, 7, 10 + 47].item()] * 2  # covariates: the day's last value
    rolling, _ = windows.forecast_samples(frame, SPEC, arch, identity, targets_in=dt.date(2012, 5, 9))
    assert rolling.shape[0] == 48 and torch.isfinite(rolling).all()


def test_a_target_only_csv_gets_lags_and_calendar():
    raw = {
        "datasets": {
            "mine": {
                "kind": "forecast",
                "loader": "data/raw/load.csv",
                "timestamp": "ts",
                "features": ["load"],
                "target": "load",
                "frequency": "1h",
            }
        },  # fmt: skip
        "models": {},
    }
    spec = parse_params(raw).dataset("mine")
    assert spec.lags == ("1d", "7d") and spec.known_future == ()
    stamps = pd.date_range("2024-01-01", periods=24 * 10, freq="1h", tz="UTC")
    frame = pd.DataFrame({"ts": stamps, "load": np.arange(len(stamps), dtype=np.float64)})
    out = features.target_features(frame, spec)
    assert list(out.columns) == ["lag_1d", "lag_7d", *features.CALENDAR]
    assert out["lag_1d"].iloc[24] == 0.0 and out["lag_7d"].iloc[24 * 7 + 5] == 5.0
    assert out["tod_sin"].iloc[6] == pytest.approx(1.0) and out["dow_cos"].iloc[0] == pytest.approx(1.0)  # Mon 06:00
    assert windows.horizon(spec) == 24
    arch = ArchitectureSpec(type="cnn_dayahead_residual", in_channels=8, length=48, out_dim=24)
    stats = windows.fit_stats(frame, spec)
    x, y, steps = windows.day_ahead_sample(frame, spec, arch, stats, dt.date(2024, 1, 9))
    assert (x.shape, y.shape, steps) == ((1, 8, 48), (1, 24), 24)
    x, y = windows.forecast_samples(frame, spec, arch, stats)
    # origins: 24 rows of history that have their 7d lags (from row 168) and 24 rows after them
    assert x.shape == (24 * 10 - 24 * 7 - 24 - 24 + 1, 8, 48)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lags": ["1d", "45min"]}, r"datasets\.vic\.lags\[1\]: '45min' is not a whole number of 30min steps"),
        ({"lags": ["a week"]}, r"datasets\.vic\.lags\[0\]: 'a week' is not a duration"),
        ({"lags": ["1d", "24h"]}, r"datasets\.vic\.lags\[1\]: '24h' is declared twice"),
        ({"known_future": ["Wind"]}, r"datasets\.vic\.known_future\[0\]: 'Wind' is not one of the features"),
        ({"known_future": ["Demand"]}, r"datasets\.vic\.known_future\[0\]: the target 'Demand' is not known"),
    ],
)
def test_forecast_inputs_are_validated_on_load(change, message):
    block = {"kind": "forecast", "loader": "x.csv", "features": ["Demand", "Temperature"], "target": "Demand"}
    with pytest.raises(ConfigError, match=message):
        parse_params({"datasets": {"vic": {**block, **change}}, "models": {}})


def test_the_architecture_must_fit_the_samples():
    frame = frame_of(local_days("2012-05-01", "2012-05-10"))
    stats = windows.fit_stats(frame, SPEC)
    wrong = ArchitectureSpec(type="cnn_dayahead", in_channels=3, length=60, out_dim=50)
    with pytest.raises(ConfigError, match=r"architecture\.in_channels: 3, but day-ahead samples of mel have 9"):
        windows.forecast_samples(frame, SPEC, wrong, stats)
    short = ArchitectureSpec(type="cnn_dayahead", in_channels=9, length=60, out_dim=48)
    with pytest.raises(ConfigError, match=r"architecture\.out_dim: 48 is shorter than the longest day \(50 rows\)"):
        windows.day_ahead_sample(frame, SPEC, short, stats, dt.date(2012, 5, 9))
