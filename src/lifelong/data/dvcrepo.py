"""DVC for the data store: the repository, its remote, recording and restoring versions.

``data/`` (without ``landing/`` and ``quarantine/``, which ``.dvcignore`` keeps out) is one
DVC output, ``data.dvc``; its md5 is the data version. DVC runs in-process through its
Python API (a subprocess per command would cost a second each). Callers hold the store
lock (:mod:`lifelong.locks`): nothing here is safe to run twice at once.

The remote is configured before the first version is recorded, so every version can be
fetched back once the local cache is gone. It is ``LIFELONG_DVC_REMOTE`` when set (e.g.
``s3://bucket/dvc`` in production), else ``<home>/dvc-remote``.

A failed ``dvc checkout`` of a version whose objects are missing deletes the whole ``data/``
folder, landing files included (DVC 3.67); :func:`restore` therefore makes sure every object
is in the cache before it checks anything out. Reading a version needs no checkout at all:
:func:`version_files` names the cached file of each partition of any version, fetching the
version's objects from the remote first when some are missing, and touches neither
``data.dvc`` nor ``data/``.

``data.dvc`` is one file for every data set: a ``kill -9`` inside ``dvc add`` can leave it empty,
and then no model could find its data. After each version is recorded and pushed, a copy of
``data.dvc`` is kept as ``<home>/data.dvc.last-good`` (written atomically); :func:`heal` puts
it back when ``data.dvc`` is found empty or unparseable, and says so in the log. Every write of
``data.dvc`` by lifelong itself is atomic.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from lifelong import faults
from lifelong.config import Settings
from lifelong.data.files import write_atomic
from lifelong.errors import LifelongError

log = logging.getLogger("lifelong.data")

MD5 = re.compile(r"[0-9a-f]{32}")  # a data version (always fullmatch)
REMOTE = "local"
IGNORED = ("/data/landing/", "/data/quarantine/", "*.tmp")
DVCIGNORE_HEADER = (
    "# Not part of the versioned store: batches waiting to be ingested, refused ones, partial writes,\n"
    "# lifelong's home (runtime state, when it lies in the project).\n"
)


class DataVersionError(LifelongError):
    """A data version cannot be recorded or restored."""


def remote_url(settings: Settings) -> str:
    """Where versions are pushed: ``LIFELONG_DVC_REMOTE`` or ``<home>/dvc-remote``."""
    return os.environ.get("LIFELONG_DVC_REMOTE") or str(settings.dvc_remote)


def without_credentials(url: str) -> str:
    """``url`` fit to log or show: any ``user:password@`` removed.

    >>> without_credentials("https://bob:s3cr3t@dvc.example.com/store")
    'https://dvc.example.com/store'
    >>> without_credentials("/srv/dvc-remote")
    '/srv/dvc-remote'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"


def dvc_file(settings: Settings) -> Path:
    return settings.project_dir / "data.dvc"


def last_good_file(settings: Settings) -> Path:
    """The copy of ``data.dvc`` as of the last version recorded and pushed (or checked out in place)."""
    return settings.home / "data.dvc.last-good"


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """DVC logs progress and warnings to stdout; our callers print JSON there."""
    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _repo(settings: Settings, action: str) -> Iterator[Any]:
    """An open DVC repo; DVC's chatter is kept off stdout, its errors become one line."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with _quiet():
        try:
            with Repo(str(settings.project_dir)) as repo:
                yield repo
        except DvcException as exc:
            raise DataVersionError(f"dvc {action} failed: {_first_line(exc)}") from exc


def _ignored(settings: Settings) -> tuple[str, ...]:
    """What DVC never walks: :data:`IGNORED`, and lifelong's home when it lies inside the project.

    DVC walks the whole workspace for its files on every ``add`` and ``push``; the home (the embedded
    MLflow artifacts, the DVC remote, reports, Data Docs) gains files every day, so walking it made
    each day's ingest slower than the one before.
    """
    try:
        inside = settings.home.resolve().relative_to(settings.project_dir.resolve())
    except ValueError:
        return IGNORED
    return (*IGNORED, f"/{inside.as_posix()}/") if inside.parts else IGNORED


def _ensure_dvcignore(project: Path, patterns: tuple[str, ...] = IGNORED) -> None:
    path = project / ".dvcignore"
    text = path.read_text() if path.exists() else ""
    lines = {line.strip() for line in text.splitlines()}
    missing = [pattern for pattern in patterns if pattern not in lines]
    if missing:
        prefix = text if not text or text.endswith("\n") else text + "\n"
        path.write_text(prefix + ("" if text else DVCIGNORE_HEADER) + "".join(f"{p}\n" for p in missing))


def ensure(settings: Settings) -> None:
    """A DVC repository in the project with its default remote configured (idempotent)."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    project = settings.project_dir
    if not (project / ".dvc").is_dir():
        with _quiet():
            Repo.init(str(project), no_scm=not (project / ".git").exists())
    _ensure_dvcignore(project, _ignored(settings))
    url = remote_url(settings)
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    with _repo(settings, "config") as repo:
        merged = repo.config
        current = (merged.get("remote", {}).get(REMOTE) or {}).get("url")
        same_url = current is not None and os.path.abspath(str(current)) == os.path.abspath(url)
        if not same_url or merged["core"].get("remote") != REMOTE or merged["core"].get("analytics"):
            with repo.config.edit("local") as conf:
                conf["remote"][REMOTE] = {"url": url}
                conf["core"]["remote"] = REMOTE
                conf["core"]["analytics"] = False


