"""The update loop: one flat function that a DAG task, the CLI and a test all call.

:func:`fit` continues from the state's weights, optimizer moments and learning-rate
schedule; trains on mini-batches of the new data (mixed with replayed samples when the
strategy replays), adds the strategy's penalty and distillation loss, clips gradients,
stops early on a validation split and restores the best weights, then lets the strategy
observe the new data (fills the replay buffer). Everything random is drawn from a seed
derived from ``train.seed`` and the state's update counter, so an update run after a
restart draws what it would have drawn without one.

Consolidation (EWC Fisher, LwF teacher) is *not* done here: call
``strategy.consolidate(state.model, x, y)`` when a task is finished.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.config import TrainSpec
from lifelong.errors import LifelongError
from lifelong.learn.models import task_kind
from lifelong.learn.state import LearnerState
from lifelong.learn.strategies import Strategy


class TrainError(LifelongError, ValueError):
    """Training cannot start (no data, shapes that do not fit the model, no such device)."""


@dataclass
class TrainResult:
    epochs: list[dict[str, Any]] = field(default_factory=list)  # epoch, train_loss, val_loss, lr
    steps: int = 0
    best_val_loss: float = math.nan
    stopped_early: bool = False
    duration_s: float = 0.0
    device: str = "cpu"


def select_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; an explicit ``cuda`` without CUDA is an error."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device {preference!r} requested but CUDA is not available")
    return device


def derive_seed(seed: int, update: int) -> int:
    """The seed of update number ``update`` (a restart-proof function of the spec and counters)."""
    return (seed * 1_000_003 + update * 7_919 + 17) % (2**63 - 1)


def task_loss(out: Tensor, y: Tensor, kind: str) -> Tensor:
    """Mean cross-entropy (classification) or mean squared error (regression)."""
    if kind == "classification":
        return F.cross_entropy(out.float(), y)
    return F.mse_loss(out.float(), y.reshape(out.shape).float())


def fit(
    state: LearnerState,
    x: Tensor,
    y: Tensor,
    *,
    train: TrainSpec,
    strategy: Strategy,
    task: int | None = None,
    progress: Callable[[str], None] | None = None,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``state`` in place on ``(x, y)``; see the module docstring.

    ``on_epoch(record)`` is called after each epoch with its losses (the pipeline's
    fault-injection checkpoint hangs there; so could a progress bar).

    ``loss(outputs, targets)`` replaces the default task loss (mean cross-entropy or MSE),
    e.g. to mask the logits of inactive classes (task-incremental heads).
    """
    started = time.perf_counter()
    kind = task_kind(state.arch)
    x, y = _check_data(state, x, y, kind)
    criterion = loss or (lambda out, target: task_loss(out, target, kind))
    device = select_device(train.device)
    update = state.counters.get("updates", 0)
    generator = torch.Generator().manual_seed(derive_seed(train.seed, update))
    amp = train.amp and device.type == "cuda"
    model, optimizer, scheduler = state.model, state.optimizer, state.scheduler

    n_val = int(x.shape[0] * train.val_fraction) if x.shape[0] > 1 else 0
    perm = torch.randperm(x.shape[0], generator=generator)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    x_val, y_val = x[val_idx].to(device), y[val_idx].to(device)
    # on a GPU the training set is copied once, when it fits, rather than a batch at a time from
    # pageable host memory (a copy that waits for the steps before it; bench/gpu.py times both)
    resident = device.type == "cuda" and _fits_on_device(x, y, device)
    x_src, y_src = (x.to(device), y.to(device)) if resident else (x, y)
    train_idx = train_idx.to(x_src.device)

    result = TrainResult(device=str(device))
    best_loss, best_weights, bad_epochs = math.inf, None, 0
    with _seeded(derive_seed(train.seed, update) + 1, device), _on_device(state, device):
        for epoch in range(train.epochs):
            model.train()
            order = train_idx[torch.randperm(train_idx.numel(), generator=generator).to(train_idx.device)]
            # summed on the device: a float() per step would make every step wait for the GPU
            loss_sum, seen = torch.zeros((), device=device), 0
            for start in range(0, order.numel(), train.batch_size):
                idx = order[start : start + train.batch_size]
                xb, yb = x_src[idx], y_src[idx]
                replayed = strategy.replay_batch(strategy.replay_size(idx.numel()))
                if replayed is not None:
                    xr, yr = (_to_device_async(t, device) if resident else t for t in replayed)
                    xb, yb = torch.cat([xb, xr.to(xb.dtype)]), torch.cat([yb, yr.to(yb.dtype)])
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    batch_loss = criterion(model(xb), yb)
                    total = batch_loss + strategy.extra_loss(model, xb) + strategy.penalty(model)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if train.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                optimizer.step()
                scheduler.step()
                state.counters["steps"] = state.counters.get("steps", 0) + 1
                result.steps += 1
                loss_sum += batch_loss.detach().float() * xb.shape[0]
                seen += xb.shape[0]
            train_loss = float(loss_sum) / max(seen, 1)
            val_loss = evaluate_loss(model, x_val, y_val, kind, amp=amp, loss=loss) if n_val else train_loss
            state.counters["epochs"] = state.counters.get("epochs", 0) + 1
            result.epochs.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": state.lr})
            if on_epoch is not None:
                on_epoch(result.epochs[-1])
            if progress is not None:
                progress(
                    f"epoch {epoch + 1}/{train.epochs} train_loss={train_loss:.5g} val_loss={val_loss:.5g} "
                    f"lr={state.lr:.3g}"
                )
            if val_loss < best_loss:
                best_loss, bad_epochs = val_loss, 0
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
                if train.patience > 0 and bad_epochs >= train.patience:
                    result.stopped_early = True
                    break
        if best_weights is not None:
            model.load_state_dict(best_weights)
    strategy.observe(x, y, task)
    state.counters["updates"] = update + 1
    if task is not None:
        state.counters["tasks_seen"] = max(state.counters.get("tasks_seen", 0), task + 1)
    result.best_val_loss = best_loss
    result.duration_s = time.perf_counter() - started
    state.history.append(
        {
            "update": update,
            "task": task,
            "samples": int(x.shape[0]),
            "epochs": len(result.epochs),
            "steps": state.counters["steps"],
            "train_loss": result.epochs[-1]["train_loss"] if result.epochs else math.nan,
            "val_loss": best_loss,
            "lr": state.lr,
            "stopped_early": result.stopped_early,
        }
    )
    del state.history[: -max(1, train.history_window)]  # a rolling window: the full series is in MLflow
    return result


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    kind: str,
    *,
    amp: bool = False,
    batch: int = 1024,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> float:
    """Mean task loss (or ``loss``) of ``model`` on ``(x, y)`` in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, x.shape[0], batch):
        xb, yb = x[start : start + batch].to(device), y[start : start + batch].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb)
            total += float(loss(out, yb) if loss is not None else task_loss(out, yb, kind)) * xb.shape[0]
    return total / max(x.shape[0], 1)


def consolidate(state: LearnerState, strategy: Strategy, x: Tensor, y: Tensor, *, device: str = "auto") -> None:
    """``strategy.consolidate`` on the state's model, with the model on ``device`` for the duration.

    The per-sample Fisher of EWC is the costly part of a task addition and much faster on a GPU
    (bench/RESULTS.md section 5); the Fisher and anchors it leaves on the state are CPU tensors.
    """
    with _on_device(state, select_device(device)):
        strategy.consolidate(state.model, x, y)


# a training set up to this share of the GPU's free memory is copied to it once per fit
RESIDENT_SHARE = 0.25


def _fits_on_device(x: Tensor, y: Tensor, device: torch.device) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return (x.nbytes + y.nbytes) <= RESIDENT_SHARE * free


def _to_device_async(t: Tensor, device: torch.device) -> Tensor:
    """A copy of CPU tensor ``t`` on ``device`` that does not wait for the GPU (staged in pinned memory)."""
    return t.pin_memory().to(device, non_blocking=True)


def _check_data(state: LearnerState, x: Tensor, y: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    arch = state.arch
    if x.shape[0] == 0:
        raise TrainError("no samples to train on")
    if x.shape[0] != y.shape[0]:
        raise TrainError(f"x and y hold different numbers of samples: {x.shape[0]} and {y.shape[0]}")
    if tuple(x.shape[1:]) != (arch.in_channels, arch.length):
        raise TrainError(
            f"inputs of shape {tuple(x.shape[1:])} do not fit the model's ({arch.in_channels}, {arch.length})"
        )
    x = x.float()
    if kind == "classification":
        y = y.long()
        if y.ndim != 1 or int(y.min()) < 0 or int(y.max()) >= arch.out_dim:
            raise TrainError(f"labels must be class indices in [0, {arch.out_dim}) of shape (N,)")
    else:
        y = y.float()
        if y[0].numel() != arch.out_dim:
            raise TrainError(f"targets of shape {tuple(y.shape[1:])} do not fit the horizon {arch.out_dim}")
        y = y.reshape(y.shape[0], arch.out_dim)
    return x, y


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global RNGs (dropout) for the duration, restoring the caller's RNG state after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _on_device(state: LearnerState, device: torch.device) -> Iterator[None]:
    """Model and optimizer moments on ``device`` for the duration; back on the CPU after (also on error)."""
    _move(state, device)
    try:
        yield
    finally:
        _move(state, torch.device("cpu"))


# Adam on a GPU takes its fused kernel (one launch per step instead of a dozen multi-tensor ones);
# bench/gpu.py turns this off to time the step without it
FUSED_ADAM_ON_CUDA = True


def _move(state: LearnerState, device: torch.device) -> None:
    """Model and optimizer state to ``device``; Adam fused there when it is a GPU, as built on the CPU.

    Adam's ``step`` counter stays on the CPU unless Adam is fused (which wants it beside the
    parameters); the saved state never records the fused flag, so files are the same either way.
    """
    state.model.to(device)
    optimizer = state.optimizer
    adam = isinstance(optimizer, torch.optim.Adam)
    fused = adam and FUSED_ADAM_ON_CUDA and device.type == "cuda"
    if adam:
        for group in optimizer.param_groups:
            group["fused"] = True if fused else None
    for values in optimizer.state.values():
        for key, value in values.items():
            if isinstance(value, Tensor):
                values[key] = value.to(device if key != "step" or fused else torch.device("cpu"))
