"""Benchmark: the daily update step and the Fisher on GPU beside CPU, in the same run.

Only where CUDA is present (else the section says "no CUDA device: skipped"). The update:
``demand_forecaster`` as in params.yaml, bootstrapped on its warm-up days of vic_elec, then
one daily update (day D-1 + replay) timed on each device from copies of the same state;
plus a retrain-sized fit (all those days at once). On CUDA, each fit also runs a second time with
the training set left on the host and copied a batch at a time (``fit``'s fallback for a set too
large for the GPU), to show what holding it on the device saves. The Fisher: ``per_sample_fisher`` on the
forecaster and on ``engine_classifier`` (FordA recordings), on each device. Times are the
median of ``repeats`` runs after one warm-up run; CUDA timings synchronise before the clock
stops. CPU uses the threads torch is given (1 by default, as the rest of the suite).

Usage: ``python -m bench.gpu [--quick]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from unittest import mock

import torch

from bench.common import Report, md_table
from lifelong.config import load_params
from lifelong.data import sources, windows
from lifelong.learn import train as train_module
from lifelong.learn.fisher import per_sample_fisher
from lifelong.learn.models import build_model, task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit

SKIPPED = "no CUDA device: skipped"


def _timed(fn: Callable[[], object], device: str, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _forecast_data(days: int) -> tuple[object, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    params = load_params()
    spec = params.model("demand_forecaster")
    ds = params.dataset(spec.dataset)
    frame = sources.load_source(ds)
    start = date.fromisoformat(spec.start_date)
    span = frame[(frame[ds.date_column] >= str(start)) & (frame[ds.date_column] < str(start + timedelta(days=days)))]
    stats = windows.fit_stats(span, ds)
    x, y = windows.forecast_windows(span, ds, spec.architecture, stats)
    return spec, x[:-48], y[:-48], x[-48:], y[-48:]


DEVICES = ("cpu", "cuda")
NOT_APPLICABLE = "-"


def update_rows(repeats: int, days: int, devices: tuple[str, str] = DEVICES) -> list[list[str]]:
    spec, x_hist, y_hist, x_day, y_day = _forecast_data(days)
    state = LearnerState.new(spec.architecture, spec.train, spec.strategy)
    fit(state, x_hist, y_hist, train=spec.train, strategy=make_strategy(spec.strategy, "regression", state))
    rows = []
    for label, x, y, base in (
        ("daily update (one day + replay)", x_day, y_day, state),
        (f"retrain-sized fit ({len(x_hist)} windows)", x_hist, y_hist, None),
    ):
        seconds, copied = [], None
        for device in devices:
            train = dataclasses.replace(spec.train, device=device)

            def run(x=x, y=y, base=base, train=train) -> None:
                s = (
                    copy.deepcopy(base)
                    if base is not None
                    else LearnerState.new(spec.architecture, train, spec.strategy)
                )
                fit(s, x, y, train=train, strategy=make_strategy(spec.strategy, "regression", s))

            seconds.append(_timed(run, device, repeats))
            if device == "cuda":  # again, the training set copied to the GPU a batch at a time
                with mock.patch.object(train_module, "RESIDENT_SHARE", 0.0):
                    copied = _timed(run, device, repeats)
        row = [label, f"{seconds[0]:.3f}", f"{seconds[1]:.3f}", f"{seconds[0] / seconds[1]:.1f}x"]
        extra = [NOT_APPLICABLE] * 2 if copied is None else [f"{copied:.3f}", f"{copied / seconds[1]:.1f}x"]
        rows.append(row + extra)
    return rows


def fisher_rows(repeats: int, samples: int, devices: tuple[str, str] = DEVICES) -> list[list[str]]:
    params = load_params()
    rows = []
    for name in ("demand_forecaster", "engine_classifier"):
        spec = params.model(name)
        torch.manual_seed(0)
        model = build_model(spec.architecture)
        kind = task_kind(spec.architecture)
        x = torch.randn(samples, spec.architecture.in_channels, spec.architecture.length)
        y = torch.randn(samples, spec.architecture.out_dim) if kind == "regression" else torch.randint(0, 2, (samples,))
        seconds = []
        for device in devices:
            m, xd, yd = model.to(device), x.to(device), y.to(device)

            def run(m=m, xd=xd, yd=yd, kind=kind, variant=spec.strategy.fisher_variant) -> None:
                per_sample_fisher(m, xd, yd, task=kind, variant=variant)

            seconds.append(_timed(run, device, repeats))
        model.to("cpu")
        label = f"per_sample_fisher, {name} ({spec.strategy.fisher_variant}, {samples} samples)"
        row = [label, f"{seconds[0]:.3f}", f"{seconds[1]:.3f}", f"{seconds[0] / seconds[1]:.1f}x"]
        rows.append(row + [NOT_APPLICABLE] * 2)
    return rows


def bench(quick: bool) -> Report:
    started = time.perf_counter()
    title = "5. GPU beside CPU"
    if not torch.cuda.is_available():
        return Report("gpu", title, "CUDA not available", SKIPPED, seconds=time.perf_counter() - started)
    repeats, days, samples = (3, 14, 512) if quick else (5, 60, 2048)
    rows = update_rows(repeats, days) + fisher_rows(repeats, samples)
    device = torch.cuda.get_device_name(0)
    markdown = "\n".join(
        [
            f"Device: {device}; CPU with {torch.get_num_threads()} torch thread(s). Median of {repeats} runs (s):",
            "",
            md_table(
                ["what", "CPU (s)", "CUDA (s)", "CPU / CUDA", "CUDA, a copy per batch (s)", "copy per batch / CUDA"],
                rows,
            ),
        ]
    )
    settings = (
        f"{'QUICK' if quick else 'FULL'}: vic_elec first {days} days, Fisher on {samples} samples, torch "
        f"{torch.__version__}"
    )
    return Report("gpu", title, settings, markdown, seconds=time.perf_counter() - started)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = bench(args.quick)
    return report.show()


if __name__ == "__main__":
    main(sys.argv[1:])
