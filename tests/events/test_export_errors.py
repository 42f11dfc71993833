"""Malformed export requests get DSP0200's export errors (reference cim-xml-protocol.md 2.5,
OpenPegasus CIMExportRequestDecoder), and what a WBEM indication sender such as pywbem's
WBEMListener counterpart or OpenPegasus sends is accepted: the listener runs on the
provider's own port, behind its authentication."""

from __future__ import annotations

import pytest

from tests.events._wire import export_body, indication, post
from tests.events.conftest import World

GOOD = indication(EventID="0000", SystemName="nobody.example.com")
SENDER = indication(EventID="0000", SystemName="sender.example.com")


@pytest.mark.parametrize(
    ("headers", "status", "cimerror"),
    [
        ({"CIMExport": "MethodResponse"}, 400, "unsupported-operation"),
        ({"CIMExport": "MethodCall"}, 400, "unsupported-operation"),
        ({"CIMExportBatch": ""}, 501, "multiple-requests-unsupported"),
        ({"CIMExportMethod": None}, 400, "header-mismatch"),
        ({"CIMExportMethod": ""}, 400, "header-mismatch"),
        # The header names another method than the body's EXPMETHODCALL.
        ({"CIMExportMethod": "ExportIndications"}, 400, "header-mismatch"),
        ({"CIMProtocolVersion": "2.0"}, 501, "unsupported-protocol-version"),
        ({"Content-Type": "text/plain"}, 400, None),
        # Neither CIMOperation nor CIMExport: not a CIM request (bare 400).
        ({"CIMExport": None, "CIMExportMethod": None}, 400, None),
    ],
)
def test_export_header_errors(
    world: World, headers: dict[str, str | None], status: int, cimerror: str | None
) -> None:
    reply = post(world.active.port, export_body(GOOD), headers)
    assert reply.status == status, reply.body
    assert reply.headers.get("cimerror") == cimerror
    assert world.decisions_about("nobody.example.com") == []


@pytest.mark.parametrize(
    ("body", "status", "cimerror"),
    [
        (b"<CIM><MESSAGE", 400, "request-not-well-formed"),
        (
            export_body(GOOD).replace(b"<SIMPLEEXPREQ>", b"<SIMPLEEXPREQ><BOGUS/>"),
            400,
            "request-not-valid",
        ),
        (
            export_body(GOOD).replace(b'CIMVERSION="2.0"', b'CIMVERSION="3.0"'),
            501,
            "unsupported-cim-version",
        ),
        # An operation request body behind export headers.
        (
            b'<?xml version="1.0" encoding="utf-8" ?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">'
            b'<MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="GetClass">'
            b'<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/></LOCALNAMESPACEPATH></IMETHODCALL>'
            b"</SIMPLEREQ></MESSAGE></CIM>",
            400,
            "header-mismatch",
        ),
        # A multiple export request (MULTIEXPREQ) without the CIMExportBatch header: its
        # headers do not match its body (with the header it is 501, above).
        (
            export_body(GOOD)
            .replace(b"<SIMPLEEXPREQ>", b"<MULTIEXPREQ><SIMPLEEXPREQ>")
            .replace(b"</SIMPLEEXPREQ>", b"</SIMPLEEXPREQ></MULTIEXPREQ>"),
            400,
            "header-mismatch",
        ),
    ],
)
def test_export_body_errors(world: World, body: bytes, status: int, cimerror: str) -> None:
    reply = post(world.active.port, body)
    assert reply.status == status, reply.body
    assert reply.headers.get("cimerror") == cimerror


def test_unknown_export_method_is_a_cim_error_inside_the_response(world: World) -> None:
    reply = post(
        world.active.port,
        export_body(GOOD, method="ExportAlert"),
        {"CIMExportMethod": "ExportAlert"},
    )
    assert reply.status == 200 and reply.headers.get("cimexport") == "MethodResponse"
    code, description = reply.error() or (0, "")
    assert code == 7 and "ExportAlert" in description


@pytest.mark.parametrize("body", [export_body(None), export_body(GOOD, param="Indication")])
def test_export_indication_without_new_indication_is_invalid_parameter(
    world: World, body: bytes
) -> None:
    reply = post(world.active.port, body)
    assert reply.status == 200
    code, description = reply.error() or (0, "")
    assert code == 4 and "NewIndication" in description


def test_indications_need_credentials_like_every_request(world: World) -> None:
    reply = post(world.active.port, export_body(GOOD), user=None)
    assert reply.status == 401
    assert world.decisions_about("nobody.example.com") == []


def test_sender_shapes_are_accepted(world: World) -> None:
    """OpenPegasus' indication sender: M-POST with `Man:` and NN- prefixed headers,
    CIMProtocolVersion; pywbem-era senders: text/xml with an unquoted charset."""
    mpost = {
        "Man": "http://www.dmtf.org/cim/mapping/http/v1.0;ns=40",
        "CIMExport": None,
        "CIMExportMethod": None,
        "40-CIMExport": "MethodRequest",
        "40-CIMExportMethod": "ExportIndication",
        "40-CIMProtocolVersion": "1.0",
    }
    reply = post(world.active.port, export_body(SENDER), mpost, method="M-POST")
    assert reply.status == 200, reply.body
    # The response repeats the request's extension prefix (OpenPegasus does).
    assert reply.headers.get("40-cimexport") == "MethodResponse", reply.headers
    assert reply.error() is None
    plain = {"Content-Type": "text/xml; charset=utf-8", "CIMProtocolVersion": "1.0"}
    reply = post(world.active.port, export_body(SENDER), plain)
    assert reply.status == 200 and reply.error() is None
    decisions = world.decisions_about("sender.example.com")
    assert [d["Decision"] for d in decisions] == ["no-rule", "no-rule"]
