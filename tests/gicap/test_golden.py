"""Golden files for the capacity rules: input snapshot + steps -> expected actions and counts.

Each `golden/<case>.toml` holds a `[gicap]` inventory (the snapshot) and `[[step]]`s; the
rules run every step in order and the result is compared with `golden/<case>.expected.json`.
A behaviour change shows as a reviewable diff of that file: regenerate with
`GM_UPDATE_GOLDEN=1 pytest tests/gicap/test_golden.py` and read the diff before committing.

Steps: `op` is seize / restore / check / activate / deactivate / periodic; `at` is a UTC
time; `up` lists hosts that answer (seize) or complexes that reconnect (check) or seizure
ids seen running again (periodic); `host`, `count`, `ticap` as the methods take them.
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provider.errors import GMError
from provider.gicap import rules
from provider.gicap.inventory import parse_capacity_inventory
from provider.gicap.model import CapacityState

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*.toml"))


def _summary(state: CapacityState) -> dict[str, Any]:
    return {
        "groups": {
            name: {
                "free_rights": g.free_rights,
                "pool_minutes": g.ticap_minutes,
                "group_ticap": state.group_ticap(name),
                "in_compliance": rules.compliance(state, name)[0],
            }
            for name, g in sorted(state.groups.items())
        },
        "members": {
            cx.member: {
                "rights": cx.rights,
                "ticap_minutes": cx.ticap_minutes,
                "ticap_cores": cx.ticap_cores,
                "npars": {p.name: [p.intended, p.actual] for p in cx.partitions},
            }
            for cx in sorted(state.complexes.values(), key=lambda c: c.name)
            if cx.member is not None
        },
        "seizures": [
            {
                "id": s.id,
                "cores": s.cores,
                "state": s.state.value,
                "expires": s.expires_at.isoformat() if s.expires_at else None,
            }
            for s in state.seizures
        ],
    }


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _run(state: CapacityState, step: dict[str, Any]) -> rules.Outcome:
    now = datetime.fromisoformat(step["at"]).replace(tzinfo=UTC)
    op = step["op"]
    up = set(step.get("up", []))
    if op == "seize":
        cx = state.complex_of(step["host"])
        hosts = cx.all_hosts if cx is not None else []
        return rules.seize(state, step["host"], {h: h in up for h in hosts}, now)
    if op == "restore":
        return rules.restore(state, step["host"], now)
    if op == "check":
        return rules.check_scavenged(state, {name: name in up for name in state.complexes}, now)
    if op == "activate":
        return rules.activate(state, step["host"], step["count"], step.get("ticap", False), now)
    if op == "deactivate":
        return rules.deactivate(state, step["host"], step["count"], now)
    if op == "periodic":
        return rules.periodic(state, now, {s.id: s.id in up for s in state.seizures})
    raise AssertionError(f"unknown op {op}")


def run_case(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    state = parse_capacity_inventory(text, path)
    results: list[dict[str, Any]] = []
    for step in tomllib.loads(text)["step"]:
        record: dict[str, Any] = {"step": step}
        given, before = state, copy.deepcopy(state)
        try:
            outcome = _run(state, step)
        except GMError as exc:
            record["error"] = {"type": type(exc).__name__, "text": exc.description}
        else:
            assert outcome.state is not state
            state = outcome.state
            record["actions"] = [a.as_dict() for a in outcome.actions]
            record["values"] = {k: _json(v) for k, v in outcome.values.items()}
        assert given == before, f"the rule changed its input state: {step}"  # rules are pure
        record["after"] = _summary(state)
        results.append(record)
    return results


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden(case: Path) -> None:
    got = run_case(case)
    expected_path = case.with_suffix(".expected.json")
    rendered = json.dumps(got, indent=1, sort_keys=True) + "\n"
    if os.environ.get("GM_UPDATE_GOLDEN") or not expected_path.exists():
        expected_path.write_text(rendered, encoding="utf-8")
    assert rendered == expected_path.read_text(encoding="utf-8")


def test_reference_example_four_of_six_rights_seized() -> None:
    """Reference §3.2: "2-cell partition consuming 6 rights → 4 seized"."""
    got = run_case(GOLDEN / "reference_two_cells_six_rights.toml")
    assert got[0]["values"]["SeizedCores"] == 4
    assert got[0]["after"]["members"]["primary"]["npars"]["npar0"] == [2, 0]


def test_white_paper_db1_six_seized_two_left() -> None:
    """Reference §3.2 (WP1 p17): `icapmanage -x db1` seizes 6 and leaves 2 (2 cells)."""
    got = run_case(GOLDEN / "wp1_db1_complete_outage.toml")
    assert got[0]["values"]["SeizedCores"] == 6
    assert got[0]["values"]["Deferred"] is True


def test_seed003_race_keeps_group_ticap_consumption() -> None:
    """Seed 003: "The total temporary capacity consumption across the group remains the same,
    even though the temporary capacity might be consumed on the failover server"."""
    got = run_case(GOLDEN / "seed003_ticap_race.toml")
    before = [a for a in got[0]["actions"] if a["kind"] == "ticap_debit"]
    assert [(a["member"], a["minutes"]) for a in before] == [("batch", 60)]
    assert got[3]["error"]["type"] == "Refused"  # without TiCAP the rebalance won the race
    after = [a for a in got[5]["actions"] if a["kind"] == "ticap_debit"]
    assert [(a["member"], a["minutes"]) for a in after] == [("failover", 60)]
