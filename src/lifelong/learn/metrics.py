"""Continual-learning and forecast metrics.

The accuracy matrix ``R`` has ``R[i][j]`` = accuracy on task ``j`` after learning task ``i``
(Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018). With ``T`` tasks learned:

* average accuracy ``ACC = mean_j R[T-1][j]``;
* backward transfer ``BWT = mean_{j<T-1} (R[T-1][j] - R[j][j])`` (negative: forgetting);
* forward transfer ``FWT = mean_{j>0} (R[j-1][j] - b[j])`` with ``b[j]`` the accuracy of a
  model that never learned anything (e.g. at initialisation) on task ``j``;
* forgetting ``F = mean_{j<T-1} max_{j<=l<T-1} (R[l][j] - R[T-1][j])``.

>>> R = [[0.9, 0.1, 0.2],
...      [0.7, 0.8, 0.3],
...      [0.6, 0.7, 0.9]]
>>> round(average_accuracy(R), 4)
0.7333
>>> round(backward_transfer(R), 4)   # ((0.6 - 0.9) + (0.7 - 0.8)) / 2
-0.2
>>> round(forgetting(R), 4)          # ((0.9 - 0.6) + (0.8 - 0.7)) / 2
0.2
>>> round(forward_transfer(R, [0.1, 0.1, 0.1]), 4)  # ((0.1 - 0.1) + (0.3 - 0.1)) / 2
0.1

Rows can be filled as tasks arrive; :func:`new_matrix` starts one of NaNs:

>>> M = new_matrix(2)
>>> M[0][0] = 1.0
>>> summary(M, upto=0)["acc"]
1.0

Forecast errors:

>>> import torch
>>> f, y = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0])
>>> mae(f, y), round(rmse(f, y), 4), round(smape(f, y), 2)
(1.0, 1.291, 35.56)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

Matrix = Sequence[Sequence[float]]


def new_matrix(tasks: int) -> list[list[float]]:
    """A ``tasks x tasks`` accuracy matrix full of NaN (not evaluated yet)."""
    return [[math.nan] * tasks for _ in range(tasks)]


def _last(R: Matrix, upto: int | None) -> int:
    last = len(R) - 1 if upto is None else upto
    if last < 0 or last >= len(R):
        raise ValueError(f"no row {last} in an accuracy matrix of {len(R)} rows")
    return last


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def average_accuracy(R: Matrix, upto: int | None = None) -> float:
    """Mean accuracy over tasks ``0..upto`` after learning task ``upto`` (default: the last)."""
    t = _last(R, upto)
    return _mean([R[t][j] for j in range(t + 1)])


def backward_transfer(R: Matrix, upto: int | None = None) -> float:
    """Mean change on earlier tasks between just after learning them and after task ``upto``."""
    t = _last(R, upto)
    return _mean([R[t][j] - R[j][j] for j in range(t)])


def forward_transfer(R: Matrix, baseline: Sequence[float], upto: int | None = None) -> float:
    """Mean accuracy on task ``j`` before learning it, above the untrained ``baseline[j]``."""
    t = _last(R, upto)
    return _mean([R[j - 1][j] - baseline[j] for j in range(1, t + 1)])


def forgetting(R: Matrix, upto: int | None = None) -> float:
    """Mean drop from the best accuracy ever reached on each earlier task (max-based)."""
    t = _last(R, upto)
    return _mean([max(R[i][j] for i in range(j, t)) - R[t][j] for j in range(t)])


def summary(R: Matrix, baseline: Sequence[float] | None = None, upto: int | None = None) -> dict[str, float]:
    """ACC, BWT, forgetting (and FWT with a baseline) as a JSON-ready dict."""
    out = {"acc": average_accuracy(R, upto), "bwt": backward_transfer(R, upto), "forgetting": forgetting(R, upto)}
    if baseline is not None:
        out["fwt"] = forward_transfer(R, baseline, upto)
    return out


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Fraction of samples whose arg-max logit is the label."""
    if y.numel() == 0:
        return math.nan
    return float((logits.argmax(-1) == y.to(logits.device)).float().mean())


def mae(forecast: Tensor, target: Tensor) -> float:
    """Mean absolute error."""
    return float((forecast.double() - target.double().reshape(forecast.shape)).abs().mean())


def rmse(forecast: Tensor, target: Tensor) -> float:
    """Root mean squared error."""
    return float((forecast.double() - target.double().reshape(forecast.shape)).pow(2).mean().sqrt())


def smape(forecast: Tensor, target: Tensor) -> float:
    """Symmetric mean absolute percentage error in percent (0..200); 0/0 terms count as 0."""
    f, y = forecast.double(), target.double().reshape(forecast.shape)
    denom = f.abs() + y.abs()
    terms = torch.where(denom > 0, 2 * (f - y).abs() / denom.clamp_min(1e-300), torch.zeros_like(denom))
    return float(100 * terms.mean())


