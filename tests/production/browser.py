"""A headless Chromium driven through the DevTools protocol, for the production UI test.

Just enough of the protocol to log in to a single-page app, wait for its text and take a
screenshot: :func:`chromium` starts the browser (its own empty profile, a free debugging port
that Chromium itself picks and writes to ``DevToolsActivePort``) and yields a :class:`Page`
on its first tab; every process it started is stopped at exit. The client is the sync API of
``websockets``, already a dependency of the stack.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import requests
from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path("/usr/bin/chromium")
# headless flags that work on this machine (no GPU, no sandbox as root, nothing phoning home)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


class BrowserError(RuntimeError):
    """Chromium did not start, a DevTools command failed, or a page never showed what was awaited."""


def ensure_chromium(timeout: float = 600.0) -> str | None:
    """Install Debian's ``chromium`` if missing (as root, with apt-get); return why not, or None."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and apt-get cannot run here (needs root on Debian)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{' '.join(argv)}: {exc}"
        if done.returncode != 0:
            return f"{' '.join(argv)} failed ({done.returncode}): {(done.stdout + done.stderr)[-500:]}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium but {CHROMIUM} is missing"


class Page:
    """One tab: DevTools commands over its websocket, and the few helpers the test needs."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    def send(self, method: str, params: Mapping[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": dict(params or {})}))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def text(self) -> str:
        """The visible text of the page."""
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def wait_for(self, condition: str, what: str, timeout: float = 60.0) -> None:
        """Poll a JavaScript condition until it is true; fail with the page's text if it never is."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"Boolean({condition})"):
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"timed out after {timeout:.0f}s waiting for {what} on {self.url()}:\n{self.text()[:2000]}"
                )
            time.sleep(0.5)

    def wait_for_text(self, *needles: str, timeout: float = 60.0) -> str:
        """Wait until the page's text holds every needle; return that text."""
        checks = " && ".join(f"document.body.innerText.includes({json.dumps(n)})" for n in needles)
        self.wait_for(f"document.body && {checks}", f"text {needles!r}", timeout)
        return self.text()

    def type_into(self, selector: str, value: str) -> None:
        """Focus an input and type into it as a user would (React sees real input events)."""
        self.wait_for(f"document.querySelector({json.dumps(selector)})", selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", {"text": value})

    def screenshot(self, path: Path, *, beyond_viewport: bool = True) -> Path:
        """Save a PNG of the whole page (of the viewport only with ``beyond_viewport=False``: for pages
        such as MLflow's artifact view, of which Chromium captures a stale frame beyond the viewport)."""
        params = {"format": "png", "captureBeyondViewport": beyond_viewport}
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextlib.contextmanager
def chromium(workdir: Path, width: int = 1440, height: int = 900, timeout: float = 60.0) -> Iterator[Page]:
    """Start headless Chromium with a new empty profile under ``workdir``; yield its first tab."""
    profile = workdir / "chromium-profile"
    profile.mkdir(parents=True)
    log = workdir / "chromium.log"
    argv = [
        str(CHROMIUM),
        *FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--window-size={width},{height}",
        "about:blank",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        port = _devtools_port(profile / "DevToolsActivePort", proc, log, timeout)
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        with connect(page_ws, max_size=None, open_timeout=timeout) as ws:
            page = Page(ws)
            page.send("Page.enable")
            page.send("Runtime.enable")
            page.send("Network.enable")
            page.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            yield page
    finally:
        _stop(proc)


def _devtools_port(active: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BrowserError(f"chromium exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(active.read_text().splitlines()[0])
        if time.monotonic() > deadline:
            raise BrowserError(f"chromium wrote no DevToolsActivePort in {timeout:.0f}s:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop Chromium's process group and every descendant (renderers, zygote) by their pids."""
    family: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
