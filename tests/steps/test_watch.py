"""The daily watch and the automatic rollback, the alerts, and the model cards, on a real small store.

One module-scoped project (a few real vic_elec days stored, the rollback on after 2 days at 5%)
and one local webhook. The tests tell one story in file order: a version that slipped past the
gate is rolled back automatically, once; manual rollbacks then go further back and are refused
when there is nothing left; a quarantined file and a rejected candidate are alerted too.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from _project import project_with, quick_forecaster
from _steps_kit import DATASET, FIRST_DAY, MODEL, WARMUP_DAYS
from _webhook import Webhook, closed_port_url

DAYS = [FIRST_DAY + dt.timedelta(days=i) for i in range(WARMUP_DAYS + 4)]
THE_DAY = DAYS[WARMUP_DAYS]  # the first day with a champion to watch
ROLLBACK_DAYS = 2


def _edit(raw: dict) -> None:
    model = quick_forecaster(raw, warmup=WARMUP_DAYS, model=MODEL)
    model["rollback"] = {"enabled": True, "tolerance_pct": 5.0, "days": ROLLBACK_DAYS}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The project with DAYS[:-1] stored (the last landed, left for the quarantine test) and a webhook."""
    from lifelong.data import landing, store
    from lifelong.steps import daily

    mp = pytest.MonkeyPatch()
    with project_with(tmp_path_factory.mktemp("watch"), _edit) as project, Webhook() as hook:
        mp.setenv("LIFELONG_ALERT_WEBHOOK", hook.url)
        mp.setenv("LIFELONG_ALERT_SECRET", "s3cr3t-value")
        mp.setenv("LIFELONG_ALERT_BACKOFF_S", "0.01")
        store.ensure_repo()
        landing.simulate(DATASET, FIRST_DAY, len(DAYS))
        ingests = {day: daily.validate_ingest(MODEL, day) for day in DAYS[:-1]}
        try:
            yield {"project": project, "hook": hook, "ingests": ingests, "versions": {}}
        finally:
            mp.undo()


def _register(state, key: str, ingest: dict) -> str:
    """Log ``state`` as a candidate version (as ``update`` does, without training)."""
    from lifelong import registry
    from lifelong.config import to_jsonable
    from lifelong.steps import inputs
    from lifelong.steps.context import Context

    ctx = Context.of(MODEL)
    x, _ = inputs.forecast_days(ctx, inputs.snapshot(ctx, ingest["data_version"]), [THE_DAY], state.stats)
    candidate = registry.log_candidate(
        MODEL, state, params={"model": to_jsonable(ctx.spec), "kind": "update", "train_days": [str(DAYS[2])]},
        metrics={"mae": 1.0}, epoch_metrics=[], plots={},
        lineage=registry.Lineage.of(ctx.run, ctx.spec, ingest["data_version"], "cpu"),
        dataset_source="dvc://test", input_example=x[:1].numpy(), run_key=key,
    )  # fmt: skip
    return candidate.version


def _shifted(version: str, by: float):
    """The state of ``version`` with its output shifted by ``by`` (normalised units): a biased forecaster."""
    import torch

    from lifelong import registry

    state = registry.load_state_of(MODEL, version)
    last = [m for m in state.model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv1d)][
        -1
    ]  # the output layer
    with torch.no_grad():
        last.bias.add_(by)
    return state


def _approved(version: str, champion: str | None) -> dict:
    """The gate's approval of ``version`` against ``champion``, recorded on the version as ``gate`` records it."""
    from lifelong import decisions, registry

    decision = {
        "model": MODEL, "version": version, "champion_version": champion, "approved": True,
        "reason": "approved: within tolerance", "deltas": {"mae": 1.0},
    }  # fmt: skip
    registry.record_decision(
        MODEL, version, decisions.body(**decision, candidate={"mae": 1.0}, champion=None, data_version=None)
    )
    return decision


