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


def test_a_seizure_that_would_only_end_temporary_capacity_says_so() -> None:
    """The refusal said "it intends 4 active cores, the minimum of one per active cell (2)":
    4 is not the minimum; the member ran 4 cores on TiCAP, which freeing them only ends."""
    state = rules.activate(_state(), "hostB1.example.com", 4, True, T0).state
    with pytest.raises(Refused) as err:
        rules.seize(state, "hostB2.example.com", {}, T0 + timedelta(minutes=1))
    text = err.value.description
    assert "it uses 4 cores, above the minimum of one per active cell (2)" in text, text
    assert "memberB runs 4 cores on temporary capacity: freeing them only ends that use" in text


def test_a_restore_gives_back_what_was_seized() -> None:
    state = rules.seize(_state(), "hostA1.example.com", UP_A, T0).state
    free = state.groups["Group1"].free_rights
    outcome = rules.restore(state, "hostA1.example.com", T0 + timedelta(hours=1))
    after = outcome.state.complexes["complexA"].partition("npar0")
    assert outcome.values["RestoredCores"] == 4 and after.intended == 6
    assert outcome.state.groups["Group1"].free_rights == free - 4
    assert (
        outcome.actions[0].text
        == "4 core usage rights were restored to nPar npar0 of member memberA."
    )


def test_a_restore_never_gives_more_than_the_partition_intended_before_the_seizure() -> None:
    # The partition rebooted and activated its cores again, borrowing (intended 2 -> 6): it
    # has what it had. A restore then moves nothing (it once gave 2 more, intended 8 and 2
    # borrowed rights the member never asked for) and closes the seizure.
    state = rules.seize(_state(), "hostA1.example.com", UP_A, T0).state
    state = rules.activate(state, "hostA1.example.com", 4, False, T0 + timedelta(hours=1)).state
    cx = state.complexes["complexA"]
    rights, free = cx.rights, state.groups["Group1"].free_rights
    outcome = rules.restore(state, "hostA1.example.com", T0 + timedelta(hours=2))
    after = outcome.state.complexes["complexA"]
    assert outcome.values["RestoredCores"] == 0 and after.partition("npar0").intended == 6
    assert after.rights == rights and outcome.state.groups["Group1"].free_rights == free
    assert [s.state for s in outcome.state.seizures] == [SeizureState.RESTORED]
    assert (
        "The other 4 of the 4 seized stay with group Group1: the nPar intends 6 active "
        "cores, as many as before the seizure (6)." in outcome.actions[0].text
    )


def test_a_restore_never_exceeds_the_cores_of_the_active_cells() -> None:
    state = rules.seize(_state(), "hostA1.example.com", UP_A, T0).state
    (seizure,) = state.seizures
    assert seizure.cores == 4
    # One of its two cells was made inactive meanwhile: 4 cores are all it can run.
    state = rules.set_inactive_cells(state, "memberA", ["npar0/cell1"], T0).state
    part = state.complexes["complexA"].partition("npar0")
    assert part.intended == 2
    free = state.groups["Group1"].free_rights
    outcome = rules.restore(state, "hostA1.example.com", T0 + timedelta(hours=1))
    after = outcome.state.complexes["complexA"].partition("npar0")
    assert outcome.values["RestoredCores"] == 2 and after.intended == 4
    assert outcome.state.groups["Group1"].free_rights == free - 2
    assert [s.state for s in outcome.state.seizures] == [SeizureState.RESTORED]
    assert "The other 2 of the 4 seized stay with group Group1" in outcome.actions[0].text
    assert "all its active cells hold (4)" in outcome.actions[0].text


def test_cells_made_active_again_keep_one_core_each() -> None:
    state = rules.set_inactive_cells(_state(), "memberB", ["npar0/cell0", "npar0/cell1"], T0).state
    assert state.complexes["complexB"].partition("npar0").intended == 0
    state = rules.set_inactive_cells(state, "memberB", [], T0).state
    part = state.complexes["complexB"].partition("npar0")
    assert part.intended == part.active_cells == 2


