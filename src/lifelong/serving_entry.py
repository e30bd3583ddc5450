"""The file MLflow logs as a day-ahead forecaster's model (models from code): it names the pyfunc.

MLflow runs this file when it loads the model; nothing else imports it.
"""

import mlflow

from lifelong.serving import LifelongModel

mlflow.models.set_model(LifelongModel())
