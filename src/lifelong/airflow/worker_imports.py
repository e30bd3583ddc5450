"""What a lifelong Celery worker imports once, at start, for every task it forks to inherit.

Named in :data:`lifelong.airflow.celery_preload.CELERY_CONFIG`'s ``imports``; never imported by a
DAG file, the scheduler or a step. Importing only: nothing here starts a thread, opens a
connection or initialises CUDA (a forked child cannot use a CUDA context its parent made), so a
fork after it is safe. The garbage collector's generations are frozen afterwards, as Airflow does
for its own preloads, so that a task's collections do not touch (and copy) the inherited pages.
"""

from __future__ import annotations

import gc

# the libraries, and the parts of them a step loads on first use (found by listing the modules a
# day imports after these: torch._dynamo and torch.export with the first optimizer and the serving
# copy, GitPython for the lineage, pyarrow's Parquet reader, DVC's index, MLflow's pyfunc and tracing)
import dvc.repo  # noqa: F401
import dvc.repo.index  # noqa: F401
import dvc.repo.worktree  # noqa: F401
import git  # noqa: F401
import great_expectations  # noqa: F401
import mlflow  # noqa: F401
import mlflow.pyfunc  # noqa: F401
import mlflow.pytorch  # noqa: F401
import mlflow.tracing  # noqa: F401
import pandas  # noqa: F401
import pyarrow.dataset  # noqa: F401
import pyarrow.parquet  # noqa: F401
import torch  # noqa: F401
import torch._dynamo  # noqa: F401
import torch.export  # noqa: F401

from lifelong.data import validate  # noqa: F401
from lifelong.steps import daily, decide, publish, shift, tasks, watch  # noqa: F401

gc.freeze()
