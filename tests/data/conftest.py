"""Fixtures of the data tests: workspaces shared by a module (GX and DVC setup is paid once).

``shared_workspace`` is the ``workspace`` fixture at module scope: a project folder with the
repo's params.yaml, ``LIFELONG_*`` pointing at it, the current directory inside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _data_kit import make_workspace


@pytest.fixture(scope="module")
def shared_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        yield make_workspace(tmp_path_factory.mktemp("data"), mp)
