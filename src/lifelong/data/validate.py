"""Great Expectations suites built from a data set's ``params.yaml`` block, run by a Checkpoint.

One suite per data set, rebuilt from its block on each run (so editing ``params.yaml`` is
enough). What differs per batch (the logical day, its bounds and row count, or the task)
enters as suite parameters. A few checks GX cannot express on the raw columns run on
derived columns added before validation, named ``__...`` so they show up in Data Docs:

* ``__step_s``: seconds since the previous row (regular frequency, no gaps);
* ``__grid_s``: seconds past the frequency's grid, local midnight + whole steps (0: on it);
* ``__local_date``: each timestamp's local calendar day (matches the date column);
* ``__row_hash``: a hash of each row without its id (no duplicate rows or recordings);
* ``<signal>__len``, ``__nonfinite``, ``__min``, ``__max``: one number per recording.

The Checkpoint's ``UpdateDataDocsAction`` builds the Data Docs page of each run; the
validation result (JSON) and that page's path come back in :class:`Validation`.
Great Expectations is imported lazily and its context built once per process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lifelong import locks
from lifelong.config import ConfigError, DatasetSpec, load_settings, params_hash
from lifelong.data import schema
from lifelong.data.messages import describe

FLOAT_MAX = float(np.finfo(np.float64).max)
MAX_MESSAGES = 4
INDEX_LIMIT = 30  # validation results listed on the Data Docs index page
# validation results GX keeps (with their Data Docs pages): it lists its whole store on every run, so a
# store that grows a result a day makes each day's validation slower. lifelong keeps every result in
# reports/validation/ (and a refused batch's in quarantine/).
RESULTS_KEPT = INDEX_LIMIT
_CONTEXTS: dict[Path, Any] = {}
_CHECKPOINTS: dict[tuple[Path, str, str], Any] = {}


@dataclass(frozen=True)
class Validation:
    """The outcome of validating one batch."""

    success: bool
    failures: tuple[str, ...]  # one line per failed check
    checks: int
    result: dict  # the GX validation result, as JSON
    data_docs_path: str
    seconds: float

    def summary(self) -> str:
        shown = list(self.failures[:MAX_MESSAGES])
        if len(self.failures) > MAX_MESSAGES:
            shown.append(f"and {len(self.failures) - MAX_MESSAGES} more")
        return f"{len(self.failures)} of {self.checks} checks failed: " + "; ".join(shown)


# ------------------------------------------------------------------------ derived columns


def _safe(compute: Any, n: int) -> pd.Series:
    """``compute()``, or all-missing when the base column is absent or unusable."""
    try:
        return compute()
    except (KeyError, AttributeError, TypeError, ValueError):
        return pd.Series([pd.NA] * n, dtype="object")


def _signal_stats(values: pd.Series) -> pd.DataFrame:
    def one(v: object) -> tuple[float, float, float, float]:
        if not isinstance(v, np.ndarray) or v.ndim != 1 or not np.issubdtype(v.dtype, np.number):
            return (-1.0, np.nan, np.nan, np.nan)
        finite = np.isfinite(v)
        nonfinite = float(v.size - finite.sum())
        if not finite.any():
            return (float(v.size), nonfinite, np.nan, np.nan)
        return (float(v.size), nonfinite, float(v[finite].min()), float(v[finite].max()))

    return pd.DataFrame([one(v) for v in values], columns=["len", "nonfinite", "min", "max"], index=values.index)


def _row_hash(frame: pd.DataFrame, spec: DatasetSpec) -> pd.Series:
    arrays = [c for c in schema.array_columns(spec) if c in frame.columns]
    scalars = [c for c in frame.columns if c not in arrays and c != spec.id_column and not str(c).startswith("__")]
    try:
        h = pd.util.hash_pandas_object(frame[scalars], index=False).to_numpy(dtype=np.uint64)
    except TypeError:  # unhashable values in an object column
        h = pd.util.hash_pandas_object(frame[scalars].astype(str), index=False).to_numpy(dtype=np.uint64)
    for name in arrays:
        digests = [
            int.from_bytes(hashlib.blake2b(v.tobytes(), digest_size=8).digest())
            if isinstance(v, np.ndarray)
            else hash(repr(v)) & 0xFFFFFFFFFFFFFFFF
            for v in frame[name]
        ]
        with np.errstate(over="ignore"):
            h = h * np.uint64(1000003) ^ np.asarray(digests, dtype=np.uint64)
    return pd.Series(h.astype(str), index=frame.index, dtype="str")


def derive(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """``frame`` with the derived check columns added (never raises)."""
    out = frame.copy()
    n = len(out)
    if spec.kind == "forecast":
        ts = spec.timestamp
        out["__step_s"] = _safe(lambda: out[ts].diff().dt.total_seconds(), n)
        out["__grid_s"] = _safe(lambda: schema.grid_offsets(spec, out[ts]), n)
        out["__local_date"] = _safe(lambda: schema.local_dates(spec, out[ts]), n)
    for name in schema.array_columns(spec):
        stats = _safe(lambda name=name: _signal_stats(out[name]), n)
        for stat in ("len", "nonfinite", "min", "max"):
            out[f"{name}__{stat}"] = stats[stat] if isinstance(stats, pd.DataFrame) else stats
    out["__row_hash"] = _row_hash(out, spec)
    return out


def derived_columns(spec: DatasetSpec) -> list[str]:
    names = ["__step_s", "__grid_s", "__local_date"] if spec.kind == "forecast" else []
    for name in schema.array_columns(spec):
        names += [f"{name}__{stat}" for stat in ("len", "nonfinite", "min", "max")]
    return [*names, "__row_hash"]


# ------------------------------------------------------------------------ the suite


def batch_parameters(spec: DatasetSpec, key: str) -> dict[str, Any]:
    """Suite parameters for one batch: the day (forecast) or the task (classify) it must hold."""
    if spec.kind == "classify":
        return {"task": [key]}
    day = dt.date.fromisoformat(key)
    rows = schema.day_rows(spec, day)
    if spec.rows_per_day and rows not in spec.rows_per_day:
        raise ConfigError(
            f"datasets.{spec.name}.rows_per_day: {key} has {rows} rows at {spec.frequency},"
            f" not one of {spec.rows_per_day}"
        )
    return {"day": [key], "rows": rows}


def expectations(spec: DatasetSpec) -> list[Any]:
    """The suite of ``spec``: every check a batch of it must pass."""
    import great_expectations.expectations as gxe

    def param(name: str) -> dict:
        return {"$PARAMETER": name}

    declared = schema.columns(spec)
    kinds = schema.dtypes(spec)
    out: list[Any] = [gxe.ExpectTableColumnsToMatchSet(column_set=declared + derived_columns(spec), exact_match=True)]
    for name, kind in kinds.items():
        out.append(gxe.ExpectColumnValuesToBeOfType(column=name, type_=kind))
    for name in declared:
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
    for name, kind in kinds.items():
        if kind in ("float64", "float32", "int64"):
            low, high = spec.ranges.get(name, (-FLOAT_MAX, FLOAT_MAX))  # at least: finite
            out.append(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high))
    if spec.kind == "forecast":
        ts = spec.timestamp
        # strictly increasing implies unique; every local date on the day and the date column
        # equal to it imply the timestamps lie inside the day and the date column names it
        out += [
            gxe.ExpectColumnValuesToBeIncreasing(column=ts, strictly=True),
            gxe.ExpectColumnValuesToBeInSet(column="__step_s", value_set=[schema.step(spec).total_seconds()]),
            gxe.ExpectColumnValuesToBeInSet(column="__grid_s", value_set=[0.0]),
            gxe.ExpectColumnValuesToBeInSet(column="__local_date", value_set=param("day")),
            gxe.ExpectTableRowCountToEqual(value=param("rows")),
        ]
        if spec.date_column:
            out.append(gxe.ExpectColumnPairValuesToBeEqual(column_A=spec.date_column, column_B="__local_date"))
        if spec.target and max(spec.rows_per_day, default=4) >= 4:  # a flat line is a dead sensor
            out.append(gxe.ExpectColumnUniqueValueCountToBeBetween(column=spec.target, min_value=2))
    else:
        out.append(gxe.ExpectTableRowCountToBeBetween(min_value=max(len(spec.labels), 1)))
        if spec.id_column:
            out.append(gxe.ExpectColumnValuesToBeUnique(column=spec.id_column))
        if spec.task_column:
            out.append(gxe.ExpectColumnValuesToBeInSet(column=spec.task_column, value_set=param("task")))
        if spec.split_column:
            out.append(gxe.ExpectColumnValuesToBeInSet(column=spec.split_column, value_set=["train", "test"]))
        if spec.label and spec.labels:
            out += [
                gxe.ExpectColumnValuesToBeInSet(column=spec.label, value_set=list(spec.labels)),
                gxe.ExpectColumnDistinctValuesToEqualSet(column=spec.label, value_set=list(spec.labels)),
            ]
        for name in schema.array_columns(spec):
            low, high = spec.ranges.get(name, (-FLOAT_MAX, FLOAT_MAX))
            if spec.signal_length:
                length = float(spec.signal_length)
                out.append(gxe.ExpectColumnValuesToBeBetween(column=f"{name}__len", min_value=length, max_value=length))
            else:
                out.append(gxe.ExpectColumnValuesToBeBetween(column=f"{name}__len", min_value=1))
            out += [
                gxe.ExpectColumnValuesToBeBetween(column=f"{name}__nonfinite", min_value=0, max_value=0),
                gxe.ExpectColumnValuesToBeBetween(column=f"{name}__min", min_value=low),
                gxe.ExpectColumnValuesToBeBetween(column=f"{name}__max", max_value=high),
            ]
    out.append(gxe.ExpectColumnValuesToBeUnique(column="__row_hash"))
    return out


# ------------------------------------------------------------------------ running


def _context(root: Path) -> Any:
    """The file data context under ``root`` (``<home>/gx``), built once per process."""
    if not (root / "great_expectations.yml").exists():  # new, or wiped since: start afresh
        _CONTEXTS.pop(root, None)
        _forget_checkpoints(root)
    if root not in _CONTEXTS:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="file", project_root_dir=root.parent)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        # the Data Docs index reads every result it lists: keep it to the latest ones
        for site in (context.variables.data_docs_sites or {}).values():
            site.setdefault("site_index_builder", {})["validation_results_limit"] = INDEX_LIMIT
        context.variables.save()
        _CONTEXTS[root] = context
    return _CONTEXTS[root]


def _checkpoint(context: Any, root: Path, spec: DatasetSpec) -> Any:
    """The data set's Checkpoint, (re)built when its params block changed."""
    cache_key = (root, spec.name, params_hash(spec))
    if cache_key in _CHECKPOINTS:
        return _CHECKPOINTS[cache_key]
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    try:
        source = context.data_sources.get("lifelong")
    except KeyError:
        source = context.data_sources.add_pandas("lifelong")
    try:
        asset = source.get_asset(spec.name)
    except LookupError:
        asset = source.add_dataframe_asset(spec.name)
    try:
        batch = asset.get_batch_definition("batch")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=spec.name, expectations=expectations(spec)))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=spec.name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=spec.name,
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    _CHECKPOINTS[cache_key] = checkpoint
    return checkpoint


