"""Guards of the capacity rules found by running the product: a seizure that would take no
rights, and a restore that would give a partition more intended cores than its active cells
hold (it was activated after its reboot, or the 12-hour rule assumed all its cores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provider.gicap import rules
from provider.gicap.inventory import parse_capacity_inventory
from provider.gicap.model import CapacityState, SeizureState
from provider.gicap.rules import Refused

INVENTORY = Path(__file__).parent / "inventory.toml"
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
UP_A = {"hostA2.example.com": True, "hostA3.example.com": True}


def _state() -> CapacityState:
    return parse_capacity_inventory(INVENTORY.read_text(encoding="utf-8"), INVENTORY)


def test_a_seizure_that_would_take_nothing_is_refused_and_changes_nothing() -> None:
    # memberB's npar0 down to one core per cell (2): the rights it freed went to the group.
    state = rules.deactivate(_state(), "hostB1.example.com", 2, T0).state
    free = state.groups["Group1"].free_rights
    with pytest.raises(Refused, match="No usage rights can be seized from nPar npar0"):
        rules.seize(state, "hostB1.example.com", {}, T0 + timedelta(minutes=1))
    assert state.seizures == [] and state.groups["Group1"].free_rights == free


def test_a_restore_never_exceeds_the_cores_of_the_active_cells() -> None:
    state = rules.seize(_state(), "hostA1.example.com", UP_A, T0).state
    (seizure,) = state.seizures
    assert seizure.cores == 4
    # As if the 12-hour rule had assumed the partition uses 7 of its 8 cores meanwhile.
    part = state.complexes["complexA"].partition("npar0")
    part.intended = part.actual = 7
    free = state.groups["Group1"].free_rights
    outcome = rules.restore(state, "hostA1.example.com", T0 + timedelta(hours=1))
    after = outcome.state.complexes["complexA"].partition("npar0")
    assert outcome.values["RestoredCores"] == 1 and after.intended == 8
    assert outcome.state.groups["Group1"].free_rights == free - 1
    assert [s.state for s in outcome.state.seizures] == [SeizureState.RESTORED]
    assert "The other 3 of the 4 seized stay with group Group1" in outcome.actions[0].text
