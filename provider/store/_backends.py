"""The two backends behind the store: a URL parser and one raw connection class per engine.

A `RawConnection` is owned by one thread (see `Store`); it knows how to begin a read or a write
transaction on its engine, run one statement, and turn the engine's exceptions into ours.
This is the one place where sqlite3 and psycopg exceptions become `StoreError`s
(`raise ... from exc`, as httpx maps lower-layer errors at one boundary).
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import psycopg.errors

from provider.errors import ConfigError, StoreError

from ._sql import Dialect, translate

__all__ = [
    "ConstraintViolation",
    "PostgresConnection",
    "RawConnection",
    "Row",
    "SqliteConnection",
    "StoreURL",
    "parse_url",
]

Row = tuple[Any, ...]


class ConstraintViolation(StoreError):
    """A UNIQUE, CHECK, NOT NULL or FOREIGN KEY constraint refused a write.

    Domain code may catch it where losing a race is expected (ha-jobs-style.md B.2: a
    UniqueViolation on the one-running-job index means "another claim won; try again"). Like
    every statement error it aborts the transaction: leave the `with` block and retry.
    """

    def __init__(self, description: str, constraint: str | None) -> None:
        super().__init__(description)
        self.constraint = constraint


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL: which engine, and how to reach it."""

    dialect: Dialect
    sqlite_path: Path | None = None
    busy_timeout_ms: int = 10_000
    conninfo: str = ""
    statement_timeout_ms: int = 10_000
    idle_in_transaction_timeout_ms: int = 10_000

    def redacted(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite://{self.sqlite_path}"
        parts = urllib.parse.urlsplit(self.conninfo)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{parts.username or ''}@{host}{port}{parts.path}"


# Connection defaults for PostgreSQL (ha-jobs-style.md A.7.3): a dead peer or a frozen old
# active must not hold a connection, or its FOR SHARE lock, forever.
_PG_DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "application_name": "gm-provider",
}
# Our own query parameters, removed before the URL reaches libpq (which refuses unknown ones).
_PG_OWN = ("statement_timeout", "idle_in_transaction_session_timeout")


def _int_param(params: dict[str, list[str]], name: str, default: int, url: str) -> int:
    values = params.pop(name, None)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise ConfigError(f"store URL {url!r}: {name} must be an integer (milliseconds)") from None
    if value < 0:
        raise ConfigError(f"store URL {url!r}: {name} must not be negative")
    return value


def parse_url(url: str) -> StoreURL:
    """`sqlite:///abs/path.db`, `sqlite:relative/path.db` or `postgresql://...` (libpq URL).

    SQLite takes `?busy_timeout=<ms>`; PostgreSQL takes every libpq parameter plus
    `statement_timeout` and `idle_in_transaction_session_timeout` (ms).
    """
    parts = urllib.parse.urlsplit(url)
    params = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    if parts.scheme == "sqlite":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"store URL {url!r}: a SQLite store is a local file, not a host")
        path = urllib.parse.unquote(parts.path)
        if not path.strip("/") or path.lstrip("/") == ":memory:":
            raise ConfigError(
                f"store URL {url!r}: name a database file; an in-memory database cannot be "
                "shared between the connections of the store"
            )
        busy = _int_param(params, "busy_timeout", 10_000, url)
        if params:
            raise ConfigError(f"store URL {url!r}: unknown parameter(s) {sorted(params)}")
        return StoreURL("sqlite", sqlite_path=Path(path), busy_timeout_ms=busy)
    if parts.scheme in ("postgresql", "postgres"):
        statement = _int_param(params, "statement_timeout", 10_000, url)
        idle = _int_param(params, "idle_in_transaction_session_timeout", 10_000, url)
        for key, value in _PG_DEFAULTS.items():
            params.setdefault(key, [value])
        # quote, not quote_plus: libpq decodes %20 but takes '+' literally.
        query = urllib.parse.urlencode(params, doseq=True, quote_via=urllib.parse.quote)
        conninfo = urllib.parse.urlunsplit(
            ("postgresql", parts.netloc, parts.path, query, parts.fragment)
        )
        return StoreURL(
            "postgresql",
            conninfo=conninfo,
            statement_timeout_ms=statement,
            idle_in_transaction_timeout_ms=idle,
        )
    raise ConfigError(
        f"store URL {url!r}: the scheme must be sqlite: or postgresql: (got {parts.scheme!r})"
    )


