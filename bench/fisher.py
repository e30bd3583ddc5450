"""Benchmark: the project's exact Fisher vs the batch-size-1 loop vs the approximations.

Methods, each timed on the same model and data (CPU, one thread by default):

* ``per_sample_fisher`` (lifelong): per-layer identities, exact;
* ``loop``: one sample at a time, straight from the definition, the reference;
* ``vmap``: plain ``torch.func`` (vmap over per-sample VJPs), exact but materialises per-sample gradients;
* ``batched approx``: square of each mini-batch's mean-loss gradient (batch 64), as several
  continual-learning libraries compute "the Fisher"; fast and biased.

Models: a ~100k-parameter MLP classifier (784 inputs, 128 hidden, 10 classes) and the forecaster
CNN (3 channels x 96 steps in, 48 steps out), plus a 1-D CNN classifier (two convolutions, 4 classes),
all from ``lifelong.learn.models.build_model``.
Relative error is ``||F - F_loop|| / ||F_loop||`` over all parameters together (float32, so the
loop's own rounding over thousands of small terms is part of it).

Usage: ``python bench/fisher.py [--quick] [--threads N] [--samples N]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from lifelong.config import ArchitectureSpec
from lifelong.learn.fisher import batched_fisher_approx, loop_fisher, per_sample_fisher, vmap_fisher
from lifelong.learn.models import build_model

Fisher = dict[str, Tensor]
Method = Callable[[Tensor, Tensor], Fisher]

MLP = ArchitectureSpec(type="mlp_classifier", in_channels=1, length=784, out_dim=10, hidden=(128,))
FORECASTER = ArchitectureSpec(
    type="cnn_forecaster", in_channels=3, length=96, out_dim=48, channels=(16,), kernel_size=3, pool=2, hidden=(64,)
)

CLASSIFIER = ArchitectureSpec(
    type="cnn_classifier", in_channels=1, length=128, out_dim=4, channels=(16, 32), kernel_size=5, pool=2, hidden=(64,)
)


@dataclass(frozen=True)
class Row:
    model: str
    params: int
    samples: int
    variant: str
    method: str
    seconds: float
    speedup: float
    rel_error: float


def _data(spec: ArchitectureSpec, n: int) -> tuple[Tensor, Tensor, str]:
    x = torch.randn(n, spec.in_channels, spec.length)
    if spec.type == "cnn_forecaster":
        return x, torch.randn(n, spec.out_dim), "regression"
    return x, torch.randint(0, spec.out_dim, (n,)), "classification"


def _timed(fn: Method, x: Tensor, y: Tensor, repeats: int) -> tuple[float, Fisher]:
    """Best of ``repeats`` runs, after an untimed warm-up on 8 samples (first-call costs are not the method's)."""
    fn(x[:8], y[:8])
    best, result = float("inf"), {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(x, y)
        best = min(best, time.perf_counter() - start)
    return best, result


def _rel_error(estimate: Fisher, reference: Fisher) -> float:
    num = sum(float((estimate[k] - reference[k]).pow(2).sum()) for k in reference)
    den = sum(float(reference[k].pow(2).sum()) for k in reference)
    return (num / den) ** 0.5


def bench_model(name: str, spec: ArchitectureSpec, samples: int, repeats: int) -> list[Row]:
    torch.manual_seed(0)
    model = build_model(spec)
    x, y, task = _data(spec, samples)
    n_params = sum(p.numel() for p in model.parameters())
    rows: list[Row] = []
    for variant in ("empirical", "exact"):
        v = variant

        def fast(a: Tensor, b: Tensor, v: str = v) -> Fisher:
            return per_sample_fisher(model, a, b, task=task, variant=v)

        def func(a: Tensor, b: Tensor, v: str = v) -> Fisher:
            return vmap_fisher(model, a, b, task=task, variant=v)

        def loop(a: Tensor, b: Tensor, v: str = v) -> Fisher:
            return loop_fisher(model, a, b, task=task, variant=v)

        def approx(a: Tensor, b: Tensor) -> Fisher:
            return batched_fisher_approx(model, a, b, task=task, batch_size=64)

        # the slow ones run once (the exact loop on the forecaster is 48 backward passes per sample)
        loop_s, reference = _timed(loop, x, y, 1)
        rows.append(Row(name, n_params, samples, variant, "loop (batch size 1)", loop_s, 1.0, 0.0))
        methods: list[tuple[str, Method, int]] = [
            ("per_sample_fisher (lifelong)", fast, repeats),
            ("vmap (torch.func)", func, 1),
        ]
        if variant == "empirical":
            methods.append(("batched approx (batch 64)", approx, repeats))
        for method, fn, times in methods:
            seconds, estimate = _timed(fn, x, y, times)
            error = _rel_error(estimate, reference)
            rows.append(Row(name, n_params, samples, variant, method, seconds, loop_s / seconds, error))
    return rows


def to_markdown(rows: list[Row], note: str) -> str:
    lines = [
        note,
        "",
        "| model | params | samples | variant | method | time (s) | speed-up vs loop | rel. error vs loop |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.params:,} | {r.samples} | {r.variant} | {r.method} | {r.seconds:.3f} "
            f"| {r.speedup:.1f}x | {r.rel_error:.1e} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples, one repeat (a smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--samples", type=int, default=None, help="samples per model (default 1024, quick 64)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    samples = args.samples or (64 if args.quick else 1024)
    repeats = 1 if args.quick else 3
    rows: list[Row] = []
    models = (
        ("MLP 784-128-10", MLP),
        ("CNN forecaster 3x96 -> 48", FORECASTER),
        ("CNN classifier 1x128 -> 4", CLASSIFIER),
    )
    for name, spec in models:
        rows += bench_model(name, spec, samples, repeats)
    note = (
        f"Fisher benchmark: torch {torch.__version__}, CPU, {args.threads} thread(s), float32, "
        f"models from build_model; per_sample_fisher and batched approx: best of {repeats}, loop and vmap: one run."
    )
    table = to_markdown(rows, note)
    print(table)
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
