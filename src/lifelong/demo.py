"""The main job: 30 days of ``vic_elec`` through the daily DAG, then FordA -> FordB.

Run by ``make demo`` (``lifelong demo``). Everything goes through the real components:
landing files, Airflow DAG runs (``dag.test`` on the embedded SQLite metadata DB), GX,
DVC, MLflow. A second run continues where the first ended: it lands and runs the next
days, and skips the task additions that the champion already knows.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date, timedelta
from typing import Any

from lifelong.config import load_params, load_settings

FORECASTER = "demand_forecaster"
CLASSIFIER = "engine_classifier"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _last_reported_day(model: str) -> date | None:
    folder = load_settings().reports_dir / model / "daily"
    days = sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []
    return date.fromisoformat(days[-1]) if days else None


def _outcome(result: dict) -> str:
    tasks = result.get("tasks", {})
    if tasks.get("validate_ingest") == "failed":
        return "refused"
    if tasks.get("promote") == "success":
        return "promoted"
    if tasks.get("reject") == "success":
        return "rejected"
    if tasks.get("update") == "skipped":
        return "warming up"
    return result.get("state", "?")


def run_daily(days: int, start: date | None = None, *, shift_on: int | None = None) -> list[dict]:
    """Land ``days`` days of the forecaster's data and run the daily DAG for each, in order.

    ``shift_on``: the day (1-based) run with the DAG's ``task_shift`` param, as an operator marks a
    regime change by hand: the champion's regime is closed there and a new task opened.
    """
    from lifelong.airflow.embedded_runner import run_dag
    from lifelong.data import landing

    params = load_params()
    spec = params.model(FORECASTER)
    last = _last_reported_day(FORECASTER)
    first = start or (last + timedelta(days=1) if last else date.fromisoformat(spec.start_date))
    _say(f"landing {days} days of {spec.dataset} from {first} ...")
    landing.simulate(spec.dataset, first, days)
    dates = [str(first + timedelta(days=i)) for i in range(days)]
    rows: list[dict] = []

    def show(result: dict) -> None:
        summary = _day_summary(result["logical_date"])
        rows.append(summary)
        _say(
            f"  day {len(rows):>3}/{days}  {result['logical_date']}  {summary['outcome']:<11} "
            f"MAE {_mw(summary.get('mae'))}  weekly naive {_mw(summary.get('naive_mae'))}"
            f"  champion v{summary.get('champion') or '-'}"
        )
        if summary["consolidation"]:
            _say(f"              {_consolidated(summary['consolidation'])}")

    dag_id = f"lifelong_daily__{FORECASTER}"
    _say(f"running {dag_id} for {days} days through Airflow ...")
    on_result = lambda r: show({**r, **_with_outcome(r)})  # noqa: E731
    if shift_on is None or not 1 <= shift_on <= days:
        run_dag(dag_id, dates, on_result=on_result)
        return rows
    before, day, after = dates[: shift_on - 1], dates[shift_on - 1], dates[shift_on:]
    run_dag(dag_id, before, on_result=on_result)
    _say(f"  {day}: a regime change marked by hand (Trigger DAG w/ config: task_shift=true)")
    run_dag(dag_id, [day], conf={"task_shift": True}, on_result=on_result)
    run_dag(dag_id, after, on_result=on_result)
    return rows


def _consolidated(c: dict) -> str:
    """One line on a consolidation: which regime closed, what opened it, what was folded."""
    why = "; ".join(c.get("reasons") or []) or "task shift"
    fisher = (
        f"exact Fisher on {c['fisher_samples']} samples folded in"
        if c.get("fisher_samples")
        else "no Fisher (the strategy has no EWC penalty)"
    )
    return f"consolidated v{c['champion']}: task {c['fisher_task']} closed, task {c['task']} opened ({why}); {fisher}"


def _mw(value: float | None) -> str:
    return f"{value:8.1f}" if value is not None else f"{'-':>8}"


def _with_outcome(result: dict) -> dict:
    return {"outcome": _outcome(result)}


def _day_summary(day: str) -> dict:
    path = load_settings().reports_dir / FORECASTER / "daily" / f"{day}.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    evaluation = report.get("evaluate") or {}
    candidate = evaluation.get("candidate") or {}
    gate = report.get("gate") or {}
    outcome = "promoted" if report.get("promote") else "rejected" if report.get("reject") else "warming up"
    if report.get("validate_ingest") is None:
        outcome = "refused"
    consolidation = report.get("consolidate") or {}
    return {
        "date": day,
        "outcome": outcome,
        "consolidation": consolidation if consolidation.get("consolidated") else None,
        "mae": candidate.get("mae"),
        "naive_mae": candidate.get("weekly_naive_mae"),
        "champion_mae": (evaluation.get("champion") or {}).get("mae"),
        "champion": report.get("champion"),
        "reason": gate.get("reason"),
    }


def run_tasks(tasks: list[str], epochs: int | None) -> list[dict]:
    """Land the classifier's tasks and run the task-addition DAG for each one not yet learned."""
    from lifelong import registry
    from lifelong.airflow.embedded_runner import run_dag
    from lifelong.data import landing

    spec = load_params().model(CLASSIFIER)
    landing.land_tasks(spec.dataset, tasks)
    known: list[str] = []
    champion = registry.champion(CLASSIFIER)
    if champion:
        known = registry.load_state_of(CLASSIFIER, champion).tasks
    results = []
    for task in tasks:
        if task in known:
            _say(f"  {CLASSIFIER} already knows {task}: skipped")
            continue
        _say(f"running lifelong_add_task for {task} ({spec.strategy.name}) through Airflow ...")
        started = time.perf_counter()
        conf = {"model": CLASSIFIER, "task": task, "strategy": spec.strategy.name, "epochs": epochs}
        result = run_dag("lifelong_add_task", [None], conf=conf)[0]
        result["seconds"] = round(time.perf_counter() - started, 1)
        _say(f"  {task}: {_outcome(result)} in {result['seconds']} s")
        results.append(result)
    return results


