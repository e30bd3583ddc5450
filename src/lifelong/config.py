"""Typed settings: ``params.yaml`` plus the environment, validated once.

Two things configure lifelong:

* :class:`Params`, read from ``params.yaml``: what the data sets, models, training,
  strategies, gate and drift tests are. It is the file DVC tracks as parameters.
* :class:`Settings`, read from the environment: *where* things live (project folder,
  MLflow store, runtime folder, device). Production changes these, never ``params.yaml``.

``params.yaml`` is parsed into frozen dataclasses by :func:`from_mapping`, which refuses
an unknown key or a value of the wrong type with an error that names the key:

>>> from_mapping(TrainSpec, {"epochs": "three"}, "models.demo.train")
Traceback (most recent call last):
...
lifelong.config.ConfigError: models.demo.train.epochs: expected int, got str ('three')
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from lifelong.errors import LifelongError


class ConfigError(LifelongError, ValueError):
    """params.yaml or the environment is invalid; the message names the key."""


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: where it comes from and what a valid daily batch looks like."""

    name: str
    kind: Literal["forecast", "classify"]
    # "package:vic_elec", "package:ford_engine", "synthetic:vibration", or a CSV/Parquet path
    loader: str
    timestamp: str = "timestamp"
    # column holding the local calendar date a row belongs to (None: derive from timestamp)
    date_column: str | None = None
    features: tuple[str, ...] = ()
    target: str | None = None
    label: str | None = None
    labels: tuple[int, ...] = ()
    task_column: str | None = None
    tasks: tuple[str, ...] = ()
    frequency: str = "30min"
    # allowed row counts for one day (e.g. 46, 48, 50 around daylight-saving changes)
    rows_per_day: tuple[int, ...] = ()
    # closed value ranges per column: {column: [low, high]}
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_file_mb: float = 200.0
    # free-form loader options (seed, number of machine types, ...)
    options: dict[str, Any] = field(default_factory=dict)
    # IANA time zone of the local calendar day (e.g. "Australia/Melbourne"); None: UTC.
    # Naive timestamps are read as local time in this zone; the store keeps them in UTC.
    timezone: str | None = None
    # classify data sets: one row per sample; its id column, its train/test column, and the
    # length every signal (each feature column holds one array per row) must have
    id_column: str | None = None
    split_column: str | None = None
    signal_length: int | None = None
    # column dtypes where the default is not wanted (features and targets default to float64,
    # ids and labels to int64, timestamps to tz-aware, dates, tasks and splits to str)
    dtypes: dict[str, str] = field(default_factory=dict)
    # forecast data sets, inputs of a day-ahead model (lifelong.data.features): lags of the target at
    # each target step ("1d", "7d", "30min"; whole days are taken at the same local clock time), and
    # the features whose values over the target period are known when the forecast is issued (from a
    # weather forecast, a calendar). Calendar features (time of day, day of week) are always derived.
    lags: tuple[str, ...] = ("1d", "7d")
    known_future: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArchitectureSpec:
    """What :func:`lifelong.learn.models.build_model` builds."""

    type: Literal["cnn_forecaster", "cnn_classifier", "mlp_classifier", "cnn_dayahead", "cnn_dayahead_residual"]
    in_channels: int = 1
    length: int = 96  # input window length (time steps)
    out_dim: int = 1  # horizon for forecasters, number of classes for classifiers
    channels: tuple[int, ...] = (16,)
    kernel_size: int = 3
    pool: int = 2
    hidden: tuple[int, ...] = (64,)
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainSpec:
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    # multiplicative decay per optimizer step, carried across daily updates, with a floor
    lr_decay: float = 0.999
    lr_floor: float = 1e-5
    epochs: int = 5
    batch_size: int = 64
    grad_clip: float = 1.0
    val_fraction: float = 0.2
    patience: int = 2
    seed: int = 0
    amp: bool = False
    device: str = "auto"
    # updates kept in the LearnerState's metric history (state.json), a rolling window: the error drift
    # check reads the last drift.reference_days of it and the daily-error plot shows it. Older records
    # stay in MLflow (each update's run holds its metrics), so state.json stops growing with the days.
    history_window: int = 90


