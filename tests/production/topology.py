"""The production topology of docker-compose.yml, started natively for tests.

:func:`production_topology` is a context manager that, against the machine's PostgreSQL
(127.0.0.1:5432, trust auth, user ``postgres``) and Redis (127.0.0.1:6379):

* creates databases and roles of its own with ``docker/postgres-init.sh`` (unique names) and
  claims an empty Redis database number;
* runs ``docker/airflow-init.sh`` (db migrate, admin login, pools), then starts one process per
  compose service, with the compose service's command: ``mlflow`` (``docker/mlflow-server.sh``:
  basic auth on the Postgres backend; artifacts proxied to a local folder instead of MinIO),
  ``airflow-apiserver``, ``airflow-scheduler``, ``airflow-dag-processor``, optionally
  ``airflow-triggerer``, ``airflow-worker`` (queue ``default``) and ``airflow-worker-gpu``
  (queue ``gpu``), all on CeleryExecutor with Redis as broker;
* waits until each is healthy and yields a :class:`Topology` that talks to the Airflow REST API
  with a JWT token (SimpleAuthManager, ``POST /auth/token``);
* at exit, even on failure, stops every process by its own PID (its process group and any
  descendant that left it), drops the databases and roles and empties its Redis database.

Each worker reports itself to Airflow under its compose service name (``[core]
hostname_callable``), so a task instance's ``hostname`` says which worker ran it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import psycopg
import redis
import requests
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
PG_HOST, PG_PORT, PG_SUPERUSER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_CLAIM_KEY = "lifelong:topology:owner"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
HOSTNAMES_MODULE = '''"""Worker identities of the native lifelong topology (written by tests/production/topology.py)."""


def airflow_worker() -> str:
    return "airflow-worker"


def airflow_worker_gpu() -> str:
    return "airflow-worker-gpu"
'''


class TopologyError(RuntimeError):
    """A process of the topology failed to start or become healthy; the message holds its log tail."""


def services_available(timeout: float = 2.0) -> bool:
    """Whether PostgreSQL and Redis answer on their local ports."""
    try:
        with psycopg.connect(_pg_dsn("postgres"), connect_timeout=int(timeout)):
            pass
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=timeout).ping()
    except (psycopg.Error, redis.RedisError, OSError):
        return False
    return True


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_dsn(dbname: str) -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_SUPERUSER} dbname={dbname}"


# --------------------------------------------------------------------------- processes


@dataclass
class Service:
    """One started process (and its process group), named after its docker-compose service."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str] = field(repr=False, default_factory=dict)
    cwd: Path | None = None
    started: float = field(default_factory=time.monotonic)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise TopologyError(f"{self.name} exited with {self.proc.returncode}; log {self.log}:\n{self.log_tail()}")


def _start(name: str, argv: list[str], env: Mapping[str, str], logs: Path, cwd: Path) -> Service:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(  # own session: its process group id is its pid
            argv, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Service(name, argv, log, proc, dict(env), cwd)


def _again(service: Service) -> Service:
    """``service`` started anew: the same command, environment, folder and log (appended to)."""
    return _start(service.name, service.argv, service.env, service.log.parent, service.cwd or service.log.parent)


def _stop(services: list[Service], grace: float = 20.0) -> None:
    """SIGTERM each service's process group and every descendant at once, then SIGKILL what is left."""
    family: list[psutil.Process] = []
    for s in services:
        with contextlib.suppress(psutil.NoSuchProcess):
            family += [psutil.Process(s.proc.pid), *psutil.Process(s.proc.pid).children(recursive=True)]
    for s in services:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(s.proc.pid, signal.SIGTERM)
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=grace)
    for s in services:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(s.proc.pid, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    for s in services:
        with contextlib.suppress(subprocess.TimeoutExpired):
            s.proc.wait(timeout=5)


def _wait(what: str, ready: Callable[[], bool], services: list[Service], timeout: float, poll: float = 1.0) -> None:
    """Poll ``ready`` until true; fail early, with logs, if one of ``services`` died."""
    deadline = time.monotonic() + timeout
    while True:
        for s in services:
            s.check_alive()
        with contextlib.suppress(requests.RequestException, OSError):
            if ready():
                return
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {s.name} ({s.log}):\n{s.log_tail(1500)}" for s in services)
            raise TopologyError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(poll)


def _http_ok(url: str) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=5).status_code == 200