def _forget_checkpoints(root: Path) -> None:
    for key in [k for k in _CHECKPOINTS if k[0] == root]:
        del _CHECKPOINTS[key]


def prune(root: Path, suite: str, keep: int | None = None) -> int:
    """Keep GX's validation results of ``suite`` (and their Data Docs pages) to the newest ``keep`` runs
    (default :data:`RESULTS_KEPT`); returns how many runs were removed. Call under the GX lock.

    GX stores a run as ``<suite>/<run name>/<run time>/``; the run time (``20240101T000000.000000Z``)
    sorts as text. Pruned every day, the store holds at most ``keep + 1`` runs, so this costs no more
    as the days go by.
    """
    results = root / "uncommitted" / "validations"
    pages = root / "uncommitted" / "data_docs" / "local_site" / "validations"
    runs = sorted((p for p in (results / suite).glob("*/*") if p.is_dir()), key=lambda p: p.name)
    old = runs[: max(0, len(runs) - (RESULTS_KEPT if keep is None else keep))]
    for run in old:
        relative = run.relative_to(results)
        for folder in (run, pages / relative):
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # the run name's folder, once empty
                folder.parent.rmdir()
    return len(old)


def _stale_errors() -> tuple[type[Exception], ...]:
    """What ``Checkpoint.run`` raises when a resource it holds is older than the stored one."""
    from great_expectations.exceptions.resource_freshness import (
        ResourceFreshnessAggregateError,
        ResourceFreshnessError,
    )

    return (ResourceFreshnessAggregateError, ResourceFreshnessError)