StrategyName = Literal["naive", "ewc", "online_ewc", "lwf", "replay", "ewc+replay", "lwf+replay"]
# the one list of strategy names: the trigger form's choices, the CLI's, and make_strategy's
STRATEGIES: tuple[str, ...] = typing.get_args(StrategyName)


@dataclass(frozen=True)
class StrategySpec:
    name: StrategyName = "replay"
    ewc_lambda: float = 100.0
    # online EWC decay: F <- gamma * F_old + F_new
    gamma: float = 1.0
    fisher_variant: Literal["empirical", "exact"] = "empirical"
    fisher_samples: int = 1024
    lwf_alpha: float = 1.0
    lwf_temperature: float = 2.0
    replay_capacity: int = 2000
    replay_policy: Literal["reservoir", "class_balanced"] = "reservoir"
    replay_ratio: float = 0.5


@dataclass(frozen=True)
class GateSpec:
    """Promotion thresholds, in the spirit of TFX's Evaluator.

    ``value``: absolute bounds on candidate metrics, e.g. ``{"mae": {"max": 900}}``.
    ``change``: allowed change against the champion, e.g. ``{"mae": {"max_increase_pct": 2}}``
    or ``{"accuracy": {"max_drop": 0.05}}``.
    """

    value: dict[str, dict[str, float]] = field(default_factory=dict)
    change: dict[str, dict[str, float]] = field(default_factory=dict)
    # change thresholds that only a task addition's evaluation can meet (its per-task metrics, e.g.
    # ``task_mae/*``): added to ``change`` for task additions, never asked of a daily candidate
    task_change: dict[str, dict[str, float]] = field(default_factory=dict)
    # forecasters: refuse a candidate whose day-ahead MAE is worse than the weekly seasonal naive's on
    # the same targets (MASE > 1) by more than this many percent; classifiers: whose new task's accuracy
    # is below the majority class's on the same recordings by more than this; None turns the check off
    naive_tolerance_pct: float | None = 0.0


@dataclass(frozen=True)
class RollbackSpec:
    """Automatic rollback (the daily ``watch`` step): off unless ``enabled``.

    Each day the serving champion and the version before it (in shadow) are scored on the new
    day; when the champion's ``metric`` is worse than the shadow's by more than ``tolerance_pct``
    on ``days`` consecutive days, ``champion`` moves back to the shadow. The metric is an error
    (lower is better).
    """

    enabled: bool = False
    tolerance_pct: float = 5.0
    days: int = 3
    metric: str = "mae"


# the first day of each meteorological season (the same month-days in both hemispheres)
SEASON_STARTS: tuple[str, ...] = ("03-01", "06-01", "09-01", "12-01")


@dataclass(frozen=True)
class TaskShiftSpec:
    """When a daily forecaster closes one regime (task) and opens the next (``lifelong.steps.shift``).

    A day's run is a task shift when any of these holds: it is the ``severe_days``-th consecutive day
    of severe drift (as recorded by ``check_drift``; ``None``: off), or the day it learns (the day
    before: test-then-train) starts a season (``seasons``), has its month-day in ``month_days``
    ("MM-DD") or is one of ``dates`` (ISO), or the run was triggered with the DAG param
    ``task_shift``. On a shift the champion's exact Fisher is computed on at most ``replay_samples``
    of its replay buffer plus its last ``recent_days`` learned days of data.
    """

    severe_days: int | None = None
    seasons: bool = False
    month_days: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    replay_samples: int = 512
    recent_days: int = 7

    @property
    def boundaries(self) -> frozenset[str]:
        """The month-days ("MM-DD") that open a task every year."""
        return frozenset(self.month_days) | (frozenset(SEASON_STARTS) if self.seasons else frozenset())


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dataset: str
    architecture: ArchitectureSpec
    train: TrainSpec = field(default_factory=TrainSpec)
    strategy: StrategySpec = field(default_factory=StrategySpec)
    gate: GateSpec = field(default_factory=GateSpec)
    rollback: RollbackSpec = field(default_factory=RollbackSpec)
    # forecasters: the days that close one regime and open the next (the daily DAG's consolidate branch)
    task_shift: TaskShiftSpec = field(default_factory=TaskShiftSpec)
    # forecasters: how many days of history feed the first training
    warmup_days: int = 7
    # forecasters: an update learns every stored day after the champion's last one, at most this many
    max_catchup_days: int = 14
    # the daily DAG's schedule window (ISO dates); catch-up runs every missed day in order
    start_date: str = "2024-01-01"
    end_date: str | None = None


