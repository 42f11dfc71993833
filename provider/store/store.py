"""The store: transactions on per-thread connections, the fenced write, the lease operations.

Theory of operation (ha-jobs-style.md A.7): the `gm_leadership` row is the arbiter between the
two Group Managers. Its `epoch` is the fencing token and only ever increases. Every write of
the active is a *fenced transaction* whose first statement re-reads that row, under a lock
that a takeover cannot pass, and checks holder, epoch and lease. A node that was superseded
therefore cannot commit anything after the new epoch exists: on PostgreSQL the takeover's
UPDATE waits for the FOR SHARE locks of open fenced writes; on SQLite both are serialised by
the database write lock of BEGIN IMMEDIATE.

Threads: a connection belongs to the thread that opened it (`threading.local`), created on
first use and kept for the thread's life; `close()` closes them all. The asyncio loop must not
call the store directly (every call blocks): run calls in a worker thread
(`await asyncio.to_thread(...)`), and each worker thread then has its own connection. One
thread runs one transaction at a time; nesting raises StoreError.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provider.errors import Fenced, StoreError

from ._backends import (
    PostgresConnection,
    RawConnection,
    Row,
    SqliteConnection,
    StoreURL,
    parse_url,
)
from ._lease_sql import lease_sql
from ._sql import Dialect
from .schema import Migration, apply_migrations, discover_migrations

__all__ = ["FencedTx", "Lease", "NodeReport", "Store", "Tx", "open_store"]

_NO_PARAMS: Mapping[str, Any] = {}


@dataclass(frozen=True)
class Lease:
    """The lease row as read, with the store's clock at that moment (Unix seconds)."""

    epoch: int
    holder: str  # '' before anyone ever held it
    lease_until: float  # -inf after a step-down or before the first acquire
    now: float  # the store's clock (PostgreSQL: clock_timestamp(); SQLite: host wall clock)

    @property
    def valid(self) -> bool:
        return self.holder != "" and self.lease_until > self.now

    @property
    def active_manager(self) -> str | None:
        """The node that is active as far as the store knows, or None."""
        return self.holder if self.valid else None

    @property
    def remaining(self) -> float:
        return max(0.0, self.lease_until - self.now)


@dataclass(frozen=True)
class NodeReport:
    """What a node last reported about itself (gm_nodes)."""

    node: str
    role: str
    epoch: int
    last_seen: float


