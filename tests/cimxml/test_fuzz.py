"""Fuzz: mutate valid requests; the invariant (STYLE.md, after h11) is "parse_request returns a
Request or raises ProtocolError, never anything else". GM_FUZZ_EXAMPLES sets the budget."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider.cimxml.encode import encode_class
from provider.cimxml.headers import check_operation_headers, check_request_matches_headers
from provider.cimxml.messages import ExportCall, ExtrinsicCall, IntrinsicCall
from provider.cimxml.parse import parse_request
from provider.errors import ProtocolError
from tests.cimxml.test_encode import gm_class
from tests.cimxml.test_parse import CHECK_SCAVENGED, GET_INSTANCE_PEGASUS_KEYS, PYWBEM_CM

EXAMPLES = int(os.environ.get("GM_FUZZ_EXAMPLES", "2000"))
DATA = Path(__file__).parent / "data"

CREATE_CLASS = (
    b'<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
    b'<IMETHODCALL NAME="CreateClass"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
    b'</LOCALNAMESPACEPATH><IPARAMVALUE NAME="NewClass">'
    + encode_class(gm_class()).encode()
    + b"</IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
)

SEEDS = [
    *(p.read_bytes() for p in sorted(DATA.glob("*.xml"))),
    PYWBEM_CM,
    CHECK_SCAVENGED,
    GET_INSTANCE_PEGASUS_KEYS,
    CREATE_CLASS,
]

# Fragments that are meaningful to the grammar, so mutations reach deep paths.
TOKENS = [
    b"<",
    b">",
    b"/>",
    b'"',
    b"&amp;",
    b"&#0;",
    b"&#x10FFFF;",
    b"<![CDATA[x]]>",
    b"<!DOCTYPE x>",
    b"<VALUE>",
    b"</VALUE>",
    b"<VALUE.NULL/>",
    b"<VALUE.REFERENCE>",
    b'<KEYVALUE TYPE="uint8">999</KEYVALUE>',
    b'<KEYVALUE VALUETYPE="numeric">1e999</KEYVALUE>',
    b'<PROPERTY NAME="x" TYPE="datetime"><VALUE>bad</VALUE></PROPERTY>',
    b'EmbeddedObject="instance"',
    b'TYPE="real32"',
    b'PARAMTYPE="reference"',
    b'NAME=""',
    b"\xff",
    b"\xc3",
    b"\x00",
    b"MULTIREQ",
    b"2.0",
    b"1.0",
]


@st.composite
def mutated(
    draw: st.DrawFn, seeds: list[bytes] | None = None, tokens: list[bytes] | None = None
) -> bytes:
    """A seed with one to four cuts, insertions (grammar tokens or bytes), replacements,
    byte changes or reversed spans."""
    fragments = tokens or TOKENS
    body = bytearray(draw(st.sampled_from(seeds or SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not body:
            break
        pos = draw(st.integers(0, len(body) - 1))
        end = min(len(body), pos + draw(st.integers(0, 40)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "byte", "swap"]))
        if action == "delete":
            del body[pos:end]
        elif action == "insert":
            body[pos:pos] = draw(st.sampled_from(fragments) | st.binary(max_size=8))
        elif action == "replace":
            body[pos:end] = draw(st.sampled_from(fragments))
        elif action == "byte":
            body[pos] = draw(st.integers(0, 255))
        else:
            other = draw(st.integers(0, len(body) - 1))
            a, b = sorted((pos, other))
            body[a:b] = body[a:b][::-1]
    return bytes(body)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_parse_returns_a_request_or_raises_protocol_error(body: bytes) -> None:
    try:
        request = parse_request(body)
    except ProtocolError as err:
        assert err.status in (400, 501)
        assert err.cim_error in {
            "request-not-valid",
            "request-not-well-formed",
            "unsupported-cim-version",
            "unsupported-dtd-version",
            "unsupported-protocol-version",
            "multiple-requests-unsupported",
        }
        assert err.detail
        return
    assert isinstance(request, IntrinsicCall | ExtrinsicCall | ExportCall)


@settings(max_examples=max(EXAMPLES // 4, 50), deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "cimoperation",
                "cimmethod",
                "cimobject",
                "cimprotocolversion",
                "content-type",
                "cimbatch",
            ]
        ),
        st.text(max_size=30),
    )
)
def test_headers_return_or_raise_protocol_error(headers: dict[str, str]) -> None:
    request = parse_request(PYWBEM_CM)
    try:
        check_request_matches_headers(check_operation_headers(headers), request)
    except ProtocolError as err:
        assert err.status in (400, 501)
