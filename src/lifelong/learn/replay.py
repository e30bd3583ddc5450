"""Bounded replay buffers whose random choices survive a restart.

Two policies, both of fixed capacity:

* ``reservoir``: Vitter's algorithm R. After ``n`` samples have been offered, every one of
  them is in the buffer with the same probability ``capacity / n``.
* ``class_balanced``: class-balanced reservoir sampling (Chrysakis & Moens, ICML 2020).
  While the buffer has room every sample is kept. Once full, a sample of a class that
  does not hold the largest share replaces a random sample of the largest class; a sample
  of a largest class replaces a random sample *of its own class* with probability
  ``stored_c / seen_c`` (a reservoir inside the class). Shares tend to ``capacity / classes``.

All randomness comes from the buffer's own :class:`torch.Generator`, whose state is part of
:meth:`ReplayBuffer.tensors`, so a restored buffer makes exactly the choices the original
would have made:

>>> import torch
>>> buf = ReplayBuffer(capacity=4, seed=0)
>>> buf.add(torch.arange(10.0).reshape(10, 1), torch.arange(10))
>>> len(buf), buf.meta()["seen"]
(4, 10)
>>> copy = ReplayBuffer.restore(buf.tensors(), buf.meta())
>>> x1, y1 = buf.sample(3)
>>> x2, y2 = copy.sample(3)
>>> torch.equal(x1, x2) and torch.equal(y1, y2)
True

Class-balanced keeps equal shares even when one class dominates the stream:

>>> cb = ReplayBuffer(capacity=6, policy="class_balanced", seed=1)
>>> cb.add(torch.zeros(30, 2), torch.tensor([0] * 27 + [1, 2, 2]))
>>> sorted(cb.meta()["stored_per_class"].items())
[('0', 3), ('1', 1), ('2', 2)]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

POLICIES = ("reservoir", "class_balanced")
_NO_TASK = -1


class ReplayBuffer:
    """A fixed-capacity buffer of ``(x, y, task)`` samples, kept on the CPU."""

    def __init__(self, capacity: int, policy: str = "reservoir", seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        if policy not in POLICIES:
            raise ValueError(f"replay policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.capacity = capacity
        self.policy = policy
        self.seed = seed
        self.seen = 0
        self.class_seen: dict[int, int] = {}
        self.generator = torch.Generator().manual_seed(seed)
        self._x: Tensor | None = None
        self._y: Tensor | None = None
        self._task: Tensor | None = None
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"ReplayBuffer(capacity={self.capacity}, policy={self.policy!r}, size={self._size}, seen={self.seen})"

    # ----------------------------------------------------------------- adding

    def add(self, x: Tensor, y: Tensor, task: int | None = None) -> None:
        """Offer every sample of the batch ``(x, y)`` to the buffer, in order."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y hold different numbers of samples: {x.shape[0]} and {y.shape[0]}")
        if x.shape[0] == 0:
            return
        x, y = x.detach().cpu(), y.detach().cpu()
        self._allocate(x, y)
        assert self._x is not None and self._y is not None and self._task is not None
        if self._x.shape[1:] != x.shape[1:] or self._y.shape[1:] != y.shape[1:]:
            raise ValueError(
                f"samples of shape {tuple(x.shape[1:])} -> {tuple(y.shape[1:])} do not fit a buffer of "
                f"{tuple(self._x.shape[1:])} -> {tuple(self._y.shape[1:])}"
            )
        task_id = _NO_TASK if task is None else int(task)
        if self.policy == "reservoir":
            self._add_reservoir(x, y, task_id)
        else:
            self._add_class_balanced(x, y, task_id)

    def _allocate(self, x: Tensor, y: Tensor) -> None:
        if self._x is None:
            self._x = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype)
            self._y = torch.empty((self.capacity, *y.shape[1:]), dtype=y.dtype)
            self._task = torch.full((self.capacity,), _NO_TASK, dtype=torch.int64)

    def _put(self, slot: int, x: Tensor, y: Tensor, task_id: int) -> None:
        assert self._x is not None and self._y is not None and self._task is not None
        self._x[slot] = x
        self._y[slot] = y
        self._task[slot] = task_id

    def _draw(self, high: int) -> int:
        """A uniform integer in ``[0, high)`` from the buffer's own generator."""
        return int(torch.randint(high, (1,), generator=self.generator).item())

    def _add_reservoir(self, x: Tensor, y: Tensor, task_id: int) -> None:
        for i in range(x.shape[0]):
            if self._size < self.capacity:
                self._put(self._size, x[i], y[i], task_id)
                self._size += 1
            else:
                slot = self._draw(self.seen + 1)
                if slot < self.capacity:
                    self._put(slot, x[i], y[i], task_id)
            self.seen += 1

    def _add_class_balanced(self, x: Tensor, y: Tensor, task_id: int) -> None:
        if y.is_floating_point() or y.ndim != 1:
            raise ValueError("class_balanced replay needs integer class labels of shape (N,)")
        assert self._y is not None
        for i in range(x.shape[0]):
            label = int(y[i])
            self.class_seen[label] = self.class_seen.get(label, 0) + 1
            self.seen += 1
            if self._size < self.capacity:
                self._put(self._size, x[i], y[i], task_id)
                self._size += 1
                continue
            stored = torch.bincount(self._y[: self._size])
            own = int(stored[label]) if label < stored.numel() else 0
            largest = int(stored.max())
            if own < largest:
                # take a slot from one of the largest classes (ties: the lowest label)
                victim_class = int(torch.nonzero(stored == largest)[0])
                slots = torch.nonzero(self._y[: self._size] == victim_class).flatten()
                self._put(int(slots[self._draw(slots.numel())]), x[i], y[i], task_id)
            else:
                # reservoir inside the class: keep with probability stored_c / seen_c
                if self._draw(self.class_seen[label]) < own:
                    slots = torch.nonzero(self._y[: self._size] == label).flatten()
                    self._put(int(slots[self._draw(slots.numel())]), x[i], y[i], task_id)

    # ----------------------------------------------------------------- reading

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` stored samples, without replacement when ``n <= len(self)``."""
        if self._size == 0 or self._x is None or self._y is None:
            raise ValueError("cannot sample from an empty replay buffer")
        if n <= self._size:
            idx = torch.randperm(self._size, generator=self.generator)[:n]
        else:
            idx = torch.randint(self._size, (n,), generator=self.generator)
        return self._x[idx], self._y[idx]

    def contents(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every stored ``(x, y, task)`` (task -1 where none was given), in slot order."""
        if self._x is None or self._y is None or self._task is None:
            empty = torch.empty(0)
            return empty, empty, torch.empty(0, dtype=torch.int64)
        n = self._size
        return self._x[:n], self._y[:n], self._task[:n]

    # ----------------------------------------------------------------- saving

    def tensors(self) -> dict[str, Tensor]:
        """The stored samples and the generator state (uint8), ready for safetensors."""
        out = {"rng": self.generator.get_state().clone()}
        if self._x is not None:
            x, y, task = self.contents()
            out.update(x=x.clone(), y=y.clone(), task=task.clone())
        return out

    def meta(self) -> dict[str, Any]:
        """Everything else, as JSON types."""
        stored: dict[str, int] = {}
        if self._y is not None and self.policy == "class_balanced" and self._size:
            counts = torch.bincount(self._y[: self._size])
            stored = {str(c): int(n) for c, n in enumerate(counts.tolist()) if n}
        return {
            "capacity": self.capacity,
            "policy": self.policy,
            "seed": self.seed,
            "size": self._size,
            "seen": self.seen,
            "class_seen": {str(k): v for k, v in sorted(self.class_seen.items())},
            "stored_per_class": stored,
        }

    @classmethod
    def restore(cls, tensors: dict[str, Tensor], meta: dict[str, Any]) -> ReplayBuffer:
        """The buffer that :meth:`tensors` and :meth:`meta` describe; raises ValueError if inconsistent."""
        try:
            buf = cls(int(meta["capacity"]), str(meta["policy"]), int(meta["seed"]))
            buf.seen = int(meta["seen"])
            buf.class_seen = {int(k): int(v) for k, v in meta["class_seen"].items()}
            size = int(meta["size"])
            buf.generator.set_state(tensors["rng"].to(torch.uint8).contiguous())
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"replay buffer metadata is invalid ({exc})") from None
        if "x" in tensors:
            x, y, task = tensors["x"], tensors["y"], tensors["task"]
            if not (x.shape[0] == y.shape[0] == task.shape[0] == size) or size > buf.capacity:
                raise ValueError(
                    f"replay buffer holds {x.shape[0]} samples but its metadata says {size} (capacity {buf.capacity})"
                )
            buf._allocate(x, y)
            assert buf._x is not None and buf._y is not None and buf._task is not None
            buf._x[:size], buf._y[:size], buf._task[:size] = x, y, task
            buf._size = size
        elif size:
            raise ValueError(f"replay buffer metadata says {size} samples but no samples were saved")
        return buf
