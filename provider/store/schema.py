"""Versioned schema migrations, one series per module, applied at start under a lock.

How a module adds its tables (no file of the store needs to change):

1. Create `provider/<module>/migrations/` (a plain directory; no `__init__.py` needed).
2. Add `NNNN_<what>.sql` files, `NNNN` a 4-digit version counting up from 0001 within the
   module: `provider/jobs/migrations/0001_failover_jobs.sql`.
3. In a file, text before any marker is run on both engines. A line
   `-- dialect: postgresql`, `-- dialect: sqlite` or `-- dialect: both` starts a section for
   that engine only (or for both again). Sections are engine-native SQL (no `%(name)s`
   processing), several statements separated by `;`.
4. Never edit a migration once it has been applied anywhere: its checksum is recorded, and a
   changed file stops the store at start (StoreError naming the file). Add a new version.

`open_store()` finds every `provider/*/migrations/*.sql` and applies those not yet recorded in
`schema_migrations (module, version)`: the store's own series first, then the other modules in
alphabetical order, each in version order, all in one transaction (DDL is transactional on
both engines), so a failure leaves nothing half-applied. The transaction first takes a lock
that serialises every process starting at once: `pg_advisory_xact_lock` on PostgreSQL (taken
before even `CREATE TABLE IF NOT EXISTS schema_migrations`, which itself races), the database
write lock of `BEGIN IMMEDIATE` on SQLite. The second process waits, then finds nothing to do.

A migration may depend on the store's tables and on earlier versions of its own module only.
Tests may pass their own `Migration` objects to `open_store(migrations=...)`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

from provider.errors import ConfigError, StoreError

from ._sql import Dialect

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Migration", "apply_migrations", "discover_migrations", "parse_migration"]

log = logging.getLogger(__name__)

STORE_MODULE = "store"
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_MARKER = re.compile(r"^--\s*dialect:\s*(?P<which>sqlite|postgresql|both)\s*$", re.IGNORECASE)
# Any constant: the key of the advisory lock that serialises migrating processes ("gm_mig").
_PG_MIGRATION_LOCK = 0x676D5F6D6967


@dataclass(frozen=True)
class Migration:
    """One version of one module's schema, with its text for each engine."""

    module: str
    version: int
    name: str
    sqlite: str
    postgresql: str

    def sql(self, dialect: Dialect) -> str:
        return self.sqlite if dialect == "sqlite" else self.postgresql

    def checksum(self, dialect: Dialect) -> str:
        return hashlib.sha256(self.sql(dialect).encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.module}/{self.version:04d}_{self.name}"


def parse_migration(module: str, file_name: str, text: str) -> Migration:
    """A migration from its file name (`NNNN_name.sql`) and text with dialect sections."""
    match = _FILE_NAME.match(file_name)
    if match is None:
        raise ConfigError(
            f"migration {module}/{file_name}: the name must be NNNN_lowercase_words.sql"
        )
    parts: dict[str, list[str]] = {"sqlite": [], "postgresql": []}
    targets: tuple[str, ...] = ("sqlite", "postgresql")
    for line in text.splitlines(keepends=True):
        marker = _MARKER.match(line.strip())
        if marker is not None:
            which = marker.group("which").lower()
            targets = ("sqlite", "postgresql") if which == "both" else (which,)
            continue
        for target in targets:
            parts[target].append(line)
    return Migration(
        module=module,
        version=int(match.group("version")),
        name=match.group("name"),
        sqlite="".join(parts["sqlite"]),
        postgresql="".join(parts["postgresql"]),
    )


def _sql_files(directory: Traversable) -> Iterable[Traversable]:
    return sorted(
        (f for f in directory.iterdir() if f.is_file() and f.name.endswith(".sql")),
        key=lambda f: f.name,
    )


def discover_migrations(package: str = "provider") -> list[Migration]:
    """Every `<package>/<module>/migrations/NNNN_*.sql`, in the order they are applied."""
    found: list[Migration] = []
    root = importlib.resources.files(package)
    for module_dir in root.iterdir():
        if not module_dir.is_dir() or module_dir.name.startswith(("_", ".")):
            continue
        migrations_dir = module_dir / "migrations"
        if not migrations_dir.is_dir():
            continue
        for sql_file in _sql_files(migrations_dir):
            found.append(parse_migration(module_dir.name, sql_file.name, sql_file.read_text()))
    return ordered(found)


def ordered(migrations: Iterable[Migration]) -> list[Migration]:
    """The store's series first, then modules alphabetically; refuses duplicate versions."""
    result = sorted(migrations, key=lambda m: (m.module != STORE_MODULE, m.module, m.version))
    seen: set[tuple[str, int]] = set()
    for migration in result:
        key = (migration.module, migration.version)
        if key in seen:
            raise ConfigError(f"migration {migration.label}: version {migration.version:04d} twice")
        seen.add(key)
    return result


_CREATE_TABLE = {
    "postgresql": """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            module     text             NOT NULL,
            version    integer          NOT NULL,
            name       text             NOT NULL,
            checksum   text             NOT NULL,
            applied_at double precision NOT NULL,
            PRIMARY KEY (module, version))""",
    "sqlite": """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            module     TEXT    NOT NULL,
            version    INTEGER NOT NULL,
            name       TEXT    NOT NULL,
            checksum   TEXT    NOT NULL,
            applied_at REAL    NOT NULL,
            PRIMARY KEY (module, version))""",
}


def apply_migrations(store: Store, migrations: Sequence[Migration]) -> list[Migration]:
    """Apply those not yet recorded; returns what this call applied (empty the second time)."""
    dialect = store.dialect
    applied_now: list[Migration] = []
    with store._write() as tx:
        if dialect == "postgresql":
            tx.execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": _PG_MIGRATION_LOCK})
        tx.run_script(_CREATE_TABLE[dialect])
        recorded = {
            (module, version): checksum
            for module, version, checksum in tx.fetchall(
                "SELECT module, version, checksum FROM schema_migrations"
            )
        }
        for migration in ordered(migrations):
            key = (migration.module, migration.version)
            if key in recorded:
                if recorded[key] != migration.checksum(dialect):
                    raise StoreError(
                        f"migration {migration.label} was changed after it was applied to this "
                        "store; add a new version instead of editing an applied one"
                    )
                continue
            log.info("applying migration %s (%s)", migration.label, dialect)
            tx.run_script(migration.sql(dialect))
            tx.execute(
                "INSERT INTO schema_migrations (module, version, name, checksum, applied_at)"
                " VALUES (%(module)s, %(version)s, %(name)s, %(checksum)s, %(at)s)",
                {
                    "module": migration.module,
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum(dialect),
                    "at": time.time(),
                },
            )
            applied_now.append(migration)
    return applied_now
