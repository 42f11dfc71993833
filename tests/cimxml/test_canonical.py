"""The canonical-form reader against the full parser: for every body, `parse_request` (which
tries the canonical reader first) and `parse_tree` (lxml and the walker only) give the same
request, value types included, or the same ProtocolError. And the shapes clients send are
really read by the canonical reader, so the fast path cannot silently stop being taken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider.cimxml.canonical import DEPTH, MAX_BYTES, read_canonical
from provider.cimxml.parse import DEFAULT_MAX_ELEMENTS, parse_request, parse_tree
from provider.errors import ProtocolError
from tests.cimxml.strategies import cim_name, xml_text
from tests.cimxml.test_fuzz import TOKENS, mutated

# XML white space, and characters Python counts as white space that XML does not.
WHITE = [b"\r", b"\t", b"\n", b"\x0b", b"\x0c", b"\x1c", b"\xc2\x85", b"\xc2\xa0", b"&"]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("GM_FUZZ_EXAMPLES", "2000"))
DECL = '<?xml version="1.0" encoding="utf-8" ?>\n'
NS = '<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'


def doc(call: str, *, decl: str = DECL, message_id: str = "1001") -> bytes:
    return (
        f'{decl}<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="{message_id}" '
        f'PROTOCOLVERSION="1.0"><SIMPLEREQ>{call}</SIMPLEREQ></MESSAGE></CIM>'
    ).encode()


def imethod(name: str, *params: str) -> bytes:
    return doc(f'<IMETHODCALL NAME="{name}">{NS}{"".join(params)}</IMETHODCALL>')


def method(name: str, target: str, *params: str) -> bytes:
    return doc(f'<METHODCALL NAME="{name}">{target}{"".join(params)}</METHODCALL>')


CLASS_PATH = f'<LOCALCLASSPATH>{NS}<CLASSNAME NAME="GM_GroupManager"/></LOCALCLASSPATH>'
BAY = (
    '<INSTANCENAME CLASSNAME="GM_DeviceBay">'
    '<KEYBINDING NAME="EnclosureName"><KEYVALUE VALUETYPE="string" TYPE="string">enc1'
    "</KEYVALUE></KEYBINDING>"
    '<KEYBINDING NAME="Bay"><KEYVALUE VALUETYPE="numeric" TYPE="uint32">3</KEYVALUE>'
    "</KEYBINDING></INSTANCENAME>"
)

# What pywbem 1.9, wbemcli and our request files send (captured from the clients).
CANONICAL = {
    "pywbem GetInstance": imethod(
        "GetInstance", f'<IPARAMVALUE NAME="InstanceName">{BAY}</IPARAMVALUE>'
    ),
    "pywbem EnumerateInstances": imethod(
        "EnumerateInstances",
        '<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="GM_DeviceBay"/></IPARAMVALUE>',
    ),
    "pywbem OpenEnumerateInstances": imethod(
        "OpenEnumerateInstances",
        '<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="GM_DeviceBay"/></IPARAMVALUE>',
        '<IPARAMVALUE NAME="MaxObjectCount"><VALUE>100</VALUE></IPARAMVALUE>',
    ),
    "PropertyList with NULL, empty values": imethod(
        "GetInstance",
        f'<IPARAMVALUE NAME="InstanceName">{BAY}</IPARAMVALUE>',
        '<IPARAMVALUE NAME="PropertyList"><VALUE.ARRAY><VALUE>Bay</VALUE><VALUE/>'
        "<VALUE></VALUE><VALUE.NULL/></VALUE.ARRAY></IPARAMVALUE>",
        '<IPARAMVALUE NAME="LocalOnly"></IPARAMVALUE><IPARAMVALUE NAME="X"/>',
        '<IPARAMVALUE NAME="IncludeClassOrigin"><VALUE>FALSE</VALUE></IPARAMVALUE>',
    ),
    "parameter given twice": imethod(
        "EnumerateInstances",
        '<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="A"/></IPARAMVALUE>',
        '<IPARAMVALUE NAME="classname"><CLASSNAME NAME="B"/></IPARAMVALUE>',
        '<IPARAMVALUE NAME="CLASSNAME"><CLASSNAME NAME="C"/></IPARAMVALUE>',
    ),
    "keys typed by VALUETYPE only (wbemcli)": imethod(
        "GetInstance",
        '<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="C">'
        '<KEYBINDING NAME="S"><KEYVALUE VALUETYPE="string">  padded  </KEYVALUE></KEYBINDING>'
        '<KEYBINDING NAME="N"><KEYVALUE VALUETYPE="numeric">-12</KEYVALUE></KEYBINDING>'
        '<KEYBINDING NAME="H"><KEYVALUE VALUETYPE="numeric">0x1F</KEYVALUE></KEYBINDING>'
        '<KEYBINDING NAME="F"><KEYVALUE VALUETYPE="numeric">1.5</KEYVALUE></KEYBINDING>'
        '<KEYBINDING NAME="B"><KEYVALUE VALUETYPE="boolean">TRUE</KEYVALUE></KEYBINDING>'
        '<KEYBINDING NAME="T"><KEYVALUE>untyped</KEYVALUE></KEYBINDING>'
        '<KEYBINDING NAME="E"><KEYVALUE/></KEYBINDING>'
        '<KEYBINDING NAME="D"><KEYVALUE TYPE="datetime">20260102030405.000000+000</KEYVALUE>'
        "</KEYBINDING></INSTANCENAME></IPARAMVALUE>",
    ),
    "singleton instance name": imethod(
        "GetInstance",
        '<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="S"/></IPARAMVALUE>',
    ),
    "pywbem InvokeMethod on a class": method(
        "failoverProfile",
        CLASS_PATH,
        '<PARAMVALUE NAME="Profile" PARAMTYPE="string"><VALUE>p1</VALUE></PARAMVALUE>',
        '<PARAMVALUE NAME="Force" PARAMTYPE="boolean"><VALUE>TRUE</VALUE></PARAMVALUE>',
        '<PARAMVALUE NAME="L" PARAMTYPE="string"><VALUE.ARRAY><VALUE>a</VALUE>'
        "<VALUE>b</VALUE></VALUE.ARRAY></PARAMVALUE>",
        '<PARAMVALUE NAME="Nothing"/><PARAMVALUE NAME="Also" PARAMTYPE="uint32"></PARAMVALUE>',
        f'<PARAMVALUE NAME="Bay" PARAMTYPE="reference">{BAY}</PARAMVALUE>',
        '<PARAMVALUE NAME="Class"><CLASSNAME NAME="GM_DeviceBay"/></PARAMVALUE>',
        '<PARAMVALUE NAME="Empty"><VALUE/></PARAMVALUE><PARAMVALUE NAME="E2"><VALUE></VALUE>'
        "</PARAMVALUE>",
    ),
    "InvokeMethod without parameters": method("getRole", CLASS_PATH),
    "InvokeMethod on an instance": method(
        "powerOn", f"<LOCALINSTANCEPATH>{NS}{BAY}</LOCALINSTANCEPATH>"
    ),
    "request file layout": (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">\n'
        b'  <MESSAGE ID="" PROTOCOLVERSION="1.0">\n    <SIMPLEREQ>\n'
        b'      <METHODCALL NAME="checkScavengedMember">\n        <LOCALCLASSPATH>\n'
        b'          <LOCALNAMESPACEPATH>\r\n            <NAMESPACE NAME="root"></NAMESPACE>\n'
        b'            <NAMESPACE NAME="cimv2"/>\n          </LOCALNAMESPACEPATH>\n'
        b'          <CLASSNAME NAME="GM_GroupManager"> </CLASSNAME>\n        </LOCALCLASSPATH>\n'
        b'        <PARAMVALUE NAME="Text">\n          <VALUE>two\n\tlines \xc3\xa9</VALUE>\n'
        b"        </PARAMVALUE>\n      </METHODCALL>\n    </SIMPLEREQ>\n  </MESSAGE>\n</CIM>\n"
    ),
    "no XML declaration, newer minor versions": doc(
        f'<IMETHODCALL NAME="GetClass">{NS}<IPARAMVALUE NAME="ClassName">'
        '<CLASSNAME NAME="GM_DeviceBay"/></IPARAMVALUE></IMETHODCALL>',
        decl="",
    )
    .replace(b'CIMVERSION="2.0"', b'CIMVERSION="2.6"')
    .replace(b'PROTOCOLVERSION="1.0"', b'PROTOCOLVERSION="1.4.1"'),
}

# Read by the full parser (the canonical reader declines), with its result or its error.
NOT_CANONICAL = {
    "entity in a key": CANONICAL["pywbem GetInstance"].replace(b"enc1", b"enc&amp;1"),
    "character reference": CANONICAL["pywbem GetInstance"].replace(b"enc1", b"enc&#49;"),
    "comment": CANONICAL["pywbem GetInstance"].replace(b"<SIMPLEREQ>", b"<SIMPLEREQ><!-- x -->"),
    "CDATA": CANONICAL["pywbem GetInstance"].replace(b"enc1", b"<![CDATA[enc1]]>"),
    "single quotes": CANONICAL["pywbem GetInstance"].replace(b'NAME="Bay"', b"NAME='Bay'"),
    "attribute order": CANONICAL["pywbem GetInstance"].replace(
        b'VALUETYPE="numeric" TYPE="uint32"', b'TYPE="uint32" VALUETYPE="numeric"'
    ),
    "unknown attribute": CANONICAL["pywbem GetInstance"].replace(
        b'<KEYBINDING NAME="Bay"', b'<KEYBINDING NAME="Bay" X="y"'
    ),
    "CR in a value": CANONICAL["pywbem InvokeMethod on a class"].replace(b"p1", b"p\r1"),
    "TAB in an attribute": CANONICAL["pywbem GetInstance"].replace(b"GM_DeviceBay", b"GM\tBay"),
    "> in a value": CANONICAL["pywbem InvokeMethod on a class"].replace(b"p1", b"p]]>1"),
    "CORRELATOR": CANONICAL["InvokeMethod without parameters"].replace(
        b"<SIMPLEREQ>",
        b'<SIMPLEREQ><CORRELATOR NAME="c" TYPE="string"><VALUE>1</VALUE></CORRELATOR>',
    ),
    "reference parameter": method(
        "m",
        CLASS_PATH,
        f'<PARAMVALUE NAME="R" PARAMTYPE="reference"><VALUE.REFERENCE>{BAY}'
        "</VALUE.REFERENCE></PARAMVALUE>",
    ),
    "embedded instance parameter": method(
        "m",
        CLASS_PATH,
        '<PARAMVALUE NAME="I" PARAMTYPE="string" EmbeddedObject="instance"><VALUE>x</VALUE>'
        "</PARAMVALUE>",
    ),
    "export request": (
        b'<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0">'
        b'<SIMPLEEXPREQ><EXPMETHODCALL NAME="ExportIndication"/></SIMPLEEXPREQ></MESSAGE></CIM>'
    ),
    # ... and those the full parser refuses, with its message:
    "CIM version 3": CANONICAL["pywbem GetInstance"].replace(
        b'CIMVERSION="2.0"', b'CIMVERSION="3.0"'
    ),
    "protocol version 2": CANONICAL["pywbem GetInstance"].replace(
        b'PROTOCOLVERSION="1.0"', b'PROTOCOLVERSION="2.0"'
    ),
    "empty VALUETYPE": CANONICAL["pywbem GetInstance"].replace(
        b'VALUETYPE="numeric"', b'VALUETYPE=""'
    ),
    "unknown TYPE": CANONICAL["pywbem GetInstance"].replace(b'TYPE="uint32"', b'TYPE="int"'),
    "bad PARAMTYPE": CANONICAL["pywbem InvokeMethod on a class"].replace(
        b'PARAMTYPE="boolean"', b'PARAMTYPE="bool"'
    ),
    "key out of range": CANONICAL["pywbem GetInstance"].replace(b">3<", b">99999999999<"),
    "duplicate key": CANONICAL["pywbem GetInstance"].replace(
        b'NAME="Bay"', b'NAME="enclosurename"'
    ),
    "empty NAME": CANONICAL["pywbem GetInstance"].replace(b'NAME="Bay"', b'NAME=""'),
    "form feed between elements": CANONICAL["pywbem GetInstance"].replace(
        b"<SIMPLEREQ>", b"<SIMPLEREQ>\x0c"
    ),
    "no-break space between elements": CANONICAL["pywbem GetInstance"].replace(
        b"<SIMPLEREQ>", b"<SIMPLEREQ>\xc2\xa0"
    ),
    "NUL byte": CANONICAL["pywbem GetInstance"].replace(b"enc1", b"enc\x001"),
    "bad UTF-8": CANONICAL["pywbem GetInstance"].replace(b"enc1", b"enc\xff"),
    "byte order mark": b"\xef\xbb\xbf" + CANONICAL["pywbem GetInstance"],
    "two params in one IPARAMVALUE": imethod(
        "GetInstance",
        f'<IPARAMVALUE NAME="InstanceName">{BAY}{BAY}</IPARAMVALUE>',
    ),
    "text between elements": CANONICAL["pywbem GetInstance"].replace(
        b"</INSTANCENAME>", b"x</INSTANCENAME>"
    ),
    "unclosed": CANONICAL["pywbem GetInstance"][:-6],
    "trailing element": CANONICAL["pywbem GetInstance"] + b"<CIM/>",
}


def outcome(read: Any, body: bytes, **limits: int) -> tuple[str, ...]:
    """A request's repr (pywbem's shows each value's type), or the error's three parts."""
    try:
        return ("request", repr(read(body, **limits)))
    except ProtocolError as err:
        return ("error", str(err.status), str(err.cim_error), err.detail)


@pytest.mark.parametrize("body", CANONICAL.values(), ids=CANONICAL.keys())
def test_canonical_shapes_are_read_without_the_tree_and_alike(body: bytes) -> None:
    assert read_canonical(body, DEFAULT_MAX_ELEMENTS) is not None
    assert outcome(parse_request, body) == outcome(parse_tree, body)
    assert outcome(parse_request, body)[0] == "request"


@pytest.mark.parametrize("body", NOT_CANONICAL.values(), ids=NOT_CANONICAL.keys())
def test_other_documents_go_to_the_full_parser(body: bytes) -> None:
    assert read_canonical(body, DEFAULT_MAX_ELEMENTS) is None
    assert outcome(parse_request, body) == outcome(parse_tree, body)


def test_the_limits_still_hold_for_canonical_documents() -> None:
    body = CANONICAL["pywbem GetInstance"]
    shallow = outcome(parse_request, body, max_depth=DEPTH - 1, max_elements=1000)
    assert shallow[:3] == ("error", "400", "request-not-valid")
    assert "nesting" in shallow[3]
    assert outcome(parse_request, body, max_depth=DEPTH, max_elements=1000)[0] == "request"
    few = outcome(parse_request, body, max_depth=48, max_elements=5)
    assert few == outcome(parse_tree, body, max_depth=48, max_elements=5)
    assert few[0] == "error"


def _finishes(body: bytes) -> None:
    """read_canonical on `body` ends within 60 s, in a process of its own (the re module
    keeps the GIL while it matches): a pattern that backtracked over a run of white space
    took hours on a megabyte of it, holding the server's event loop."""
    code = (
        "import sys; from provider.cimxml.canonical import read_canonical; "
        "read_canonical(sys.stdin.buffer.read(), 10**9)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=body, timeout=60, cwd=ROOT, capture_output=True
    )
    assert done.returncode == 0, done.stderr


