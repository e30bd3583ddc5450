"""LearnerState: everything needed to continue learning, saved as safetensors + JSON.

A saved state is a folder of :data:`STATE_FILES`:

* ``weights.safetensors``: the model's ``state_dict``;
* ``optimizer.safetensors``: the optimizer's per-parameter tensors, flattened to
  ``"{param_index}.{key}"`` (its ``param_groups`` and any non-tensor values go to JSON);
* ``fisher.safetensors`` / ``anchors.safetensors``: the online Fisher and the parameters at
  the last consolidation (only when present);
* ``buffer.safetensors``: the replay samples and the buffer's generator state (only when present);
* ``state.json``, written **last**: format version, the arch/train/strategy specs, the scheduler
  state, counters, metric history, the normalisation statistics, the tasks learned, the last day
  trained on, caller extras, the buffer's metadata, and the sha256 of every tensor file it
  belongs with.

Writing is atomic per file (temporary file, fsync, ``os.replace``) and ``state.json`` is
removed first and written last, so a folder whose ``state.json`` checks out is complete.
Nothing is pickled; loading checks checksums, specs and shapes and raises
:class:`~lifelong.errors.StateError` with a one-line message otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from lifelong.config import ArchitectureSpec, ConfigError, StrategySpec, TrainSpec, from_mapping, to_jsonable
from lifelong.errors import StateError
from lifelong.learn import state_checks as checks
from lifelong.learn.models import build_model
from lifelong.learn.optim import build_optimizer, build_scheduler
from lifelong.learn.replay import ReplayBuffer
from lifelong.learn.state_checks import LIMITS, Limits

FORMAT = "lifelong.learner_state/1"
STATE_FILES = {
    "weights": "weights.safetensors",
    "optimizer": "optimizer.safetensors",
    "fisher": "fisher.safetensors",
    "anchors": "anchors.safetensors",
    "buffer": "buffer.safetensors",
    "meta": "state.json",
}
TENSOR_PARTS = ("weights", "optimizer", "fisher", "anchors", "buffer")
MAX_TENSOR_FILE_BYTES = 8 << 30  # any one tensor file, whatever the architecture


def _new_counters() -> dict[str, int]:
    return {"steps": 0, "updates": 0, "epochs": 0, "consolidations": 0, "tasks_seen": 0}


@dataclass
class LearnerState:
    """The model with everything its continued training depends on (mutable, updated in place)."""

    arch: ArchitectureSpec
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    fisher: dict[str, Tensor] | None = None
    anchors: dict[str, Tensor] | None = None
    buffer: ReplayBuffer | None = None
    counters: dict[str, int] = field(default_factory=_new_counters)
    history: list[dict[str, Any]] = field(default_factory=list)
    # forecasters: the mean/std the windows were normalised with (lifelong.data.windows.fit_stats)
    stats: dict[str, Any] | None = None
    # the tasks learned so far, in order (task additions; a daily forecaster's regimes)
    tasks: list[str] = field(default_factory=list)
    # the last day of data the model was trained on (ISO date), for daily updates
    trained_through: str | None = None
    # anything else a caller keeps with the state (JSON)
    extra: dict[str, Any] = field(default_factory=dict)
    train_spec: TrainSpec = field(default_factory=TrainSpec)
    strategy_spec: StrategySpec = field(default_factory=StrategySpec)

    @classmethod
    def new(cls, arch: ArchitectureSpec, train: TrainSpec, strategy: StrategySpec) -> LearnerState:
        """A fresh state: weights initialised from ``train.seed``, a buffer if the strategy replays."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train.seed)
            model = build_model(arch)
        optimizer = build_optimizer(model, train)
        buffer = None
        if "replay" in strategy.name:
            buffer = ReplayBuffer(strategy.replay_capacity, strategy.replay_policy, seed=train.seed)
        return cls(
            arch=arch,
            model=model,
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, train),
            buffer=buffer,
            train_spec=train,
            strategy_spec=strategy,
        )

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        return float(self.optimizer.param_groups[0]["lr"])


# --------------------------------------------------------------------------- saving


