"""tests/production: the docker-compose file, and its topology run natively on PostgreSQL and Redis.

The topology takes minutes to start on two cores, so one is started per session (fixture
``production``, see production_run.py) and shared by the REST-API tests (test_topology.py)
and the browser test (test_browser.py). The last test of test_topology.py stops it and
checks that nothing it started is left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from production_run import Production, production_run
from topology import services_available

# DAG files are parsed by Airflow's dag-processor in the topology test, not imported by pytest.
collect_ignore = ["dags"]


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    if not services_available():
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")
    world = production_run(tmp_path_factory.mktemp("production"))
    yield world
    world.close()
