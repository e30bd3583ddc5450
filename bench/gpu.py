"""Benchmark: the daily update step and the Fisher on GPU beside CPU, in the same run.

Only where CUDA is present (else the section says "no CUDA device: skipped"). The update:
``demand_forecaster`` as in params.yaml, bootstrapped on its warm-up days of vic_elec, then
one daily update (day D-1 + replay) timed on each device from copies of the same state;
plus a retrain-sized fit (all those days at once). On CUDA, each fit also runs a second time with
the training set left on the host and copied a batch at a time (``fit``'s fallback for a set too
large for the GPU), to show what holding it on the device saves. ``engine_classifier`` (EWC+replay) learning
a new task after a consolidation, on random recordings of its shape: the fit with the EWC penalty on. Each
fit is timed again with the step as it was before the penalty took multi-tensor operations and Adam its
fused kernel on CUDA (``_step_as_before``). The Fisher: ``per_sample_fisher`` on the forecaster and on
``engine_classifier`` (random recordings), on each device. Times are the
median of ``repeats`` runs after one warm-up run; CUDA timings synchronise before the clock
stops. CPU uses the threads torch is given (1 by default, as the rest of the suite).

Usage: ``python -m bench.gpu [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from unittest import mock

import torch

from bench.common import Report, md_table
from lifelong.config import ModelSpec, load_params
from lifelong.data import sources, windows
from lifelong.learn import strategies
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


def _written_out_penalty(self: strategies.EWC, model: torch.nn.Module) -> torch.Tensor:
    """EWC's penalty as it was before the multi-tensor version: the sum written out for autograd."""
    if self.state.fisher is None or self.state.anchors is None:
        return strategies._zero(model)
    fisher, anchors = self._tensors(model)
    total = strategies._zero(model)
    for name, p in model.named_parameters():
        if name in fisher:
            total = total + (fisher[name] * (p - anchors[name]).pow(2)).sum()
    return 0.5 * self.spec.ewc_lambda * total


@contextlib.contextmanager
def _step_as_before() -> Iterator[None]:
    """The training step before the EWC penalty took multi-tensor operations and Adam its fused kernel."""
    with (
        mock.patch.object(strategies.EWC, "penalty", _written_out_penalty),
        mock.patch.object(train_module, "FUSED_ADAM_ON_CUDA", False),
    ):
        yield


@dataclasses.dataclass
class FitTimes:
    label: str
    devices: tuple[str, str]
    seconds: list[float] = dataclasses.field(default_factory=list)  # median, per device
    before: list[float] = dataclasses.field(default_factory=list)  # the same, with the step as before
    copied: float | None = None  # CUDA with the training set copied a batch at a time


def _fit_times(
    label: str,
    spec: ModelSpec,
    base: LearnerState | None,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    repeats: int,
    devices: tuple[str, str],
) -> FitTimes:
    """Median time of ``fit`` from a copy of ``base`` (a new state when None) on each device."""
    kind = task_kind(spec.architecture)
    times = FitTimes(label, devices)
    for device in devices:
        train = dataclasses.replace(spec.train, device=device)

        def run(train=train) -> None:
            state = (
                copy.deepcopy(base) if base is not None else LearnerState.new(spec.architecture, train, spec.strategy)
            )
            fit(state, x, y, train=train, strategy=make_strategy(spec.strategy, kind, state))

        times.seconds.append(_timed(run, device, repeats))
        with _step_as_before():
            times.before.append(_timed(run, device, repeats))
        if device == "cuda":  # again, the training set copied to the GPU a batch at a time
            with mock.patch.object(train_module, "RESIDENT_SHARE", 0.0):
                times.copied = _timed(run, device, repeats)
    return times


def update_times(repeats: int, days: int, recordings: int, devices: tuple[str, str] = DEVICES) -> list[FitTimes]:
    """The forecaster's daily update and a retrain-sized fit; the engine classifier learning a new task."""
    spec, x_hist, y_hist, x_day, y_day = _forecast_data(days)
    state = LearnerState.new(spec.architecture, spec.train, spec.strategy)
    fit(state, x_hist, y_hist, train=spec.train, strategy=make_strategy(spec.strategy, "regression", state))
    times = [
        _fit_times(
            "daily update, demand_forecaster (one day + replay)",
            spec,
            state,
            x_day,
            y_day,
            repeats=repeats,
            devices=devices,
        ),
        _fit_times(
            f"retrain-sized fit, demand_forecaster ({len(x_hist)} windows)",
            spec,
            None,
            x_hist,
            y_hist,
            repeats=repeats,
            devices=devices,
        ),
    ]
    engine = load_params().model("engine_classifier")
    generator = torch.Generator().manual_seed(0)
    shape = (recordings, engine.architecture.in_channels, engine.architecture.length)
    x_old, x_new = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    y_old, y_new = (torch.randint(0, 2, (recordings,), generator=generator) for _ in range(2))
    state = LearnerState.new(engine.architecture, engine.train, engine.strategy)
    strategy = make_strategy(engine.strategy, "classification", state)
    fit(state, x_old, y_old, train=engine.train, strategy=strategy, task=0)
    strategy.consolidate(state.model, x_old, y_old)  # the penalty is on from here
    label = f"new task, engine_classifier ({engine.strategy.name}, {recordings} recordings)"
    times.append(_fit_times(label, engine, state, x_new, y_new, repeats=repeats, devices=devices))
    return times


def update_rows(times: list[FitTimes]) -> list[list[str]]:
    rows = []
    for t in times:
        cpu, cuda = t.seconds
        row = [t.label, f"{cpu:.3f}", f"{cuda:.3f}", f"{cpu / cuda:.1f}x"]
        extra = [NOT_APPLICABLE] * 2 if t.copied is None else [f"{t.copied:.3f}", f"{t.copied / cuda:.1f}x"]
        rows.append(row + extra)
    return rows


def step_rows(times: list[FitTimes]) -> list[list[str]]:
    return [
        [t.label, device, f"{now:.3f}", f"{before:.3f}", f"{before / now:.2f}x"]
        for t in times
        for device, now, before in zip(t.devices, t.seconds, t.before, strict=True)
    ]


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
    repeats, days, recordings, samples = (3, 14, 256, 512) if quick else (5, 60, 1024, 2048)
    fits = update_times(repeats, days, recordings)
    device = torch.cuda.get_device_name(0)
    markdown = "\n".join(
        [
            f"Device: {device}; CPU with {torch.get_num_threads()} torch thread(s). Median of {repeats} runs (s):",
            "",
            md_table(
                ["what", "CPU (s)", "CUDA (s)", "CPU / CUDA", "CUDA, a copy per batch (s)", "copy per batch / CUDA"],
                update_rows(fits) + fisher_rows(repeats, samples),
            ),
            "",
            "The training step against the same step before two changes, same run: EWC's penalty in multi-tensor"
            " operations (one value and its gradient, not five autograd operations per parameter each way) and, on"
            " CUDA, Adam's fused kernel (not foreach). Median of"
            f" {repeats} runs (s); the forecaster's strategy (replay) has no penalty, so only Adam differs there:",
            "",
            md_table(["what", "device", "now (s)", "before (s)", "before / now"], step_rows(fits)),
        ]
    )
    settings = (
        f"{'QUICK' if quick else 'FULL'}: vic_elec first {days} days; engine_classifier on {recordings} random"
        f" recordings per task; Fisher on {samples} samples; torch {torch.__version__}"
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