def _log_says(service: Service, text: str) -> Callable[[], bool]:
    return lambda: text in service.log.read_text(errors="replace")


# --------------------------------------------------------------------------- stores


@dataclass(frozen=True)
class Databases:
    """Roles and databases of one topology (names unique to it), as docker/postgres-init.sh creates them."""

    airflow_user: str
    airflow_db: str
    mlflow_user: str
    mlflow_db: str
    mlflow_auth_db: str
    password: str

    @classmethod
    def unique(cls) -> Databases:
        tag = f"lifelong_t{os.getpid()}_{secrets.token_hex(3)}"
        return cls(f"{tag}_af", f"{tag}_af", f"{tag}_ml", f"{tag}_ml", f"{tag}_mlauth", secrets.token_hex(12))

    def url(self, user: str, db: str, scheme: str = "postgresql") -> str:
        return f"{scheme}://{user}:{self.password}@{PG_HOST}:{PG_PORT}/{db}"

    def init_env(self) -> dict[str, str]:
        return {
            "PGHOST": PG_HOST,
            "PGPORT": str(PG_PORT),
            "POSTGRES_USER": PG_SUPERUSER,
            "AIRFLOW_DB_USER": self.airflow_user,
            "AIRFLOW_DB_NAME": self.airflow_db,
            "AIRFLOW_DB_PASSWORD": self.password,
            "MLFLOW_DB_USER": self.mlflow_user,
            "MLFLOW_DB_NAME": self.mlflow_db,
            "MLFLOW_AUTH_DB_NAME": self.mlflow_auth_db,
            "MLFLOW_DB_PASSWORD": self.password,
        }

    def drop(self) -> None:
        """Drop the databases (closing their connections) and the roles; missing ones are fine."""
        with psycopg.connect(_pg_dsn("postgres"), autocommit=True) as conn:
            for db in (self.airflow_db, self.mlflow_db, self.mlflow_auth_db):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            for role in {self.airflow_user, self.mlflow_user}:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

    def exist(self) -> list[str]:
        """Which of this topology's databases still exist."""
        names = [self.airflow_db, self.mlflow_db, self.mlflow_auth_db]
        with psycopg.connect(_pg_dsn("postgres")) as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,)).fetchall()
        return [r[0] for r in rows]


@contextlib.contextmanager
def database_outage(dbs: Databases) -> Iterator[None]:
    """PostgreSQL restarting, as this topology sees it: every connection to its databases is cut
    and new ones are refused until the block ends. (The machine's server is shared by other
    sessions, so it is not itself restarted.)"""
    names = [dbs.airflow_db, dbs.mlflow_db, dbs.mlflow_auth_db]
    with psycopg.connect(_pg_dsn("postgres"), autocommit=True) as conn:
        for db in names:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(db)))
        try:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY(%s)"
                " AND pid <> pg_backend_pid()",
                (names,),
            )
            yield
        finally:
            for db in names:
                conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(db)))


def claim_redis_db(owner: str) -> int:
    """Claim an empty Redis database number (1..15) by writing an owner key into it."""
    for n in random.sample(range(1, 16), 15):
        r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=n)
        if r.dbsize() == 0 and r.set(REDIS_CLAIM_KEY, owner, nx=True) and r.dbsize() == 1:
            return n
    raise TopologyError("no empty Redis database among 1..15")


def release_redis_db(n: int, owner: str) -> None:
    """Empty database ``n`` if this topology still owns it."""
    r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=n)
    if r.get(REDIS_CLAIM_KEY) == owner.encode():
        r.flushdb()


# --------------------------------------------------------------------------- the topology


