"""Each step call's time: in the task log, and as a JSON line where ``LIFELONG_STEP_TIMINGS`` names a file."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from lifelong.airflow import task_runtime
from lifelong.steps.context import NotReady


def _context(task_id: str) -> dict:
    ti = SimpleNamespace(task_id=task_id, try_number=1, dag_id="lifelong_daily__m")
    run = SimpleNamespace(dag_id="lifelong_daily__m", run_id="scheduled__2012-03-05", conf={})
    return {"ti": ti, "dag_run": run, "logical_date": "2012-03-05"}


def test_each_call_appends_its_times_and_outcome(monkeypatch, tmp_path, caplog) -> None:
    path = tmp_path / "timings.jsonl"
    monkeypatch.setenv(task_runtime.STEP_TIMINGS_ENV, str(path))

    def works(*_args, run_info):
        time.sleep(0.05)
        return {"done": run_info["dag_run_id"]}

    def not_yet(*_args, run_info):
        raise NotReady("warming up")

    steps = {"daily.update": works, "daily.evaluate": not_yet}
    monkeypatch.setattr(task_runtime, "step_function", steps.__getitem__)
    with caplog.at_level(logging.INFO, logger="lifelong.task"):
        assert task_runtime.call("daily.update", "m", context=_context("update")) == {"done": "scheduled__2012-03-05"}
        with pytest.raises(AirflowSkipException):
            task_runtime.call("daily.evaluate", "m", context=_context("evaluate"))
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert (first["task_id"], first["step"], first["outcome"]) == ("update", "daily.update", "ok")
    assert (second["task_id"], second["outcome"]) == ("evaluate", "skipped")
    assert first["process_started"] <= first["began"] <= first["ended"] - 0.05
    assert first["pid"] == os.getpid() and first["dag_run_id"] == "scheduled__2012-03-05"
    assert re.search(r"step daily\.update: 0\.\d\d s \(ok\)", caplog.text), caplog.text


def test_an_unwritable_timings_file_never_fails_the_step(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(task_runtime.STEP_TIMINGS_ENV, str(tmp_path / "missing" / "timings.jsonl"))
    monkeypatch.setattr(task_runtime, "step_function", lambda _name: lambda *a, run_info: 42)
    assert task_runtime.call("decide.gate", "m", context=_context("gate")) == 42


def test_process_start_is_read_to_the_clock_tick() -> None:
    """A child's start, as it reads it, lies between the moments its parent saw before and after the spawn
    (psutil's reading can be up to a second early: its boot time is whole seconds)."""
    before = time.time()
    code = "from lifelong.airflow.task_runtime import process_started; print(process_started())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    after = time.time()
    started = float(out.split()[-1])
    assert before - 0.02 <= started <= after, (before, started, after)
