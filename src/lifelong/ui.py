"""``lifelong ui``: the Airflow and MLflow UIs of the embedded stores, on 127.0.0.1.

Starts the Airflow api-server, scheduler and dag-processor (one worker each) and the
MLflow UI, prints the URLs and the Airflow login, and stops them all (process groups)
on Ctrl-C or when any of them dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lifelong.config import load_settings


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("a")
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.time() + 20
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _password(env: dict[str, str]) -> str:
    path = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    for _ in range(60):
        if path.exists():
            return json.loads(path.read_text()).get("admin", "?")
        time.sleep(1)
    return f"(see {path})"


def serve(airflow_port: int = 8080, mlflow_port: int = 5000) -> None:
    from lifelong.airflow.embedded_runner import ensure_airflow

    settings = load_settings()
    env = ensure_airflow(settings)
    env["AIRFLOW__API__PORT"] = str(airflow_port)
    env["AIRFLOW__API__HOST"] = "127.0.0.1"
    env["AIRFLOW__API__WORKERS"] = "1"
    logs = settings.home / "logs"
    airflow = [sys.executable, "-m", "airflow"]
    procs = [
        _start([*airflow, "api-server", "--port", str(airflow_port), "--host", "127.0.0.1"], env, logs / "api.log"),
        _start([*airflow, "scheduler"], env, logs / "scheduler.log"),
        _start([*airflow, "dag-processor"], env, logs / "dag-processor.log"),
        _start(
            [
                sys.executable,
                "-m",
                "mlflow",
                "ui",
                "--backend-store-uri",
                settings.mlflow_tracking_uri,
                "--default-artifact-root",
                settings.mlflow_artifact_root,
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            env,
            logs / "mlflow-ui.log",
        ),
    ]
    try:
        print(f"Airflow: http://127.0.0.1:{airflow_port}  (user admin, password {_password(env)})", flush=True)
        print(f"MLflow:  http://127.0.0.1:{mlflow_port}", flush=True)
        print(f"logs:    {logs}   -- Ctrl-C stops everything", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        print("a UI process exited; stopping the others (see the logs)", file=sys.stderr)
    except KeyboardInterrupt:
        print("stopping ...", file=sys.stderr)
    finally:
        _stop(procs)
