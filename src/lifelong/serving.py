"""The champion's forecast in physical units: raw frame in, ``timestamp`` + ``forecast`` out.

:func:`forecast_frame` is the one place a day-ahead model turns rows in the data's units into
a forecast in the target's units: the ``publish`` step calls it, and so does the pyfunc MLflow
serves (:class:`DayAheadPyfunc`), so a served forecast and a published one are the same numbers.

The input frame holds the history rows (timestamp, target and every feature, up to the end of
the day before) and the rows of the day to forecast (timestamp and the ``known_future`` columns,
the target empty / NaN). The day to forecast is the local day of the last row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from lifelong.config import ArchitectureSpec, DatasetSpec
from lifelong.data import schema, windows


def forecast_day(frame: pd.DataFrame, ds: DatasetSpec) -> dt.date:
    """The local day of the frame's last row: the day whose rows carry no target."""
    stamps = pd.to_datetime(frame[ds.timestamp], utc=True)
    return dt.date.fromisoformat(schema.local_dates(ds, stamps.iloc[[-1]]).iloc[0])


def forecast_frame(
    model: Any, stats: dict, ds: DatasetSpec, arch: ArchitectureSpec, frame: pd.DataFrame, day: dt.date | None = None
) -> pd.DataFrame:
    """The forecast of local ``day`` (default: :func:`forecast_day`) as ``timestamp`` (UTC) and ``forecast``.

    Normalisation both ways is done here with ``stats``; the model sees what it was trained on.
    Raises :class:`lifelong.data.windows.NoSample` naming the rows that are missing.
    """
    import torch

    frame = frame.copy()
    frame[ds.timestamp] = pd.to_datetime(frame[ds.timestamp], utc=True)
    for name in {*ds.features, str(ds.target)}:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    day = day or forecast_day(frame, ds)
    x, steps = windows.day_ahead_input(frame, ds, arch, stats, day)
    model = model.to("cpu").eval()
    with torch.no_grad():
        out = model(x)
    values = windows.denormalise_target(out[0, :steps].double(), stats).numpy()
    start = schema.day_start(ds, day)
    stamps = pd.DatetimeIndex(start + schema.step(ds) * np.arange(steps))
    return pd.DataFrame({"timestamp": stamps, "forecast": values.astype(np.float64)})
