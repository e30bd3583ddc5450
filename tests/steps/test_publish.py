"""The published forecast: the champion's day-ahead forecast of the next day, in the target's units.

One module-scoped project: four real vic_elec days stored, the first model promoted on the
last of them; then the step publishes the day after, once, and refuses without the landed
forecast covariates.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _project import project_with, quick_forecaster
from _steps_kit import DATASET, FIRST_DAY, MODEL, WARMUP_DAYS

DAY = FIRST_DAY + dt.timedelta(days=WARMUP_DAYS)  # the logical date: the first model is made on it
NEXT = DAY + dt.timedelta(days=1)  # the day the step forecasts
ROLLING = "rolling_forecaster"


def _edit(raw: dict) -> None:
    spec = quick_forecaster(raw, warmup=WARMUP_DAYS, model=MODEL)
    rolling = copy.deepcopy(spec)
    rolling["architecture"] = {**spec["architecture"], "type": "cnn_forecaster", "in_channels": 3, "length": 96}
    rolling["architecture"]["out_dim"] = 48
    raw["models"][ROLLING] = rolling


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The project with DAY stored and no champion yet."""
    from lifelong.data import landing, store
    from lifelong.steps import daily

    with project_with(tmp_path_factory.mktemp("publish"), _edit) as project:
        store.ensure_repo()
        landing.simulate(DATASET, FIRST_DAY, WARMUP_DAYS + 2)
        ingests = [daily.validate_ingest(MODEL, FIRST_DAY + dt.timedelta(days=i)) for i in range(WARMUP_DAYS + 1)]
        yield {"project": project, "ingest": ingests[-1]}


def test_simulate_lands_the_forecast_covariates_of_the_next_day(world) -> None:
    from lifelong.data import landing

    frame = pd.read_parquet(landing.forecast_inputs_path(DATASET, NEXT))
    assert list(frame.columns) == ["Time", "Temperature", "Holiday"]
    assert len(frame) == 48


def test_without_a_champion_or_for_a_rolling_window_model_nothing_is_published(world) -> None:
    from lifelong.steps.publish import publish

    result = publish(MODEL, DAY, world["ingest"])
    assert (result["status"], result["reason"], result["path"]) == ("skipped", "no champion yet", None)
    rolling = publish(ROLLING, DAY, world["ingest"])
    assert rolling["status"] == "skipped" and "cnn_forecaster is not a day-ahead model" in rolling["reason"]


