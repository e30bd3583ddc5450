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


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"severe_days": 0}, r"task_shift\.severe_days: must be at least 1"),
        ({"severe_days": "three"}, r"task_shift\.severe_days: expected int"),
        ({"seasons": "yes"}, r"task_shift\.seasons: expected bool"),
        ({"month_days": ["13-01"]}, r"task_shift\.month_days\[0\]: '13-01' is not a month-day"),
        ({"month_days": ["3-1"]}, r"task_shift\.month_days\[0\]: '3-1' is not a month-day"),
        ({"dates": ["2012-02-30"]}, r"task_shift\.dates\[0\]: '2012-02-30' is not an ISO date"),
        ({"recent_days": -1}, r"task_shift\.recent_days: must be 0 or more"),
        ({"recent_days": 0, "replay_samples": 0}, r"task_shift: recent_days and replay_samples are both 0"),
        ({"every": "monday"}, r"task_shift\.every: unknown key"),
    ],
)
def test_bad_task_shift_is_named(block, message):
    raw = _raw()
    raw["models"]["demand_forecaster"]["task_shift"] = block
    with pytest.raises(ConfigError, match=rf"models\.demand_forecaster\.{message}"):
        parse_params(raw)


def test_task_shift_boundaries():
    raw = _raw()
    raw["models"]["demand_forecaster"]["task_shift"] = {
        "seasons": True,
        "month_days": ["07-15"],
        "dates": ["2013-05-02"],
    }
    spec = parse_params(raw).model("demand_forecaster").task_shift
    assert spec.boundaries == {"03-01", "06-01", "09-01", "12-01", "07-15"}
    assert spec.dates == ("2013-05-02",)


def test_history_window_shorter_than_the_drift_reference_is_refused():
    raw = _raw()
    raw["models"]["demand_forecaster"]["train"]["history_window"] = 5
    with pytest.raises(ConfigError, match=r"models\.demand_forecaster\.train\.history_window: must be at least"):
        parse_params(raw)
    assert load_params(REPO / "params.yaml").model("demand_forecaster").train.history_window >= 14
