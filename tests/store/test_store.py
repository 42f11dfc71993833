"""The store on both backends: transactions, the fence, the lease operations."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.errors import Fenced, StoreError
from provider.store import ConstraintViolation, Store
from provider.store._backends import SqliteConnection, parse_url

from ._helpers import audit_rows, lapse_lease, open_test_store

TTL = 30.0


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = open_test_store(store_url)
    yield store
    store.close()


def test_a_fresh_store_has_a_free_lease(store: Store) -> None:
    lease = store.current()
    assert (lease.epoch, lease.holder, lease.active_manager) == (0, "", None)
    assert lease.lease_until == float("-inf") and not lease.valid


def test_fenced_write_of_the_holder_commits(store: Store) -> None:
    epoch = store.acquire("A", TTL)
    assert epoch == 1
    with store.fenced("A", epoch) as tx:
        assert (tx.node, tx.epoch) == ("A", 1)
        tx.audit("first")
    assert audit_rows(store) == [(1, "A", "first")]


def test_fenced_write_with_a_stale_epoch_raises_fenced_and_commits_nothing(store: Store) -> None:
    old = store.acquire("A", TTL)
    assert old is not None
    new = store.take_control("B", TTL, force=True)
    assert new == old + 1
    body_ran = False
    with pytest.raises(Fenced, match=f"epoch {new} belongs to B"), store.fenced("A", old) as tx:
        body_ran = True
        tx.audit("stale")
    assert not body_ran
    assert audit_rows(store) == []


def test_fenced_write_of_a_lapsed_lease_raises_fenced(store: Store) -> None:
    epoch = store.acquire("A", TTL)
    assert epoch is not None
    lapse_lease(store)
    with pytest.raises(Fenced, match="lapsed"), store.fenced("A", epoch):
        pass
    with pytest.raises(Fenced), store.fenced("B", epoch):
        pass


def test_an_exception_in_the_body_rolls_the_fenced_write_back(store: Store) -> None:
    epoch = store.acquire("A", TTL)
    assert epoch is not None
    with pytest.raises(RuntimeError), store.fenced("A", epoch) as tx:
        tx.audit("undone")
        raise RuntimeError("domain failure")
    assert audit_rows(store) == []


def test_acquire_wins_only_a_lapsed_free_or_own_lease(store: Store) -> None:
    assert store.acquire("A", TTL) == 1
    assert store.acquire("B", TTL) is None
    # Our own name: a previous incarnation of this node; the epoch still increases.
    assert store.acquire("A", TTL) == 2
    lapse_lease(store)
    assert store.acquire("B", TTL) == 3
    assert store.current().active_manager == "B"


def test_another_process_under_the_same_name_waits_for_the_lease_to_lapse(
    store: Store, store_url: str
) -> None:
    """A second gm-provider started with the running active's [node] name (a copied
    configuration) once took its valid lease without Force."""
    assert store.acquire("A", TTL) == 1
    other = open_test_store(store_url)  # another process's store
    try:
        assert other.instance != store.instance
        assert other.acquire("A", TTL) is None
        assert other.take_control("A", TTL, force=False) is None
        assert store.renew("A", 1, TTL)  # the running active keeps its lease
        lapse_lease(store)
        assert other.acquire("A", TTL) == 2  # a crashed holder's name: once it lapsed
    finally:
        other.close()


def test_renew_only_for_the_current_holder_and_epoch(store: Store) -> None:
    epoch = store.acquire("A", TTL)
    assert epoch is not None
    assert store.renew("A", epoch, TTL)
    assert not store.renew("B", epoch, TTL)
    assert not store.renew("A", epoch - 1, TTL)
    lapse_lease(store)
    assert not store.renew("A", epoch, TTL)


def test_step_down_ends_the_lease_and_keeps_the_epoch(store: Store) -> None:
    epoch = store.acquire("A", TTL)
    assert epoch is not None
    assert not store.step_down("B", epoch)
    assert store.step_down("A", epoch)
    lease = store.current()
    assert (lease.epoch, lease.holder, lease.valid) == (epoch, "A", False)
    assert store.acquire("B", TTL) == epoch + 1


def test_take_control_without_force_respects_a_valid_lease(store: Store) -> None:
    assert store.take_control("A", TTL, force=False) == 1
    assert store.take_control("B", TTL, force=False) is None
    assert store.take_control("B", TTL, force=True) == 2
    assert store.current().active_manager == "B"


def test_takeover_waits_for_an_open_fenced_write_of_the_old_epoch(store: Store) -> None:
    """ha-jobs-style.md A.7.2: every old-epoch write commits before the new epoch exists."""
    old = store.acquire("A", TTL)
    assert old is not None
    inside = threading.Event()
    hold = 0.5

    def old_active_writes() -> None:
        with store.fenced("A", old) as tx:
            tx.audit("slow write")
            inside.set()
            time.sleep(hold)

    writer = threading.Thread(target=old_active_writes)
    writer.start()
    assert inside.wait(10)
    started = time.monotonic()
    new = store.take_control("B", TTL, force=True)
    waited = time.monotonic() - started
    writer.join()
    assert new == old + 1
    assert waited >= hold * 0.6, f"takeover did not wait for the fenced write ({waited:.3f} s)"
    assert audit_rows(store) == [(old, "A", "slow write")]
    with pytest.raises(Fenced), store.fenced("A", old):
        pass


def test_a_fenced_write_waits_for_a_takeover_in_progress_and_is_then_fenced(store: Store) -> None:
    # The other order: the takeover holds the lease row (PG: row lock of the UPDATE; SQLite:
    # the write lock) when the old active's fence runs; the fence must see the new epoch.
    old = store.acquire("A", TTL)
    assert old is not None
    in_takeover = threading.Event()
    release = threading.Event()

    def slow_takeover() -> None:
        with store._write() as tx:
            tx.execute("UPDATE gm_leadership SET epoch = epoch + 1, holder = %(me)s", {"me": "B"})
            in_takeover.set()
            release.wait(10)

    taker = threading.Thread(target=slow_takeover)
    taker.start()
    assert in_takeover.wait(10)
    threading.Timer(0.3, release.set).start()
    with pytest.raises(Fenced), store.fenced("A", old) as tx:
        tx.audit("must not commit")
    taker.join()
    assert audit_rows(store) == []


def test_a_failed_statement_aborts_the_transaction_on_both_backends(store: Store) -> None:
    epoch = store.acquire("A", TTL)
    assert epoch is not None
    with pytest.raises(StoreError, match="rolled back"), store.fenced("A", epoch) as tx:
        tx.audit("lost with the rest")
        with pytest.raises(ConstraintViolation):
            tx.execute("INSERT INTO gm_audit (epoch, node, what, at) VALUES (1, 'x', NULL, 0)")
        with pytest.raises(StoreError, match="aborted"):
            tx.audit("after the error")
    assert audit_rows(store) == []


@pytest.mark.postgres
def test_a_connection_the_server_ended_while_idle_is_replaced(postgres_url: str) -> None:
    """After a PostgreSQL restart, the first request of each thread failed with "terminating
    connection due to administrator command" (its pooled connection had died idle). The
    first statement of a transaction, on a connection found dead, now runs once more on a
    new one; nothing of the transaction had run."""
    import psycopg

    store = open_test_store(postgres_url)
    try:
        epoch = store.acquire("A", TTL)
        assert epoch is not None

        def end_this_threads_connection() -> None:
            with store.read() as tx:
                pid = tx.scalar("SELECT pg_backend_pid()")
            admin = postgres_url.split("?")[0]
            with psycopg.connect(admin, autocommit=True) as other:
                assert other.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
            time.sleep(0.2)  # the backend is gone; the client learns it at its next statement

        end_this_threads_connection()
        with store.read() as tx:
            assert tx.scalar("SELECT count(*) FROM gm_nodes") == 0
        end_this_threads_connection()
        with store.read_one() as tx:
            assert tx.scalar("SELECT count(*) FROM gm_nodes") == 0
        end_this_threads_connection()
        with store.fenced("A", epoch) as tx:
            tx.audit("after the restart")
        assert audit_rows(store) == [(epoch, "A", "after the restart")]
        # A statement that fails for another reason is not run twice.
        with pytest.raises(StoreError), store.read_one() as tx:
            tx.fetchall("SELECT no_such_column FROM gm_nodes")
    finally:
        store.close()


def test_a_unique_violation_names_its_constraint_on_postgresql(store: Store) -> None:
    store.report_node("A", "standby", 0)
    with pytest.raises(ConstraintViolation) as caught, store._write() as tx:
        tx.execute(
            "INSERT INTO gm_nodes (node, role, epoch, last_seen)"
            " SELECT node, role, epoch, last_seen FROM gm_nodes"
        )
    if store.dialect == "postgresql":
        assert caught.value.constraint == "gm_nodes_pkey"


def test_a_read_transaction_refuses_writes(store: Store) -> None:
    with pytest.raises(StoreError), store.read() as tx:
        tx.execute("DELETE FROM gm_nodes")
    # The connection is fine afterwards, and writable in a write transaction.
    store.report_node("A", "standby", 0)
    assert [n.node for n in store.nodes()] == ["A"]


WRITES = [
    "UPDATE gm_nodes SET role = 'x'",
    "INSERT INTO gm_nodes (node, role, epoch, last_seen) VALUES ('B', 'standby', 0, 0)",
    "-- a comment first\nDELETE FROM gm_nodes",
    "WITH gone AS (SELECT node FROM gm_nodes) DELETE FROM gm_nodes",
    "CREATE TABLE gm_stray (x INTEGER)",
]


@pytest.mark.parametrize("statement", WRITES)
def test_a_read_transaction_refuses_every_kind_of_write(store: Store, statement: str) -> None:
    store.report_node("A", "standby", 0)
    with pytest.raises(StoreError), store.read() as tx:
        tx.execute(statement)
    assert [(n.node, n.role) for n in store.nodes()] == [("A", "standby")]
    with store.read() as tx:  # nothing was left behind, and reads still work
        assert tx.scalar("SELECT count(*) FROM gm_nodes") == 1


def test_reads_and_writes_alternate_on_one_connection(store: Store) -> None:
    # A thread switching between read and write transactions (a job worker) keeps both
    # working: the read guard never leaks into the next write, nor the write into a read.
    for i in range(5):
        store.report_node("A", "standby", i)
        with store.read() as tx:
            assert (
                tx.scalar(
                    "-- the epoch\nWITH n AS (SELECT epoch FROM gm_nodes) SELECT epoch FROM n"
                )
                == i
            )
        with pytest.raises(StoreError), store.read() as tx:
            tx.execute("DELETE FROM gm_nodes")
    assert [n.epoch for n in store.nodes()] == [4]


def test_read_one_runs_one_query_in_its_own_snapshot(store: Store) -> None:
    store.report_node("A", "standby", 3)
    with store.read_one() as tx:
        assert tx.fetchall("SELECT node, epoch FROM gm_nodes") == [("A", 3)]
    # No transaction was left open: a write from another thread is not blocked by it,
    # and the next single read sees that write at once.
    done = threading.Thread(target=store.report_node, args=("B", "standby", 4))
    done.start()
    done.join(timeout=10)
    assert not done.is_alive()
    with store.read_one() as tx:
        assert tx.scalar("SELECT count(*) FROM gm_nodes") == 2


def test_read_one_refuses_a_second_statement_and_the_connection_goes_on(store: Store) -> None:
    store.report_node("A", "standby", 0)
    with pytest.raises(StoreError, match="single statement"), store.read_one() as tx:
        assert tx.scalar("SELECT count(*) FROM gm_nodes") == 1
        tx.scalar("SELECT count(*) FROM gm_nodes")
    with pytest.raises(StoreError, match="ended"):
        tx.scalar("SELECT 1")  # dead after its block, like any transaction object
    store.report_node("A", "standby", 1)  # writes and reads work on that thread afterwards
    with store.read() as rtx:
        assert rtx.scalar("SELECT epoch FROM gm_nodes") == 1


@pytest.mark.parametrize("statement", WRITES)
def test_read_one_refuses_every_kind_of_write(store: Store, statement: str) -> None:
    # Outside a transaction block nothing would roll a write back: it is refused unrun.
    store.report_node("A", "standby", 0)
    refused = pytest.raises(StoreError, match="changes go through a write transaction")
    with refused, store.read_one() as tx:
        tx.execute(statement)
    assert [(n.node, n.role) for n in store.nodes()] == [("A", "standby")]
    with store.read() as rtx:
        assert rtx.scalar("SELECT count(*) FROM gm_nodes") == 1
    with pytest.raises(StoreError), store.read_one() as tx:
        tx.run_script("DELETE FROM gm_nodes")
    assert len(store.nodes()) == 1
    store.report_node("A", "active", 1)  # the guard does not leak into the next write
    assert [(n.role, n.epoch) for n in store.nodes()] == [("active", 1)]


def test_read_one_does_not_nest_with_transactions(store: Store) -> None:
    with pytest.raises(StoreError, match="do not nest"), store.read(), store.read_one():
        pass
    with pytest.raises(StoreError, match="do not nest"), store.read_one(), store.read():
        pass
    with store.read_one() as tx:
        assert tx.scalar("SELECT 1") == 1


def test_transactions_do_not_nest_on_one_thread(store: Store) -> None:
    with pytest.raises(StoreError, match="do not nest"), store.read(), store.read():
        pass
    with store.read() as tx:
        assert tx.scalar("SELECT 1") == 1


def test_a_transaction_object_is_dead_after_its_block(store: Store) -> None:
    with store.read() as tx:
        pass
    with pytest.raises(StoreError, match="ended"):
        tx.scalar("SELECT 1")


def test_each_thread_writes_on_its_own_connection(store: Store) -> None:
    epoch = store.acquire("A", TTL)
    assert epoch is not None
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with store.fenced("A", epoch) as tx:
                    tx.audit(f"{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(audit_rows(store)) == 40


def test_portable_sql_runs_the_same_on_both_backends(store: Store) -> None:
    with store._write() as tx:
        tx.execute(
            "CREATE TABLE job (id INTEGER PRIMARY KEY, grp TEXT NOT NULL, state TEXT NOT NULL)"
        )
        for i, grp in enumerate(["g1", "g1", "g2"], start=1):
            tx.execute(
                "INSERT INTO job (id, grp, state) VALUES (%(id)s, %(grp)s, 'queued')",
                {"id": i, "grp": grp},
            )
    epoch = store.acquire("A", TTL)
    assert epoch is not None
    with store.fenced("A", epoch) as tx:
        claimed = tx.fetchall(
            """WITH candidate AS (
                 SELECT j.id FROM job j WHERE j.state = 'queued' AND j.grp LIKE %(g)s
                  ORDER BY j.id LIMIT 1 FOR UPDATE SKIP LOCKED)
               UPDATE job SET state = 'running' WHERE id IN (SELECT id FROM candidate)
               RETURNING id, grp""",
            {"g": "g%%"},
        )
        assert claimed == [(1, "g1")]
        tx.execute(
            "INSERT INTO job (id, grp, state) VALUES (%(id)s, 'g3', 'queued')"
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            {"id": 1},
        )
        assert tx.scalar("SELECT gm_now()") > 1e9
    with store.read() as tx:
        assert tx.fetchall("SELECT id, state FROM job ORDER BY id") == [
            (1, "queued"),
            (2, "queued"),
            (3, "queued"),
        ]


def test_nodes_report_what_they_said(store: Store) -> None:
    store.report_node("B", "standby", 3)
    store.report_node("A", "active", 3)
    store.report_node("A", "standby", 4)
    reports = store.nodes()
    assert [(r.node, r.role, r.epoch) for r in reports] == [
        ("A", "standby", 4),
        ("B", "standby", 3),
    ]
    assert all(r.last_seen > 1e9 for r in reports)


def test_a_closed_store_refuses_new_work(store_url: str) -> None:
    store = open_test_store(store_url)
    store.close()
    with pytest.raises(StoreError, match="the store is closed"):
        store.current()


def test_opening_a_new_sqlite_store_waits_for_another_connections_write_lock(
    tmp_path: Path,
) -> None:
    """Switching a new file to WAL needs its exclusive lock, and SQLite refuses at once
    (no busy handler: it would deadlock) while another connection holds the write lock:
    processes opening one new store together failed at random. The switch now waits,
    within the busy timeout."""
    path = tmp_path / "gm.db"
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute("CREATE TABLE t (x INTEGER)")
    reader.execute("BEGIN IMMEDIATE")  # holds the file's reserved lock, as a writer does
    threading.Timer(0.2, reader.rollback).start()
    started = time.monotonic()
    conn = SqliteConnection(parse_url(f"sqlite://{path}"))
    try:
        assert time.monotonic() - started >= 0.15
        assert conn.run("PRAGMA journal_mode", {})[0] == [("wal",)]
    finally:
        conn.close()
        reader.close()


def test_a_new_sqlite_store_still_locked_after_the_busy_timeout_is_an_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gm.db"
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("CREATE TABLE t (x INTEGER)")
    reader.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=r"gm\.db: database is locked"):
            SqliteConnection(parse_url(f"sqlite://{path}?busy_timeout=300"))
    finally:
        reader.close()
