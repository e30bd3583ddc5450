"""Run the benchmark suite and write bench/RESULTS.md.

``python -m bench.run --quick`` (``make bench-quick``) or ``--full`` (``make bench``) runs
every benchmark in this process, one torch thread, and rewrites RESULTS.md: the machine,
the commit, the date, the settings, a MET / MISSED line per target, then one section per
benchmark. ``--only daily_vs_retrain,state_size`` runs those alone and replaces only their
sections, keeping the others as they were (each section says which run produced it).

A benchmark that fails leaves a FAILED section with its error; the exit status is then 1.

``fleet`` (section 2d: the production topology with 1 to 50 models) runs with ``--full`` or
``--only fleet``; a plain ``--quick`` skips it (it needs PostgreSQL and Redis, and its own quick
form, ``python -m bench.fleet --quick``, starts the topology three times: not timed yet).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from bench.common import REPO, Report, Target

RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = re.compile(r"<!-- section:(\w+) -->\n(.*?)<!-- /section:\1 -->\n", re.S)
TARGET_LINE = re.compile(r"^- \*\*(MET|MISSED|NOT MEASURED)\*\*: .*$", re.M)


def _fisher(quick: bool) -> Report:
    from bench import fisher

    started = time.perf_counter()
    markdown = fisher.main(["--quick"] if quick else [])
    settings = "QUICK: 64 samples per model, one repeat" if quick else "FULL: 1024 samples per model, best of 3"
    return Report("fisher", "4b. Fisher: exact per-sample vs loop vs approximations", settings, markdown,
                  seconds=time.perf_counter() - started)  # fmt: skip


def _cl(part: str) -> Callable[[bool], Report]:
    """Split MNIST (``part="split"``) or permuted MNIST (``"permuted"``): two sections, so that either can be
    rerun alone (permuted MNIST on a GPU, say) without dropping the other's results."""

    def run(quick: bool) -> Report:
        from bench import cl_protocol

        started = time.perf_counter()
        # BENCH_CL_ARGS narrows or spreads a run (e.g. "--seeds 1", "--jobs 12 --permuted-lambdas 100,1000")
        extra = shlex.split(os.environ.get("BENCH_CL_ARGS", ""))
        skip = ["--skip-permuted"] if part == "split" else ["--skip-split"]
        markdown, targets = cl_protocol.report((["--quick"] if quick else []) + skip + extra)
        settings = "QUICK: subsets, few iterations, 1 seed" if quick else "FULL: the protocol's settings (see below)"
        if extra:
            settings += f"; `{shlex.join(extra)}`"
        title = {"split": "4c. Continual-learning protocol: split MNIST", "permuted": "4d. Permuted MNIST"}[part]
        return Report(f"cl_{part}", title, settings, markdown, tuple(targets), seconds=time.perf_counter() - started)

    return run


def _seasons(quick: bool) -> Report:
    from bench import seasons

    # BENCH_SEASONS_ARGS narrows or reuses a run (e.g. "--jobs 1", "--seeds 0", "--reuse": report the run
    # saved in bench/out without training again)
    return seasons.bench_args((["--quick"] if quick else []) + shlex.split(os.environ.get("BENCH_SEASONS_ARGS", "")))


def _module(name: str) -> Callable[[bool], Report]:
    def run(quick: bool) -> Report:
        module = __import__(f"bench.{name}", fromlist=["bench"])
        return module.bench(quick)

    return run


