"""The VCEM inventory: domain groups, domains, enclosures, bays, servers and profiles.

Read from the `[vcem]` part of the inventory file (`etc/inventory.example.toml`; the format
is documented in that file's comments and in docs/inventory.md). The inventory only *seeds*
the store on the first start (`provider.vcem.repository.seed`); afterwards the store is the
truth and editing the file changes nothing.

The object model follows reference vcem-domain.md §1.1: a domain group holds domains, a
domain holds 1 to 4 enclosures (VC multi-enclosure stacking, enc0..enc3), an enclosure holds
device bays, a bay may hold a server blade and may be designated a spare, and a server
profile belongs to one domain group and is assigned to at most one bay. Bay names are
strings ("3", "1A"): double-dense blades use sub-bays (§1.2). A full-height blade in bay N
also covers bay N+8 of a c7000 (N+4 of a c3000).

Every validation error is a `ConfigError` naming the file and the line of the offending
table or key: tomllib reports no positions after parsing, so `locate()` finds them in the
text.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provider.tomlfile import TomlReader, load_toml, locate, parse_toml

__all__ = [
    "Bay",
    "Domain",
    "DomainGroup",
    "DomainState",
    "Enclosure",
    "Inventory",
    "Profile",
    "Server",
    "bay_sort_key",
    "load_inventory",
    "locate",
    "normalise_ip",
    "parse_inventory",
]


class DomainState(enum.Enum):
    """A VC domain's status as VCEM sees it (reference §6; GM_Enclosure.DomainState)."""

    MANAGED = "managed"  # normal: failovers and moves may run
    UNMANAGED = "unmanaged"  # released back to its VCM: the failover job refuses it
    UNLICENSED = "unlicensed"  # no VCEM licence: refused
    INCOMPATIBLE = "incompatible"  # beyond the group firmware mode: refused
    MAINTENANCE = "maintenance"  # VC domain maintenance in progress: refused


# Bays per enclosure type, and how far a full-height blade reaches (reference §1.2 [I]).
ENCLOSURE_TYPES: dict[str, tuple[int, int]] = {"c7000": (16, 8), "c3000": (8, 4)}

PRODUCTS = ("ProLiant", "Integrity")  # the product names the failover job knows (§1.2)


@dataclass(frozen=True)
class DomainGroup:
    name: str
    description: str
    # Seed 000 / reference §2.3: "The server model generation is not a differentiator";
    # HP's own best practice warns against mixing generations (§7.3), so a group may ask.
    spare_requires_same_generation: bool
    automatic_failover_disabled: bool


@dataclass(frozen=True)
class Domain:
    name: str
    group: str
    state: DomainState
    enclosures: tuple[str, ...]


@dataclass(frozen=True)
class Enclosure:
    name: str
    domain: str
    kind: str  # "c7000" | "c3000"


@dataclass(frozen=True)
class Server:
    """The blade in a bay, as first discovered."""

    model: str  # e.g. "BL460c"
    generation: str  # e.g. "G7"; not part of the model (seed 000)
    product: str  # "ProLiant" | "Integrity"
    power_on: bool


@dataclass(frozen=True)
class Bay:
    enclosure: str
    name: str
    server: Server | None
    spare: bool
    full_height: bool
    covered_by: str | None  # the bay whose full-height blade covers this one
    host: str | None  # discovery data (HP SIM in VCEM): host name ...
    ips: tuple[str, ...]  # ... and IP addresses, normalised

    @property
    def key(self) -> tuple[str, str]:
        return (self.enclosure, self.name)


@dataclass(frozen=True)
class Profile:
    name: str
    group: str
    enclosure: str | None
    bay: str | None
    boot_from_san: bool
    macs: tuple[str, ...]
    wwns: tuple[str, ...]
    serial_number: str
    uuid: str


@dataclass(frozen=True)
class Inventory:
    path: Path
    groups: tuple[DomainGroup, ...]
    domains: tuple[Domain, ...]
    enclosures: tuple[Enclosure, ...]
    bays: tuple[Bay, ...]
    profiles: tuple[Profile, ...]

    def group_of_enclosure(self, enclosure: str) -> str:
        domain = next(e.domain for e in self.enclosures if e.name == enclosure)
        return next(d.group for d in self.domains if d.name == domain)


