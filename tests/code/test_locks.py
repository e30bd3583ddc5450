"""The model lock (``lifelong.modellock``), on both backends: the ``flock`` file and a PostgreSQL
advisory lock (the machine's PostgreSQL at 127.0.0.1:5432, skipped when it does not answer).

Interleavings are forced with ``pause:<checkpoint>`` faults (``lifelong.faults``), never with
sleeps: a holder pauses at ``lock_held`` with the lock taken; a waiter pauses at ``lock_wait``
once it has found the lock held. Only the give-up tests wait, for the short timeout they set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lifelong import faults, modellock
from lifelong.errors import StoreBusy

MODEL = "demand_forecaster"
PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SRC = str(Path(__file__).resolve().parents[2] / "src")

HOLD = """
import sys
from pathlib import Path
from lifelong import modellock
with modellock.hold(Path(sys.argv[1]), sys.argv[2], sys.argv[3], timeout=float(sys.argv[4])):
    print("held", modellock.held_here(sys.argv[2]), flush=True)
"""


def _pg_up() -> bool:
    try:
        conn = modellock._connect(PG_URL, "lifelong test probe")
    except Exception:  # noqa: BLE001 - no server: the PostgreSQL cases skip
        return False
    conn.close()
    return True


@pytest.fixture(params=["file", "postgresql"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Each test on both backends; a fresh pause folder; on PostgreSQL a model name of its own."""
    monkeypatch.setenv(faults.PAUSE_DIR_ENV, str(tmp_path / "pause"))
    monkeypatch.delenv(faults.ENV, raising=False)
    monkeypatch.delenv(faults.MARKER_ENV, raising=False)
    monkeypatch.delenv(modellock.INHERITED_ENV, raising=False)
    if request.param == "postgresql":
        if not _pg_up():
            pytest.skip("no PostgreSQL at 127.0.0.1:5432")
        monkeypatch.setenv(modellock.URL_ENV, PG_URL)
    else:
        monkeypatch.delenv(modellock.URL_ENV, raising=False)
    return request.param


@pytest.fixture
def model(backend: str, tmp_path: Path) -> str:
    # advisory locks are server-wide: a name no other test run on this machine uses at the same time
    return MODEL if backend == "file" else f"test-{os.getpid()}-{tmp_path.name}"


def _start(home: Path, model: str, what: str, *, fault: str | None = None, timeout: float = 30, **env: str):
    child_env = {**os.environ, "PYTHONPATH": SRC, **env}
    child_env.pop(faults.ENV, None)
    if fault:
        child_env[faults.ENV] = fault
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home), model, what, str(timeout)],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def test_a_holder_in_another_process_excludes_and_is_named(backend, model, tmp_path, procs):
    holder = _start(tmp_path, model, "promote v7", fault="pause:lock_held")
    procs.append(holder)
    assert faults.reached("lock_held"), holder.stderr.read() if holder.poll() is not None else "no pause"
    busy_now = pytest.raises(StoreBusy, match=r"^model busy: .*gave up after 0.3 s")
    with busy_now as busy, modellock.hold(tmp_path, model, "a second promoter", timeout=0.3):
        pytest.fail("entered while another process held the lock")
    assert str(holder.pid) in str(busy.value) and "promote v7" in str(busy.value)
    assert "\n" not in str(busy.value)
    faults.release("lock_held")
    assert _finish(holder).startswith("held")
    with modellock.hold(tmp_path, model, "after it", timeout=5):
        assert modellock.held_here(model)
    assert not modellock.held_here(model)


def test_a_waiter_waits_for_the_holder_then_goes_on(backend, model, tmp_path, procs):
    holder = _start(tmp_path, model, "first", fault="pause:lock_held")
    procs.append(holder)
    assert faults.reached("lock_held")
    waiter = _start(tmp_path, model, "second", fault="pause:lock_wait")
    procs.append(waiter)
    assert faults.reached("lock_wait")  # it found the lock held (and waits there until let go)
    faults.release("lock_wait")
    assert waiter.poll() is None  # still waiting for the lock
    faults.release("lock_held")
    assert _finish(holder).startswith("held") and _finish(waiter).startswith("held")


def test_reentrant_in_a_thread_exclusive_between_threads(backend, model, tmp_path):
    found: list[BaseException | None] = []

    def other_thread() -> None:
        try:
            with modellock.hold(tmp_path, model, "another thread", timeout=0.3):
                found.append(None)
        except StoreBusy as exc:
            found.append(exc)

    with modellock.hold(tmp_path, model, "run_day", timeout=5):
        with modellock.hold(tmp_path, model, "promote, inside run_day", timeout=0):
            assert modellock.depth(model) == 2
        assert modellock.depth(model) == 1
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert isinstance(found[0], StoreBusy), found
    assert modellock.depth(model) == 0
    with modellock.hold(tmp_path, model, "free again", timeout=0):
        pass


def test_a_child_inherits_the_lock_its_parent_holds(backend, model, tmp_path, procs):
    with modellock.hold(tmp_path, model, "embedded run_dag", timeout=5):
        inherited = _start(tmp_path, model, "dag.test child", timeout=0, **modellock.inherit_env({}, model))
        stranger = _start(tmp_path, model, "a CLI run", timeout=0)
        procs.extend([inherited, stranger])
        assert _finish(inherited).strip() == "held True"
        _, err = stranger.communicate(timeout=60)
        assert stranger.returncode != 0 and "model busy" in err


def test_a_killed_holder_frees_the_lock(backend, model, tmp_path, procs):
    """``kill -9`` runs no ``finally``: the kernel (flock) or the server (session lock) frees it."""
    holder = _start(tmp_path, model, "killed", fault="pause:lock_held")
    procs.append(holder)
    assert faults.reached("lock_held")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with modellock.hold(tmp_path, model, "after the kill", timeout=10):
        pass


def test_pause_gives_up_when_never_released(monkeypatch, tmp_path):
    monkeypatch.setenv(faults.PAUSE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(faults.PAUSE_S_ENV, "0.1")
    monkeypatch.setenv(faults.ENV, "pause:nowhere")
    with pytest.raises(faults.InjectedCrash, match="never released"):
        faults.checkpoint("nowhere")
    assert faults.reached("nowhere", timeout=0)


def test_a_lock_url_that_is_not_postgresql_is_refused_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(modellock.URL_ENV, "redis://127.0.0.1:6379/0")
    refused = pytest.raises(ValueError, match=r"^LIFELONG_LOCK_URL: not a postgresql:// URL \(redis://...\)$")
    with refused, modellock.hold(tmp_path, MODEL, "x", timeout=0):
        pass