# in the order of RESULTS.md; the Airflow profile runs first, before this process has trained anything
BENCHES: dict[str, Callable[[bool], Report]] = {
    "day_ahead": _module("day_ahead"),
    "daily_vs_retrain": _module("daily_vs_retrain"),
    "seasons": _seasons,
    "daily_profile": _module("daily_profile"),
    "flat_cost": _module("flat_cost"),
    "dag_parse": _module("dag_parse"),
    "fleet": _module("fleet"),
    "task_addition": _module("task_addition"),
    "state_size": _module("state_size"),
    "fisher": _fisher,
    "cl_split": _cl("split"),
    "cl_permuted": _cl("permuted"),
    "gpu": _module("gpu"),
    "drift_calibration": _module("drift_calibration"),
}
RUN_ORDER = (
    "daily_profile", "day_ahead", "daily_vs_retrain", "seasons", "task_addition", "state_size", "fisher", "gpu",
    "cl_permuted", "cl_split", "drift_calibration", "dag_parse", "flat_cost", "fleet",
)  # fmt: skip
FULL_ONLY = {"fleet"}  # skipped by a plain --quick run (see the module's docstring)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def commit() -> str:
    head = _git("rev-parse", "HEAD") or "unknown"
    dirty = [line for line in _git("status", "--porcelain").splitlines() if "bench/RESULTS.md" not in line]
    return head + (" (with uncommitted changes)" if dirty else "")


def hardware() -> str:
    """CPU model, usable cores and GPU: what each section's stamp names."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"{cpu}, {cores} cores usable, GPU: {gpu}"


def machine() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{hardware()}; {platform.platform()}; Python {platform.python_version()}, "
        f"torch {torch.__version__} (1 torch thread); load average at start {load}"
    )


def _section(report: Report, stamp: str) -> str:
    body = report.section().replace("\n\n", f"\n\n_{stamp}_\n\n", 1)
    return f"<!-- section:{report.key} -->\n{body}<!-- /section:{report.key} -->\n"


def _failed(key: str, exc: BaseException, seconds: float, stamp: str) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    target = Target(f"benchmark {key} ran", False, f"FAILED after {seconds:.0f} s: {last}")
    return _section(Report(key, f"{key}: FAILED", "-", f"```\n{traceback.format_exc()[-3000:]}\n```",
                           (target,), seconds), stamp)  # fmt: skip


def write(sections: dict[str, str], header: str) -> None:
    targets = [m.group(0) for key in BENCHES if key in sections for m in TARGET_LINE.finditer(sections[key])]
    parts = [header, "## Targets", "", *targets, "", *(sections[k] for k in BENCHES if k in sections)]
    RESULTS.write_text("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="small settings, under 10 minutes on 2 cores")
    mode.add_argument("--full", action="store_true", help="the full settings (much longer)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    args = parser.parse_args(argv)
    only = [k for k in args.only.split(",") if k]
    unknown = [k for k in only if k not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r} (known: {', '.join(BENCHES)})")
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    mode_name = "quick" if args.quick else "full"
    head = commit()
    stamp = f"Run {when}, {mode_name}, commit {head}, on {hardware()}"
    earlier = {m.group(1): m.group(0) for m in SECTION.finditer(RESULTS.read_text())}
    # --only replaces its sections alone; a quick run keeps the last full run's sections it skips
    sections = earlier if only else {k: v for k, v in earlier.items() if args.quick and k in FULL_ONLY}
    failed = False
    for key in RUN_ORDER:
        if (only and key not in only) or (not only and args.quick and key in FULL_ONLY):
            continue
        began = time.perf_counter()
        print(f"[bench] {key} ({mode_name}) ...", file=sys.stderr, flush=True)
        try:
            sections[key] = _section(BENCHES[key](args.quick), stamp)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others' results
            failed = True
            sections[key] = _failed(key, exc, time.perf_counter() - began, stamp)
        print(f"[bench] {key}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    ran = ", ".join(only) if only else "all benchmarks"
    header = "\n".join(
        [
            "# lifelong benchmarks",
            "",
            "Generated by `make bench` (`python -m bench.run --full`) or `make bench-quick` (`--quick`); "
            "do not edit by hand. Every comparison is a ratio of two things measured side by side in the same "
            "run; no absolute time is compared with another run's.",
            "",
            f"- Last run: {when}, {mode_name} settings, {ran}, {total:.0f} s in all",
            f"- Commit: {head}",
            f"- Machine: {where}",
            "- Each section below names the run and the machine that produced it.",
            "",
        ]
    )
    write(sections, header)
    print(f"[bench] wrote {RESULTS.relative_to(REPO)} in {total:.0f} s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
