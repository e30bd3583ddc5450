"""Parquet bytes that do not depend on when they were written, and writes that never half-happen.

The same rows always give the same bytes, so "has this file changed?" is a byte comparison
and DVC sees an unchanged partition as unchanged:

>>> import pandas as pd
>>> frame = pd.DataFrame({"a": [1.0, 2.0]})
>>> parquet_bytes(frame) == parquet_bytes(frame.copy())
True
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` (its index dropped) as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a ``.tmp`` file and a rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)
