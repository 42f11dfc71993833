"""The `[gicap]` part of the inventory file: complexes, their partitions, cells and rights.

Format (documented in `etc/inventory.example.toml` and docs/capacity.md):

    [gicap]
    sharing_rights = 64                  # GiCAP sharing rights applied to this Group Manager

    [gicap.groups.<group>]
    description = "..."
    temporary_capacity_minutes = 43200   # TiCAP held by the Group Manager for the group

    [gicap.complexes.<complex>]
    usage_rights = 12                    # core usage rights bought for the complex
    temporary_capacity_minutes = 0       # the complex's own TiCAP balance
    group = "<group>"                    # optional: already a member of this group
    member = "<member name>"             # default: the complex name
    hosts = ["..."]                      # the member's host list; default: every host

    [gicap.complexes.<complex>.npars.<npar>]
    hosts = ["host.example.com"]         # the nPar's own OS instance(s)
    vpars = { vpar1 = ["h1.example.com"] }   # vPars of the nPar and their hosts
    cells = [{ name = "cell0", cores = 4, active = true }, ...]
    intended_active = 6                  # default: one core per active cell

Every error names the file and the line of the offending table or key. The inventory only
seeds the store on the first start; afterwards the store is the truth.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from provider.tomlfile import TomlReader, load_toml, parse_toml

from .model import CapacityState, Cell, Complex, Group, Partition, name_problem

__all__ = ["load_capacity_inventory", "parse_capacity_inventory"]

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")


class _Reader(TomlReader):
    def integer(self, where: Sequence[str], t: Mapping[str, Any], key: str, default: int) -> int:
        value = t.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(
                where, key, f"{'.'.join(where)}.{key} must be a whole number >= 0, not {value!r}."
            )
        return value

    def string(self, where: Sequence[str], t: Mapping[str, Any], key: str, default: str) -> str:
        value = t.get(key, default)
        if not isinstance(value, str):
            raise self.fail(where, key, f"{'.'.join(where)}.{key} must be a string.")
        return value

    def hosts(self, where: Sequence[str], t: Mapping[str, Any], key: str) -> list[str]:
        value = t.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(where, key, f"{'.'.join(where)}.{key} must be a list of host names.")
        for host in value:
            if not _HOST.match(host):
                raise self.fail(where, key, f"{host!r} is not a host name or IPv4 address.")
        return list(value)

    def name(self, where: Sequence[str], kind: str, name: str, key: str | None = None) -> None:
        problem = name_problem(kind, name)
        if problem is not None:
            raise self.fail(where, key, problem + ".")


def load_capacity_inventory(path: Path) -> CapacityState:
    text, _ = load_toml(path, "the inventory")
    return parse_capacity_inventory(text, path)


def parse_capacity_inventory(text: str, path: Path) -> CapacityState:
    data = parse_toml(text, path)
    r = _Reader(path, text)
    top = r.table(["gicap"], data.get("gicap", {}), {"sharing_rights", "groups", "complexes"})
    state = CapacityState(sharing_rights=r.integer(["gicap"], top, "sharing_rights", 0))
    for name, raw in r.table(
        ["gicap", "groups"], top.get("groups", {}), set(top.get("groups", {}))
    ).items():
        where = ["gicap", "groups", name]
        r.name(where, "group", name)
        t = r.table(where, raw, {"description", "temporary_capacity_minutes"})
        state.groups[name] = Group(
            name=name,
            description=r.string(where, t, "description", ""),
            ticap_minutes=r.integer(where, t, "temporary_capacity_minutes", 0),
        )
    complexes = top.get("complexes", {})
    owner: dict[str, str] = {}
    for name, raw in r.table(["gicap", "complexes"], complexes, set(complexes)).items():
        cx = _complex(r, state, name, raw, owner)
        state.complexes[name] = cx
    _check_members(r, state)
    return state


_COMPLEX_KEYS = {"usage_rights", "temporary_capacity_minutes", "group", "member", "hosts", "npars"}
_NPAR_KEYS = {"hosts", "vpars", "cells", "intended_active"}


def _complex(
    r: _Reader, state: CapacityState, name: str, raw: Any, owner: dict[str, str]
) -> Complex:
    where = ["gicap", "complexes", name]
    r.name(where, "complex", name)
    t = r.table(where, raw, _COMPLEX_KEYS)
    npars = t.get("npars", {})
    partitions = [
        _npar(r, [*where, "npars", pname], pname, praw, owner, name)
        for pname, praw in r.table([*where, "npars"], npars, set(npars)).items()
    ]
    if not partitions:
        raise r.fail(
            where, None, f"complex {name} needs at least one [{'.'.join(where)}.npars.<npar>]."
        )
    rights = r.integer(where, t, "usage_rights", 0)
    cx = Complex(
        name=name,
        partitions=partitions,
        owned_rights=rights,
        rights=rights,
        ticap_minutes=r.integer(where, t, "temporary_capacity_minutes", 0),
    )
    if rights > cx.total_cores:
        raise r.fail(
            where,
            "usage_rights",
            f"complex {name} has {cx.total_cores} cores, fewer than its {rights} usage rights.",
        )
    group = r.string(where, t, "group", "")
    if group:
        if group not in state.groups:
            raise r.fail(where, "group", f"complex {name}: no group {group!r} in [gicap.groups].")
        member = r.string(where, t, "member", name)
        r.name(where, "member", member, "member")
        cx.group, cx.member = group, member
        cx.member_hosts = r.hosts(where, t, "hosts") or cx.all_hosts
    return cx


def _npar(
    r: _Reader,
    where: list[str],
    name: str,
    raw: Any,
    owner: dict[str, str],
    complex_name: str,
) -> Partition:
    t = r.table(where, raw, _NPAR_KEYS)
    hosts = r.hosts(where, t, "hosts")
    vpars_raw = t.get("vpars", {})
    if not isinstance(vpars_raw, dict):
        raise r.fail(where, "vpars", "vpars must be a table of vPar name = [hosts].")
    vpars = {vname: r.hosts(where, vpars_raw, vname) for vname in vpars_raw}
    if not hosts and not vpars:
        raise r.fail(where, None, f"nPar {name} needs hosts (or vPars with hosts).")
    for host in hosts + [h for v in vpars.values() for h in v]:
        key = host.lower()
        if key in owner:
            raise r.fail(
                where, "hosts", f"host {host} is already an OS instance of complex {owner[key]}."
            )
        owner[key] = complex_name
    cells = _cells(r, where, t.get("cells"))
    active_cells = sum(1 for c in cells if c.active)
    cores = sum(c.cores for c in cells if c.active)
    intended = r.integer(where, t, "intended_active", active_cells)
    if not active_cells <= intended <= cores:
        raise r.fail(
            where,
            "intended_active",
            f"nPar {name}: intended_active must be between one per active cell ({active_cells}) "
            f"and the cores on active cells ({cores}), not {intended}.",
        )
    return Partition(name, hosts, cells, intended, intended, vpars)


def _cells(r: _Reader, where: list[str], raw: Any) -> list[Cell]:
    if not isinstance(raw, list) or not raw:
        raise r.fail(where, "cells", "cells must be a list of { name, cores, active } tables.")
    cells: list[Cell] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"name", "cores", "active"}:
            raise r.fail(where, "cells", 'each cell is { name = "...", cores = N, active = true }.')
        name, cores, active = item.get("name"), item.get("cores"), item.get("active", True)
        if not isinstance(name, str) or not name:
            raise r.fail(where, "cells", "every cell needs a name.")
        if not isinstance(cores, int) or isinstance(cores, bool) or cores < 1:
            raise r.fail(where, "cells", f"cell {name}: cores must be a whole number >= 1.")
        if not isinstance(active, bool):
            raise r.fail(where, "cells", f"cell {name}: active must be true or false.")
        cells.append(Cell(name, cores, active))
    return cells


def _check_members(r: _Reader, state: CapacityState) -> None:
    seen: dict[str, str] = {}
    for cx in state.complexes.values():
        if cx.member is None:
            continue
        where = ["gicap", "complexes", cx.name]
        if cx.member in seen:
            raise r.fail(
                where, "member", f"member name {cx.member} is used by {seen[cx.member]} too."
            )
        seen[cx.member] = cx.name
        for host in cx.member_hosts:
            if cx.partition_of(host) is None:
                raise r.fail(where, "hosts", f"host {host} is not an OS instance of {cx.name}.")
    in_use = state.sharing_in_use()
    if in_use > state.sharing_rights:
        raise r.fail(
            ["gicap"],
            "sharing_rights",
            f"the members have {in_use} cores without usage rights; sharing_rights "
            f"({state.sharing_rights}) must cover them.",
        )
