"""Benchmark: task addition with every strategy, on vibration_sim (5 machine types) and FordA -> FordB.

In memory, with the learn/ APIs and the models' specs from params.yaml
(``vibration_classifier`` and ``engine_classifier``: architecture, training, EWC lambda and
gamma, replay size and policy), only the strategy's name changing. Tasks arrive in order;
before each new task the strategy consolidates on the previous task's training data, as the
task-addition DAG does (``consolidate`` then ``learn_task``). After each task the model is
scored on the test split of every task: row ``i`` of the accuracy matrix. ``joint`` is the
upper bound: for row ``i`` a fresh model trained on the union of tasks ``0..i``.
ACC and BWT as in ``lifelong.learn.metrics`` (BWT < 0 is forgetting).

Each strategy runs once per seed (``train.seed`` = 0, 1, ...: weight init, batch order, replay
sampling; the data and its split stay fixed). ACC and BWT are reported as mean ± sd over the
seeds and the accuracy matrices as their mean: one seed's ranking of strategies a point or two
apart says nothing (FordA moved by a point between two machines at seed 0). The full run also
sweeps EWC's lambda on vibration_sim (:func:`lambda_sweep`): at the params.yaml value EWC does
not measurably beat naive there, and a lambda large enough to stop the forgetting keeps the
model from learning the new machine type.

Usage: ``python -m bench.task_addition [--quick] [--seeds N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.common import Report, md_table
from lifelong.config import ModelSpec, load_params
from lifelong.data import sources, windows
from lifelong.learn import metrics
from lifelong.learn.metrics import predict
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import consolidate, fit

STRATEGIES = ("naive", "ewc", "online_ewc", "lwf", "replay", "ewc+replay", "joint")
BENCHES = (("vibration_classifier", "vibration_sim, 5 machine types"), ("engine_classifier", "FordA -> FordB"))
Task = tuple[str, Tensor, Tensor, Tensor, Tensor]  # name, x_train, y_train, x_test, y_test


FULL_SEEDS = 3
LAMBDA_FACTORS = (1.0, 10.0, 100.0, 1000.0)  # the full run sweeps vibration_sim's EWC lambda by these


@dataclass(frozen=True)
class Outcome:
    """One strategy's accuracy matrices, one per seed, and its wall time per seed."""

    strategy: str
    matrices: list[list[list[float]]]
    seconds: float

    @property
    def accs(self) -> list[float]:
        return [metrics.average_accuracy(m) for m in self.matrices]

    @property
    def bwts(self) -> list[float]:
        return [metrics.backward_transfer(m) if len(m) > 1 else 0.0 for m in self.matrices]

    @property
    def acc(self) -> float:
        return statistics.fmean(self.accs)

    @property
    def matrix(self) -> list[list[float]]:
        """The mean accuracy matrix over the seeds."""
        rows_by_seed = zip(*self.matrices, strict=True)
        return [[statistics.fmean(cells) for cells in zip(*rows, strict=True)] for rows in rows_by_seed]


def _mean_sd(values: list[float], sign: str = "") -> str:
    """Percent, ``mean ± sd`` over seeds (the mean alone for one seed).

    >>> _mean_sd([0.9, 0.92, 0.94])
    '92.0 ± 2.0'
    >>> _mean_sd([-0.05], sign="+")
    '-5.0'
    """
    mean = f"{100 * statistics.fmean(values):{sign}.1f}"
    return f"{mean} ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else mean


def load_tasks(spec: ModelSpec, limit: int | None) -> list[Task]:
    """Every task of the model's data set, train and test, at most ``limit`` samples each (seeded)."""
    ds = load_params().dataset(spec.dataset)
    frame = sources.load_source(ds)
    tasks = []
    for name in ds.tasks:
        part = frame[frame[ds.task_column] == name]
        x, y = windows.classify_arrays(part, ds, spec.architecture, split="train")
        xt, yt = windows.classify_arrays(part, ds, spec.architecture, split="test")
        tasks.append((name, *_limit(x, y, limit), *_limit(xt, yt, limit)))
    return tasks


def _limit(x: Tensor, y: Tensor, limit: int | None) -> tuple[Tensor, Tensor]:
    if limit is None or len(x) <= limit:
        return x, y
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:limit]
    return x[idx], y[idx]


def _accuracy(state: LearnerState, x: Tensor, y: Tensor) -> float:
    return metrics.accuracy(predict(state.model, x), y)


