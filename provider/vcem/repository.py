"""The VCEM tables: seeding from the inventory, reads for the CIM view and the jobs, and the
small writes a job step or an administrator makes. Blocking; call from worker threads.

Reads take a `Tx` from `store.read()`; writes take the `FencedTx` of the caller, so that a
job step's record and its effects commit together (provider.jobs.journal.record).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from provider.drivers.base import HardwareDriver
from provider.store import FencedTx, Tx

from .inventory import Inventory, bay_sort_key, normalise_ip

__all__ = [
    "BayRow",
    "DomainRow",
    "EnclosureRow",
    "GroupRow",
    "ProfileRow",
    "bay",
    "bays_of_group",
    "domains_of_group",
    "group",
    "is_seeded",
    "iter_bays",
    "iter_bays_as",
    "iter_profiles",
    "iter_profiles_as",
    "list_enclosures",
    "list_groups",
    "profile",
    "profile_in_bay",
    "seed",
]


@dataclass(frozen=True)
class GroupRow:
    name: str
    description: str
    same_generation: bool
    auto_failover_disabled: bool
    maintenance: bool
    maintenance_owner: str | None
    locked_by_job: int | None


@dataclass(frozen=True)
class DomainRow:
    name: str
    group: str
    state: str


@dataclass(frozen=True)
class EnclosureRow:
    name: str
    domain: str
    group: str
    kind: str
    position: int
    domain_state: str


class BayRow(NamedTuple):
    """One bay as the store knows it. A NamedTuple, not a frozen dataclass: an enumeration
    builds 16,000 of them, and a frozen dataclass's __init__ costs ~3 µs a row."""

    enclosure: str
    bay: str
    group: str
    domain: str
    domain_state: str
    enclosure_position: int
    is_spare: bool
    full_height: bool
    covered_by: str | None
    server_present: bool
    model: str
    generation: str
    product: str
    power_state: str
    host: str | None
    ips: tuple[str, ...]
    profile: str | None
    enclosure_kind: str

    @property
    def label(self) -> str:
        return f"{self.enclosure} bay {self.bay}"


class ProfileRow(NamedTuple):
    name: str
    group: str
    enclosure: str | None
    bay: str | None
    boot_from_san: bool
    macs: tuple[str, ...]
    wwns: tuple[str, ...]
    serial_number: str
    uuid: str


# -- seeding ---------------------------------------------------------------------------------


def is_seeded(tx: Tx) -> bool:
    return bool(tx.scalar("SELECT COUNT(*) FROM vcem_seed"))


