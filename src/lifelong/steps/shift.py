"""Task boundaries on the daily path: whether a day opens a new regime, and its consolidation.

A daily forecaster learns one regime (task) after another. A day is a **task shift** when
``params.yaml``'s ``task_shift:`` block says so (:class:`~lifelong.config.TaskShiftSpec`): the
k-th consecutive day of severe drift, a calendar boundary, an explicit date, or a run triggered
by hand with ``task_shift``. The decision (:func:`reasons`) is a pure function of the block, the
day, the drift decisions recorded in MLflow for the days before it and the trigger, so a re-run
of a day decides the same.

On a shift, :func:`consolidate` folds the champion's exact Fisher on the closing regime (its
replay buffer and its last days of data) into the online Fisher with the model's strategy
(:func:`lifelong.steps.tasks.fold`, the task-addition DAG's own), closes the regime's task and
opens the next one in the state, and logs that state as an MLflow run, which ``update`` trains
from that day. The run is tagged on the champion as its pending consolidation: if that day's
candidate is rejected, the next updates (and a next shift) start from it all the same, until a
candidate built on it is promoted (:func:`starting_state`). For a replay-only strategy nothing is
folded: the consolidation opens the new task id and logs it. Nor is anything folded when the weights
have not moved since their last consolidation (a second shift while the first is pending, whose task
was never learned): folding them again would count their data twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import torch

from lifelong import registry
from lifelong.config import SEASON_STARTS, TaskShiftSpec, params_hash
from lifelong.learn.state import LearnerState
from lifelong.steps import inputs
from lifelong.steps.changes import changes_model
from lifelong.steps.context import Context, NotReady, RunInfo, parse_day
from lifelong.steps.contracts import ConsolidationResult, DriftResult, IngestResult, TaskShift
from lifelong.steps.tasks import at_anchors, fold


def reasons(spec: TaskShiftSpec, day: date, decisions: Sequence[str | None], *, manual: bool = False) -> list[str]:
    """Why the run of ``day`` is a task shift (empty: it is not).

    The run of ``day`` updates the champion on ``day - 1`` (test-then-train), so a calendar boundary
    (a season's first day, a listed month-day or date) names the **first day of the new task's data**
    and shifts the run of the day after: the champion consolidated there has learned the closing
    regime up to the boundary, and its update learns the boundary day first.

    ``decisions``: the drift decisions of the ``severe_days`` days before ``day`` and of ``day``
    itself, oldest first (``None`` where none was recorded). Severe drift makes a shift on the day
    its streak reaches ``severe_days``, once per streak.

    >>> spec = TaskShiftSpec(severe_days=2, seasons=True, dates=("2012-04-16",))
    >>> reasons(spec, date(2012, 3, 2), [None, None, "none"])
    ['season starts (03-01)']
    >>> reasons(spec, date(2012, 4, 3), ["none", "severe", "severe"])
    ['severe drift on 2 consecutive days']
    >>> reasons(spec, date(2012, 4, 4), ["severe", "severe", "severe"])  # the same streak: shifted already
    []
    >>> reasons(spec, date(2012, 4, 17), ["none", "none", "drift"], manual=True)
    ['date listed (2012-04-16)', 'triggered by hand']
    """
    found = []
    k = spec.severe_days
    if k is not None and len(decisions) >= k and all(d == "severe" for d in decisions[-k:]):
        before = decisions[-k - 1] if len(decisions) > k else None
        if before != "severe":
            found.append(f"severe drift on {k} consecutive days")
    first = day - timedelta(days=1)
    month_day = first.isoformat()[5:]
    if month_day in spec.boundaries:
        found.append(f"{'season starts' if spec.seasons and month_day in SEASON_STARTS else 'month-day'} ({month_day})")
    if first.isoformat() in spec.dates:
        found.append(f"date listed ({first})")
    if manual:
        found.append("triggered by hand")
    return found


def decide(ctx: Context, day: date, decision: str, *, manual: bool = False) -> TaskShift:
    """Whether ``day`` (whose drift decision is ``decision``) is a task shift, from the recorded decisions
    of the days before it (the drift check's MLflow record of each day, never in-memory state)."""
    spec = ctx.spec.task_shift
    k = spec.severe_days or 0
    earlier: list[str | None] = []
    if k and decision == "severe":  # a streak can only end today on a severe day
        for back in range(k, 0, -1):
            record = registry.drift_record(ctx.model, str(day - timedelta(days=back)))
            earlier.append(record.get("decision") if record else None)
    found = reasons(spec, day, [*earlier, decision], manual=manual)
    return TaskShift(due=bool(found), reasons=found)


@changes_model
def consolidate(
    model: str,
    logical_date: str | date,
    ingest: IngestResult,
    drift: DriftResult,
    *,
    run_info: RunInfo | dict | None = None,
) -> ConsolidationResult:
    """Close the champion's regime and open the next, on a task-shift day (see the module docstring).

    Starts from :func:`starting_state`: the champion's own state, or the consolidation an earlier shift
    left pending on it (no candidate of it promoted yet), whose open task is the one closed now, so a
    second shift opens exactly one more task. The run is tagged on the champion as its pending
    consolidation (:func:`lifelong.registry.pending_consolidation`) once complete.

    Idempotent per (model, day, champion, params): a retry reuses the run an earlier try logged (and
    its task ids) and sets the tag again, so a regime is never folded twice. Nothing is done without a
    champion, or when the champion already learned the day before (a re-run of a finished day).
    """
    ctx = Context.of(model, run_info)
    day, version = parse_day(logical_date), ingest["data_version"]
    champion = registry.champion(model)
    shift = drift.get("task_shift") or {"due": False, "reasons": []}
    base = {"model": model, "data_version": version, "date": str(day), "reasons": list(shift["reasons"])}
    if champion is None:
        return _nothing(base, None, "no champion yet: the first model opens task 0")
    run_key = f"{model}/shift/{day}/v{champion}/{params_hash(ctx.spec)}"
    state, pending = _base_state(ctx, champion, day)
    if state.trained_through and date.fromisoformat(state.trained_through) >= day - timedelta(days=1):
        return _nothing(base, champion, f"v{champion} learned {state.trained_through} already: the day was updated")
    existing = registry.find_state_run(model, run_key)
    if existing is not None:  # its tasks are the run's own: the champion's tag may name this very run now
        logged = registry.run_params(existing)
        registry.tag_version(model, champion, {registry.PENDING_CONSOLIDATION: existing})
        ctx.progress(f"{day}: the consolidation of v{champion} was logged already (run {existing}); reused")
        return ConsolidationResult(  # type: ignore[typeddict-item]
            **base, task=logged.get("opened_task"), champion=champion, consolidated=True,
            fisher_task=logged.get("fisher_task"), run_id=existing, duration_s=0.0, reused=True,
        )  # fmt: skip
    closing, opening = _task_ids(state)
    if pending:
        ctx.progress(f"{day}: v{champion} has a pending consolidation (run {pending}): closing its task {closing}")
    if at_anchors(state):  # e.g. a pending consolidation's weights: their Fisher is folded already
        x = y = None
        counts = {"replay": 0, "recent": 0}
        unlearned = f" (task {closing} was never learned: no candidate trained on its days was promoted)"
        why = "the weights have not moved since they were consolidated" + (unlearned if never_learned(state) else "")
    else:
        x, y, counts = closing_regime(ctx, state, version)
        why = None
    _open_task(state, day, closing, opening, shift["reasons"])
    folded = fold(
        ctx, state, x, y, champion=champion, closing=closing, opening=opening, run_key=run_key,
        params={"date": str(day), "reasons": "; ".join(shift["reasons"]), "opened_task": opening,
                "started_from": pending or f"v{champion}"},
        metrics={f"{k}_samples": float(v) for k, v in counts.items()},
        json_files={"tasks.json": {"tasks": state.tasks, "regimes": state.extra["regimes"]}},
        not_folded=why,
    )  # fmt: skip
    # after the run is complete: a crash before leaves no tag, and the re-run reuses the run by its key
    registry.tag_version(model, champion, {registry.PENDING_CONSOLIDATION: folded.run_id})
    fisher = (
        f"Fisher on {folded.fisher_samples} of {counts['replay']} replayed + {counts['recent']} recent samples"
        if why is None
        else f"nothing folded: {why}"
    )
    ctx.progress(f"{day}: task {closing} closed, task {opening} opened ({'; '.join(shift['reasons'])}); {fisher}")
    return ConsolidationResult(  # type: ignore[typeddict-item]
        **base, task=opening, champion=champion, consolidated=True, fisher_task=closing, run_id=folded.run_id,
        duration_s=folded.duration_s, reused=False, fisher_samples=folded.fisher_samples,
    )  # fmt: skip


def starting_state(ctx: Context, champion: str) -> tuple[LearnerState, str | None]:
    """The state the champion's next update or consolidation starts from, and the run it came from when
    that is a pending consolidation (else None).

    A regime boundary is a fact about the data, not about that day's candidate: the consolidation a
    task shift logged for champion v (:func:`consolidate`) is tagged on v and stays v's starting state
    until a candidate trained from it is promoted (a new champion, which records the shift itself),
    whatever the gate said of the candidates between. One registry call reads the tag
    (:func:`lifelong.registry.pending_consolidation`). After a rollback to an older version, that
    version's own tag applies: its pending consolidation if it has one (the shift it consolidated
    was never recorded by it, whatever the version rolled away from had learned), else its own state.
    """
    return _state_from(ctx, champion, registry.pending_consolidation(ctx.model, champion))


def _state_from(ctx: Context, champion: str, pending: str | None) -> tuple[LearnerState, str | None]:
    """The state of the run ``pending`` (a pending consolidation), else the champion's own."""
    if pending:
        return registry.load_state_from_run(pending, ctx.spec.architecture), pending
    return registry.load_state_of(ctx.model, champion, ctx.spec.architecture), None


def _base_state(ctx: Context, champion: str, day: date) -> tuple[LearnerState, str | None]:
    """What the consolidation of ``day`` starts from: as :func:`starting_state`, except when the champion's
    pending consolidation is of ``day`` itself (logged under other params: another run key), where it
    starts where that one started (its ``started_from`` param: a run id, or ``v<champion>`` for the
    champion's own state), so a re-run never opens a task twice."""
    pending = registry.pending_consolidation(ctx.model, champion)
    if pending:
        logged = registry.run_params(pending)
        if logged.get("date") == str(day):
            earlier = logged.get("started_from", "")
            pending = None if not earlier or earlier.startswith("v") else earlier
    return _state_from(ctx, champion, pending)


def _nothing(base: dict[str, Any], champion: str | None, why: str) -> ConsolidationResult:
    return ConsolidationResult(  # type: ignore[typeddict-item]
        **base, task=None, champion=champion, consolidated=False, fisher_task=None, run_id=None, duration_s=0.0,
        reused=False, reason=why,
    )  # fmt: skip


def current_task(state: LearnerState) -> str:
    """The task the daily path is learning: its newest regime of the model's own series ("0" before
    any shift). Not ``state.tasks[-1]``: after a forecaster's task addition that is the other series,
    while the daily updates go on learning the model's own.

    >>> state = LearnerState.__new__(LearnerState)
    >>> state.tasks, state.extra = ["0", "1", "nsw_demand"], {"regimes": [{"task": "0"}, {"task": "1"}]}
    >>> current_task(state)
    '1'
    """
    regimes = state.extra.get("regimes") or []
    if regimes and isinstance(regimes[-1], dict) and regimes[-1].get("task"):
        return str(regimes[-1]["task"])
    return state.tasks[-1] if state.tasks else "0"


def _task_ids(state: LearnerState) -> tuple[str, str]:
    """The task a daily state is learning ("0" before any shift) and the id of the next one."""
    closing = current_task(state)
    return closing, str(len(state.tasks) if state.tasks else 1)


def _open_task(state: LearnerState, day: date, closing: str, opening: str, why: Sequence[str]) -> None:
    """Close ``closing`` (its last day: the last one the model learned) and open ``opening`` from the day
    the run of ``day`` learns first (``day - 1``), in ``state.tasks`` and, with their date ranges, in
    ``state.extra["regimes"]``.

    A closing regime no version learned a day of (a pending consolidation's task, closed by a second
    shift before any candidate of the first was promoted) ends the day before the new one's first day."""
    regimes = [dict(r) for r in state.extra.get("regimes", [])]
    if not regimes:  # a state from before regimes were kept: task 0 from the first day it was judged on
        first = next((h["date"] for h in state.history if h.get("date")), None)
        regimes.append({"task": closing, "from": first, "to": None, "opened_by": []})
    unlearned = never_learned(state)
    regimes[-1]["to"] = str(day - timedelta(days=2)) if unlearned else state.trained_through
    if unlearned:
        regimes[-1]["learned"] = False
    regimes.append({"task": opening, "from": str(day - timedelta(days=1)), "to": None, "opened_by": list(why)})
    state.extra["regimes"] = regimes
    state.tasks = [*(state.tasks or [closing]), opening]


def never_learned(state: LearnerState) -> bool:
    """Whether the regime ``state`` has open was never learned: the state's last learned day is before the
    regime's first (a pending consolidation's task, no candidate trained on it promoted)."""
    regimes = state.extra.get("regimes") or []
    began = regimes[-1].get("from") if regimes and isinstance(regimes[-1], dict) else None
    learned = state.trained_through
    return bool(learned and began and date.fromisoformat(learned) < date.fromisoformat(began))


def closing_regime(ctx: Context, state: LearnerState, data_version: str) -> tuple[Any, Any, dict[str, int]]:
    """The samples the champion's Fisher is computed on: at most ``task_shift.replay_samples`` of its
    replay buffer (a fixed draw) and every sample of its last ``task_shift.recent_days`` learned days."""
    spec = ctx.spec.task_shift
    xs, ys, counts = [], [], {"replay": 0, "recent": 0}
    if state.buffer is not None and len(state.buffer) and spec.replay_samples:
        bx, by, _ = state.buffer.contents()
        if len(bx) > spec.replay_samples:
            pick = torch.randperm(len(bx), generator=torch.Generator().manual_seed(len(state.tasks)))
            bx, by = bx[pick[: spec.replay_samples]], by[pick[: spec.replay_samples]]
        xs.append(bx)
        ys.append(by)
        counts["replay"] = len(bx)
    if state.trained_through and spec.recent_days:
        last = date.fromisoformat(state.trained_through)
        snap = inputs.snapshot(ctx, data_version)
        stored = snap.days(ctx.dataset.name)
        days = [d for d in (last - timedelta(days=i) for i in range(spec.recent_days - 1, -1, -1)) if d in stored]
        if days:
            assert state.stats is not None, "a forecaster's state carries its normalisation statistics"
            rx, ry = inputs.forecast_days(ctx, snap, days, state.stats)
            xs.append(rx)
            ys.append(ry)
            counts["recent"] = len(rx)
    if not xs:
        raise NotReady("no samples of the closing regime: the champion has no replay buffer and no stored days")
    return torch.cat([x.float() for x in xs]), torch.cat([y.float().reshape(len(y), -1) for y in ys]), counts
