"""The state store: one API over SQLite (embedded, one host) and PostgreSQL (two hosts).

    store = open_store("sqlite:///var/lib/gm-provider/gm.db")   # or "postgresql://..."
    with store.read() as tx:                                     # any role
        rows = tx.fetchall("SELECT name FROM gm_nodes WHERE role = %(r)s", {"r": "active"})
    with role_manager.fenced("move a profile") as tx:            # the active only
        tx.execute("UPDATE ... WHERE id = %(id)s", {"id": 7})    # commits at the end

Domain code does not call `store.fenced()` itself: `RoleManager.fenced()` (provider.roles)
adds the local lease deadline and turns `Fenced` into a demotion first.

Backends (selected by the URL, see `parse_url`):

* `sqlite:///abs/path/gm.db` (or `sqlite:relative/gm.db`), `?busy_timeout=<ms>` (default
  10000): WAL, `synchronous=FULL` (a commit is durable when it returns), `foreign_keys=ON`.
  Several processes on one host share the file; a write transaction is `BEGIN IMMEDIATE`, so
  writers queue on the database write lock for up to busy_timeout. A writer frozen inside a
  transaction (SIGSTOP) holds that lock until it resumes or dies; keep write transactions short
  and never wait on a device inside one.
* `postgresql://user@host:port/db?...`: psycopg 3; writes READ COMMITTED with explicit row
  locks, reads REPEATABLE READ READ ONLY; defaults `connect_timeout=5`, TCP keepalives
  (5 s idle, 2 s interval, 3 probes), and our own `statement_timeout` and
  `idle_in_transaction_session_timeout` (ms, both default 10000) set on each session.

The portable SQL subset (what domain code may write; everything else needs `tx.dialect`):

* Parameters `%(name)s` with a mapping; a literal `%` is `%%`. No `%s`, `?` or `:name`.
* Types: INTEGER/BIGINT, TEXT, REAL/DOUBLE PRECISION, BOOLEAN. SQLite returns booleans as
  0/1: compare in SQL (`WHERE locked = TRUE`) and wrap reads in `bool()`. Times: Unix seconds
  in a DOUBLE PRECISION (REAL) column, stamped with `gm_now()` (the store's clock on both
  engines) or passed in from Python. No timestamp types, no `now()`.
* SELECT / INSERT / UPDATE / DELETE with WHERE, JOIN, GROUP BY, ORDER BY, LIMIT, subqueries,
  `EXISTS`, common table expressions (`WITH`), `RETURNING`, `COALESCE`, `CASE`, and upserts
  `INSERT ... ON CONFLICT (cols) DO UPDATE SET c = excluded.c` / `DO NOTHING`.
* Row locks `FOR UPDATE [SKIP LOCKED]`, `FOR SHARE`: kept on PostgreSQL, dropped on SQLite,
  whose write transaction already holds the whole database (see `_sql.py`).
* Not portable: `ILIKE`, `::` casts, arrays, JSON operators, `SERIAL`/identity columns (DDL
  lives in the per-engine sections of migrations), `now()`/`clock_timestamp()`, `LISTEN`.
* A statement error aborts the transaction on both engines (`ConstraintViolation` for
  UNIQUE/CHECK/NOT NULL/FK): leave the `with` block and retry in a new transaction.

Schema: see `provider.store.schema` for how a module adds its migration files.

Threads: each thread gets its own connection (see `provider.store.store`); never call the
store from the asyncio loop's thread.
"""

from __future__ import annotations

from ._backends import ConstraintViolation, Row, StoreURL, parse_url
from ._sql import Dialect, translate
from .schema import Migration, apply_migrations, discover_migrations, parse_migration
from .store import FencedTx, Lease, NodeReport, Store, Tx, open_store

__all__ = [
    "ConstraintViolation",
    "Dialect",
    "FencedTx",
    "Lease",
    "Migration",
    "NodeReport",
    "Row",
    "Store",
    "StoreURL",
    "Tx",
    "apply_migrations",
    "discover_migrations",
    "open_store",
    "parse_migration",
    "parse_url",
    "translate",
]