def seed(tx: FencedTx, inventory: Inventory, driver: HardwareDriver) -> bool:
    """Load the inventory into an empty store, once; False when it was seeded before
    (afterwards the store is the truth, whatever the file says now)."""
    if is_seeded(tx):
        return False
    for g in inventory.groups:
        tx.execute(
            "INSERT INTO vcem_groups (name, description, same_generation,"
            " auto_failover_disabled) VALUES (%(n)s, %(d)s, %(sg)s, %(af)s)",
            {
                "n": g.name,
                "d": g.description,
                "sg": g.spare_requires_same_generation,
                "af": g.automatic_failover_disabled,
            },
        )
    for d in inventory.domains:
        tx.execute(
            "INSERT INTO vcem_domains (name, group_name, state) VALUES (%(n)s, %(g)s, %(s)s)",
            {"n": d.name, "g": d.group, "s": d.state.value},
        )
        for position, enclosure in enumerate(d.enclosures):
            kind = next(e.kind for e in inventory.enclosures if e.name == enclosure)
            tx.execute(
                "INSERT INTO vcem_enclosures (name, domain, kind, position)"
                " VALUES (%(n)s, %(d)s, %(k)s, %(p)s)",
                {"n": enclosure, "d": d.name, "k": kind, "p": position},
            )
    for b in inventory.bays:
        s = b.server
        tx.execute(
            "INSERT INTO vcem_bays (enclosure, bay, bay_order, is_spare, full_height, covered_by,"
            " server_present, model, generation, product, power_state, host, ips) VALUES"
            " (%(e)s, %(b)s, %(o)s, %(spare)s, %(fh)s, %(cov)s, %(present)s, %(model)s,"
            " %(gen)s, %(product)s, %(power)s, %(host)s, %(ips)s)",
            {
                "e": b.enclosure,
                "b": b.name,
                "o": _order(b.name),
                "spare": b.spare,
                "fh": b.full_height,
                "cov": b.covered_by,
                "present": s is not None,
                "model": s.model if s else "",
                "gen": s.generation if s else "",
                "product": s.product if s else "",
                "power": ("on" if s.power_on else "off") if s else "unknown",
                "host": b.host,
                "ips": json.dumps(list(b.ips)),
            },
        )
        for ip in b.ips:
            tx.execute(
                "INSERT INTO vcem_bay_ips (ip, enclosure, bay) VALUES (%(ip)s, %(e)s, %(b)s)",
                {"ip": ip, "e": b.enclosure, "b": b.name},
            )
    for p in inventory.profiles:
        tx.execute(
            "INSERT INTO vcem_profiles (name, group_name, enclosure, bay, boot_from_san, macs,"
            " wwns, serial_number, uuid) VALUES (%(n)s, %(g)s, %(e)s, %(b)s, %(bfs)s, %(macs)s,"
            " %(wwns)s, %(serial)s, %(uuid)s)",
            {
                "n": p.name,
                "g": p.group,
                "e": p.enclosure,
                "b": p.bay,
                "bfs": p.boot_from_san,
                "macs": json.dumps(list(p.macs)),
                "wwns": json.dumps(list(p.wwns)),
                "serial": p.serial_number,
                "uuid": p.uuid,
            },
        )
    driver.seed(tx, inventory)
    tx.execute(
        "INSERT INTO vcem_seed (singleton, source, seeded_at) VALUES (TRUE, %(s)s, %(t)s)",
        {"s": str(inventory.path), "t": time.time()},
    )
    tx.audit(f"seeded the VCEM inventory from {inventory.path}")
    return True


def _order(name: str) -> int:
    number, sub, _ = bay_sort_key(name)
    return number * 32 + (ord(sub) - ord("A") + 1 if sub else 0)


# -- reads -----------------------------------------------------------------------------------

_GROUP_COLUMNS = (
    "name, description, same_generation, auto_failover_disabled, maintenance,"
    " maintenance_owner, locked_by_job"
)


def _group(row: Any) -> GroupRow:
    return GroupRow(
        name=str(row[0]),
        description=str(row[1]),
        same_generation=bool(row[2]),
        auto_failover_disabled=bool(row[3]),
        maintenance=bool(row[4]),
        maintenance_owner=row[5],
        locked_by_job=None if row[6] is None else int(row[6]),
    )


_GROUP_SELECT = f"SELECT {_GROUP_COLUMNS} FROM vcem_groups WHERE name = %(n)s"


def group(tx: Tx, name: str) -> GroupRow | None:
    row = tx.fetchone(_GROUP_SELECT, {"n": name})
    return None if row is None else _group(row)


def lock_group(tx: FencedTx, name: str) -> GroupRow | None:
    """The group's row, locked until the transaction ends (PostgreSQL: FOR UPDATE; SQLite's
    write transaction holds the whole database already). Every write that checks a group's
    rules first (no running job, not in maintenance, a bay's spare flag) takes this lock
    before reading, so that on PostgreSQL, where writes run READ COMMITTED, two such writes
    of one group run one after the other and the second sees what the first committed."""
    row = tx.fetchone(_GROUP_SELECT + " FOR UPDATE", {"n": name})
    return None if row is None else _group(row)


def list_groups(tx: Tx) -> list[GroupRow]:
    return [
        _group(r) for r in tx.fetchall(f"SELECT {_GROUP_COLUMNS} FROM vcem_groups ORDER BY name")
    ]


