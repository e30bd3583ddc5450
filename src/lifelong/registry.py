"""MLflow: runs, artifacts, plots, lineage tags, model versions, aliases, gate, rollback.

Every model change is one MLflow run in the experiment named after the model, and one
registered model version. The alias ``champion`` is the one thing that says which version
serves; ``previous`` names the one a rollback would go back to (after a promotion: the one it
replaced). Aliases, never the deprecated stages.

What a run holds (state, model, plots, params, metrics, dataset input) and how it is read
back safely is :mod:`lifelong.artifacts`; the gate's decision is :mod:`lifelong.gate`; the
audit log of champion changes is :mod:`lifelong.audit`.

Crash safety: a version is registered only after everything is uploaded, and tagged
``artifacts_complete=true`` last, after the upload was listed back. Only complete,
approved versions can become ``champion``, and only with a gate decision recorded on the
version that approves it against the champion of the moment (:mod:`lifelong.decisions`)
and a serving model that loads and answers its input example; promotion tags the version approved *before*
moving the alias, so ``champion`` always names a complete, approved version whatever
step a crash interrupts. Retries are idempotent: ``log_candidate`` is keyed by
``run_key``, audit events by what they record. ``champion`` and ``previous`` move together as
one recorded move (:mod:`lifelong.aliases`) that ``promote``, ``reject``, ``rollback`` and every
model-changing step complete first when a crash left it pending (:func:`settle`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong import aliases, artifacts, audit, decisions, faults
from lifelong.config import load_settings, params_hash
from lifelong.errors import RegistryError

if TYPE_CHECKING:
    from datetime import date

    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from lifelong.config import ArchitectureSpec, DatasetSpec, ModelSpec
    from lifelong.gate import GateDecision
    from lifelong.learn.state import LearnerState

__all__ = [
    "Candidate", "Lineage", "champion", "find_candidate", "git_commit", "history",
    "load_state_from_run", "load_state_of", "log_candidate", "log_figures", "log_json", "log_metrics",
    "log_state_run", "promote", "read_json", "reject", "rollback", "fallback", "settle",
]  # fmt: skip

CHAMPION, PREVIOUS = "champion", "previous"
ROLLED_BACK = "rolled_back"  # the validation_status of a version a rollback demoted
ROLLING_BACK = "rolling_back_to"  # tag: a rollback's intent, on the version it demotes, before champion moves
PENDING_CONSOLIDATION = "pending_consolidation"  # tag: the run of a shift's consolidation of this version
STALE = "stale"  # judged against a champion replaced since: judged again by the re-run of its day
STATE_DIR, MODEL_DIR = artifacts.STATE_DIR, artifacts.MODEL_DIR
_SAFE = re.compile(r"[A-Za-z0-9_.:/@+=-]{1,250}")  # always fullmatch: "name\n" is not a name


# --------------------------------------------------------------------------- lineage


def git_commit(path: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of the code directory; ``LIFELONG_GIT_COMMIT`` overrides; "unknown" without git."""
    if os.environ.get("LIFELONG_GIT_COMMIT"):
        return os.environ["LIFELONG_GIT_COMMIT"]
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


