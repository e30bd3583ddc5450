"""What a saved LearnerState may claim, checked before anything is allocated from it.

A state folder comes from the artifact store, which is writable by more hands than the
pipeline's: :func:`lifelong.learn.state.load_state` treats ``state.json`` as input. Before it
builds a model, reads a tensor file or restores a scheduler, the checks here bound every size
and validate every field:

* **sizes**: ``state.json`` at most :attr:`Limits.max_json_bytes`; the architecture's
  parameter count (counted on PyTorch's ``meta`` device, where a layer has a shape but no
  storage, after every width, depth and length is bounded) at most
  :attr:`Limits.max_parameters`; every tensor file at most what its part can hold for that
  many parameters (weights, Fisher and anchors one float64 per parameter, the optimizer three,
  the replay buffer its capacity times a sample), before it is read;
* **fields**: types and ranges of the counters, the history, the statistics, the task
  names, the replay buffer's metadata, the optimizer's groups and the scheduler's state (the
  keys and types that the scheduler built from the train spec has), and ``trained_through``,
  an ISO date not after ``not_after`` (today, UTC, by default): a state that claims to have
  learned the future would make every later update a silent no-op.

>>> check_trained_through("2012-03-04", not_after=date(2012, 3, 5), where="s")
'2012-03-04'
>>> check_trained_through("2099-01-01", not_after=date(2012, 3, 5), where="s")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lifelong.errors.StateError: s: trained_through 2099-01-01 is after 2012-03-05 (a state cannot have learned ...
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from lifelong.config import ArchitectureSpec
from lifelong.errors import StateError

META_KEYS = frozenset(
    {"format", "torch", "arch", "train", "strategy", "files", "optimizer", "scheduler", "buffer", "counters",
     "history", "stats", "tasks", "trained_through", "extra"}
)  # fmt: skip
REQUIRED_KEYS = frozenset({"format", "arch", "train", "strategy", "files", "optimizer", "scheduler", "counters"})
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as lifelong.data.landing.TASK_NAME
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FLOAT_BYTES = 8
_SLACK_BYTES = 1 << 20  # safetensors header, names, the generator state


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a loaded state may make this process allocate."""

    max_json_bytes: int = 64 << 20
    max_parameters: int = 50_000_000
    max_layers: int = 64
    max_size: int = 1_000_000  # any one width, length, channel count or output size
    max_replay_capacity: int = 1_000_000
    max_buffer_bytes: int = 4 << 30
    max_history: int = 1_000_000
    max_tasks: int = 10_000


LIMITS = Limits()


def default_not_after() -> date:
    """Today in UTC, plus one day for data set time zones ahead of UTC."""
    return datetime.now(UTC).date() + timedelta(days=1)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def check_keys(meta: dict[str, Any], where: str) -> None:
    unknown, missing = sorted(set(meta) - META_KEYS), sorted(REQUIRED_KEYS - set(meta))
    if unknown or missing:
        raise StateError(f"{where}: state.json has unexpected keys {unknown} / lacks {missing}")
    if not isinstance(meta.get("torch", ""), str):
        raise StateError(f"{where}: state.json 'torch' must be a version string")


def check_arch_bounds(arch: ArchitectureSpec, where: str, limits: Limits = LIMITS) -> int:
    """Every size of ``arch`` bounded, then its parameter count (no memory allocated); returns the count."""
    import torch

    from lifelong.learn.models import build_model

    for name in ("channels", "hidden"):
        if len(getattr(arch, name)) > limits.max_layers:
            layers = len(getattr(arch, name))
            raise StateError(f"{where}: architecture.{name} has {layers} layers (at most {limits.max_layers})")
    sizes = {n: getattr(arch, n) for n in ("in_channels", "length", "out_dim", "kernel_size", "pool")}
    sizes.update({f"channels[{i}]": c for i, c in enumerate(arch.channels)})
    sizes.update({f"hidden[{i}]": h for i, h in enumerate(arch.hidden)})
    for name, value in sizes.items():
        if not _int(value) or value > limits.max_size:
            raise StateError(f"{where}: architecture.{name} = {value!r} is out of range (at most {limits.max_size})")
    # the meta device gives every layer its shapes and no storage: a count, not an allocation
    try:
        with torch.device("meta"):
            model = build_model(arch)
    except Exception as exc:  # noqa: BLE001 - ConfigError for an impossible arch, anything torch says
        raise StateError(f"{where}: architecture cannot be built ({exc})") from None
    count = sum(p.numel() for p in model.parameters())
    if count > limits.max_parameters:
        raise StateError(f"{where}: architecture has {count:,} parameters (at most {limits.max_parameters:,}); refused")
    return count


