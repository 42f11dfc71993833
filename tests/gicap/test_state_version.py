"""The store's version of the capacity state (migration 0002) and the service's use of it.

Every write to a gicap_ table moves the version, hand edits included (triggers); the service
keeps the last state it read or wrote with its version and must see every change made
elsewhere: by another node on the same store, or by hand. Both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from provider.drivers.cron import CronSettings
from provider.drivers.notify import Notifier, NotifySettings
from provider.drivers.probe import ProbeSettings, StaticProber
from provider.errors import Refused
from provider.gicap import repo, rules
from provider.gicap.inventory import parse_capacity_inventory
from provider.gicap.model import CapacityState
from provider.gicap.service import CapacityService, GicapSettings
from provider.roles import Role
from provider.services import Services
from provider.store import Store, open_store

INVENTORY = Path(__file__).parent / "inventory.toml"


class _Roles:
    role = Role.ACTIVE

    def __init__(self, store: Store, epoch: int) -> None:
        self.store, self.epoch = store, epoch

    def fenced(self, what: str) -> AbstractContextManager[Any]:
        return self.store.fenced("test", self.epoch)


@pytest.fixture
def store(store_url: str) -> Iterator[tuple[Store, int]]:
    s = open_store(store_url)
    try:
        epoch = s.acquire("test", 600.0)
        assert epoch is not None
        state = parse_capacity_inventory(INVENTORY.read_text(encoding="utf-8"), INVENTORY)
        with s.fenced("test", epoch) as tx:
            repo.seed(tx, state, str(INVENTORY))
        yield s, epoch
    finally:
        s.close()


def _service(store: Store, epoch: int, tmp: Path) -> CapacityService:
    services = Services(
        node_name="test",
        config=None,
        store=store,
        roles=_Roles(store, epoch),
        etc_dir=tmp,
        state_dir=tmp,
        inventory_path=INVENTORY,
    )
    return CapacityService(
        services,
        GicapSettings(cron=CronSettings(target=str(tmp / "crontab"))),
        StaticProber(default_up=False),
        ProbeSettings(method="static"),
        Notifier(NotifySettings(), "test"),
    )


def _version(store: Store) -> int:
    with store.read() as tx:
        v = repo.version(tx)
    assert v is not None
    return v


def _sql(store: Store, epoch: int, sql: str) -> None:
    with store.fenced("test", epoch) as tx:
        tx.execute(sql)


def test_every_write_moves_the_version(store: tuple[Store, int]) -> None:
    s, epoch = store
    seen = [_version(s)]
    for sql in (
        "UPDATE gicap_groups SET description = 'by hand'",
        "UPDATE gicap_complexes SET rights = rights + 1 WHERE name = 'complexD'",
        "UPDATE gicap_partitions SET actual = 1 WHERE complex = 'complexD'",
        "INSERT INTO gicap_groups (name, description, free_rights, ticap_minutes)"
        " VALUES ('Group2', '', 0, 0)",
        "DELETE FROM gicap_groups WHERE name = 'Group2'",
        "DELETE FROM gicap_partitions WHERE complex = 'complexD'",
        "UPDATE gicap_settings SET sharing_rights = 65",
    ):
        _sql(s, epoch, sql)
        seen.append(_version(s))
    assert seen == sorted(set(seen)), seen
    with s.fenced("test", epoch) as tx:
        before = repo.load(tx)
        after = rules.describe_group(before, "Group1", "saved").state
        assert repo.save(tx, before, after) == 1
    assert _version(s) > seen[-1]
    current = _version(s)
    with s.fenced("test", epoch) as tx:
        assert repo.claim(tx) == current
        assert repo.version(tx) == current + 1


def test_the_service_sees_other_nodes_and_hand_edits(
    store: tuple[Store, int], tmp_path: Path
) -> None:
    s, epoch = store
    one, two = _service(s, epoch, tmp_path), _service(s, epoch, tmp_path)
    first = one.load_sync()
    assert one.load_sync() is first  # nothing changed: the known state, not a new load
    one.change_sync("x", lambda st: rules.describe_group(st, "Group1", "by one"))
    assert two.load_sync().groups["Group1"].description == "by one"

    def check_then_describe(st: CapacityState) -> rules.Outcome:
        assert st.groups["Group1"].description == "by two"  # one sees two's change
        return rules.describe_group(st, "Group1", "by one again")

    two.change_sync("x", lambda st: rules.describe_group(st, "Group1", "by two"))
    one.change_sync("x", check_then_describe)
    assert two.load_sync().groups["Group1"].description == "by one again"

    _sql(s, epoch, "UPDATE gicap_groups SET description = 'by hand'")
    assert one.load_sync().groups["Group1"].description == "by hand"
    assert one.snapshot().groups["Group1"].description == "by hand"
    _sql(s, epoch, "UPDATE gicap_settings SET sharing_rights = 99")
    assert one.load_sync().sharing_rights == 99


def test_a_refused_change_leaves_the_known_state_right(
    store: tuple[Store, int], tmp_path: Path
) -> None:
    s, epoch = store
    one = _service(s, epoch, tmp_path)
    _sql(s, epoch, "UPDATE gicap_groups SET description = 'by hand'")
    with pytest.raises(Refused):
        one.change_sync("x", lambda st: rules.remove_group(st, "Group1"))  # has members
    state = one.load_sync()
    assert state.groups["Group1"].description == "by hand"
    with s.read() as tx:
        assert repo.load(tx) == state
    out = one.change_sync("x", lambda st: rules.describe_group(st, "Group1", "after"))
    assert one.load_sync() is out.state
