"""Does a forecaster's new series need its own normalisation? The model's statistics vs per-task ones.

``python -m bench.forecast_task_stats`` prints a markdown table. The setting is the one of
``tests/steps/test_forecast_task.py``: the quick day-ahead forecaster (1-day lag, half-day input)
trained by the daily steps on 3 days of vic_elec (March 2012), then taught a SYNTHETIC second
region over 10 days (vic_elec's demand of the same days scaled and shifted) with ewc+replay:

* ``model``: the task normalised with the model's own statistics;
* ``per-task``: the task's own mean/std (fitted on its train days) for training and scoring it;
  the first task keeps the model's (what the pipeline does: ``forecast_tasks.fit_task_stats``).

Reported: the day-ahead MAE (MW) on the new task's test days and on the first task's, beside the
weekly naive's on the same days, mean and sd over 3 training seeds from the same consolidated state.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import statistics
import sys
from pathlib import Path

from bench.common import isolated_project, md_table

MODEL, DATASET, TASK = "demand_forecaster", "vic_elec", "region"
FIRST_DAY, OWN_DAYS, TASK_DAYS = dt.date(2012, 3, 1), 4, 10
SEEDS = (0, 1, 2)
CASES = ((0.6, 400.0), (0.3, 0.0))  # (scale, shift) of the synthetic region


def _edit(raw: dict) -> None:
    spec = raw["models"][MODEL]
    raw["datasets"][DATASET]["lags"] = ["1d"]
    spec["architecture"].update({"in_channels": spec["architecture"]["in_channels"] - 1, "length": 74})
    spec.update(warmup_days=OWN_DAYS - 1)
    spec["train"]["epochs"] = 4
    region = {**copy.deepcopy(raw["datasets"][DATASET]), "loader": "raw/region.csv"}
    region["ranges"] = {**region["ranges"], "Demand": [0.0, 15000.0]}
    raw["datasets"][TASK] = region


def _write_region(project: Path, scale: float, shift: float) -> None:
    from lifelong.config import load_params
    from lifelong.data import schema
    from lifelong.data.sources import load_source

    spec = load_params().dataset(DATASET)
    source = load_source(spec)
    days = schema.row_dates(spec, source)
    end = FIRST_DAY + dt.timedelta(days=TASK_DAYS - 1)
    rows = source[(days >= str(FIRST_DAY)) & (days <= str(end))].copy()
    rows["Demand"] = rows["Demand"] * scale + shift
    rows[spec.timestamp] = rows[spec.timestamp].map(lambda t: t.isoformat())
    (project / "raw").mkdir(exist_ok=True)
    rows.to_csv(project / "raw" / "region.csv", index=False)


def _case(scale: float, shift: float) -> list[list[str]]:
    from lifelong import registry
    from lifelong.data import landing, store
    from lifelong.learn import train
    from lifelong.learn.models import task_kind
    from lifelong.learn.strategies import make_strategy
    from lifelong.steps import daily, decide, forecast_tasks, inputs, tasks
    from lifelong.steps.context import Context

    with isolated_project(_edit) as project:
        store.ensure_repo()
        _write_region(project, scale, shift)
        landing.simulate(DATASET, FIRST_DAY, OWN_DAYS)
        ingests = [daily.validate_ingest(MODEL, FIRST_DAY + dt.timedelta(days=i)) for i in range(OWN_DAYS)]
        day = FIRST_DAY + dt.timedelta(days=OWN_DAYS - 1)
        candidate = daily.update(MODEL, day, ingests[-1])
        decide.promote(MODEL, decide.gate(MODEL, daily.evaluate(MODEL, day, candidate)))
        landing.simulate(TASK, FIRST_DAY, TASK_DAYS)
        end = FIRST_DAY + dt.timedelta(days=TASK_DAYS - 1)
        ingest = tasks.ingest_task(MODEL, TASK, start=str(FIRST_DAY), end=str(end))
        overrides = {"strategy": "ewc+replay"}
        consolidation = tasks.consolidate(MODEL, TASK, ingest, overrides=overrides)
        ctx = Context.of(MODEL).with_spec(tasks.task_spec(Context.of(MODEL).spec, overrides))
        snap = inputs.snapshot(ctx, ingest["data_version"])
        found: dict[str, dict[str, list[float]]] = {"model": {}, "per-task": {}}
        naive: dict[str, float | None] = {}
        for variant in found:
            for seed in SEEDS:
                state = registry.load_state_from_run(consolidation["run_id"], ctx.spec.architecture)
                forecast_tasks.fit_task_stats(ctx, snap, state, TASK)  # what learn_task does
                if variant == "model":
                    state.extra[forecast_tasks.TASK_STATS][TASK] = state.stats
                x, y = forecast_tasks.task_arrays(ctx, snap, TASK, "train", state)
                spec = dataclasses.replace(ctx.train_spec(), seed=seed)
                strategy = make_strategy(ctx.spec.strategy, task_kind(ctx.spec.architecture), state)
                train.fit(state, x, y, train=spec, strategy=strategy, task=1)
                new = forecast_tasks.task_scores(ctx, snap, state, TASK)
                old = forecast_tasks.task_scores(ctx, snap, state, DATASET)
                found[variant].setdefault("new", []).append(new["mae"])
                found[variant].setdefault("old", []).append(old["mae"])
                naive["new"] = new.get("weekly_naive_mae")
        rows = []
        for variant, values in found.items():
            cells = [f"{statistics.mean(values[k]):.0f} ± {statistics.stdev(values[k]):.0f}" for k in ("new", "old")]
            rows.append([f"x{scale} {shift:+.0f} MW", variant, *cells, f"{naive['new']:.0f}"])
        return rows


def main(argv: list[str] | None = None) -> str:
    rows = [row for scale, shift in CASES for row in _case(scale, shift)]
    header = ["synthetic region", "normalisation", "new task MAE", "first task MAE", "new task weekly naive MAE"]
    text = md_table(header, rows)
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