def test_cores_activated_on_a_scavenged_member_reconnect_it() -> None:
    # No partition of memberA answers: a pending seizure, the member is scavenged.
    state = rules.seize(_state(), "hostA1.example.com", {}, T0).state
    assert len(state.pending()) == 1
    # Its partition runs again and activates cores: the member answers, so the seizure is a
    # loan now (§3.3) and never reverts (it once reverted 10 days later on top of the
    # activation, giving the partition 2 cores more than it had).
    outcome = rules.activate(state, "hostA1.example.com", 2, False, T0 + timedelta(hours=1))
    assert [a.kind for a in outcome.actions if a.kind == "reconnect"] == ["reconnect"]
    state = outcome.state
    assert state.pending() == []
    assert [s.state for s in state.seizures] == [SeizureState.LOAN]
    later = rules.check_scavenged(state, {}, T0 + timedelta(days=11))
    assert later.values["Reverted"] == [] and later.values["Remaining"] == 0


def test_cores_asked_for_a_seized_partition_that_does_not_answer_are_refused() -> None:
    """activateCores on behalf of the dead partition (the example request file once named
    it) handed it back the rights just seized and recorded a reconnection that did not
    happen: refused while none of its hosts answers, and nothing changes."""
    state = rules.seize(_state(), "hostA1.example.com", {}, T0).state
    later = T0 + timedelta(minutes=5)
    for change in (
        lambda: rules.activate(state, "hostA1.example.com", 2, True, later, silent=True),
        lambda: rules.deactivate(state, "hostA1.example.com", 2, later, silent=True),
    ):
        with pytest.raises(Refused) as err:
            change()
        assert "has its usage rights seized and none of its hosts" in err.value.description
        assert "icapmanage -z hostA1.example.com" in err.value.description
    assert [s.state for s in state.seizures] == [SeizureState.PENDING]
    # Another member's partition may use them (what the failover partition does).
    outcome = rules.activate(state, "hostB1.example.com", 2, True, later, silent=True)
    assert outcome.state.complexes["complexB"].partition("npar0").intended == 6


def test_a_scavenged_partition_seen_up_by_the_background_pass_reconnects() -> None:
    state = rules.seize(_state(), "hostA1.example.com", {}, T0).state
    (pending,) = state.pending()
    outcome = rules.periodic(state, T0 + timedelta(minutes=30), {pending.id: True})
    assert outcome.state.pending() == []
    assert "reconnect" in [a.kind for a in outcome.actions]


def test_a_revert_gives_the_partition_back_no_more_than_it_intended() -> None:
    state = rules.seize(_state(), "hostA1.example.com", {}, T0).state
    # Made one cell inactive while down: the revert cannot bring back 6 cores on 4.
    state = rules.set_inactive_cells(state, "memberA", ["npar0/cell1"], T0).state
    rights = state.complexes["complexA"].rights
    outcome = rules.check_scavenged(state, {}, T0 + timedelta(days=10))
    assert outcome.values["Reverted"] == ["memberA"]
    cx = outcome.state.complexes["complexA"]
    assert cx.partition("npar0").intended == 4
    assert cx.rights == rights + 4  # every seized right is back with the member


def _with_unassigned() -> CapacityState:
    state = _state()
    cx = state.complexes["complexA"]
    cx.owned_rights = cx.rights = 14  # 12 in use by its nPars, 2 unassigned
    return state


def test_a_member_whose_unassigned_rights_were_seized_can_be_removed() -> None:
    # Complete outage: 4 from npar0 and the 2 unassigned, both pending; the member comes back
    # (a loan), npar0's are restored; -z cannot restore unassigned rights (§3.3), and the
    # member could never be removed ("restore them first"): the removal reclaims them.
    state = rules.seize(_with_unassigned(), "hostA1.example.com", {}, T0).state
    assert sorted(s.cores for s in state.seizures) == [2, 4]
    state = rules.check_scavenged(state, {"complexA": True}, T0 + timedelta(hours=1)).state
    state = rules.restore(state, "hostA1.example.com", T0 + timedelta(hours=2)).state
    free = state.groups["Group1"].free_rights
    outcome = rules.remove_member(state, "memberA")
    cx = outcome.state.complexes["complexA"]
    assert cx.member is None and cx.rights == 14
    assert outcome.state.groups["Group1"].free_rights == free - 2
    assert all(s.state is SeizureState.RESTORED for s in outcome.state.seizures)


