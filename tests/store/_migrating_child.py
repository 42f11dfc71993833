"""Run in a child process: open the store (applying migrations) when the barrier opens."""

from __future__ import annotations

from typing import Any

from provider.store import Migration, open_store

from ._helpers import store_migrations


def open_after_barrier(url: str, extra: list[Migration], barrier: Any) -> list[str]:
    barrier.wait(timeout=30)
    store = open_store(url, migrations=[*store_migrations(), *extra])
    try:
        with store.read() as tx:
            return [
                f"{m}/{v}" for m, v in tx.fetchall("SELECT module, version FROM schema_migrations")
            ]
    finally:
        store.close()
