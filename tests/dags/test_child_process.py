"""The DAG-run child's process hygiene: full collections held for the first run, a fast but clean exit."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

from lifelong.airflow import dagrun_child


def test_full_collections_are_held_then_given_back():
    before = gc.get_threshold()
    try:
        dagrun_child.hold_full_collections()
        dagrun_child.hold_full_collections()  # idempotent: the collector's own thresholds are kept once
        held = gc.get_threshold()
        assert held[:2] == before[:2] and held[2] >= 1_000_000
    finally:
        dagrun_child.release_full_collections()
    assert gc.get_threshold() == before
    dagrun_child.release_full_collections()  # nothing held: nothing changes
    assert gc.get_threshold() == before


def test_exit_process_runs_the_exit_steps_that_matter(tmp_path: Path):
    """Exit code, flushed streams, atexit handlers and logging handlers, threads joined: as a normal exit."""
    script = textwrap.dedent(
        f"""
        import atexit, logging, sys, threading, time
        from pathlib import Path
        from lifelong.airflow.dagrun_child import exit_process

        out = Path({str(tmp_path)!r})
        logging.basicConfig(filename=out / "log.txt", level=logging.INFO)
        logging.info("logged before exit")
        atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
        threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread.txt").write_text("joined"))).start()
        sys.stdout.write("unflushed result line")
        exit_process(3)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unflushed result line"
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "thread.txt").read_text() == "joined"
    assert "logged before exit" in (tmp_path / "log.txt").read_text()
