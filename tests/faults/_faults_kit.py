"""Helpers of the fault tests: projects, steps run in killable child processes, and what "correct" means.

Every pipeline step under test runs in a **child process** forked from a fork server that
has already imported torch, MLflow, Great Expectations and DVC (a fresh interpreter needs
~25 s on the shared 2-core machine to import them; a fork needs milliseconds). A child can
``kill -9`` itself at a fault checkpoint without taking pytest with it, and the next child
is a fresh process, as an Airflow retry or a re-run of the day would be.

The test process itself never opens a project's MLflow store: what a project holds is read
back by :func:`inspect`, in a child too, so that restoring a project from its snapshot
never leaves a stale database connection behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from _invariants import assert_audit_consistent, assert_champion_safe
from _project import quick_forecaster

REPO = Path(__file__).resolve().parents[2]
MODEL = "demand_forecaster"
DATASET = "vic_elec"
START = dt.date(2012, 3, 1)
WARMUP = 2
EPOCHS = 2
# with WARMUP=2 the first model is trained on day 4 (windows need two days of input history)
BOOTSTRAP_DAY = START + dt.timedelta(days=3)
PRELOAD = [
    "numpy", "pandas", "pyarrow.parquet", "pyarrow.dataset", "scipy.stats", "PIL.Image", "matplotlib.pyplot",
    "torch", "torch._dynamo", "torch.export", "torch.func", "sympy", "networkx",
    "mlflow", "mlflow.pytorch", "mlflow.pyfunc", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store", "alembic.command", "alembic.runtime.migration", "mako.template",
    "great_expectations", "great_expectations.expectations", "great_expectations.checkpoint", "rich.console",
    "pygments.lexers", "git", "dulwich.repo", "scmrepo.git", "dvc.repo", "dvc.data_cloud", "dvc.rwlock", "dvc.lock",
    "lifelong.steps.run", "lifelong.registry", "lifelong.artifacts", "lifelong.data.store", "lifelong.data.validate",
    "lifelong.data.landing", "lifelong.learn.train", "lifelong.learn.strategies", "lifelong.learn.state",
    "lifelong.drift", "lifelong.plots",
]  # fmt: skip
_CONTEXT: Any = None


# ----------------------------------------------------------------------------- projects


def write_params(project: Path, **dataset_changes: Any) -> None:
    """The repo's params.yaml with few warm-up days and epochs (fast days)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    forecaster = quick_forecaster(raw, warmup=WARMUP, epochs=EPOCHS, model=MODEL)
    forecaster["start_date"] = str(START)
    raw["datasets"][DATASET].update(dataset_changes)
    project.mkdir(parents=True, exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))


def project_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment a step of ``project`` runs with."""
    return {
        "LIFELONG_PROJECT_DIR": str(project),
        "LIFELONG_HOME": str(project / ".lifelong"),
        "LIFELONG_DEVICE": "cpu",
        "LIFELONG_GIT_COMMIT": "faults-test",  # no `git rev-parse` per run
        "LIFELONG_LOCK_TIMEOUT_S": "120",
        **extra,
    }


@contextlib.contextmanager
def in_process(project: Path, *, days: int, stored: int, **dataset_changes: Any) -> Iterator[Path]:
    """A store-only project used from the test process itself: ``days`` landed, the first ``stored`` ingested."""
    from lifelong.data import landing, store

    write_params(project, **dataset_changes)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in project_env(project).items():
            mp.setenv(name, value)
        for name in ("MLFLOW_TRACKING_URI", "LIFELONG_DVC_REMOTE", "LIFELONG_FAULT", "LIFELONG_FAULT_MARKER"):
            mp.delenv(name, raising=False)
        mp.chdir(project)
        store.ensure_repo()
        landing.simulate(DATASET, START, days)
        for offset in range(stored):
            store.ingest(DATASET, day=START + dt.timedelta(days=offset))
        yield project


def store_state(project: Path) -> dict:
    """The versioned part of the store, byte for byte: partitions (not landing, quarantine) and data.dvc."""
    data = project / "data"
    files = {
        str(p.relative_to(data)): p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file() and p.relative_to(data).parts[0] not in ("landing", "quarantine")
    }
    return {"files": files, "data.dvc": (project / "data.dvc").read_text()}


def snapshot(project: Path, into: Path) -> None:
    shutil.copytree(project, into, symlinks=True)


def restore(project: Path, snap: Path) -> None:
    """Put ``project`` back exactly as it was snapshotted, at the same path (stores hold absolute paths)."""
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(snap, project, symlinks=True)


def day(offset: int) -> str:
    return str(START + dt.timedelta(days=offset))


# ----------------------------------------------------------------------------- child processes


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


@dataclass(frozen=True)
class Child:
    """How a child ended: its exit code (-9: killed), its result or error, and its output."""

    exitcode: int | None
    result: Any = None
    error: str | None = None
    message: str | None = None
    log: str = ""
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return self.exitcode == -9


def _child(env: dict[str, str], cwd: str, out: str, log: str, target: str, args: list, kwargs: dict) -> None:
    """Body of a child: the project's environment, output to ``log``, ``target(*args)`` to ``out`` as JSON."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    for name in [n for n in os.environ if n.startswith(("LIFELONG_", "MLFLOW_", "AWS_"))]:
        del os.environ[name]
    os.environ.update(env)
    os.chdir(cwd)
    import importlib
    import traceback

    import torch

    torch.set_num_threads(1)
    module, _, name = target.partition(":")
    try:
        body: dict[str, Any] = {"result": getattr(importlib.import_module(module), name)(*args, **kwargs)}
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which judges it
        body = {"error": type(exc).__name__, "message": str(exc)}
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    Path(out).write_text(json.dumps(body, default=str))


