"""The CLI contract of the data commands: JSON on stdout; a refusal is one stderr line and an exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lifelong.cli import main
from lifelong.errors import RefusedBatch


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_ingest_checkout(shared_workspace, capsys):
    code, out, err = _run(capsys, "simulate", "--dataset", "vic_elec", "--start", "2013-06-01", "--days", "2")
    assert code == 0 and len(json.loads(out)["files"]) == 2

    code, out, err = _run(capsys, "ingest", "--dataset", "vic_elec", "--date", "2013-06-01")
    first = json.loads(out)
    assert code == 0 and err == ""
    assert set(first) >= {"data_version", "rows", "partition", "report_path", "data_docs_path"}
    assert (first["rows"], first["partition"]) == (48, "2013-06-01")

    code, out, _ = _run(capsys, "ingest", "--dataset", "vic_elec", "--date", "2013-06-02")
    assert code == 0 and json.loads(out)["data_version"] != first["data_version"]

    second = json.loads(out)["data_version"]
    code, out, _ = _run(capsys, "data", "checkout", "--version", first["data_version"])
    restored = json.loads(out)
    assert code == 0 and restored["datasets"]["vic_elec"] == {"partitions": 1, "rows": 48}
    assert Path(restored["restored_to"]) == shared_workspace / ".lifelong" / "checkouts" / first["data_version"]
    code, out, _ = _run(capsys, "data", "status")
    assert code == 0 and json.loads(out)["data_version"] == second  # the live store did not move

    code, out, err = _run(capsys, "data", "checkout", "--version", first["data_version"], "--in-place")
    assert code == 1 and out == "" and "add --yes to confirm" in err and err.count("\n") == 1
    code, out, _ = _run(capsys, "data", "checkout", "--version", first["data_version"], "--in-place", "--yes")
    assert code == 0 and json.loads(out)["in_place"] is True
    code, out, _ = _run(capsys, "data", "status")
    assert code == 0 and json.loads(out)["data_version"] == first["data_version"]


def test_refusal_is_one_line_and_an_exit_code(shared_workspace, capsys):
    _run(capsys, "simulate", "--dataset", "vic_elec", "--start", "2013-06-03", "--days", "1")
    path = shared_workspace / "data" / "landing" / "vic_elec" / "2013-06-03.parquet"
    frame = pd.read_parquet(path)
    frame.loc[10, "Temperature"] = 80.0
    frame.to_parquet(path, index=False)

    code, out, err = _run(capsys, "ingest", "--dataset", "vic_elec", "--date", "2013-06-03")
    assert code == RefusedBatch.exit_code and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("lifelong ingest: vic_elec 2013-06-03: batch refused, ")
    assert "Temperature: 1 values outside [-10.0, 50.0] (e.g. 80.0)" in err


def test_unreadable_and_missing_batches(shared_workspace, capsys):
    (shared_workspace / "data" / "landing" / "vic_elec" / "junk.csv").write_bytes(b"\x00\x01\x02")
    code, out, err = _run(capsys, "ingest", "--dataset", "vic_elec", "--date", "2013-06-04", "--file", "junk.csv")
    assert code == RefusedBatch.exit_code and "binary content" in err and err.count("\n") == 1
    outside = shared_workspace / "junk.csv"  # outside the landing folder: refused before it is read
    outside.write_bytes(b"secret,header\n1,2\n")
    code, out, err = _run(capsys, "ingest", "--dataset", "vic_elec", "--date", "2013-06-04", "--file", str(outside))
    assert code == RefusedBatch.exit_code and "outside the landing folder" in err and "secret" not in err
    code, out, err = _run(capsys, "ingest", "--dataset", "vic_elec", "--date", "2013-07-01")
    assert code == 1 and "no batch at" in err and err.count("\n") == 1
    code, out, err = _run(capsys, "ingest", "--dataset", "vic_elec", "--task", "FordA")
    assert code == 1 and "ingest it by --date" in err


def test_simulate_conflict_needs_force(shared_workspace, capsys):
    _run(capsys, "simulate", "--dataset", "vic_elec", "--start", "2013-06-05", "--days", "1")
    path = shared_workspace / "data" / "landing" / "vic_elec" / "2013-06-05.parquet"
    pd.read_parquet(path).iloc[:-1].to_parquet(path, index=False)
    code, _, err = _run(capsys, "simulate", "--dataset", "vic_elec", "--start", "2013-06-05", "--days", "1")
    assert code == 1 and "pass --force" in err
    code, _, _ = _run(capsys, "simulate", "--dataset", "vic_elec", "--start", "2013-06-05", "--days", "1", "--force")
    assert code == 0 and len(pd.read_parquet(path)) == 48
