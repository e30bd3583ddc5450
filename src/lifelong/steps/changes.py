"""``@changes_model``: a step that changes a model holds the model's lock for its whole run.

Applied to every step that writes a model's state or moves its aliases (``update``,
``consolidate``, ``gate``, ``promote``, ``reject``, ``rollback``, ``watch``, ``learn_task``,
``publish``), whoever calls it: the CLI, ``run_day``, a Celery worker through
:func:`lifelong.airflow.task_runtime.call`, the embedded runner's ``dag.test`` child. So a
champion read by a step cannot be moved by another process before that step acts on it.

Once the lock is held, an alias move a crash left pending is completed
(:func:`lifelong.registry.settle`) before the step reads anything: every step starts from a
whole ``champion`` / ``previous`` pair. The lock is re-entrant (``run_day`` holds it around
the steps it calls) and inherited by the embedded runner's child (:mod:`lifelong.modellock`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, overload

from lifelong import faults, modellock

F = TypeVar("F", bound=Callable[..., Any])


@overload
def changes_model(step: F, *, settle: bool = True) -> F: ...
@overload
def changes_model(step: None = None, *, settle: bool = True) -> Callable[[F], F]: ...


def changes_model(step: F | None = None, *, settle: bool = True) -> F | Callable[[F], F]:
    """Run ``step(model, ...)`` holding ``model``'s lock (an unknown model is refused before it becomes a key).

    ``settle=False``: the step completes a pending alias move itself (``rollback``: the re-run of a
    rollback a crash interrupted finishes it and goes no further, which it could not tell once the
    move had been completed for it).
    """
    if step is None:
        return lambda found: changes_model(found, settle=settle)
    name = f"{step.__module__.rpartition('.')[2]}.{step.__name__}"

    @functools.wraps(step)
    def holding(model: str, *args: Any, **kwargs: Any) -> Any:
        from lifelong import registry
        from lifelong.config import load_params, load_settings

        settings = load_settings()
        first = modellock.depth(model) == 0  # the outermost step of this thread settles
        if first:  # an inner step's model was checked by the step around it
            load_params(settings.params_path).model(model)  # refused with the known models' names
        faults.checkpoint("step_start")
        with modellock.hold(settings.home, model, f"{name} {model}"):
            if first and settle:
                registry.settle(model)
            return step(model, *args, **kwargs)

    return holding  # type: ignore[return-value]