@dataclass
class Topology:
    """A running topology: URLs, logins, the shared Airflow environment, and REST helpers."""

    airflow_url: str
    mlflow_url: str
    admin_user: str
    admin_password: str
    mlflow_user: str
    mlflow_password: str
    env: dict[str, str]
    services: dict[str, Service]
    databases: Databases
    redis_db: int
    timings: dict[str, float]
    stopped: dict[str, Service] = field(default_factory=dict)
    _token: str | None = None
    _supervised: bool = False

    @property
    def pids(self) -> dict[str, int]:
        return {name: s.proc.pid for name, s in self.services.items()}

    def token(self) -> str:
        """A JWT from the Airflow REST API (SimpleAuthManager login)."""
        if self._token is None:
            r = requests.post(
                f"{self.airflow_url}/auth/token",
                json={"username": self.admin_user, "password": self.admin_password},
                timeout=30,
            )
            r.raise_for_status()
            self._token = str(r.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        """Call ``/api/v2{path}`` with the token; raise on an unexpected status."""
        r = requests.request(
            method,
            f"{self.airflow_url}/api/v2{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
        )
        if r.status_code not in ok:
            raise TopologyError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        """Wait until the dag-processor has parsed ``dag_id`` into the metadata database."""

        def parsed() -> bool:
            r = requests.get(
                f"{self.airflow_url}/api/v2/dags/{dag_id}",
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=10,
            )
            return r.status_code == 200

        _wait(f"DAG {dag_id} to be parsed", parsed, list(self.services.values()), timeout, poll=2.0)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, logical_date: str | None = None) -> str:
        """Trigger a run through ``POST /api/v2/dags/{dag_id}/dagRuns``; return its run id."""
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": dict(conf or {})})
        return str(run["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> str:
        """Poll the run until it succeeds or fails; return its final state."""
        state = {"value": ""}

        def done() -> bool:
            state["value"] = self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]
            return state["value"] in TERMINAL_RUN_STATES

        _wait(f"run {run_id} of {dag_id}", done, self._watched(), timeout, poll=2.0)
        return state["value"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's task instances by task id (state, queue, hostname, pid, ...)."""
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti for ti in tis}

    def stop_service(self, name: str) -> None:
        """``docker compose stop <name>``: SIGTERM, then SIGKILL; kept for :meth:`start_service`."""
        service = self.services.pop(name)
        _stop([service])
        self.stopped[name] = service

    def start_service(self, name: str, ready: Callable[[], bool], timeout: float = 180.0) -> None:
        """Start a stopped (or exited) service again with its command and environment; wait until ``ready``."""
        old = self.stopped.pop(name, None) or self.services.pop(name)
        self.services[name] = _again(old)
        _wait(name, ready, list(self.services.values()), timeout)

    def exited(self) -> list[str]:
        """Services whose process has exited."""
        return [name for name, s in self.services.items() if s.proc.poll() is not None]

    @contextlib.contextmanager
    def restarting(self) -> Iterator[list[str]]:
        """docker-compose's ``restart: unless-stopped`` (the x-airflow-common anchor, mlflow): while the
        block runs, a service that exits is started again within a second. Yields the names restarted."""
        restarted: list[str] = []
        done = threading.Event()

        def supervise() -> None:
            while not done.wait(1.0):
                for name in self.exited():
                    old = self.services[name]
                    self.services[name] = _again(old)
                    restarted.append(name)

        self._supervised = True
        supervisor = threading.Thread(target=supervise, name="restart-unless-stopped", daemon=True)
        supervisor.start()
        try:
            yield restarted
        finally:
            done.set()
            supervisor.join()
            self._supervised = False

    def _watched(self) -> list[Service]:
        """The services whose death fails a wait (none while :meth:`restarting` brings them back)."""
        return [] if self._supervised else list(self.services.values())

    def clear_run(self, dag_id: str, run_id: str) -> None:
        """Clear every task instance of the run (as "Clear" in the UI): the run starts again."""
        body = {"dag_run_id": run_id, "only_failed": False, "dry_run": False, "reset_dag_runs": True}
        self.api("POST", f"/dags/{dag_id}/clearTaskInstances", body)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}"
        entry = self.api("GET", path)
        return entry["value"]


