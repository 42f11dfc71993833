"""The transition table: every (role, event) pair maps or raises IllegalTransition."""

from __future__ import annotations

import itertools

import pytest

from provider.roles import TRANSITIONS, Event, IllegalTransition, Role, RoleMachine, next_role

DEMOTIONS = (Event.SUPERSEDED, Event.RENEW_FAILED, Event.LEASE_EXPIRED)

EXPECTED = {
    (Role.STANDBY, Event.LEASE_ACQUIRED): Role.ACTIVE,
    (Role.STANDBY, Event.TAKE_CONTROL): Role.ACTIVE,
    (Role.ACTIVE, Event.TAKE_CONTROL): Role.ACTIVE,
    (Role.ACTIVE, Event.LEASE_RENEWED): Role.ACTIVE,
    (Role.ACTIVE, Event.STEP_DOWN): Role.STANDBY,
    (Role.ACTIVE, Event.SHUTDOWN): Role.STOPPED,
    (Role.STANDBY, Event.SHUTDOWN): Role.STOPPED,
    **{(Role.ACTIVE, e): Role.STANDBY for e in DEMOTIONS},
    **{(Role.STANDBY, e): Role.STANDBY for e in DEMOTIONS},
    **{(Role.STOPPED, e): Role.STOPPED for e in DEMOTIONS},
}


@pytest.mark.parametrize(("role", "event"), list(itertools.product(Role, Event)))
def test_every_pair_either_maps_or_raises(role: Role, event: Event) -> None:
    if (role, event) in EXPECTED:
        assert next_role(role, event) is EXPECTED[(role, event)]
    else:
        with pytest.raises(IllegalTransition) as caught:
            next_role(role, event)
        assert caught.value.role is role and caught.value.event is event
        assert role.name in str(caught.value) and event.name in str(caught.value)


def test_the_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


def test_only_a_new_epoch_leaves_standby() -> None:
    leaving = {e for (r, e), new in TRANSITIONS.items() if r is Role.STANDBY and new is Role.ACTIVE}
    assert leaving == {Event.LEASE_ACQUIRED, Event.TAKE_CONTROL}


def test_demotion_never_fails_and_stopped_is_terminal() -> None:
    for role in Role:
        for event in DEMOTIONS:
            assert next_role(role, event) is not Role.ACTIVE
    assert {new for (r, _), new in TRANSITIONS.items() if r is Role.STOPPED} == {Role.STOPPED}


def test_machine_starts_standby_and_an_illegal_event_changes_nothing() -> None:
    machine = RoleMachine()
    assert machine.role is Role.STANDBY
    with pytest.raises(IllegalTransition, match="STEP_DOWN in role STANDBY"):
        machine.process(Event.STEP_DOWN)
    assert machine.role is Role.STANDBY
    assert machine.process(Event.TAKE_CONTROL) is Role.ACTIVE
    assert machine.process(Event.SUPERSEDED) is Role.STANDBY


def test_role_values_are_what_the_cim_layer_shows() -> None:
    assert (Role.ACTIVE.value, Role.STANDBY.value) == ("active", "standby")
