"""tests/production: the docker-compose file, and its topology run natively on PostgreSQL and Redis.

The topology takes minutes to start on two cores, so one is started per session (fixture
``production``, see production_run.py) and shared by the REST-API tests (test_topology.py)
and the browser test (test_browser.py). The tests run in file order, except two (see
:func:`pytest_collection_modifyitems`): the browser test comes after test_services.py, since it
shows what the days run there left in the registry and then rolls the champion back by hand,
which no other test expects; and the test that stops the topology and checks that nothing it
started is left comes last.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from production_run import Production, production_run
from topology import services_available

# DAG files are parsed by Airflow's dag-processor in the topology test, not imported by pytest.
collect_ignore = ["dags"]

HERE = Path(__file__).parent
# after every other test of this folder, in this order: the UIs, then the topology stopped
RUN_LAST = ("test_browser.py", "test_topology.py::test_everything_it_started_is_stopped")


def _rank(item: pytest.Item) -> int:
    node = f"{item.path.name}::{item.name}"
    return next((1 + i for i, last in enumerate(RUN_LAST) if node == last or item.path.name == last), 0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move this folder's tests named in RUN_LAST to the end of the folder's run, keeping every
    other test (and every test of other folders) where it was; the order is the same on every
    pytest-xdist worker, as xdist requires."""
    slots = [i for i, item in enumerate(items) if item.path.parent == HERE]
    ordered = sorted((items[i] for i in slots), key=_rank)  # stable: file order within a rank
    for slot, item in zip(slots, ordered, strict=True):
        items[slot] = item


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    if not services_available():
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")
    world = production_run(tmp_path_factory.mktemp("production"))
    yield world
    world.close()
