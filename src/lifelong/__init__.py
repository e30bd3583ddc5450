"""lifelong: incremental training of PyTorch models, orchestrated by Airflow.

Airflow decides *when*, lifelong decides *what*, DVC remembers the data, MLflow
remembers the models. See ``DESIGN.md`` in the shared folder and the README.
"""

import os

__version__ = "0.1.0"

# MLflow 3's usage telemetry writes its session id into os.environ from a background thread while
# requests read the environment: seen failing a production `watch` task with
# KeyError: '_MLFLOW_TELEMETRY_SESSION_ID' (3 of ~15 tries). lifelong sends nothing home; a
# deployment that wants the telemetry sets the variable itself.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
