"""Alerts without a project: the document, the host-only log line, and the final-failure callback."""

from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace

from _webhook import Webhook

from lifelong import notify


def _context(exception: BaseException) -> dict:
    dag_run = SimpleNamespace(dag_id="lifelong_daily__demand_forecaster", run_id="scheduled__2012-03-05", conf={})
    task = SimpleNamespace(retries=2)
    ti = SimpleNamespace(task_id="update", dag_id=dag_run.dag_id, try_number=3, task=task)
    return {"ti": ti, "dag_run": dag_run, "logical_date": datetime(2012, 3, 5), "exception": exception}


def test_a_task_that_failed_for_good_is_alerted_once_and_a_quarantine_not_twice(monkeypatch, caplog) -> None:
    from lifelong.airflow.task_runtime import on_final_failure

    monkeypatch.setenv("LIFELONG_ALERT_BACKOFF_S", "0")
    with Webhook() as hook, caplog.at_level(logging.INFO, logger="lifelong.notify"):
        monkeypatch.setenv("LIFELONG_ALERT_WEBHOOK", hook.url)
        on_final_failure(_context(RuntimeError("the MLflow server did not answer")))
        on_final_failure(_context(RuntimeError("RefusedBatch: Demand out of range")))  # alerted as a quarantine
    (doc,) = hook.documents
    assert doc == {
        "event": "task_failed",
        "model": "demand_forecaster",
        "date": "2012-03-05",
        "version": None,
        "reason": "update: RuntimeError: the MLflow server did not answer",
        "figures": {"task": "update", "try_number": 3, "retries": 2},
        "dag_run": "lifelong_daily__demand_forecaster/scheduled__2012-03-05",
    }
    assert f"sent to 127.0.0.1:{hook.server.server_address[1]}" in caplog.text and "SECRET" not in caplog.text


def test_an_unknown_event_or_a_broken_document_never_raises(monkeypatch) -> None:
    monkeypatch.setenv("LIFELONG_ALERT_WEBHOOK", "http://127.0.0.1:9/x")
    assert notify.alert("no_such_event", model="m") is False
    monkeypatch.delenv("LIFELONG_ALERT_WEBHOOK")
    assert notify.alert("reject", model="m") is False  # off by default