def domains_of_group(tx: Tx, name: str) -> list[DomainRow]:
    rows = tx.fetchall(
        "SELECT name, group_name, state FROM vcem_domains WHERE group_name = %(g)s ORDER BY name",
        {"g": name},
    )
    return [DomainRow(str(n), str(g), str(s)) for n, g, s in rows]


_ENCLOSURE_SELECT = (
    "SELECT e.name, e.domain, d.group_name, e.kind, e.position, d.state"
    " FROM vcem_enclosures e JOIN vcem_domains d ON d.name = e.domain"
)


def _enclosure(row: Any) -> EnclosureRow:
    a, b, c, d, e, f = row
    return EnclosureRow(str(a), str(b), str(c), str(d), int(e), str(f))


def list_enclosures(tx: Tx) -> list[EnclosureRow]:
    return [_enclosure(r) for r in tx.fetchall(_ENCLOSURE_SELECT + " ORDER BY e.name")]


def enclosure(tx: Tx, name: str) -> EnclosureRow | None:
    """One enclosure by its name (one indexed query)."""
    row = tx.fetchone(_ENCLOSURE_SELECT + " WHERE e.name = %(n)s", {"n": name})
    return None if row is None else _enclosure(row)


_BAY_SELECT = (
    "SELECT b.enclosure, b.bay, d.group_name, d.name, d.state, e.position, b.is_spare,"
    " b.full_height, b.covered_by, b.server_present, b.model, b.generation, b.product,"
    " b.power_state, b.host, b.ips, p.name, b.bay_order, e.kind"
    " FROM vcem_bays b JOIN vcem_enclosures e ON e.name = b.enclosure"
    " JOIN vcem_domains d ON d.name = e.domain"
    " LEFT JOIN vcem_profiles p ON p.enclosure = b.enclosure AND p.bay = b.bay"
)


def _json_list(text: str) -> tuple[str, ...]:
    # Most lists are empty or hold one address; "[]" needs no decoder.
    return () if text == "[]" else tuple(json.loads(text))


def _json_lists(texts: list[str]) -> list[tuple[str, ...]]:
    """Many JSON lists (our own json.dumps of lists of strings) in one decoder call."""
    if not texts:
        return []
    return [tuple(items) for items in json.loads("[" + ",".join(texts) + "]")]


def _bay(row: Any) -> BayRow:
    # SQLite gives BOOLEAN as 0/1 and TEXT as str; PostgreSQL gives bool and str.
    return BayRow(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        bool(row[6]),
        bool(row[7]),
        row[8],
        bool(row[9]),
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        _json_list(row[15]),
        row[16],
        row[18],
    )


def bay(tx: Tx, enclosure: str, name: str) -> BayRow | None:
    row = tx.fetchone(
        _BAY_SELECT + " WHERE b.enclosure = %(e)s AND b.bay = %(b)s", {"e": enclosure, "b": name}
    )
    return None if row is None else _bay(row)


def bay_by_host(tx: Tx, host: str) -> BayRow | None:
    row = tx.fetchone(_BAY_SELECT + " WHERE b.host = %(h)s", {"h": host.strip().lower()})
    return None if row is None else _bay(row)


def bay_by_ip(tx: Tx, ip: str) -> BayRow | None:
    try:
        canonical = normalise_ip(ip)
    except ValueError:
        return None
    row = tx.fetchone(
        "SELECT enclosure, bay FROM vcem_bay_ips WHERE ip = %(ip)s", {"ip": canonical}
    )
    return None if row is None else bay(tx, str(row[0]), str(row[1]))


def bays_of_group(tx: Tx, name: str, *, spares_only: bool = False) -> list[BayRow]:
    """The group's bays by domain, enclosure position and bay. `spares_only`: its spares
    (a failover's candidates), filtered in the query, so that a failover does not build a
    row for each of a group's ~60 bays to keep its ~4 spares."""
    spares = " AND b.is_spare" if spares_only else ""
    rows = tx.fetchall(
        _BAY_SELECT
        + " WHERE d.group_name = %(g)s"
        + spares
        + " ORDER BY d.name, e.position, b.bay_order",
        {"g": name},
    )
    return [_bay(r) for r in rows]