_BAY_NAME = re.compile(r"^(?P<num>\d{1,3})(?P<sub>[A-Za-z]?)$")


def bay_sort_key(name: str) -> tuple[int, str, str]:
    """Bays in their physical order: 1, 1A, 1B, 2, ..., 10 (never "10" before "2")."""
    match = _BAY_NAME.match(name)
    if match is None:
        return (10**6, "", name)
    return (int(match.group("num")), match.group("sub").upper(), name)


def normalise_ip(text: str) -> str:
    """The canonical text of an IP address (IPv6 compressed, lower case); ValueError if bad."""
    return str(ipaddress.ip_address(text.strip()))


# -- parsing -------------------------------------------------------------------------------


_Reader = TomlReader


_GROUP_KEYS = {"description", "spare_requires_same_generation", "automatic_failover_disabled"}
_DOMAIN_KEYS = {"group", "state", "enclosures"}
_ENCLOSURE_KEYS = {"type", "bays"}
_BAY_KEYS = {"model", "generation", "product", "power", "spare", "full_height", "host", "ips"}
_PROFILE_KEYS = {
    "group",
    "enclosure",
    "bay",
    "boot_from_san",
    "macs",
    "wwns",
    "serial_number",
    "uuid",
}
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$")
_WWN = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){7}$")


def load_inventory(path: Path) -> Inventory:
    """Read and validate the `[vcem]` part of the inventory file at `path`."""
    text, _ = load_toml(path, "the inventory")
    return parse_inventory(text, path)


def parse_inventory(text: str, path: Path) -> Inventory:
    data = parse_toml(text, path)
    r = _Reader(path, text)
    vcem = r.table(["vcem"], data.get("vcem", {}), {"groups", "domains", "enclosures", "profiles"})
    groups = _groups(r, r.table(["vcem", "groups"], vcem.get("groups", {})))
    domains = _domains(r, r.table(["vcem", "domains"], vcem.get("domains", {})), groups)
    enclosures, bays = _enclosures(
        r, r.table(["vcem", "enclosures"], vcem.get("enclosures", {})), domains
    )
    profiles = _profiles(r, r.table(["vcem", "profiles"], vcem.get("profiles", {})), bays, domains)
    _check_discovery(r, bays)
    return Inventory(
        path=path,
        groups=tuple(groups.values()),
        domains=tuple(domains.values()),
        enclosures=tuple(enclosures),
        bays=tuple(bays.values()),
        profiles=tuple(profiles),
    )


def _groups(r: _Reader, table: dict[str, Any]) -> dict[str, DomainGroup]:
    groups: dict[str, DomainGroup] = {}
    for name, raw in table.items():
        where = ["vcem", "groups", name]
        t = r.table(where, raw, _GROUP_KEYS)
        groups[name] = DomainGroup(
            name=name,
            description=r.get(where, t, "description", str, ""),
            spare_requires_same_generation=r.get(
                where, t, "spare_requires_same_generation", bool, False
            ),
            automatic_failover_disabled=r.get(where, t, "automatic_failover_disabled", bool, False),
        )
    return groups


def _domains(
    r: _Reader, table: dict[str, Any], groups: Mapping[str, DomainGroup]
) -> dict[str, Domain]:
    domains: dict[str, Domain] = {}
    owner: dict[str, str] = {}
    for name, raw in table.items():
        where = ["vcem", "domains", name]
        t = r.table(where, raw, _DOMAIN_KEYS)
        group = r.get(where, t, "group", str, None)
        if group is None:
            raise r.fail(where, None, f'domain {name} needs group = "<domain group>".')
        if group not in groups:
            raise r.fail(
                where, "group", f"domain {name}: no domain group {group!r} in [vcem.groups]."
            )
        state_text = r.get(where, t, "state", str, "managed")
        try:
            state = DomainState(state_text)
        except ValueError:
            raise r.fail(
                where,
                "state",
                f"domain {name}: state must be one of "
                f"{', '.join(s.value for s in DomainState)}, not {state_text!r}.",
            ) from None
        enclosures = r.strings(where, t, "enclosures")
        # VC multi-enclosure stacking: enc0 plus remote enc1..enc3 (reference §1.1).
        if not 1 <= len(enclosures) <= 4:
            raise r.fail(
                where,
                "enclosures",
                f"domain {name} must have 1 to 4 enclosures (VC stacking), not {len(enclosures)}.",
            )
        for enclosure in enclosures:
            if enclosure in owner:
                raise r.fail(
                    where,
                    "enclosures",
                    f"enclosure {enclosure} is in domain {owner[enclosure]} already; "
                    "an enclosure belongs to one domain.",
                )
            owner[enclosure] = name
        domains[name] = Domain(name, group, state, enclosures)
    return domains


