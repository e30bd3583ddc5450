from pathlib import Path

import pytest
import yaml

from lifelong.config import ConfigError, load_params, load_settings, parse_params

REPO = Path(__file__).resolve().parents[2]


def test_repo_params_load():
    params = load_params(REPO / "params.yaml")
    assert "vic_elec" in params.datasets
    forecaster = params.model("demand_forecaster")
    assert forecaster.architecture.type == "cnn_dayahead"
    assert isinstance(forecaster.architecture.channels, tuple)


def _raw():
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_unknown_key_is_named():
    raw = _raw()
    raw["models"]["demand_forecaster"]["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"models\.demand_forecaster\.train\.learning_rate: unknown key"):
        parse_params(raw)


def test_wrong_type_is_named():
    raw = _raw()
    raw["models"]["demand_forecaster"]["train"]["epochs"] = "many"
    with pytest.raises(ConfigError, match=r"models\.demand_forecaster\.train\.epochs: expected int"):
        parse_params(raw)


def test_bad_literal_is_named():
    raw = _raw()
    raw["models"]["engine_classifier"]["strategy"]["name"] = "magic"
    with pytest.raises(ConfigError, match=r"strategy\.name: must be one of"):
        parse_params(raw)


def test_unknown_dataset_reference():
    raw = _raw()
    raw["models"]["demand_forecaster"]["dataset"] = "nope"
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        parse_params(raw)


def test_settings_defaults(tmp_path):
    settings = load_settings({"LIFELONG_PROJECT_DIR": str(tmp_path)})
    assert settings.home == tmp_path / ".lifelong"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / '.lifelong' / 'mlflow.db'}"
