"""The enumeration shortcuts of provider/gicap/cim.py give the rows of the plain definitions.

An enumeration of GM_GroupMember finds every member's seizures in one pass and GM_CapacityGroup
its group's seizures in one pass; here both are compared with a seizure lookup per member
(`state.in_force`), on a state with seizures in force, restored and reverted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provider.gicap import cim, rules
from provider.gicap.inventory import parse_capacity_inventory
from provider.gicap.model import CapacityState, SeizureState

INVENTORY = Path(__file__).parent / "inventory.toml"
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


class _Service:
    def __init__(self, state: CapacityState) -> None:
        self.state = state

    def snapshot(self) -> CapacityState:
        return self.state


def _state() -> CapacityState:
    state = parse_capacity_inventory(INVENTORY.read_text(encoding="utf-8"), INVENTORY)
    up = {"hostA2.example.com": True, "hostA3.example.com": True}
    state = rules.seize(state, "hostA1.example.com", up, T0).state
    state = rules.restore(state, "hostA1.example.com", T0).state
    state = rules.seize(state, "hostB1.example.com", {}, T0 + timedelta(seconds=1)).state
    state = rules.seize(state, "hostC1.example.com", {}, T0 + timedelta(seconds=2)).state
    state = rules.check_scavenged(state, {"complexC": True}, T0 + timedelta(days=1)).state
    state = rules.seize(state, "hostA1.example.com", up, T0 + timedelta(days=2)).state
    state = rules.check_scavenged(state, {}, T0 + timedelta(days=11)).state
    return state


def test_member_enumeration_equals_member_rows() -> None:
    state = _state()
    kinds = {s.state for s in state.seizures}
    assert len(kinds) >= 3, kinds
    service: Any = _Service(state)
    rows = list(cim.MemberInstances(service).enumerate(None, "GM_GroupMember"))
    members = sorted(
        (c for c in state.complexes.values() if c.member), key=lambda c: c.member or ""
    )
    assert rows == [cim.member_row(state, c) for c in members]
    assert any(r["SeizedCores"] for r in rows)


def test_group_row_counts_the_seizures_in_force() -> None:
    state = _state()
    row = cim.group_row(state, "Group1")
    in_force = [s for c in state.members("Group1") for s in state.in_force(c.name)]
    assert row["SeizedCoreRights"] == sum(s.cores for s in in_force) > 0
    pending = [
        s.expires_at
        for s in in_force
        if s.state is SeizureState.PENDING and s.expires_at is not None
    ]
    assert row["SeizedRightsExpiration"] == (min(pending) if pending else None)


def test_a_loan_shows_no_expiration() -> None:
    """A deferred seizure whose member reconnected is a loan: it does not expire, and the
    group's SeizedRightsExpiration ("pending (deferred) seizures", the MOF) is empty."""
    state = parse_capacity_inventory(INVENTORY.read_text(encoding="utf-8"), INVENTORY)
    state = rules.seize(state, "hostB1.example.com", {}, T0).state
    row = cim.group_row(state, "Group1")
    assert row["SeizedRightsExpiration"] == T0 + timedelta(days=10)
    state = rules.check_scavenged(state, {"complexB": True}, T0 + timedelta(days=1)).state
    assert [s.state for s in state.seizures] == [SeizureState.LOAN]
    row = cim.group_row(state, "Group1")
    assert row["SeizedCoreRights"] > 0 and row["SeizedRightsExpiration"] is None