def run(
    project: Path,
    target: str,
    *args: Any,
    fault: str | None = None,
    marker: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    **kwargs: Any,
) -> Child:
    """Run ``target`` ("module:function") in a child on ``project``; wait for it."""
    return wait(start(project, target, *args, fault=fault, marker=marker, env=env, **kwargs), timeout)


def start(
    project: Path,
    target: str,
    *args: Any,
    fault: str | None = None,
    marker: Path | None = None,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[Any, Path, Path, float]:
    """Start ``target`` in a child; :func:`wait` for it."""
    if ":" not in target:
        target = f"lifelong.steps.run:{target}"
    extra = dict(env or {})
    if fault:
        extra["LIFELONG_FAULT"] = fault
    if marker:
        extra["LIFELONG_FAULT_MARKER"] = str(marker)
    runs = project.parent / "child-runs"
    runs.mkdir(exist_ok=True)
    n = len(list(runs.glob("*.log")))
    out, log = runs / f"{n}.json", runs / f"{n}.log"
    log.touch()  # claims the number before the next child counts
    proc = _context().Process(
        target=_child,
        args=(project_env(project, **extra), str(project), str(out), str(log), target, list(args), kwargs),
    )
    proc.start()
    return proc, out, log, time.perf_counter()


def wait(started: tuple[Any, Path, Path, float], timeout: float = 600) -> Child:
    proc, out, log, began = started
    proc.join(timeout)
    seconds = time.perf_counter() - began
    print(f"child {log.name}: exit {proc.exitcode} after {seconds:.1f} s", file=sys.stderr)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise AssertionError(f"child did not finish in {timeout} s; log: {log}")
    text = log.read_text() if log.exists() else ""
    if not out.exists():
        return Child(proc.exitcode, log=text, seconds=seconds)
    body = json.loads(out.read_text())
    return Child(proc.exitcode, body.get("result"), body.get("error"), body.get("message"), text, seconds)


def ok(child: Child) -> Any:
    """The child's result; fails the test with its log when it did not finish cleanly."""
    assert child.exitcode == 0 and child.error is None, f"{child.error}: {child.message}\n{child.log[-4000:]}"
    return child.result


# ----------------------------------------------------------------------------- run in children


def ingest_days(model: str, days: list[str]) -> list[dict]:
    """Land ``days`` (and a few after them) and store them."""
    from lifelong.data import landing, store
    from lifelong.steps import daily

    store.ensure_repo()
    landing.simulate(DATASET, dt.date.fromisoformat(days[0]), len(days) + 4)
    return [daily.validate_ingest(model, d) for d in days]


def build_base(model: str, days: list[str]) -> dict:
    """Land ``days``, store all but the last (warm-up), run the last day: the first champion."""
    from lifelong.data import landing, store
    from lifelong.steps import daily, run

    store.ensure_repo()
    landing.simulate(DATASET, dt.date.fromisoformat(days[0]), len(days) + 4)
    for d in days[:-1]:
        daily.validate_ingest(model, d)
    return run.run_day(model, days[-1])


def land(first: str, days: int) -> int:
    """Land ``days`` daily files from ``first`` (landing only, nothing stored); returns how many."""
    from lifelong.data import landing

    return len(landing.simulate(DATASET, dt.date.fromisoformat(first), days))


def champion_weights(model: str) -> dict[str, list[float]]:
    """The champion's weights, flattened per tensor (a tiny test model: JSON is fine)."""
    from lifelong import registry

    champion = registry.champion(model)
    assert champion is not None, "no champion"
    state = registry.load_state_of(model, champion)
    return {name: t.detach().flatten().tolist() for name, t in state.model.state_dict().items()}


def remote_verified() -> dict:
    """Every object of the recorded data version, read from the DVC remote folder and re-hashed.

    Stronger than ``dvc status --cloud`` (which trusts the object names): each object's bytes
    must hash to the md5 its name and the version's manifest claim.
    """
    import hashlib

    from lifelong.config import load_settings
    from lifelong.data import store

    settings = load_settings()
    md5 = store.current_version()
    root = settings.dvc_remote / "files" / "md5"

    def obj(name: str) -> Path:
        return root / name[:2] / name[2:]

    manifest = obj(f"{md5}.dir")
    bad: list[str] = []
    if not manifest.is_file():
        return {"version": md5, "objects": 0, "bad": [f"{md5}.dir missing"]}
    if hashlib.md5(manifest.read_bytes()).hexdigest() != md5:
        bad.append(f"{md5}.dir")
    entries = json.loads(manifest.read_text())
    for entry in entries:
        path = obj(entry["md5"])
        if not path.is_file() or hashlib.md5(path.read_bytes()).hexdigest() != entry["md5"]:
            bad.append(entry["relpath"])
    return {"version": md5, "objects": len(entries), "bad": bad}


def decide_day(model: str, the_day: str) -> dict:
    """The daily steps after ``validate_ingest`` (the day is already stored), as ``run_day`` runs them."""
    from lifelong.data import store
    from lifelong.steps import daily, decide

    stored = {"data_version": store.data_version()}  # the version that stored the day
    drift = daily.check_drift(model, the_day, stored)
    candidate = daily.update(model, the_day, stored, drift=drift)
    decision = decide.gate(model, daily.evaluate(model, the_day, candidate))
    step = decide.promote if decision["approved"] else decide.reject
    outcome = step(model, decision)
    daily.report(model, the_day, {"update": candidate, "gate": decision, step.__name__: outcome})
    return {"update": candidate, "gate": decision, step.__name__: outcome}


def inspect(model: str) -> dict:
    """What the project holds now: registry, audit, store, DVC and locks, as JSON."""
    from lifelong import locks, registry
    from lifelong.config import load_settings
    from lifelong.data import store
    from lifelong.errors import LifelongError

    settings = load_settings()
    client = registry._client()
    try:
        versions = client.search_model_versions(f"name = '{model}'", max_results=1000)
    except Exception:  # noqa: BLE001 - no registered model yet
        versions = []
    champion = registry.champion(model)
    loadable: str | bool = False
    if champion is not None:
        try:
            registry.load_state_of(model, champion)
            loadable = True
        except LifelongError as exc:
            loadable = str(exc)
    partitions = {}
    for name in store.stored_partitions(DATASET):
        frame = store.read_days(DATASET, dt.date.fromisoformat(name), dt.date.fromisoformat(name))
        partitions[name] = {"rows": len(frame), "unique_times": int(frame["Time"].nunique())}
    try:
        with locks.hold(settings.home / "locks" / "dvc.lock", "inspect", timeout=2):
            lock_free = True
    except LifelongError:
        lock_free = False
    experiment = client.get_experiment_by_name(model)
    running = (
        [r.info.run_id for r in client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")]
        if experiment is not None
        else []
    )
    return {
        "champion": champion,
        "previous": registry._alias(client, model, registry.PREVIOUS),
        "running_runs": running,
        "champion_loadable": loadable,
        "versions": {
            str(mv.version): {
                k: mv.tags.get(k) for k in ("validation_status", "artifacts_complete", "run_key", "kind", "run_id")
            }
            for mv in versions
        },
        "runs": model_runs(client, model),
        "audit": registry.history(model),
        "data_version": store.current_version(),
        "partitions": partitions,
        "dvc": dvc_state(),
        "lock_free": lock_free,
        "tmp_files": sorted(str(p) for p in settings.data_dir.rglob("*.tmp")),
        "landing": sorted(p.name for p in (settings.landing_dir / DATASET).glob("*")),
        "quarantine": sorted(str(p.relative_to(settings.quarantine_dir)) for p in settings.quarantine_dir.rglob("*.*"))
        if settings.quarantine_dir.exists()
        else [],
    }


def model_runs(client: Any, model: str) -> dict[str, dict]:
    """The model's MLflow runs: status, run key, whether complete or closed as crashed, top-level artifacts."""
    experiment = client.get_experiment_by_name(model)
    if experiment is None:
        return {}
    runs = {}
    for run_ in client.search_runs([experiment.experiment_id], max_results=1000):
        tags = run_.data.tags
        runs[run_.info.run_id] = {
            "status": run_.info.status,
            "run_key": tags.get("run_key"),
            "artifacts_complete": tags.get("artifacts_complete"),
            "closed_as_crashed": "lifelong.closed_as_crashed" in tags,
            "artifacts": sorted(f.path for f in client.list_artifacts(run_.info.run_id)),
        }
    return runs


def dvc_state() -> dict:
    """Whether data.dvc matches the workspace, and whether the remote holds every object of it."""
    from dvc.repo import Repo

    from lifelong.config import load_settings

    settings = load_settings()
    if not (settings.project_dir / "data.dvc").exists():
        return {"recorded": False}
    with Repo(str(settings.project_dir)) as repo:
        local = repo.status(targets=[str(settings.project_dir / "data.dvc")])
        cloud = repo.status(targets=[str(settings.project_dir / "data.dvc")], cloud=True, remote="local")
    return {"recorded": True, "workspace_matches": not local, "pushed": not cloud, "local": str(local)[:500]}


def mlflow_texts(model: str) -> list[str]:
    """Every param, tag and dataset input of every run and version of ``model`` and the audit log, as text."""
    from lifelong import audit, registry

    client = registry._client()
    texts: list[str] = []
    for name in (model, audit.AUDIT_EXPERIMENT):
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            continue
        texts.append(json.dumps(dict(experiment.tags)) + experiment.artifact_location)
        for run_ in client.search_runs([experiment.experiment_id], max_results=1000):
            texts.append(json.dumps(run_.data.params) + json.dumps(run_.data.tags) + run_.info.artifact_uri)
            for dataset_input in run_.inputs.dataset_inputs if run_.inputs else []:
                texts.append(json.dumps(dataset_input.dataset.source) + dataset_input.dataset.name)
    for mv in client.search_model_versions(f"name = '{model}'", max_results=1000):
        texts.append(json.dumps(mv.tags) + str(mv.source))
    return texts


# ----------------------------------------------------------------------------- what "correct" means


def day_versions(info: dict, the_day: str) -> dict[str, dict]:
    return {v: tags for v, tags in info["versions"].items() if f"/daily/{the_day}/" in (tags.get("run_key") or "")}


def day_runs(info: dict, the_day: str) -> dict[str, dict]:
    """The MLflow runs logged for ``the_day`` (registered or not)."""
    return {r: run_ for r, run_ in info["runs"].items() if f"/daily/{the_day}/" in (run_["run_key"] or "")}


def assert_safe(info: dict, *, audit_may_lag: bool = False) -> None:
    """What must hold at every instant, even right after a kill -9.

    ``audit_may_lag``: killed between moving the alias and writing its audit event, the
    log ends one promotion short (the re-run writes it); it then replays to ``previous``.
    """
    assert_champion_safe(info)
    assert info["lock_free"], "the store lock is still held by a dead process"
    assert info["tmp_files"] == [], info["tmp_files"]
    assert_audit_consistent(info, lagging=audit_may_lag)


def assert_day_correct(info: dict, the_day: str, rows: int = 48) -> None:
    """After a day ends: stored once, pushed, at most one version promoted for it, and everything safe."""
    assert_safe(info)
    part = info["partitions"][the_day]
    assert part == {"rows": rows, "unique_times": rows}, part
    assert info["dvc"]["workspace_matches"], info["dvc"]
    assert info["dvc"]["pushed"], info["dvc"]
    versions = day_versions(info, the_day)
    approved = [v for v, tags in versions.items() if tags["validation_status"] == "approved"]
    assert len(approved) <= 1, versions
    promoted = [e for e in info["audit"] if e["event"] == "promote" and e["version"] in versions]
    assert len(promoted) <= 1, promoted
    # every version of the day is decided (approved or rejected), or an abandoned incomplete leftover
    for tags in versions.values():
        complete_and_decided = tags["artifacts_complete"] == "true" and tags["validation_status"] in (
            "approved", "rejected",
        )  # fmt: skip
        assert complete_and_decided or tags["validation_status"] == "abandoned", versions
    assert versions, "no version was logged for the day"


def run_day_as_task(model: str, the_day: str) -> dict:
    """``run_day`` with the Airflow task's error mapping: a store that did not answer (the MLflow
    server down, its database restarting) ends it with the task's one-line ``ServiceUnavailable``."""
    from lifelong.airflow.task_runtime import service_unavailable
    from lifelong.steps import run

    try:
        return run.run_day(model, the_day)
    except Exception as exc:
        unavailable = service_unavailable(exc)
        if unavailable is None:
            raise
        raise unavailable from exc