def test_the_champion_publishes_the_next_day_once(world, capsys) -> None:
    from lifelong import cli, registry
    from lifelong.steps import daily, decide
    from lifelong.steps.publish import publish

    candidate = daily.update(MODEL, DAY, world["ingest"])
    decide.promote(MODEL, decide.gate(MODEL, daily.evaluate(MODEL, DAY, candidate)))
    assert registry.champion(MODEL) == candidate["version"]

    first = publish(MODEL, DAY, world["ingest"])
    assert first["status"] == "published" and first["day"] == str(NEXT) and first["rows"] == 48
    assert first["path"].endswith(f"forecasts/{MODEL}/{NEXT}.parquet")
    table = pd.read_parquet(first["path"])
    columns = ["timestamp", "date", "forecast", "model", "model_version", "data_version", "issued_at"]
    assert list(table.columns) == columns
    assert (table["date"] == str(NEXT)).all() and (table["model_version"] == candidate["version"]).all()
    assert (table["data_version"] == world["ingest"]["data_version"]).all()
    assert table["forecast"].between(1000, 15000).all()  # megawatts, not z-scores
    assert str(table["timestamp"].iloc[0]) == "2012-03-04 13:00:00+00:00"  # local midnight in UTC
    assert pd.Series(table["timestamp"]).diff().iloc[1:].eq(pd.Timedelta("30min")).all()
    run_files = [f.path for f in registry._client().list_artifacts(candidate["run_id"], "forecasts")]
    assert sorted(run_files) == [f"forecasts/{NEXT}.parquet", f"forecasts/{NEXT}.png"]

    again = publish(MODEL, DAY, world["ingest"])  # a re-run: the same rows, once
    assert again["status"] == "unchanged" and again["issued_at"] == first["issued_at"]
    pd.testing.assert_frame_equal(pd.read_parquet(first["path"]), table)

    assert cli.main(["forecast", MODEL]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["date"] == str(NEXT) and len(printed["rows"]) == 48 and printed["path"] == first["path"]
    assert cli.main(["forecast", MODEL, "--date", str(NEXT)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == printed["rows"]
    assert cli.main(["forecast", MODEL, "--date", str(DAY)]) != 0  # nothing issued for that day
    assert f"no forecast published for {DAY}" in capsys.readouterr().err
    world["published"] = table


def test_mlflow_serves_the_champion_with_the_published_numbers(world) -> None:
    """``mlflow models serve`` on models:/<model>@champion: the raw frame in, the published forecast out."""
    import mlflow

    from lifelong.config import load_settings
    from lifelong.steps.publish import request

    table = world["published"]
    frame = request(MODEL, world["ingest"]["data_version"], NEXT)
    uri = f"models:/{MODEL}@champion"
    mlflow.set_tracking_uri(load_settings().mlflow_tracking_uri)
    info = mlflow.models.get_model_info(uri)
    assert "forecast" in str(info.signature.outputs) and "Temperature" in str(info.signature.inputs)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    example = json.loads((local / "serving_input_example.json").read_text())
    with serve(uri, load_settings().mlflow_tracking_uri) as url:
        answer = post(url, {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
        from_example = post(url, example)
    served = pd.DataFrame(answer["predictions"])
    assert list(served["timestamp"]) == [t.isoformat() for t in table["timestamp"]]
    np.testing.assert_allclose(served["forecast"], table["forecast"], rtol=1e-5)
    assert len(from_example["predictions"]) in (46, 48, 50)  # the example forecasts the day the version was made on


def test_the_published_numbers_are_the_models_forecast_of_the_recorded_day(world) -> None:
    """Once the day lands, the day-ahead sample that scores it gives the published forecast."""
    from lifelong import registry
    from lifelong.data import windows
    from lifelong.learn import metrics
    from lifelong.steps import daily, inputs
    from lifelong.steps.context import Context

    ctx = Context.of(MODEL)
    later = daily.validate_ingest(MODEL, NEXT)
    state = registry.load_state_of(MODEL, registry.champion(MODEL))
    sample = inputs.day_ahead_sample(ctx, inputs.snapshot(ctx, later["data_version"]), NEXT, state.stats)
    pred, _ = metrics.forecast_in_units(state.model, sample.x, sample.y, windows.target_scale(state.stats))
    np.testing.assert_allclose(world["published"]["forecast"], pred[0, : sample.steps].numpy(), rtol=1e-5)


def test_without_the_forecast_covariates_the_step_fails_and_publishes_nothing(world) -> None:
    from lifelong.data import landing
    from lifelong.errors import MissingForecastInputs
    from lifelong.steps.context import Context
    from lifelong.steps.publish import forecast_path, publish

    following = NEXT + dt.timedelta(days=1)
    landing.forecast_inputs_path(DATASET, following).unlink(missing_ok=True)
    with pytest.raises(MissingForecastInputs, match=rf"forecast/{following}\.parquet is missing") as caught:
        publish(MODEL, NEXT, world["ingest"])
    assert "\n" not in str(caught.value)
    assert not forecast_path(Context.of(MODEL), following).exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(uri: str, tracking_uri: str, timeout_s: float = 120.0) -> Iterator[str]:
    """``mlflow models serve`` of ``uri`` on a free local port, in this environment; stopped on exit."""
    import lifelong

    port = _free_port()
    src = str(Path(lifelong.__file__).resolve().parents[1])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri,
           # the scoring server runs uvicorn from this environment's bin folder
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"lifelong-serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow models serve exited {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow models serve not up after {timeout_s}s: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        log.unlink(missing_ok=True)


def post(url: str, body: dict) -> dict:
    data = json.dumps(body).encode()
    ask = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(ask, timeout=60) as reply:
        return json.loads(reply.read())