# A page of bays with their profiles; their enclosures and domains come from one small query
# per page and are joined here: a 4-table join repeats two index lookups for every one of
# 16,000 rows (~1.7 µs a row in SQLite) for the ~32 enclosures a page spans.
_PAGE_BAYS = (
    "SELECT b.enclosure, b.bay, b.is_spare, b.full_height, b.covered_by, b.server_present,"
    " b.model, b.generation, b.product, b.power_state, b.host, b.ips, p.name, b.bay_order"
    " FROM vcem_bays b"
    " LEFT JOIN vcem_profiles p ON p.enclosure = b.enclosure AND p.bay = b.bay"
    " WHERE (b.enclosure, b.bay_order) > (%(e)s, %(o)s)"
    " ORDER BY b.enclosure, b.bay_order LIMIT %(n)s"
)
_PAGE_ENCLOSURES = (
    "SELECT e.name, d.group_name, d.name, d.state, e.position, e.kind"
    " FROM vcem_enclosures e JOIN vcem_domains d ON d.name = e.domain"
    " WHERE e.name >= %(first)s AND e.name <= %(last)s"
)


_T = TypeVar("_T")

# Rows per page of an enumeration on SQLite: about what one 64 KiB chunk of the response
# holds (~50 bays, ~65 profiles). A page is read and rendered while it is still in the CPU
# caches; with 8 enumerations streaming at once, pages of 500 rows went cold between the
# chunks of the other connections: server CPU per 16,000-bay enumeration at 8 connections
# ~140 ms with 500, ~110 with 64; 15,000 profiles ~120 -> ~87 ms. A lone enumeration pays
# ~2 ms more for the extra transactions. PostgreSQL keeps 500: there a page's transaction
# is four round trips to the server.
SQLITE_PAGE = 64
REMOTE_PAGE = 500


def _page_size(store: Any, page: int | None) -> int:
    if page is not None:
        return page
    return SQLITE_PAGE if store.dialect == "sqlite" else REMOTE_PAGE


def iter_bays(store: Any, page: int | None = None) -> Iterator[BayRow]:
    """Every bay in (enclosure, bay order), one read transaction per page: bounded memory
    for 16,000 bays, and no transaction held open while the caller streams. The same rows
    as `bay()` gives one at a time (a bay whose enclosure or domain is missing is left out,
    as the join there leaves it out)."""
    return iter_bays_as(store, BayRow, page)


def iter_bays_as(store: Any, make: Callable[..., _T], page: int | None = None) -> Iterator[_T]:
    """`iter_bays`, each bay made by `make` from the fields of a BayRow (positionally, in
    their order): a caller that wants other rows (the CIM view's) builds no BayRow first."""
    page = _page_size(store, page)
    after: tuple[str, int] = ("", -1)
    while True:
        with store.read() as tx:
            # A row-value comparison walks the vcem_bays_order index from where the last
            # page ended (migration 0002), on SQLite and PostgreSQL alike.
            rows = tx.fetchall(_PAGE_BAYS, {"e": after[0], "o": after[1], "n": page})
            enclosures = (
                {
                    e[0]: e
                    for e in tx.fetchall(
                        _PAGE_ENCLOSURES, {"first": rows[0][0], "last": rows[-1][0]}
                    )
                }
                if rows
                else {}
            )
        ips = _json_lists([r[11] for r in rows])
        for i, r in enumerate(rows):
            e = enclosures.get(r[0])
            if e is None:
                continue
            yield make(
                r[0],
                r[1],
                e[1],
                e[2],
                e[3],
                e[4],
                bool(r[2]),
                bool(r[3]),
                r[4],
                bool(r[5]),
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                ips[i],
                r[12],
                e[5],
            )
        if len(rows) < page:
            return
        after = (rows[-1][0], rows[-1][13])


_PROFILE_COLUMNS = (
    "name, group_name, enclosure, bay, boot_from_san, macs, wwns, serial_number, uuid"
)