def _airflow_env(
    base: Mapping[str, str],
    home: Path,
    dags_folder: Path,
    project_dir: Path,
    dbs: Databases,
    redis_db: int,
    api_port: int,
    mlflow_port: int,
    parallelism: int,
    secrets_: Mapping[str, str],
) -> dict[str, str]:
    """The x-airflow-env anchor of docker-compose.yml, with this machine's addresses."""
    metadata = dbs.url(dbs.airflow_user, dbs.airflow_db, "postgresql+psycopg2")
    return {
        **base,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{secrets_['admin_user']}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "auth" / "passwords.json"),
        "AIRFLOW__CORE__FERNET_KEY": secrets_["fernet"],
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + dbs.url(dbs.airflow_user, dbs.airflow_db),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets_["jwt"],
        "AIRFLOW__API__SECRET_KEY": secrets_["api"],
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "lifelong.airflow.celery_preload.CELERY_CONFIG",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW_ADMIN_USER": secrets_["admin_user"],
        "LIFELONG_PROJECT_DIR": str(project_dir),
        "LIFELONG_HOME": str(project_dir / ".lifelong"),
        "LIFELONG_DEVICE": "cpu",
        "LIFELONG_WORKER_QUEUES": "",
        "LIFELONG_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "LIFELONG_LOCK_URL": dbs.url(dbs.airflow_user, dbs.airflow_db),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MLFLOW_TRACKING_USERNAME": secrets_["mlflow_user"],
        "MLFLOW_TRACKING_PASSWORD": secrets_["mlflow_password"],
    }