def _enclosures(
    r: _Reader, table: dict[str, Any], domains: Mapping[str, Domain]
) -> tuple[list[Enclosure], dict[tuple[str, str], Bay]]:
    domain_of = {e: d.name for d in domains.values() for e in d.enclosures}
    enclosures: list[Enclosure] = []
    bays: dict[tuple[str, str], Bay] = {}
    for name, raw in table.items():
        where = ["vcem", "enclosures", name]
        t = r.table(where, raw, _ENCLOSURE_KEYS)
        if name not in domain_of:
            raise r.fail(
                where, None, f"enclosure {name} is in no domain; list it in a [vcem.domains.*]."
            )
        kind = r.get(where, t, "type", str, "c7000")
        if kind not in ENCLOSURE_TYPES:
            raise r.fail(
                where,
                "type",
                f"enclosure type must be {' or '.join(ENCLOSURE_TYPES)}, not {kind!r}.",
            )
        enclosures.append(Enclosure(name, domain_of[name], kind))
        bays.update(_bays(r, name, kind, r.table([*where, "bays"], t.get("bays", {}))))
    for enclosure, domain in domain_of.items():
        if not any(e.name == enclosure for e in enclosures):
            raise r.fail(
                ["vcem", "domains", domain],
                "enclosures",
                f"domain {domain} lists enclosure {enclosure}, which has no [vcem.enclosures.*].",
            )
    return enclosures, bays


def _bays(
    r: _Reader, enclosure: str, kind: str, table: dict[str, Any]
) -> dict[tuple[str, str], Bay]:
    count, reach = ENCLOSURE_TYPES[kind]
    names = {str(n) for n in range(1, count + 1)} | set(table)
    covered: dict[str, str] = {}
    for name, raw in table.items():
        where = ["vcem", "enclosures", enclosure, "bays", name]
        t = r.table(where, raw, _BAY_KEYS)
        if bay_sort_key(name)[0] >= 10**6:
            raise r.fail(
                where, None, f'bay name {name!r}: a number with an optional letter ("1A").'
            )
        if r.get(where, t, "full_height", bool, False):
            number = bay_sort_key(name)[0]
            if not 1 <= number <= reach or bay_sort_key(name)[1]:
                raise r.fail(
                    where,
                    "full_height",
                    f"a full-height blade sits in bays 1-{reach} of a {kind}, not in bay {name}.",
                )
            covered[str(number + reach)] = name
    bays: dict[tuple[str, str], Bay] = {}
    for name in sorted(names, key=bay_sort_key):
        where = ["vcem", "enclosures", enclosure, "bays", name]
        t = table.get(name, {})
        if name in covered and t:
            raise r.fail(
                where,
                None,
                f"bay {name} is covered by the full-height blade in bay {covered[name]}; "
                "it cannot be described on its own.",
            )
        bays[(enclosure, name)] = _bay(r, where, enclosure, name, t, covered.get(name))
    return bays


def _bay(
    r: _Reader,
    where: list[str],
    enclosure: str,
    name: str,
    t: Mapping[str, Any],
    covered_by: str | None,
) -> Bay:
    model = r.get(where, t, "model", str, None)
    server: Server | None = None
    if model is not None:
        product = r.get(where, t, "product", str, "ProLiant")
        power = r.get(where, t, "power", str, "off")
        if power not in ("on", "off"):
            raise r.fail(where, "power", f'power must be "on" or "off", not {power!r}.')
        server = Server(model, r.get(where, t, "generation", str, ""), product, power == "on")
    else:
        for key in ("generation", "product", "power", "full_height"):
            if key in t:
                raise r.fail(
                    where, key, f"bay {enclosure}/{name} has no server (no model); {key} needs one."
                )
    ips: list[str] = []
    for text in r.strings(where, t, "ips"):
        try:
            ips.append(normalise_ip(text))
        except ValueError:
            raise r.fail(where, "ips", f"{text!r} is not an IP address.") from None
    host = r.get(where, t, "host", str, None)
    return Bay(
        enclosure=enclosure,
        name=name,
        server=server,
        spare=r.get(where, t, "spare", bool, False),
        full_height=r.get(where, t, "full_height", bool, False),
        covered_by=covered_by,
        host=host.lower() if host else None,
        ips=tuple(ips),
    )


