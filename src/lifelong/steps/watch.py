"""The daily watch: the serving champion against the version before it, and the automatic rollback.

Every day, after the decision, the champion and a *shadow* are scored on the new day's
windows, which neither has trained on. The shadow is the version before the champion (the
``previous`` alias), or, while a streak of worse days runs, the last version the streak
started from: a champion promoted on top of a worse one is still compared with the version
the worse line replaced. When the champion's error is above the shadow's by more than
``rollback.tolerance_pct`` on ``rollback.days`` consecutive days, ``champion`` moves back to
the shadow (an audit event with ``trigger=auto:...`` and the figures), the demoted version is
tagged ``validation_status=rolled_back``, an alert goes out, and the next update continues
from the restored version (``update`` starts from the champion).

The count comes from a durable record: one MLflow run per (model, day) in the experiment
``lifelong-watch`` (see :func:`lifelong.registry.record_watch`), each holding its day's streak.
A re-run of a day rewrites its record and counts once; the rollback is keyed by (model, day),
so a re-run never rolls back twice.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from lifelong import audit, notify, registry
from lifelong.config import ConfigError
from lifelong.data.snapshot import Snapshot
from lifelong.steps import daily, decide, inputs
from lifelong.steps.changes import changes_model
from lifelong.steps.context import Context, RunInfo, parse_day
from lifelong.steps.contracts import IngestResult, Scores, WatchResult


@changes_model
def watch(
    model: str, logical_date: str | date, ingest: IngestResult, *, run_info: RunInfo | dict | None = None
) -> WatchResult:
    """Score champion and shadow on the day ``ingest`` stored; roll back after ``days`` worse days."""
    ctx = Context.of(model, run_info)
    spec = ctx.spec.rollback
    day = parse_day(logical_date)
    base: dict[str, Any] = {
        "model": model, "date": str(day), "data_version": ingest["data_version"], "metric": spec.metric,
        "tolerance_pct": spec.tolerance_pct, "days": spec.days, "champion": None, "shadow": None,
        "champion_score": None, "shadow_score": None, "excess_pct": None, "streak": 0, "rollback": None,
    }  # fmt: skip
    if not spec.enabled or ctx.dataset.kind != "forecast":
        return WatchResult(**{**base, "status": "disabled"})  # type: ignore[typeddict-item]
    done = registry.audit_event(rollback_key(model, day))
    if done is not None:  # a re-run of a day that rolled back: the record of that day stands
        return _done(base, model, day, done)
    champion = registry.champion(model)
    if champion is None:
        return WatchResult(**{**base, "status": "no_champion"})  # type: ignore[typeddict-item]
    yesterday = registry.watch_record(model, str(day - timedelta(days=1)))
    shadow = _shadow(model, champion, yesterday)
    if shadow is None:
        return WatchResult(**{**base, "status": "no_shadow", "champion": champion})  # type: ignore[typeddict-item]

    snap = inputs.snapshot(ctx, ingest["data_version"])
    champ_scores, shadow_scores = _scores(ctx, snap, day, champion), _scores(ctx, snap, day, shadow)
    if spec.metric not in champ_scores:
        raise ConfigError(f"models.{model}.rollback.metric: {spec.metric!r} is not one of {', '.join(champ_scores)}")
    mine, theirs = champ_scores[spec.metric], shadow_scores[spec.metric]
    excess = 100.0 * (mine - theirs) / theirs if theirs > 0 else 0.0
    worse = excess > spec.tolerance_pct
    streak = _streak(yesterday, worse, shadow)
    result: dict[str, Any] = {
        **base, "status": "worse" if worse else "ok", "champion": champion, "shadow": shadow,
        "champion_score": mine, "shadow_score": theirs, "excess_pct": round(excess, 3), "streak": streak,
    }  # fmt: skip
    if worse and streak >= spec.days:
        result["rollback"] = _roll_back(ctx, day, result)
        result["status"] = "rolled_back"
    registry.record_watch(
        model,
        str(day),
        {**{k: result[k] for k in ("status", "champion", "shadow", "streak", "metric", "data_version")},
         "worse": str(worse).lower(), "champion_run_id": _run_of(model, champion),
         "figures": f"{mine:.6g} vs {theirs:.6g} ({excess:+.2f}%)"},
        {"champion": mine, "shadow": theirs, "excess_pct": excess},
    )  # fmt: skip
    ctx.progress(
        f"watch {day}: v{champion} {spec.metric} {mine:.4g} vs v{shadow} {theirs:.4g} ({excess:+.2f}%, "
        f"tolerance {spec.tolerance_pct}%): {result['status']}, {streak}/{spec.days} days"
    )
    return WatchResult(**result)  # type: ignore[typeddict-item]


def rollback_key(model: str, day: date) -> str:
    """The audit key of the automatic rollback of ``model`` on ``day``: at most one a day."""
    return audit.event_key("rollback", model, "auto", str(day))


def _shadow(model: str, champion: str, yesterday: dict[str, str] | None) -> str | None:
    """The version the champion is judged against: the streak's shadow while one runs, else ``previous``."""
    previous = registry.previous(model)
    if _running(yesterday):
        anchor = yesterday.get("shadow") or None  # type: ignore[union-attr]
        # the same champion, or one promoted on top of yesterday's worse champion
        same_line = yesterday.get("champion") in (champion, previous)  # type: ignore[union-attr]
        if anchor and anchor != champion and same_line and registry.status_of(model, anchor) == "approved":
            return anchor
    return previous if previous and previous != champion else None


