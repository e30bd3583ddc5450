"""Small real models and data for the registry tests (imported by the tests and conftest)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec

ARCH = ArchitectureSpec(type="cnn_forecaster", in_channels=1, length=24, out_dim=4, channels=(4,), hidden=(16,))
TRAIN = TrainSpec(lr=0.01, epochs=2, batch_size=32, seed=0)
STRATEGY = StrategySpec(name="naive")
MODEL = "demo_forecaster"


def series(days: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """A noisy daily-seasonal signal, 24 steps a day (like hourly demand, normalised)."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * 24)
    return (
        np.sin(2 * np.pi * t / 24) + 0.3 * np.sin(2 * np.pi * t / 168) + shift + 0.05 * rng.normal(size=t.size)
    ).astype(np.float32)


def windows(values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Forecast windows: 24 steps in, the next 4 out."""
    n = len(values) - ARCH.length - ARCH.out_dim + 1
    x = np.stack([values[i : i + ARCH.length] for i in range(n)])[:, None, :]
    y = np.stack([values[i + ARCH.length : i + ARCH.length + ARCH.out_dim] for i in range(n)])
    return torch.from_numpy(x), torch.from_numpy(y)


def new_state(seed: int = 0) -> Any:
    from lifelong.learn.state import LearnerState

    torch.manual_seed(seed)
    return LearnerState.new(ARCH, TRAIN, STRATEGY)


def train(state: Any, x: torch.Tensor, y: torch.Tensor, steps: int = 150, seed: int = 0) -> list[dict]:
    """A plain full-batch Adam loop on ``state.model``; returns per-epoch records (one per 50 steps)."""
    torch.manual_seed(seed)
    model = state.model
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    epochs = []
    for step in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if step % 50 == 49:
            epochs.append({"epoch": len(epochs), "train_loss": loss.item(), "val_loss": loss.item() * 1.1})
    model.eval()
    return epochs


def mae(state: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    state.model.eval()
    with torch.no_grad():
        return float((state.model(x) - y).abs().mean())


def bless(version: str, decision: Any = None, model: str = MODEL) -> str | None:
    """Record a gate decision on ``version`` judged against the champion of the moment, as ``gate`` does
    (approving unless ``decision`` says otherwise); nothing when ``version`` is champion already."""
    from lifelong import decisions, registry

    champion = registry.champion(model)
    if champion == str(version):
        return None
    approved, reason = (True, "approved: test") if decision is None else (decision.approved, decision.reason)
    body = decisions.body(
        model=model, version=str(version), champion_version=champion, approved=approved, reason=reason,
        deltas={}, candidate={"mae": 0.1}, champion=None, data_version=None,
    )  # fmt: skip
    return registry.record_decision(model, version, body)
