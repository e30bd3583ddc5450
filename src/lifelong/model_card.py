"""A model card per version: the few lines a reviewer reads on the MLflow version page.

Pure text: :func:`render` takes the facts, :func:`facts_of` finds them in what MLflow holds
for a version (its tags, its run's params and metrics, see ``registry.version_record``).
The card is written when the gate's decision is recorded (promote or reject) and rewritten
when a rollback demotes the version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# the error a card shows for a forecaster, and the accuracy for a classifier, in this order
_ERRORS = ("mae", "rmse", "smape")


@dataclass(frozen=True)
class CardFacts:
    """What one version's card says."""

    model: str
    version: str
    kind: str | None = None  # bootstrap | update | task
    dataset: str | None = None
    data_version: str | None = None
    train_days: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    strategy: str | None = None
    status: str | None = None  # approved | rejected | rolled_back
    reason: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    replaced: str | None = None
    note: str | None = None


def _days(days: tuple[str, ...]) -> str:
    if not days:
        return "n/a"
    if len(days) == 1:
        return days[0]
    return f"{days[0]} .. {days[-1]} ({len(days)} days)"


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1 else f"{value:,.1f}"


def render(facts: CardFacts) -> str:
    """The card as Markdown lines.

    >>> print(render(CardFacts(
    ...     model="demand_forecaster", version="5", kind="update", dataset="vic_elec",
    ...     data_version="3f2a9c1d0e5b7a68", train_days=("2012-03-04",), tasks=("Demand",),
    ...     strategy="replay", status="approved", reason="approved: mae -2.1% vs v4",
    ...     scores={"mae": 212.5}, baselines={"naive_mae": 305.0}, replaced="4")))
    **demand_forecaster v5** (update)
    - data: vic_elec, trained on 2012-03-04; data version 3f2a9c1d0e5b
    - task(s): Demand; strategy: replay
    - gate: approved (approved: mae -2.1% vs v4)
    - error: mae 212.5; naive_mae 305.0
    - replaced: v4
    """
    lines = [f"**{facts.model} v{facts.version}**" + (f" ({facts.kind})" if facts.kind else "")]
    trained = _days(facts.train_days) if facts.train_days or not facts.tasks else f"task {facts.tasks[-1]}"
    data = f"- data: {facts.dataset or 'n/a'}, trained on {trained}"
    lines.append(data + (f"; data version {facts.data_version[:12]}" if facts.data_version else ""))
    lines.append(f"- task(s): {', '.join(facts.tasks) or 'n/a'}; strategy: {facts.strategy or 'n/a'}")
    if facts.status:
        lines.append(f"- gate: {facts.status}" + (f" ({facts.reason})" if facts.reason else ""))
    figures = [f"{k} {_number(v)}" for k, v in facts.scores.items()]
    figures += [f"{k} {_number(v)}" for k, v in facts.baselines.items()]
    lines.append(f"- error: {'; '.join(figures)}" if figures else "- error: not measured")
    if facts.status != "rejected":
        lines.append(f"- replaced: v{facts.replaced}" if facts.replaced else "- replaced: nothing (first champion)")
    if facts.note:
        lines.append(f"- {facts.note}")
    return "\n".join(lines)


def _json_list(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        return (text,)
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def facts_of(model: str, version: str, record: dict[str, Any], **decided: Any) -> CardFacts:
    """The facts of ``version`` from its MLflow record (tags, params, metrics) plus the decision.

    The evaluation's figures (``eval_*``) win over the ones the update logged; naive baselines
    are any metric named ``naive_*`` (or a classifier's ``majority_*``), shown beside the model's error
    when the evaluation has them.

    >>> record = {"tags": {"kind": "update", "dataset": "vic_elec", "data_version": "ab"},
    ...           "params": {"train_days": '["2012-03-04"]', "model.strategy.name": "replay"},
    ...           "metrics": {"mae": 9.0, "eval_mae": 8.0, "eval_naive_mae": 10.0, "duration_s": 1.0}}
    >>> f = facts_of("m", "2", record, status="rejected", reason="mae +9%")
    >>> f.scores, f.baselines, f.train_days
    ({'mae': 8.0}, {'naive_mae': 10.0}, ('2012-03-04',))
    """
    tags, params, metrics = record.get("tags", {}), record.get("params", {}), record.get("metrics", {})
    measured = {**metrics, **{k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith("eval_")}}
    scores = {k: float(measured[k]) for k in _ERRORS if k in measured}
    naive = ("naive_", "majority_")  # the forecasters' naive forecasts, the classifiers' majority class
    if not scores:
        scores = {k: float(v) for k, v in measured.items() if "accuracy" in k and "/" not in k}
        scores = {k: v for k, v in scores.items() if not k.startswith(naive)}
    baselines = {k: float(v) for k, v in sorted(measured.items()) if k.startswith(naive) and "/" not in k}
    if "tasks" not in decided:  # a task addition names its task; a forecaster's caller names its target
        decided["tasks"] = (params["task"],) if params.get("task") else ()
    return CardFacts(
        model=model,
        version=str(version),
        kind=tags.get("kind"),
        dataset=tags.get("dataset"),
        data_version=tags.get("data_version"),
        train_days=_json_list(params.get("train_days")),
        strategy=params.get("model.strategy.name"),
        scores=scores,
        baselines=baselines,
        **decided,
    )
