"""The lease statements of ha-jobs-style.md A.7.2, once per engine.

PostgreSQL: exactly the reference's statements. Time is the database's `clock_timestamp()`
(evaluated when the statement runs, unlike `now()`), never a host clock.

SQLite: the same statements inside BEGIN IMMEDIATE. There is no row lock to take: the
transaction holds the database's single write lock, so nothing can change the lease row
between the FENCE and the COMMIT, and a takeover's BEGIN IMMEDIATE waits for an open fenced
write to finish, which is what FOR SHARE achieves on PostgreSQL. Time is `gm_now()`, a
function the store registers on every SQLite connection that returns this host's wall clock
(`time.time()`): the one clock that every process sharing the database file also reads. A step
of the wall clock can shorten or lengthen a lease (liveness), but never lets a stale epoch
write, because the FENCE compares holder and epoch under the write lock (safety).

Every statement is written in the portable subset (`%(name)s`), so both run through the same
translation as domain SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._sql import Dialect

__all__ = ["LeaseSQL", "lease_sql"]


@dataclass(frozen=True)
class LeaseSQL:
    acquire: str
    take_over: str
    renew: str
    fence: str
    step_down: str
    current: str
    report_node: str
    nodes: str
    audit: str


_POSTGRESQL = LeaseSQL(
    # ACQUIRE: wins only if the lease lapsed, or if its holder is this very process (its node
    # name and its instance token, migration 0002): a process started under the same node
    # name must wait for the lease to lapse, as any other node. The epoch always increases.
    acquire="""
        UPDATE gm_leadership
           SET epoch = epoch + 1, holder = %(me)s, instance = %(instance)s,
               lease_until = clock_timestamp() + make_interval(secs => %(ttl)s)
         WHERE lease_until < clock_timestamp()
            OR (holder = %(me)s AND instance = %(instance)s)
        RETURNING epoch""",
    # TAKE OVER (takeControl with Force): unconditional. The UPDATE's row lock conflicts with
    # FOR SHARE, so it waits for every open fenced write of the old epoch to commit first.
    take_over="""
        UPDATE gm_leadership
           SET epoch = epoch + 1, holder = %(me)s, instance = %(instance)s,
               lease_until = clock_timestamp() + make_interval(secs => %(ttl)s)
        RETURNING epoch""",
    renew="""
        UPDATE gm_leadership
           SET lease_until = clock_timestamp() + make_interval(secs => %(ttl)s)
         WHERE holder = %(me)s AND epoch = %(epoch)s AND lease_until > clock_timestamp()
        RETURNING epoch""",
    fence="""
        SELECT 1 FROM gm_leadership
         WHERE holder = %(me)s AND epoch = %(epoch)s AND lease_until > clock_timestamp()
           FOR SHARE""",
    step_down="""
        UPDATE gm_leadership SET lease_until = '-infinity'
         WHERE holder = %(me)s AND epoch = %(epoch)s
        RETURNING epoch""",
    current="""
        SELECT epoch, holder, extract(epoch FROM lease_until)::float8, gm_now()
          FROM gm_leadership""",
    report_node="""
        INSERT INTO gm_nodes (node, role, epoch, last_seen)
        VALUES (%(node)s, %(role)s, %(epoch)s, clock_timestamp())
        ON CONFLICT (node) DO UPDATE
           SET role = excluded.role, epoch = excluded.epoch, last_seen = excluded.last_seen""",
    nodes="""
        SELECT node, role, epoch, extract(epoch FROM last_seen)::float8
          FROM gm_nodes ORDER BY node""",
    audit="""
        INSERT INTO gm_audit (epoch, node, what, at)
        VALUES (%(epoch)s, %(node)s, %(what)s, gm_now())""",
)

_SQLITE = LeaseSQL(
    acquire="""
        UPDATE gm_leadership
           SET epoch = epoch + 1, holder = %(me)s, instance = %(instance)s,
               lease_until = gm_now() + %(ttl)s
         WHERE lease_until < gm_now() OR (holder = %(me)s AND instance = %(instance)s)
        RETURNING epoch""",
    take_over="""
        UPDATE gm_leadership
           SET epoch = epoch + 1, holder = %(me)s, instance = %(instance)s,
               lease_until = gm_now() + %(ttl)s
        RETURNING epoch""",
    renew="""
        UPDATE gm_leadership SET lease_until = gm_now() + %(ttl)s
         WHERE holder = %(me)s AND epoch = %(epoch)s AND lease_until > gm_now()
        RETURNING epoch""",
    fence="""
        SELECT 1 FROM gm_leadership
         WHERE holder = %(me)s AND epoch = %(epoch)s AND lease_until > gm_now()""",
    step_down="""
        UPDATE gm_leadership SET lease_until = -1e999
         WHERE holder = %(me)s AND epoch = %(epoch)s
        RETURNING epoch""",
    current="SELECT epoch, holder, lease_until, gm_now() FROM gm_leadership",
    report_node="""
        INSERT INTO gm_nodes (node, role, epoch, last_seen)
        VALUES (%(node)s, %(role)s, %(epoch)s, gm_now())
        ON CONFLICT (node) DO UPDATE
           SET role = excluded.role, epoch = excluded.epoch, last_seen = excluded.last_seen""",
    nodes="SELECT node, role, epoch, last_seen FROM gm_nodes ORDER BY node",
    audit="""
        INSERT INTO gm_audit (epoch, node, what, at)
        VALUES (%(epoch)s, %(node)s, %(what)s, gm_now())""",
)


def lease_sql(dialect: Dialect) -> LeaseSQL:
    return _POSTGRESQL if dialect == "postgresql" else _SQLITE
