"""Architectures built from an :class:`~lifelong.config.ArchitectureSpec`.

Every model takes inputs of shape ``(N, in_channels, length)``.

* ``cnn_forecaster``: the 1-D CNN forecaster of the seed article. For each entry of
  ``channels``: ``Conv1d -> ReLU -> MaxPool1d``; then flatten and one ``Linear`` head with
  ``out_dim`` (= horizon) outputs.
* ``cnn_classifier``: the same convolutional stack, then a ``hidden`` MLP (ReLU, dropout)
  and a ``Linear`` to ``out_dim`` class logits.
* ``mlp_classifier``: flatten, ``hidden`` layers (ReLU, dropout), ``Linear`` to the logits.
* ``cnn_dayahead``: a day-ahead forecaster over the samples of
  :func:`lifelong.data.windows.forecast_samples`: the first ``length - out_dim`` positions are
  the history, the last ``out_dim`` the steps to forecast (their lags, calendar, known-future
  covariates). The convolutional stack over the history, flattened, gives a summary of width
  ``hidden[0]``; each forecast step gets ``ReLU(conv(x_steps) + summary + position_step)`` (a
  ``kernel_size`` convolution over the forecast steps' channels: a step sees its neighbours), then
  the further ``hidden`` layers and one output, the same weights at every step (1x1 convolutions).
* ``cnn_dayahead_residual``: the same, predicting the correction to channel 1 at each step (the
  seasonal-naive lag, the weekly one by default).

>>> import torch
>>> from lifelong.config import ArchitectureSpec
>>> spec = ArchitectureSpec(type="cnn_forecaster", in_channels=3, length=96, out_dim=48, channels=(16,))
>>> build_model(spec)(torch.zeros(5, 3, 96)).shape
torch.Size([5, 48])
>>> task_kind(spec)
'regression'
>>> day = ArchitectureSpec(type="cnn_dayahead_residual", in_channels=10, length=146, out_dim=50, hidden=(32, 32))
>>> build_model(day)(torch.zeros(5, 10, 146)).shape
torch.Size([5, 50])
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn

from lifelong.config import ArchitectureSpec, ConfigError

TaskKind = Literal["regression", "classification"]
FORECASTERS = ("cnn_forecaster", "cnn_dayahead", "cnn_dayahead_residual")


def task_kind(spec: ArchitectureSpec) -> TaskKind:
    """``regression`` for forecasters, ``classification`` for classifiers."""
    return "regression" if spec.type in FORECASTERS else "classification"


class DayAhead(nn.Module):
    """History summary + a per-step head over the forecast steps (see the module docstring)."""

    def __init__(self, spec: ArchitectureSpec, residual: bool) -> None:
        super().__init__()
        self.past, self.residual = spec.length - spec.out_dim, residual
        width = spec.hidden[0] if spec.hidden else 32
        features, length = _conv_stack(dataclasses.replace(spec, length=self.past))
        self.summary = nn.Sequential(*features, nn.Flatten(), nn.Linear(spec.channels[-1] * length, width))
        # over the forecast steps too: a step sees its neighbours' covariates (the temperature an hour before)
        self.step = nn.Conv1d(spec.in_channels, width, spec.kernel_size, padding=spec.kernel_size // 2)
        self.position = nn.Parameter(torch.zeros(width, spec.out_dim))
        layers: list[nn.Module] = [nn.ReLU()]
        for size in spec.hidden[1:]:
            if spec.dropout > 0:
                layers.append(nn.Dropout(spec.dropout))
            layers += [nn.Conv1d(width, size, 1), nn.ReLU()]
            width = size
        self.head = nn.Sequential(*layers, nn.Conv1d(width, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        history, future = x[:, :, : self.past], x[:, :, self.past :]
        out = self.head(self.step(future) + self.summary(history).unsqueeze(-1) + self.position).squeeze(1)
        return out + future[:, 1] if self.residual else out


def build_model(spec: ArchitectureSpec) -> nn.Module:
    """A freshly initialised model (seed the global RNG first for reproducible weights)."""
    _check(spec)
    if spec.type == "mlp_classifier":
        return nn.Sequential(nn.Flatten(), *_mlp(spec.in_channels * spec.length, spec.hidden, spec.out_dim, spec))
    if spec.type in ("cnn_dayahead", "cnn_dayahead_residual"):
        return DayAhead(spec, residual=spec.type == "cnn_dayahead_residual")
    features, length = _conv_stack(spec)
    flat = spec.channels[-1] * length
    if spec.type == "cnn_forecaster":
        return nn.Sequential(*features, nn.Flatten(), nn.Linear(flat, spec.out_dim))
    return nn.Sequential(*features, nn.Flatten(), *_mlp(flat, spec.hidden, spec.out_dim, spec))


def _check(spec: ArchitectureSpec) -> None:
    if spec.type not in (*FORECASTERS, "cnn_classifier", "mlp_classifier"):
        raise ConfigError(f"architecture.type: unknown model type {spec.type!r}")
    for name in ("in_channels", "length", "out_dim", "kernel_size", "pool"):
        if getattr(spec, name) < 1:
            raise ConfigError(f"architecture.{name}: must be >= 1, got {getattr(spec, name)}")
    if spec.type != "mlp_classifier" and not spec.channels:
        raise ConfigError("architecture.channels: a CNN needs at least one convolution")
    if spec.type in FORECASTERS[1:] and spec.length <= spec.out_dim:
        raise ConfigError(f"architecture.length: {spec.length} leaves no history before the {spec.out_dim} steps")
    if any(c < 1 for c in (*spec.channels, *spec.hidden)):
        raise ConfigError("architecture: channels and hidden sizes must be >= 1")
    if not 0.0 <= spec.dropout < 1.0:
        raise ConfigError(f"architecture.dropout: must be in [0, 1), got {spec.dropout}")


def _conv_stack(spec: ArchitectureSpec) -> tuple[list[nn.Module], int]:
    """``Conv1d -> ReLU -> MaxPool1d`` per channel entry ('same'-style padding), and the output length."""
    layers: list[nn.Module] = []
    length, previous = spec.length, spec.in_channels
    padding = spec.kernel_size // 2
    for width in spec.channels:
        layers += [nn.Conv1d(previous, width, spec.kernel_size, padding=padding), nn.ReLU()]
        length = length + 2 * padding - spec.kernel_size + 1
        if spec.pool > 1:
            layers.append(nn.MaxPool1d(spec.pool))
            length //= spec.pool
        if length < 1:
            raise ConfigError(
                f"architecture: length {spec.length} is too short for {len(spec.channels)} convolution(s) "
                f"with pool {spec.pool}"
            )
        previous = width
    return layers, length


def _mlp(inputs: int, hidden: tuple[int, ...], outputs: int, spec: ArchitectureSpec) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        inputs = width
    layers.append(nn.Linear(inputs, outputs))
    return layers
