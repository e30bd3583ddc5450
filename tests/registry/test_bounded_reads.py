"""The registry calls of the daily decision steps do not read every version behind them each time.

A forecaster registers a candidate a day, so after a year its registered model holds hundreds of
versions. The version tags, alias moves and model cards a gate, promotion or rejection writes, and
the promotion's serving check, must not each read them all: counted here as the model-version rows
MLflow's SQL store materialises and the client calls made, never as a wall-clock bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _registry_kit import MODEL

from lifelong import aliases, registry


@pytest.fixture
def versions(store: Any) -> Iterator[Any]:
    """``versions(n)``: the registered model grown to ``n`` (cheap) versions; yields the client."""
    client = registry._client()
    experiment = registry._experiment(client, MODEL)
    client.create_registered_model(MODEL)
    made = [0]

    def grow(n: int) -> Any:
        for i in range(made[0], n):
            run = client.create_run(experiment, tags={"run_key": f"k{i}"})
            client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id)
        made[0] = n
        return client

    yield grow


@pytest.fixture
def version_rows() -> Iterator[list[int]]:
    """A one-element counter of the model-version rows MLflow's SQL store loads (ORM ``load`` events)."""
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion
    from sqlalchemy import event

    count = [0]

    def loaded(*_: Any) -> None:
        count[0] += 1

    event.listen(SqlModelVersion, "load", loaded)
    try:
        yield count
    finally:
        event.remove(SqlModelVersion, "load", loaded)


def _rows_read(count: list[int], read: Any) -> int:
    count[0] = 0
    read()
    return count[0]


def test_a_pending_move_is_completed_through_the_bounded_client(versions: Any) -> None:
    """The alias move a crash left pending is found and completed with the writes' check remembered."""
    client = versions(2)
    event = {"event": "promote", "model": MODEL, "version": "2", "from_version": "1", "trigger": "t", "reason": "r"}
    move = aliases.Move("2", "1", event, "key-of-the-move", {"2": {"promoted_at": "now"}})
    client.set_registered_model_tag(MODEL, aliases.PENDING, move.to_json())
    assert aliases.pending(client, MODEL) == move
    outcome = registry.settle(MODEL)
    assert outcome is not None and outcome["champion"] == "2" and outcome["previous"] == "1"
    assert aliases.pending(client, MODEL) is None
    assert registry.champion(MODEL) == "2" and client.get_model_version(MODEL, "2").tags["promoted_at"] == "now"


def _writes(client: Any, version: str) -> None:
    """The registry writes a daily gate, promotion or rejection makes on a version and the model."""
    registry.tag_version(MODEL, version, {"validation_status": "pending", "reason": "r"})
    client.set_registered_model_alias(MODEL, "previous", version)
    client.delete_registered_model_alias(MODEL, "previous")
    client.set_registered_model_tag(MODEL, "t", "v")
    client.delete_registered_model_tag(MODEL, "t")
    registry.describe(MODEL, version, "a card")


def test_version_and_model_writes_read_every_version_once_per_process_not_per_write(
    versions: Any, version_rows: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's client checks that the model is no prompt before each write with ``get_registered_model``,
    whose ``latest_versions`` loads every version on the SQL store: made once per model and process."""
    import mlflow

    calls: list[str] = []
    original = mlflow.MlflowClient.get_registered_model

    def counted(self: Any, name: str) -> Any:
        calls.append(name)
        return original(self, name)

    monkeypatch.setattr(mlflow.MlflowClient, "get_registered_model", counted)
    client = versions(3)
    at_3 = _rows_read(version_rows, lambda: _writes(client, "3"))
    client = versions(30)
    at_30 = _rows_read(version_rows, lambda: _writes(client, "30"))
    assert calls == [MODEL]  # the first write's check; 12 writes made
    assert at_30 <= at_3  # at 30 versions no more rows than at 3 (where the one check read the 3)


def test_writes_still_refuse_an_unknown_model_as_mlflow_does(versions: Any) -> None:
    from mlflow.exceptions import MlflowException

    client = versions(1)
    with pytest.raises(MlflowException) as raised:
        client.set_registered_model_tag("never_registered", "t", "v")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_writes_still_refuse_a_prompt(versions: Any) -> None:
    """A registered model tagged as a prompt is refused as by MLflow's own check (the search leaves it out)."""
    from mlflow.exceptions import MlflowException
    from mlflow.prompt.constants import IS_PROMPT_TAG_KEY

    client = versions(1)
    client.create_registered_model("a_prompt")  # made a prompt below the client (which refuses to make one so)
    client._get_registry_client().set_registered_model_tag("a_prompt", IS_PROMPT_TAG_KEY, "true")
    with pytest.raises(MlflowException):
        client.set_registered_model_tag("a_prompt", "t", "v")


def test_serving_check_reads_the_same_rows_whatever_the_versions_behind(
    store: Any, log: Any, version_rows: list[int]
) -> None:
    """Promotion's serving check finds the version's files by its download URI (one version's rows), not by
    MLflow's resolution of ``models:/<name>/<version>``, which loads every version of the model."""
    from _registry_kit import new_state

    version = log(new_state(), "demo/day1").version
    client = registry._client()
    at_1 = _rows_read(version_rows, lambda: registry.check_serving(MODEL, version))
    run_id = client.get_model_version(MODEL, version).run_id
    for _ in range(20):
        client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id)
    at_21 = _rows_read(version_rows, lambda: registry.check_serving(MODEL, version))
    assert at_1 == at_21


def test_a_model_deleted_through_the_client_is_checked_again(versions: Any) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.prompt.constants import IS_PROMPT_TAG_KEY

    client = versions(1)
    client.set_registered_model_tag(MODEL, "t", "v")  # checked: not a prompt
    client.delete_registered_model(MODEL)
    client.create_registered_model(MODEL)
    client._get_registry_client().set_registered_model_tag(MODEL, IS_PROMPT_TAG_KEY, "true")
    with pytest.raises(MlflowException):
        client.set_registered_model_tag(MODEL, "t", "v")


def test_a_model_tagged_a_prompt_through_the_client_is_refused_afterwards(versions: Any) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.prompt.constants import IS_PROMPT_TAG_KEY

    client = versions(1)
    client.set_registered_model_tag(MODEL, "t", "v")  # checked: not a prompt
    client.set_registered_model_tag(MODEL, IS_PROMPT_TAG_KEY, "true")  # MLflow's client lets it be made one
    with pytest.raises(MlflowException):
        client.set_model_version_tag(MODEL, "1", "t", "v")
