"""`CapacityState.clone()`: what every rule changes instead of its input.

The rules are pure only if the clone shares no mutable object with the state it was made
from: the service keeps the state it loaded (`before`) to save the difference, and the CIM
layer reads the last state while the next change is computed. These tests walk both
structures and check that no list, dict, set or dataclass instance is shared, that the clone
is equal to the original field for field, and that mutating everything in the clone leaves
the original as it was. The strategies set every field of every model class; a field added
to the model without a strategy fails `test_strategies_set_every_field`, and one missing from
a `clone()` then fails the equality test.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from provider.gicap import rules
from provider.gicap.inventory import parse_capacity_inventory
from provider.gicap.model import (
    CapacityState,
    Cell,
    Complex,
    Group,
    Partition,
    Seizure,
    SeizureState,
)

INVENTORY = Path(__file__).parent / "inventory.toml"

names = st.text("abcxyz019-. ", min_size=1, max_size=8)
hosts = st.lists(st.text("abc.0", min_size=1, max_size=6), max_size=3)
counts = st.integers(-50, 50)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
maybe_times = st.none() | times

# Every field of every model class, by class; the strategies of the containers build on the
# classes before them.
FIELDS: dict[type[Any], dict[str, st.SearchStrategy[Any]]] = {}
FIELDS[Cell] = {"name": names, "cores": counts, "active": st.booleans()}
FIELDS[Partition] = {
    "name": names,
    "hosts": hosts,
    "cells": st.lists(st.builds(Cell, **FIELDS[Cell]), max_size=4),
    "intended": counts,
    "actual": counts,
    "vpars": st.dictionaries(names, hosts, max_size=3),
}
FIELDS[Complex] = {
    "name": names,
    "partitions": st.lists(st.builds(Partition, **FIELDS[Partition]), max_size=3),
    "owned_rights": counts,
    "rights": counts,
    "ticap_minutes": counts,
    "ticap_charged_until": maybe_times,
    "member": st.none() | names,
    "group": st.none() | names,
    "member_hosts": hosts,
    "reachable": st.none() | st.booleans(),
}
FIELDS[Group] = {
    "name": names,
    "description": st.text(max_size=10),
    "free_rights": counts,
    "ticap_minutes": counts,
    "ticap_reminder_at": maybe_times,
    "out_of_compliance_since": maybe_times,
}
FIELDS[Seizure] = {
    "id": names,
    "member": names,
    "partition": names,
    "host": names,
    "cores": counts,
    "deferred": st.booleans(),
    "seized_at": times,
    "expires_at": maybe_times,
    "state": st.sampled_from(SeizureState),
    "intended_before": counts,
    "rebooted": st.booleans(),
    "all_cores_assumed": st.booleans(),
    "expiry_warned": st.booleans(),
}
FIELDS[CapacityState] = {
    "sharing_rights": counts,
    "groups": st.dictionaries(names, st.builds(Group, **FIELDS[Group]), max_size=3),
    "complexes": st.dictionaries(names, st.builds(Complex, **FIELDS[Complex]), max_size=4),
    "seizures": st.lists(st.builds(Seizure, **FIELDS[Seizure]), max_size=4),
}
states = st.builds(CapacityState, **FIELDS[CapacityState])

MUTABLE = (list, dict, set)


def _mutable(value: Any) -> bool:
    if isinstance(value, MUTABLE):
        return True
    params = getattr(type(value), "__dataclass_params__", None)
    return params is not None and not params.frozen


def _children(value: Any) -> Iterator[Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield getattr(value, f.name)
    elif isinstance(value, dict):
        yield from value.keys()
        yield from value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        yield from value


def _walk(value: Any) -> Iterator[Any]:
    """Every object reachable from `value` through dataclass fields and containers."""
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend(_children(item))


def _mutable_ids(value: Any) -> dict[int, Any]:
    return {id(v): v for v in _walk(value) if _mutable(v)}


def _assert_same_shape(a: Any, b: Any, where: str = "state") -> None:
    """Walk both side by side: the same types and the same immutable values everywhere."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        for f in dataclasses.fields(a):
            _assert_same_shape(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys (or their order) differ"
        for key in a:
            _assert_same_shape(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_shape(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def _assert_clone_ok(state: CapacityState) -> CapacityState:
    clone = state.clone()
    assert clone == state
    _assert_same_shape(state, clone)
    shared = _mutable_ids(state).keys() & _mutable_ids(clone).keys()
    assert not shared, f"shared mutable objects: {[_mutable_ids(state)[i] for i in shared]}"
    return clone


def _mutate_everything(root: Any) -> int:
    """Change every mutable object reachable from `root`; returns how many were changed."""
    targets = [v for v in _walk(root) if _mutable(v)]
    marker = object()
    for v in targets:
        if isinstance(v, list):
            v.append(marker)
        elif isinstance(v, dict):
            v[marker] = marker
        elif isinstance(v, set):
            v.add(marker)
        else:
            for f in dataclasses.fields(v):
                object.__setattr__(v, f.name, marker)
    return len(targets)


def test_strategies_set_every_field() -> None:
    """A field added to the model needs a strategy here (and a line in its clone())."""
    for cls, strategies in FIELDS.items():
        assert set(strategies) == {f.name for f in dataclasses.fields(cls)}, cls.__name__


@settings(max_examples=200, deadline=None)
@given(states)
def test_clone_is_equal_and_shares_no_mutable_object(state: CapacityState) -> None:
    _assert_clone_ok(state)


@settings(max_examples=200, deadline=None)
@given(states)
def test_mutating_the_clone_never_changes_the_original(state: CapacityState) -> None:
    oracle = copy.deepcopy(state)
    clone = state.clone()
    _mutate_everything(clone)
    assert state == oracle
    _assert_same_shape(oracle, state)


@settings(max_examples=100, deadline=None)
@given(states)
def test_mutating_the_original_never_changes_the_clone(state: CapacityState) -> None:
    clone = state.clone()
    oracle = copy.deepcopy(clone)
    _mutate_everything(state)
    assert clone == oracle


def _example_state() -> CapacityState:
    state = parse_capacity_inventory(INVENTORY.read_text(encoding="utf-8"), INVENTORY)
    now = datetime(2024, 1, 1, tzinfo=UTC)
    for cx in state.complexes.values():
        if cx.group is not None and cx.partitions[0].hosts:
            host = cx.partitions[0].hosts[0]
            down = {h: False for h in cx.all_hosts}
            state = rules.seize(state, host, down, now).state
            break
    state = rules.periodic(state, now + timedelta(hours=13), {}).state
    return state


def test_clone_of_a_real_state() -> None:
    """The example inventory with a seizure, the 12-hour rule and TiCAP charged: every kind
    of object (vPars, inactive cells, seizures, timestamps) is present and copied."""
    state = _example_state()
    assert state.seizures and any(p.vpars for c in state.complexes.values() for p in c.partitions)
    clone = _assert_clone_ok(state)
    assert _mutate_everything(clone) > len(state.complexes) + len(state.seizures)


def test_changes_a_rule_makes_stay_in_the_clone() -> None:
    """The changes the rules make (fields, list items, dict values) do not reach back."""
    state = _example_state()
    oracle = copy.deepcopy(state)
    clone = state.clone()
    cx = next(c for c in clone.complexes.values() if c.group is not None)
    part = cx.partitions[0]
    part.cells[0].active = not part.cells[0].active
    part.hosts.append("new.example.com")
    part.intended += 1
    for vpar_hosts in part.vpars.values():
        vpar_hosts.append("vpar.example.com")
    cx.member_hosts.append("new.example.com")
    cx.rights -= 1
    clone.seizures[0].state = SeizureState.RESTORED
    clone.seizures.append(clone.seizures[0].clone())
    next(iter(clone.groups.values())).free_rights += 5
    clone.groups["new"] = Group("new")
    del clone.complexes[cx.name]
    assert state == oracle
