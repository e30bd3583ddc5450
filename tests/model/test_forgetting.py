"""On real task sequences (sklearn digits), EWC and replay keep clearly more than naive fine-tuning.

Split digits: 5 tasks of 2 classes, one 10-way head (class-incremental, the hard scenario).
Permuted digits: 3 tasks, each a fixed random permutation of the 64 pixels (domain-incremental).
Fixed seeds; a small MLP; a few epochs per task.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec
from lifelong.learn import metrics
from lifelong.learn.metrics import predict
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import fit

Task = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def digits() -> Task:
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    n = int(0.7 * len(x))
    return x[:n], y[:n], x[n:], y[n:]


def split_tasks(d: Task) -> list[Task]:
    xtr, ytr, xte, yte = d
    return [(xtr[ytr // 2 == t], ytr[ytr // 2 == t], xte[yte // 2 == t], yte[yte // 2 == t]) for t in range(5)]


def permuted_tasks(d: Task, n: int = 3) -> list[Task]:
    xtr, ytr, xte, yte = d
    perms = [torch.arange(64)] + [torch.randperm(64, generator=torch.Generator().manual_seed(t)) for t in range(1, n)]
    return [(xtr[:, p], ytr, xte[:, p], yte) for p in perms]


def run(tasks: list[Task], strategy: StrategySpec, hidden: tuple[int, ...], lr: float) -> dict[str, float]:
    """Learn the tasks in order; return ACC/BWT/forgetting of the accuracy matrix."""
    torch.set_num_threads(1)
    arch = ArchitectureSpec(type="mlp_classifier", in_channels=1, length=64, out_dim=10, hidden=hidden)
    train = TrainSpec(lr=lr, lr_decay=1.0, epochs=5, batch_size=32, val_fraction=0.0, patience=0, grad_clip=0.0)
    state = LearnerState.new(arch, train, strategy)
    learner = make_strategy(strategy, "classification", state)
    R = metrics.new_matrix(len(tasks))
    for i, (xtr, ytr, _, _) in enumerate(tasks):
        fit(state, xtr[:, None], ytr, train=train, strategy=learner, task=i)
        learner.consolidate(state.model, xtr[:, None], ytr)
        for j, (_, _, xte, yte) in enumerate(tasks):
            R[i][j] = metrics.accuracy(predict(state.model, xte[:, None]), yte)
    return metrics.summary(R)


def test_split_digits_ewc_and_replay_beat_naive(digits: Task) -> None:
    tasks = split_tasks(digits)
    naive = run(tasks, StrategySpec(name="naive"), (100,), 1e-3)
    ewc = run(tasks, StrategySpec(name="ewc", ewc_lambda=1000.0), (100,), 1e-3)
    replay = run(tasks, StrategySpec(name="replay", replay_capacity=200, replay_ratio=0.5), (100,), 1e-3)
    assert naive["acc"] < 0.3  # catastrophic forgetting: only the last task is remembered
    assert ewc["acc"] >= naive["acc"] + 0.1 and ewc["bwt"] >= naive["bwt"] + 0.15, (naive, ewc)
    assert replay["acc"] >= naive["acc"] + 0.15 and replay["bwt"] >= naive["bwt"] + 0.2, (naive, replay)


def test_permuted_digits_ewc_and_replay_beat_naive(digits: Task) -> None:
    tasks = permuted_tasks(digits)
    naive = run(tasks, StrategySpec(name="naive"), (128,), 2e-3)
    ewc = run(tasks, StrategySpec(name="ewc", ewc_lambda=300.0), (128,), 2e-3)
    replay = run(tasks, StrategySpec(name="replay", replay_capacity=200, replay_ratio=0.5), (128,), 2e-3)
    assert ewc["acc"] >= naive["acc"] + 0.05 and ewc["bwt"] >= naive["bwt"] + 0.12, (naive, ewc)
    assert replay["acc"] >= naive["acc"] + 0.1 and replay["bwt"] >= naive["bwt"] + 0.2, (naive, replay)