def forecast_errors(forecast: Tensor, target: Tensor) -> dict[str, float]:
    """MAE, RMSE and sMAPE of ``forecast`` against ``target`` (in the units they are given in)."""
    return {"mae": mae(forecast, target), "rmse": rmse(forecast, target), "smape": smape(forecast, target)}


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, *, batch: int = 1024) -> Tensor:
    """Model outputs (logits or forecasts) for ``x``, in eval mode, returned on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return torch.cat([model(x[i : i + batch].to(device)).float().cpu() for i in range(0, x.shape[0], batch)])
    finally:
        model.train(was_training)


def forecast_in_units(model: nn.Module, x: Tensor, y: Tensor, scale: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """``model``'s forecasts for ``x`` and the targets ``y``, both taken back to the target's units.

    ``scale`` is the ``(mean, std)`` the target was normalised with.
    """
    mean, std = scale
    return predict(model, x) * std + mean, y.reshape(x.shape[0], -1) * std + mean


def model_forecast_errors(model: nn.Module, x: Tensor, y: Tensor, scale: tuple[float, float]) -> dict[str, float]:
    """:func:`forecast_errors` of ``model`` on ``(x, y)`` in the target's units."""
    return forecast_errors(*forecast_in_units(model, x, y, scale))


def model_accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Accuracy of a classifier on ``(x, y)``."""
    return accuracy(predict(model, x), y)


def majority_accuracy(train_labels: Tensor, y: Tensor) -> float:
    """The classifiers' naive baseline: the accuracy on ``y`` of always answering the most frequent
    class of ``train_labels`` (ties: the smallest label). A model is only as good as this.

    >>> majority_accuracy(torch.tensor([1, 1, 0]), torch.tensor([1, 0, 1, 1]))
    0.75
    """
    if train_labels.numel() == 0 or y.numel() == 0:
        return float("nan")
    majority = torch.bincount(train_labels.long().flatten()).argmax()
    return float((y.long() == majority).float().mean())


# --------------------------------------------------------------------------- naive baselines and scaled errors


def persistence(history: Tensor, horizon: int) -> Tensor:
    """The last value of each series repeated ``horizon`` times: ``(..., T) -> (..., horizon)``.

    >>> persistence(torch.tensor([1.0, 2.0, 3.0]), 2).tolist()
    [3.0, 3.0]
    """
    return history[..., -1:].expand(*history.shape[:-1], horizon).clone()


def seasonal_naive(history: Tensor, period: int, horizon: int) -> Tensor:
    """Each target step copies the step ``period`` before it (repeating the last period) on a regular grid.

    On a series with daylight saving, the calendar lags of :mod:`lifelong.data.features` give the same
    forecast by local clock time (``lifelong.data.windows.day_ahead_naive``).

    >>> seasonal_naive(torch.arange(6.0), period=3, horizon=4).tolist()  # last period 3, 4, 5
    [3.0, 4.0, 5.0, 3.0]
    """
    if history.shape[-1] < period:
        raise ValueError(f"a seasonal naive of period {period} needs {period} steps of history")
    last = history[..., -period:]
    reps = -(-horizon // period)
    return last.repeat(*([1] * (history.ndim - 1)), reps)[..., :horizon].clone()


def mape(forecast: Tensor, target: Tensor) -> float:
    """Mean absolute percentage error in percent (targets must be nonzero, as demand is)."""
    f, y = forecast.double(), target.double().reshape(forecast.shape)
    return float(100 * ((f - y).abs() / y.abs()).mean())


def mase(forecast: Tensor, target: Tensor, naive: Tensor) -> float:
    """MAE of ``forecast`` over the MAE of ``naive`` on the same targets (< 1: better than the naive).

    >>> y = torch.tensor([10.0, 20.0])
    >>> mase(torch.tensor([11.0, 19.0]), y, naive=torch.tensor([14.0, 16.0]))
    0.25
    """
    return mae(forecast, target) / mae(naive, target)


def forecast_scores(forecast: Tensor, target: Tensor, naive: dict[str, Tensor], scale: str = "weekly_naive") -> dict:
    """One evaluation record: the model's MAE, RMSE, MAPE and MASE (scaled by ``naive[scale]``) beside
    each naive forecast's MAE and MAPE, all on the same targets (in the data's units).

    >>> y = torch.tensor([100.0, 200.0])
    >>> scores = forecast_scores(torch.tensor([110.0, 190.0]), y, {"weekly_naive": torch.tensor([80.0, 240.0])})
    >>> scores["mae"], round(scores["mape"], 6), scores["weekly_naive_mae"], round(scores["mase"], 4)
    (10.0, 7.5, 30.0, 0.3333)
    """
    out = {"mae": mae(forecast, target), "rmse": rmse(forecast, target), "mape": mape(forecast, target)}
    for name, values in naive.items():
        out[f"{name}_mae"] = mae(values, target)
        out[f"{name}_mape"] = mape(values, target)
    out["mase"] = out["mae"] / out[f"{scale}_mae"] if out[f"{scale}_mae"] > 0 else math.nan
    out["steps"] = int(target.numel())
    return out