def sequential(spec: ModelSpec, tasks: list[Task]) -> list[list[float]]:
    """One model through the tasks in order with ``spec.strategy``; the accuracy matrix."""
    state = LearnerState.new(spec.architecture, spec.train, spec.strategy)
    strategy = make_strategy(spec.strategy, task_kind(spec.architecture), state)
    matrix = []
    for i, (_, x, y, _, _) in enumerate(tasks):
        if i > 0:
            consolidate(state, strategy, tasks[i - 1][1], tasks[i - 1][2], device=spec.train.device)
        fit(state, x, y, train=spec.train, strategy=strategy, task=i)
        matrix.append([_accuracy(state, t[3], t[4]) for t in tasks])
    return matrix


def joint(spec: ModelSpec, tasks: list[Task]) -> list[list[float]]:
    """Row ``i``: a fresh model trained on tasks ``0..i`` together (the upper bound)."""
    naive = dataclasses.replace(spec.strategy, name="naive")
    matrix = []
    for i in range(len(tasks)):
        state = LearnerState.new(spec.architecture, spec.train, naive)
        x = torch.cat([t[1] for t in tasks[: i + 1]])
        y = torch.cat([t[2] for t in tasks[: i + 1]])
        fit(state, x, y, train=spec.train, strategy=make_strategy(naive, task_kind(spec.architecture), state))
        matrix.append([_accuracy(state, t[3], t[4]) for t in tasks])
    return matrix


def over_seeds(spec: ModelSpec, tasks: list[Task], seeds: int) -> list[list[list[float]]]:
    """The accuracy matrix of ``spec.strategy`` (or ``joint``) once per seed ``0..seeds-1``."""
    run = joint if spec.strategy.name == "joint" else sequential
    return [run(dataclasses.replace(spec, train=dataclasses.replace(spec.train, seed=s)), tasks) for s in range(seeds)]


def run_model(
    model: str, limit: int | None, epochs: int | None, seeds: int = 1
) -> tuple[list[Task], list[Outcome], ModelSpec]:
    """Every strategy on the model's tasks, once per seed ``0..seeds-1``."""
    spec = load_params().model(model)
    if epochs is not None:
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=epochs))
    tasks = load_tasks(spec, limit)
    outcomes = []
    for name in STRATEGIES:
        started = time.perf_counter()
        named = dataclasses.replace(spec, strategy=dataclasses.replace(spec.strategy, name=name))
        matrices = over_seeds(named, tasks, seeds)
        outcomes.append(Outcome(name, matrices, (time.perf_counter() - started) / seeds))
        print(f"[task_addition] {model} {name}: ACC {_mean_sd(outcomes[-1].accs)}", file=sys.stderr, flush=True)
    return tasks, outcomes, spec


def _against_naive(outcomes: list[Outcome]) -> str:
    """Each sequential strategy's mean ACC minus naive's; "(noise)" where that is within the seeds' sd."""
    naive = next(o for o in outcomes if o.strategy == "naive")
    parts = []
    for o in outcomes:
        if o.strategy in ("naive", "joint"):
            continue
        diff = o.acc - naive.acc
        spread = max(statistics.stdev(o.accs), statistics.stdev(naive.accs)) if len(o.accs) > 1 else 0.0
        parts.append(f"{o.strategy} {100 * diff:+.1f}" + (" (noise)" if abs(diff) <= spread else ""))
    if len(naive.accs) == 1:
        return f"ACC against naive, in points (one seed: no spread to judge noise by): {', '.join(parts)}."
    return f'ACC against naive, in points ("(noise)": no larger than the sd over seeds of either): {", ".join(parts)}.'


def _tables(title: str, tasks: list[Task], outcomes: list[Outcome], spec: ModelSpec) -> str:
    names = [t[0] for t in tasks]
    summary = [
        [o.strategy, _mean_sd(o.accs), _mean_sd(o.bwts, sign="+")]
        + [f"{100 * o.matrix[-1][j]:.1f}" for j in range(len(names))]
        + [f"{o.seconds:.1f}"]
        for o in outcomes
    ]
    # the naive baseline on the same test recordings: always the most frequent class of each task's train labels
    majority = [metrics.majority_accuracy(t[2], t[4]) for t in tasks]
    summary.append(["majority class", f"{100 * statistics.fmean(majority):.1f}", "-"]
                   + [f"{100 * m:.1f}" for m in majority] + ["-"])  # fmt: skip
    seeds = len(outcomes[0].matrices)
    over = f"mean ± sd over {seeds} seeds" if seeds > 1 else "one seed"
    s = spec.strategy
    lines = [
        f"### {title}",
        "",
        f"{len(names)} tasks ({', '.join(f'{t[0]}: {len(t[1])} train / {len(t[3])} test' for t in tasks)}); "
        f"`{spec.name}`: {spec.train.epochs} epochs, batch {spec.train.batch_size}, lr {spec.train.lr}, "
        f"EWC lambda {s.ewc_lambda:g} (online gamma {s.gamma:g}), replay {s.replay_capacity} {s.replay_policy} "
        f"at ratio {s.replay_ratio:g}. ACC and BWT: {over}; per task: accuracy (%) after the last task"
        f'{", mean over the seeds" if seeds > 1 else ""}; time: wall seconds per seed. "majority class": always '
        "answering the most frequent class of each task's training labels, on the same test recordings:",
        "",
        md_table(["strategy", "ACC", "BWT", *names, "time (s)"], summary),
        "",
        _against_naive(outcomes),
        "",
        f"Accuracy matrices{' (mean over the seeds)' if seeds > 1 else ''} "
        "(row: after learning that task; column: test accuracy % on that task):",
        "",
    ]
    for o in outcomes:
        rows = [[f"after {names[i]}"] + [f"{100 * v:.1f}" for v in row] for i, row in enumerate(o.matrix)]
        lines += [
            f"<details><summary>{o.strategy}</summary>",
            "",
            md_table([o.strategy, *names], rows),
            "",
            "</details>",
        ]
    return "\n".join(lines)


