"""SYNTHETIC vibration signals of rotating machines, one task per machine type.

**These signals are simulated, not measured.** They exist to give the task-addition DAG long
sequences of related tasks (5+ machine types) that real archives do not offer. The physics
is the textbook picture of rotating-machinery diagnostics, simplified:

* every machine type has its own **shaft speed** ``f_r`` (15-60 Hz), two **structural
  resonances** (300-1100 Hz, each ringing down at its own damping rate), a **bearing defect
  order** (defect frequency / shaft speed, 3.0-5.5, not a whole number) and a noise level;
* label 0, **healthy**: small residual unbalance at 1x ``f_r``, weak 2x, broadband noise;
* label 1, **imbalance**: a strong 1x component (the centrifugal force of a heavy spot);
* label 2, **misalignment**: a strong 2x component with a moderate 1x and a weaker 3x;
* label 3, **bearing defect**: an impact each time a rolling element passes the defect, at
  ``order * f_r``; each impact rings both resonances, and the impacts are amplitude-modulated
  by the shaft rotation, which puts sidebands at +-1x around the defect frequency and its
  harmonics (the envelope spectrum analysts look for);
* every recording: shaft speed jitter of 2 %, random phases, amplitude jitter, Gaussian noise.

Machine type ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so a task's
signals depend only on the seed and its position, never on how many tasks are generated.

>>> m = machine(0, seed=7)
>>> 15 <= m.shaft_hz <= 60 and 3.0 <= m.defect_order <= 5.5
True
>>> x = recording(m, label=1, rng=np.random.default_rng(0), length=256, sample_rate=2560.0)
>>> x.shape, x.dtype
((256,), dtype('float32'))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

LABELS = {0: "healthy", 1: "imbalance", 2: "misalignment", 3: "bearing defect"}


@dataclass(frozen=True)
class Machine:
    """One machine type: what makes its healthy and faulty vibration its own."""

    shaft_hz: float
    resonances_hz: tuple[float, float]
    damping: tuple[float, float]  # ring-down rate of each resonance, 1/s
    defect_order: float  # bearing defect frequency over shaft speed
    noise: float  # standard deviation of the broadband noise


def machine(index: int, *, seed: int) -> Machine:
    """The ``index``-th machine type of the family drawn from ``seed``."""
    rng = np.random.default_rng([seed, index])
    low, high = sorted(rng.uniform(300.0, 1100.0, size=2))
    return Machine(
        shaft_hz=float(rng.uniform(15.0, 60.0)),
        resonances_hz=(float(low), float(high)),
        damping=tuple(float(d) for d in rng.uniform(150.0, 400.0, size=2)),  # type: ignore[arg-type]
        defect_order=float(rng.uniform(3.0, 5.5)),
        noise=float(rng.uniform(0.15, 0.4)),
    )


def _impacts(m: Machine, t: np.ndarray, shaft: float, rng: np.random.Generator) -> np.ndarray:
    """Bearing impacts at the defect frequency, ringing the resonances, modulated by the shaft."""
    period = 1.0 / (m.defect_order * shaft)
    times = np.arange(rng.uniform(0.0, period), t[-1] + period, period)
    times = times + rng.normal(0.0, 0.01 * period, size=times.size)  # rolling elements slip a little
    shaft_phase = rng.uniform(0.0, 2 * np.pi)
    strength = rng.uniform(0.8, 1.2, size=times.size) * (1.0 + 0.6 * np.cos(2 * np.pi * shaft * times + shaft_phase))
    lag = t[None, :] - times[:, None]  # (impacts, samples): time since each impact
    after = np.clip(lag, 0.0, None)
    out = np.zeros_like(t)
    for f_n, zeta in zip(m.resonances_hz, m.damping, strict=True):
        ring = np.where(lag >= 0, np.exp(-zeta * after) * np.sin(2 * np.pi * f_n * after), 0.0)
        out += strength @ ring
    return out


def recording(m: Machine, *, label: int, rng: np.random.Generator, length: int, sample_rate: float) -> np.ndarray:
    """One vibration recording of machine ``m`` in condition ``label`` (see :data:`LABELS`)."""
    t = np.arange(length) / sample_rate
    shaft = m.shaft_hz * (1.0 + rng.normal(0.0, 0.02))
    phases = rng.uniform(0.0, 2 * np.pi, size=3)
    amp = {1: 0.3, 2: 0.08, 3: 0.03}  # healthy: residual unbalance, weak harmonics
    if label == 1:
        amp[1] = rng.uniform(1.0, 1.6)
    elif label == 2:
        amp[1], amp[2], amp[3] = rng.uniform(0.4, 0.6), rng.uniform(0.8, 1.2), rng.uniform(0.25, 0.4)
    x = sum(a * np.sin(2 * np.pi * order * shaft * t + phases[order - 1]) for order, a in amp.items())
    if label == 3:
        x = x + _impacts(m, t, shaft, rng)
    x = x * rng.uniform(0.9, 1.1) + rng.normal(0.0, m.noise, size=length)
    return np.asarray(x, dtype=np.float32)


def generate(
    tasks: Sequence[str],
    *,
    seed: int = 7,
    length: int = 256,
    samples_per_class: int = 150,
    sample_rate: float = 2560.0,
    test_fraction: float = 0.2,
    labels: Sequence[int] = tuple(LABELS),
    task_column: str = "task",
    id_column: str = "sample",
    split_column: str = "split",
    label_column: str = "label",
    signal_column: str = "signal",
) -> pd.DataFrame:
    """A frame of recordings: one row each, ``samples_per_class`` per label and task.

    A stratified ``test_fraction`` of each label is marked ``test`` in ``split_column``.

    >>> frame = generate(["M1", "M2"], samples_per_class=5, length=64)
    >>> frame.groupby(["task", "split"]).size().to_dict()
    {('M1', 'test'): 4, ('M1', 'train'): 16, ('M2', 'test'): 4, ('M2', 'train'): 16}
    """
    frames = []
    for index, task in enumerate(tasks):
        m = machine(index, seed=seed)
        rng = np.random.default_rng([seed, index, 1])
        rows = []
        for label in labels:
            n_test = round(test_fraction * samples_per_class)
            test = set(rng.permutation(samples_per_class)[:n_test].tolist())
            for k in range(samples_per_class):
                signal = recording(m, label=int(label), rng=rng, length=length, sample_rate=sample_rate)
                rows.append((int(label), "test" if k in test else "train", signal))
        frame = pd.DataFrame(rows, columns=[label_column, split_column, signal_column])
        frame.insert(0, id_column, np.arange(len(frame), dtype=np.int64))
        frame.insert(1, task_column, task)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out[task_column] = out[task_column].astype("str")
    out[split_column] = out[split_column].astype("str")
    out[label_column] = out[label_column].astype("int64")
    return out