def _parse(text: str) -> str:
    """The data version a DVC file's text names; ValueError (or KeyError, ...) when it names none."""
    outs = yaml.safe_load(text)["outs"]
    md5 = str(outs[0]["md5"]).removesuffix(".dir")
    if not MD5.fullmatch(md5):
        raise ValueError(f"md5 {md5!r} is not 32 hex digits")
    return md5


def version(settings: Settings) -> str | None:
    """The md5 of the recorded data version (without DVC's ``.dir`` suffix), or None."""
    path = dvc_file(settings)
    if not path.exists():
        return None
    try:
        return _parse(path.read_text())
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataVersionError(f"{path}: not a DVC file ({_first_line(exc)})") from None


def remember(settings: Settings) -> None:
    """Keep ``data.dvc`` as the last good copy (atomically): call once a version is safely recorded."""
    text = dvc_file(settings).read_text()
    _parse(text)
    write_atomic(last_good_file(settings), text.encode())


def heal(settings: Settings) -> str | None:
    """Put back the last good ``data.dvc`` when it is empty or unparseable; the version restored, or None.

    Call under the store lock. Raises :class:`DataVersionError` when ``data.dvc`` is broken
    and there is no good copy to put back.
    """
    path = dvc_file(settings)
    try:
        version(settings)
        return None
    except DataVersionError as exc:
        problem = str(exc)
    good = last_good_file(settings)
    try:
        text = good.read_text()
        md5 = _parse(text)
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError, ValueError):
        raise DataVersionError(
            f"{problem}, and there is no good copy at {good}: restore data.dvc from git or re-run the last ingest"
        ) from None
    write_atomic(path, text.encode())
    log.warning(
        "%s was empty or unparseable (a process killed inside `dvc add`?); put back the last good copy %s"
        " (data version %s)",
        path,
        good,
        md5,
    )
    return md5


def record(settings: Settings) -> str:
    """``dvc add data`` then ``dvc push``: the new data version."""
    with _repo(settings, "add") as repo:
        repo.add(str(settings.data_dir))
    faults.checkpoint("dvc_push")
    with _repo(settings, "push") as repo:
        repo.push(targets=[str(dvc_file(settings))], remote=REMOTE)
    recorded = version(settings)
    assert recorded is not None
    remember(settings)
    return recorded


def _entries(object_path: Callable[[str], Path], md5: str) -> list[dict] | None:
    """The version's ``.dir`` manifest when the local cache holds it and every file it lists, else None."""
    manifest = object_path(f"{md5}.dir")
    if not manifest.is_file():
        return None
    try:
        entries = json.loads(manifest.read_text())
        where = _object_strings(object_path, entries)
        complete = all(os.path.isfile(where(entry["md5"])) for entry in entries)
    except (ValueError, KeyError, TypeError):
        return None
    return entries if complete else None


def _object_strings(object_path: Callable[[str], Path], entries: list[dict]) -> Callable[[str], str]:
    """``oid -> its cached file`` as a string, for many objects at once: every step opens its data version,
    whose manifest lists every stored day, and a ``Path`` built per entry cost most of that (25 ms at
    1,000 days). DVC 3 keeps an object at ``<root>/<first two hex digits>/<the rest>``; the root is read
    from the first object's own path, and that path is checked to follow this layout."""
    if not entries:
        return lambda oid: os.fspath(object_path(oid))
    first = entries[0]["md5"]
    sample = object_path(first)
    root = os.fspath(sample.parent.parent)
    if sample != Path(root, first[:2], first[2:]):  # another layout: one Path per object, as DVC says
        return lambda oid: os.fspath(object_path(oid))
    sep = os.sep
    return lambda oid: f"{root}{sep}{oid[:2]}{sep}{oid[2:]}"


class VersionFiles(Mapping[str, Path]):
    """A data version's files, ``relpath -> cached object``, the ``Path`` made when a file is asked for:
    a step reads a few days of a manifest that lists every stored day."""

    def __init__(self, objects: dict[str, str]) -> None:
        self._objects = objects

    def __getitem__(self, relpath: str) -> Path:
        return Path(self._objects[relpath])

    def __contains__(self, relpath: object) -> bool:
        return relpath in self._objects

    def __iter__(self) -> Iterator[str]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)


