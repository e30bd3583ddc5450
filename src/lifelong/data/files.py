"""Parquet bytes that do not depend on when they were written, and writes that never half-happen.

The same rows always give the same bytes, so "has this file changed?" is a byte comparison
and DVC sees an unchanged partition as unchanged:

>>> import pandas as pd
>>> frame = pd.DataFrame({"a": [1.0, 2.0]})
>>> parquet_bytes(frame) == parquet_bytes(frame.copy())
True
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
from pathlib import Path

import pandas as pd

# what write_atomic names its temp files (older versions: no host tag)
_TMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)(?:-(?P<host>[0-9a-f]{8}))?\.tmp")


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` (its index dropped) as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _host_tag() -> str:
    """A short, dot-free tag of this machine: temp files on a shared volume say whose they are."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def tmp_name(path: Path) -> Path:
    """The temp file :func:`write_atomic` writes ``path`` through: ``.<name>.<pid>-<host>.tmp``."""
    return path.with_name(f".{path.name}.{os.getpid()}-{_host_tag()}.tmp")


def fsync_dir(folder: Path) -> None:
    """Make a rename or an unlink in ``folder`` durable (a no-op where directories cannot be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # e.g. EINVAL on file systems that do not support it
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a ``.tmp`` file and a rename: readers see old or new, never half.

    The file is fsynced before the rename and its folder after it, so a crash (or a power cut)
    leaves the old content or the new one. A ``kill -9`` between the two leaves the temp file:
    :func:`remove_stale_tmp` removes it later.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _stale(name: str, *, locked: bool, of: tuple[str, ...]) -> bool:
    """Whether a temp file named ``name`` belongs to a writer that can no longer finish it."""
    found = _TMP.fullmatch(name)
    if found is None or (of and found["name"] not in of):
        return False
    if locked:  # every writer of the folder holds the caller's lock: none is mid-write
        return True
    pid, host = found["pid"], found["host"]
    return host == _host_tag() and int(pid) != os.getpid() and not _alive(int(pid))


def remove_stale_tmp(
    folder: Path, *, locked: bool = False, skip: tuple[Path, ...] = (), of: tuple[str, ...] = ()
) -> list[Path]:
    """Remove the temp files left under ``folder`` by writers killed inside :func:`write_atomic`.

    A temp file is stale when its writer is known to be gone: a process of this machine that
    no longer runs, or, with ``locked``, any writer at all (the caller holds the lock that every
    writer of ``folder`` holds, so no write is in flight). Folders in ``skip`` are not searched;
    with ``of`` (file names), only ``folder`` itself is, for temp files of those files.
    Returns the files removed.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / ".day.parquet.999999999-00000000.tmp").write_bytes(b"half")
    >>> [p.name for p in remove_stale_tmp(folder, locked=True)]
    ['.day.parquet.999999999-00000000.tmp']
    """
    skipped = {os.path.realpath(s) for s in skip}
    removed = []
    for root, dirs, names in os.walk(folder):  # symbolic links to folders are not followed
        if of:
            dirs.clear()
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) not in skipped]
        for name in names:
            tmp = Path(root) / name
            if _stale(name, locked=locked, of=of) and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    for parent in {p.parent for p in removed}:
        fsync_dir(parent)
    return removed


def read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)
