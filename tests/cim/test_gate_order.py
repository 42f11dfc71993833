"""The order of the checks before a state-changing method: role, role gate, domain group."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from provider.cim.operations import CimOperations
from provider.cim.provider import MethodOutcome, MethodSpec, OperationContext, ProviderRegistry
from provider.cim.repository import load_repository
from provider.cimxml.messages import ExtrinsicCall
from provider.cimxml.parse import parse_request
from provider.errors import NotActive, StoreError
from provider.http.messages import Principal
from provider.privileges import TableAuthorizer
from provider.server import schema_dir

_CALL = (
    b'<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
    b'<MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><METHODCALL NAME="setSpare">'
    b'<LOCALCLASSPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/>'
    b'</LOCALNAMESPACEPATH><CLASSNAME NAME="GM_GroupManager"/></LOCALCLASSPATH>'
    b'<PARAMVALUE NAME="EnclosureName"><VALUE>enc01</VALUE></PARAMVALUE>'
    b'<PARAMVALUE NAME="BayName"><VALUE>12</VALUE></PARAMVALUE>'
    b'<PARAMVALUE NAME="IsSpare"><VALUE>TRUE</VALUE></PARAMVALUE>'
    b"</METHODCALL></SIMPLEREQ></MESSAGE></CIM>"
)


class _Standby:
    def require_active(self, what: str) -> None:
        raise NotActive(what)


def _store_down(params: Mapping[str, Any]) -> str | None:
    raise StoreError("PostgreSQL store: connection failed")


async def _never(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
    raise AssertionError("a standby ran the method")


@pytest.mark.parametrize("groups", [None, ("dg-web",)])
def test_a_standby_refuses_before_the_domain_group_is_looked_up(
    groups: tuple[str, ...] | None,
) -> None:
    """During a store outage a standby answered failoverProfile, moveProfile, setSpare and
    cancelJob with the database error: the bay's group was looked up before the gate."""
    registry = ProviderRegistry()
    registry.add_method(
        "root/cimv2",
        "GM_GroupManager",
        MethodSpec("setSpare", _never, True, "change spare designations", scope=_store_down),
    )
    ops = CimOperations(
        load_repository(schema_dir()), registry, _Standby(), TableAuthorizer(), "gm2"
    )
    call = parse_request(_CALL)
    assert isinstance(call, ExtrinsicCall)
    who = Principal("op", "tcp", "127.0.0.1:1", role="operator", domain_groups=groups)
    ctx = OperationContext(who, "root/cimv2", "gm2")
    with pytest.raises(NotActive, match="Only an active Group Manager can change spare"):
        asyncio.run(ops.extrinsic(call, ctx))