@dataclass(frozen=True)
class DriftSpec:
    ks_alpha: float = 0.01
    psi_threshold: float = 0.2
    psi_severe: float = 0.5
    # above this many rows a feature is tested with PSI, below with KS
    ks_max_rows: int = 2000
    reference_days: int = 14
    error_z_drift: float = 3.0
    error_z_severe: float = 6.0
    # PSI: quantile bins taken from the reference, additive smoothing of bin proportions
    psi_bins: int = 10
    psi_epsilon: float = 0.0001
    # fewest past errors of the champion before its error on the new day is judged
    error_min_history: int = 3
    # How a day with a day column is tested (``lifelong.drift``): "days" compares the day's
    # profile with similar reference days and calibrates the threshold on the reference days
    # themselves; "rows" is the row-level KS / PSI (always used without a day column).
    method: Literal["days", "rows"] = "days"
    # "days": the level of each feature's test (Bonferroni over features); a drifted feature is
    # severe from this distance (a multiple of the reference days' median) when it drifted on
    # the severe_days - 1 days before too; the fewest reference days to calibrate on; which
    # reference days a day is compared with
    day_alpha: float = 0.01
    severe_ratio: float = 3.0
    severe_days: int = 2
    min_reference_days: int = 7
    similar_days: Literal["auto", "weekday", "daytype", "all"] = "auto"
    # Page-Hinkley on the champion's log error (robust sd units): allowed slack and alarm level
    error_ph_delta: float = 0.5
    error_ph_lambda: float = 6.0


@dataclass(frozen=True)
class RetrySpec:
    """How Airflow retries a task that failed for a reason other than its input.

    A store that is down (the MLflow server, PostgreSQL), a lost worker, a full disk: the task
    is retried ``retries`` times, waiting ``delay_s``, then twice as long each time, at most
    ``max_delay_s``. Bad input and invalid parameters are never retried.
    """

    retries: int = 2
    delay_s: float = 20.0
    max_delay_s: float = 600.0


@dataclass(frozen=True)
class RunSpec:
    """What ``dvc repro`` reproduces: one model, one logical date (dvc.yaml reads ``${run.*}``)."""

    model: str = "demand_forecaster"
    date: str = "2012-01-10"


