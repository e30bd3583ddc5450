"""lifelong: incremental training of PyTorch models, orchestrated by Airflow.

Airflow decides *when*, lifelong decides *what*, DVC remembers the data, MLflow
remembers the models. See ``DESIGN.md`` in the shared folder and the README.
"""

__version__ = "0.1.0"
