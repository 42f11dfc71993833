"""Helpers shared by the store and roles tests."""

from __future__ import annotations

from provider.store import Migration, Store, discover_migrations, open_store


def store_migrations() -> list[Migration]:
    """Only the store's own series: these tests must not depend on other modules' tables."""
    return [m for m in discover_migrations() if m.module == "store"]


def open_test_store(url: str) -> Store:
    return open_store(url, migrations=store_migrations())


def audit_rows(store: Store) -> list[tuple[int, str, str]]:
    with store.read() as tx:
        rows = tx.fetchall("SELECT epoch, node, what FROM gm_audit ORDER BY id")
    return [(int(e), str(n), str(w)) for e, n, w in rows]


def lapse_lease(store: Store) -> None:
    """As if the store's clock had run past the lease (its holder paused for longer)."""
    sql = {
        "sqlite": "UPDATE gm_leadership SET lease_until = gm_now() - 1",
        "postgresql": "UPDATE gm_leadership SET lease_until = clock_timestamp() - interval '1 s'",
    }[store.dialect]
    with store._write() as tx:
        tx.execute(sql)