def test_a_member_with_a_partition_seizure_in_force_names_the_restore_command() -> None:
    state = rules.seize(_with_unassigned(), "hostA1.example.com", UP_A, T0).state
    with pytest.raises(Refused) as refused:
        rules.remove_member(state, "memberA")
    assert refused.value.description == (
        "Usage rights seized from nPar npar0 of member memberA are held by group Group1; "
        "restore them (icapmanage -z hostA1.example.com) before removing the member."
    )


def test_a_restore_takes_the_complex_s_own_unassigned_rights_first() -> None:
    """-z was refused for want of free rights in the group while rights sat unassigned on
    the seized member's own complex."""
    state = rules.seize(_state(), "hostA1.example.com", UP_A, T0).state  # npar0 6 -> 2
    later = T0 + timedelta(minutes=5)
    # A cell of npar1 made inactive: 2 of complexA's rights are unassigned now.
    state = rules.set_inactive_cells(state, "memberA", ["npar1/cell2"], later).state
    assert state.complexes["complexA"].unassigned_rights == 2
    # memberB borrows 2 of the 4 seized: the group holds 2 free.
    state = rules.activate(state, "hostB1.example.com", 2, False, later).state
    assert state.groups["Group1"].free_rights == 2
    outcome = rules.restore(state, "hostA1.example.com", later)
    assert outcome.values["RestoredCores"] == 4
    assert outcome.state.complexes["complexA"].partition("npar0").intended == 6
    assert outcome.state.groups["Group1"].free_rights == 0
    # Short of rights even so: the refusal names who borrows them.
    short = rules.activate(state, "hostB2.example.com", 2, False, later).state
    with pytest.raises(Refused, match=r"another member \(memberB borrows 4\)"):
        rules.restore(short, "hostA1.example.com", later)


def test_a_rebooted_partition_gives_back_what_the_twelve_hour_rule_lent_it() -> None:
    """After the 12-hour rule the rebalance gave the seized rights back to the seized
    member (it burnt TiCAP for the cores assumed busy); when the partition was seen running
    again they sat unassigned there for good while memberC burnt TiCAP."""
    state = rules.seize(_state(), "hostA1.example.com", UP_A, T0).state
    state = rules.periodic(state, T0 + timedelta(hours=13), {}).state
    assert state.complexes["complexA"].rights == 12  # given the 4 seized for npar0's cores
    (seizure,) = state.seizures
    state = rules.periodic(state, T0 + timedelta(hours=14), {seizure.id: True}).state
    assert state.complexes["complexA"].unassigned_rights == 0
    assert state.complexes["complexA"].rights == 8
    assert state.complexes["complexC"].ticap_cores == 0  # the rebalance gave it 2 of them


def test_a_restore_while_the_cells_are_inactive_keeps_the_seizure_open() -> None:
    """The seizure notice says to make the cells inactive; -z then closed the seizure with 0
    restored, and once the cells were active again nothing could give the rights back."""
    state = rules.seize(_state(), "hostA1.example.com", UP_A, T0).state
    later = T0 + timedelta(hours=1)
    inactive = rules.set_inactive_cells(state, "memberA", ["npar0/cell0", "npar0/cell1"], later)
    with pytest.raises(Refused, match="Make its cells active again") as err:
        rules.restore(inactive.state, "hostA1.example.com", later)
    assert "none of the 4 seized can come back now" in err.value.description
    assert [s.state for s in inactive.state.seizures] == [SeizureState.PERMANENT]
    active = rules.set_inactive_cells(inactive.state, "memberA", [], later).state
    outcome = rules.restore(active, "hostA1.example.com", later)
    assert outcome.values["RestoredCores"] == 4
    assert outcome.values["Detail"] == ""  # all came back: nothing to explain
    assert (
        outcome.actions[0].text
        == "4 core usage rights were restored to nPar npar0 of member memberA."
    )
