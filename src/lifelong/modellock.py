"""One lock per model, shared by every process that changes the model.

Every model-changing step (``update``, ``consolidate``, ``gate``, ``promote``, ``reject``,
``rollback``, ``watch``, ``learn_task``, ``publish``: :func:`lifelong.steps.changes.changes_model`)
holds it for its whole run, wherever it runs: the CLI, ``dvc repro``, an embedded DAG run, a
Celery worker on another host. Airflow's one-slot pool per model only orders Airflow's own
tasks; a person at the CLI has no pool, so the lock is what keeps a champion from being read
by one process and moved by another in between (check-then-act).

Two backends, chosen by ``LIFELONG_LOCK_URL``:

* unset (the embedded default): the ``flock`` file ``<home>/locks/model-<model>.lock``
  (:func:`lifelong.locks.model_lock`); the kernel releases it when its holder dies;
* ``postgresql://user:pw@host/db`` (production, where workers share no file system that is
  sure to honour ``flock``): a **session-level PostgreSQL advisory lock** on a 64-bit hash of
  the model's name, held on a connection of its own. PostgreSQL releases it when that
  connection ends, so a holder killed with ``-9``, or a worker host that vanishes, frees it
  once the server notices the connection is gone; nothing expires while a live holder works
  for hours. A Redis lock (the broker the stack also runs) would need an expiry to survive a
  dead holder, and then a live holder that outlasts its expiry (a long ``update`` on a GPU)
  silently loses it: safe only with fencing tokens checked by every store written, which
  MLflow and DVC do not check.

The lock is re-entrant per thread (``run_day`` holds it while it calls steps that take it
too), and a child process started by a holder inherits it through ``LIFELONG_MODEL_LOCK_INHERITED``
(the embedded runner holds it while its ``dag.test`` child runs the steps; without that the
child would wait for its own parent). A waiter gives up after ``LIFELONG_LOCK_TIMEOUT_S``
(600 s by default) with one line naming the holder: pid, host, what it runs, since when.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lifelong import faults, locks
from lifelong.errors import StoreBusy

URL_ENV = "LIFELONG_LOCK_URL"
INHERITED_ENV = "LIFELONG_MODEL_LOCK_INHERITED"

_held = threading.local()  # model -> depth, per thread


def _depths() -> dict[str, int]:
    if not hasattr(_held, "depths"):
        _held.depths = {}
    return _held.depths


def inherited() -> set[str]:
    """The models whose lock a parent process holds for this one."""
    return {m for m in os.environ.get(INHERITED_ENV, "").split(",") if m}


def depth(model: str) -> int:
    """How many holds of ``model``'s lock this thread is inside (0: none; an inherited lock counts once entered)."""
    return _depths().get(model, 0)


def held_here(model: str) -> bool:
    """Whether this thread holds ``model``'s lock, or inherited it from the process that started this one."""
    return _depths().get(model, 0) > 0 or model in inherited()


def inherit_env(env: dict[str, str], model: str) -> dict[str, str]:
    """``env`` for a child process that runs steps of ``model`` under the lock this process holds."""
    models = sorted(inherited() | {m for m in env.get(INHERITED_ENV, "").split(",") if m} | {model})
    return {**env, INHERITED_ENV: ",".join(models)}


@contextmanager
def hold(home: Path, model: str, what: str, *, timeout: float | None = None) -> Iterator[None]:
    """Hold ``model``'s lock while the block runs (re-entrant per thread; inherited by child processes).

    ``model`` must be declared in params.yaml (the caller checks): it becomes part of a path or a key.
    Raises :class:`~lifelong.errors.StoreBusy`, naming the holder, when ``timeout`` runs out.
    """
    depths = _depths()
    if held_here(model):
        depths[model] = depths.get(model, 0) + 1
        try:
            yield
        finally:
            depths[model] -= 1
        return
    url = os.environ.get(URL_ENV)
    backend = _pg_hold(url, model, what, timeout) if url else locks.model_lock(home, model, what, timeout=timeout)
    with backend:
        depths[model] = 1
        try:
            faults.checkpoint("lock_held")
            yield
        finally:
            depths[model] = 0


# --------------------------------------------------------------------------- PostgreSQL advisory lock


def advisory_key(model: str) -> int:
    """The signed 64-bit advisory-lock key of ``model`` (stable across processes and hosts).

    >>> advisory_key("demand_forecaster") == advisory_key("demand_forecaster") != advisory_key("other")
    True
    """
    digest = hashlib.blake2b(f"lifelong-model:{model}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def dsn(url: str) -> str:
    """A libpq URL from ``url``, without an SQLAlchemy driver suffix.

    >>> dsn("postgresql+psycopg2://u:p@h:5432/db")
    'postgresql://u:p@h:5432/db'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"{URL_ENV}: not a postgresql:// URL ({scheme}://...)")
    return f"postgresql://{rest}"


def _connect(url: str, application_name: str) -> Any:
    try:
        import psycopg

        return psycopg.connect(dsn(url), autocommit=True, application_name=application_name, connect_timeout=10)
    except ImportError:
        import psycopg2

        conn = psycopg2.connect(dsn(url), application_name=application_name, connect_timeout=10)
        conn.autocommit = True
        return conn


def _one(conn: Any, sql: str, args: tuple) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql, args)
        return cur.fetchone()
    finally:
        cur.close()


_HOLDER_SQL = """
SELECT a.pid, a.application_name, a.backend_start, a.client_addr
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
  AND l.objsubid = 1
"""


def _pg_holder(conn: Any, key: int) -> str:
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    try:
        row = _one(conn, _HOLDER_SQL, (unsigned >> 32, unsigned & 0xFFFFFFFF))
    except Exception:  # noqa: BLE001 - naming the holder is a courtesy
        return "another session"
    if row is None:
        return "another session (gone since)"
    pid, app, started, addr = row
    since = started.isoformat(timespec="seconds") if hasattr(started, "isoformat") else started
    return f"{app or 'a session'} (backend pid {pid}{f' from {addr}' if addr else ''}, connected since {since})"


@contextmanager
def _pg_hold(url: str, model: str, what: str, timeout: float | None) -> Iterator[None]:
    timeout = locks.default_timeout() if timeout is None else timeout
    key = advisory_key(model)
    name = f"lifelong pid {os.getpid()}@{socket.gethostname()} {what}"[:63]  # NAMEDATALEN - 1
    conn = _connect(url, name)
    try:
        asked = datetime.now(UTC).isoformat(timespec="seconds")
        locks.poll(
            lambda: bool(_one(conn, "SELECT pg_try_advisory_lock(%s)", (key,))[0]),
            timeout,
            lambda: StoreBusy(
                f"model busy: {model} is held by {_pg_holder(conn, key)}; gave up after {timeout:g} s "
                f"(PostgreSQL advisory lock {key}, asked at {asked})"
            ),
            interval=0.1,
        )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # the session is lost: the server released the lock with it
                _one(conn, "SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        conn.close()  # ends the session: PostgreSQL drops any lock it still held