def _streak(yesterday: dict[str, str] | None, worse: bool, shadow: str) -> int:
    """Consecutive calendar days (this one included) worse than ``shadow``; a day not watched breaks it."""
    if not worse:
        return 0
    if _running(yesterday) and yesterday.get("shadow") == shadow:  # type: ignore[union-attr]
        return int(yesterday.get("streak") or 0) + 1  # type: ignore[union-attr]
    return 1


def _running(record: dict[str, str] | None) -> bool:
    """Whether a day's record leaves a streak running (worse, and not ended by a rollback)."""
    return bool(record) and record.get("worse") == "true" and record.get("status") != "rolled_back"  # type: ignore[union-attr]


def _scores(ctx: Context, snap: Snapshot, day: date, version: str) -> Scores:
    return daily.score_day(ctx, snap, registry.load_state_of(ctx.model, version, ctx.spec.architecture), day)


def _run_of(model: str, version: str) -> str | None:
    return registry.version_record(model, version)["tags"].get("run_id")


def _roll_back(ctx: Context, day: date, result: dict[str, Any]) -> dict:
    """Move ``champion`` back to the shadow, with the streak's figures in the audit event and the alert."""
    spec = ctx.spec.rollback
    champion, shadow, metric = result["champion"], result["shadow"], spec.metric
    figures = [f"{day} {result['champion_score']:.4g} vs {result['shadow_score']:.4g} ({result['excess_pct']:+.1f}%)"]
    for back in range(1, result["streak"]):
        earlier = registry.watch_record(ctx.model, str(day - timedelta(days=back)))
        if earlier:
            figures.insert(0, f"{day - timedelta(days=back)} {earlier.get('figures', '?')}")
    reason = (
        f"auto rollback: v{champion} {metric} above v{shadow} by more than {spec.tolerance_pct}% on "
        f"{result['streak']} consecutive days: {'; '.join(figures)}"
    )
    outcome = registry.rollback(
        ctx.model, to=shadow, trigger=f"auto:{ctx.run.trigger}", reason=reason, key=rollback_key(ctx.model, day)
    )
    decide.demoted(ctx, outcome, reason)
    if outcome.get("changed"):
        notify.alert(
            "rollback", model=ctx.model, date=str(day), version=shadow, reason=reason,
            figures={"metric": metric, "demoted": champion, "restored": shadow, "champion": result["champion_score"],
                     "shadow": result["shadow_score"], "excess_pct": result["excess_pct"], "streak": result["streak"],
                     "days": spec.days, "tolerance_pct": spec.tolerance_pct},
            dag_run=notify.run_label(ctx.run),
        )  # fmt: skip
    return outcome


def _done(base: dict[str, Any], model: str, day: date, event: dict[str, Any]) -> WatchResult:
    record = registry.watch_record(model, str(day)) or {}
    outcome = {**event, "champion": event["version"], "changed": False}
    return WatchResult(  # type: ignore[typeddict-item]
        **{
            **base, "status": "rolled_back", "champion": event["from"], "shadow": event["version"],
            "streak": int(record.get("streak") or 0), "rollback": outcome,
        }
    )  # fmt: skip