def lambda_sweep(spec: ModelSpec, tasks: list[Task], seeds: int, factors: tuple[float, ...] = LAMBDA_FACTORS) -> str:
    """EWC and EWC+replay at multiples of the model's lambda: where forgetting stops, and at what cost."""
    model = spec.name
    rows = []
    for name in ("ewc", "ewc+replay"):
        for factor in factors:
            lam = spec.strategy.ewc_lambda * factor
            strategy = dataclasses.replace(spec.strategy, name=name, ewc_lambda=lam)
            matrices = over_seeds(dataclasses.replace(spec, strategy=strategy), tasks, seeds)
            outcome = Outcome(name, matrices, 0.0)
            newest = statistics.fmean(m[i][i] for m in matrices for i in range(len(tasks)))
            rows.append(
                [name, f"{lam:g}", _mean_sd(outcome.accs), _mean_sd(outcome.bwts, sign="+"), f"{100 * newest:.1f}"]
            )
            print(f"[task_addition] {model} {name} lambda {lam:g}: ACC {_mean_sd(outcome.accs)}", file=sys.stderr)
    return "\n".join(
        [
            f"#### EWC's lambda on {spec.dataset}",
            "",
            f"`{model}` with EWC's lambda at {', '.join(f'{f:g}x' for f in factors)} its params.yaml value "
            f'({spec.strategy.ewc_lambda:g}); mean ± sd over {seeds} seed(s). "new task": the mean accuracy on each '
            "task right after learning it (the diagonal of the matrix): a larger lambda trades forgetting (BWT) "
            "for learning the new task.",
            "",
            md_table(["strategy", "lambda", "ACC", "BWT", "new task"], rows),
            "",
        ]
    )


def bench(quick: bool, seeds: int | None = None) -> Report:
    torch.set_num_threads(1)
    started = time.perf_counter()
    limit, ford_epochs = (600, 3) if quick else (None, None)
    seeds = seeds or (1 if quick else FULL_SEEDS)
    parts, notes = [], []
    for model, title in BENCHES:
        tasks, outcomes, spec = run_model(
            model,
            limit if model == "engine_classifier" else None,
            ford_epochs if model == "engine_classifier" else None,
            seeds,
        )
        parts.append(_tables(title, tasks, outcomes, spec))
        if model == "vibration_classifier" and not quick:
            parts += ["", lambda_sweep(spec, tasks, seeds)]
        best = max((o for o in outcomes if o.strategy != "joint"), key=lambda o: o.acc)
        naive = next(o for o in outcomes if o.strategy == "naive")
        top = next(o for o in outcomes if o.strategy == "joint")
        notes.append(
            f"{title}: best sequential strategy {best.strategy} ACC {_mean_sd(best.accs)}% (naive "
            f"{_mean_sd(naive.accs)}%, joint, the nominal upper bound, {_mean_sd(top.accs)}%)"
        )
    settings = (
        (
            "QUICK: vibration_sim in full; FordA/FordB at most 600 train and 600 test recordings per task, 3 epochs"
            if quick
            else "FULL: every recording, the models' params.yaml settings"
        )
        + (f"; seeds 0-{seeds - 1}" if seeds > 1 else "; seed 0")
        + ", 1 torch thread"
    )
    markdown = "\n".join(["; ".join(notes) + ".", "", *parts])
    return Report(
        key="task_addition",
        title="3. Task addition: accuracy matrix, ACC and BWT per strategy",
        settings=settings,
        markdown=markdown,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="FordA/B subsampled, fewer epochs")
    parser.add_argument("--seeds", type=int, default=None, help=f"seeds per strategy (default {FULL_SEEDS}, quick 1)")
    args = parser.parse_args(argv)
    report = bench(args.quick, args.seeds)
    return report.show()


if __name__ == "__main__":
    main(sys.argv[1:])
