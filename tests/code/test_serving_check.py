"""The serving check before a promotion loads the logged model, and never unpickles it."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest


def test_the_serving_check_refuses_a_pickled_model_even_when_the_environment_allows_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    from lifelong.artifacts import ServingCheckFailed, check_serving_model

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001 - MLflow's signature
            return model_input

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    try:
        with mlflow.start_run():  # a cloudpickled python_model, as a store could be made to hold
            info = mlflow.pyfunc.log_model(name="m", python_model=Echo(), input_example=pd.DataFrame({"a": [1.0]}))
        with pytest.raises(ServingCheckFailed, match="cannot be loaded"):
            check_serving_model(info.model_uri)
    finally:
        mlflow.set_tracking_uri(previous)
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "true"  # put back as it was
