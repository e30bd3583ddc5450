"""The embedded Airflow: SQLite metadata DB, LocalExecutor, DAGs from this repo.

``airflow_env`` is the whole configuration (environment variables, no airflow.cfg edits),
so the CLI, the demo, ``make ui`` and the tests all start Airflow the same way.
``run_dag`` runs DAG runs through Airflow itself (``dag.test``: the real task runner, XComs,
branching, trigger rules, pools in the metadata DB) in one child process per batch of
runs, so Airflow's start-up is paid once for many days.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

from lifelong import locks, modellock
from lifelong.config import TASKS_POOL, Settings, load_params, load_settings, pool_name
from lifelong.errors import LifelongError

REPO_DIR = Path(__file__).resolve().parents[3]
DAGS_DIR = REPO_DIR / "dags"


def airflow_env(settings: Settings | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an embedded Airflow rooted at ``<home>/airflow``."""
    settings = settings or load_settings()
    home = settings.home / "airflow"
    env = dict(os.environ if base is None else base)
    env.setdefault("AIRFLOW_HOME", str(home))
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    env.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS_DIR))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "2")
    env.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True")
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(home / "passwords.json"))
    env.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
    env.setdefault("AIRFLOW__API__PORT", "8080")
    env["LIFELONG_PROJECT_DIR"] = str(settings.project_dir)
    env["LIFELONG_HOME"] = str(settings.home)
    env.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    env.setdefault("PYTHONPATH", str(REPO_DIR / "src"))
    return env


def pools(settings: Settings | None = None) -> dict[str, str]:
    """One single-slot pool per model (model-changing steps never overlap), plus task additions'."""
    params = load_params((settings or load_settings()).params_path)
    names = {pool_name(name): f"lifelong: model-changing steps of {name}" for name in params.models}
    names[TASKS_POOL] = "lifelong: task additions, one at a time"
    return names


def pools_json(settings: Settings | None = None) -> dict[str, dict]:
    """The pools in the format of ``airflow pools import``."""
    return {n: {"slots": 1, "description": d, "include_deferred": False} for n, d in pools(settings).items()}


def _airflow(args: Sequence[str], env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, stdout=out, stderr=out)
    if done.returncode:
        raise LifelongError(f"airflow {' '.join(args[:2])} failed (exit {done.returncode}); see {log}")


def ensure_airflow(settings: Settings | None = None) -> dict[str, str]:
    """Migrate the metadata DB (idempotent) and create the pools; return the environment."""
    settings = settings or load_settings()
    env = airflow_env(settings)
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    log = settings.home / "logs" / "airflow-setup.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    marker = home / ".lifelong-ready"
    if not marker.exists():
        _airflow(["db", "migrate"], env, log)
        pools_file = home / "pools.json"
        pools_file.write_text(json.dumps(pools_json(settings)))
        _airflow(["pools", "import", str(pools_file)], env, log)
        marker.write_text("ok\n")
    return env


def run_dag(
    dag_id: str,
    logical_dates: Sequence[str | None],
    *,
    conf: dict | None = None,
    settings: Settings | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run ``dag_id`` once per logical date (``None``: a manual run now), in order.

    Returns one result per run: ``{"logical_date", "state", "tasks": {task_id: state}}``.
    Airflow's own log goes to ``<home>/logs/<dag_id>.log``.

    ``dag.test`` honours neither pools nor ``max_active_runs``, so two triggers at once (two
    ``lifelong daily`` of one model, a daily run and a task addition) are serialized here: one
    embedded DAG run at a time per lifelong home (its SQLite metadata database allows one
    writer anyway), holding the model's lock, the one ``steps.run.run_day`` takes, so that a CLI
    run of the same model waits too. A second trigger waits up to ``LIFELONG_RUN_WAIT_S``
    (default an hour), then fails naming the run it waited for. The ``dag.test`` child inherits
    the model's lock (``LIFELONG_MODEL_LOCK_INHERITED``): its steps take it without waiting for
    their own parent.
    """
    settings = settings or load_settings()
    with contextlib.ExitStack() as held:
        wait = float(os.environ.get("LIFELONG_RUN_WAIT_S") or 3600)
        what = f"{dag_id} {', '.join(str(d) for d in logical_dates)}"
        held.enter_context(locks.hold(settings.home / "locks" / "airflow-embedded.lock", what, timeout=wait))
        model = _model_of(dag_id, conf, load_params().models)
        if model is not None:
            held.enter_context(modellock.hold(settings.home, model, what, timeout=wait))
        return _run_dag(dag_id, logical_dates, conf, settings, on_result, model)


def _model_of(dag_id: str, conf: dict | None, declared: Collection[str]) -> str | None:
    """The declared model a lifelong DAG run changes, where the DAG id or its conf names it.

    >>> models = {"demand_forecaster", "engine_classifier"}
    >>> _model_of("lifelong_daily__demand_forecaster", None, models)
    'demand_forecaster'
    >>> _model_of("lifelong_add_task", {"model": "engine_classifier"}, models)
    'engine_classifier'
    >>> _model_of("lifelong_add_task", {"model": "../x"}, models) is None
    True
    """
    model = dag_id.partition("__")[2] if dag_id.startswith("lifelong_daily__") else (conf or {}).get("model")
    return model if isinstance(model, str) and model in declared else None


def _run_dag(
    dag_id: str,
    logical_dates: Sequence[str | None],
    conf: dict | None,
    settings: Settings,
    on_result: Callable[[dict], None] | None,
    model: str | None = None,
) -> list[dict]:
    env = ensure_airflow(settings)
    if model is not None:
        env = modellock.inherit_env(env, model)
    log = settings.home / "logs" / f"{dag_id}.log"
    request = json.dumps({"dag_id": dag_id, "dates": list(logical_dates), "conf": conf})
    cmd = [sys.executable, "-m", "lifelong.airflow.dagrun_child", request]
    results = []
    with log.open("a") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=out, text=True)
        for result in _results(proc.stdout):
            results.append(result)
            if on_result:
                on_result(result)
        code = proc.wait()
    if code:
        raise LifelongError(f"running {dag_id} failed (exit {code}); see {log}")
    return results


def _results(lines: Iterator[str] | None) -> Iterator[dict]:
    for line in lines or ():
        if line.startswith(RESULT_PREFIX):
            yield json.loads(line[len(RESULT_PREFIX) :])


RESULT_PREFIX = "LIFELONG-RESULT "


if __name__ == "__main__":
    # `python -m lifelong.airflow.embedded_runner pools`: the pools as `airflow pools import` JSON
    if sys.argv[1:] == ["pools"]:
        print(json.dumps(pools_json()))