def check_buffer_meta(meta: Any, where: str, limits: Limits = LIMITS) -> None:
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise StateError(f"{where}: buffer metadata must be a mapping")
    capacity, size, seen = meta.get("capacity"), meta.get("size"), meta.get("seen")
    if not _int(capacity) or not 1 <= capacity <= limits.max_replay_capacity:
        raise StateError(f"{where}: replay buffer capacity {capacity!r} out of range (1..{limits.max_replay_capacity})")
    if not _int(size) or not 0 <= size <= capacity or not _int(seen) or seen < size:
        raise StateError(f"{where}: replay buffer size {size!r} / seen {seen!r} inconsistent with capacity {capacity}")
    if meta.get("policy") not in ("reservoir", "class_balanced") or not _int(meta.get("seed")):
        raise StateError(f"{where}: replay buffer policy/seed invalid ({meta.get('policy')!r}, {meta.get('seed')!r})")
    for key in ("class_seen", "stored_per_class"):
        counts = meta.get(key, {})
        if not isinstance(counts, dict) or not all(
            isinstance(k, str) and k.lstrip("-").isdigit() and _int(v) and v >= 0 for k, v in counts.items()
        ):
            raise StateError(f"{where}: replay buffer {key} must map class ids to counts")


def file_bounds(arch: ArchitectureSpec, parameters: int, buffer: Any) -> dict[str, int]:
    """The most bytes each tensor file of a state for ``arch`` can rightly hold."""
    per_param = parameters * _FLOAT_BYTES + _SLACK_BYTES
    bounds = {"weights": per_param, "fisher": per_param, "anchors": per_param, "optimizer": 3 * per_param}
    capacity = buffer["capacity"] if isinstance(buffer, dict) else 0
    sample = (arch.in_channels * arch.length + arch.out_dim + 2) * _FLOAT_BYTES
    bounds["buffer"] = 2 * capacity * sample + _SLACK_BYTES  # twice: room for extra known-future inputs
    return bounds


def check_buffer_tensors(tensors: dict[str, Any], capacity: int, where: str, limits: Limits = LIMITS) -> None:
    """The buffer ``capacity`` samples like the saved ones would take fits :attr:`Limits.max_buffer_bytes`."""
    x, y = tensors.get("x"), tensors.get("y")
    if x is None or y is None or x.ndim < 1 or y.ndim < 1:
        return
    per_sample = x[:1].numel() * x.element_size() + y[:1].numel() * y.element_size() + 8
    if capacity * per_sample > limits.max_buffer_bytes:
        raise StateError(
            f"{where}: a replay buffer of {capacity} samples of {per_sample} bytes exceeds "
            f"{limits.max_buffer_bytes} bytes; refused"
        )


def check_counters(counters: Any, where: str) -> dict[str, int]:
    if not isinstance(counters, dict) or not all(
        isinstance(k, str) and _int(v) and 0 <= v < 2**53 for k, v in counters.items()
    ):
        raise StateError(f"{where}: counters must map names to non-negative integers")
    return dict(counters)


def _json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or _number(value)


def check_history(history: Any, where: str, limits: Limits = LIMITS) -> list[dict[str, Any]]:
    if not isinstance(history, list) or len(history) > limits.max_history:
        raise StateError(f"{where}: history must be a list of at most {limits.max_history} records")
    for record in history:
        if not isinstance(record, dict) or not all(isinstance(k, str) and _json_scalar(v) for k, v in record.items()):
            raise StateError(f"{where}: every history record must map names to numbers or strings")
    return list(history)


