"""The step functions that the DAGs, the CLI, ``dvc repro`` and the tests call.

One module per concern: :mod:`~lifelong.steps.context` (what every step is handed),
:mod:`~lifelong.steps.contracts` (the typed results that travel between steps),
:mod:`~lifelong.steps.inputs` (the windows a step reads from an exact data version),
:mod:`~lifelong.steps.daily`, :mod:`~lifelong.steps.shift` (task shifts on the daily path: the
decision and the consolidation), :mod:`~lifelong.steps.tasks`, :mod:`~lifelong.steps.decide`,
:mod:`~lifelong.steps.watch` (the champion against the version before it; the automatic
rollback), :mod:`~lifelong.steps.publish` (the champion's forecast of the next day),
:mod:`~lifelong.steps.cards` (model cards) and :mod:`~lifelong.steps.run` (every
step in order, in one process).

Small JSON in, small JSON out: a step takes names, dates and the results of the steps
before it, and returns a small typed dict (ids, versions, paths, metrics) that fits an
Airflow XCom. Anything large travels through DVC (data) or MLflow (model state). Nothing
is imported here, so that a DAG file can name a step without importing torch.
"""
