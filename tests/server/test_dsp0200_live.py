"""DSP0200 protocol errors against a live server: each CIMError value with its HTTP status
(reference cim-xml-protocol.md §1.6, OpenPegasus's table), and the process survives them all."""

from __future__ import annotations

import base64
import socket
import urllib.parse

import pytest
import pywbem

from provider.app import _failure_trailers
from provider.errors import NotFound, StoreError
from tests.harness import USERS, ProviderHandle

AUTH = base64.b64encode(f"admin:{USERS['admin'][1]}".encode()).decode()

GOOD_BODY = (
    '<?xml version="1.0" encoding="utf-8" ?>'
    '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="7" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
    '<IMETHODCALL NAME="EnumerateInstanceNames"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
    '<NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName">'
    '<CLASSNAME NAME="GM_GroupManager"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>'
)


def _headers(**over: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "Host": "127.0.0.1",
        "Content-Type": 'application/xml; charset="utf-8"',
        "Authorization": f"Basic {AUTH}",
        "CIMOperation": "MethodCall",
        "CIMMethod": "EnumerateInstanceNames",
        "CIMObject": "root%2Fcimv2",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def exchange(
    gm: ProviderHandle,
    body: str | bytes,
    headers: dict[str, str],
    method: str = "POST",
    version: str = "1.1",
) -> tuple[int, dict[str, str], bytes]:
    data = body.encode() if isinstance(body, str) else body
    head = f"{method} /cimom HTTP/{version}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gm.port), timeout=10) as sock:
        sock.sendall(head.encode() + data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head_bytes, _, rest = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        hdrs[name.strip().lower()] = value.strip()
    return status, hdrs, rest


def test_good_request_is_200(gm: ProviderHandle) -> None:
    status, hdrs, body = exchange(gm, GOOD_BODY, _headers())
    assert status == 200
    assert hdrs["cimoperation"] == "MethodResponse"
    assert b'<INSTANCENAME CLASSNAME="GM_GroupManager">' in body


CASES = [
    # (what, headers override, body transform, status, CIMError)
    ("no CIMOperation", {"CIMOperation": None}, None, 400, None),
    (
        "CIMOperation not MethodCall",
        {"CIMOperation": "MethodResponse"},
        None,
        400,
        "unsupported-operation",
    ),
    ("CIMBatch", {"CIMBatch": ""}, None, 501, "multiple-requests-unsupported"),
    (
        "unsupported CIMProtocolVersion",
        {"CIMProtocolVersion": "2.0"},
        None,
        501,
        "unsupported-protocol-version",
    ),
    ("no CIMMethod", {"CIMMethod": None}, None, 400, "header-mismatch"),
    ("CIMMethod differs", {"CIMMethod": "GetClass"}, None, 400, "header-mismatch"),
    ("no CIMObject", {"CIMObject": None}, None, 400, "header-mismatch"),
    ("CIMObject differs", {"CIMObject": "root%2Finterop"}, None, 400, "header-mismatch"),
    ("CIMObject bad escape", {"CIMObject": "root%ZZcimv2"}, None, 400, "header-mismatch"),
    (
        "CIMProtocolVersion differs from PROTOCOLVERSION",
        {"CIMProtocolVersion": "1.1"},
        None,
        400,
        "header-mismatch",
    ),
    ("bad Content-Type", {"Content-Type": "text/plain"}, None, 400, None),
    ("not well-formed", {}, lambda b: b[:-20], 400, "request-not-well-formed"),
    (
        "not valid",
        {},
        lambda b: b.replace("<SIMPLEREQ>", "<SIMPLEREQ><BOGUS/>"),
        400,
        "request-not-valid",
    ),
    (
        "CIMVERSION 3.0",
        {},
        lambda b: b.replace('CIMVERSION="2.0"', 'CIMVERSION="3.0"'),
        501,
        "unsupported-cim-version",
    ),
    (
        "DTDVERSION 3.0",
        {},
        lambda b: b.replace('DTDVERSION="2.0"', 'DTDVERSION="3.0"'),
        501,
        "unsupported-dtd-version",
    ),
    (
        "PROTOCOLVERSION 2.0",
        {"CIMProtocolVersion": "2.0"},
        lambda b: b.replace('PROTOCOLVERSION="1.0"', 'PROTOCOLVERSION="2.0"'),
        501,
        "unsupported-protocol-version",
    ),
    (
        "MULTIREQ",
        {},
        lambda b: b.replace("SIMPLEREQ", "MULTIREQ"),
        400,
        "header-mismatch",
    ),
]


@pytest.mark.parametrize(
    ("what", "over", "mutate", "status", "cimerror"), CASES, ids=[c[0] for c in CASES]
)
def test_protocol_errors(
    gm: ProviderHandle,
    what: str,
    over: dict[str, str | None],
    mutate,
    status: int,
    cimerror: str | None,
) -> None:
    body = mutate(GOOD_BODY) if mutate else GOOD_BODY
    got, hdrs, _ = exchange(gm, body, _headers(**over))
    assert got == status, (what, hdrs)
    assert hdrs.get("cimerror") == cimerror, (what, hdrs)
    if status != 401:
        detail = urllib.parse.unquote(hdrs.get("pgerrordetail", ""))
        assert detail or cimerror is None, (what, hdrs)


def test_unsupported_method_is_501(gm: ProviderHandle) -> None:
    status, _, _ = exchange(gm, "", {"Host": "x"}, method="GET")
    assert status == 501


def test_mpost_over_http10_is_400(gm: ProviderHandle) -> None:
    status, _, _ = exchange(gm, GOOD_BODY, _headers(), method="M-POST", version="1.0")
    assert status == 400


def test_mpost_with_prefixed_headers(gm: ProviderHandle) -> None:
    hdrs = _headers()
    mpost = {k: v for k, v in hdrs.items() if not k.startswith("CIM")}
    mpost["Man"] = "http://www.dmtf.org/cim/mapping/http/v1.0;ns=42"
    mpost.update({f"42-{k}": v for k, v in hdrs.items() if k.startswith("CIM")})
    status, rh, body = exchange(gm, GOOD_BODY, mpost, method="M-POST")
    assert status == 200
    assert rh.get("42-cimoperation") == "MethodResponse"
    assert b"GM_GroupManager" in body


def test_no_credentials_get_a_basic_challenge(gm: ProviderHandle) -> None:
    status, hdrs, _ = exchange(gm, GOOD_BODY, _headers(Authorization=None))
    assert status == 401
    assert hdrs["www-authenticate"].startswith("Basic realm=")


def test_oversized_body_is_413_and_server_survives(gm: ProviderHandle) -> None:
    body = GOOD_BODY.replace("<SIMPLEREQ>", "<SIMPLEREQ>" + " " * (5 * 1024 * 1024))
    status, _, _ = exchange(gm, body, _headers())
    assert status == 413
    assert exchange(gm, GOOD_BODY, _headers())[0] == 200


def test_entity_bomb_is_refused_and_server_survives(gm: ProviderHandle) -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE CIM [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(8))
        + ']><CIM CIMVERSION="2.0" DTDVERSION="2.0">&i;</CIM>'
    )
    status, hdrs, _ = exchange(gm, bomb, _headers())
    assert status == 400
    assert hdrs.get("cimerror") in ("request-not-well-formed", "request-not-valid")
    assert exchange(gm, GOOD_BODY, _headers())[0] == 200


def test_cim_error_is_http_200_with_error_element(gm: ProviderHandle) -> None:
    body = GOOD_BODY.replace("GM_GroupManager", "GM_Nothing")
    status, _, payload = exchange(gm, body, _headers())
    assert status == 200
    assert b'<ERROR CODE="5"' in payload
    assert b"GM_Nothing" in payload


def test_deep_inheritance_false_leaves_out_the_properties_of_subclasses(gm: ProviderHandle) -> None:
    """DSP0200: EnumerateInstances returns the instances of subclasses either way; with
    DeepInheritance=FALSE they carry only the properties the named class declares."""
    conn = gm.connection()
    cls = conn.GetClass("CIM_ManagedElement", namespace="root/interop")
    declared = {name.lower() for name in cls.properties}
    deep = conn.EnumerateInstances("CIM_ManagedElement", namespace="root/interop")
    shallow = conn.EnumerateInstances(
        "CIM_ManagedElement", namespace="root/interop", DeepInheritance=False
    )
    assert deep and len(shallow) == len(deep)
    assert any(set(map(str.lower, i.properties)) - declared for i in deep)
    for inst in shallow:
        assert set(map(str.lower, inst.properties)) <= declared, inst.classname
    assert {i.path for i in shallow} == {i.path for i in deep}
    pulled = list(
        conn.IterEnumerateInstances(
            "CIM_ManagedElement", namespace="root/interop", DeepInheritance=False
        )
    )
    assert len(pulled) == len(deep)  # through the pull operations (pywbemcli's way)
    assert all(set(map(str.lower, i.properties)) <= declared for i in pulled)


def test_a_parameter_given_twice_is_invalid_parameter(gm: ProviderHandle) -> None:
    """DSP0200: CIM_ERR_INVALID_PARAMETER covers "missing, duplicate, unrecognized or
    otherwise incorrect parameters"; a duplicate was answered HTTP 400 (pywbem raised an
    HTTPError, not a CIMError)."""
    twice = GOOD_BODY.replace(
        "</IMETHODCALL>",
        '<IPARAMVALUE NAME="classname"><CLASSNAME NAME="GM_DeviceBay"/></IPARAMVALUE>'
        "</IMETHODCALL>",
    )
    status, _, payload = exchange(gm, twice, _headers())
    assert status == 200
    assert b'<ERROR CODE="4"' in payload and b"classname is given twice" in payload
    conn = gm.connection()
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod(
            "cancelJob",
            pywbem.CIMClassName("GM_GroupManager", namespace="root/cimv2"),
            [("JobID", pywbem.Uint32(1)), ("JobID", pywbem.Uint32(2))],
        )
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "JobID is given twice" in err.value.status_description


def test_a_streamed_answer_announces_its_status_trailers_to_a_client_that_takes_them(
    gm: ProviderHandle,
) -> None:
    """An enumeration streams (chunked); should it fail after its status line went out, a
    client that sent `TE: trailers` (the OpenPegasus client, wbemcli) reads CIMStatusCode
    and CIMStatusCodeDescription after the last chunk (see test_failure_trailers_*)."""
    body = GOOD_BODY.replace("EnumerateInstanceNames", "EnumerateInstances")
    hdrs = _headers(CIMMethod="EnumerateInstances")
    status, plain, _ = exchange(gm, body, hdrs)
    assert status == 200 and "trailer" not in plain
    status, taking, payload = exchange(gm, body, {**hdrs, "TE": "chunked, trailers"})
    assert status == 200 and taking["transfer-encoding"] == "chunked"
    assert taking["trailer"] == "CIMStatusCode, CIMStatusCodeDescription"
    assert payload.endswith(b"0\r\n\r\n")  # a whole answer: no trailer fields sent


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        (StoreError("database unreachable\nretry later"), "1", "CIM_ERR_FAILED: database"),
        (NotFound("No server profile named p1."), "6", "CIM_ERR_NOT_FOUND: No server"),
        (RuntimeError("bug"), "1", "CIM_ERR_FAILED: internal error"),
    ],
)
def test_failure_trailers_carry_the_cim_status(exc: Exception, code: str, words: str) -> None:
    fields = dict(_failure_trailers(exc))
    assert fields["CIMStatusCode"] == code
    text = fields["CIMStatusCodeDescription"]
    assert "\n" not in text and "\r" not in text  # one header line
    assert urllib.parse.unquote(text).startswith(words)
    assert "the response is incomplete" in text


