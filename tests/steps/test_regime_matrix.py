"""A daily forecaster's task matrix over its regimes, after a shift marked by hand (``run_day``, in process).

Days (FIRST_DAY = D): D..D+9 are stored first, so that the days from D+7 have a week of history (the
weekly naive); the daily runs are D+10 (the first model, warmed up on D+7..D+9), D+11, marked a task
shift by hand, and D+12. Task 0 spans D+7..D+9 (the days its closing champion, the first model,
learned), task 1 D+10..D+11; every one of those days has a full window and a weekly naive.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator

import pytest
from _project import project_with, quick_forecaster
from _steps_kit import DATASET, FIRST_DAY, MODEL

pytestmark = pytest.mark.slow

STORED_FIRST = 10  # days stored before the first daily run
RUN_DAYS = [FIRST_DAY + dt.timedelta(days=k) for k in range(10, 13)]
SHIFT_DAY = FIRST_DAY + dt.timedelta(days=11)
TASK_DAYS = [[FIRST_DAY + dt.timedelta(days=k) for k in ks] for ks in ((7, 8, 9), (10, 11))]


def _edit(raw: dict) -> None:
    spec = quick_forecaster(raw, warmup=3, model=MODEL)
    # every candidate promoted (the matrix, not the gate, is under test), no automatic shift or rollback
    spec["gate"] = {"value": {"mae": {"max": 1.0e9}}, "naive_tolerance_pct": None}
    spec["rollback"] = {"enabled": False}
    spec["task_shift"] = {**spec["task_shift"], "severe_days": None, "seasons": False}


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The daily steps run over RUN_DAYS with a shift by hand on SHIFT_DAY; the champions seen."""
    from lifelong import registry
    from lifelong.data import landing, store
    from lifelong.steps import daily, run

    with project_with(tmp_path_factory.mktemp("regimes"), _edit):
        store.ensure_repo()
        landing.simulate(DATASET, FIRST_DAY, STORED_FIRST + len(RUN_DAYS) + 1)
        for k in range(STORED_FIRST):
            daily.validate_ingest(MODEL, FIRST_DAY + dt.timedelta(days=k))
        closing = None
        for day in RUN_DAYS:
            if day == SHIFT_DAY:
                closing = registry.champion(MODEL)
            results = run.run_day(MODEL, day, task_shift=day == SHIFT_DAY)
            assert "promote" in results, results.get("skipped") or results.get("gate")
        yield {"closing": closing, "champion": registry.champion(MODEL)}


def _pooled_by_day(state, days: list[dt.date]) -> tuple[float, float]:
    """The model's and the weekly naive's MAE over ``days``, each day scored on its own by the daily
    evaluation's scorer and the days pooled by their steps (half-hours)."""
    from lifelong import registry
    from lifelong.steps import daily, inputs
    from lifelong.steps.context import Context

    ctx = Context.of(MODEL)
    snap = inputs.snapshot(ctx, registry.data_version_of(MODEL, registry.champion(MODEL)))
    scores = [daily.score_day(ctx, snap, state, day) for day in days]
    steps = sum(s["steps"] for s in scores)
    model = sum(s["mae"] * s["steps"] for s in scores) / steps
    naive = sum(s["weekly_naive_mae"] * s["steps"] for s in scores) / steps
    return model, naive


