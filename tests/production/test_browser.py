"""The production UIs in a real browser: Airflow shows the runs, MLflow shows the champion.

Debian's headless ``chromium`` (installed by this test's setup when missing), driven through
the DevTools protocol (browser.py), on the session's topology (conftest.py): it logs in to
Airflow through the SimpleAuthManager login page as a user would, opens the daily DAG's runs,
then opens the registered model in the MLflow UI with basic-auth credentials. Screenshots go
to the test's tmp dir, and to ``$LIFELONG_SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from browser import Page, chromium, ensure_chromium
from production_run import DAILY, DAYS, MODEL, Production

pytestmark = [pytest.mark.production, pytest.mark.slow]


@pytest.fixture
def page(production: Production, tmp_path: Path) -> Iterator[Page]:
    why = ensure_chromium()
    if why is not None:
        pytest.skip(f"no headless browser: {why}")
    with chromium(tmp_path / "browser") as tab:
        yield tab


def _save(page: Page, tmp_path: Path, name: str) -> Path:
    shot = page.screenshot(tmp_path / "screenshots" / name)
    target = os.environ.get("LIFELONG_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / name)
    return shot


def _rows_with(page: Page, needle: str) -> list[str]:
    """The text of each table row (``tr`` or ARIA row) that contains ``needle``."""
    rows = page.evaluate(
        "[...document.querySelectorAll('tr, [role=row]')].map(r => r.innerText.replace(/\\s+/g, ' ').trim())"
    )
    return [r for r in rows if needle in r]


def test_airflow_ui_shows_the_daily_runs(production: Production, page: Page, tmp_path: Path) -> None:
    topo = production.topo
    page.navigate(f"{topo.airflow_url}/dags/{DAILY}/runs")
    # not logged in: the UI sends the browser to the SimpleAuthManager login page
    page.wait_for("location.pathname.startsWith('/auth/login')", "the login page")
    _save(page, tmp_path, "airflow-login.png")
    page.type_into('input[name="username"]', topo.admin_user)
    page.type_into('input[name="password"]', topo.admin_password)
    page.evaluate("document.querySelector('button[type=\"submit\"]').click()")
    page.wait_for(f"location.pathname === '/dags/{DAILY}/runs'", "the runs page after login")
    run_ids = [r["dag_run_id"] for r in production.daily_runs]
    text = page.wait_for_text(f"{DAYS} Dag Runs", *run_ids, timeout=90)
    _save(page, tmp_path, "airflow-daily-runs.png")
    assert DAILY in text
    for run in production.daily_runs:
        row = _rows_with(page, run["dag_run_id"])
        assert len(row) == 1 and "Success" in row[0] and "Scheduled" in row[0], row


def test_mlflow_ui_shows_the_champion(production: Production, page: Page, tmp_path: Path) -> None:
    topo = production.topo
    auth = (topo.mlflow_user, topo.mlflow_password)
    alias = requests.get(
        f"{topo.mlflow_url}/api/2.0/mlflow/registered-models/alias",
        params={"name": MODEL, "alias": "champion"},
        auth=auth,
        timeout=60,
    )
    assert alias.status_code == 200, alias.text
    version = alias.json()["model_version"]["version"]

    # MLflow's basic-auth app: the browser sends the credentials with every request, as after its login prompt
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    page.send("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    page.navigate(f"{topo.mlflow_url}/#/models/{MODEL}")
    text = page.wait_for_text(MODEL, f"Version {version}", "champion", timeout=90)
    _save(page, tmp_path, "mlflow-registered-model.png")
    rows = _rows_with(page, "champion")
    assert len(rows) == 1 and f"Version {version}" in rows[0] and "@ champion" in rows[0], json.dumps(rows)
    assert "Registered Models" in text
