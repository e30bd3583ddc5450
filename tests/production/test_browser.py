"""The production UIs in a real browser: what the daily DAG did, seen in Airflow and MLflow.

Debian's headless ``chromium`` (installed by this test's setup when missing), driven through
the DevTools protocol (browser.py), on the session's topology (conftest.py), after the days
of test_services.py (conftest.py orders this file after it): it logs in to Airflow through the
SimpleAuthManager login page as a user would and opens the daily DAG's runs and its graph
(the publish and automatic-rollback paths); then, with basic-auth credentials, the MLflow UI:
the forecast plot the ``publish`` task logged, and the registered model after a manual
rollback (``lifelong rollback``, run here against the MLflow server), with ``champion``,
``previous`` and the demoted version tagged ``validation_status=rolled_back``.

Each page's text is asserted, and each page is saved as a PNG under ``reports/screenshots/``
of the repository (replaced on every run), under the test's tmp dir, and in
``$LIFELONG_SCREENSHOT_DIR`` when set.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from browser import Page, chromium, ensure_chromium
from production_run import DAILY, MODEL, REPO, Production

pytestmark = [pytest.mark.production, pytest.mark.slow]

REPORT_DIR = REPO / "reports" / "screenshots"
# the daily DAG's decision, then the watch (automatic rollback) and publish after either branch
DECISION_EDGES = [("gate", "promote"), ("gate", "reject"), ("promote", "watch"), ("reject", "watch")]
PUBLISH_EDGES = [("watch", "publish"), ("publish", "report")]
SHIFT_EDGES = [("task_shift", "consolidate"), ("task_shift", "update"), ("consolidate", "update")]
# a promise that resolves once the graph's pan and zoom have not changed for half a second
SETTLED = """new Promise(done => {
  const transform = () => document.querySelector('.react-flow__viewport').style.transform;
  let last = transform();
  const timer = setInterval(() => {
    const now = transform();
    if (now === last) { clearInterval(timer); done(now); }
    last = now;
  }, 500);
})"""


@pytest.fixture
def page(production: Production, tmp_path: Path) -> Iterator[Page]:
    why = ensure_chromium()
    if why is not None:
        pytest.skip(f"no headless browser: {why}")
    with chromium(tmp_path / "browser") as tab:
        yield tab


def _save(page: Page, tmp_path: Path, name: str, *, beyond_viewport: bool = True) -> Path:
    shot = page.screenshot(tmp_path / "screenshots" / name, beyond_viewport=beyond_viewport)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, REPORT_DIR / name)
    target = os.environ.get("LIFELONG_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / name)
    return shot


def _save_whole_page(page: Page, tmp_path: Path, name: str) -> Path:
    """A screenshot of a page that scrolls inside the app (MLflow's): the window made as tall as its
    tallest scrolling element, and wider, without MLflow's assistant panel, so that all of it shows."""
    page.evaluate("document.querySelector('button[aria-label=\"Close\"]')?.click()")  # the assistant panel
    width = 1920
    page.send(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    )
    height = page.evaluate("Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": int(height) + 40, "deviceScaleFactor": 1, "mobile": False},
    )
    page.wait_for(f"innerHeight === {int(height) + 40}", "the taller window")
    return _save(page, tmp_path, name, beyond_viewport=False)


def _rows_with(page: Page, needle: str) -> list[str]:
    """The text of each table row (``tr`` or ARIA row) that contains ``needle``."""
    rows = page.evaluate(
        "[...document.querySelectorAll('tr, [role=row]')].map(r => r.innerText.replace(/\\s+/g, ' ').trim())"
    )
    return [r for r in rows if needle in r]


def _airflow_login(page: Page, production: Production, path: str, tmp_path: Path | None = None) -> None:
    """Open ``path`` of the Airflow UI; log in on the page it sends to, and wait to be back on ``path``."""
    topo = production.topo
    page.navigate(f"{topo.airflow_url}{path}")
    # not logged in: the UI sends the browser to the SimpleAuthManager login page
    page.wait_for("location.pathname.startsWith('/auth/login')", "the login page")
    if tmp_path is not None:
        _save(page, tmp_path, "airflow-login.png")
    page.type_into('input[name="username"]', topo.admin_user)
    page.type_into('input[name="password"]', topo.admin_password)
    page.evaluate("document.querySelector('button[type=\"submit\"]').click()")
    page.wait_for(f"location.pathname === {json.dumps(path)}", f"{path} after login")


