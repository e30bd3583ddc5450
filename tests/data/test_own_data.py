"""Bring your own data: a params.yaml block for a CSV and everything downstream works."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from lifelong.config import ArchitectureSpec, load_params
from lifelong.data import store, windows
from lifelong.data.landing import simulate

BLOCK = """
  shop_sales:
    # a user's own hourly sales, local (Paris) wall-clock time without an offset
    kind: forecast
    loader: raw/sales.csv
    timestamp: ts
    timezone: Europe/Paris
    features: [sales, temp]
    target: sales
    frequency: 1h
    rows_per_day: [23, 24, 25]
    ranges: {sales: [0.0, 1000.0], temp: [-30.0, 45.0]}
    max_file_mb: 5.0
"""


def test_a_csv_block_flows_through(workspace):
    text = (workspace / "params.yaml").read_text()
    (workspace / "params.yaml").write_text(text.replace("datasets:\n", "datasets:" + BLOCK, 1))
    instants = pd.date_range("2024-03-30", periods=71, freq="1h", tz="Europe/Paris")  # 24 + 23 + 24 hours
    rng = np.random.default_rng(0)
    raw = pd.DataFrame(
        {
            "store_id": 7,  # a column the block does not name: left out
            "ts": instants.strftime("%Y-%m-%d %H:%M:%S"),
            "sales": rng.integers(10, 500, size=71),  # integers in the file, floats in the store
            "temp": rng.normal(12, 3, size=71).round(1),
        }
    )
    (workspace / "raw").mkdir()
    raw.to_csv(workspace / "raw" / "sales.csv", index=False)

    simulate("shop_sales", dt.date(2024, 3, 30), 3)
    rows = [store.ingest("shop_sales", day=dt.date(2024, 3, d)).rows for d in (30, 31)]
    rows.append(store.ingest("shop_sales", day=dt.date(2024, 4, 1)).rows)
    assert rows == [24, 23, 24]  # the spring-forward day has 23 hours

    stored = store.read_days("shop_sales", dt.date(2024, 3, 30), dt.date(2024, 4, 1))
    assert list(stored.columns) == ["ts", "sales", "temp"] and str(stored["ts"].dtype) == "datetime64[us, UTC]"
    assert stored["ts"].iloc[0] == pd.Timestamp("2024-03-29 23:00", tz="UTC")  # local midnight, in UTC

    spec = load_params().dataset("shop_sales")
    arch = ArchitectureSpec(type="cnn_forecaster", in_channels=2, length=24, out_dim=6)
    x, y = windows.forecast_windows(stored, spec, arch, windows.fit_stats(stored, spec), targets_in=dt.date(2024, 4, 1))
    assert x.shape == (24, 2, 24) and y.shape == (24, 6)