def _base_env() -> dict[str, str]:
    """This process's environment, minus what would leak a user's stores, plus the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "LIFELONG_", "PYTEST_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@contextlib.contextmanager
def production_topology(
    dags_folder: Path,
    workdir: Path,
    *,
    project_dir: Path | None = None,
    parallelism: int = 2,
    triggerer: bool = False,
    gpu_device: str = "cpu",
    extra_env: Mapping[str, str] | None = None,
    startup_timeout: float = 240.0,
) -> Iterator[Topology]:
    """Start the docker-compose topology as local processes; stop and clean everything at exit.

    ``workdir`` receives AIRFLOW_HOME, the logs (``workdir/logs/<service>.log``) and MLflow's
    artifacts. ``project_dir`` is lifelong's project folder (params.yaml, data/); by default a
    fresh one in ``workdir`` with the repository's params.yaml. ``extra_env`` is added to the
    environment of every Airflow process (for example ``LIFELONG_*`` settings of a real DAG).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    if project_dir is None:
        project_dir = workdir / "project"
        project_dir.mkdir(exist_ok=True)
        shutil.copy(REPO / "params.yaml", project_dir / "params.yaml")
    hosts_dir = workdir / "pythonpath"
    hosts_dir.mkdir(exist_ok=True)
    (hosts_dir / "lifelong_topology_hosts.py").write_text(HOSTNAMES_MODULE)

    from cryptography.fernet import Fernet

    creds = {
        "admin_user": "admin",
        "admin_password": secrets.token_hex(12),
        "mlflow_user": "admin",
        "mlflow_password": secrets.token_hex(12),
        "fernet": Fernet.generate_key().decode(),
        "jwt": secrets.token_hex(32),
        "api": secrets.token_hex(32),
    }
    dbs = Databases.unique()
    owner = dbs.airflow_db
    api_port, mlflow_port, health_port = free_port(), free_port(), free_port()
    timings: dict[str, float] = {}
    services: dict[str, Service] = {}
    base = _base_env()
    redis_db: int | None = None
    t0 = time.monotonic()
    try:
        pg_init = subprocess.run(
            ["bash", str(DOCKER / "postgres-init.sh")],
            env={**base, **dbs.init_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if pg_init.returncode != 0:
            raise TopologyError(f"docker/postgres-init.sh failed:\n{pg_init.stdout}{pg_init.stderr}")
        redis_db = claim_redis_db(owner)
        env = _airflow_env(
            base,
            workdir / "airflow",
            dags_folder,
            project_dir,
            dbs,
            redis_db,
            api_port,
            mlflow_port,
            parallelism,
            creds,
        )
        env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] = str(health_port)
        env.update(extra_env or {})
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hosts_dir), base.get("PYTHONPATH", "")]))

        # mlflow: the compose service's entry script, on this machine's Postgres
        mlflow_env = {
            **base,
            "MLFLOW_BACKEND_STORE_URI": dbs.url(dbs.mlflow_user, dbs.mlflow_db),
            "MLFLOW_AUTH_DATABASE_URI": dbs.url(dbs.mlflow_user, dbs.mlflow_auth_db),
            "MLFLOW_AUTH_ADMIN_USERNAME": creds["mlflow_user"],
            "MLFLOW_AUTH_ADMIN_PASSWORD": creds["mlflow_password"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
            "MLFLOW_AUTH_CONFIG_PATH": str(workdir / "mlflow-basic-auth.ini"),
            "MLFLOW_ARTIFACTS_DESTINATION": str(workdir / "mlartifacts"),
            "MLFLOW_HOST": "127.0.0.1",
            "MLFLOW_PORT": str(mlflow_port),
            "MLFLOW_WORKERS": "1",
        }
        services["mlflow"] = _start("mlflow", ["bash", str(DOCKER / "mlflow-server.sh")], mlflow_env, logs, workdir)

        # airflow-init, to completion (concurrently with MLflow's start-up)
        init = subprocess.run(
            ["bash", str(DOCKER / "airflow-init.sh")],
            env={**env, "AIRFLOW_ADMIN_PASSWORD": creds["admin_password"]},
            cwd=workdir,
            stdout=(logs / "airflow-init.log").open("wb"),
            stderr=subprocess.STDOUT,
            timeout=600,
        )
        if init.returncode != 0:
            raise TopologyError(f"airflow-init failed:\n{(logs / 'airflow-init.log').read_text()[-3000:]}")
        timings["airflow-init"] = time.monotonic() - t0

        def start(name: str, argv: list[str], **extra: str) -> Service:
            services[name] = _start(name, argv, {**env, **extra}, logs, workdir)
            return services[name]

        start(
            "airflow-apiserver",
            ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"],
        )
        start("airflow-scheduler", ["airflow", "scheduler"])
        start("airflow-dag-processor", ["airflow", "dag-processor"])
        if triggerer:
            start(
                "airflow-triggerer",
                ["airflow", "triggerer"],
                AIRFLOW__TRIGGERER__TRIGGERER_LOG_SERVER_PORT=str(free_port()),
            )
        workers = [
            start(
                "airflow-worker",
                [
                    "airflow",
                    "celery",
                    "worker",
                    "--queues",
                    "default",
                    "--concurrency",
                    "1",
                    "--celery-hostname",
                    "default@%h",
                ],
                LIFELONG_WORKER_QUEUES="default",
                AIRFLOW__CORE__HOSTNAME_CALLABLE="lifelong_topology_hosts.airflow_worker",
                AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            ),
            start(
                "airflow-worker-gpu",
                ["airflow", "celery", "worker", "--queues", "gpu", "--concurrency", "1", "--celery-hostname", "gpu@%h"],
                LIFELONG_WORKER_QUEUES="gpu",
                LIFELONG_DEVICE=gpu_device,
                AIRFLOW__CORE__HOSTNAME_CALLABLE="lifelong_topology_hosts.airflow_worker_gpu",
                AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            ),
        ]
        running = list(services.values())
        airflow_url, mlflow_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{mlflow_port}"

        def timed_wait(name: str, ready: Callable[[], bool]) -> None:
            _wait(name, ready, running, startup_timeout)
            timings[name] = time.monotonic() - t0

        timed_wait("mlflow", _http_ok(f"{mlflow_url}/health"))
        timed_wait("airflow-apiserver", _http_ok(f"{airflow_url}/api/v2/monitor/health"))
        timed_wait("airflow-scheduler", _http_ok(f"http://127.0.0.1:{health_port}/health"))
        timed_wait("airflow-dag-processor", lambda: _component_healthy(airflow_url, "dag_processor"))
        if triggerer:
            timed_wait("airflow-triggerer", lambda: _component_healthy(airflow_url, "triggerer"))
        for w in workers:
            timed_wait(w.name, _log_says(w, " ready."))
        yield Topology(
            airflow_url=airflow_url,
            mlflow_url=mlflow_url,
            admin_user=creds["admin_user"],
            admin_password=creds["admin_password"],
            mlflow_user=creds["mlflow_user"],
            mlflow_password=creds["mlflow_password"],
            env=env,
            services=services,
            databases=dbs,
            redis_db=redis_db,
            timings=timings,
        )
    finally:
        t_stop = time.monotonic()
        _stop(list(services.values()))
        timings["stop"] = time.monotonic() - t_stop
        if redis_db is not None:
            release_redis_db(redis_db, owner)
        dbs.drop()
        (workdir / "timings.json").write_text(json.dumps(timings, indent=2))


def _component_healthy(airflow_url: str, component: str) -> bool:
    health = requests.get(f"{airflow_url}/api/v2/monitor/health", timeout=5).json()
    return bool(health.get(component, {}).get("status") == "healthy")
