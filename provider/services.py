"""The services a domain module gets when it installs itself into the server.

`provider.app.build` creates one `Services` and calls each domain's
`install(registry: ProviderRegistry, services: Services) -> None`, which registers instance
providers and methods (see `provider.cim.provider`) and may add background tasks. Domains talk
to each other only through these services, never through CIM or HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Services", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    node_name: str
    config: Any  # provider.config.Config
    store: Any  # provider.store.Store
    roles: Any  # provider.roles.RoleManager (also the CIM RoleGate)
    etc_dir: Path  # the product's etc/ (request files for cron live in etc_dir/requests)
    state_dir: Path
    inventory_path: Path  # `[inventory] path` in the configuration; the example by default
    clock: Callable[[], datetime] = utc_now  # injectable wall clock for time-driven rules
    # provider.audit.AuditLog: changes a domain starts on its own (an event's failover) are
    # audited like the requests that start them. None: not audited (tests of one domain).
    audit: Any = None
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)

    def add_background(self, task: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `task()` as an asyncio task for the life of the server (started after install)."""
        self.background.append(task)
