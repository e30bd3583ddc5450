"""Continual-learning strategies as small objects that one training loop calls.

Each part implements the same five methods (:class:`Strategy`); :func:`make_strategy`
composes the parts a strategy name asks for. The training loop (``train.fit``) calls

* ``replay_batch(n)`` to mix stored samples into each mini-batch,
* ``penalty(model)`` and ``extra_loss(model, x)`` and adds both to the task loss,
* ``observe(x, y, task)`` once training on the new data is over (fills the buffer).

``consolidate(model, x, y)`` is called by whoever decides that a task is finished (the
task-addition DAG before learning a new task, or the daily update after it trains):

* EWC: ``F <- gamma * F + F_new`` with ``F_new`` the exact per-sample Fisher on ``(x, y)``
  and the anchors set to the current parameters. The penalty is
  ``lambda / 2 * sum_i F_i (theta_i - anchor_i) ** 2``. Memory: one Fisher and one anchor
  per parameter, however many tasks pass. ``ewc`` keeps the Fisher of the last task only
  (``gamma = 0``); ``online_ewc`` and the EWC part of ``ewc+replay`` use ``spec.gamma``.

  ``make_strategy(..., per_task_anchors=True)`` gives instead the EWC of Kirkpatrick et al.
  2017 (and of the reference code of the continual-learning benchmarks): one penalty per task,
  each anchored at the parameters that task ended with. Their sum is again one quadratic
  (``sum_t F_t (theta - a_t)**2 = F (theta - anchor)**2 + const`` with ``F = sum_t F_t`` and
  ``anchor`` the Fisher-weighted mean of the ``a_t``), so it fits the same two tensors and trains
  identically (same gradient; the penalty's value differs by that constant). It is there for the
  benchmarks: on permuted and split MNIST (bench/RESULTS.md, section 4) it is no better on
  average than online EWC, so no strategy name selects it.
* LwF: the anchors become the teacher; ``extra_loss`` distils the teacher's outputs with a
  temperature (KL on softened class probabilities, scaled by ``T**2``) or, for regression,
  the MSE to the teacher's predictions, weighted by ``lwf_alpha``.

All persistent pieces (Fisher, anchors, buffer, counters) live on the
:class:`~lifelong.learn.state.LearnerState`, so saving the state saves the strategy.

>>> import torch
>>> from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec
>>> from lifelong.learn.state import LearnerState
>>> arch = ArchitectureSpec(type="mlp_classifier", length=4, out_dim=2, hidden=(3,))
>>> spec = StrategySpec(name="online_ewc", ewc_lambda=2.0, gamma=0.5)
>>> state = LearnerState.new(arch, TrainSpec(), spec)
>>> ewc = make_strategy(spec, "classification", state)
>>> float(ewc.penalty(state.model))  # nothing consolidated yet
0.0
>>> x, y = torch.randn(16, 1, 4), torch.randint(0, 2, (16,))
>>> ewc.consolidate(state.model, x, y)
>>> float(ewc.penalty(state.model).detach())  # at the anchors
0.0
>>> with torch.no_grad():
...     _ = [p.add_(0.1) for p in state.model.parameters()]
>>> expected = sum((f * 0.01).sum() for f in state.fisher.values())  # lambda/2 * sum F * 0.1**2
>>> torch.allclose(ewc.penalty(state.model), expected)
True
"""

from __future__ import annotations

import copy
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lifelong.config import STRATEGIES, ConfigError, StrategySpec
from lifelong.learn.fisher import per_sample_fisher
from lifelong.learn.state import LearnerState

TaskKind = Literal["regression", "classification"]


class Strategy(Protocol):
    """What :func:`lifelong.learn.train.fit` calls on a strategy, once per step or per fit."""

    name: str

    def replay_size(self, batch: int) -> int: ...

    def penalty(self, model: nn.Module) -> Tensor: ...

    def extra_loss(self, model: nn.Module, x: Tensor) -> Tensor: ...

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor] | None: ...

    def observe(self, x: Tensor, y: Tensor, task: int | None) -> None: ...

    def consolidate(self, model: nn.Module, x: Tensor, y: Tensor) -> None: ...


