"""The champion's day-ahead forecast for the day after the logical date, in the target's units.

After the day's decision and watch, ``publish`` forecasts day D+1 from the data version the day's
ingest stored (every row up to the end of day D) and the forecast covariates of D+1 that landed
as ``data/landing/<dataset>/forecast/<D+1>.parquet`` (the ``known_future`` columns; ``lifelong
simulate`` writes them). Without that file the step fails with one line naming it
(:class:`~lifelong.errors.MissingForecastInputs`; under Airflow: failed, no retry) and nothing
is published.

Where the forecasts live: ``<home>/forecasts/<model>/<D+1>.parquet``, one partition per issued
day (columns ``timestamp``, ``date``, ``forecast``, ``model``, ``model_version``,
``data_version``, ``issued_at``), its plot beside it (``<D+1>.png``: the forecast after the last
days of actuals), and both logged to the champion's MLflow run under ``forecasts/``. A forecast
is an *output* of a model version, not input data: it is kept beside the reports and with the
run that made it, where its lineage (model version, data version) already lives, and it is not
versioned as data in DVC, where it would change the data version every model trains and is
judged on. A partition is replaced atomically; publishing the same day again with the same
model and data version leaves it as it is (same rows, same ``issued_at``).
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from lifelong import plots, registry, serving
from lifelong.data import landing, windows
from lifelong.data.files import parquet_bytes, write_atomic
from lifelong.errors import MissingForecastInputs
from lifelong.steps import inputs
from lifelong.steps.changes import changes_model
from lifelong.steps.context import Context, NotReady, RunInfo, parse_day
from lifelong.steps.contracts import IngestResult, PublishResult

ACTUAL_DAYS = 7  # days of actuals drawn before the forecast


def forecast_path(ctx: Context, day: date | str) -> Path:
    """The partition of the forecast issued for ``day``."""
    return ctx.settings.home / "forecasts" / ctx.model / f"{day}.parquet"


def forecast_inputs(ctx: Context, day: date) -> pd.DataFrame:
    """The landed forecast covariates of ``day``; :class:`MissingForecastInputs` naming the file when absent."""
    path = landing.forecast_inputs_path(ctx.dataset.name, day)
    if not path.is_file():
        raise MissingForecastInputs(f"{ctx.model}: no forecast covariates for {day}: {path} is missing")
    frame = pd.read_parquet(path)
    missing = [c for c in (ctx.dataset.timestamp, *ctx.dataset.known_future) if c not in frame.columns]
    if missing:
        raise MissingForecastInputs(f"{ctx.model}: {path} lacks the column(s) {', '.join(missing)}")
    return frame


def history_rows(ctx: Context, data_version: str, day: date) -> pd.DataFrame:
    """The stored rows the forecast of ``day`` reads (up to the end of the day before)."""
    snap = inputs.snapshot(ctx, data_version)
    back = inputs.history_days(ctx.spec, ctx.dataset)
    return snap.read_days(ctx.dataset, day - timedelta(days=back), day - timedelta(days=1))


def request(model: str, data_version: str, day: str | date) -> pd.DataFrame:
    """The raw frame the served model takes to forecast ``day``: what ``publish`` forecasts from."""
    ctx = Context.of(model)
    day = parse_day(day)
    return serving.input_frame(ctx.dataset, history_rows(ctx, data_version, day), forecast_inputs(ctx, day))


@changes_model
def publish(
    model: str, logical_date: str | date, ingest: IngestResult, *, run_info: RunInfo | dict | None = None
) -> PublishResult:
    """Write the champion's forecast of the day after ``logical_date`` (see the module docstring)."""
    ctx = Context.of(model, run_info)
    day = parse_day(logical_date)
    target_day = day + timedelta(days=1)
    path = forecast_path(ctx, target_day)
    base = {
        "model": model, "date": str(day), "day": str(target_day), "data_version": ingest["data_version"],
        "version": None, "rows": 0, "path": None, "plot_path": None, "issued_at": None, "reason": None,
    }  # fmt: skip
    if not inputs.day_ahead(ctx.spec):
        reason = f"{ctx.spec.architecture.type} is not a day-ahead model: only day-ahead forecasters publish"
        return PublishResult(**{**base, "status": "skipped", "reason": reason})  # type: ignore[typeddict-item]
    champion = registry.champion(model)
    if champion is None:
        return PublishResult(**{**base, "status": "skipped", "reason": "no champion yet"})  # type: ignore[typeddict-item]
    future = forecast_inputs(ctx, target_day)
    if path.is_file():
        old = pd.read_parquet(path)
        made_by = (old["model_version"].iloc[0], old["data_version"].iloc[0]) if len(old) else None
        if made_by == (champion, base["data_version"]):
            return PublishResult(  # type: ignore[typeddict-item]
                **{**base, "status": "unchanged", "version": champion, "rows": len(old), "path": str(path),
                   "plot_path": str(path.with_suffix(".png")), "issued_at": str(old["issued_at"].iloc[0])}
            )  # fmt: skip

    state = registry.load_state_of(model, champion)
    history = history_rows(ctx, ingest["data_version"], target_day)
    frame = serving.input_frame(ctx.dataset, history, future)
    ds, arch = ctx.dataset, ctx.spec.architecture
    try:
        forecast = serving.forecast_frame(state.model, state.stats or {}, ds, arch, frame, target_day)
    except windows.NoSample as exc:
        raise NotReady(str(exc)) from None
    issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    table = forecast.assign(
        date=str(target_day),
        model=model,
        model_version=champion,
        data_version=base["data_version"],
        issued_at=issued_at,
    )[["timestamp", "date", "forecast", "model", "model_version", "data_version", "issued_at"]]
    write_atomic(path, parquet_bytes(table))
    plot = path.with_suffix(".png")
    stamps = pd.to_datetime(history[ds.timestamp], utc=True)
    actual = history[stamps >= stamps.max() - pd.Timedelta(days=ACTUAL_DAYS)]
    fig = plots.published_forecast(
        pd.to_datetime(actual[ds.timestamp], utc=True), actual[str(ds.target)], table["timestamp"], table["forecast"],
        title=f"{model} v{champion}: forecast for {target_day} ({ds.target})",
    )  # fmt: skip
    fig.savefig(plot, dpi=80)
    registry.log_artifacts_of(model, champion, [path, plot], "forecasts")
    ctx.progress(f"published {model} v{champion} forecast for {target_day}: {len(table)} rows -> {path}")
    return PublishResult(  # type: ignore[typeddict-item]
        **{**base, "status": "published", "version": champion, "rows": len(table), "path": str(path),
           "plot_path": str(plot), "issued_at": issued_at}
    )  # fmt: skip


def read_forecast(model: str, day: str | date | None = None) -> pd.DataFrame:
    """The published forecast of ``day`` (default: the latest issued); :class:`NotReady` when there is none."""
    ctx = Context.of(model)
    folder = forecast_path(ctx, "x").parent
    if day is None:
        found = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if not found:
            raise NotReady(f"{model}: no forecast published yet under {folder}")
        path = found[-1]
    else:
        path = forecast_path(ctx, parse_day(day))
        if not path.is_file():
            raise NotReady(f"{model}: no forecast published for {day} ({path} is missing)")
    return pd.read_parquet(path).assign(path=str(path))