class Tx:
    """One transaction. Statements use the portable subset (see `provider.store`).

    After a statement fails the transaction is aborted (as PostgreSQL does; we make SQLite
    behave the same): every later statement raises StoreError, and leaving the `with` block
    normally raises StoreError too, since nothing was committed.
    """

    def __init__(self, conn: RawConnection) -> None:
        self._conn = conn
        self._open = True
        self._failed: StoreError | None = None

    @property
    def dialect(self) -> Dialect:
        return self._conn.dialect

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> tuple[list[Row], int]:
        if not self._open:
            raise StoreError("this transaction has ended; open a new one")
        if self._failed is not None:
            raise StoreError(f"transaction aborted by an earlier error: {self._failed}")
        try:
            return self._conn.run(sql, _NO_PARAMS if params is None else params)
        except StoreError as exc:
            self._failed = exc
            raise

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement; returns the number of rows it changed (or -1 if not known)."""
        return self._run(sql, params)[1]

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self._run(sql, params)[0]

    def fetchone(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = self._run(sql, params)[0]
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.fetchone(sql, params)
        return None if row is None else row[0]

    def run_script(self, script: str) -> None:
        """Engine-native statements without parameters (migrations only)."""
        if not self._open or self._failed is not None:
            raise StoreError("this transaction has ended or failed")
        try:
            self._conn.run_script(script)
        except StoreError as exc:
            self._failed = exc
            raise


class FencedTx(Tx):
    """A write transaction that passed the FENCE for (`node`, `epoch`)."""

    def __init__(self, conn: RawConnection, node: str, epoch: int) -> None:
        super().__init__(conn)
        self.node = node
        self.epoch = epoch

    def audit(self, what: str) -> None:
        """Record in gm_audit that this node did `what` under this epoch."""
        self.execute(
            lease_sql(self.dialect).audit, {"epoch": self.epoch, "node": self.node, "what": what}
        )


class _Read:
    """One read-only transaction of `Store.read()` (see there)."""

    __slots__ = ("_store", "_tx")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._tx: Tx | None = None

    def __enter__(self) -> Tx:
        store = self._store
        conn = store._connection()
        local = store._local
        if getattr(local, "busy", False):
            raise StoreError(
                "a transaction is already open on this thread; transactions do not nest"
            )
        local.busy = True
        try:
            tx = self._tx = self._begin(conn)
        except StoreError:
            local.busy = False
            store._forget_if_broken(conn)
            raise
        return tx

    def _begin(self, conn: RawConnection) -> Tx:
        return Tx(self._store._begin_on_live(conn, False))

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        tx = self._tx
        assert tx is not None
        conn = tx._conn
        store = self._store
        tx._open = False
        try:
            if exc_type is not None:
                with contextlib.suppress(StoreError):
                    conn.rollback()
                if issubclass(exc_type, StoreError):
                    store._forget_if_broken(conn)
                return
            if tx._failed is not None:
                conn.rollback()
                raise StoreError(f"transaction rolled back after an error: {tx._failed}")
            conn.commit()
        except StoreError:
            store._forget_if_broken(conn)
            raise
        finally:
            store._local.busy = False


class _OneStatementTx(Tx):
    """The `Tx` of `Store.read_one()`: one query, run outside a transaction block."""

    def __init__(self, conn: RawConnection, store: Store) -> None:
        super().__init__(conn)
        self._ran = False
        self._store = store

    def _run(self, sql: str, params: Mapping[str, Any] | None) -> tuple[list[Row], int]:
        if self._ran and self._open:
            raise StoreError(
                "read_one() runs a single statement and this block ran one already; "
                "several statements need store.read(), so that they see one snapshot"
            )
        self._ran = True
        try:
            return super()._run(sql, params)
        except StoreError:
            # The statement is the whole transaction: on a connection found dead, once more.
            fresh = self._store._replacement(self._conn)
            if fresh is None:
                raise
        fresh.begin_statement()
        self._conn, self._failed = fresh, None
        return super()._run(sql, params)

    def run_script(self, script: str) -> None:
        raise StoreError("read_one() runs a single query, not a script")


class _ReadOne(_Read):
    """One single-statement read of `Store.read_one()` (see there): no BEGIN, no COMMIT."""

    __slots__ = ()

    def _begin(self, conn: RawConnection) -> Tx:
        conn.begin_statement()
        return _OneStatementTx(conn, self._store)

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        tx = self._tx
        assert tx is not None
        tx._open = False
        store = self._store
        store._local.busy = False
        if exc_type is not None and issubclass(exc_type, StoreError):
            store._forget_if_broken(tx._conn)


class Store:
    """The state store over one backend. Create with `open_store(url)`."""

    def __init__(self, url: StoreURL) -> None:
        self._url = url
        self._sql = lease_sql(url.dialect)
        # This process's token on the lease row (migration 0002): a second process under the
        # same node name is another holder, not "us".
        self.instance = secrets.token_hex(8)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[weakref.ref[threading.Thread], RawConnection]] = []
        self._closed = False
        # SQLite has one write lock per database. Writers of this process queue for it here,
        # in turn, instead of in SQLite's busy handler, which sleeps 1, 2, 5, 10, ... 100 ms
        # between tries and so leaves the lock idle while threads sleep: under a burst of
        # jobs most of a commit's time went there. Other processes still meet the busy
        # handler (busy_timeout); the wait here is bounded by the same timeout.
        self._writer: threading.Lock | None = threading.Lock() if url.dialect == "sqlite" else None
        self._writer_timeout = url.busy_timeout_ms / 1000

    @property
    def dialect(self) -> Dialect:
        return self._url.dialect

    @property
    def url(self) -> str:
        """The URL without its password, for logs and GM_GroupManager.StoreBackend."""
        return self._url.redacted()

    # -- connections ---------------------------------------------------------------------

    def _connect(self) -> RawConnection:
        if self._url.dialect == "sqlite":
            return SqliteConnection(self._url)
        return PostgresConnection(self._url)

    def _connection(self) -> RawConnection:
        if self._closed:
            raise StoreError("the store is closed")
        conn: RawConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.usable:
            return conn
        conn = self._connect()
        self._local.conn = conn
        with self._lock:
            # Close what threads that have ended left behind.
            alive = []
            for ref, other in self._connections:
                thread = ref()
                if thread is None or not thread.is_alive() or not other.usable:
                    with contextlib.suppress(StoreError, Exception):
                        other.close()
                else:
                    alive.append((ref, other))
            alive.append((weakref.ref(threading.current_thread()), conn))
            self._connections = alive
        return conn

    def _forget_if_broken(self, conn: RawConnection) -> None:
        if not conn.usable and getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def _replacement(self, conn: RawConnection) -> RawConnection | None:
        """A new connection in place of `conn` when `conn` has just proved dead on the first
        statement of a transaction (nothing of it ran), else None. A server restart ends every
        idle connection of the pool; without this, the first request of each thread after
        the store came back failed with "terminating connection due to administrator
        command"."""
        if conn.usable:
            return None
        self._forget_if_broken(conn)
        return self._connection()

    def _begin_on_live(self, conn: RawConnection, write: bool) -> RawConnection:
        try:
            conn.begin(write)
            return conn
        except StoreError:
            fresh = self._replacement(conn)
            if fresh is None:
                raise
        fresh.begin(write)
        return fresh

    def close(self) -> None:
        """Close every connection of every thread. The store is unusable afterwards."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for _ref, conn in connections:
            with contextlib.suppress(Exception):
                conn.close()

    # -- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, write: bool, tx: Tx) -> Iterator[None]:
        conn = tx._conn
        if getattr(self._local, "busy", False):
            raise StoreError(
                "a transaction is already open on this thread; transactions do not nest"
            )
        self._local.busy = True
        writer = self._writer if write else None
        if writer is not None and not writer.acquire(timeout=self._writer_timeout):
            self._local.busy = False
            raise StoreError(
                f"SQLite: database is locked (no write for {self._writer_timeout:g} s: another "
                "write of this node was waiting itself, for a long write of this node or of "
                "another process on the store file)"
            )
        try:
            conn = tx._conn = self._begin_on_live(conn, write)
            try:
                yield
            except BaseException:
                tx._open = False
                with contextlib.suppress(StoreError):
                    conn.rollback()
                raise
            tx._open = False
            if tx._failed is not None:
                conn.rollback()
                raise StoreError(f"transaction rolled back after an error: {tx._failed}")
            conn.commit()
        except StoreError:
            self._forget_if_broken(conn)
            raise
        finally:
            if writer is not None:
                writer.release()
            self._local.busy = False

    def read(self) -> _Read:
        """A read-only transaction: one consistent snapshot; writes in it fail.

        `with store.read() as tx:` -- the same rules as `_transaction` (no nesting, rollback
        on an exception, a failed statement fails the block), as a plain context manager:
        reads sit on every GetInstance and enumeration page, where two generator frames per
        read were a tenth of the read's cost.
        """
        return _Read(self)

    def read_one(self) -> _ReadOne:
        """A read of exactly one statement, without BEGIN and COMMIT around it.

        `with store.read_one() as tx: row = repo.bay(tx, ...)` -- for the reads that are
        one query (a GetInstance's row): the connection is in autocommit mode, so the
        statement is its own transaction and sees one snapshot, and the two round trips
        (one on SQLite: a tenth of a bay's GetInstance) of BEGIN and COMMIT are saved. A
        write is refused as in `read()`; a second statement in the block raises StoreError
        (it would read another snapshot), so a repository function that grows a second
        query fails its tests instead of reading inconsistent rows.
        """
        return _ReadOne(self)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Tx]:
        # Unfenced write: for the lease itself, node reports and migrations only. Every
        # change to the managed system goes through fenced().
        tx = Tx(self._connection())
        with self._transaction(True, tx):
            yield tx

    @contextlib.contextmanager
    def fenced(self, node: str, epoch: int) -> Iterator[FencedTx]:
        """A write transaction whose first statement is the FENCE (ha-jobs-style.md A.7.2).

        Raises `Fenced` (and rolls back) unless `node` holds the lease with `epoch` and the
        lease has not lapsed on the store's clock. Commits when the block ends normally.
        """
        tx = FencedTx(self._connection(), node, epoch)
        with self._transaction(True, tx):
            if tx.fetchone(self._sql.fence, {"me": node, "epoch": epoch}) is None:
                lease = self._lease_from(tx)
                tx._open = False
                raise Fenced(_fenced_message(node, epoch, lease))
            yield tx

    # -- the lease -----------------------------------------------------------------------

    def _lease_from(self, tx: Tx) -> Lease:
        row = tx.fetchone(self._sql.current)
        if row is None:
            raise StoreError("gm_leadership has no row: the store's migrations did not run")
        return Lease(
            epoch=int(row[0]), holder=str(row[1]), lease_until=float(row[2]), now=float(row[3])
        )

    def current(self) -> Lease:
        """The lease as the store sees it now."""
        with self.read() as tx:
            return self._lease_from(tx)

    def _returning_epoch(self, sql: str, params: Mapping[str, Any]) -> int | None:
        with self._write() as tx:
            epoch = tx.scalar(sql, params)
        return None if epoch is None else int(epoch)

    def acquire(self, node: str, ttl: float) -> int | None:
        """ACQUIRE: the new epoch if the lease had lapsed (or this process holds it as
        `node`), else None."""
        _check_ttl(ttl)
        params = {"me": node, "instance": self.instance, "ttl": float(ttl)}
        return self._returning_epoch(self._sql.acquire, params)

    def take_control(self, node: str, ttl: float, force: bool) -> int | None:
        """takeControl: as `acquire` when not `force`; with `force`, always a new epoch.

        A forced takeover does not wait for the other node's lease to lapse: the other node
        is fenced at its next write or renewal. It does wait for the other node's open
        fenced writes to commit (FOR SHARE / the SQLite write lock).
        """
        _check_ttl(ttl)
        sql = self._sql.take_over if force else self._sql.acquire
        params = {"me": node, "instance": self.instance, "ttl": float(ttl)}
        return self._returning_epoch(sql, params)

    def renew(self, node: str, epoch: int, ttl: float) -> bool:
        """RENEW: False means the lease is no longer ours; demote at once."""
        _check_ttl(ttl)
        params = {"me": node, "epoch": epoch, "ttl": float(ttl)}
        return self._returning_epoch(self._sql.renew, params) is not None

    def step_down(self, node: str, epoch: int) -> bool:
        """STEP DOWN: end our lease now (the epoch stays; the next acquire bumps it)."""
        return self._returning_epoch(self._sql.step_down, {"me": node, "epoch": epoch}) is not None

    def report_node(self, node: str, role: str, epoch: int) -> None:
        """Record what `node` says about itself (gm_nodes); not a fenced write."""
        with self._write() as tx:
            tx.execute(self._sql.report_node, {"node": node, "role": role, "epoch": epoch})

    def nodes(self) -> list[NodeReport]:
        with self.read() as tx:
            rows = tx.fetchall(self._sql.nodes)
        return [NodeReport(str(n), str(r), int(e), float(s)) for n, r, e, s in rows]


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"a lease ttl must be positive, not {ttl!r}")


def _fenced_message(node: str, epoch: int, lease: Lease) -> str:
    if lease.holder == node and lease.epoch == epoch:
        why = "its lease has lapsed"
    elif lease.holder == "":
        why = "no node has held the lease yet"
    else:
        state = "valid" if lease.valid else "lapsed"
        why = f"epoch {lease.epoch} belongs to {lease.holder} (lease {state})"
    return f"Node {node} was superseded: its epoch {epoch} is not current; {why}."


def open_store(
    url: str, *, migrations: Sequence[Migration] | None = None, migrate: bool = True
) -> Store:
    """Open the store at `url` and bring its schema up to date.

    `migrations` defaults to every `provider/*/migrations/*.sql` (see `provider.store.schema`);
    `migrate=False` skips them (tools that only read).
    """
    store = Store(parse_url(url))
    if migrate:
        try:
            apply_migrations(store, discover_migrations() if migrations is None else migrations)
        except BaseException:
            store.close()
            raise
    return store