def _profile(row: Any) -> ProfileRow:
    return ProfileRow(
        row[0],
        row[1],
        row[2],
        row[3],
        bool(row[4]),
        _json_list(row[5]),
        _json_list(row[6]),
        row[7],
        row[8],
    )


def profile(tx: Tx, name: str) -> ProfileRow | None:
    row = tx.fetchone(
        f"SELECT {_PROFILE_COLUMNS} FROM vcem_profiles WHERE name = %(n)s", {"n": name}
    )
    return None if row is None else _profile(row)


def profile_in_bay(tx: Tx, enclosure: str, name: str) -> ProfileRow | None:
    row = tx.fetchone(
        f"SELECT {_PROFILE_COLUMNS} FROM vcem_profiles WHERE enclosure = %(e)s AND bay = %(b)s",
        {"e": enclosure, "b": name},
    )
    return None if row is None else _profile(row)


def iter_profiles(store: Any, page: int | None = None) -> Iterator[ProfileRow]:
    """Every profile by name, a page per read transaction (as `iter_bays`)."""
    return iter_profiles_as(store, ProfileRow, page)


def iter_profiles_as(store: Any, make: Callable[..., _T], page: int | None = None) -> Iterator[_T]:
    """`iter_profiles`, each made by `make` from the fields of a ProfileRow (as
    `iter_bays_as`)."""
    page = _page_size(store, page)
    after = ""
    while True:
        with store.read() as tx:
            rows = tx.fetchall(
                f"SELECT {_PROFILE_COLUMNS} FROM vcem_profiles WHERE name > %(a)s"
                " ORDER BY name LIMIT %(n)s",
                {"a": after, "n": page},
            )
        # The JSON lists of a whole page in one decoder call, not two calls a profile.
        lists = _json_lists([text for r in rows for text in (r[5], r[6])])
        for i, r in enumerate(rows):
            yield make(
                r[0], r[1], r[2], r[3], bool(r[4]), lists[2 * i], lists[2 * i + 1], r[7], r[8]
            )
        if len(rows) < page:
            return
        after = rows[-1][0]


_SPARES = (
    "SELECT d.group_name, COUNT(*) FROM vcem_bays b"
    " JOIN vcem_enclosures e ON e.name = b.enclosure JOIN vcem_domains d ON d.name = e.domain"
    " LEFT JOIN vcem_profiles p ON p.enclosure = b.enclosure AND p.bay = b.bay"
    " WHERE b.is_spare = TRUE AND b.server_present = TRUE AND b.power_state = 'off'"
    " AND p.name IS NULL AND d.state = 'managed'"
)


def available_spares(tx: Tx, group: str | None = None) -> dict[str, int]:
    """Per group: spare bays with a server, no profile, powered off (last known state).

    With `group`, that group only: its domains' bays, not every bay of the inventory.
    """
    if group is None:
        rows = tx.fetchall(_SPARES + " GROUP BY d.group_name")
    else:
        rows = tx.fetchall(
            _SPARES + " AND d.group_name = %(g)s GROUP BY d.group_name", {"g": group}
        )
    return {str(g): int(n) for g, n in rows}


# -- writes (inside the caller's fenced transaction) -----------------------------------------


def set_power(tx: FencedTx, enclosure: str, name: str, power: str) -> None:
    tx.execute(
        "UPDATE vcem_bays SET power_state = %(p)s WHERE enclosure = %(e)s AND bay = %(b)s",
        {"p": power, "e": enclosure, "b": name},
    )


def set_seen(tx: FencedTx, enclosure: str, name: str, present: bool, power: str) -> None:
    """What a device read found in a bay: a server or none, and its power."""
    tx.execute(
        "UPDATE vcem_bays SET server_present = %(s)s, power_state = %(p)s"
        " WHERE enclosure = %(e)s AND bay = %(b)s",
        {"s": present, "p": power, "e": enclosure, "b": name},
    )


