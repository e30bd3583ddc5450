"""The pyfunc MLflow serves: raw frame in, the forecast in physical units out.

:func:`forecast_frame` is the one place a day-ahead model turns rows in the data's units into
a forecast in the target's units: the ``publish`` step calls it, and so does the pyfunc MLflow
serves (:class:`LifelongModel`), so a served forecast and a published one are the same numbers.

The input frame (:func:`input_frame`) holds the history rows (timestamp, target and every
feature, up to the end of the day before) and the rows of the day to forecast (timestamp and
the ``known_future`` columns; the target and the other features empty / NaN). The day to
forecast is the local day of the last row. Timestamps are ISO-8601 strings (UTC offsets kept).

A classifier's input is one recording a row, each feature a list of floats (:func:`classify_example`);
it answers ``label`` (one of the data set's ``labels``) and ``p_<label>`` for every label.

The logged model (``model/`` of a day-ahead forecaster's or a classifier's run) is *models from
code*: MLflow stores the file :mod:`lifelong.serving_entry` (which names :class:`LifelongModel`), the weights
as safetensors (``weights.safetensors``) and the specs and normalisation statistics as JSON
(``spec.json``); ``load_context`` rebuilds the network from them. Nothing is pickled. The serving
process imports ``lifelong`` from its environment: ``mlflow models serve --env-manager local``
in the project's virtual environment.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from lifelong.config import ArchitectureSpec, DatasetSpec, from_mapping, to_jsonable
from lifelong.data import schema, windows

WEIGHTS, SPEC = "weights.safetensors", "spec.json"
ENTRY = Path(__file__).with_name("serving_entry.py")


def input_frame(ds: DatasetSpec, history: pd.DataFrame, future: pd.DataFrame) -> pd.DataFrame:
    """The serving model's input: ``history`` rows (timestamp, target, features) then ``future``'s rows
    with only their ``known_future`` columns (the target and the other features NaN), timestamps as
    ISO strings, every value column float."""
    columns = list(dict.fromkeys([ds.timestamp, str(ds.target), *ds.features]))
    ahead = pd.DataFrame({ds.timestamp: future[ds.timestamp].to_numpy()})
    for c in columns[1:]:
        ahead[c] = future[c].to_numpy() if c in ds.known_future else np.nan
    frame = pd.concat([history[columns].reset_index(drop=True), ahead], ignore_index=True)
    frame[ds.timestamp] = pd.to_datetime(frame[ds.timestamp], utc=True).map(lambda t: t.isoformat())
    for name in columns[1:]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame


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


def save_model_files(model: Any, arch: ArchitectureSpec, ds: DatasetSpec, stats: dict, folder: Path) -> dict[str, str]:
    """The pyfunc's artifacts in ``folder``: weights (safetensors) and specs + stats (JSON)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS))
    spec = {"architecture": to_jsonable(arch), "dataset": to_jsonable(ds), "stats": stats}
    (folder / SPEC).write_text(json.dumps(spec, indent=1))
    return {"weights": str(folder / WEIGHTS), "spec": str(folder / SPEC)}


def load_model_files(weights: str, spec: str) -> tuple[Any, ArchitectureSpec, DatasetSpec, dict]:
    """The network, its specs and stats, rebuilt from :func:`save_model_files`'s files (never unpickled)."""
    from safetensors.torch import load_file

    from lifelong.artifacts import check_safetensors
    from lifelong.learn.models import build_model

    body = json.loads(Path(spec).read_text())
    arch = from_mapping(ArchitectureSpec, body["architecture"], "spec.architecture")
    ds = from_mapping(DatasetSpec, body["dataset"], "spec.dataset")
    check_safetensors(Path(weights))
    model = build_model(arch)
    model.load_state_dict(load_file(weights))
    return model.eval(), arch, ds, body["stats"]


def served(frame: pd.DataFrame) -> pd.DataFrame:
    """A forecast as the server returns it: ISO timestamps, float forecasts."""
    return frame.assign(timestamp=frame["timestamp"].map(lambda t: t.isoformat()))


def classify_example(ds: DatasetSpec, frame: pd.DataFrame, rows: int = 2) -> pd.DataFrame:
    """A classifier's input: the first ``rows`` recordings, each feature a list of floats (one signal a cell)."""
    head = frame.head(rows).reset_index(drop=True)
    return pd.DataFrame({name: [np.asarray(v, dtype=np.float64).tolist() for v in head[name]] for name in ds.features})


def classify_frame(model: Any, ds: DatasetSpec, arch: ArchitectureSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Each recording's class label (one of the data set's ``labels``) and the probability of every label."""
    import torch

    x = windows.classify_input(frame, ds, arch)
    model = model.to("cpu").eval()
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1).double().numpy()
    out = pd.DataFrame({"label": [int(ds.labels[i]) for i in probs.argmax(axis=1)]})
    for i, label in enumerate(ds.labels):
        out[f"p_{label}"] = probs[:, i]
    return out


def predict(
    model: Any, arch: ArchitectureSpec, ds: DatasetSpec, stats: dict | None, frame: pd.DataFrame
) -> pd.DataFrame:
    """What the served model answers for ``frame``: a forecast (day-ahead) or labels and probabilities."""
    if arch.type in windows.DAYAHEAD_TYPES:
        return served(forecast_frame(model, stats or {}, ds, arch, frame))
    return classify_frame(model, ds, arch, frame)


class LifelongModel(mlflow.pyfunc.PythonModel):
    """A lifelong model as an MLflow pyfunc: a day-ahead forecaster (:func:`input_frame` in, ``timestamp`` +
    ``forecast`` out) or a classifier (one signal a cell in, ``label`` + ``p_<label>`` out)."""

    def load_context(self, context: Any) -> None:
        self.model, self.arch, self.ds, self.stats = load_model_files(
            context.artifacts["weights"], context.artifacts["spec"]
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return predict(self.model, self.arch, self.ds, self.stats, pd.DataFrame(model_input))