class RawConnection(Protocol):
    """What the store needs from one engine connection. Owned by one thread at a time."""

    dialect: Dialect

    @property
    def usable(self) -> bool: ...

    def begin(self, write: bool) -> None: ...

    def begin_statement(self) -> None:
        """The next statement runs alone, outside a transaction block, and must be a query.

        Both connections are in autocommit mode, so that statement is its own transaction
        and reads one snapshot; nothing needs to be committed or rolled back after it.
        """
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def run(self, sql: str, params: Mapping[str, Any]) -> tuple[list[Row], int]:
        """Run portable SQL; returns (rows, rowcount). Rows are empty for non-queries."""
        ...

    def run_script(self, script: str) -> None:
        """Run engine-native SQL statements (migrations), no parameter processing."""
        ...

    def close(self) -> None: ...


def _gm_now() -> float:
    # The store's clock on SQLite: this host's wall clock, shared by every process on it.
    return time.time()


def _journal_mode_wal(db: sqlite3.Connection, timeout: float) -> Any:
    """Switch a database file to WAL mode (a no-op when it is already), retrying while locked.

    Switching the journal mode needs the file's exclusive lock, and SQLite answers "database
    is locked" at once, without its busy handler (waiting could deadlock), when another
    connection holds the file's write lock meanwhile: processes opening a new store together
    (the pair's two nodes, a service and `gm-admin` started by one script) would fail at
    random. So the switch is retried, with a growing pause, for as long as the store's busy
    timeout allows.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            return db.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class SqliteConnection:
    """sqlite3 in autocommit mode, so that we say BEGIN / BEGIN IMMEDIATE ourselves."""

    dialect: Dialect = "sqlite"

    def __init__(self, url: StoreURL) -> None:
        assert url.sqlite_path is not None
        try:
            url.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False only so that Store.close() may close a connection from
            # another thread; in use, each connection belongs to one thread.
            self._db = sqlite3.connect(
                str(url.sqlite_path),
                timeout=url.busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(url.busy_timeout_ms)}")
            mode = _journal_mode_wal(self._db, url.busy_timeout_ms / 1000)
            if mode is None or str(mode[0]).lower() != "wal":
                raise StoreError(
                    f"SQLite store {url.sqlite_path}: cannot use WAL mode (got {mode!r}); "
                    "the store needs a local file system"
                )
            # FULL: a commit is on disk when COMMIT returns, even in WAL mode (NORMAL would
            # lose the last transactions on power loss, and a fenced write must be durable).
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.create_function("gm_now", 0, _gm_now)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {url.sqlite_path}: {exc}") from exc
        self._read_only = False

    @property
    def usable(self) -> bool:
        return True

    def _map(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.IntegrityError):
            return ConstraintViolation(f"SQLite: {exc}", None)
        return StoreError(f"SQLite: {exc}")

    def begin(self, write: bool) -> None:
        # A read transaction is one WAL snapshot, and `run` refuses a write in it as
        # PostgreSQL's READ ONLY transaction does. Not `PRAGMA query_only`: setting it
        # expires every prepared statement of the connection, and a job thread that
        # alternates reads and writes re-prepared all its statements at every switch.
        self._read_only = not write
        try:
            if write:
                # IMMEDIATE takes the database's write lock now (waiting up to busy_timeout),
                # so two writers never both read and then fail to upgrade: writers are
                # serialised, and everything a writer reads stays true until it commits.
                self._db.execute("BEGIN IMMEDIATE")
            else:
                self._db.execute("BEGIN")
        except sqlite3.Error as exc:
            raise self._map(exc) from exc

    def begin_statement(self) -> None:
        self._read_only = True

    def commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._map(exc) from exc

    def rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._map(exc) from exc

    def run(self, sql: str, params: Mapping[str, Any]) -> tuple[list[Row], int]:
        text = translate(sql, "sqlite")
        if self._read_only and not _is_query(text):
            raise StoreError(
                f"SQLite: {_first_word(text)} in a read-only transaction; "
                "changes go through a write transaction"
            )
        try:
            # sqlite3 rows are tuples already (no row_factory is set on this connection).
            cur = self._db.execute(text, params if type(params) is dict else dict(params))
            rows: list[Row] = cur.fetchall() if cur.description else []
        except sqlite3.Error as exc:
            raise self._map(exc) from exc
        return rows, cur.rowcount

    def run_script(self, script: str) -> None:
        # Not executescript(): it commits the open transaction first. complete_statement()
        # knows where a statement ends (including CREATE TRIGGER ... BEGIN ...; END;).
        pending = ""
        try:
            for line in script.splitlines(keepends=True):
                pending += line
                if sqlite3.complete_statement(pending):
                    self._db.execute(pending)
                    pending = ""
            if pending.strip() and not _only_comments(pending):
                # A last statement without its semicolon is accepted, as psql does.
                if not sqlite3.complete_statement(pending + ";"):
                    raise StoreError(f"SQLite: incomplete statement at end of script: {pending!r}")
                self._db.execute(pending)
        except sqlite3.Error as exc:
            raise self._map(exc) from exc

    def close(self) -> None:
        self._db.close()


_COMMENT = re.compile(r"\s*(--[^\n]*\n?|/\*.*?\*/)", re.DOTALL)


def _first_word(sql: str) -> str:
    pos = 0
    while (m := _COMMENT.match(sql, pos)) is not None and m.end() > pos:
        pos = m.end()
    words = sql[pos:].split(None, 1)
    return words[0].upper() if words else ""


@functools.lru_cache(maxsize=1024)
def _is_query(sql: str) -> bool:
    """A statement a read-only transaction may run: it reads, it does not write or define."""
    head = _first_word(sql)
    if head in ("SELECT", "VALUES", "EXPLAIN"):
        return True
    if head == "WITH":  # a CTE may lead an INSERT/UPDATE/DELETE as well as a SELECT
        return re.search(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", sql, re.IGNORECASE) is None
    return False  # INSERT, UPDATE, DELETE, REPLACE, CREATE, PRAGMA (it may set), ...


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


class PostgresConnection:
    """psycopg 3 in autocommit mode with explicit BEGIN, READ COMMITTED for writes."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: StoreURL) -> None:
        try:
            self._db = psycopg.connect(url.conninfo, autocommit=True)
            # Session settings (ha-jobs-style.md A.7.3): bound every statement, and end a
            # transaction left idle (a frozen old active) so its FOR SHARE lock on the lease
            # row cannot delay a takeover for longer than this.
            self._db.execute(
                "SELECT set_config('statement_timeout', %(st)s, false),"
                " set_config('idle_in_transaction_session_timeout', %(idle)s, false),"
                " set_config('default_transaction_isolation', 'read committed', false),"
                " set_config('TimeZone', 'UTC', false)",
                {
                    "st": str(url.statement_timeout_ms),
                    "idle": str(url.idle_in_transaction_timeout_ms),
                },
            )
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store {url.redacted()}: {exc}") from exc
        self._read_only = False

    @property
    def usable(self) -> bool:
        return not self._db.closed and not self._db.broken

    def _map(self, exc: psycopg.Error) -> StoreError:
        if isinstance(exc, psycopg.errors.IntegrityError):
            constraint = exc.diag.constraint_name if exc.diag is not None else None
            return ConstraintViolation(f"PostgreSQL: {exc}", constraint)
        return StoreError(f"PostgreSQL: {exc}")

    def begin(self, write: bool) -> None:
        # Reads see one snapshot (REPEATABLE READ, READ ONLY: never a serialisation failure);
        # writes use READ COMMITTED with explicit row locks, as ha-jobs-style.md A.5 advises.
        statement = "BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        self._read_only = False  # PostgreSQL itself refuses writes in a READ ONLY transaction
        try:
            self._db.execute(statement)
        except psycopg.Error as exc:
            raise self._map(exc) from exc

    def begin_statement(self) -> None:
        self._read_only = True

    def commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except psycopg.Error as exc:
            raise self._map(exc) from exc

    def rollback(self) -> None:
        if not self.usable:
            return
        try:
            self._db.execute("ROLLBACK")
        except psycopg.Error as exc:
            raise self._map(exc) from exc

    def run(self, sql: str, params: Mapping[str, Any]) -> tuple[list[Row], int]:
        # Always pass a mapping, even an empty one: psycopg then applies the % rules
        # (%% -> %) exactly as SQLite's translation does.
        text = translate(sql, "postgresql")
        if self._read_only and not _is_query(text):
            raise StoreError(
                f"PostgreSQL: {_first_word(text)} in a single-statement read; "
                "changes go through a write transaction"
            )
        try:
            cur = self._db.execute(text, dict(params))
            rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
            return rows, cur.rowcount
        except psycopg.Error as exc:
            raise self._map(exc) from exc

    def run_script(self, script: str) -> None:
        # Without parameters psycopg sends the text as one simple query: several statements,
        # no % processing.
        try:
            self._db.execute(script.encode())
        except psycopg.Error as exc:
            raise self._map(exc) from exc

    def close(self) -> None:
        self._db.close()
