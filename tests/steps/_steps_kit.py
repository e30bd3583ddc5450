"""Constants of the step tests (imported as ``_steps_kit``; fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt

MODEL, DATASET = "demand_forecaster", "vic_elec"
FIRST_DAY = dt.date(2012, 3, 1)
WARMUP_DAYS = 3  # the windows of a day need 3 days of history