def take_lock(tx: FencedTx, group_name: str, job_id: int) -> bool:
    """Lock the group for a starting job, unless it is in maintenance (False then). The
    job's checks ran before its claiming transaction; this re-check inside it, on the
    locked row, is what makes maintenance and a job's start exclude each other."""
    changed = tx.execute(
        "UPDATE vcem_groups SET locked_by_job = %(j)s WHERE name = %(g)s AND maintenance = FALSE",
        {"j": job_id, "g": group_name},
    )
    return changed == 1


def set_lock(tx: FencedTx, group_name: str, job_id: int | None) -> None:
    tx.execute(
        "UPDATE vcem_groups SET locked_by_job = %(j)s WHERE name = %(g)s",
        {"j": job_id, "g": group_name},
    )


def move_profile(
    tx: FencedTx,
    profile_name: str,
    source: tuple[str, str] | None,
    target: tuple[str, str],
) -> tuple[str | None, tuple[str, ...]]:
    """Re-point the profile to the target bay (addresses unchanged, reference §1.4), clear
    the target's spare flag (WP-OLD-6 "Removes the spare designation from the spare bay"),
    and remove the source's host name and IPs ("Removes the source server's host name and IP
    address information", §1.6). Returns the discovery data taken from the source."""
    host: str | None = None
    ips: tuple[str, ...] = ()
    if source is not None:
        host, ips = clear_discovery(tx, source[0], source[1])
    tx.execute(
        "UPDATE vcem_profiles SET enclosure = %(e)s, bay = %(b)s WHERE name = %(n)s",
        {"e": target[0], "b": target[1], "n": profile_name},
    )
    tx.execute(
        "UPDATE vcem_bays SET is_spare = FALSE WHERE enclosure = %(e)s AND bay = %(b)s",
        {"e": target[0], "b": target[1]},
    )
    return host, ips


def clear_discovery(tx: FencedTx, enclosure: str, bay: str) -> tuple[str | None, tuple[str, ...]]:
    """Remove a bay's host name and IPs (they left with its profile); returns what they were."""
    row = tx.fetchone(
        "SELECT host, ips FROM vcem_bays WHERE enclosure = %(e)s AND bay = %(b)s",
        {"e": enclosure, "b": bay},
    )
    host, ips = (row[0], tuple(json.loads(row[1]))) if row is not None else (None, ())
    tx.execute(
        "UPDATE vcem_bays SET host = NULL, ips = '[]' WHERE enclosure = %(e)s AND bay = %(b)s",
        {"e": enclosure, "b": bay},
    )
    tx.execute(
        "DELETE FROM vcem_bay_ips WHERE enclosure = %(e)s AND bay = %(b)s",
        {"e": enclosure, "b": bay},
    )
    return host, ips


def unassign_profile(tx: FencedTx, profile_name: str) -> None:
    """The profile is assigned to no bay (a move that failed after taking it off its bay)."""
    tx.execute(
        "UPDATE vcem_profiles SET enclosure = NULL, bay = NULL WHERE name = %(n)s",
        {"n": profile_name},
    )


def set_discovery(
    tx: FencedTx, enclosure: str, name: str, host: str | None, ips: tuple[str, ...]
) -> None:
    """Associate discovered host name and IPs with a bay, taking them from any other bay."""
    if host is not None:
        tx.execute("UPDATE vcem_bays SET host = NULL WHERE host = %(h)s", {"h": host.lower()})
    for ip in ips:
        tx.execute("DELETE FROM vcem_bay_ips WHERE ip = %(ip)s", {"ip": ip})
        tx.execute(
            "INSERT INTO vcem_bay_ips (ip, enclosure, bay) VALUES (%(ip)s, %(e)s, %(b)s)",
            {"ip": ip, "e": enclosure, "b": name},
        )
    tx.execute(
        "UPDATE vcem_bays SET host = %(h)s, ips = %(ips)s WHERE enclosure = %(e)s AND bay = %(b)s",
        {
            "h": None if host is None else host.lower(),
            "ips": json.dumps(list(ips)),
            "e": enclosure,
            "b": name,
        },
    )
