"""The gate's decisions, recorded on the version they judged: what ``promote`` trusts instead of an XCom.

A decision travels from the ``gate`` task to ``promote`` as an XCom, which anyone who can
write to Airflow's database (or clear a task and hand it other input) can rewrite. So the
gate also **records** its decision on the candidate version, and the registry moves
``champion`` only for a version whose recorded decision approves it against the champion
that serves at that moment (:func:`lifelong.registry.promote`).

What is recorded (:func:`record`), on the candidate version:

* the version tag ``gate_decision``: the decision as canonical JSON: model, version, the
  champion version it was judged against (``null`` for the first model), approved, reason,
  the change of each metric, the candidate's and the champion's metrics it judged, the data
  version, and when;
* the version tag ``gate_decision_sha256``: the sha256 of that JSON;
* the run param ``gate_decision.<sha256>`` of the candidate's own run, valued
  ``approved vs <champion>`` / ``rejected vs <champion>``. A run's params are write-once
  (the tracking store refuses to change one, and none can be deleted), so a decision tag
  rewritten after the gate (a rejection edited into an approval) hashes to a digest for
  which the run holds no param, and is refused (:func:`verified`).

A re-judgement (the re-run of a day after the champion moved) records a new decision; the
newest one is the one that counts.

>>> body = {"model": "m", "version": "2", "champion_version": "1", "approved": True}
>>> digest(body) == digest(dict(reversed(list(body.items()))))
True
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import TYPE_CHECKING, Any

from lifelong.errors import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

DECISION_TAG, DIGEST_TAG, PARAM_PREFIX = "gate_decision", "gate_decision_sha256", "gate_decision."
MAX_DECISION_BYTES = 90_000  # a model-version tag holds 100 000 characters


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def body(
    *,
    model: str,
    version: str,
    champion_version: str | None,
    approved: bool,
    reason: str,
    deltas: dict[str, float],
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    data_version: str | None,
) -> dict[str, Any]:
    """The decision as it is recorded (JSON types only; non-finite metrics become null)."""
    return {
        "model": model,
        "version": str(version),
        "champion_version": None if champion_version is None else str(champion_version),
        "approved": bool(approved),
        "reason": str(reason)[:5000],
        "deltas": {str(k): _finite_or_none(v) for k, v in sorted(deltas.items())},
        "candidate": {str(k): _finite_or_none(v) for k, v in sorted(candidate.items())},
        "champion": None if champion is None else {str(k): _finite_or_none(v) for k, v in sorted(champion.items())},
        "data_version": data_version,
        "judged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def canonical(decision: dict[str, Any]) -> str:
    return json.dumps(decision, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(decision: dict[str, Any]) -> str:
    """sha256 of the decision's canonical JSON."""
    return hashlib.sha256(canonical(decision).encode()).hexdigest()


def _verdict(decision: dict[str, Any]) -> str:
    return f"{'approved' if decision['approved'] else 'rejected'} vs {decision['champion_version'] or 'none'}"


def record(client: MlflowClient, mv: ModelVersion, decision: dict[str, Any]) -> str:
    """Record ``decision`` on the version ``mv`` (tags) and its run (a write-once param); returns its digest."""
    text = canonical(decision)
    if len(text) > MAX_DECISION_BYTES:
        raise RegistryError(f"{mv.name} v{mv.version}: the gate's decision is too large to record ({len(text)} bytes)")
    sha = digest(decision)
    # the param first: a crash before the tags leaves the version without a (new) decision, never one unbacked
    client.log_param(mv.run_id, f"{PARAM_PREFIX}{sha}", _verdict(decision))
    client.set_model_version_tag(mv.name, mv.version, DECISION_TAG, text)
    client.set_model_version_tag(mv.name, mv.version, DIGEST_TAG, sha)
    return sha


def verified(client: MlflowClient, mv: ModelVersion) -> dict[str, Any] | None:
    """The version's recorded decision, checked against its run's write-once param; None when there is none.

    Raises :class:`~lifelong.errors.RegistryError` when the recorded decision was altered.
    """
    text = mv.tags.get(DECISION_TAG)
    if text is None:
        return None
    where = f"{mv.name} v{mv.version}"
    try:
        decision = json.loads(text)
    except json.JSONDecodeError:
        raise RegistryError(f"{where}: its recorded gate decision is not JSON (altered); refusing it") from None
    if not isinstance(decision, dict) or not {"version", "champion_version", "approved"} <= set(decision):
        raise RegistryError(f"{where}: its recorded gate decision is malformed (altered); refusing it")
    sha = digest(decision)
    params = client.get_run(mv.run_id).data.params
    if mv.tags.get(DIGEST_TAG) != sha or params.get(f"{PARAM_PREFIX}{sha}") != _verdict(decision):
        raise RegistryError(
            f"{where}: its recorded gate decision does not match the digest its run logged when the gate "
            "ran (altered after the gate); refusing it"
        )
    if decision["version"] != str(mv.version) or decision.get("model") != mv.name:
        raise RegistryError(f"{where}: its recorded gate decision is for {decision.get('model')} "
                            f"v{decision['version']}; refusing it")  # fmt: skip
    return decision
