"""Schema migrations: applied once, in order, idempotent, safe with processes racing."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from provider.errors import StoreError
from provider.store import Migration, apply_migrations, discover_migrations, open_store

from ._helpers import store_migrations
from ._migrating_child import open_after_barrier


def _widgets(version: int, extra_sql: str = "") -> Migration:
    sql = {
        1: "CREATE TABLE widget (name TEXT PRIMARY KEY, size INTEGER NOT NULL);",
        2: "ALTER TABLE widget ADD COLUMN colour TEXT;",
    }[version] + extra_sql
    return Migration("widgets", version, f"v{version}", sql, sql)


def test_the_store_finds_its_own_migration_first() -> None:
    found = discover_migrations()
    assert ("store", 1) in {(m.module, m.version) for m in found}
    assert found[0].module == "store"


def test_open_applies_migrations_once_and_a_second_open_changes_nothing(store_url: str) -> None:
    store = open_store(store_url, migrations=[*store_migrations(), _widgets(1)])
    try:
        assert apply_migrations(store, [*store_migrations(), _widgets(1)]) == []
        applied = apply_migrations(store, [*store_migrations(), _widgets(1), _widgets(2)])
        assert [m.label for m in applied] == ["widgets/0002_v2"]
        with store.read() as tx:
            rows = tx.fetchall("SELECT module, version FROM schema_migrations ORDER BY module")
            assert rows == [("store", 1), ("store", 2), ("widgets", 1), ("widgets", 2)]
            assert tx.fetchall("SELECT name, size, colour FROM widget") == []
            assert tx.scalar("SELECT count(*) FROM gm_leadership") == 1
    finally:
        store.close()
    again = open_store(store_url, migrations=[*store_migrations(), _widgets(1), _widgets(2)])
    again.close()


def test_an_edited_applied_migration_stops_the_store(store_url: str) -> None:
    open_store(store_url, migrations=[*store_migrations(), _widgets(1)]).close()
    edited = _widgets(1, "\nCREATE TABLE sneaky (x INTEGER);")
    with pytest.raises(StoreError, match="widgets/0001_v1 was changed"):
        open_store(store_url, migrations=[*store_migrations(), edited])


def test_a_failing_migration_leaves_nothing_half_applied(store_url: str) -> None:
    broken = Migration("widgets", 1, "broken", *(["CREATE TABLE ok (x INTEGER); NOT SQL;"] * 2))
    with pytest.raises(StoreError):
        open_store(store_url, migrations=[*store_migrations(), broken])
    store = open_store(store_url, migrate=False)
    try:
        # All or nothing: not even the store's own tables or schema_migrations exist.
        with pytest.raises(StoreError, match="gm_leadership"), store.read() as tx:
            tx.fetchall("SELECT * FROM gm_leadership")
    finally:
        store.close()


def test_processes_starting_together_apply_each_migration_once(store_url: str) -> None:
    extra = [_widgets(1), _widgets(2)]
    processes = 3
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        barrier = manager.Barrier(processes)
        futures = [
            pool.submit(open_after_barrier, store_url, extra, barrier) for _ in range(processes)
        ]
        results = [f.result(timeout=60) for f in futures]
    for applied in results:
        assert sorted(applied) == ["store/1", "store/2", "widgets/1", "widgets/2"]


def test_every_module_migration_applies_on_both_backends(store_url: str) -> None:
    """All `provider/*/migrations` files together: catches a dialect slip in any module."""
    store = open_store(store_url)
    try:
        assert apply_migrations(store, discover_migrations()) == []
    finally:
        store.close()