def _stats_value(value: Any, depth: int) -> bool:
    if isinstance(value, dict):
        return depth < 4 and all(isinstance(k, str) and _stats_value(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return depth < 4 and all(_stats_value(v, depth + 1) for v in value)
    return value is None or isinstance(value, str) or (_finite(value))


def check_stats(stats: Any, where: str) -> dict[str, Any] | None:
    if stats is None:
        return None
    if not isinstance(stats, dict) or not _stats_value(stats, 0):
        raise StateError(f"{where}: stats must be a mapping of finite numbers and names (at most 4 levels)")
    return stats


def check_tasks(tasks: Any, where: str, limits: Limits = LIMITS) -> list[str]:
    if not isinstance(tasks, list) or len(tasks) > limits.max_tasks:
        raise StateError(f"{where}: tasks must be a list of at most {limits.max_tasks} names")
    for task in tasks:
        if not isinstance(task, str) or not TASK_NAME.fullmatch(task):
            raise StateError(f"{where}: task name {task!r} is not a valid task name")
    return list(tasks)


def check_trained_through(value: Any, *, not_after: date, where: str) -> str | None:
    """``value`` is None or an ISO date (``YYYY-MM-DD``) not after ``not_after``; returns it."""
    if value is None:
        return None
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        raise StateError(f"{where}: trained_through {value!r} is not a date (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise StateError(f"{where}: trained_through {value!r} is not a date (YYYY-MM-DD)") from None
    if day > not_after:
        raise StateError(
            f"{where}: trained_through {value} is after {not_after} (a state cannot have learned the future; refused)"
        )
    return value


def _same_kind(expected: Any, value: Any) -> bool:
    """``value`` has the JSON type of ``expected`` (an int where a float is expected is fine; numbers finite)."""
    if isinstance(expected, bool) or expected is None:
        return type(value) is type(expected)
    if isinstance(expected, int):
        return _int(value)
    if isinstance(expected, float):
        return _finite(value)
    if isinstance(expected, str):
        return isinstance(value, str)
    if isinstance(expected, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(expected)
            and all(_same_kind(e, v) for e, v in zip(expected, value, strict=True))
        )
    return False


def check_scheduler(saved: Any, built: dict[str, Any], where: str) -> dict[str, Any]:
    """The saved scheduler state has the keys and value types of the scheduler built from the train spec.

    Keys the built scheduler has and the saved state lacks keep the built values (a state
    written by an older PyTorch); keys it does not have are refused, as is any value of
    another type, a non-finite number or a negative step count.
    """
    if not isinstance(saved, dict):
        raise StateError(f"{where}: scheduler state must be a mapping")
    unknown = sorted(set(saved) - set(built))
    if unknown:
        raise StateError(f"{where}: scheduler state has unexpected keys {unknown} (expected {sorted(built)})")
    for key, value in saved.items():
        if not _same_kind(built[key], value):
            raise StateError(f"{where}: scheduler state {key}={value!r} is not of the type the scheduler expects")
    for key in ("last_epoch", "_step_count"):
        if key in saved and not -1 <= saved[key] < 2**53:
            raise StateError(f"{where}: scheduler state {key}={saved[key]!r} is out of range")
    return {**built, **saved}


def check_optimizer_meta(meta: Any, built: dict[str, Any], where: str) -> None:
    """The optimizer's JSON: its type name, one group per built group with the same parameter
    indices and no keys the built group lacks, and scalars named ``"<index>.<key>"`` with finite numbers."""
    if not isinstance(meta, dict) or set(meta) != {"type", "param_groups", "scalars"}:
        raise StateError(f"{where}: optimizer metadata must hold type, param_groups and scalars")
    groups, built_groups = meta["param_groups"], built["param_groups"]
    if not isinstance(meta["type"], str) or not isinstance(groups, list) or len(groups) != len(built_groups):
        raise StateError(f"{where}: optimizer has {len(groups) if isinstance(groups, list) else '?'} parameter "
                         f"groups, the model needs {len(built_groups)}")  # fmt: skip
    for group, expected in zip(groups, built_groups, strict=True):
        # a group saved by an older PyTorch may lack a newer setting (load_state_dict fills in its default)
        if not isinstance(group, dict) or "params" not in group or not set(group) <= set(expected):
            raise StateError(f"{where}: an optimizer parameter group has other keys than {sorted(expected)}")
        if group["params"] != expected["params"]:
            raise StateError(f"{where}: an optimizer parameter group names other parameters")
        for key, value in group.items():
            if key != "params" and not (_json_scalar(value) or _same_kind(expected[key], value)):
                raise StateError(f"{where}: optimizer setting {key}={value!r} is not a plain value")
            if _number(value) and not math.isfinite(value):
                raise StateError(f"{where}: optimizer setting {key}={value!r} is not finite")
    scalars = meta["scalars"]
    if not isinstance(scalars, dict) or not all(
        isinstance(k, str) and re.fullmatch(r"\d{1,6}\.[A-Za-z_]{1,40}", k) and _finite(v) for k, v in scalars.items()
    ):
        raise StateError(f"{where}: optimizer scalars must be finite numbers named '<index>.<key>'")
