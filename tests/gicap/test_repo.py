"""`repo.save` writes exactly the difference of two states; `repo.load` reads it back.

A real SQLite store (the product's migrations). Every step applies a rule, saves the
difference in a fenced transaction and loads the store again: what was loaded must equal what
the rule returned, and an unchanged state must cost no statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provider.gicap import repo, rules
from provider.gicap.inventory import parse_capacity_inventory
from provider.gicap.model import CapacityState
from provider.store import Store, open_store

INVENTORY = Path(__file__).parent / "inventory.toml"
T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/gm.db")
    try:
        yield s
    finally:
        s.close()


def _comparable(state: CapacityState) -> Any:
    # The store gives seizures back ordered by (seized_at, id), complexes by name.
    return (
        state.sharing_rights,
        state.groups,
        state.complexes,
        sorted(state.seizures, key=lambda s: s.id),
    )


def _save(store: Store, epoch: int, before: CapacityState, after: CapacityState) -> int:
    with store.fenced("test", epoch) as tx:
        return repo.save(tx, before, after)


def _load(store: Store) -> CapacityState:
    with store.read() as tx:
        return repo.load(tx)


Step = Callable[[CapacityState], rules.Outcome]

STEPS: list[tuple[str, Step]] = [
    ("seize complete outage", lambda s: rules.seize(s, "hostB1.example.com", {}, T0)),
    (
        "seize with the rest up",
        lambda s: rules.seize(
            s, "hostA1.example.com", {"hostA2.example.com": True, "hostA3.example.com": True}, T0
        ),
    ),
    ("restore", lambda s: rules.restore(s, "hostA1.example.com", T0)),
    ("activate with TiCAP", lambda s: rules.activate(s, "hostC1.example.com", 2, True, T0)),
    ("periodic 13 h later", lambda s: rules.periodic(s, T0 + timedelta(hours=13), {})),
    ("inactive cells", lambda s: rules.set_inactive_cells(s, "memberB", ["npar0/cell1"], T0)),
    ("deactivate", lambda s: rules.deactivate(s, "hostC1.example.com", 1, T0)),
    ("check 11 days later", lambda s: rules.check_scavenged(s, {}, T0 + timedelta(days=11))),
    ("add group", lambda s: rules.add_group(s, "Group2", "second")),
    ("describe group", lambda s: rules.describe_group(s, "Group2", "the second group")),
    (
        "add member",
        lambda s: rules.add_member(s, "memberD", ["hostD1.example.com"], "Group2"),
    ),
    (
        "update member hosts",
        lambda s: rules.update_member_hosts(s, "memberD", ["hostD1.example.com"], []),
    ),
    ("remove member", lambda s: rules.remove_member(s, "memberD")),
    ("remove group", lambda s: rules.remove_group(s, "Group2")),
]


def test_each_rule_saves_its_difference_and_loads_back(store: Store) -> None:
    state = parse_capacity_inventory(INVENTORY.read_text(encoding="utf-8"), INVENTORY)
    epoch = store.acquire("test", 60.0)
    assert epoch is not None
    with store.fenced("test", epoch) as tx:
        repo.seed(tx, state, str(INVENTORY))
    assert _comparable(_load(store)) == _comparable(state)
    for name, step in STEPS:
        before = _load(store)
        after = step(before).state
        statements = _save(store, epoch, before, after)
        loaded = _load(store)
        assert _comparable(loaded) == _comparable(after), name
        assert (statements == 0) == (_comparable(before) == _comparable(after)), name
        assert _save(store, epoch, loaded, loaded.clone()) == 0, name


def test_only_the_changed_rows_are_written(store: Store) -> None:
    state = parse_capacity_inventory(INVENTORY.read_text(encoding="utf-8"), INVENTORY)
    epoch = store.acquire("test", 60.0)
    assert epoch is not None
    with store.fenced("test", epoch) as tx:
        repo.seed(tx, state, str(INVENTORY))
    before = _load(store)
    # A seizure changes its partition, its complex and the group, and adds one seizure row
    # (complexB has no unassigned rights).
    after = rules.seize(before, "hostB1.example.com", {}, T0).state
    assert _save(store, epoch, before, after) == 4
    # Only the description of a group: one row.
    again = _load(store)
    assert _save(store, epoch, again, rules.describe_group(again, "Group1", "x").state) == 1


def test_seize_restore_seize_in_one_second_keeps_two_seizures(store: Store) -> None:
    # A seizure's id is member/partition/unix-seconds; the second seizure of the same
    # partition in the same second gets its own id instead of overwriting the first.
    state = parse_capacity_inventory(INVENTORY.read_text(encoding="utf-8"), INVENTORY)
    epoch = store.acquire("test", 60.0)
    assert epoch is not None
    with store.fenced("test", epoch) as tx:
        repo.seed(tx, state, str(INVENTORY))
    up = {"hostA2.example.com": True, "hostA3.example.com": True}
    for step in (
        lambda s: rules.seize(s, "hostA1.example.com", up, T0),
        lambda s: rules.restore(s, "hostA1.example.com", T0),
        lambda s: rules.seize(s, "hostA1.example.com", up, T0),
    ):
        before = _load(store)
        _save(store, epoch, before, step(before).state)
    seizures = [s for s in _load(store).seizures if s.member == "complexA"]
    ids = [s.id for s in seizures]
    assert len(ids) == 2 and len(set(ids)) == 2, ids
    assert ids[1] == ids[0] + "-2"
    assert {s.state.value for s in seizures} == {"restored", "permanent"}
