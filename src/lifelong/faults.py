"""Fault injection: named points where a test can kill the process or fill its disk.

A checkpoint is one line in the code, ``faults.checkpoint("dvc_push")``. It does nothing
(one environment lookup) unless ``LIFELONG_FAULT`` names it:

* ``LIFELONG_FAULT=dvc_push`` (or ``kill:dvc_push``): the process sends itself ``SIGKILL``
  there, as the OOM killer or a lost worker would: no ``finally``, no ``atexit``, no flush;
* ``LIFELONG_FAULT=enospc:dvc_push``: an ``OSError(ENOSPC)`` is raised there, as a full
  disk would at that write;
* ``LIFELONG_FAULT=raise:dvc_push``: :class:`InjectedCrash` is raised there, for tests that
  run steps in their own process (the registry's state machine): a ``BaseException``, so no
  ``except Exception`` on the way catches it, as nothing catches a kill. Unlike a kill,
  context managers still exit (an MLflow run ends ``FAILED``, not ``RUNNING``);
* ``LIFELONG_FAULT=pause:alias_pair``: the process stops there until a test lets it go, so that
  a test forces an interleaving of two processes without timing: it writes
  ``<name>.reached`` (its pid) into ``LIFELONG_FAULT_PAUSE_DIR`` and waits until
  ``<name>.release`` appears there (:func:`reached`, :func:`release`). After
  ``LIFELONG_FAULT_PAUSE_S`` (default 300) unreleased, it gives up with :class:`InjectedCrash`.

Several faults may be listed, comma-separated. With ``LIFELONG_FAULT_MARKER`` set to a file
path, a fault fires **once**: the first process to reach it creates the marker (atomically,
``O_EXCL``) and fails; every later process - the Airflow retry, the re-run of the day -
finds the marker and passes. Without a marker it fires every time.

>>> import os
>>> os.environ[ENV] = "enospc:demo"
>>> checkpoint("other")  # not named: nothing happens
>>> checkpoint("demo")
Traceback (most recent call last):
...
OSError: [Errno 28] No space left on device (injected at checkpoint 'demo')
>>> parse("train_epoch, enospc:dvc_push, raise:audit")
{'train_epoch': 'kill', 'dvc_push': 'enospc', 'audit': 'raise'}
>>> import tempfile; os.environ[PAUSE_DIR_ENV] = tempfile.mkdtemp()
>>> os.environ[ENV] = "pause:demo"
>>> release("demo"); checkpoint("demo")  # released beforehand: it passes at once
>>> reached("demo", timeout=1)
True
>>> del os.environ[PAUSE_DIR_ENV]
>>> del os.environ[ENV]
"""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import time
from pathlib import Path

ENV = "LIFELONG_FAULT"
MARKER_ENV = "LIFELONG_FAULT_MARKER"
PAUSE_DIR_ENV = "LIFELONG_FAULT_PAUSE_DIR"
PAUSE_S_ENV = "LIFELONG_FAULT_PAUSE_S"
KINDS = ("kill", "enospc", "raise", "pause")

# The checkpoints placed in the code, where each one sits (docs/reliability.md lists them too).
CHECKPOINTS = {
    "validate": "data/store.py ingest: the batch was validated, nothing is stored yet",
    "partition_write": "data/store.py ingest: under the store lock, before the day's partition is written",
    "dvc_push": "data/dvcrepo.py record: `dvc add` done (data.dvc rewritten), `dvc push` not yet",
    "train_epoch": "learn/train.py fit: after each epoch (the first one that reaches it fires)",
    "mlflow_log": "registry.py log_candidate: state uploaded to the run, model not logged, nothing registered",
    "register": "registry.py _register: version registered, not yet tagged artifacts_complete",
    "promote_alias": "registry.py promote: version tagged approved, the champion alias not moved yet",
    "audit": "registry.py promote: champion alias moved, the audit event not written yet",
}

# Where tests pause one process to force an interleaving with another (``pause:<name>``); not on the
# soak's draw (lock_wait and checkout are not reached by an undisturbed day).
INTERLEAVING_CHECKPOINTS = {
    "alias_pair": "aliases.py complete: a recorded alias move has set `previous`, not yet `champion`",
    "step_start": "steps/changes.py changes_model: a model-changing step called, its model's lock not asked for yet",
    "lock_held": "modellock.py hold: the model's lock just taken (outermost holder of this thread)",
    "lock_wait": "locks.py / modellock.py: a lock found held by another process, before waiting for it",
    "checkout": "data/store.py checkout: under the store lock, before the version is restored",
}


class InjectedCrash(BaseException):  # noqa: N818 - it stands for a process dying, not an error
    """The process "died" at a checkpoint (``raise:<checkpoint>``): the in-process stand-in for a kill."""


def parse(spec: str) -> dict[str, str]:
    """``"kill:a, enospc:b, c"`` -> ``{"a": "kill", "b": "enospc", "c": "kill"}``."""
    out: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        kind, sep, name = item.partition(":")
        if not sep:
            kind, name = "kill", item
        if kind not in KINDS:
            raise ValueError(f"{ENV}: unknown fault kind {kind!r} in {item!r} (use {', '.join(KINDS)})")
        out[name.strip()] = kind
    return out


def checkpoint(name: str) -> None:
    """Fail here if ``LIFELONG_FAULT`` names this checkpoint (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    kind = parse(spec).get(name)
    if kind is None or not _first_time(name):
        return
    if kind == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected at checkpoint {name!r})")
    if kind == "raise":
        raise InjectedCrash(f"crash injected at checkpoint {name!r}")
    if kind == "pause":
        _pause(name)
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _first_time(name: str) -> bool:
    """True once per marker file (always, without one): claim the marker atomically."""
    marker = os.environ.get(MARKER_ENV)
    if not marker:
        return True
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{name} pid {os.getpid()}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return True


def pause_dir() -> Path:
    """Where a paused process says it is waiting, and where a test lets it go."""
    return Path(os.environ.get(PAUSE_DIR_ENV) or Path(tempfile.gettempdir()) / "lifelong-pause")


def _pause(name: str) -> None:
    folder = pause_dir()
    folder.mkdir(parents=True, exist_ok=True)
    go = folder / f"{name}.release"
    tmp = folder / f".{name}.reached.{os.getpid()}"
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(folder / f"{name}.reached")  # whole or absent: a test never reads half a pid
    limit = float(os.environ.get(PAUSE_S_ENV) or 300)
    if not _appears(go, limit):
        raise InjectedCrash(f"paused at checkpoint {name!r} and never released ({go} after {limit:g} s)")


def _appears(path: Path, timeout: float) -> bool:
    """Whether ``path`` exists within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def reached(name: str, *, timeout: float = 60.0) -> bool:
    """Wait until a process paused at checkpoint ``name`` (``pause:<name>``); False if none did in time."""
    return _appears(pause_dir() / f"{name}.reached", timeout)


def release(name: str) -> None:
    """Let the process paused at checkpoint ``name`` go on (or one that reaches it later pass at once)."""
    folder = pause_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.release").touch()
