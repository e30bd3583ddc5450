"""Reading one landed batch, whatever arrived: every way it can fail has a one-line reason.

The format is decided by the file's content, checked against its name: Parquet starts and
ends with ``PAR1``; anything else must be UTF-8 CSV text. A file that cannot be read raises
:class:`UnreadableBatch`, which the caller turns into a quarantine and a refusal.

The file is opened once, without following a symbolic link and without blocking, and read
whole only when that open file is a regular file within the size limit: a FIFO, a device or a
file swapped for a link after the caller checked its path is refused, not read.

>>> import tempfile, pathlib
>>> empty = pathlib.Path(tempfile.mkdtemp()) / "2012-01-05.parquet"
>>> _ = empty.write_bytes(b"")
>>> read_batch(empty, max_mb=1)
Traceback (most recent call last):
...
lifelong.data.batch.UnreadableBatch: empty file (0 bytes)
"""

from __future__ import annotations

import csv
import errno
import io
import os
import stat
from pathlib import Path

import pandas as pd

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".txt")
MAGIC = {
    b"\x1f\x8b": "a gzip archive",
    b"PK\x03\x04": "a zip archive (or an Excel workbook)",
    b"BZh": "a bzip2 archive",
    b"\xfd7zXZ": "an xz archive",
    b"\x89HDF": "an HDF5 file",
    b"\x80": "a Python pickle (never loaded)",
    b"ARROW1": "an Arrow IPC file",
    b"{": "JSON",
    b"[": "JSON",
}


class UnreadableBatch(Exception):
    """The file cannot be read as a table; ``str(exc)`` is the one-line reason."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _sniff(head: bytes) -> str | None:
    for magic, what in MAGIC.items():
        if head.startswith(magic):
            return what
    return None


def _read_parquet(raw: bytes) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    size = len(raw)
    if raw[-4:] != b"PAR1" or size < 12:
        raise UnreadableBatch(f"truncated Parquet file ({size} bytes, no footer)")
    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableBatch(f"corrupt Parquet file: {_first_line(exc)}") from None
    names = table.column_names
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UnreadableBatch(f"duplicate column names: {', '.join(duplicated)}")
    try:
        return table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise UnreadableBatch(f"Parquet file has columns pandas cannot read: {_first_line(exc)}") from None


def _read_csv(raw: bytes) -> pd.DataFrame:
    if b"\x00" in raw[:65536]:
        raise UnreadableBatch("binary content: neither Parquet nor CSV text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableBatch(f"not UTF-8 text (byte {exc.start}): neither Parquet nor CSV") from None
    if not text.strip():
        raise UnreadableBatch("empty CSV (only whitespace)")
    header = next(csv.reader(io.StringIO(text)), [])
    duplicated = sorted({n for n in header if header.count(n) > 1})
    if duplicated:
        raise UnreadableBatch(f"duplicate column names: {', '.join(duplicated)}")
    try:
        return pd.read_csv(io.StringIO(text), low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise UnreadableBatch(f"malformed CSV: {_first_line(exc)}") from None


def _read_bytes(path: Path, max_mb: float) -> bytes:
    """The whole content of the regular file ``path``, at most ``max_mb`` MB (else UnreadableBatch)."""
    limit = int(max_mb * 2**20)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableBatch("is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableBatch("not a regular file (a FIFO, a device or a socket)")
        if info.st_size > limit:
            raise UnreadableBatch(f"file too large: {info.st_size / 2**20:.1f} MB over the limit of {max_mb:g} MB")
        raw = fh.read(limit + 1)  # a size that lies (a file growing as it is read) is caught here
    if len(raw) > limit:
        raise UnreadableBatch(f"file too large: over the limit of {max_mb:g} MB")
    return raw


def read_batch(path: Path, *, max_mb: float) -> pd.DataFrame:
    """The table in ``path``; raises :class:`UnreadableBatch` with the reason when there is none."""
    try:
        if path.is_dir():
            raise UnreadableBatch("is a directory, not a file")
        raw = _read_bytes(path, max_mb)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableBatch("is a symbolic link (not followed)") from None
        raise UnreadableBatch(f"unreadable: {exc.strerror or _first_line(exc)}") from None
    if not raw:
        raise UnreadableBatch("empty file (0 bytes)")
    head = raw[:8]
    suffix = path.suffix.lower()
    if head.startswith(b"PAR1"):
        frame = _read_parquet(raw)
    elif suffix in PARQUET_SUFFIXES:
        what = _sniff(head)
        raise UnreadableBatch(f"not a Parquet file{f' (looks like {what})' if what else ''}: no PAR1 header")
    elif suffix in CSV_SUFFIXES:
        what = _sniff(head)
        if what:
            raise UnreadableBatch(f"not a CSV file: looks like {what}")
        frame = _read_csv(raw)
    else:
        raise UnreadableBatch(f"unsupported file type {suffix or '(none)'!r}: expected .parquet or .csv")
    if frame.shape[1] == 0:
        raise UnreadableBatch("no columns")
    if len(frame) == 0:
        raise UnreadableBatch("no rows (header only)")
    return frame