def _files(md5: str, entries: list[dict], object_path: Callable[[str], Path]) -> VersionFiles:
    """Manifest entries as ``relpath -> cached object``; a path that leaves ``data/`` is refused (absolute,
    empty, or with an empty, ``.`` or ``..`` segment: DVC writes none of these)."""
    where = _object_strings(object_path, entries)
    objects = {}
    for entry in entries:
        relpath = str(entry.get("relpath", ""))
        if not relpath or relpath.startswith("/") or any(part in ("", ".", "..") for part in relpath.split("/")):
            raise DataVersionError(f"data version {md5}: its manifest lists an unsafe path {relpath!r}")
        objects[relpath] = where(entry["md5"])
    return VersionFiles(objects)


def cache_dir(settings: Settings) -> Path:
    """The DVC cache folder: ``cache.dir`` of the repo's config (local config first), else ``.dvc/cache``."""
    from configobj import ConfigObj

    dvc_dir = settings.project_dir / ".dvc"
    for name in ("config.local", "config"):
        path = dvc_dir / name
        if path.is_file():
            found = ConfigObj(str(path)).get("cache", {}).get("dir")
            if found:
                return (dvc_dir / found).resolve()
    return dvc_dir / "cache"


def cached_version_files(settings: Settings, md5: str) -> VersionFiles | None:
    """:func:`version_files` of a version complete in the local cache, without opening DVC; else None.

    DVC 3 keeps an object at ``<cache>/files/md5/<first two hex digits>/<the rest>``.
    """
    root = cache_dir(settings) / "files" / "md5"

    def object_path(oid: str) -> Path:
        return root / oid[:2] / oid[2:]

    entries = _entries(object_path, md5) if MD5.fullmatch(md5) else None
    return None if entries is None else _files(md5, entries, object_path)


def _fetch(repo: Any, md5: str) -> None:
    """Fetch the version's objects from the remote into the cache, without reading ``data.dvc``."""
    from dvc_data.hashfile.hash_info import HashInfo

    with contextlib.suppress(Exception):  # judged by what arrived: a missing version raises many ways
        repo.cloud.pull([HashInfo("md5", f"{md5}.dir")], remote=REMOTE)  # the manifest, then what it lists
        entries = json.loads(Path(repo.cache.local.oid_to_path(f"{md5}.dir")).read_text())
        repo.cloud.pull([HashInfo("md5", entry["md5"]) for entry in entries], remote=REMOTE)


def cached(settings: Settings, md5: str) -> bool:
    """Whether the local cache holds every object of data version ``md5``."""
    return cached_version_files(settings, md5) is not None


def version_files(settings: Settings, md5: str, fetch: bool = True) -> VersionFiles:
    """Each file of data version ``md5``: its path under ``data/`` -> its file in the local cache.

    With ``fetch``, the version's objects are fetched from the remote first when any is
    missing. ``data.dvc`` and ``data/`` are neither read nor changed; cached files are
    read-only, never to be edited. Call under the store lock when a fetch may run.
    Raises :class:`DataVersionError` naming the version when it cannot be had.
    """
    if not MD5.fullmatch(md5):
        raise DataVersionError(f"{md5!r} is not a data version (32 hex digits, the md5 in data.dvc)")
    with _repo(settings, "fetch") as repo:
        object_path = _object_path(repo)
        entries = _entries(object_path, md5)
        if entries is None and fetch:
            _fetch(repo, md5)
            entries = _entries(object_path, md5)
        if entries is None and fetch:
            remote = without_credentials(remote_url(settings))
            raise DataVersionError(f"data version {md5} is neither in the local cache nor in the remote {remote}")
        if entries is None:
            raise DataVersionError(f"data version {md5} is not complete in the local cache (not fetched)")
        return _files(md5, entries, object_path)


def _object_path(repo: Any) -> Callable[[str], Path]:
    cache = repo.cache.local
    return lambda oid: Path(cache.oid_to_path(oid))


def _point_at(settings: Settings, md5: str) -> None:
    text = yaml.safe_dump({"outs": [{"md5": f"{md5}.dir", "hash": "md5", "path": "data"}]}, sort_keys=False)
    write_atomic(dvc_file(settings), text.encode())


def restore(settings: Settings, md5: str) -> str:
    """Rewind the live store (``data/`` and ``data.dvc``) to version ``md5``; returns ``cache`` or ``remote``.

    The version is fetched first (:func:`version_files`): nothing in the workspace changes
    unless every object of the version is in the cache. Call under the store lock.
    """
    source = "cache" if cached(settings, md5) else "remote"
    version_files(settings, md5, fetch=True)
    path = dvc_file(settings)
    before = path.read_bytes() if path.exists() else None
    _point_at(settings, md5)
    try:
        with _repo(settings, "checkout") as repo:
            repo.checkout(targets=[str(path)], force=True)
    except BaseException:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, before)
        raise
    remember(settings)
    return source
