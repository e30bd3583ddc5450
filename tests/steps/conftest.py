"""Fixtures of the step tests: a project with a few real days of vic_elec stored (paid once per module)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from _project import project_with, quick_forecaster
from _steps_kit import DATASET, FIRST_DAY, MODEL, WARMUP_DAYS


def _small(raw: dict) -> None:
    quick_forecaster(raw, warmup=WARMUP_DAYS, model=MODEL)


@pytest.fixture(scope="module")
def stored_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[dict]]]:
    """A project with the warm-up days and the day after them validated and stored, one ingest each."""
    from lifelong.data import landing, store
    from lifelong.steps import daily

    with project_with(tmp_path_factory.mktemp("steps"), _small) as project:
        store.ensure_repo()
        landing.simulate(DATASET, FIRST_DAY, WARMUP_DAYS + 2)
        ingests = [daily.validate_ingest(MODEL, FIRST_DAY + dt.timedelta(days=i)) for i in range(WARMUP_DAYS + 1)]
        yield project, ingests
