"""What every benchmark shares: its report, targets, figures, and an isolated project.

A benchmark module exposes ``bench(quick: bool) -> Report`` (``bench/run.py`` collects it)
and ``main(argv) -> str`` (``python -m bench.<name> [--quick]`` prints the markdown).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "out"  # scratch, git-ignored
RESULTS_DIR = REPO / "bench" / "results"  # the figures RESULTS.md links to (committed)


@dataclass(frozen=True)
class Target:
    """One claim with its verdict; ``met=None`` when it could not be measured here."""

    name: str
    met: bool | None
    detail: str

    def line(self) -> str:
        verdict = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[self.met]
        return f"- **{verdict}**: {self.name} ({self.detail})"


@dataclass(frozen=True)
class Report:
    """A benchmark's section of RESULTS.md."""

    key: str  # file-name stem, e.g. "daily_vs_retrain"
    title: str
    settings: str  # one line: what produced the numbers
    markdown: str  # tables, notes, figure links (relative to bench/)
    targets: tuple[Target, ...] = ()
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def section(self) -> str:
        lines = [f"## {self.title}", "", f"Settings: {self.settings}. Bench wall time {self.seconds:.0f} s.", ""]
        if self.targets:
            lines += [t.line() for t in self.targets] + [""]
        return "\n".join([*lines, self.markdown.strip(), ""])

    def show(self) -> str:
        """Print the section (a bench run on its own, ``python -m bench.<key>``) and return it."""
        text = self.section()
        print(text)
        return text


def save_figure(fig: Any, name: str) -> str:
    """Write ``fig`` to bench/out/NAME and bench/results/NAME; return the link RESULTS.md uses."""
    import matplotlib.pyplot as plt

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT_DIR / name, dpi=90, bbox_inches="tight")
    plt.close(fig)
    shutil.copyfile(OUT_DIR / name, RESULTS_DIR / name)
    return f"results/{name}"


def md_table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one character per column, ``l`` or ``r`` (default: first l, rest r).

    >>> print(md_table(["a", "b"], [["x", 1]]))
    | a | b |
    | --- | ---: |
    | x | 1 |
    """
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def wait_for_mlflow(uri: str, server: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    """Wait until the MLflow server at ``uri`` answers ``/health``; raise with its log's tail if it exits first."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        with suppress(requests.RequestException):
            if requests.get(f"{uri}/health", timeout=2).ok:
                return
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the MLflow server did not start; {log}:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(1)


@contextmanager
def isolated_project(edit: Callable[[dict], None] | None = None) -> Iterator[Path]:
    """A temporary lifelong project (params.yaml from the repo, changed by ``edit``), removed after.

    ``LIFELONG_*`` point at it and the working directory is it for the duration; the
    caller's environment and directory come back afterwards.
    """
    keys = ("LIFELONG_PROJECT_DIR", "LIFELONG_HOME", "LIFELONG_DEVICE", "MLFLOW_TRACKING_URI")
    saved_env = {k: os.environ.get(k) for k in keys}
    saved_cwd = Path.cwd()
    root = Path(tempfile.mkdtemp(prefix="lifelong-bench-"))
    project = root / "project"
    project.mkdir()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    if edit is not None:
        edit(raw)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    os.environ.update(
        LIFELONG_PROJECT_DIR=str(project), LIFELONG_HOME=str(project / ".lifelong"), LIFELONG_DEVICE="cpu"
    )
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(project)
    try:
        yield project
    finally:
        os.chdir(saved_cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)
