"""Alerts: a small JSON document POSTed to a webhook, never failing the pipeline.

Configured by the environment, off unless ``LIFELONG_ALERT_WEBHOOK`` holds a URL:

* ``LIFELONG_ALERT_WEBHOOK``: the URL (a Slack / Teams / Mattermost incoming webhook, an
  Alertmanager receiver, any HTTP endpoint). Its path often carries a token, so the URL is
  never logged, nor put in any document: log lines name its host only.
* ``LIFELONG_ALERT_SECRET`` (optional): sent as ``Authorization: Bearer <secret>``; never logged.
* ``LIFELONG_ALERT_TRIES`` (default 3), ``LIFELONG_ALERT_BACKOFF_S`` (default 1, doubling),
  ``LIFELONG_ALERT_TIMEOUT_S`` (default 5): a bounded number of tries with a short backoff.

The document: ``{"event", "model", "date", "version", "reason", "figures", "dag_run"}``, with
``event`` one of :data:`EVENTS`. A webhook that is down, slow or refuses the document is
logged (one warning) and the step goes on: :func:`alert` never raises.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

EVENTS = ("quarantine", "reject", "severe_drift", "consolidate", "rollback", "task_failed")
log = logging.getLogger("lifelong.notify")


def _float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


def host_of(url: str) -> str:
    """The part of a webhook URL that may be logged: its host (and port), nothing else.

    >>> host_of("https://user:pw@hooks.example.com:8443/services/T000/SECRET?token=x")
    'hooks.example.com:8443'
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def document(
    event: str,
    *,
    model: str | None,
    date: str | None = None,
    version: str | None = None,
    reason: str = "",
    figures: dict[str, Any] | None = None,
    dag_run: str | None = None,
) -> dict[str, Any]:
    """The JSON document of an alert.

    >>> document("reject", model="m", date="2012-03-05", version="4", reason="mae +9%")["event"]
    'reject'
    """
    if event not in EVENTS:
        raise ValueError(f"unknown alert event {event!r} (known: {', '.join(EVENTS)})")
    return {
        "event": event,
        "model": model,
        "date": str(date)[:10] if date else None,
        "version": None if version is None else str(version),
        "reason": reason[:2000],
        "figures": figures or {},
        "dag_run": dag_run,
    }


def _post(url: str, body: bytes, timeout: float) -> int:
    headers = {"Content-Type": "application/json", "User-Agent": "lifelong-alerts"}
    secret = os.environ.get("LIFELONG_ALERT_SECRET")
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an operator-set URL
        return int(response.status)


def _why(exc: BaseException) -> str:
    """A short cause that cannot carry the URL (no exception text from urllib's URL handling)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return f"{type(reason).__name__}" + (f" errno {reason.errno}" if getattr(reason, "errno", None) else "")
    return type(exc).__name__


def alert(event: str, **fields: Any) -> bool:
    """POST the alert ``event`` (see :func:`document` for the fields); True when the webhook took it.

    Off (returns False at once) without ``LIFELONG_ALERT_WEBHOOK``. Never raises.
    """
    url = os.environ.get("LIFELONG_ALERT_WEBHOOK", "").strip()
    if not url:
        return False
    try:
        body = json.dumps(document(event, **fields), default=str).encode()
        host = host_of(url)
    except Exception:  # noqa: BLE001 - an alert must never fail the step that raised it
        log.exception("alert %s: could not build the document", event)
        return False
    tries = max(1, int(_float("LIFELONG_ALERT_TRIES", 3)))
    backoff, timeout = _float("LIFELONG_ALERT_BACKOFF_S", 1.0), _float("LIFELONG_ALERT_TIMEOUT_S", 5.0)
    why = "?"
    for attempt in range(1, tries + 1):
        try:
            status = _post(url, body, timeout)
            log.info("alert %s for %s sent to %s (HTTP %s)", event, fields.get("model"), host, status)
            return True
        except urllib.error.HTTPError as exc:
            why = _why(exc)
            if 400 <= exc.code < 500 and exc.code not in (408, 429):  # refused: the same document will be again
                break
        except Exception as exc:  # noqa: BLE001 - connection refused, timeout, DNS: retried
            why = _why(exc)
        if attempt < tries:
            time.sleep(backoff * 2 ** (attempt - 1))
    model = fields.get("model")
    log.warning("alert %s for %s NOT delivered to %s after %d tries (%s)", event, model, host, attempt, why)
    return False


def run_label(run: Any) -> str | None:
    """``dag_id/run_id`` of a step's RunInfo (or its dict), or None at the CLI."""
    dag_id = getattr(run, "dag_id", None) if not isinstance(run, dict) else run.get("dag_id")
    run_id = getattr(run, "dag_run_id", None) if not isinstance(run, dict) else run.get("dag_run_id")
    return f"{dag_id}/{run_id}" if dag_id else None