class Part:
    """A strategy part that does nothing: EWC, LwF and Replay override what they use."""

    name = "naive"

    def replay_size(self, batch: int) -> int:
        return 0

    def penalty(self, model: nn.Module) -> Tensor:
        return _zero(model)

    def extra_loss(self, model: nn.Module, x: Tensor) -> Tensor:
        return _zero(model)

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor] | None:
        return None

    def observe(self, x: Tensor, y: Tensor, task: int | None) -> None:
        return None

    def consolidate(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        return None


def _zero(model: nn.Module) -> Tensor:
    return torch.zeros((), device=next(model.parameters()).device)


def _on(tensors: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in tensors.items()}


class _QuadraticPenalty(torch.autograd.Function):
    """``lambda / 2 * sum_i F_i (theta_i - anchor_i) ** 2`` and its gradient ``lambda F (theta - anchor)``.

    The same value and gradient as writing the sum out for autograd, in a few multi-tensor
    (``torch._foreach_*``) operations rather than five per parameter forwards and as many backwards:
    a handful of kernel launches per step rather than dozens on a GPU (bench/RESULTS.md section 5
    compares the two).
    """

    @staticmethod
    def forward(ctx, lam: float, fisher: list[Tensor], anchors: list[Tensor], *params: Tensor) -> Tensor:  # type: ignore[override]
        diffs = torch._foreach_sub(params, anchors)
        grads = torch._foreach_mul(diffs, fisher)  # F (theta - anchor)
        value = torch.stack([torch.vdot(d.flatten(), g.flatten()) for d, g in zip(diffs, grads, strict=True)]).sum()
        torch._foreach_mul_(grads, lam)
        ctx.save_for_backward(*grads)
        return 0.5 * lam * value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        return (None, None, None, *torch._foreach_mul(ctx.saved_tensors, grad_output))


class EWC(Part):
    """Elastic weight consolidation with the summed Fisher and one anchor per parameter on ``state``.

    ``per_task_anchors``: the anchor is the Fisher-weighted mean of the parameters each task ended
    with (one penalty per task, as in Kirkpatrick et al.); otherwise the parameters at the last
    consolidation (online EWC).
    """

    name = "ewc"

    def __init__(
        self, spec: StrategySpec, task: TaskKind, state: LearnerState, gamma: float, per_task_anchors: bool = False
    ) -> None:
        self.spec, self.task, self.state, self.gamma = spec, task, state, gamma
        self.per_task_anchors = per_task_anchors
        self._cache: tuple[tuple[int, torch.device], dict[str, Tensor], dict[str, Tensor]] | None = None

    def _tensors(self, model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        assert self.state.fisher is not None and self.state.anchors is not None
        key = (self.state.counters.get("consolidations", 0), next(model.parameters()).device)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, _on(self.state.fisher, model), _on(self.state.anchors, model))
        return self._cache[1], self._cache[2]

    def penalty(self, model: nn.Module) -> Tensor:
        if self.state.fisher is None or self.state.anchors is None:
            return _zero(model)
        fisher, anchors = self._tensors(model)
        named = [(name, p) for name, p in model.named_parameters() if name in fisher]
        return _QuadraticPenalty.apply(
            self.spec.ewc_lambda, [fisher[n] for n, _ in named], [anchors[n] for n, _ in named], *(p for _, p in named)
        )

    def consolidate(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        x, y = _subsample(x, y, self.spec.fisher_samples, seed=self.state.counters.get("consolidations", 0))
        new = per_sample_fisher(model, x, y, task=self.task, variant=self.spec.fisher_variant)
        new = {k: v.detach().cpu() for k, v in new.items()}
        current = _snapshot(model)
        old_fisher, old_anchors = self.state.fisher, self.state.anchors
        if old_fisher is None or old_anchors is None or self.gamma == 0:
            self.state.fisher, self.state.anchors = new, current
        else:
            kept = {k: self.gamma * old_fisher[k] for k in new}
            self.state.fisher = {k: kept[k] + new[k] for k in new}
            if self.per_task_anchors:
                self.state.anchors = {k: _weighted_mean(kept[k], old_anchors[k], new[k], current[k]) for k in new}
            else:
                self.state.anchors = current
        self._cache = None


class LwF(Part):
    """Learning without Forgetting: distil the outputs of the model as it was at the last consolidation."""

    name = "lwf"

    def __init__(self, spec: StrategySpec, task: TaskKind, state: LearnerState) -> None:
        self.spec, self.task, self.state = spec, task, state
        self._teacher: tuple[tuple[int, torch.device], nn.Module] | None = None

    def _teacher_for(self, model: nn.Module) -> nn.Module:
        assert self.state.anchors is not None
        key = (self.state.counters.get("consolidations", 0), next(model.parameters()).device)
        if self._teacher is None or self._teacher[0] != key:
            teacher = copy.deepcopy(model)
            teacher.load_state_dict(_on(self.state.anchors, model), strict=False)
            teacher.eval().requires_grad_(False)
            self._teacher = (key, teacher)
        return self._teacher[1]

    def extra_loss(self, model: nn.Module, x: Tensor) -> Tensor:
        if self.state.anchors is None or self.spec.lwf_alpha == 0:
            return _zero(model)
        with torch.no_grad():
            target = self._teacher_for(model)(x).float()
        out = model(x).float()
        if self.task == "regression":
            return self.spec.lwf_alpha * F.mse_loss(out, target)
        t = self.spec.lwf_temperature
        kl = F.kl_div(F.log_softmax(out / t, -1), F.log_softmax(target / t, -1), log_target=True, reduction="batchmean")
        return self.spec.lwf_alpha * t * t * kl

    def consolidate(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        self.state.anchors = _snapshot(model)
        self._teacher = None


class Replay(Part):
    """Experience replay from ``state.buffer``."""

    name = "replay"

    def __init__(self, spec: StrategySpec, state: LearnerState) -> None:
        if state.buffer is None:
            raise ConfigError(f"strategy {spec.name!r} replays but the learner state has no replay buffer")
        self.state = state

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor] | None:
        buffer = self.state.buffer
        if buffer is None or n <= 0 or len(buffer) == 0:
            return None
        return buffer.sample(n)

    def observe(self, x: Tensor, y: Tensor, task: int | None) -> None:
        assert self.state.buffer is not None
        self.state.buffer.add(x, y, task)


class Composite(Part):
    """The parts of a strategy, called in order; counts consolidations on the state."""

    def __init__(self, name: str, parts: list[EWC | LwF | Replay], state: LearnerState, replay_ratio: float) -> None:
        self.name, self.parts, self.state = name, parts, state
        self.replay_ratio = replay_ratio

    def replay_size(self, batch: int) -> int:
        """Replayed samples to add to ``batch`` new ones so they make ``replay_ratio`` of the mixed batch."""
        if not any(isinstance(p, Replay) for p in self.parts) or self.replay_ratio <= 0:
            return 0
        return max(1, round(batch * self.replay_ratio / (1.0 - self.replay_ratio)))

    def penalty(self, model: nn.Module) -> Tensor:
        return sum((p.penalty(model) for p in self.parts), _zero(model))

    def extra_loss(self, model: nn.Module, x: Tensor) -> Tensor:
        return sum((p.extra_loss(model, x) for p in self.parts), _zero(model))

    def replay_batch(self, n: int) -> tuple[Tensor, Tensor] | None:
        for part in self.parts:
            batch = part.replay_batch(n)
            if batch is not None:
                return batch
        return None

    def observe(self, x: Tensor, y: Tensor, task: int | None) -> None:
        for part in self.parts:
            part.observe(x, y, task)

    def consolidate(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        for part in self.parts:
            part.consolidate(model, x, y)
        self.state.counters["consolidations"] = self.state.counters.get("consolidations", 0) + 1


def make_strategy(
    spec: StrategySpec, task: TaskKind, state: LearnerState, *, per_task_anchors: bool = False
) -> Composite:
    """The strategy named by ``spec.name`` for a ``task`` ("classification" or "regression").

    ``per_task_anchors``: its EWC part keeps one penalty per task (see the module docstring) and
    weighs earlier tasks by ``spec.gamma`` (for ``ewc`` too).
    """
    if spec.name not in STRATEGIES:
        raise ConfigError(f"strategy.name: must be one of {', '.join(STRATEGIES)}, got {spec.name!r}")
    if task not in ("classification", "regression"):
        raise ConfigError(f"task must be classification or regression, got {task!r}")
    if not 0.0 <= spec.replay_ratio < 1.0:
        raise ConfigError(f"strategy.replay_ratio: must be in [0, 1), got {spec.replay_ratio}")
    parts: list[EWC | LwF | Replay] = []
    if spec.name == "ewc":
        gamma = spec.gamma if per_task_anchors else 0.0
        parts.append(EWC(spec, task, state, gamma=gamma, per_task_anchors=per_task_anchors))
    elif spec.name in ("online_ewc", "ewc+replay"):
        parts.append(EWC(spec, task, state, gamma=spec.gamma, per_task_anchors=per_task_anchors))
    if spec.name.startswith("lwf"):
        parts.append(LwF(spec, task, state))
    if spec.name.endswith("replay"):
        parts.append(Replay(spec, state))
    return Composite(spec.name, parts, state, spec.replay_ratio)


def _weighted_mean(w_old: Tensor, a_old: Tensor, w_new: Tensor, a_new: Tensor) -> Tensor:
    """``(w_old * a_old + w_new * a_new) / (w_old + w_new)``; ``a_new`` where both weights are 0."""
    total = w_old + w_new
    mean = (w_old * a_old + w_new * a_new) / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, mean, a_new)


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def _subsample(x: Tensor, y: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """At most ``n`` samples, chosen reproducibly (a fixed generator per consolidation)."""
    if n <= 0 or x.shape[0] <= n:
        return x, y
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx], y[idx]
