"""One process at a time: an advisory file lock that says who holds it.

DVC commands in one workspace must never run at once (two ``dvc add`` racing on ``data.dvc``
lose a version), and neither may two writers of the Great Expectations context. Each such
section runs inside :func:`hold`, an exclusive ``fcntl.flock`` on a file under
``<home>/locks/``. The holder writes who it is into the file, so a process that gives up
waiting can name it:

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "demo.lock"
>>> with hold(path, "ingest vic_elec 2012-01-05", timeout=1):
...     try:
...         with hold(path, "another ingest", timeout=0.2):
...             pass
...     except StoreBusy as exc:
...         print(str(exc).split(" (lock ")[0])  # doctest: +ELLIPSIS
store busy: held by pid ... (ingest vic_elec 2012-01-05) since ...; gave up after 0.2 s

``flock`` locks belong to the open file, so the lock is released when its holder exits,
even by ``kill -9``: a stale lock file never blocks anyone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from lifelong import faults
from lifelong.errors import StoreBusy

DEFAULT_TIMEOUT_S = 600.0


def default_timeout() -> float:
    """Seconds to wait for a lock: ``LIFELONG_LOCK_TIMEOUT_S`` or 600."""
    raw = os.environ.get("LIFELONG_LOCK_TIMEOUT_S")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0).decode(errors="replace")
        info = json.loads(raw)
        return f"pid {info['pid']} on {info['host']} ({info['what']}) since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def poll(take: Callable[[], bool], timeout: float, gave_up: Callable[[], StoreBusy], *, interval: float) -> None:
    """Call ``take`` until it gets the lock; found held, pass checkpoint ``lock_wait`` once
    (:mod:`lifelong.faults`), then retry every ``interval`` s; after ``timeout`` s raise ``gave_up()``.
    The wait of every lock backend (this file lock, :mod:`lifelong.modellock`'s PostgreSQL one)."""
    deadline, waited = time.monotonic() + timeout, False
    while not take():
        if not waited:
            waited = True
            faults.checkpoint("lock_wait")
        if time.monotonic() >= deadline:
            raise gave_up()
        time.sleep(interval)


@contextmanager
def hold(path: Path, what: str, *, timeout: float | None = None, busy: str = "store busy") -> Iterator[None]:
    """Hold the exclusive lock ``path`` while the block runs; wait up to ``timeout`` seconds.

    Raises :class:`~lifelong.errors.StoreBusy`, naming the holder, when the wait runs out
    (its message starts with ``busy``). Found held, it passes checkpoint ``lock_wait`` once
    (:mod:`lifelong.faults`) before it waits.
    """
    timeout = default_timeout() if timeout is None else timeout
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:

        def take() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        def gave_up() -> StoreBusy:
            return StoreBusy(f"{busy}: held by {_holder(fd)}; gave up after {timeout:g} s (lock {path})")

        poll(take, timeout, gave_up, interval=0.05)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": what,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def store_lock(home: Path, what: str, *, timeout: float | None = None) -> Iterator[None]:
    """The data store's lock: every DVC command and every read of ``data.dvc`` holds it."""
    return hold(home / "locks" / "dvc.lock", what, timeout=timeout)


def model_lock_path(home: Path, model: str) -> Path:
    return home / "locks" / f"model-{model}.lock"


def model_lock(home: Path, model: str, what: str, *, timeout: float | None = None) -> Iterator[None]:
    """The file backend of ``model``'s lock (:mod:`lifelong.modellock`, which every caller goes through).

    ``model`` must be a model declared in params.yaml: its name becomes part of a path.
    """
    return hold(model_lock_path(home, model), what, timeout=timeout, busy=f"model busy: {model}")


def held_by_this_process(path: Path) -> bool:
    """True when the lock file names this process (pid and host) as its holder.

    A holder writes itself into the file once it holds the lock and empties it on release, so
    the file names this process only while it holds the lock, or after a holder that had this
    pid was killed on this host (then no other process holds it either).
    """
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname()