def test_the_matrix_over_two_regimes(shifted: dict) -> None:
    from lifelong import registry
    from lifelong.steps import regime_matrix

    found = regime_matrix.regime_matrix(MODEL)
    assert found["tasks"] == ["0", "1"]
    assert found["ranges"] == [[str(days[0]), str(days[-1])] for days in TASK_DAYS]
    assert found["opened_by"] == [[], ["triggered by hand"]]
    assert found["versions"] == [shifted["closing"], shifted["champion"]] and shifted["closing"] != shifted["champion"]
    assert found["days"] == [3, 2]
    (a, above), (b, c) = found["matrix"]
    assert above is None and all(math.isfinite(v) and v > 0 for v in (a, b, c))
    naive = found["naive"]["row"]
    assert all(math.isfinite(v) and v > 0 for v in naive)

    # recomputed day by day with the daily evaluation's scorer
    closing = registry.load_state_of(MODEL, shifted["closing"])
    champion = registry.load_state_of(MODEL, shifted["champion"])
    first, second = TASK_DAYS
    for value, state, days, naive_value in ((a, closing, first, naive[0]), (b, champion, first, naive[0]),
                                            (c, champion, second, naive[1])):  # fmt: skip
        model_mae, naive_mae = _pooled_by_day(state, days)
        assert value == pytest.approx(model_mae, rel=1e-6) and naive_value == pytest.approx(naive_mae, rel=1e-9)
    assert found["average_mae"] == pytest.approx((b + c) / 2)
    assert found["backward_transfer_mae"] == pytest.approx(b - a)  # positive: task 0's error rose since it closed


def test_the_demo_and_the_cli_print_it(shifted: dict, capsys: pytest.CaptureFixture) -> None:
    from lifelong import cli, demo
    from lifelong.steps import regime_matrix

    text = demo.summary([demo._day_summary(str(day)) for day in RUN_DAYS])
    found = regime_matrix.regime_matrix(MODEL)
    assert "task shifts of demand_forecaster (strategy replay): 1" in text
    assert "task matrix of demand_forecaster over its regimes: day-ahead MAE (MW)" in text
    assert "not held-out error" in text and "forgetting" in text
    (a, _), (b, c) = found["matrix"]
    lines = text.splitlines()
    row0 = next(line for line in lines if line.strip().startswith(f"after 0 (v{shifted['closing']})"))
    row1 = next(line for line in lines if line.strip().startswith(f"after 1 (v{shifted['champion']})"))
    assert row0.split()[-2:] == [f"{a:.1f}", "-"] and row1.split()[-2:] == [f"{b:.1f}", f"{c:.1f}"]
    naive = next(line for line in lines if line.strip().startswith("weekly naive"))
    assert naive.split()[-2:] == [f"{v:.1f}" for v in found["naive"]["row"]]
    assert next(line for line in lines if line.startswith("  days ")).split()[-2:] == ["3", "2"]

    assert "was not kept" not in text  # the shift's candidate was promoted: the champion records its task
    lost = {"date": str(RUN_DAYS[-1]), "outcome": "rejected", "consolidation": {"task": "2"}}  # as if D+12 had shifted
    assert demo._forecaster_task_matrix([lost])[-1] == (  # the champion has no consolidation of it pending
        f"  the shift of {RUN_DAYS[-1]} (task 2) was not kept: the champion v{shifted['champion']} records no such "
        "task and has no consolidation of it pending (still on task 1)"
    )

    assert cli.main(["task-matrix", MODEL]) == 0
    assert "after 1 (v" in capsys.readouterr().out
    assert cli.main(["task-matrix", MODEL, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["matrix"] == found["matrix"]


def test_before_the_shift_there_is_one_task(shifted: dict) -> None:
    """The closing version's own state records one regime (the open one, up to the last day it learned);
    a matrix of one task prints as one line."""
    from lifelong import registry
    from lifelong.steps import regime_matrix

    regimes = regime_matrix.regimes_of(registry.load_state_of(MODEL, shifted["closing"]))
    assert [(r.task, r.first, r.last) for r in regimes] == [("0", TASK_DAYS[0][0], TASK_DAYS[0][-1])]
    found = {"model": MODEL, "tasks": ["0"], "ranges": [[str(TASK_DAYS[0][0]), str(TASK_DAYS[0][-1])]]}
    assert regime_matrix.format_matrix(found) == [
        f"task matrix of {MODEL}: one task so far, task 0 ({TASK_DAYS[0][0]} to {TASK_DAYS[0][-1]}); "
        "a task shift opens the next"
    ]