def test_a_champion_worse_than_its_predecessor_for_n_days_is_rolled_back_once(world) -> None:
    from lifelong import registry
    from lifelong.steps import daily, decide, watch

    ingests, hook, versions = world["ingests"], world["hook"], world["versions"]
    first = daily.update(MODEL, THE_DAY, ingests[THE_DAY])
    assert watch.watch(MODEL, THE_DAY, ingests[THE_DAY])["status"] == "no_champion"
    decide.promote(MODEL, _approved(first["version"], None))
    good = versions["good"] = first["version"]
    assert watch.watch(MODEL, THE_DAY, ingests[THE_DAY])["status"] == "no_shadow"  # nothing before it

    # a biased version slips past the gate and serves
    bad = versions["bad"] = _register(_shifted(good, 3.0), "test/bad", ingests[THE_DAY])
    decide.promote(MODEL, _approved(bad, good))
    assert (registry.champion(MODEL), registry.previous(MODEL)) == (bad, good)

    day1 = watch.watch(MODEL, THE_DAY, ingests[THE_DAY])
    assert (day1["status"], day1["champion"], day1["shadow"], day1["streak"]) == ("worse", bad, good, 1)
    assert day1["excess_pct"] > 5.0 and day1["champion_score"] > day1["shadow_score"]
    again = watch.watch(MODEL, THE_DAY, ingests[THE_DAY])  # a re-run of the day counts once
    assert again["streak"] == 1 and again["status"] == "worse"
    assert registry.champion(MODEL) == bad

    day2_date = DAYS[WARMUP_DAYS + 1]
    day2 = watch.watch(MODEL, day2_date, ingests[day2_date])
    assert (day2["status"], day2["streak"]) == ("rolled_back", ROLLBACK_DAYS)
    assert (registry.champion(MODEL), registry.status_of(MODEL, bad)) == (good, "rolled_back")
    event = registry.history(MODEL)[-1]
    assert (event["event"], event["version"], event["from"]) == ("rollback", good, bad)
    assert event["trigger"].startswith("auto:") and f"on {ROLLBACK_DAYS} consecutive days" in event["reason"]
    assert str(THE_DAY) in event["reason"] and str(day2_date) in event["reason"]

    rerun = watch.watch(MODEL, day2_date, ingests[day2_date])  # the day re-run: no second rollback
    assert rerun["status"] == "rolled_back" and rerun["rollback"]["changed"] is False
    assert [e["event"] for e in registry.history(MODEL)].count("rollback") == 1
    (alert,) = hook.events("rollback")
    assert {k: alert[k] for k in ("model", "date", "version")} == {
        "model": MODEL,
        "date": str(day2_date),
        "version": good,
    }
    assert alert["figures"]["demoted"] == bad and alert["figures"]["streak"] == ROLLBACK_DAYS
    assert set(alert) == {"event", "model", "date", "version", "reason", "figures", "dag_run"}
    assert hook.headers[-1]["Authorization"] == "Bearer s3cr3t-value"

    # the restored version serves: nothing before it to compare with
    day3_date = DAYS[WARMUP_DAYS + 2]
    assert watch.watch(MODEL, day3_date, ingests[day3_date])["status"] == "no_shadow"

    # model cards: what each version is, its gate decision, what it replaced; the demoted one says so
    good_card = registry.version_record(MODEL, good)["tags"]  # tags hold no description: read it from MLflow
    assert good_card["validation_status"] == "approved"
    client = registry._client()
    card = client.get_model_version(MODEL, good).description
    assert f"{MODEL} v{good}** (bootstrap)" in card and "gate: approved" in card and "replaced: nothing" in card
    assert ingests[THE_DAY]["data_version"][:12] in card and "strategy: replay" in card and "mae " in card
    assert str(FIRST_DAY) in card and "task(s): Demand" in card
    bad_card = client.get_model_version(MODEL, bad).description
    assert "gate: rolled_back (auto rollback" in bad_card and f"replaced: v{good}" in bad_card


def test_manual_rollbacks_go_further_back_never_to_a_demoted_version(world) -> None:
    from lifelong import registry
    from lifelong.errors import RegistryError
    from lifelong.steps import decide

    versions, ingests = world["versions"], world["ingests"]
    good, bad = versions["good"], versions["bad"]
    newer = versions["newer"] = _register(_shifted(good, 0.01), "test/newer", ingests[THE_DAY])
    decide.promote(MODEL, _approved(newer, good))
    assert registry.previous(MODEL) == good

    with pytest.raises(RegistryError, match="never re-instated"):
        decide.rollback(MODEL, to=bad, reason="was it that bad?")
    out = decide.rollback(MODEL, reason="newer forecasts look off")
    assert (out["champion"], out["from"], registry.champion(MODEL)) == (good, newer, good)
    with pytest.raises(RegistryError, match="no previous champion to roll back to from v"):
        decide.rollback(MODEL, reason="and again")  # bad was demoted, nothing older served
    assert registry.champion(MODEL) == good
    assert registry.status_of(MODEL, newer) == registry.status_of(MODEL, bad) == "rolled_back"


