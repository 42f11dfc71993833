"""Codec timings, in-process (no transport, no store): parsing a pywbem GetInstance request
next to lxml's parse alone and lxml's XMLSchema validation of the same document; encoding one
GM-sized instance and a whole GetInstance response next to pywbem's own `tocimxmlstr()`.
Best of 5; the figures in the provider/cimxml/parse.py and encode.py docstrings come from here.

    python bench/codec.py
"""

from __future__ import annotations

import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree
from pywbem import (
    CIMDateTime,
    CIMInstance,
    CIMInstanceName,
    CIMProperty,
    Uint16,
    Uint32,
    Uint64,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provider.cimxml.encode import encode_imethod_response, encode_instance  # noqa: E402
from provider.cimxml.messages import InstanceResult  # noqa: E402
from provider.cimxml.parse import parse_request, parse_tree  # noqa: E402

# What pywbem 1.9.1 sends for GetInstance of a two-key GM_DeviceBay.
GET_INSTANCE = (
    b'<?xml version="1.0" encoding="utf-8" ?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">'
    b'<MESSAGE ID="1001" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="GetInstance">'
    b'<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'
    b'<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="GM_DeviceBay">'
    b'<KEYBINDING NAME="EnclosureName"><KEYVALUE VALUETYPE="string" TYPE="string">enc1</KEYVALUE>'
    b'</KEYBINDING><KEYBINDING NAME="BayName"><KEYVALUE VALUETYPE="string" TYPE="string">3'
    b"</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>"
    b'<IPARAMVALUE NAME="LocalOnly"><VALUE>FALSE</VALUE></IPARAMVALUE></IMETHODCALL></SIMPLEREQ>'
    b"</MESSAGE></CIM>"
)


def gm_bay(i: int = 3) -> CIMInstance:
    """A GM-sized instance: 15 properties of the kinds GM_DeviceBay has."""
    inst = CIMInstance(
        "GM_DeviceBay",
        properties=[
            CIMProperty("EnclosureName", "enc1"),
            CIMProperty("BayName", str(i)),
            CIMProperty("IsSpare", False),
            CIMProperty("ServerPresent", True),
            CIMProperty("ServerModel", "ProLiant BL460c Gen9"),
            CIMProperty("ServerGeneration", Uint16(9)),
            CIMProperty("PowerState", Uint16(2)),
            CIMProperty("ProfileName", 'web-01 <prod> & "x"'),
            CIMProperty("HostName", "web01.example.com"),
            CIMProperty("IPAddresses", ["10.0.0.1", "10.0.0.2"], type="string"),
            CIMProperty("DomainGroup", "dg1"),
            CIMProperty("Epoch", Uint64(7)),
            CIMProperty("Cores", Uint32(32)),
            CIMProperty("LastChange", CIMDateTime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))),
            CIMProperty("Description", None, type="string"),
        ],
    )
    inst.path = CIMInstanceName(
        "GM_DeviceBay", {"EnclosureName": "enc1", "BayName": str(i)}, namespace="root/cimv2"
    )
    return inst


def _us(fn: object, number: int = 5000) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=5))  # type: ignore[arg-type]
    return best / number * 1e6


def parse_figures() -> None:
    parse_us = _us(lambda: parse_request(GET_INSTANCE))
    tree_us = _us(lambda: parse_tree(GET_INSTANCE))
    schema = etree.XMLSchema(etree.parse(str(ROOT / "schemas" / "cim-xml.xsd")))
    doc = etree.fromstring(GET_INSTANCE)
    xsd_us = _us(lambda: schema.validate(doc))
    lxml_us = _us(lambda: etree.fromstring(GET_INSTANCE))
    print(
        f"parse_request(GetInstance): {parse_us:.1f} µs canonical reader; {tree_us:.1f} µs "
        f"through the tree (lxml alone {lxml_us:.1f} µs), ratio {tree_us / parse_us:.1f}"
    )
    print(f"XSD validation of the same document: {xsd_us:.1f} µs")


def encode_figures() -> None:
    inst = gm_bay()
    inst_us = _us(lambda: encode_instance(inst))
    resp_us = _us(lambda: encode_imethod_response("1", "GetInstance", InstanceResult(inst)))
    pywbem_us = _us(lambda: inst.tocimxmlstr(), number=300)
    print(
        f"encode_instance(15 properties): {inst_us:.1f} µs; GetInstance response {resp_us:.1f} µs"
    )
    print(f"pywbem tocimxmlstr() of the same instance: {pywbem_us:.1f} µs")


if __name__ == "__main__":
    parse_figures()
    encode_figures()