def test_include_class_origin_names_the_declaring_class_of_each_property(
    gm: ProviderHandle,
) -> None:
    """DSP0200: with IncludeClassOrigin TRUE each property carries CLASSORIGIN (wbemcli's
    gi/ei send it so); without it none does."""
    conn = gm.connection()
    with_origin = conn.EnumerateInstances(
        "CIM_ObjectManager", namespace="root/interop", IncludeClassOrigin=True
    )
    origins = {p.name: p.class_origin for p in with_origin[0].properties.values()}
    assert origins["Name"] == "CIM_ObjectManager"
    assert origins["ElementName"] == "CIM_ManagedElement"
    plain = conn.EnumerateInstances("CIM_ObjectManager", namespace="root/interop")
    assert all(p.class_origin is None for p in plain[0].properties.values())
    path = conn.EnumerateInstanceNames("GM_GroupManager")[0]
    got = conn.GetInstance(path, IncludeClassOrigin=True)
    origins = {p.name: p.class_origin for p in got.properties.values()}
    assert origins["Name"] == origins["Role"] == "GM_GroupManager"
    assert origins["ElementName"] == "CIM_ManagedElement"  # inherited
    pulled = conn.OpenEnumerateInstances(
        "CIM_ObjectManager", namespace="root/interop", IncludeClassOrigin=True, MaxObjectCount=5
    )
    assert pulled.instances[0].properties["Caption"].class_origin == "CIM_ManagedElement"