def test_alerts_for_a_quarantined_file_and_a_rejected_candidate(world, caplog) -> None:
    from lifelong import registry
    from lifelong.data import landing
    from lifelong.errors import RefusedBatch
    from lifelong.steps import decide, run

    hook, ingests = world["hook"], world["ingests"]
    bad_day = DAYS[-1]
    landed = Path(landing.landed_file(DATASET, bad_day.isoformat()))
    frame = pd.read_parquet(landed)
    frame.loc[frame.index[:3], "Demand"] = -1.0  # out of range: refused and quarantined
    frame.to_parquet(landed)
    with caplog.at_level(logging.INFO, logger="lifelong.notify"), pytest.raises(RefusedBatch):
        run.run_day(MODEL, bad_day)
    (quarantine,) = hook.events("quarantine")
    assert quarantine["model"] == MODEL and quarantine["date"] == str(bad_day) and "Demand" in quarantine["reason"]

    candidate = _register(_shifted(world["versions"]["good"], 0.3), "test/rejected", ingests[THE_DAY])
    decision = {**_approved(candidate, registry.champion(MODEL)), "approved": False, "reason": "rejected: mae +40%"}
    with caplog.at_level(logging.INFO, logger="lifelong.notify"):
        decide.reject(MODEL, decision)
    (rejected,) = hook.events("reject")
    assert (rejected["version"], rejected["reason"]) == (candidate, "rejected: mae +40%")
    assert rejected["figures"]["champion"] == registry.champion(MODEL)
    card = registry._client().get_model_version(MODEL, candidate).description
    assert "gate: rejected (rejected: mae +40%)" in card and "stays champion" in card
    # the log names the webhook's host, never its path (the token) nor the secret
    assert "127.0.0.1" in caplog.text and "SECRET-TOKEN" not in caplog.text and "s3cr3t" not in caplog.text


def test_a_dead_webhook_never_fails_the_step_and_is_retried_a_bounded_number_of_times(
    world, monkeypatch, caplog
) -> None:
    from lifelong import notify, registry
    from lifelong.steps import decide

    tries: list[str] = []
    real_post = notify._post

    def counting(url: str, body: bytes, timeout: float) -> int:
        tries.append(url)
        return real_post(url, body, timeout)

    monkeypatch.setattr(notify, "_post", counting)
    monkeypatch.setenv("LIFELONG_ALERT_WEBHOOK", closed_port_url())
    monkeypatch.setenv("LIFELONG_ALERT_TRIES", "3")
    candidate = _register(_shifted(world["versions"]["good"], 0.4), "test/rejected-2", world["ingests"][THE_DAY])
    decision = {**_approved(candidate, registry.champion(MODEL)), "approved": False, "reason": "rejected: mae +50%"}
    with caplog.at_level(logging.WARNING, logger="lifelong.notify"):
        outcome = decide.reject(MODEL, decision)  # the step ends normally
    assert outcome["event"] == "reject" and registry.status_of(MODEL, candidate) == "rejected"
    assert len(tries) == 3
    assert "NOT delivered to 127.0.0.1" in caplog.text and "after 3 tries" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text

    with Webhook(status=503) as refusing:  # a webhook that answers 503: the same bounded tries
        monkeypatch.setenv("LIFELONG_ALERT_WEBHOOK", refusing.url)
        tries.clear()
        assert notify.alert("reject", model=MODEL, version=candidate, reason="x") is False
        assert refusing.hits == 3 and len(tries) == 3
    monkeypatch.delenv("LIFELONG_ALERT_WEBHOOK")
    assert notify.alert("reject", model=MODEL) is False and len(tries) == 3  # off: nothing posted
