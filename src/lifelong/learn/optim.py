"""Optimizer and learning-rate schedule built from a :class:`~lifelong.config.TrainSpec`.

The schedule decays the learning rate by ``lr_decay`` at every optimizer step, down to
``lr_floor``, in closed form from the step count. Its whole state is that count (plus the
base rates), so it keeps decaying across daily updates once its state is restored:

>>> import torch
>>> from lifelong.config import TrainSpec
>>> net = torch.nn.Linear(2, 1)
>>> opt = build_optimizer(net, TrainSpec(lr=0.1, lr_decay=0.5, lr_floor=0.02))
>>> sched = build_scheduler(opt, TrainSpec(lr=0.1, lr_decay=0.5, lr_floor=0.02))
>>> rates = []
>>> for _ in range(4):
...     opt.step()
...     sched.step()
...     rates.append(round(sched.get_last_lr()[0], 4))
>>> rates
[0.05, 0.025, 0.02, 0.02]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from lifelong.config import ConfigError, TrainSpec


class ExponentialFloorLR(LRScheduler):
    """``lr = max(base_lr * gamma ** step, floor)``, stepped once per optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, gamma: float, floor: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        self.floor = floor
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return self._get_closed_form_lr()

    def _get_closed_form_lr(self) -> list[float]:
        return [max(base * self.gamma**self.last_epoch, min(self.floor, base)) for base in self.base_lrs]


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    """Adam (default) or SGD over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    raise ConfigError(f"train.optimizer: must be adam or sgd, got {train.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSpec) -> ExponentialFloorLR:
    if not 0.0 < train.lr_decay <= 1.0:
        raise ConfigError(f"train.lr_decay: must be in (0, 1], got {train.lr_decay}")
    return ExponentialFloorLR(optimizer, gamma=train.lr_decay, floor=train.lr_floor)
