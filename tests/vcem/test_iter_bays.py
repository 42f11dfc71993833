"""`repository.iter_bays` and `iter_profiles` page through the rows that single reads give, and
the CIM providers' enumeration rows are those of single reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from provider.cim.provider import OperationContext, Row
from provider.drivers.base import BayRef
from provider.errors import DeviceError
from provider.vcem import repository as repo
from provider.vcem.cim import _Bays, _Profiles
from tests.vcem.direct import vcem_stack

_CTX = OperationContext(None, "root/cimv2", "localhost")


@pytest.mark.parametrize("page", [1, 3, 7, 500])
def test_every_page_size_gives_the_rows_of_single_reads(tmp_path: Path, page: int) -> None:
    async def read() -> tuple[list[repo.BayRow], list[repo.BayRow | None], list[tuple[str, str]]]:
        async with vcem_stack(tmp_path, start_runner=False) as stack:
            paged = list(repo.iter_bays(stack.store, page=page))
            with stack.store.read() as tx:
                names = tx.fetchall(
                    "SELECT enclosure, bay FROM vcem_bays ORDER BY enclosure, bay_order"
                )
                single = [repo.bay(tx, str(e), str(b)) for e, b in names]
        return paged, single, [(str(e), str(b)) for e, b in names]

    paged, single, names = asyncio.run(read())
    assert len(paged) == len(names) > 8
    assert paged == single
    # Enclosure and domain columns really vary across the inventory (a join mistake
    # would repeat one enclosure's values).
    assert len({(b.enclosure, b.domain, b.group, b.enclosure_position) for b in paged}) > 1


@pytest.mark.parametrize("page", [1, 2, 500])
def test_profile_pages_give_the_rows_of_single_reads(tmp_path: Path, page: int) -> None:
    async def read() -> tuple[list[repo.ProfileRow], list[repo.ProfileRow | None]]:
        async with vcem_stack(tmp_path, start_runner=False) as stack:
            paged = list(repo.iter_profiles(stack.store, page=page))
            with stack.store.read() as tx:
                names = tx.fetchall("SELECT name FROM vcem_profiles ORDER BY name")
                single = [repo.profile(tx, str(n)) for (n,) in names]
        return paged, single

    paged, single = asyncio.run(read())
    assert len(paged) > 2 and paged == single
    assert any(p.macs for p in paged) and all(isinstance(p.macs, tuple) for p in paged)


def test_the_cim_rows_of_an_enumeration_are_those_of_single_reads(tmp_path: Path) -> None:
    # The providers build their enumeration rows straight from the fields of a page
    # (iter_bays_as, iter_profiles_as); GetInstance builds them from a BayRow.
    async def read() -> tuple[list[Row], list[Row], list[Row], list[repo.ProfileRow]]:
        async with vcem_stack(tmp_path, start_runner=False) as stack:
            bays = _Bays(stack.store, stack.service)
            enumerated = list(bays.enumerate(_CTX, "GM_DeviceBay"))
            single = [
                bays.get(
                    _CTX,
                    "GM_DeviceBay",
                    {"EnclosureName": r["EnclosureName"], "BayName": r["BayName"]},
                )
                for r in enumerated
            ]
            profiles = list(_Profiles(stack.store).enumerate(_CTX, "GM_ServerProfile"))
            return enumerated, single, profiles, list(repo.iter_profiles(stack.store))

    enumerated, single, profiles, profile_rows = asyncio.run(read())
    assert len(enumerated) > 8 and enumerated == single
    assert any(r["CoveredBays"] for r in enumerated) and any(r["IPAddresses"] for r in enumerated)
    assert [
        {
            "Name": p.name,
            "DomainGroup": p.group,
            "EnclosureName": p.enclosure,
            "BayName": p.bay,
            "BootFromSAN": p.boot_from_san,
            "MACAddresses": list(p.macs),
            "WWNs": list(p.wwns),
            "VirtualSerialNumber": p.serial_number,
            "VirtualUUID": p.uuid,
        }
        for p in profile_rows
    ] == profiles


def test_a_groups_spares_are_its_spare_bays_in_order(tmp_path: Path) -> None:
    # A failover's candidates: the query's spare filter keeps exactly the spare rows of the
    # whole group's list, in its order.
    async def read() -> list[tuple[list[repo.BayRow], list[repo.BayRow]]]:
        async with vcem_stack(tmp_path, start_runner=False) as stack:
            with stack.store.read() as tx:
                return [
                    (
                        repo.bays_of_group(tx, g.name),
                        repo.bays_of_group(tx, g.name, spares_only=True),
                    )
                    for g in repo.list_groups(tx)
                ]

    groups = asyncio.run(read())
    assert groups and any(spares for _, spares in groups)
    for everything, spares in groups:
        assert spares == [b for b in everything if b.is_spare]
        assert any(not b.is_spare for b in everything)


def test_the_simulator_reads_exactly_the_bays_asked_for(tmp_path: Path) -> None:
    # One query of key lookups: bays of several enclosures at once, each state that of the
    # bay's own row, none of the other bays of those enclosures; a bay it has not is named.
    async def read() -> None:
        async with vcem_stack(tmp_path, start_runner=False) as stack:
            rows = list(repo.iter_bays(stack.store))
            by_enclosure: dict[str, list[repo.BayRow]] = {}
            for b in rows:
                by_enclosure.setdefault(b.enclosure, []).append(b)
            assert len(by_enclosure) >= 2
            asked = [bays[-1] for bays in by_enclosure.values()] + [rows[0]]
            refs = [BayRef(b.enclosure, b.bay) for b in asked]
            states = await asyncio.to_thread(stack.driver.read, refs)
            assert set(states) == set(refs)
            for ref in refs:
                single = await asyncio.to_thread(stack.driver.read, [ref])
                assert states[ref] == single[ref]
                with stack.store.read() as tx:
                    model = tx.scalar(
                        "SELECT model FROM sim_bays WHERE enclosure = %(e)s AND bay = %(b)s",
                        {"e": ref.enclosure, "b": ref.bay},
                    )
                assert states[ref].model == model
            missing = BayRef(rows[0].enclosure, "99")
            with pytest.raises(DeviceError, match=f"has no {rows[0].enclosure} bay 99"):
                await asyncio.to_thread(stack.driver.read, [refs[0], missing])

    asyncio.run(read())
