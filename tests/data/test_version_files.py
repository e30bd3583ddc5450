"""A data version's manifest read from the local DVC cache: its files named by relpath, its unsafe paths
refused, an incomplete cache reported as such (no DVC repository needed: the cache layout alone)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lifelong.data import dvcrepo
from lifelong.errors import LifelongError


def _cache(root: Path, relpaths: list[str], *, missing: int | None = None) -> tuple[str, object]:
    """Objects and a ``.dir`` manifest in DVC 3's layout under ``root``; its md5 and an object_path."""

    def object_path(oid: str) -> Path:
        return root / oid[:2] / oid[2:]

    entries = []
    for i, rel in enumerate(relpaths):
        oid = hashlib.md5(rel.encode()).hexdigest()
        if i != missing:
            object_path(oid).parent.mkdir(parents=True, exist_ok=True)
            object_path(oid).write_text(rel)
        entries.append({"md5": oid, "relpath": rel})
    text = json.dumps(entries)
    md5 = hashlib.md5(text.encode()).hexdigest()
    manifest = object_path(f"{md5}.dir")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(text)
    return md5, object_path


def _open(md5: str, object_path: object) -> dvcrepo.VersionFiles | None:
    entries = dvcrepo._entries(object_path, md5)  # type: ignore[arg-type]
    return None if entries is None else dvcrepo._files(md5, entries, object_path)  # type: ignore[arg-type]


def test_each_file_of_a_version_is_named_by_its_relpath(tmp_path: Path) -> None:
    rels = ["vic_elec/2012-01-01.parquet", "vic_elec/2012-01-02.parquet", "engines/task=FordA.parquet"]
    md5, object_path = _cache(tmp_path, rels)
    files = _open(md5, object_path)
    assert files is not None and sorted(files) == sorted(rels) and len(files) == 3
    assert "vic_elec/2012-01-02.parquet" in files and "vic_elec/2012-01-03.parquet" not in files
    for rel in rels:
        assert isinstance(files[rel], Path) and files[rel].read_text() == rel
    assert dict(files.items()) == {rel: files[rel] for rel in rels}


def test_a_version_missing_an_object_is_not_complete(tmp_path: Path) -> None:
    md5, object_path = _cache(tmp_path, ["a/1.parquet", "a/2.parquet"], missing=1)
    assert _open(md5, object_path) is None


@pytest.mark.parametrize("unsafe", ["/etc/passwd", "../x.parquet", "a/../../x", "a/./b.parquet", "a//b", ""])
def test_a_manifest_path_that_leaves_the_store_is_refused(tmp_path: Path, unsafe: str) -> None:
    md5, object_path = _cache(tmp_path, ["a/1.parquet", unsafe])
    with pytest.raises(LifelongError, match="unsafe path"):
        _open(md5, object_path)
