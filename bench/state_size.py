"""Benchmark: the saved LearnerState's bytes across 20 consolidations (online EWC + replay).

``vibration_classifier`` as in params.yaml (strategy ``ewc+replay``: one online Fisher and one
set of anchors, a class-balanced buffer of ``replay_capacity``) learns the 5 machine types
round-robin, 4 times over: each round trains on a task, consolidates on it (the exact
Fisher folded into the online one) and saves the state with ``save_state``. Every file's size
is measured after each save. The tensor files must not grow with the number of tasks once the
buffer is full; ``state.json`` holds the training history (one entry per update), which grows
by a few hundred bytes per update by design.

Usage: ``python -m bench.state_size [--quick]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import Report, Target, md_table
from bench.task_addition import load_tasks
from lifelong.config import load_params
from lifelong.learn.models import task_kind
from lifelong.learn.state import STATE_FILES, LearnerState, save_state
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit

MODEL = "vibration_classifier"
CONSOLIDATIONS = 20
TENSORS = ("weights", "optimizer", "fisher", "anchors", "buffer")


def sizes(folder: Path) -> dict[str, int]:
    return {
        part: (folder / name).stat().st_size if (folder / name).exists() else 0 for part, name in STATE_FILES.items()
    }


def bench(quick: bool) -> Report:
    torch.set_num_threads(1)
    started = time.perf_counter()
    spec = load_params().model(MODEL)
    spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=1 if quick else spec.train.epochs))
    tasks = load_tasks(spec, None)
    state = LearnerState.new(spec.architecture, spec.train, spec.strategy)
    strategy = make_strategy(spec.strategy, task_kind(spec.architecture), state)
    history: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory(prefix="lifelong-state-") as tmp:
        for i in range(CONSOLIDATIONS):
            _, x, y, _, _ = tasks[i % len(tasks)]
            fit(state, x, y, train=spec.train, strategy=strategy, task=i)
            strategy.consolidate(state.model, x, y)
            folder = Path(tmp) / f"c{i + 1}"
            save_state(state, folder)
            history.append(sizes(folder))
    shown = [0, 1, 2, 4, 9, 14, 19]
    rows = [
        [i + 1, *(f"{history[i][p]:,}" for p in (*TENSORS, "meta")), f"{sum(history[i].values()):,}"] for i in shown
    ]
    tensor_bytes = [sum(h[p] for p in TENSORS) for h in history]
    full_from = next(i for i, h in enumerate(history) if h["buffer"] == history[-1]["buffer"])
    flat = len(set(tensor_bytes[full_from:])) == 1
    json_growth = (history[-1]["meta"] - history[full_from]["meta"]) / max(1, CONSOLIDATIONS - 1 - full_from)
    per_task = history[-1]["fisher"] + history[-1]["anchors"]
    markdown = "\n".join(
        [
            "Bytes of each file of the saved state after consolidation n:",
            "",
            md_table(["n", *TENSORS, "state.json", "total"], rows),
            "",
            f"Tensor files: {tensor_bytes[-1]:,} bytes from consolidation {full_from + 1} on (the buffer is full "
            f"there) to {CONSOLIDATIONS}: {'constant' if flat else 'NOT constant'}. state.json grows by "
            f"{json_growth:.0f} bytes per update (the metric history). For contrast, EWC with one penalty per "
            f"task (as in Kirkpatrick et al.) would hold {CONSOLIDATIONS} x {per_task:,} = "
            f"{CONSOLIDATIONS * per_task:,} bytes of Fishers and anchors by now instead of {per_task:,}.",
        ]
    )
    growth = (sum(history[-1].values()) / sum(history[full_from].values()) - 1) * 100
    target = Target(
        f"state size flat across {CONSOLIDATIONS} consolidations",
        flat and growth < 5.0,
        f"tensor files constant at {tensor_bytes[-1]:,} B from consolidation {full_from + 1}; whole state "
        f"{growth:+.1f}% from there to {CONSOLIDATIONS} (state.json history)",
    )
    settings = (
        f"{'QUICK' if quick else 'FULL'}: `{MODEL}` ({spec.strategy.name}, lambda {spec.strategy.ewc_lambda:g}, "
        f"gamma {spec.strategy.gamma:g}, buffer {spec.strategy.replay_capacity}), {spec.train.epochs} epoch(s) per "
        f"task, 5 vibration_sim tasks round-robin"
    )
    return Report(
        key="state_size",
        title="4. LearnerState size across consolidations",
        settings=settings,
        markdown=markdown,
        targets=(target,),
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch per task")
    args = parser.parse_args(argv)
    report = bench(args.quick)
    return report.show()


if __name__ == "__main__":
    main(sys.argv[1:])
