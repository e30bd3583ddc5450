"""The per-process GX cache: a suite saved again by another process never refuses a good batch.

Each process keeps its GX context and the data set's checkpoint (suite, validation definition)
after the first validation. Another process that validates the same data set saves them again,
and GX then refuses to run this process's older copies (``...ResourcesFreshnessError``), which
used to quarantine a good batch as "could not be validated".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _data_kit import day

from lifelong.config import load_params
from lifelong.data import schema, store
from lifelong.data import validate as gx_validate
from lifelong.data.landing import landed_file, simulate


@pytest.fixture(scope="module")
def landed(shared_workspace: Path) -> Path:
    simulate("vic_elec", day("2012-01-03"), 4)
    return shared_workspace


def _frame(key: str) -> pd.DataFrame:
    spec = load_params().dataset("vic_elec")
    return schema.conform(store.read_batch(landed_file("vic_elec", key), max_mb=spec.max_file_mb), spec)


def test_a_suite_saved_again_elsewhere_is_reloaded_not_refused(landed, monkeypatch):
    spec = load_params().dataset("vic_elec")
    assert gx_validate.validate(_frame("2012-01-03"), spec, "2012-01-03").success  # this process caches
    with monkeypatch.context() as other:  # another process: caches of its own, it saves everything again
        other.setattr(gx_validate, "_CONTEXTS", {})
        other.setattr(gx_validate, "_CHECKPOINTS", {})
        assert gx_validate.validate(_frame("2012-01-04"), spec, "2012-01-04").success
    again = gx_validate.validate(_frame("2012-01-05"), spec, "2012-01-05")  # with this process's stale caches
    assert again.success and not again.failures and Path(again.data_docs_path).is_file()
    bad = _frame("2012-01-06").assign(Demand=-1.0)  # a real failure still fails
    assert not gx_validate.validate(bad, spec, "2012-01-06").success


def test_a_good_batch_after_another_process_validated_is_stored(landed):
    """The same across real processes: ingest here, in a child process, then here again."""
    store.ingest("vic_elec", day=day("2012-01-03"))
    child = "import datetime as dt; from lifelong.data import store; store.ingest('vic_elec', day=dt.date(2012, 1, 4))"
    subprocess.run([sys.executable, "-c", child], check=True, capture_output=True, text=True)
    result = store.ingest("vic_elec", day=day("2012-01-05"))  # used to raise RefusedBatch
    assert result.rows == 48 and result.changed
    assert not (landed / "data" / "quarantine" / "vic_elec" / "2012-01-05").exists()


def test_gx_keeps_the_latest_results_so_a_day_costs_the_same_on_day_1000(landed, monkeypatch):
    """GX lists its whole result store on every run: it keeps the newest ``RESULTS_KEPT`` runs (and their
    Data Docs pages); the one just written is always there, and every result stays in lifelong's reports."""
    spec = load_params().dataset("vic_elec")
    monkeypatch.setattr(gx_validate, "RESULTS_KEPT", 2)
    pages = []
    for key in ("2012-01-03", "2012-01-04", "2012-01-05", "2012-01-06"):
        out = gx_validate.validate(_frame(key), spec, key)
        assert out.success and Path(out.data_docs_path).is_file()
        pages.append(Path(out.data_docs_path))
    root = landed / ".lifelong" / "gx" / "uncommitted"
    results = sorted(p.parent.parent.name for p in (root / "validations" / "vic_elec").glob("*/*/*.json"))
    assert results == ["vic_elec-2012-01-05", "vic_elec-2012-01-06"]
    assert [p.is_file() for p in pages] == [False, False, True, True]
    assert not (root / "validations" / "vic_elec" / "vic_elec-2012-01-03").exists()  # no empty folders left
