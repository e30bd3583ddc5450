"""Benchmark: task addition with every strategy, on vibration_sim (5 machine types) and FordA -> FordB.

In memory, with the learn/ APIs and the models' specs from params.yaml
(``vibration_classifier`` and ``engine_classifier``: architecture, training, EWC lambda and
gamma, replay size and policy), only the strategy's name changing. Tasks arrive in order;
before each new task the strategy consolidates on the previous task's training data, as the
task-addition DAG does (``consolidate`` then ``learn_task``). After each task the model is
scored on the test split of every task: row ``i`` of the accuracy matrix. ``joint`` is the
upper bound: for row ``i`` a fresh model trained on the union of tasks ``0..i``.
ACC and BWT as in ``lifelong.learn.metrics`` (BWT < 0 is forgetting).

Usage: ``python -m bench.task_addition [--quick]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.common import Report, md_table
from lifelong.config import ModelSpec, load_params
from lifelong.data import sources, windows
from lifelong.learn import metrics
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import consolidate, fit, predict

STRATEGIES = ("naive", "ewc", "online_ewc", "lwf", "replay", "ewc+replay", "joint")
BENCHES = (("vibration_classifier", "vibration_sim, 5 machine types"), ("engine_classifier", "FordA -> FordB"))
Task = tuple[str, Tensor, Tensor, Tensor, Tensor]  # name, x_train, y_train, x_test, y_test


@dataclass(frozen=True)
class Outcome:
    strategy: str
    matrix: list[list[float]]
    seconds: float

    @property
    def acc(self) -> float:
        return metrics.average_accuracy(self.matrix)

    @property
    def bwt(self) -> float:
        return metrics.backward_transfer(self.matrix) if len(self.matrix) > 1 else 0.0


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


def run_model(model: str, limit: int | None, epochs: int | None) -> tuple[list[Task], list[Outcome], ModelSpec]:
    spec = load_params().model(model)
    if epochs is not None:
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=epochs))
    tasks = load_tasks(spec, limit)
    outcomes = []
    for name in STRATEGIES:
        started = time.perf_counter()
        if name == "joint":
            matrix = joint(spec, tasks)
        else:
            matrix = sequential(
                dataclasses.replace(spec, strategy=dataclasses.replace(spec.strategy, name=name)), tasks
            )
        outcomes.append(Outcome(name, matrix, time.perf_counter() - started))
    return tasks, outcomes, spec


def _tables(title: str, tasks: list[Task], outcomes: list[Outcome], spec: ModelSpec) -> str:
    names = [t[0] for t in tasks]
    summary = [
        [o.strategy, f"{100 * o.acc:.1f}", f"{100 * o.bwt:+.1f}"]
        + [f"{100 * o.matrix[-1][j]:.1f}" for j in range(len(names))]
        + [f"{o.seconds:.1f}"]
        for o in outcomes
    ]
    s = spec.strategy
    lines = [
        f"### {title}",
        "",
        f"{len(names)} tasks ({', '.join(f'{t[0]}: {len(t[1])} train / {len(t[3])} test' for t in tasks)}); "
        f"`{spec.name}`: {spec.train.epochs} epochs, batch {spec.train.batch_size}, lr {spec.train.lr}, "
        f"EWC lambda {s.ewc_lambda:g} (online gamma {s.gamma:g}), replay {s.replay_capacity} {s.replay_policy} "
        f"at ratio {s.replay_ratio:g}. Accuracy (%) after the last task:",
        "",
        md_table(["strategy", "ACC", "BWT", *names, "time (s)"], summary),
        "",
        "Accuracy matrices (row: after learning that task; column: test accuracy % on that task):",
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


def bench(quick: bool) -> Report:
    torch.set_num_threads(1)
    started = time.perf_counter()
    limit, ford_epochs = (600, 3) if quick else (None, None)
    parts, notes = [], []
    for model, title in BENCHES:
        tasks, outcomes, spec = run_model(
            model,
            limit if model == "engine_classifier" else None,
            ford_epochs if model == "engine_classifier" else None,
        )
        parts.append(_tables(title, tasks, outcomes, spec))
        best = max((o for o in outcomes if o.strategy != "joint"), key=lambda o: o.acc)
        naive = next(o for o in outcomes if o.strategy == "naive")
        top = next(o for o in outcomes if o.strategy == "joint")
        notes.append(
            f"{title}: best sequential strategy {best.strategy} ACC {100 * best.acc:.1f}% (naive "
            f"{100 * naive.acc:.1f}%, joint, the nominal upper bound, {100 * top.acc:.1f}%)"
        )
    settings = (
        "QUICK: vibration_sim in full; FordA/FordB at most 600 train and 600 test recordings per task, 3 epochs"
        if quick
        else "FULL: every recording, the models' params.yaml settings"
    ) + "; seed 0, 1 torch thread"
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
    args = parser.parse_args(argv)
    report = bench(args.quick)
    return report.show()


if __name__ == "__main__":
    main(sys.argv[1:])
