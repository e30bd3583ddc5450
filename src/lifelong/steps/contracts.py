"""The typed results that travel between steps (through XCom in the DAGs, as calls in ``run``).

Each is a plain dict on the wire (JSON types only), typed here so that a reader and a type
checker see what a step hands the next one. The data version a step worked on travels in
its result: a later step reads exactly that version, never "the latest".
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

Scores = dict[str, float]


class IngestResult(TypedDict):
    """``validate_ingest`` / ``ingest_task``: what was stored, and the data version that records it."""

    dataset: str
    partition: str
    rows: int
    data_version: str
    report_path: str
    data_docs_path: str
    replaced: bool
    changed: bool
    validation_s: float


class TaskShift(TypedDict):
    """Whether the day closes the model's regime and opens the next (``lifelong.steps.shift``), and why."""

    due: bool
    reasons: list[str]


class DriftResult(TypedDict):
    """``check_drift``: the decision, its reasons, the per-feature tests, where the report is, and
    whether the day is a task shift (the daily DAG's consolidate branch)."""

    model: str
    date: str
    data_version: str
    decision: str  # none | drift | severe
    reasons: list[str]
    features: list[dict[str, Any]]
    error: dict[str, Any] | None
    report_path: str | None
    plot_path: str | None
    task_shift: NotRequired[TaskShift]
    run_id: NotRequired[str | None]  # the day's record in the MLflow experiment lifelong-drift


class CandidateResult(TypedDict):
    """``update``: the registered candidate version and what it was trained on."""

    model: str
    version: str
    run_id: str
    kind: str  # bootstrap | update
    date: str
    data_version: str
    train_days: list[str]
    reused: bool
    drift: str | None


class EvaluationResult(TypedDict):
    """``evaluate``: candidate and champion scored on the same data."""

    model: str
    version: str
    champion_version: str | None
    data_version: str
    candidate: Scores
    champion: Scores | None


class ConsolidationResult(TypedDict):
    """``consolidate``: the champion with its latest task folded into the online Fisher (an MLflow run).

    ``task``: the task learned next (on the daily path, the regime opened; None when nothing was done,
    ``reason`` says why). ``fisher_samples``: the samples the Fisher was computed on (0 without EWC).
    """

    model: str
    task: str | None
    champion: str | None
    consolidated: bool
    fisher_task: str | None
    run_id: str | None
    data_version: str
    duration_s: float
    date: NotRequired[str]
    reasons: NotRequired[list[str]]
    reused: NotRequired[bool]
    fisher_samples: NotRequired[int]
    reason: NotRequired[str]


class TaskCandidateResult(TypedDict):
    """``learn_task``: the registered candidate that learned ``task``."""

    model: str
    task: str
    version: str
    run_id: str
    data_version: str
    reused: bool


class TaskEvaluationResult(TypedDict):
    """``evaluate_all``: the new row of the task matrix and the scores the gate judges.

    ``metric``: ``accuracy`` (classifiers: ``acc_matrix``, ``average_accuracy``, ``backward_transfer``,
    negative = forgetting, and ``majority_accuracy``: each task's majority-class accuracy on the same
    test recordings) or ``mae`` (forecasters: ``average_mae``, ``backward_transfer_mae``,
    positive = forgetting, and ``naive_mae``: the weekly naive's MAE of each task on the same days).
    """

    model: str
    version: str
    champion_version: str | None
    data_version: str
    tasks: list[str]
    metric: str
    matrix: list[list[float]]
    candidate: Scores
    champion: Scores | None
    acc_matrix: NotRequired[list[list[float]]]
    average_accuracy: NotRequired[float]
    backward_transfer: NotRequired[float]
    average_mae: NotRequired[float]
    backward_transfer_mae: NotRequired[float]
    naive_mae: NotRequired[dict[str, float | None]]
    majority_accuracy: NotRequired[dict[str, float]]


class DecisionResult(TypedDict):
    """``gate``: approve or not, why, and the change of every shared metric.

    ``decision_sha256``: the digest of the decision as recorded on the version
    (:mod:`lifelong.decisions`), which is what ``promote`` trusts.
    """

    model: str
    version: str
    champion_version: str | None
    approved: bool
    reason: str
    deltas: dict[str, float]
    decision_sha256: NotRequired[str]


class RegistryOutcome(TypedDict, total=False):
    """``promote`` / ``reject`` / ``rollback``: the audit event and where the aliases point now."""

    event: str | None
    model: str
    version: str | None
    champion: str | None
    previous: str | None
    changed: bool
    reason: str
    trigger: str


class ReportResult(TypedDict, total=False):
    """``report``: the day's summary, as written to ``<home>/reports/<model>/daily/<date>.json``."""

    model: str
    date: str
    champion: str | None
    written_at: str
    path: str


class WatchResult(TypedDict):
    """``watch``: the serving champion against the version before it (in shadow) on the new day.

    ``status``: disabled | no_champion | no_shadow | ok | worse | rolled_back. ``streak`` counts
    the consecutive days (this one included) the champion was worse than ``shadow`` by more than
    the tolerance; at ``days`` the champion is rolled back to ``shadow`` (``rollback``).
    """

    model: str
    date: str
    data_version: str
    status: str
    metric: str
    champion: str | None
    shadow: str | None
    champion_score: float | None
    shadow_score: float | None
    excess_pct: float | None
    tolerance_pct: float
    streak: int
    days: int
    rollback: RegistryOutcome | None


class PublishResult(TypedDict):
    """``publish``: the champion's forecast of the day after the logical date, as written.

    ``status``: published | unchanged (the same model and data version published it already) |
    skipped (no champion, or not a day-ahead model: ``reason`` says which).
    """

    model: str
    date: str
    day: str
    status: str
    reason: str | None
    version: str | None
    data_version: str
    rows: int
    path: str | None
    plot_path: str | None
    issued_at: str | None