def _profiles(
    r: _Reader,
    table: dict[str, Any],
    bays: Mapping[tuple[str, str], Bay],
    domains: Mapping[str, Domain],
) -> list[Profile]:
    group_of = {e: d.group for d in domains.values() for e in d.enclosures}
    holder: dict[tuple[str, str], str] = {}
    profiles: list[Profile] = []
    for name, raw in table.items():
        where = ["vcem", "profiles", name]
        t = r.table(where, raw, _PROFILE_KEYS)
        enclosure = r.get(where, t, "enclosure", str, None)
        bay_name = r.get(where, t, "bay", str, None)
        group = r.get(where, t, "group", str, None)
        if (enclosure is None) != (bay_name is None):
            raise r.fail(where, None, f"profile {name}: give both enclosure and bay, or neither.")
        if enclosure is not None and bay_name is not None:
            bay = bays.get((enclosure, bay_name))
            if bay is None:
                raise r.fail(where, "bay", f"profile {name}: no bay {enclosure}/{bay_name}.")
            if bay.covered_by is not None:
                raise r.fail(
                    where,
                    "bay",
                    f"profile {name}: bay {enclosure}/{bay_name} is covered by the full-height "
                    f"blade in bay {bay.covered_by}; assign the profile there.",
                )
            if bay.spare:
                raise r.fail(
                    where,
                    "bay",
                    f"profile {name}: bay {enclosure}/{bay_name} is a spare; a spare "
                    "bay has no assigned profile (reference §2.3).",
                )
            if bay.key in holder:
                raise r.fail(
                    where,
                    "bay",
                    f"bay {enclosure}/{bay_name} holds profile {holder[bay.key]} already.",
                )
            holder[bay.key] = name
            if group is not None and group != group_of[enclosure]:
                raise r.fail(
                    where,
                    "group",
                    f"profile {name} is in bay {enclosure}/{bay_name} of domain group "
                    f"{group_of[enclosure]}, not {group}.",
                )
            group = group_of[enclosure]
        elif group is None or group not in {d.group for d in domains.values()}:
            raise r.fail(where, "group", f"unassigned profile {name} needs group = <domain group>.")
        macs = r.strings(where, t, "macs")
        wwns = r.strings(where, t, "wwns")
        for mac in macs:
            if not _MAC.match(mac):
                raise r.fail(where, "macs", f"{mac!r} is not a MAC address (00:17:A4:77:00:10).")
        for wwn in wwns:
            if not _WWN.match(wwn):
                raise r.fail(where, "wwns", f"{wwn!r} is not a WWN (50:06:0B:00:00:C2:62:00).")
        profiles.append(
            Profile(
                name=name,
                group=group,
                enclosure=enclosure,
                bay=bay_name,
                boot_from_san=r.get(where, t, "boot_from_san", bool, False),
                macs=tuple(m.upper() for m in macs),
                wwns=tuple(w.upper() for w in wwns),
                serial_number=r.get(where, t, "serial_number", str, ""),
                uuid=r.get(where, t, "uuid", str, ""),
            )
        )
    return profiles


def _check_discovery(r: _Reader, bays: Mapping[tuple[str, str], Bay]) -> None:
    """Host names and IPs resolve to one bay each, or failover by host/IP would be ambiguous."""
    seen: dict[str, tuple[str, str]] = {}
    for bay in bays.values():
        where = ["vcem", "enclosures", bay.enclosure, "bays", bay.name]
        if (bay.host or bay.ips) and bay.server is None:
            raise r.fail(
                where, "host", f"bay {bay.enclosure}/{bay.name} has discovery data but no server."
            )
        for key, value in [("host", bay.host)] + [("ips", ip) for ip in bay.ips]:
            if value is None:
                continue
            if value in seen:
                other = seen[value]
                raise r.fail(
                    where, key, f"{value} is already the {key} of bay {other[0]}/{other[1]}."
                )
            seen[value] = bay.key