_SPACE = b" \t\r\n" * ((MAX_BYTES - 2000) // 4)


@pytest.mark.parametrize(
    "body",
    [
        imethod("X", '<IPARAMVALUE NAME="P">' + _SPACE.decode() + "</IPARAMVALUE >"),
        method("m", CLASS_PATH, '<PARAMVALUE NAME="P">' + _SPACE.decode() + "</PARAMVALUEX>"),
        imethod("X", '<IPARAMVALUE NAME="P"><VALUE>v</VALUE>' + _SPACE.decode() + "</X>"),
        CANONICAL["pywbem GetInstance"].replace(b"<KEYBINDING", _SPACE + b"<KEYBINDING", 1),
        CANONICAL["pywbem GetInstance"].replace(b"<SIMPLEREQ>", b"<SIMPLEREQ>" + _SPACE + b"<"),
    ],
    ids=["IPARAMVALUE", "PARAMVALUE", "after a value", "before a key", "before the call"],
)
def test_a_megabyte_of_white_space_is_read_in_linear_time(body: bytes) -> None:
    _finishes(body)
    assert outcome(parse_request, body) == outcome(parse_tree, body)


def test_documents_past_the_size_bound_go_to_the_full_parser() -> None:
    body = CANONICAL["pywbem GetInstance"] + b" " * MAX_BYTES
    assert read_canonical(body, DEFAULT_MAX_ELEMENTS) is None
    assert outcome(parse_request, body) == outcome(parse_tree, body)
    assert outcome(parse_request, body)[0] == "request"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated(seeds=list(CANONICAL.values()), tokens=[*TOKENS, *WHITE]))
