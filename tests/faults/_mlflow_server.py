"""The MLflow tracking server of the production topology, alone, for the chaos soak.

The command of docker-compose.yml's ``mlflow`` service (``docker/mlflow-server.sh``: ``mlflow
server --backend-store-uri postgresql://... --artifacts-destination ... --workers ...``, the job
runner off) on fresh databases with unique names created by ``docker/postgres-init.sh`` on the
machine's PostgreSQL (127.0.0.1:5432) and dropped at the end; artifacts are served by the server
(``mlflow-artifacts:/``) from a local folder instead of MinIO. One option differs: no
``--app-name basic-auth``. MLflow's basic auth checks the password hash on every request (~0.3 s
of CPU each on the shared 2-core machine), which made a soak day ten times slower (a day
~65-80 s instead of ~6 s); the login itself is tested by the topology tests
(``tests/production``). The process helpers and :func:`database_outage` are
``tests/production/topology.py``'s, imported from there.

A step's child reaches it through :meth:`MlflowServer.client_env`: ``MLFLOW_TRACKING_URI``
(which :func:`lifelong.config.load_settings` reads first; artifacts then default to
``mlflow-artifacts:/``) and the MLflow client's HTTP retries lowered as
``tests/production/production_run.py`` lowers them, so that a stopped server fails a call in
seconds rather than minutes.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_PRODUCTION = Path(__file__).resolve().parents[1] / "production"
if str(_PRODUCTION) not in sys.path:
    sys.path.insert(0, str(_PRODUCTION))

import topology  # noqa: E402 - tests/production is not a package: its folder is put on the path above

# as tests/production/production_run.py: one retry, backoff 1 s (MLflow's default is 7 over minutes)
services_available = topology.services_available
QUICK_CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@dataclass
class MlflowServer:
    """One ``mlflow server`` process (its own process group) and its databases."""

    url: str
    databases: topology.Databases
    service: topology.Service
    artifacts: Path
    restarts: int = field(default=0)

    def client_env(self) -> dict[str, str]:
        """What a step's process needs to use this server, as the Airflow workers have it."""
        return {
            "MLFLOW_TRACKING_URI": self.url,
            **QUICK_CLIENT,
        }

    def healthy(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, timeout: float = 180.0) -> None:
        topology._wait("the MLflow server", self.healthy, [self.service], timeout, poll=0.5)

    def stop(self) -> None:
        """``docker compose stop mlflow``: SIGTERM its process group (SIGKILL what is left after 20 s)."""
        topology._stop([self.service])

    def start(self, timeout: float = 180.0) -> None:
        """Start it again with the same command, environment and log; wait until it answers."""
        self.service = topology._again(self.service)
        self.restarts += 1
        self.wait_ready(timeout)

    def outage(self) -> contextlib.AbstractContextManager[None]:
        """PostgreSQL restarting, as the server sees it (``topology.database_outage``)."""
        return topology.database_outage(self.databases)


@contextlib.contextmanager
def mlflow_server(workdir: Path) -> Iterator[MlflowServer]:
    """Start the server (not waiting for it: call :meth:`MlflowServer.wait_ready`); stop and drop at exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    dbs = topology.Databases.unique()
    base = topology._base_env()
    port = topology.free_port()
    service: topology.Service | None = None
    server: MlflowServer | None = None
    try:
        init = subprocess.run(
            ["bash", str(topology.DOCKER / "postgres-init.sh")],
            env={**base, **dbs.init_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if init.returncode != 0:
            raise topology.TopologyError(f"docker/postgres-init.sh failed:\n{init.stdout}{init.stderr}")
        env = {**base, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # as docker/mlflow-server.sh
        argv = [
            "mlflow", "server",
            "--backend-store-uri", dbs.url(dbs.mlflow_user, dbs.mlflow_db),
            "--artifacts-destination", str(workdir / "mlartifacts"),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", "1",
        ]  # fmt: skip
        service = topology._start("mlflow", argv, env, workdir, workdir)
        server = MlflowServer(f"http://127.0.0.1:{port}", dbs, service, workdir / "mlartifacts")
        yield server
    finally:
        t0 = time.monotonic()
        if server is not None:
            service = server.service  # the latest one, after restarts
        if service is not None:
            topology._stop([service])
        dbs.drop()
        print(f"mlflow server stopped and its databases dropped in {time.monotonic() - t0:.1f} s", file=sys.stderr)