def _run(checkpoint: Any, data: pd.DataFrame, parameters: dict[str, Any], run_name: str) -> Any:
    from great_expectations.core.run_identifier import RunIdentifier

    return checkpoint.run(
        batch_parameters={"dataframe": data},
        expectation_parameters=parameters,
        run_id=RunIdentifier(run_name=run_name),
    )


def validate(frame: pd.DataFrame, spec: DatasetSpec, key: str) -> Validation:
    """Validate one batch of ``spec`` for ``key`` (a day ``YYYY-MM-DD`` or a task name).

    The suite, validation definition and checkpoint are cached per process; when another
    process has saved them since, they are rebuilt once and the batch validated again, so only
    a failed check refuses a batch.
    """
    started = time.perf_counter()
    settings = load_settings()
    root = settings.home / "gx"
    parameters = batch_parameters(spec, key)
    data = derive(frame, spec)
    with locks.hold(settings.home / "locks" / "gx.lock", f"validate {spec.name} {key}"):
        context = _context(root)
        try:
            run = _run(_checkpoint(context, root, spec), data, parameters, f"{spec.name}-{key}")
        except _stale_errors():
            # another process saved the suite (or its validation definition or checkpoint) since this
            # process cached them: GX refuses to run stale copies. Reload the context and rebuild them
            # once, under the same lock (so no one saves in between), and validate again.
            _CONTEXTS.pop(root, None)
            _forget_checkpoints(root)
            context = _context(root)
            run = _run(_checkpoint(context, root, spec), data, parameters, f"{spec.name}-{key}")
        identifier, outcome = next(iter(run.run_results.items()))
        urls = context.get_docs_sites_urls(resource_identifier=identifier)
        prune(root, spec.name)
    result = outcome.to_json_dict()
    docs = urls[0]["site_url"].removeprefix("file://") if urls else ""
    failures = () if outcome.success else tuple(describe(result, spec))
    checks = len(result.get("results", []))
    return Validation(bool(outcome.success), failures, checks, result, docs, time.perf_counter() - started)
