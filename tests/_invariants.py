"""What must hold of a model's registry record at every instant, even right after a crash.

Shared by the fault tests (``tests/faults/_faults_kit.py``, on a whole project) and the
registry's state machine (``tests/registry/test_registry_machine.py``). ``info`` is the
registry read back as plain JSON: ``champion``, ``previous``, ``champion_loadable`` (True or
the refusal), ``versions`` (version -> its tags ``validation_status`` and
``artifacts_complete``) and ``audit`` (``registry.history``).
"""

from __future__ import annotations

import json


def assert_champion_safe(info: dict) -> None:
    """``champion`` names a complete, approved version (so never a rolled-back one) that loads."""
    if info["champion"] is None:
        return
    assert info["champion_loadable"] is True, info["champion_loadable"]
    tags = info["versions"][info["champion"]]
    assert tags["artifacts_complete"] == "true" and tags["validation_status"] == "approved", tags


def assert_audit_consistent(info: dict, *, lagging: bool = False) -> None:
    """The audit log replays to the current champion: each event starts from the champion before it.

    ``lagging``: killed between moving the alias and writing its audit event, the log ends
    one move short (the re-run writes it): after a promotion it replays to ``previous``, after
    a rollback to the version whose ``rolling_back_to`` intent names the champion.
    """
    current: str | None = None
    demoted = {e["from"] for e in info["audit"] if e["event"] == "rollback"}  # tagged rolled_back since
    for event in info["audit"]:
        version = event["version"]
        if event["event"] in ("promote", "rollback"):
            # (a promotion written twice, by a retry, does not start from the champion before it)
            assert event["from"] == current, f"{event} does not start from champion {current}: {info['audit']}"
            assert version != current, f"{event} moves champion to itself: {info['audit']}"
            tags = info["versions"][version]
            status = tags["validation_status"]
            ok = status == "approved" or (status == "rolled_back" and version in demoted)
            assert tags["artifacts_complete"] == "true" and ok, (event, tags)
            current = version
        else:
            assert event["from"] == current and version != current, f"{event} (champion {current})"
            assert info["versions"][version]["validation_status"] in ("rejected", "stale"), event
    expected = {info["champion"]}
    if lagging:
        expected |= {info["previous"]} | {v for v, tags in info["versions"].items() if _rolling_back_to(tags, info)}
    assert current in expected, f"audit replays to {current}, champion is {info['champion']}"


def _rolling_back_to(tags: dict, info: dict) -> bool:
    """Whether the version's rollback intent (tag ``rolling_back_to``) names the current champion."""
    raw = tags.get("rolling_back_to")
    return bool(raw) and json.loads(raw).get("to") == info["champion"]