def summary(daily: list[dict]) -> str:
    """The closing table: days, promotions, rejections, MAE trend, task shifts and the forecaster's task
    matrix over its regimes, the classifier's accuracy matrix, where to look."""
    from lifelong import registry

    settings = load_settings()
    lines = ["", "lifelong demo: summary", "=" * 60]
    outcomes = [d["outcome"] for d in daily]
    lines.append(
        f"days run: {len(daily)}   promoted: {outcomes.count('promoted')}   "
        f"rejected: {outcomes.count('rejected')}   warming up: {outcomes.count('warming up')}   "
        f"refused: {outcomes.count('refused')}"
    )
    maes = [d for d in daily if d.get("mae") is not None]
    if maes:
        lines.append("day-ahead MAE (candidate, MW) beside copying last week (weekly naive, same targets):")
        step = max(1, len(maes) // 10)
        for d in maes[::step] + ([maes[-1]] if (len(maes) - 1) % step else []):
            lines.append(f"  {d['date']}  {_mw(d['mae'])}  naive {_mw(d.get('naive_mae'))}  {d['outcome']}")
        both = [d for d in maes if d.get("naive_mae")]
        if both:
            model, naive = (sum(d[k] for d in both) / len(both) for k in ("mae", "naive_mae"))
            lines.append(
                f"  over the {len(both)} days with both: model {model:.1f} MW, weekly naive {naive:.1f} MW "
                f"(MASE {model / naive:.3f})"
            )
    shifts = [d for d in daily if d.get("consolidation")]
    strategy = load_params().model(FORECASTER).strategy.name
    lines.append(f"task shifts of {FORECASTER} (strategy {strategy}): {len(shifts) or 'none'}")
    for d in shifts:
        lines.append(f"  {d['date']}  {_consolidated(d['consolidation'])}")
    lines += _forecaster_task_matrix(shifts)
    champion = registry.champion(CLASSIFIER)
    if champion:
        matrix = registry.read_json(CLASSIFIER, champion, "eval/accuracy_matrix.json")
        lines.append(f"accuracy matrix of {CLASSIFIER} v{champion} (row: after learning; column: task):")
        lines.append("  " + " " * 12 + "".join(f"{t:>9}" for t in matrix["tasks"]))
        for task, row in zip(matrix["tasks"], matrix["acc_matrix"], strict=False):
            lines.append(f"  {task:<12}" + "".join(f"{v:9.3f}" for v in row))
        if matrix.get("majority_accuracy"):  # versions logged before the baseline was recorded have none
            lines.append(f"  {'majority':<12}" + "".join(f"{v:9.3f}" for v in matrix["majority_accuracy"]))
    lines += _published_forecast(settings)
    lines += [
        "where to look:",
        f"  MLflow:   {settings.mlflow_tracking_uri}  (make ui -> http://127.0.0.1:5000)",
        "  Airflow:  make ui -> http://127.0.0.1:8080 (admin / see the printed password)",
        f"  reports:  {settings.reports_dir}",
        f"  history:  lifelong history {FORECASTER}",
    ]
    return "\n".join(lines)


def _forecaster_task_matrix(shifts: list[dict]) -> list[str]:
    """The forecaster's task matrix over its regimes (:mod:`lifelong.steps.regime_matrix`), or one line
    when it has a single task so far; nothing before its first champion.

    A shift of ``shifts`` whose task the champion does not record is named: pending when the champion's
    pending consolidation (:func:`lifelong.steps.shift.starting_state`) opens it (no candidate trained
    from it promoted yet: the next updates start from it), else not kept (e.g. the champion was rolled
    back to a version from before it)."""
    from lifelong import registry
    from lifelong.errors import LifelongError
    from lifelong.steps import regime_matrix

    champion = registry.champion(FORECASTER)
    if champion is None:
        return []
    try:
        found = regime_matrix.regime_matrix(FORECASTER)
    except LifelongError as exc:  # e.g. the champion's data version is not in the local cache
        return [f"task matrix of {FORECASTER}: not computed ({exc})"]
    lines = regime_matrix.format_matrix(found, unit="MW")
    opened = {first for first, _ in found["ranges"]}
    missing = [d for d in shifts if str(date.fromisoformat(d["date"]) - timedelta(days=1)) not in opened]
    pending = registry.pending_consolidation(FORECASTER, champion) if missing and found["tasks"] else None
    in_pending = set()
    if pending:
        regimes = registry.load_state_from_run(pending).extra.get("regimes") or []
        in_pending = {str(r.get("from")) for r in regimes if isinstance(r, dict)}
    for d in missing if found["tasks"] else []:  # a shift on day D opens its task from D - 1
        task = d["consolidation"]["task"]
        if str(date.fromisoformat(d["date"]) - timedelta(days=1)) in in_pending:
            lines.append(
                f"  the shift of {d['date']} (task {task}) is pending: that day's candidate was {d['outcome']}; the "
                f"updates of v{champion} start from its consolidation, and the first one promoted records it"
            )
        else:
            lines.append(
                f"  the shift of {d['date']} (task {task}) was not kept: the champion v{champion} records no such "
                f"task and has no consolidation of it pending (still on task {found['tasks'][-1]})"
            )
    return lines


def _published_forecast(settings: Any) -> list[str]:
    """Tomorrow's forecast as the last daily run published it: first and last rows, and the table's path."""
    import pandas as pd

    folder = settings.home / "forecasts" / FORECASTER
    tables = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not tables:
        return ["published forecast: none yet (no champion, or its forecast inputs were not landed)"]
    frame = pd.read_parquet(tables[-1])
    target = load_params().dataset(load_params().model(FORECASTER).dataset).target
    version, data = frame["model_version"].iloc[0], str(frame["data_version"].iloc[0])[:12]
    lines = [
        f"published forecast of {FORECASTER} for {tables[-1].stem} ({len(frame)} half-hours, {target} in the "
        f"data's units: MW on vic_elec), by v{version} on data {data}:"
    ]
    for _, row in pd.concat([frame.head(2), frame.tail(2)]).iterrows():
        lines.append(f"  {row['timestamp']}  {row['forecast']:9.1f}")
    lines.append(f"  table: {folder}/<day>.parquet (this one: {tables[-1].name}); also: lifelong forecast {FORECASTER}")
    return lines


def main(days: int = 30, tasks: tuple[str, ...] = ("FordA", "FordB"), epochs: int | None = None) -> dict[str, Any]:
    from lifelong.data import store

    started = time.perf_counter()
    store.ensure_repo()
    # a regime change marked by hand four fifths in, once the forecaster has a champion (after its warm-up)
    warmup = load_params().model(FORECASTER).warmup_days
    daily = run_daily(days, shift_on=days * 4 // 5 if days * 4 // 5 > warmup + 1 else None)
    task_results = run_tasks(list(tasks), epochs)
    print(summary(daily))
    return {"days": len(daily), "tasks": len(task_results), "seconds": round(time.perf_counter() - started, 1)}