@dataclass(frozen=True)
class Params:
    datasets: dict[str, DatasetSpec]
    models: dict[str, ModelSpec]
    drift: DriftSpec = field(default_factory=DriftSpec)
    retry: RetrySpec = field(default_factory=RetrySpec)
    run: RunSpec = field(default_factory=RunSpec)

    def model(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise ConfigError(f"models.{name}: no such model (known: {', '.join(sorted(self.models))})")
        return self.models[name]

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.datasets:
            raise ConfigError(f"datasets.{name}: no such dataset (known: {', '.join(sorted(self.datasets))})")
        return self.datasets[name]


# --------------------------------------------------------------------------- Airflow pools

# model-changing steps of a model never overlap: one single-slot pool per model, one for task additions
TASKS_POOL = "lifelong__tasks"


def pool_name(model: str) -> str:
    """The one-slot pool that serializes every model-changing step of ``model``."""
    return f"lifelong__{model}"


# --------------------------------------------------------------------------- loader


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} ({value!r})")
        item_types = args if (len(args) != 2 or args[1] is not Ellipsis) else (args[0],) * len(value)
        if len(item_types) != len(value):
            raise ConfigError(f"{key}: expected {len(item_types)} items, got {len(value)}")
        return tuple(_convert(t, v, f"{key}[{i}]") for i, (t, v) in enumerate(zip(item_types, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} ({value!r})")
        key_type, value_type = args
        return {_convert(key_type, k, key): _convert(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected float, got {type(value).__name__} ({value!r})")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {type(value).__name__} ({value!r})")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} ({value!r})")
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp}")  # pragma: no cover - programming error


def from_mapping(cls: type, data: Any, key: str) -> Any:
    """Build the frozen dataclass ``cls`` from ``data``; errors name ``key.field``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(data).__name__} ({data!r})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{key}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}.{name}: required key is missing")
    return cls(**kwargs)


def parse_params(raw: Any) -> Params:
    """Validate the parsed YAML of params.yaml; names default to their mapping key."""
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml: expected a mapping at the top level")
    raw = dict(raw)
    for section in ("datasets", "models"):
        block = raw.get(section)
        if not isinstance(block, dict):
            raise ConfigError(f"{section}: required mapping is missing")
        raw[section] = {
            name: ({"name": name, **body} if isinstance(body, dict) else body) for name, body in block.items()
        }
    params: Params = from_mapping(Params, raw, "params")
    for name, ds in params.datasets.items():
        if ds.kind == "forecast":
            check_forecast_inputs(ds, f"datasets.{name}")
    for name, model in params.models.items():
        if model.dataset not in params.datasets:
            raise ConfigError(f"models.{name}.dataset: unknown dataset {model.dataset!r}")
        check_task_shift(model.task_shift, f"models.{name}.task_shift")
        if model.train.history_window < max(1, params.drift.reference_days):
            raise ConfigError(
                f"models.{name}.train.history_window: must be at least drift.reference_days "
                f"({params.drift.reference_days}), the errors the drift check reads; got {model.train.history_window}"
            )
    return params


def check_task_shift(spec: TaskShiftSpec, key: str) -> None:
    """The task-shift block makes sense: positive counts, real month-days and dates.

    >>> check_task_shift(TaskShiftSpec(month_days=("02-30",)), "models.m.task_shift")
    Traceback (most recent call last):
    ...
    lifelong.config.ConfigError: models.m.task_shift.month_days[0]: '02-30' is not a month-day like 03-01
    >>> check_task_shift(TaskShiftSpec(severe_days=0), "models.m.task_shift")
    Traceback (most recent call last):
    ...
    lifelong.config.ConfigError: models.m.task_shift.severe_days: must be at least 1 (or null to turn it off); got 0
    """
    if spec.severe_days is not None and spec.severe_days < 1:
        raise ConfigError(f"{key}.severe_days: must be at least 1 (or null to turn it off); got {spec.severe_days}")
    if spec.recent_days < 0 or spec.replay_samples < 0:
        which = "recent_days" if spec.recent_days < 0 else "replay_samples"
        raise ConfigError(f"{key}.{which}: must be 0 or more; got {getattr(spec, which)}")
    if spec.recent_days == 0 and spec.replay_samples == 0:
        raise ConfigError(f"{key}: recent_days and replay_samples are both 0: the Fisher would have no samples")
    for i, text in enumerate(spec.month_days):
        try:
            dt.date.fromisoformat(f"2000-{text}")  # a leap year: 02-29 is a month-day
            valid = len(text) == 5
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(f"{key}.month_days[{i}]: {text!r} is not a month-day like 03-01")
    for i, text in enumerate(spec.dates):
        try:
            dt.date.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"{key}.dates[{i}]: {text!r} is not an ISO date like 2012-06-01") from None


_DURATION = re.compile(r"^\s*(\d+)?\s*(s|sec|min|T|h|H|d|D|w|W)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "min": 60, "T": 60, "h": 3600, "H": 3600, "d": 86400, "D": 86400}
_UNIT_SECONDS |= {"w": 7 * 86400, "W": 7 * 86400}


def parse_duration(text: str, key: str) -> dt.timedelta:
    """``"30min"``, ``"1h"``, ``"1d"``, ``"7d"``, ``"2w"`` as a timedelta; an error names ``key`` otherwise.

    >>> parse_duration("7d", "lags[1]"), parse_duration("30min", "frequency")
    (datetime.timedelta(days=7), datetime.timedelta(seconds=1800))
    >>> parse_duration("a week", "datasets.x.lags[0]")
    Traceback (most recent call last):
    ...
    lifelong.config.ConfigError: datasets.x.lags[0]: 'a week' is not a duration like 30min, 1h, 1d, 7d
    """
    match = _DURATION.match(str(text))
    if not match or int(match.group(1) or 1) < 1:
        raise ConfigError(f"{key}: {text!r} is not a duration like 30min, 1h, 1d, 7d")
    return dt.timedelta(seconds=int(match.group(1) or 1) * _UNIT_SECONDS[match.group(2)])


def check_forecast_inputs(ds: DatasetSpec, key: str) -> None:
    """The day-ahead inputs of a forecast data set make sense: every lag a whole number of steps
    of at least one step, no lag twice, every ``known_future`` column a declared feature.

    >>> ds = DatasetSpec(name="x", kind="forecast", loader="x.csv", features=("y",), target="y",
    ...                  known_future=("Temperature",))
    >>> check_forecast_inputs(ds, "datasets.x")
    Traceback (most recent call last):
    ...
    lifelong.config.ConfigError: datasets.x.known_future[0]: 'Temperature' is not one of the features (y)
    """
    step = parse_duration(ds.frequency, f"{key}.frequency")
    seen: set[dt.timedelta] = set()
    for i, text in enumerate(ds.lags):
        lag = parse_duration(text, f"{key}.lags[{i}]")
        if lag < step or lag % step:
            raise ConfigError(f"{key}.lags[{i}]: {text!r} is not a whole number of {ds.frequency} steps")
        if lag in seen:
            raise ConfigError(f"{key}.lags[{i}]: {text!r} is declared twice")
        seen.add(lag)
    covariates = [f for f in ds.features if f != ds.target]
    for i, name in enumerate(ds.known_future):
        if name == ds.target:
            raise ConfigError(f"{key}.known_future[{i}]: the target {name!r} is not known in advance")
        if name not in covariates:
            listed = ", ".join(ds.features) or "none"
            raise ConfigError(f"{key}.known_future[{i}]: {name!r} is not one of the features ({listed})")


# libyaml's safe loader where PyYAML was built with it (PyPI's wheels are), else the pure-Python one, which
# took 0.4 s to read a params.yaml of 50 models, as every parse of a DAG file does (bench/dag_parse.py)
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_params(path: Path | None = None) -> Params:
    """Read and validate ``params.yaml`` (default: the project's)."""
    path = path or load_settings().params_path
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    try:
        raw = yaml.load(text, Loader=SafeLoader)  # noqa: S506 (CSafeLoader or SafeLoader, both safe)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_params(raw)


def params_hash(spec: Any) -> str:
    """A short stable hash of a spec (for lineage tags)."""
    blob = json.dumps(to_jsonable(spec), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def to_jsonable(spec: Any) -> Any:
    """A dataclass spec as plain JSON types (tuples become lists)."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return {f.name: to_jsonable(getattr(spec, f.name)) for f in dataclasses.fields(spec)}
    if isinstance(spec, dict):
        return {str(k): to_jsonable(v) for k, v in spec.items()}
    if isinstance(spec, list | tuple):
        return [to_jsonable(v) for v in spec]
    return spec


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Where things live. Every path is absolute.

    ``project_dir`` holds params.yaml, data/, data.dvc and dvc.yaml (the git + DVC
    workspace); ``home`` holds runtime state that is not versioned with git (MLflow's
    embedded store, the Airflow home, the DVC remote, reports, the audit log).
    """

    project_dir: Path
    home: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    device: str

    @property
    def params_path(self) -> Path:
        return self.project_dir / "params.yaml"

    @property
    def data_dir(self) -> Path:
        return self.project_dir / "data"

    @property
    def landing_dir(self) -> Path:
        return self.project_dir / "data" / "landing"

    @property
    def quarantine_dir(self) -> Path:
        return self.project_dir / "data" / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def dvc_remote(self) -> Path:
        return self.home / "dvc-remote"


def load_settings(env: typing.Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (``LIFELONG_*``, ``MLFLOW_TRACKING_URI``).

    Defaults are the embedded ones: the current directory as project, ``.lifelong/``
    inside it as home, MLflow on SQLite in home, device chosen automatically.
    """
    env = os.environ if env is None else env
    project_dir = Path(env.get("LIFELONG_PROJECT_DIR") or Path.cwd()).resolve()
    home = Path(env.get("LIFELONG_HOME") or project_dir / ".lifelong").resolve()
    tracking = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    # a tracking server stores (proxies) artifacts itself; only the embedded store needs a folder
    served = tracking.startswith(("http://", "https://"))
    artifacts = env.get("LIFELONG_ARTIFACT_ROOT") or (
        "mlflow-artifacts:/" if served else (home / "mlartifacts").as_uri()
    )
    device = env.get("LIFELONG_DEVICE", "auto")
    return Settings(project_dir, home, tracking, artifacts, device)
