"""The errors a user sees: one line, no traceback (the CLI and DAG tasks print ``str(exc)``)."""


class LifelongError(Exception):
    """Base class for errors that carry a clear, one-line message for the user."""

    exit_code = 1


class RefusedBatch(LifelongError):
    """A batch failed validation (or could not be read) and was quarantined."""

    exit_code = 3


class TaskMismatch(LifelongError):
    """A task addition's model and task do not go together (wrong kind, unknown task, another feature
    set): refused before anything is ingested or trained, and never retried."""

    exit_code = 2


class StoreBusy(LifelongError):
    """Another process holds the lock on a store (DVC workspace, registry)."""

    exit_code = 4


class StateError(LifelongError):
    """A saved LearnerState is corrupt, incomplete or does not match the model spec."""

    exit_code = 5


class RegistryError(LifelongError):
    """The model registry refused an operation (rollback target rejected, incomplete, ...)."""

    exit_code = 6


class ServiceUnavailable(LifelongError):
    """A store lifelong depends on (the MLflow server, its database) did not answer.

    Not the input's fault: Airflow retries the task with backoff, and nothing was half-written
    (every registry step is idempotent and re-run from the start).
    """


class MissingForecastInputs(LifelongError):
    """The forecast covariates of the day to forecast have not landed: nothing was published (no retry)."""
