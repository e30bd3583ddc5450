"""The drift step: the report every day, the plot on drift days."""

from __future__ import annotations

import numpy as np
import pandas as pd

ROWS_PER_DAY, REFERENCE_DAYS = 48, 14


def test_the_daily_step_writes_the_report_every_day_and_the_plot_on_drift_days(workspace, monkeypatch) -> None:
    """``check_drift`` on vic_elec-shaped days (the data version stubbed): a calm day, a shifted one, calm again."""
    from datetime import date, timedelta
    from pathlib import Path

    from lifelong import registry
    from lifelong.steps import daily, inputs

    rng = np.random.default_rng(5)

    def one_day(shift: float = 0.0) -> pd.DataFrame:
        demand, temperature = rng.normal(shift, 1.0, ROWS_PER_DAY), rng.normal(shift, 1.0, ROWS_PER_DAY)
        return pd.DataFrame({"Demand": demand, "Temperature": temperature, "Holiday": False})

    first = date(2012, 2, 1)
    days = {first + timedelta(days=i): one_day() for i in range(REFERENCE_DAYS)}
    calm, shifted = first + timedelta(days=REFERENCE_DAYS), first + timedelta(days=REFERENCE_DAYS + 1)
    days[calm], days[shifted] = one_day(), one_day(shift=5.0)

    class Version:
        def read_days(self, spec, start: date, end: date) -> pd.DataFrame:
            parts = [f.assign(Date=str(d)) for d, f in days.items() if start <= d <= end]
            return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    monkeypatch.setattr(inputs, "snapshot", lambda ctx, version: Version())
    monkeypatch.setattr(registry, "champion", lambda model: None)
    quiet = daily.check_drift("demand_forecaster", calm, {"data_version": "v"})
    loud = daily.check_drift("demand_forecaster", shifted, {"data_version": "v"})
    assert quiet["decision"] == "none" and quiet["plot_path"] is None and Path(quiet["report_path"]).is_file()
    assert loud["decision"] != "none" and Path(loud["plot_path"]).stat().st_size > 10_000
    days[shifted] = days[calm]  # the day corrected and checked again: calm now, its old plot goes
    again = daily.check_drift("demand_forecaster", shifted, {"data_version": "v"})
    assert again["decision"] == "none" and not Path(loud["plot_path"]).exists()