def test_mutated_documents_read_alike(body: bytes) -> None:
    assert outcome(parse_request, body) == outcome(parse_tree, body)


_KEY_TYPES = ["string", "numeric", "boolean", None]


@st.composite
def generated(draw: st.DrawFn) -> bytes:
    """Requests with random names, key and parameter texts (escaped as a client would)."""
    keys = []
    for name in draw(st.lists(cim_name, max_size=4)):
        valuetype = draw(st.sampled_from(_KEY_TYPES))
        attrs = f" VALUETYPE={quoteattr(valuetype)}" if valuetype else ""
        text = draw(xml_text | st.from_regex(r"[ -]?[0-9]{1,22}|0x[0-9a-f]{1,6}", fullmatch=True))
        keys.append(
            f"<KEYBINDING NAME={quoteattr(name)}><KEYVALUE{attrs}>{escape(text)}</KEYVALUE>"
            "</KEYBINDING>"
        )
    classname = quoteattr(draw(cim_name))
    value = escape(draw(xml_text))
    if draw(st.booleans()):
        return imethod(
            draw(cim_name),
            f"<IPARAMVALUE NAME={quoteattr(draw(cim_name))}><INSTANCENAME CLASSNAME={classname}>"
            f"{''.join(keys)}</INSTANCENAME></IPARAMVALUE>",
            f'<IPARAMVALUE NAME="P"><VALUE>{value}</VALUE></IPARAMVALUE>',
        )
    return method(
        draw(cim_name),
        f"<LOCALINSTANCEPATH>{NS}<INSTANCENAME CLASSNAME={classname}>{''.join(keys)}"
        "</INSTANCENAME></LOCALINSTANCEPATH>",
        f'<PARAMVALUE NAME="P" PARAMTYPE="string"><VALUE>{value}</VALUE></PARAMVALUE>',
    )


@settings(max_examples=max(EXAMPLES // 2, 100), deadline=None)
@given(generated())
def test_generated_requests_read_alike(body: bytes) -> None:
    assert outcome(parse_request, body) == outcome(parse_tree, body)