@dataclass(frozen=True)
class Lineage:
    """Where a model came from; tagged on its run and its version.

    >>> Lineage("vic_elec", "ab12", "f00d", "c0ffee", "cpu", try_number=2).tags()["try_number"]
    '2'
    """

    dataset: str
    data_version: str
    git_commit: str
    params_hash: str
    device: str
    dag_id: str | None = None
    dag_run_id: str | None = None
    logical_date: str | None = None
    try_number: int | None = None

    @classmethod
    def of(cls, run: Any, spec: ModelSpec, data_version: str, device: str) -> Lineage:
        """The lineage of a model trained from ``spec`` on ``data_version`` by ``run`` (a step's RunInfo)."""
        return cls(
            dataset=spec.dataset,
            data_version=data_version,
            git_commit=git_commit(),
            params_hash=params_hash(spec),
            device=device,
            dag_id=run.dag_id,
            dag_run_id=run.dag_run_id,
            logical_date=run.logical_date,
            try_number=run.try_number,
        )

    def tags(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class Candidate:
    model_name: str
    version: str
    run_id: str


# --------------------------------------------------------------------------- store access


def _client() -> MlflowClient:
    """A client on the configured store; also points the fluent API (``log_model``) at it."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars in task logs
    settings = load_settings()
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, which load_settings() reads first:
    # put the environment back so a later change of LIFELONG_HOME in this process is still honoured
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return _bounded_client_class()(uri, uri)


@functools.cache
def _bounded_client_class() -> type[MlflowClient]:
    """``MlflowClient`` whose writes to a registered model read every version of it once per process, not
    once per write.

    MLflow 3's client checks that the model it tags, aliases or describes is not a prompt
    (``_raise_if_prompt``) with ``get_registered_model``, which on the SQL store builds
    ``latest_versions`` by loading every version of the model (``search_registered_models`` by the exact
    name is no cheaper: it picks the latest versions with a window over every version, three times). A
    daily gate, promotion or rejection makes 2 to 10 such writes, each a row per candidate ever
    registered. This client makes MLflow's own check the first time a process writes to a model, and
    remembers the models that passed it (per registry URI). Anything that fails the check (no such
    model, a prompt) is never remembered and fails as MLflow fails it; deleting or renaming a model,
    or tagging it a prompt, through this client forgets it. Not seen: another process deleting the
    model and making a prompt of that name, or tagging the model a prompt, while this one runs (lifelong
    makes no prompts; a write to a model that is gone fails in MLflow's store instead, not found).
    """
    import mlflow
    from mlflow.prompt.constants import IS_PROMPT_TAG_KEY

    checked: set[tuple[str, str]] = set()  # (registry URI, model name) that passed MLflow's check

    class BoundedClient(mlflow.MlflowClient):
        def _raise_if_prompt(self, name: str) -> None:
            key = (str(self._registry_uri), name)
            if key in checked:
                return
            super()._raise_if_prompt(name)  # type: ignore[misc]
            checked.add(key)

        def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
            try:
                super().set_registered_model_tag(name, key, value)
            finally:
                if key == IS_PROMPT_TAG_KEY:
                    checked.discard((str(self._registry_uri), name))

        def delete_registered_model(self, name: str) -> None:
            try:
                super().delete_registered_model(name)
            finally:  # after MLflow's own call, whose check would remember the name again
                checked.discard((str(self._registry_uri), name))

        def rename_registered_model(self, name: str, new_name: str) -> Any:
            try:
                return super().rename_registered_model(name, new_name)
            finally:
                checked.discard((str(self._registry_uri), name))

    return BoundedClient


def _experiment(client: MlflowClient, name: str) -> str:
    """The experiment ``name`` (created under the configured artifact root if missing)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        root = load_settings().mlflow_artifact_root.rstrip("/")
        try:
            return client.create_experiment(name, artifact_location=f"{root}/{name}")
        except MlflowException:  # another worker created it meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


def _check(what: str, value: str) -> str:
    if not isinstance(value, str) or not _SAFE.fullmatch(value):
        raise RegistryError(f"{what} {value!r}: use letters, digits and _.:/@+=- only (at most 250)")
    if value.startswith("/") or ".." in value.split("/"):
        raise RegistryError(f"{what} {value!r}: no '..' path segment and no leading '/'")
    return value


def _version(client: MlflowClient, model_name: str, version: str | int) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model_name, str(version))
    except MlflowException:
        raise RegistryError(f"{model_name} v{version}: no such model version") from None


def _complete(mv: ModelVersion) -> bool:
    return mv.tags.get("artifacts_complete") == "true"


def _alias(client: MlflowClient, model_name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def champion(model_name: str) -> str | None:
    """The version the ``champion`` alias names (None before the first promotion)."""
    return _alias(_client(), _check("model", model_name), CHAMPION)


def previous(model_name: str) -> str | None:
    """The version the ``previous`` alias names: where a rollback would go (None when nowhere)."""
    return _alias(_client(), _check("model", model_name), PREVIOUS)


def status_of(model_name: str, version: str | int) -> str | None:
    """A version's ``validation_status`` (pending, approved, rejected, rolled_back, abandoned)."""
    return _version(_client(), _check("model", model_name), version).tags.get("validation_status")


def load_state_of(
    model_name: str, version: str | int, arch: ArchitectureSpec | None = None, *, not_after: date | None = None
) -> LearnerState:
    """The LearnerState of a registered version, verified; refuses incomplete versions; never unpickles.

    ``arch`` (the model's architecture in params.yaml, ``Context.spec.architecture``): a state
    saved for another one is refused, naming the difference. ``not_after``: the latest
    ``trained_through`` believed (default today, UTC). The run is the version's own
    ``run_id`` field, which cannot be edited, not its ``run_id`` tag, which can.
    """
    client = _client()
    mv = _version(client, _check("model", model_name), version)
    if not _complete(mv):
        raise RegistryError(f"{model_name} v{version}: its artifacts are incomplete; refusing to load it")
    where = f"{model_name} v{version}"
    return artifacts.download_state(client, mv.run_id or mv.tags["run_id"], arch, where, not_after=not_after)


def load_state_from_run(
    run_id: str, arch: ArchitectureSpec | None = None, *, not_after: date | None = None
) -> LearnerState:
    """The LearnerState logged by a run (e.g. :func:`log_state_run`), verified as in :func:`load_state_of`."""
    return artifacts.download_state(_client(), run_id, arch, f"run {run_id}", not_after=not_after)


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    """Add final metrics to a run (e.g. the evaluation, after the candidate was logged)."""
    artifacts.log_run_data(_client(), run_id, {}, metrics)


def log_figures(run_id: str, figures: dict[str, Figure]) -> None:
    """Log figures as ``plots/<name>.png``."""
    client = _client()
    for name, fig in figures.items():
        client.log_figure(run_id, fig, f"plots/{_check('plot', name)}.png")


def log_artifacts_of(model_name: str, version: str | int, paths: list[Path], artifact_path: str) -> None:
    """Log files to the run of a registered version under ``artifact_path`` (a re-log replaces them)."""
    client = _client()
    mv = _version(client, _check("model", model_name), version)
    for path in paths:
        client.log_artifact(mv.tags.get("run_id") or mv.run_id, str(path), _check("artifact path", artifact_path))


def tag_version(model_name: str, version: str | int, tags: dict[str, str]) -> None:
    """Set tags on a registered version (e.g. the day's drift decision); a re-run sets the same values."""
    client = _client()
    mv = _version(client, _check("model", model_name), version)
    for key, value in tags.items():
        client.set_model_version_tag(model_name, mv.version, _check("tag", key), str(value)[:5000])


def log_json(run_id: str, obj: Any, artifact_path: str) -> None:
    _client().log_dict(run_id, obj, _check("artifact path", artifact_path))


def read_json(model_name: str, version: str | int, artifact_path: str) -> Any:
    """A JSON artifact of a version's run (e.g. ``eval/accuracy_matrix.json``)."""
    client = _client()
    mv = _version(client, _check("model", model_name), version)
    with tempfile.TemporaryDirectory(prefix="lifelong-json-") as tmp:
        try:
            path = client.download_artifacts(mv.run_id, _check("artifact path", artifact_path), tmp)
        except Exception:  # noqa: BLE001 - MLflow raises OSError or MlflowException depending on the store
            raise RegistryError(f"{model_name} v{version}: no artifact {artifact_path}") from None
        return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------- candidates


def _versions_with_key(client: MlflowClient, model_name: str, run_key: str) -> list[ModelVersion]:
    """Versions registered for ``run_key``, oldest first (none when the model is not registered yet)."""
    found = client.search_model_versions(f"name = '{model_name}' and tags.run_key = '{run_key}'", max_results=100)
    return sorted(found, key=lambda mv: int(mv.version))


def _usable(mv: ModelVersion) -> bool:
    return _complete(mv) and mv.tags.get("validation_status") != "abandoned"


def _candidate_info(mv: ModelVersion) -> dict[str, Any]:
    tags = mv.tags
    return {
        "model": mv.name,
        "version": str(mv.version),
        "run_id": tags.get("run_id") or mv.run_id,
        "kind": tags.get("kind"),
        "run_key": tags.get("run_key"),
        "data_version": tags.get("data_version"),
        "validation_status": tags.get("validation_status"),
    }


def data_version_of(model_name: str, version: str | int) -> str:
    """The DVC data version a model version was trained on (its lineage tag)."""
    mv = _version(_client(), model_name, version)
    value = mv.tags.get("data_version")
    if not value:
        raise RegistryError(f"{model_name} v{version} has no data_version tag (not logged by lifelong?)")
    return value


def find_candidate(model_name: str, run_key: str) -> dict[str, Any] | None:
    """The complete version an earlier try of ``run_key`` registered, as small JSON; None if there is none."""
    client = _client()
    usable = [
        mv for mv in _versions_with_key(client, _check("model", model_name), _check("run key", run_key)) if _usable(mv)
    ]
    return _candidate_info(usable[-1]) if usable else None


def log_candidate(
    model_name: str,
    state: LearnerState,
    *,
    params: dict,
    metrics: dict[str, float],
    epoch_metrics: list[dict],
    plots: dict[str, Figure],
    lineage: Lineage,
    dataset_source: str,
    input_example: np.ndarray | pd.DataFrame,
    run_key: str,
    kind: str = "update",
    dataset: DatasetSpec | None = None,
) -> Candidate:
    """Log one model change as an MLflow run and register it as a ``pending`` version of ``model_name``.

    Idempotent per ``run_key``: a retry returns the complete version an earlier try made; the
    incomplete leftovers of a crashed try are tagged ``validation_status=abandoned``.
    """
    import mlflow

    client = _client()
    _check("model", model_name)
    _check("run key", run_key)
    earlier = _versions_with_key(client, model_name, run_key)
    usable = [mv for mv in earlier if _usable(mv)]
    if usable:
        return Candidate(model_name, str(usable[-1].version), usable[-1].tags.get("run_id") or usable[-1].run_id)
    for mv in earlier:
        client.set_model_version_tag(model_name, mv.version, "validation_status", "abandoned")
    started = time.perf_counter()
    tags = {**lineage.tags(), "run_key": run_key, "kind": kind, "model": model_name}
    with mlflow.start_run(
        experiment_id=_experiment(client, model_name), run_name=f"{kind} {run_key}", tags=tags
    ) as run:
        run_id = run.info.run_id
        artifacts.log_run_data(client, run_id, params, metrics, epoch_metrics)
        digests = artifacts.upload_state(client, run_id, state)
        faults.checkpoint("mlflow_log")
        for name, fig in plots.items():
            client.log_figure(run_id, fig, f"plots/{_check('plot', name)}.png")
        artifacts.log_dataset(lineage.dataset, lineage.data_version, dataset_source, "training")
        with _pinned_requirements_map():
            info = artifacts.log_model(state, input_example, dataset)
        _verify_upload(client, run_id, digests)
        log_seconds = time.perf_counter() - started
        client.log_metric(run_id, "registry_log_s", log_seconds)
        client.set_tag(run_id, "artifacts_complete", "true")
        mv = _register(client, model_name, info.model_uri, run_id, {**tags, "state_sha256": json.dumps(digests)})
    return Candidate(model_name, str(mv.version), run_id)


@contextmanager
def _pinned_requirements_map() -> Iterator[None]:
    """Spare ``log_model`` MLflow's scan of every installed distribution (slow in a fresh process).

    MLflow checks explicit pip requirements against the installed versions, and for that first
    maps the modules of every installed distribution. Ours are pinned to the installed versions
    (:func:`lifelong.artifacts.pip_requirements`), so for the call MLflow gets the map of just
    those packages, and its own state back afterwards. Where MLflow has scanned already, or keeps
    no such map, nothing changes.
    """
    try:
        from mlflow.utils import requirements_utils as reqs
    except ImportError:  # pragma: no cover - mlflow is a dependency
        yield
        return
    names = ("_MODULES_TO_PACKAGES", "_PACKAGES_TO_MODULES")
    saved = {name: getattr(reqs, name, "missing") for name in names}
    if saved["_MODULES_TO_PACKAGES"] is not None or "missing" in saved.values():
        yield
        return
    packages = artifacts.PIP_REQUIREMENTS_PACKAGES + artifacts.PYFUNC_PACKAGES
    reqs._MODULES_TO_PACKAGES = {name: [name] for name in packages}
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(reqs, name, value)


def _verify_upload(client: MlflowClient, run_id: str, digests: dict[str, str], *, with_model: bool = True) -> None:
    """List the uploaded state (and model) back before anything calls them complete."""
    stored = {Path(f.path).relative_to(STATE_DIR).as_posix() for f in client.list_artifacts(run_id, STATE_DIR)}
    model_files = {Path(f.path).name for f in client.list_artifacts(run_id, MODEL_DIR)} if with_model else {"MLmodel"}
    if not set(digests) <= stored or "MLmodel" not in model_files:
        raise RegistryError(f"run {run_id}: upload incomplete (state {sorted(stored)}, model {sorted(model_files)})")


def _register(client: MlflowClient, model_name: str, model_uri: str, run_id: str, tags: dict[str, str]) -> ModelVersion:
    """Register the version, tag it, and mark it complete LAST (a crash before leaves it unusable)."""
    import mlflow

    run = client.get_run(run_id)
    version_tags = {
        **tags,
        "run_id": run_id,
        "state_artifact_uri": f"{run.info.artifact_uri}/{STATE_DIR}",
        "validation_status": "pending",
    }
    mv = mlflow.register_model(model_uri, model_name, tags=version_tags, await_registration_for=0)
    _before_complete(model_name, str(mv.version))
    client.set_model_version_tag(model_name, mv.version, "artifacts_complete", "true")
    return mv


def _before_complete(model_name: str, version: str) -> None:
    """Hook for fault-injection tests: a crash here leaves a registered, incomplete version."""
    faults.checkpoint("register")


def log_state_run(
    model_name: str,
    state: LearnerState,
    *,
    run_name: str,
    params: dict,
    metrics: dict[str, float],
    plots: dict[str, Figure] | None = None,
    json_files: dict[str, Any] | None = None,
    run_key: str | None = None,
) -> str:
    """Log a LearnerState as a run (no model version), e.g. a consolidated champion; returns the run id.

    ``json_files``: objects logged as JSON artifacts (artifact path -> object). ``run_key``: a tag
    :func:`find_state_run` finds the complete run by, so that a retry reuses it.
    """
    client = _client()
    _check("model", model_name)
    tags = {"kind": "state", "model": model_name, **({"run_key": _check("run key", run_key)} if run_key else {})}
    run = client.create_run(_experiment(client, model_name), run_name=run_name, tags=tags)
    run_id = run.info.run_id
    try:
        artifacts.log_run_data(client, run_id, params, metrics)
        digests = artifacts.upload_state(client, run_id, state)
        for name, fig in (plots or {}).items():
            client.log_figure(run_id, fig, f"plots/{_check('plot', name)}.png")
        for path, obj in (json_files or {}).items():
            client.log_dict(run_id, obj, _check("artifact path", path))
        _verify_upload(client, run_id, digests, with_model=False)
        client.set_tag(run_id, "artifacts_complete", "true")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def find_state_run(model_name: str, run_key: str) -> str | None:
    """The complete state run :func:`log_state_run` logged for ``run_key`` (the latest), or None."""
    client = _client()
    experiment = _experiment(client, _check("model", model_name))
    found = client.search_runs(
        [experiment],
        filter_string=f"tags.run_key = '{_check('run key', run_key)}' and tags.artifacts_complete = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def pending_consolidation(model_name: str, version: str | int) -> str | None:
    """The run of the task shift's consolidation of ``version`` that no promoted candidate has carried on
    yet (its ``pending_consolidation`` tag, one registry call), or None.

    :func:`lifelong.steps.shift.consolidate` tags the champion it consolidated once the run is complete;
    a candidate trained from that run is another version, so the tag stops applying when one is promoted,
    and applies again if the champion is rolled back to ``version``.
    """
    mv = _version(_client(), _check("model", model_name), version)
    return mv.tags.get(PENDING_CONSOLIDATION) or None


def run_params(run_id: str) -> dict[str, str]:
    """The params a run logged (e.g. a consolidation's ``fisher_task``, ``opened_task``, ``champion``)."""
    return dict(_client().get_run(_check("run id", run_id)).data.params)


def shift_consolidation(model_name: str, day: str) -> dict[str, str] | None:
    """The consolidation the daily run of ``day`` logged on a task shift (the newest complete one):
    its params (``champion``: the version whose regime it closed, ``fisher_task``, ``opened_task``,
    ``date``, ...) and ``run_id``; None when that day consolidated nothing.

    Found by the run key :func:`lifelong.steps.shift.consolidate` gives it (``<model>/shift/<day>/...``).
    """
    client = _client()
    experiment = _experiment(client, _check("model", model_name))
    prefix = _check("run key", f"{model_name}/shift/{_check('day', day)}/")
    found = client.search_runs(
        [experiment],
        filter_string=f"tags.run_key LIKE '{prefix}%' and tags.artifacts_complete = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return {**found[0].data.params, "run_id": found[0].info.run_id} if found else None


# --------------------------------------------------------------------------- the drift check's daily record

DRIFT_EXPERIMENT = "lifelong-drift"


def record_drift_day(model_name: str, day: str, tags: dict[str, Any], files: list[Path]) -> str:
    """Keep the drift check of ``day``: one run per (model, day) in ``lifelong-drift``, holding the
    decision as tags and the report (and plot) under ``drift/``, whether or not a version is
    registered that day. A re-run of the day rewrites the same run. Returns its id."""
    from mlflow.entities import RunTag

    client = _client()
    _check("model", model_name)
    experiment = _experiment(client, DRIFT_EXPERIMENT)
    key = f"{model_name}/{day}"
    found = client.search_runs([experiment], filter_string=f"tags.key = '{key}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        run_tags = {"key": key, "model": model_name, "day": day}
        run_id = client.create_run(experiment, run_name=f"drift {key}", tags=run_tags).info.run_id
    client.log_batch(run_id, tags=[RunTag(k, "" if v is None else str(v)[:5000]) for k, v in tags.items()])
    for path in files:
        client.log_artifact(run_id, str(path), "drift")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def drift_record(model_name: str, day: str) -> dict[str, str] | None:
    """The tags of the drift check's record of ``day`` (``decision``, ...), or None when none was kept."""
    client = _client()
    found = client.get_experiment_by_name(DRIFT_EXPERIMENT)
    if found is None:
        return None
    key = f"{_check('model', model_name)}/{day}"
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.key = '{key}'", max_results=1)
    if not runs:
        return None
    return {k: v for k, v in runs[0].data.tags.items() if not k.startswith("mlflow.")} | {"run_id": runs[0].info.run_id}


# --------------------------------------------------------------------------- promotion, rejection, rollback


def _audit(client: MlflowClient, key: str | None = None, **event: Any) -> dict[str, Any]:
    """Record an event; a promotion or rejection is unique per (model, version, champion it replaced or
    kept, trigger), so a retry adds none, while the same trigger promoting the version again from another
    champion (a day cleared and re-run after a later promotion) is recorded again.

    A manual rollback is unique per call; an automatic one passes its own ``key``.
    """
    return audit.record(client, _experiment(client, audit.AUDIT_EXPERIMENT), key=_event_key(event, key), **event)


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _tag_decision(client: MlflowClient, model_name: str, version: str, status: str, decision: GateDecision) -> None:
    """The gate's verdict on the version: its status, the reason, and the change of each metric."""
    client.set_model_version_tag(model_name, version, "validation_status", status)
    client.set_model_version_tag(model_name, version, "reason", decision.reason[:5000])
    client.set_model_version_tag(model_name, version, "deltas", json.dumps(decision.deltas))


def record_decision(model_name: str, version: str | int, decision: dict[str, Any]) -> str:
    """Record the gate's decision on ``version`` (:mod:`lifelong.decisions`); returns its digest."""
    client = _client()
    mv = _version(client, _check("model", model_name), version)
    return decisions.record(client, mv, decision)


def recorded_decision(model_name: str, version: str | int) -> dict[str, Any] | None:
    """The gate decision recorded on ``version``, verified; None when the gate never judged it."""
    client = _client()
    return decisions.verified(client, _version(client, _check("model", model_name), version))


def check_serving(model_name: str, version: str | int) -> None:
    """Load the version's logged serving model and run it once on its input example (InfraValidator-style).

    Raises :class:`~lifelong.artifacts.ServingCheckFailed` with the reason when it cannot be
    loaded, fails on its example, or answers with non-finite values or another shape than its
    signature's.
    """
    _check_serving(_client(), _check("model", model_name), str(version))


def _check_serving(client: MlflowClient, model_name: str, version: str) -> None:
    """:func:`check_serving` with the version's files found by this module's client: MLflow's own
    resolution of ``models:/<name>/<version>`` reads every version of the model (see
    :func:`_bounded_client_class`); the download URI it would resolve to is the same."""
    try:
        source = client.get_model_version_download_uri(model_name, version)
    except Exception:  # noqa: BLE001 - unresolvable here: MLflow's resolution gives the reason
        source = None
    artifacts.check_serving_model(f"models:/{model_name}/{version}", source=source)


def promote(model_name: str, version: str | int, decision: GateDecision, *, trigger: str) -> dict[str, Any]:
    """``champion`` -> ``version``, ``previous`` -> the old champion; tag approved; audit. Idempotent.

    ``decision`` (what the caller was handed, e.g. an XCom) is not trusted: the version must
    carry a recorded gate decision (:func:`record_decision`) that approves it against the
    version that is champion now, and its serving model must load and answer its input
    example (:func:`check_serving`) before anything moves.
    """
    client = _client()
    version = str(version)
    _settle(client, _check("model", model_name))
    mv = _version(client, model_name, version)
    if not decision.approved:
        raise RegistryError(f"{model_name} v{version}: the gate did not approve it ({decision.reason})")
    if not _complete(mv):
        raise RegistryError(f"{model_name} v{version}: its artifacts are incomplete; refusing to promote it")
    if mv.tags.get("validation_status") in ("rejected", "abandoned", ROLLED_BACK):
        raise RegistryError(f"{model_name} v{version}: it is {mv.tags['validation_status']}; refusing to promote it")
    current = _alias(client, model_name, CHAMPION)
    recorded = decisions.verified(client, mv)
    if recorded is None or not recorded["approved"]:
        found = "none" if recorded is None else f"rejected ({recorded.get('reason', '')[:200]})"
        raise RegistryError(
            f"{model_name} v{version}: no approving gate decision is recorded on it (recorded: {found}); "
            "refusing to promote it whatever the caller says"
        )
    if current != version and recorded["champion_version"] != current:
        raise RegistryError(
            f"{model_name} v{version}: its recorded approval was judged against "
            f"v{recorded['champion_version']}, but v{current} is champion now; judge it again"
        )
    if current != version:
        _check_serving(client, model_name, version)
    # approved first: whatever step a crash interrupts, champion names a complete, approved version
    _tag_decision(client, model_name, version, "approved", decision)
    faults.checkpoint("promote_alias")
    if current != version:  # previous and champion, promoted_at and the event: one recorded move (aliases.py)
        event = {"event": "promote", "model": model_name, "version": version, "from_version": current,
                 "trigger": trigger, "reason": decision.reason}  # fmt: skip
        stamp = {} if "promoted_at" in mv.tags else {version: {"promoted_at": _stamp()}}
        change = aliases.Move(version, current, event, _event_key(event), stamp)
        return aliases.move(client, model_name, change, record=_recorder(client), before_event="audit")
    faults.checkpoint("audit")
    if "promoted_at" not in mv.tags:
        client.set_model_version_tag(model_name, version, "promoted_at", _stamp())
    if current == version:
        # already champion: a retry, or a second trigger of the same day. Its promotion is recorded
        # unless a crash came between moving the alias and writing the event (then write it now).
        last = last_champion_move(model_name)
        if last is not None and last["version"] == version:
            return {**last, "champion": version, "previous": _alias(client, model_name, PREVIOUS), "changed": False}
    from_version = current if current != version else _audit_from(client, model_name, version)
    event = _audit(
        client, event="promote", model=model_name, version=version, from_version=from_version,
        trigger=trigger, reason=decision.reason,
    )  # fmt: skip
    return {
        **event,
        "champion": version,
        "previous": _alias(client, model_name, PREVIOUS),
        "changed": current != version,
    }


def _event_key(event: dict[str, Any], key: str | None = None) -> str:
    """The key :func:`_audit` gives ``event`` (a rollback's made unique now, so that its record can repeat it)."""
    if key is not None:
        return key
    unique = time.time_ns() if event["event"] == "rollback" else ""
    parts = (event["event"], event["model"], event["version"], event["trigger"], event["from_version"] or "")
    return audit.event_key(*parts, unique)


def _recorder(client: MlflowClient) -> aliases.Record:
    return lambda change: _audit(client, change.key, **change.event)


def _settle(client: MlflowClient, model_name: str) -> dict[str, Any] | None:
    """Complete the alias move a crash left pending on ``model_name`` (:mod:`lifelong.aliases`); its outcome."""
    change = aliases.pending(client, model_name)
    return None if change is None else aliases.complete(client, model_name, change, record=_recorder(client))


def settle(model_name: str) -> dict[str, Any] | None:
    """Complete a pending alias move of ``model_name``, if any: call under the model's lock.

    Returns the completed move's outcome (its audit event, the aliases after it), or None.
    """
    return _settle(_client(), _check("model", model_name))


def _audit_from(client: MlflowClient, model_name: str, version: str) -> str | None:
    """On a retry after the alias moved, the first try's ``from`` is what ``previous`` holds now."""
    previous = _alias(client, model_name, PREVIOUS)
    return previous if previous != version else None


def reject(
    model_name: str, version: str | int, decision: GateDecision, *, trigger: str, status: str = "rejected"
) -> dict[str, Any]:
    """Keep the champion; tag the candidate rejected with the reason (it stays for inspection); audit.

    A version that has served as champion is not re-tagged (``served: True``, nothing written): its
    promotion stays true in the audit log, and it stays what a rollback may go back to.
    ``status="stale"``: it was judged against a champion that has been replaced since; unlike
    a rejection, a stale version may be judged again (the re-run of its day) and promoted.
    """
    if status not in ("rejected", STALE):
        raise RegistryError(f"reject: status must be rejected or {STALE}, not {status!r}")
    client = _client()
    version = str(version)
    _settle(client, _check("model", model_name))
    mv = _version(client, model_name, version)
    current = _alias(client, model_name, CHAMPION)
    if current == version:
        raise RegistryError(f"{model_name} v{version} is the champion; roll back before rejecting it")
    if _has_served(model_name, mv):
        # judged again after it served (its day re-run after a later promotion): its record stays as it
        # is (approved, a rollback target, or rolled_back); the audit log keeps its promotion true
        kept = f"v{version} served as champion already; its record is kept ({mv.tags.get('validation_status')})"
        return {"model": model_name, "version": version, "champion": current, "changed": False, "event": None,
                "served": True, "reason": kept}  # fmt: skip
    _tag_decision(client, model_name, version, status, decision)
    client.set_model_version_tag(model_name, version, "rejected_at", _stamp())
    event = _audit(
        client, event="reject", model=model_name, version=version, from_version=current,
        trigger=trigger, reason=decision.reason,
    )  # fmt: skip
    return {**event, "champion": current}


def _has_served(model_name: str, mv: ModelVersion) -> bool:
    """Whether ``champion`` ever named the version (a promotion or a rollback moved it there)."""
    if "promoted_at" in mv.tags or mv.tags.get("validation_status") == ROLLED_BACK:
        return True
    return latest_event(model_name, mv.version, audit.CHAMPION_MOVES) is not None


def rollback(
    model_name: str, *, to: str | int | None = None, trigger: str, reason: str, key: str | None = None
) -> dict[str, Any]:
    """Point ``champion`` back; the version rolled away from is tagged ``validation_status=rolled_back``.

    The default target comes from the audit history, not from the ``previous`` alias: the newest
    version older than the champion that served as champion and was never rolled back
    (:func:`fallback`). So a second rollback goes further back, and a demoted version is never
    re-instated, not even with ``to``. Afterwards ``previous`` names the version a next rollback
    would go to (removed when there is none). Refuses a version that is rejected, rolled back,
    incomplete or was never approved by the gate, and a rollback with nothing to go back to.

    ``key`` makes the rollback happen once (the automatic one passes model, day and version):
    when an event with that key is recorded already, nothing moves.
    """
    client = _client()
    settled = _settle(client, _check("model", model_name))
    if settled is not None and _own_rerun(settled, trigger, to):  # finished from its record, no further
        return settled
    if key is not None:
        done = audit.find(client, _experiment(client, audit.AUDIT_EXPERIMENT), key)
        if done is not None:
            champ, prev = _alias(client, model_name, CHAMPION), _alias(client, model_name, PREVIOUS)
            return {**done, "champion": champ, "previous": prev, "changed": False}
    current = _alias(client, model_name, CHAMPION)
    if current is None:
        raise RegistryError(f"{model_name}: no previous champion to roll back to (no version has served yet)")
    interrupted = _interrupted_rollback(client, model_name, current)
    if interrupted is not None:  # an earlier rollback moved champion and died before its record: finish it
        finished = _finish_rollback(client, model_name, **interrupted)
        if to is None or str(to) == current:
            return finished
    target = str(to) if to is not None else fallback(model_name, current)
    if target is None:
        raise RegistryError(
            f"{model_name}: no previous champion to roll back to from v{current} (no older version served "
            "and was not rolled back since); promote a new candidate, or pass --to VERSION"
        )
    mv = _version(client, model_name, target)
    status = mv.tags.get("validation_status")
    if status == "rejected":
        raise RegistryError(f"{model_name} v{target} was rejected by the gate ({mv.tags.get('reason', '')}); refusing")
    if status == ROLLED_BACK:
        raise RegistryError(
            f"{model_name} v{target} was rolled back at {mv.tags.get('rolled_back_at', '?')} "
            f"({mv.tags.get('rolled_back_reason', '')[:200]}); a demoted version is never re-instated"
        )
    if not _complete(mv):
        raise RegistryError(f"{model_name} v{target}: its artifacts are incomplete; refusing to roll back to it")
    if status != "approved":
        raise RegistryError(f"{model_name} v{target} was never approved (status {status}); refusing to roll back to it")
    if target == current:
        return {"model": model_name, "version": target, "champion": target, "changed": False, "event": None}
    # the intent on the demoted version, then one recorded move (aliases.py): champion always names a
    # complete, approved version whatever a crash interrupts, and any later registry operation finishes it
    intent = {"to": target, "trigger": trigger, "reason": reason[:2000], "key": key}
    client.set_model_version_tag(model_name, current, ROLLING_BACK, json.dumps(intent))
    event = {"event": "rollback", "model": model_name, "version": target, "from_version": current,
             "trigger": trigger, "reason": reason[:5000]}  # fmt: skip
    demote = {"validation_status": ROLLED_BACK, "rolled_back_at": _stamp(), "rolled_back_reason": reason[:5000]}
    change = aliases.Move(
        target, fallback(model_name, target, skip=current), event, _event_key(event, key), {current: demote}
    )
    return aliases.move(client, model_name, change, record=_recorder(client))


def _own_rerun(settled: dict[str, Any], trigger: str, to: str | int | None) -> bool:
    """Whether a rollback just completed from its record is the one being run again (same trigger and target)."""
    same = settled["event"] == "rollback" and settled["trigger"] == trigger
    return same and (to is None or str(to) == settled["champion"])


def _interrupted_rollback(client: MlflowClient, model_name: str, champion_version: str) -> dict[str, Any] | None:
    """A rollback that moved ``champion`` and died before writing its record, to be finished; else None.

    Its trace: the audit log still ends at the version it rolled back from, and that version
    carries the rollback's intent (tag ``rolling_back_to``) naming the version that is champion now.
    """
    last = last_champion_move(model_name)
    if last is None or last["version"] in (None, champion_version):
        return None
    try:
        raw = _version(client, model_name, last["version"]).tags.get(ROLLING_BACK)
        intent = json.loads(raw) if raw else None
    except (RegistryError, json.JSONDecodeError):
        return None
    if not isinstance(intent, dict) or intent.get("to") != champion_version:
        return None
    return {
        "demoted": last["version"], "target": champion_version, "trigger": str(intent.get("trigger")),
        "reason": str(intent.get("reason")), "key": intent.get("key"),
    }  # fmt: skip


def _finish_rollback(
    client: MlflowClient, model_name: str, *, demoted: str, target: str, trigger: str, reason: str, key: str | None
) -> dict[str, Any]:
    """After ``champion`` moved to ``target``: tag ``demoted`` rolled back, point ``previous``, write the event.

    (A rollback interrupted by a crash before alias moves were recorded (:mod:`lifelong.aliases`).)
    """
    client.set_model_version_tag(model_name, demoted, "validation_status", ROLLED_BACK)
    client.set_model_version_tag(model_name, demoted, "rolled_back_at", _stamp())
    client.set_model_version_tag(model_name, demoted, "rolled_back_reason", reason[:5000])
    previous = fallback(model_name, target)
    if previous is None:
        if _alias(client, model_name, PREVIOUS) is not None:
            client.delete_registered_model_alias(model_name, PREVIOUS)
    else:
        client.set_registered_model_alias(model_name, PREVIOUS, previous)
    event = _audit(
        client, event="rollback", model=model_name, version=target, from_version=demoted,
        trigger=trigger, reason=reason, key=key,
    )  # fmt: skip
    return {**event, "champion": target, "previous": previous, "changed": True}


def fallback(model_name: str, champion_version: str | int, *, skip: str | None = None) -> str | None:
    """The version a rollback from ``champion_version`` goes to, from the audit history.

    The newest version older than ``champion_version`` that served as champion (a promotion or
    a rollback moved ``champion`` to it) and is still ``approved`` (never rolled back) and
    complete; None when there is none. ``skip``: a version about to be rolled back.
    """
    client = _client()
    served = {e["version"] for e in history(model_name) if e["event"] in audit.CHAMPION_MOVES and e["version"]}
    older = sorted((v for v in served if int(v) < int(champion_version)), key=int, reverse=True)
    for version in older:
        if version == skip:
            continue
        try:
            mv = _version(client, model_name, version)
        except RegistryError:  # deleted from the registry by hand
            continue
        if mv.tags.get("validation_status") == "approved" and _complete(mv):
            return version
    return None


# --------------------------------------------------------------------------- the watch's daily record

WATCH_EXPERIMENT = "lifelong-watch"


def record_watch(model_name: str, day: str, record: dict[str, Any], metrics: dict[str, float]) -> str:
    """Keep the watch's comparison of ``day``: one run per (model, day) in ``lifelong-watch``.

    A re-run of the day rewrites the same run (its tags and metrics), so a day counts once.
    The metrics also go to the champion's own run (``watch_*``, step = the day's ordinal), where
    the MLflow UI charts them. Returns the watch run's id.
    """
    from mlflow.entities import Metric, RunTag

    client = _client()
    _check("model", model_name)
    experiment = _experiment(client, WATCH_EXPERIMENT)
    key = f"{model_name}/{day}"
    found = client.search_runs([experiment], filter_string=f"tags.key = '{key}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        tags = {"key": key, "model": model_name}
        run_id = client.create_run(experiment, run_name=f"watch {key}", tags=tags).info.run_id
    items = [RunTag(k, "" if v is None else str(v)[:5000]) for k, v in record.items()]
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()], tags=items)
    client.set_terminated(run_id, "FINISHED")
    champion_run = record.get("champion_run_id")
    if champion_run:
        from datetime import date

        step = date.fromisoformat(day).toordinal()
        points = [Metric(f"watch_{k}", float(v), now, step) for k, v in metrics.items()]
        client.log_batch(str(champion_run), metrics=points)
    return run_id


def watch_record(model_name: str, day: str) -> dict[str, str] | None:
    """The watch's record of ``day`` (its tags, as strings), or None when the day was not watched."""
    client = _client()
    found = client.get_experiment_by_name(WATCH_EXPERIMENT)
    if found is None:
        return None
    key = f"{_check('model', model_name)}/{day}"
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.key = '{key}'", max_results=1)
    if not runs:
        return None
    return {k: v for k, v in runs[0].data.tags.items() if not k.startswith("mlflow.")}


# --------------------------------------------------------------------------- model cards


def version_record(model_name: str, version: str | int) -> dict[str, Any]:
    """What a model card is written from: the version's tags, its run's params and metrics."""
    client = _client()
    mv = _version(client, _check("model", model_name), version)
    run = client.get_run(mv.tags.get("run_id") or mv.run_id)
    return {"tags": dict(mv.tags), "params": dict(run.data.params), "metrics": dict(run.data.metrics)}


def describe(model_name: str, version: str | int, text: str) -> None:
    """Set the version's description (its model card on the MLflow version page)."""
    _client().update_model_version(_check("model", model_name), str(version), description=text[:20000])


def _audit_log() -> tuple[MlflowClient, str | None]:
    """A client and the audit experiment's id (None before anything was recorded): what every reader needs."""
    client = _client()
    found = client.get_experiment_by_name(audit.AUDIT_EXPERIMENT)
    return client, found.experiment_id if found is not None else None


def audit_event(key: str) -> dict[str, Any] | None:
    """The audit event recorded under ``key`` (see :func:`lifelong.audit.event_key`), if any."""
    client, experiment_id = _audit_log()
    return audit.find(client, experiment_id, key) if experiment_id is not None else None


def last_champion_move(model_name: str) -> dict[str, Any] | None:
    """The newest promotion or rollback of ``model_name`` (None before any), read without listing the
    log (:func:`lifelong.audit.last_move`)."""
    client, experiment_id = _audit_log()
    if experiment_id is None:
        return None
    return audit.last_move(client, experiment_id, _check("model", model_name))


def latest_event(model_name: str, version: str | int, kinds: tuple[str, ...] = audit.EVENTS) -> dict[str, Any] | None:
    """The newest audit event among ``kinds`` of one version (exact-match tags, a handful of events), or None."""
    client, experiment_id = _audit_log()
    if experiment_id is None:
        return None
    model, number = _check("model", model_name), _check("version", str(version))
    return audit.latest_of_version(client, experiment_id, model, number, kinds)


def history(model_name: str) -> list[dict[str, Any]]:
    """Every promotion, rejection and rollback of ``model_name``, oldest first."""
    client, experiment_id = _audit_log()
    if experiment_id is None:
        return []
    return audit.events(client, experiment_id, _check("model", model_name))


# --------------------------------------------------------------------------- runs a crash left open


def fail_runs_left_running(model_name: str, started_before_ms: int, *, closed_by: str) -> list[str]:
    """Mark ``FAILED`` the runs of ``model_name``'s experiment still ``RUNNING`` that started before
    ``started_before_ms``; returns their ids. The caller makes sure no live process owns them
    (:func:`lifelong.recovery.close_crashed_runs`)."""
    client = _client()
    found = client.get_experiment_by_name(_check("model", model_name))
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    closed = []
    for run in runs:
        if run.info.start_time is not None and run.info.start_time < started_before_ms:
            client.set_tag(run.info.run_id, "lifelong.closed_as_crashed", f"{_stamp()} by {closed_by}"[:5000])
            client.set_terminated(run.info.run_id, "FAILED")
            closed.append(run.info.run_id)
    return closed