def save_state(state: LearnerState, directory: Path) -> None:
    """Write ``state`` to ``directory`` (created if needed), replacing any state there."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta_path = directory / STATE_FILES["meta"]
    meta_path.unlink(missing_ok=True)  # from here until the end the folder reads as incomplete
    optimizer_tensors, optimizer_meta = _flatten_optimizer(state.optimizer)
    parts: dict[str, dict[str, Tensor] | None] = {
        "weights": dict(state.model.state_dict()),
        "optimizer": optimizer_tensors,
        "fisher": state.fisher,
        "anchors": state.anchors,
        "buffer": state.buffer.tensors() if state.buffer is not None else None,
    }
    checksums: dict[str, str] = {}
    for part, tensors in parts.items():
        path = directory / STATE_FILES[part]
        if tensors is None:
            path.unlink(missing_ok=True)
            continue
        blob = st_save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
        _atomic_write(path, blob)
        checksums[part] = hashlib.sha256(blob).hexdigest()
    meta = {
        "format": FORMAT,
        "torch": torch.__version__.split("+")[0],
        "arch": to_jsonable(state.arch),
        "train": to_jsonable(state.train_spec),
        "strategy": to_jsonable(state.strategy_spec),
        "files": {part: {"name": STATE_FILES[part], "sha256": digest} for part, digest in checksums.items()},
        "optimizer": optimizer_meta,
        "scheduler": state.scheduler.state_dict(),
        "buffer": state.buffer.meta() if state.buffer is not None else None,
        "counters": dict(state.counters),
        "history": state.history,
        "stats": state.stats,
        "tasks": list(state.tasks),
        "trained_through": state.trained_through,
        "extra": state.extra,
    }
    _atomic_write(meta_path, json.dumps(meta, indent=1, sort_keys=True, allow_nan=True).encode())


def _atomic_write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Per-parameter tensors as ``"{index}.{key}"``; param_groups and other values as JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, values in sd["state"].items():
        for key, value in values.items():
            name = f"{index}.{key}"
            if isinstance(value, Tensor):
                tensors[name] = value
            else:
                scalars[name] = value
    return tensors, {"type": type(optimizer).__name__, "param_groups": sd["param_groups"], "scalars": scalars}


# --------------------------------------------------------------------------- loading


def state_complete(directory: Path) -> bool:
    """True when ``state.json`` parses and every tensor file it lists is present and intact."""
    try:
        directory = Path(directory)
        meta = _read_meta(directory, f"state {directory}")
        _read_blobs(directory, meta, f"state {directory}", {})
    except StateError:
        return False
    return True


def load_state(
    directory: Path, arch: ArchitectureSpec | None = None, *, not_after: date | None = None, limits: Limits = LIMITS
) -> LearnerState:
    """Load a saved state, trusting nothing in it (:mod:`lifelong.learn.state_checks`).

    With ``arch``, a state saved for another architecture is refused (the difference named)
    before anything is built. Every size is bounded before it is allocated, every field of
    ``state.json`` is validated, and ``trained_through`` may not be after ``not_after``
    (default: today in UTC, plus a day).
    """
    directory = Path(directory)
    where = f"state {directory}"
    meta = _read_meta(directory, where, limits)
    checks.check_keys(meta, where)
    try:
        saved_arch = from_mapping(ArchitectureSpec, meta["arch"], "arch")
        train = from_mapping(TrainSpec, meta["train"], "train")
        strategy = from_mapping(StrategySpec, meta["strategy"], "strategy")
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{where}: invalid spec in state.json ({exc})") from None
    if arch is not None and to_jsonable(arch) != to_jsonable(saved_arch):
        raise StateError(f"{where}: saved for architecture {_describe(saved_arch)}, expected {_describe(arch)}"
                         f" (differs in {_arch_difference(saved_arch, arch)})")  # fmt: skip
    parameters = checks.check_arch_bounds(saved_arch, where, limits)
    checks.check_buffer_meta(meta.get("buffer"), where, limits)
    if not 0 <= strategy.replay_capacity <= limits.max_replay_capacity:
        raise StateError(f"{where}: strategy.replay_capacity {strategy.replay_capacity} out of range")
    counters = checks.check_counters(meta["counters"], where)
    history = checks.check_history(meta.get("history", []), where, limits)
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise StateError(f"{where}: extra must be a mapping")
    extra = dict(extra)
    # states saved before these were fields kept them in extra
    stats = checks.check_stats(meta["stats"] if "stats" in meta else extra.pop("stats", None), where)
    tasks = checks.check_tasks(meta["tasks"] if "tasks" in meta else extra.pop("tasks", []), where, limits)
    learned = meta["trained_through"] if "trained_through" in meta else extra.pop("trained_through", None)
    trained_through = checks.check_trained_through(
        learned, not_after=not_after or checks.default_not_after(), where=where
    )
    blobs = _read_blobs(directory, meta, where, checks.file_bounds(saved_arch, parameters, meta.get("buffer")))
    try:
        state = LearnerState.new(saved_arch, train, strategy)
    except ConfigError as exc:
        raise StateError(f"{where}: invalid spec in state.json ({exc})") from None
    checks.check_optimizer_meta(meta["optimizer"], state.optimizer.state_dict(), where)
    scheduler = checks.check_scheduler(meta["scheduler"], state.scheduler.state_dict(), where)
    tensors = {part: _load_tensors(blob, part, where) for part, blob in blobs.items()}
    try:
        _load_weights(state.model, tensors["weights"], where)
        _load_optimizer(state.optimizer, tensors["optimizer"], meta["optimizer"], where)
        state.scheduler.load_state_dict(scheduler)
        params = {name: p for name, p in state.model.named_parameters() if p.requires_grad}
        state.fisher = _check_like_params(tensors.get("fisher"), params, "fisher", where)
        state.anchors = _check_like_params(tensors.get("anchors"), params, "anchors", where)
        state.buffer = None
        if meta.get("buffer") is not None:
            if "buffer" not in tensors:
                raise StateError(f"{where}: state.json describes a replay buffer but buffer.safetensors is not listed")
            checks.check_buffer_tensors(tensors["buffer"], meta["buffer"]["capacity"], where, limits)
            state.buffer = ReplayBuffer.restore(tensors["buffer"], meta["buffer"])
        state.counters = counters
        state.history = history
        state.stats = stats
        state.tasks = tasks
        state.trained_through = trained_through
        state.extra = extra
    except StateError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise StateError(f"{where}: inconsistent state ({type(exc).__name__}: {_first_line(exc)})") from None
    return state


def _read_meta(directory: Path, where: str, limits: Limits = LIMITS) -> dict[str, Any]:
    """state.json, at most ``limits.max_json_bytes``, with the right format and a files table."""
    meta_path = directory / STATE_FILES["meta"]
    if not meta_path.is_file():
        raise StateError(f"{where}: no state.json (missing or incompletely written)")
    size = meta_path.stat().st_size
    if size > limits.max_json_bytes:
        raise StateError(f"{where}: state.json is {size} bytes (at most {limits.max_json_bytes}); refused unread")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise StateError(f"{where}: state.json is not valid JSON ({_first_line(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise StateError(f"{where}: state.json has format {found!r}, expected {FORMAT!r}")
    files = meta.get("files")
    if not isinstance(files, dict) or not {"weights", "optimizer"} <= set(files):
        raise StateError(f"{where}: state.json lists no weights/optimizer files")
    for part, entry in files.items():
        if part not in TENSOR_PARTS or not isinstance(entry, dict) or entry.get("name") != STATE_FILES[part]:
            raise StateError(f"{where}: state.json lists an unexpected file entry {part!r}")
    return meta


def _read_blobs(directory: Path, meta: dict[str, Any], where: str, bounds: dict[str, int]) -> dict[str, bytes]:
    """The bytes of every tensor file ``meta`` lists, each size checked against ``bounds`` before it
    is read, checksums verified."""
    blobs: dict[str, bytes] = {}
    for part, entry in meta["files"].items():
        path = directory / STATE_FILES[part]
        if not path.is_file():
            raise StateError(f"{where}: {path.name} is missing")
        size, bound = path.stat().st_size, bounds.get(part, MAX_TENSOR_FILE_BYTES)
        if size > min(bound, MAX_TENSOR_FILE_BYTES):
            raise StateError(f"{where}: {path.name} is {size} bytes, more than the architecture can need "
                             f"({min(bound, MAX_TENSOR_FILE_BYTES)}); refused unread")  # fmt: skip
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != entry.get("sha256"):
            raise StateError(f"{where}: {path.name} is corrupt (sha256 does not match state.json)")
        blobs[part] = blob
    return blobs


def _arch_difference(saved: ArchitectureSpec, expected: ArchitectureSpec) -> str:
    got, want = to_jsonable(saved), to_jsonable(expected)
    changed = [k for k in want if got.get(k) != want.get(k)]
    return ", ".join(f"{k}: saved {got.get(k)!r}, params.yaml {want.get(k)!r}" for k in changed)


def _load_tensors(blob: bytes, part: str, where: str) -> dict[str, Tensor]:
    try:
        return st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise StateError(f"{where}: {STATE_FILES[part]} is not a readable safetensors file ({exc})") from None


def _load_weights(model: nn.Module, weights: dict[str, Tensor], where: str) -> None:
    expected = model.state_dict()
    if set(weights) != set(expected):
        missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        raise StateError(f"{where}: weights do not match the model (missing {missing}, unexpected {unexpected})")
    for name, tensor in expected.items():
        if weights[name].shape != tensor.shape:
            raise StateError(
                f"{where}: weight {name} has shape {tuple(weights[name].shape)}, the model needs {tuple(tensor.shape)}"
            )
    model.load_state_dict(weights)


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict, where: str) -> None:
    if meta["type"] != type(optimizer).__name__:
        raise StateError(f"{where}: optimizer is {meta['type']}, the train spec builds {type(optimizer).__name__}")
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, values in state.items():
        if not 0 <= index < len(params):
            raise StateError(f"{where}: optimizer state for parameter {index}, the model has {len(params)}")
        for key, value in values.items():
            if isinstance(value, Tensor) and value.ndim > 0 and value.shape != params[index].shape:
                raise StateError(f"{where}: optimizer tensor {index}.{key} has shape {tuple(value.shape)}")
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _check_like_params(
    tensors: dict[str, Tensor] | None, params: dict[str, nn.Parameter], part: str, where: str
) -> dict[str, Tensor] | None:
    if tensors is None:
        return None
    if set(tensors) != set(params):
        raise StateError(f"{where}: {part} names do not match the model's parameters")
    for name, p in params.items():
        if tensors[name].shape != p.shape:
            raise StateError(
                f"{where}: {part}[{name}] has shape {tuple(tensors[name].shape)}, expected {tuple(p.shape)}"
            )
    return {name: tensors[name] for name in params}


def _describe(arch: ArchitectureSpec) -> str:
    return (
        f"{arch.type}(in_channels={arch.in_channels}, length={arch.length}, out_dim={arch.out_dim}, "
        f"channels={list(arch.channels)}, hidden={list(arch.hidden)}, kernel_size={arch.kernel_size}, pool={arch.pool})"
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""
