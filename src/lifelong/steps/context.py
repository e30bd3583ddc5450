"""What every step is handed: who runs it, the specs it works on, and where its lines go."""

from __future__ import annotations

import dataclasses
import getpass
import logging
import sys
from dataclasses import dataclass
from datetime import date
from typing import Any

from lifelong.config import DatasetSpec, ModelSpec, Params, Settings, TrainSpec, load_params, load_settings
from lifelong.errors import LifelongError


class NotReady(LifelongError):
    """The step has nothing to do yet (e.g. fewer stored days than the warm-up needs).

    ``outcome``: what the day's report says about it, when it is more than "not yet"
    (:mod:`lifelong.steps.outcomes`).
    """

    def __init__(self, message: str, outcome: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


@dataclass(frozen=True)
class RunInfo:
    """Who runs a step: an Airflow DAG run, or a person at the CLI."""

    dag_id: str | None = None
    dag_run_id: str | None = None
    logical_date: str | None = None
    try_number: int | None = None
    user: str | None = None

    @classmethod
    def of(cls, value: RunInfo | dict[str, Any] | None) -> RunInfo:
        if isinstance(value, RunInfo):
            return value
        return cls(**(value or {}))

    @property
    def trigger(self) -> str:
        """What the audit log names as the cause of a change."""
        if self.dag_id:
            return f"airflow:{self.dag_id}/{self.dag_run_id}"
        return f"cli:{self.user or current_user()}"


def parse_day(value: str | date) -> date:
    """A logical date from ``YYYY-MM-DD`` (or a timestamp that starts with one).

    >>> parse_day("2012-01-05T00:00:00+00:00")
    datetime.date(2012, 1, 5)
    """
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise LifelongError(f"not a date: {value!r} (expected YYYY-MM-DD)") from None


@dataclass(frozen=True)
class Context:
    """A step's world, resolved once: settings, params, the model's spec and data set, the run."""

    settings: Settings
    params: Params
    spec: ModelSpec
    dataset: DatasetSpec
    run: RunInfo

    @classmethod
    def of(cls, model: str, run_info: RunInfo | dict[str, Any] | None = None) -> Context:
        """The context of ``model`` (refused with a message naming the known models when unknown)."""
        settings = load_settings()
        params = load_params(settings.params_path)
        spec = params.model(model)
        return cls(settings, params, spec, params.dataset(spec.dataset), RunInfo.of(run_info))

    @property
    def model(self) -> str:
        return self.spec.name

    def with_spec(self, spec: ModelSpec) -> Context:
        """The same context for a spec with overrides (the task-addition form's)."""
        return dataclasses.replace(self, spec=spec)

    def train_spec(self) -> TrainSpec:
        """The model's training spec, with the device from the environment when it says "auto"."""
        train = self.spec.train
        return train if train.device != "auto" else dataclasses.replace(train, device=self.settings.device)

    def progress(self, message: str) -> None:
        """A progress line: to the task log under Airflow, to stderr at the CLI."""
        if self.run.dag_id:
            logging.getLogger("lifelong").info(message)
        else:
            print(message, file=sys.stderr, flush=True)
