"""``lifelong data checkout --in-place`` and an ingest at once, forced in that order (no timing).

The checkout pauses under the store lock (``pause:checkout``); the ingest, started then, pauses
once it finds the store lock held (``pause:lock_wait``); both are let go. The ingest lands on
the rewound store, never in the middle of the rewind: ``data.dvc`` matches ``data/`` exactly and
names the ingest's version, which holds the checked-out day and the ingested one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _data_kit import day, make_workspace

from lifelong import faults
from lifelong.data import store
from lifelong.data.landing import simulate

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cli(project: Path, fault: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, faults.ENV: fault}
    return subprocess.Popen(
        [sys.executable, "-m", "lifelong.cli", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _reached(name: str, proc: subprocess.Popen) -> None:
    while not faults.reached(name, timeout=1):
        if proc.poll() is not None:
            pytest.fail(f"exited (code {proc.returncode}) before checkpoint {name}: {proc.communicate()[1][-3000:]}")


def _done(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


@pytest.mark.slow  # two fresh processes, each importing Great Expectations and DVC
def test_an_ingest_waits_for_an_in_place_checkout(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        project = make_workspace(tmp_path, mp)
        mp.setenv(faults.PAUSE_DIR_ENV, str(tmp_path / "pause"))
        mp.delenv(faults.ENV, raising=False)
        simulate("vic_elec", day("2013-04-01"), 3)
        v1 = store.ingest("vic_elec", day=day("2013-04-01")).data_version
        store.ingest("vic_elec", day=day("2013-04-02"))
        rewind = _cli(project, "pause:checkout", "data", "checkout", "--version", v1, "--in-place", "--yes")
        ingest = _cli(project, "pause:lock_wait", "ingest", "--dataset", "vic_elec", "--date", "2013-04-03")
        try:
            _reached("checkout", rewind)  # under the store lock, nothing restored yet
            _reached("lock_wait", ingest)  # validated, waiting for the store lock
            faults.release("lock_wait")
            assert rewind.poll() is None and ingest.poll() is None
            faults.release("checkout")
            rewound, ingested = _done(rewind), _done(ingest)
        finally:
            for proc in (rewind, ingest):
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        assert rewound["data_version"] == v1
        assert ingested["data_version"] not in (v1, None) and store.data_version() == ingested["data_version"]
        assert store.stored_partitions("vic_elec") == ["2013-04-01", "2013-04-03"]
        from dvc.repo import Repo

        with Repo(str(project)) as repo:
            assert repo.status(targets=[str(project / "data.dvc")]) == {}  # data.dvc matches data/ exactly
