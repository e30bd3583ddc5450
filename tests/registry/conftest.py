"""Fixtures for the MLflow record: a real SQLite store per test, small real models.

Creating an MLflow SQLite store runs ~40 Alembic migrations (3 s or more on a busy machine),
so the session builds one empty, fully migrated store and each test gets a copy of it in
its own workspace: a real store, isolated per test, without paying the migrations again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _registry_kit import ARCH, MODEL


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()  # creates and migrates the schema
    return path


@pytest.fixture
def store(workspace: Path, mlflow_template: Path) -> Path:
    """The workspace, with a fresh copy of the migrated MLflow store in its home."""
    torch.set_num_threads(1)
    home = workspace / ".lifelong"
    home.mkdir(exist_ok=True)
    shutil.copy(mlflow_template, home / "mlflow.db")
    return workspace


@pytest.fixture
def log() -> Callable[..., Any]:
    """``log(state, run_key, metrics, epochs=...)``: log_candidate with the usual small extras."""
    from lifelong import plots, registry

    def _log(
        state: Any,
        run_key: str,
        metrics: dict[str, float] | None = None,
        epochs: list | None = None,
        data_version: str | None = None,
    ) -> Any:
        epochs = epochs or [{"epoch": 0, "train_loss": 1.0, "val_loss": 1.1}]
        lineage = registry.Lineage(
            dataset="synthetic",
            data_version=data_version or f"md5-{run_key.replace('/', '-')}",
            git_commit=registry.git_commit(),
            params_hash="0123abcd",
            device="cpu",
            dag_id="lifelong_daily",
            dag_run_id=f"scheduled__{run_key}",
            logical_date="2024-01-02T00:00:00+00:00",
            try_number=1,
        )
        return registry.log_candidate(
            MODEL,
            state,
            params={"model": {"arch": ARCH.type, "length": ARCH.length}, "kind": "update"},
            metrics=metrics or {"mae": 0.1},
            epoch_metrics=epochs,
            plots={"loss_curves": plots.loss_curves(epochs)},
            lineage=lineage,
            dataset_source="dvc://local/data/synthetic",
            input_example=np.zeros((1, 1, ARCH.length), dtype=np.float32),
            run_key=run_key,
        )

    return _log