def _mlflow_login(page: Page, production: Production) -> None:
    """MLflow's basic-auth app: the browser sends the credentials with every request, as after its prompt."""
    topo = production.topo
    token = base64.b64encode(f"{topo.mlflow_user}:{topo.mlflow_password}".encode()).decode()
    page.send("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})


def _mlflow(production: Production, endpoint: str, **params: str) -> dict[str, Any]:
    topo = production.topo
    r = requests.get(
        f"{topo.mlflow_url}/api/2.0/mlflow/{endpoint}",
        params=params,
        auth=(topo.mlflow_user, topo.mlflow_password),
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _alias(production: Production, alias: str) -> str | None:
    """The version an alias of the model names (None when the alias is not set)."""
    topo = production.topo
    r = requests.get(
        f"{topo.mlflow_url}/api/2.0/mlflow/registered-models/alias",
        params={"name": MODEL, "alias": alias},
        auth=(topo.mlflow_user, topo.mlflow_password),
        timeout=60,
    )
    assert r.status_code in (200, 404), r.text
    return str(r.json()["model_version"]["version"]) if r.status_code == 200 else None


def _daily_runs(production: Production) -> list[dict[str, Any]]:
    """Every run of the daily DAG so far (the catch-up's and test_services.py's), oldest first."""
    return list(production.topo.api("GET", f"/dags/{DAILY}/dagRuns?order_by=logical_date&limit=50")["dag_runs"])


def test_airflow_ui_shows_the_daily_runs(production: Production, page: Page, tmp_path: Path) -> None:
    _airflow_login(page, production, f"/dags/{DAILY}/runs", tmp_path)
    runs = _daily_runs(production)
    text = page.wait_for_text(f"{len(runs)} Dag Runs", *(r["dag_run_id"] for r in runs), timeout=90)
    _save(page, tmp_path, "airflow-daily-runs.png")
    assert DAILY in text
    for run in runs:
        row = _rows_with(page, run["dag_run_id"])
        assert len(row) == 1 and "Success" in row[0] and "Scheduled" in row[0], row


def test_airflow_ui_shows_the_daily_graph_with_the_publish_and_rollback_paths(
    production: Production, page: Page, tmp_path: Path
) -> None:
    """The graph of the last daily run: the gate's two branches, both into ``watch`` (the automatic
    rollback), then ``publish``; each node with its task's state in that run."""
    last = _daily_runs(production)[-1]
    path = f"/dags/{DAILY}/runs/{quote(last['dag_run_id'], safe='')}"
    _airflow_login(page, production, path)
    # the DAG pages show the grid or the graph as the user last chose, kept in the browser's storage
    page.evaluate("localStorage.setItem('default_dag_view', JSON.stringify('graph'))")
    page.navigate(f"{production.topo.airflow_url}{path}")
    states = {t: ti["state"] for t, ti in production.topo.task_instances(DAILY, last["dag_run_id"]).items()}
    page.wait_for(f"document.querySelectorAll('.react-flow__node').length === {len(states)}", "the graph's nodes")
    # the graph the width of the page: the run's details panel folded, the view fitted again
    for button in ("Collapse Details Panel", "Fit View"):
        page.evaluate(f"document.querySelector('button[aria-label={json.dumps(button)}]').click()")
    text = page.wait_for_text(*states, timeout=90)
    page.evaluate(SETTLED)
    _save(page, tmp_path, "airflow-daily-graph.png")
    nodes = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.react-flow__node')]"
        ".map(n => [n.dataset.id, n.innerText.replace(/\\s+/g, ' ').trim()]))"
    )
    edges = set(page.evaluate("[...document.querySelectorAll('.react-flow__edge')].map(e => e.ariaLabel)"))
    decorators = {task: "@task.branch" if task in ("gate", "task_shift") else "@task" for task in states}
    assert nodes == {task: f"{task} {decorators[task]} {state}" for task, state in states.items()}, nodes
    assert {f"Edge from {a} to {b}" for a, b in SHIFT_EDGES + DECISION_EDGES + PUBLISH_EDGES} <= edges, edges
    assert DAILY in text and last["dag_run_id"] in text


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def _run_of(production: Production, version: str) -> dict[str, Any]:
    """The MLflow run of a registered version (its ``run_id`` tag: the run that logged the candidate)."""
    mv = _mlflow(production, "model-versions/get", name=MODEL, version=version)["model_version"]
    tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
    return dict(_mlflow(production, "runs/get", run_id=tags.get("run_id") or mv["run_id"])["run"])


def test_mlflow_ui_shows_the_published_forecast_plot(production: Production, page: Page, tmp_path: Path) -> None:
    topo = production.topo
    # the newest day whose publish ran (a run whose watch failed publishes nothing, and still ends
    # "success": its one leaf, report, runs whatever happened)
    runs = [r["dag_run_id"] for r in reversed(_daily_runs(production))]
    ran = [r for r in runs if topo.task_instances(DAILY, r)["publish"]["state"] == "success"]
    assert ran, f"no daily run published a forecast: {runs}"
    published = topo.xcom(DAILY, ran[0], "publish")
    assert published["status"] in ("published", "unchanged"), published
    plot = Path(published["plot_path"])  # on the workers' project, which this process shares
    run = _run_of(production, published["version"])
    artifact = f"forecasts/{plot.name}"
    listed = _mlflow(production, "artifacts/list", run_id=run["info"]["run_id"], path="forecasts")
    assert artifact in {f["path"] for f in listed["files"]}, listed

    _mlflow_login(page, production)
    url = f"{topo.mlflow_url}/#/experiments/{run['info']['experiment_id']}/runs/{run['info']['run_id']}"
    page.navigate(f"{url}/artifacts/{artifact}")
    # the UI fetches the file with the credentials and shows it from a blob: URL
    image = "document.querySelector('img[src^=\"blob:\"]')"
    page.wait_for(f"{image} && {image}.complete && {image}.naturalWidth > 0", "the forecast plot", timeout=90)
    text = page.wait_for_text(artifact, f"/artifacts/{artifact}", plot.with_suffix(".parquet").name)
    _save(page, tmp_path, "mlflow-forecast-plot.png", beyond_viewport=False)
    size = page.evaluate(f"[{image}.naturalWidth, {image}.naturalHeight]")
    assert tuple(size) == _png_size(plot), (size, plot)  # the very file publish wrote, served by MLflow
    assert run["info"]["run_name"] in text or run["info"]["run_id"] in text


def test_mlflow_ui_shows_champion_previous_and_a_rolled_back_version(
    production: Production, page: Page, tmp_path: Path
) -> None:
    """The project's own manual rollback (``lifelong rollback``) against the server, then the model's page.

    The last test to use the topology (conftest.py orders it so): the others expect the champion
    the daily runs left."""
    topo = production.topo
    found = _mlflow(production, "model-versions/search", filter=f"name='{MODEL}'")["model_versions"]
    served = [v["version"] for v in found if any(t["key"] == "promoted_at" for t in v.get("tags", []))]
    assert len(served) >= 3, (
        f"versions promoted: {served}; a rollback that leaves a `previous` needs three, as the days of "
        "test_services.py promote: run the whole tests/production folder"
    )
    demoted = _alias(production, "champion")
    done = subprocess.run(
        ["lifelong", "rollback", MODEL, "--reason", "seen in the UIs: a manual rollback by the browser test"],
        env=topo.env,
        cwd=production.project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    champion, previous = _alias(production, "champion"), _alias(production, "previous")
    assert previous is not None and int(previous) < int(champion) < int(demoted), (previous, champion, demoted)
    tags = _mlflow(production, "model-versions/get", name=MODEL, version=demoted)["model_version"]["tags"]
    assert {"key": "validation_status", "value": "rolled_back"} in tags, tags

    _mlflow_login(page, production)
    page.navigate(f"{topo.mlflow_url}/#/models/{MODEL}")
    text = page.wait_for_text(MODEL, "champion", "previous", "rolled_back", f"Version {demoted}", timeout=90)
    assert "Registered Models" in text
    for alias, version in (("champion", champion), ("previous", previous)):
        rows = _rows_with(page, f"@ {alias}")
        assert len(rows) == 1 and rows[0].startswith(f"Version {version} "), json.dumps(rows)
    (row,) = [r for r in _rows_with(page, "validation_status : rolled_back") if r.startswith("Version ")]
    assert row.startswith(f"Version {demoted} ") and "@ champion" not in row and "@ previous" not in row, row
    _save_whole_page(page, tmp_path, "mlflow-registered-model.png")
