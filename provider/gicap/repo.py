"""Load and save the `CapacityState` in the store's gicap_* tables (migrations/0001).

A change claims the state's version (migration 0002) inside the fenced transaction, takes
the state at that version (loaded whole, or the one the service already has), applies a pure
rule, and writes back only the rows that differ: objects equal in both states are skipped,
the rows of the others are compared as plain tuples.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from .model import CapacityState, Cell, Complex, Group, Partition, Seizure, SeizureState

__all__ = ["SqlTx", "claim", "is_seeded", "load", "save", "seed", "version"]


class SqlTx(Protocol):
    """What we use of provider.store.Tx."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int: ...

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]: ...

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any: ...


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def _req_dt(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


# -- rows ----------------------------------------------------------------------------------

_GROUP_COLS = (
    "name",
    "description",
    "free_rights",
    "ticap_minutes",
    "ticap_reminder_at",
    "out_of_compliance_since",
)
_COMPLEX_COLS = (
    "name",
    "owned_rights",
    "rights",
    "ticap_minutes",
    "ticap_charged_until",
    "member",
    "group_name",
    "member_hosts",
    "reachable",
)
_PARTITION_COLS = ("complex", "name", "position", "hosts", "vpars", "cells", "intended", "actual")
_SEIZURE_COLS = (
    "id",
    "complex",
    "npar",
    "host",
    "cores",
    "deferred",
    "seized_at",
    "expires_at",
    "state",
    "intended_before",
    "rebooted",
    "all_cores_assumed",
    "expiry_warned",
)


def _group_row(g: Group) -> tuple[Any, ...]:
    return (
        g.name,
        g.description,
        g.free_rights,
        g.ticap_minutes,
        _ts(g.ticap_reminder_at),
        _ts(g.out_of_compliance_since),
    )


def _complex_row(c: Complex) -> tuple[Any, ...]:
    return (
        c.name,
        c.owned_rights,
        c.rights,
        c.ticap_minutes,
        _ts(c.ticap_charged_until),
        c.member,
        c.group,
        json.dumps(c.member_hosts),
        c.reachable,
    )


def _partition_rows(c: Complex) -> Iterable[tuple[Any, ...]]:
    for position, p in enumerate(c.partitions):
        cells = [{"name": x.name, "cores": x.cores, "active": x.active} for x in p.cells]
        yield (
            c.name,
            p.name,
            position,
            json.dumps(p.hosts),
            json.dumps(p.vpars, sort_keys=True),
            json.dumps(cells),
            p.intended,
            p.actual,
        )


def _seizure_row(s: Seizure) -> tuple[Any, ...]:
    return (
        s.id,
        s.member,
        s.partition,
        s.host,
        s.cores,
        s.deferred,
        _ts(s.seized_at),
        _ts(s.expires_at),
        s.state.value,
        s.intended_before,
        s.rebooted,
        s.all_cores_assumed,
        s.expiry_warned,
    )


def _rows(
    state: CapacityState, groups: Iterable[str], complexes: Iterable[str], seizures: Iterable[str]
) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """The rows of the named objects of the state, keyed by table then primary key (names
    the state does not have are skipped)."""
    gs = [state.groups[n] for n in groups if n in state.groups]
    cs = [state.complexes[n] for n in complexes if n in state.complexes]
    by_id = {s.id: s for s in state.seizures}
    ss = [by_id[i] for i in seizures if i in by_id]
    return {
        "gicap_groups": {(r[0],): r for r in map(_group_row, gs)},
        "gicap_complexes": {(r[0],): r for r in map(_complex_row, cs)},
        "gicap_partitions": {(r[0], r[1]): r for c in cs for r in _partition_rows(c)},
        "gicap_seizures": {(r[0],): r for r in map(_seizure_row, ss)},
    }


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Keys of objects added, removed or not equal (dataclass equality: every field, the
    nested partitions and cells included), in the order of `after` then the removed ones.
    Equal objects have equal rows, so only these need their rows compared."""
    out = [k for k, v in after.items() if before.get(k) != v]
    out.extend(k for k in before if k not in after)
    return out


_COLUMNS = {
    "gicap_groups": (_GROUP_COLS, 1),
    "gicap_complexes": (_COMPLEX_COLS, 1),
    "gicap_partitions": (_PARTITION_COLS, 2),
    "gicap_seizures": (_SEIZURE_COLS, 1),
}
# Parents before children when inserting; children first when deleting.
_ORDER = ("gicap_groups", "gicap_complexes", "gicap_partitions", "gicap_seizures")


def _normalise(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # SQLite gives back 0/1 for booleans and floats for REAL: compare like with like.
    return tuple(int(v) if isinstance(v, bool) else v for v in row)


def save(tx: SqlTx, before: CapacityState, after: CapacityState) -> int:
    """Write the rows of `after` that differ from `before`; returns how many statements ran.

    Objects equal in both states are skipped before any row is built (building and encoding
    every row of both states was most of the cost of a change at 1,000 members)."""
    groups = _changed(before.groups, after.groups)
    complexes = _changed(before.complexes, after.complexes)
    seizures = _changed({s.id: s for s in before.seizures}, {s.id: s for s in after.seizures})
    old = _rows(before, groups, complexes, seizures)
    new = _rows(after, groups, complexes, seizures)
    count = 0
    for table in reversed(_ORDER):
        cols, nkeys = _COLUMNS[table]
        for key in old[table].keys() - new[table].keys():
            where = " AND ".join(f"{c} = %({c})s" for c in cols[:nkeys])
            params = dict(zip(cols[:nkeys], key, strict=True))
            tx.execute(f"DELETE FROM {table} WHERE {where}", params)
            count += 1
    for table in _ORDER:
        cols, nkeys = _COLUMNS[table]
        for key, row in new[table].items():
            previous = old[table].get(key)
            if previous is not None and _normalise(previous) == _normalise(row):
                continue
            params = dict(zip(cols, row, strict=True))
            if previous is None:
                names = ", ".join(cols)
                values = ", ".join(f"%({c})s" for c in cols)
                tx.execute(f"INSERT INTO {table} ({names}) VALUES ({values})", params)
            else:
                sets = ", ".join(f"{c} = %({c})s" for c in cols[nkeys:])
                where = " AND ".join(f"{c} = %({c})s" for c in cols[:nkeys])
                tx.execute(f"UPDATE {table} SET {sets} WHERE {where}", params)
            count += 1
    if before.sharing_rights != after.sharing_rights:
        tx.execute("UPDATE gicap_settings SET sharing_rights = %(n)s", {"n": after.sharing_rights})
    return count


def version(tx: SqlTx) -> int | None:
    """The version of the stored state (migration 0002: every change of a gicap_ table adds
    one, in its transaction), or None before the store is seeded. Read it before the
    tables: the state read after it is then at least as new as it."""
    value = tx.scalar("SELECT version FROM gicap_settings")
    return None if value is None else int(value)


def claim(tx: SqlTx) -> int:
    """Begin a change in this write transaction: add one to the version, which holds the
    settings row until the commit, so no other capacity change (of any node) commits in
    between. Returns the version of the committed state as it stands, the one the tables
    read from now on in this transaction have."""
    tx.execute("UPDATE gicap_settings SET version = version + 1")
    return int(tx.scalar("SELECT version FROM gicap_settings")) - 1


def is_seeded(tx: SqlTx) -> bool:
    return bool(tx.scalar("SELECT count(*) FROM gicap_settings") == 1)


def seed(tx: SqlTx, state: CapacityState, source: str) -> None:
    """First start of the first active: the inventory becomes the store's state."""
    tx.execute(
        "INSERT INTO gicap_settings (singleton, sharing_rights, seeded_from)"
        " VALUES (TRUE, %(n)s, %(src)s)",
        {"n": state.sharing_rights, "src": source},
    )
    save(tx, CapacityState(sharing_rights=state.sharing_rights), state)


def _select(tx: SqlTx, table: str, order: str) -> list[Any]:
    cols, _ = _COLUMNS[table]
    return tx.fetchall(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}")


def _decode_all(texts: list[str]) -> list[Any]:
    """`[json.loads(t) for t in texts]` in one call of the decoder: every text is one JSON
    value written by `save`, so they join into one array. (At 1,000 members the per-call
    overhead of 4,000 json.loads was a third of `load`.)"""
    return list(json.loads("[" + ",".join(texts) + "]")) if texts else []


def load(tx: SqlTx) -> CapacityState:
    sharing = tx.scalar("SELECT sharing_rights FROM gicap_settings")
    state = CapacityState(sharing_rights=int(sharing or 0))
    for r in _select(tx, "gicap_groups", "name"):
        state.groups[r[0]] = Group(r[0], r[1], int(r[2]), int(r[3]), _dt(r[4]), _dt(r[5]))
    complexes = _select(tx, "gicap_complexes", "name")
    member_hosts = _decode_all([r[7] for r in complexes])
    for r, hosts in zip(complexes, member_hosts, strict=True):
        state.complexes[r[0]] = Complex(
            name=r[0],
            partitions=[],
            owned_rights=int(r[1]),
            rights=int(r[2]),
            ticap_minutes=int(r[3]),
            ticap_charged_until=_dt(r[4]),
            member=r[5],
            group=r[6],
            member_hosts=list(hosts),
            reachable=_opt_bool(r[8]),
        )
    partitions = _select(tx, "gicap_partitions", "complex, position")
    decoded = _decode_all([t for r in partitions for t in (r[3], r[4], r[5])])
    for i, r in enumerate(partitions):
        hosts, vpars, cells = decoded[3 * i : 3 * i + 3]
        state.complexes[r[0]].partitions.append(
            Partition(
                name=r[1],
                hosts=list(hosts),
                cells=[Cell(c["name"], int(c["cores"]), bool(c["active"])) for c in cells],
                intended=int(r[6]),
                actual=int(r[7]),
                vpars={k: list(v) for k, v in vpars.items()},
            )
        )
    state.seizures = [_seizure(r) for r in _select(tx, "gicap_seizures", "seized_at, id")]
    return state


def _seizure(r: Any) -> Seizure:
    return Seizure(
        id=r[0],
        member=r[1],
        partition=r[2],
        host=r[3],
        cores=int(r[4]),
        deferred=bool(r[5]),
        seized_at=_req_dt(r[6]),
        expires_at=_dt(r[7]),
        state=SeizureState(r[8]),
        intended_before=int(r[9]),
        rebooted=bool(r[10]),
        all_cores_assumed=bool(r[11]),
        expiry_warned=bool(r[12]),
    )
