"""The real data sets load offline with the shapes the issue promises; the generator is honest."""

from __future__ import annotations

import numpy as np
import pytest

from lifelong.config import ConfigError, load_params
from lifelong.data import schema, vibration
from lifelong.data.sources import load_source


@pytest.fixture(scope="module")
def params():
    from _data_kit import REPO

    return load_params(REPO / "params.yaml")


def test_vic_elec_is_the_real_series(params):
    spec = params.dataset("vic_elec")
    frame = load_source(spec)
    assert list(frame.columns) == ["Time", "Date", "Demand", "Temperature", "Holiday"]
    assert str(frame["Time"].dtype) == "datetime64[us, UTC]"
    per_day = frame.groupby("Date").size()
    assert len(per_day) == 1096 and per_day.index[0] == "2012-01-01" and per_day.index[-1] == "2014-12-31"
    assert per_day.value_counts().to_dict() == {48: 1090, 46: 3, 50: 3}
    # the date column is the Melbourne calendar day of the UTC timestamp, daylight saving included
    assert (schema.local_dates(spec, frame["Time"]) == frame["Date"]).all()
    assert frame["Time"].is_monotonic_increasing and frame["Time"].is_unique


def test_ford_engine_two_real_tasks(params):
    frame = load_source(params.dataset("ford_engine"))
    sizes = frame.groupby(["task", "split"]).size().to_dict()
    assert sizes == {
        ("FordA", "test"): 1320,
        ("FordA", "train"): 3601,
        ("FordB", "test"): 810,
        ("FordB", "train"): 3636,
    }
    assert set(frame["label"]) == {0, 1}
    assert {len(s) for s in frame["signal"]} == {500}
    assert frame.groupby("task")["sample"].apply(lambda s: s.is_unique).all()


def test_vibration_is_deterministic_and_per_machine(params):
    spec = params.dataset("vibration_sim")
    a, b = load_source(spec), load_source(spec)
    assert all(np.array_equal(x, y) for x, y in zip(a["signal"], b["signal"], strict=True))
    assert a.drop(columns="signal").equals(b.drop(columns="signal"))
    assert sorted(a["task"].unique()) == ["M1", "M2", "M3", "M4", "M5"]
    assert a.groupby("task").size().unique().tolist() == [600]
    speeds = {vibration.machine(i, seed=7).shaft_hz for i in range(5)}
    assert len(speeds) == 5  # each machine type turns at its own speed


def _amplitude(signal: np.ndarray, freq: float, rate: float) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size))) / signal.size
    bins = np.fft.rfftfreq(signal.size, 1 / rate)
    return float(spectrum[np.abs(bins - freq) <= 2 * rate / signal.size].max())


def test_vibration_faults_have_their_signatures():
    """Imbalance raises 1x, misalignment 2x, a bearing defect rings the resonances."""
    m = vibration.machine(2, seed=7)
    rate, n = 2560.0, 1024
    rng = np.random.default_rng(0)

    def mean_amp(label: int, freq: float) -> float:
        return np.mean(
            [
                _amplitude(vibration.recording(m, label=label, rng=rng, length=n, sample_rate=rate), freq, rate)
                for _ in range(20)
            ]
        )

    assert mean_amp(1, m.shaft_hz) > 2.5 * mean_amp(0, m.shaft_hz)
    assert mean_amp(2, 2 * m.shaft_hz) > 4 * mean_amp(0, 2 * m.shaft_hz)
    resonance = m.resonances_hz[0]
    assert mean_amp(3, resonance) > 2 * mean_amp(0, resonance)


def test_unknown_loader_is_named(params):
    from dataclasses import replace

    with pytest.raises(ConfigError, match="loader: unknown 'package:nope'"):
        load_source(replace(params.dataset("vic_elec"), loader="package:nope"))
