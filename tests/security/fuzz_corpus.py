"""The conformance corpus the live fuzz run mutates, and the mutations.

Seeds are complete HTTP requests as real clients send them:

* every request file of `etc/requests/` (what cron and `wbemexec` post), except `stepDown`
  (the node would spend the rest of the run as a standby);
* the request shapes of `tests/server/` and of pywbem: intrinsic reads, pull operations,
  Create/Modify/DeleteInstance, an export request (indication);
* in the header styles of pywbem (POST, `CIMProtocolVersion`), sblim wbemcli (an empty
  `Expect:`, no PARAMTYPE) and OpenPegasus wbemexec (M-POST with `73-` prefixed extension
  headers, bare-LF lines, an empty `Host:`), reference cim-xml-protocol.md §1.3, §4.2, §6.2.

A mutation takes one seed and a `random.Random` and returns the bytes to send, so a failure
is reproduced from (seed, index) alone.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from lxml import etree

from tests.harness import ROOT, USERS

NS = '<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'
BAY_NAME = (
    '<INSTANCENAME CLASSNAME="GM_DeviceBay">'
    '<KEYBINDING NAME="EnclosureName"><KEYVALUE VALUETYPE="string">enc01</KEYVALUE></KEYBINDING>'
    '<KEYBINDING NAME="BayName"><KEYVALUE VALUETYPE="string">12</KEYVALUE></KEYBINDING>'
    "</INSTANCENAME>"
)


@dataclass(frozen=True)
class Seed:
    name: str
    body: bytes
    cim_method: str
    cim_object: str
    export: bool = False


def _envelope(inner: str, message_id: int) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        f'<MESSAGE ID="{message_id}" PROTOCOLVERSION="1.0"><SIMPLEREQ>{inner}</SIMPLEREQ>'
        "</MESSAGE></CIM>"
    ).encode()


def _imethod(name: str, params: str, message_id: int) -> Seed:
    body = _envelope(f'<IMETHODCALL NAME="{name}">{NS}{params}</IMETHODCALL>', message_id)
    return Seed(name, body, name, "root/cimv2")


def _classname(param: str, cls: str) -> str:
    return f'<IPARAMVALUE NAME="{param}"><CLASSNAME NAME="{cls}"/></IPARAMVALUE>'


def _intrinsic_seeds() -> list[Seed]:
    bay = f'<IPARAMVALUE NAME="InstanceName">{BAY_NAME}</IPARAMVALUE>'
    bay_instance = (
        '<INSTANCE CLASSNAME="GM_DeviceBay"><PROPERTY NAME="IsSpare" TYPE="boolean">'
        "<VALUE>FALSE</VALUE></PROPERTY></INSTANCE>"
    )
    group = (
        '<INSTANCE CLASSNAME="GM_CapacityGroup"><PROPERTY NAME="Name" TYPE="string">'
        "<VALUE>fuzz-group</VALUE></PROPERTY></INSTANCE>"
    )
    false = "<VALUE>FALSE</VALUE>"
    return [
        _imethod("GetClass", _classname("ClassName", "GM_GroupManager"), 11),
        _imethod(
            "EnumerateClassNames", f'<IPARAMVALUE NAME="DeepInheritance">{false}</IPARAMVALUE>', 12
        ),
        _imethod("GetInstance", bay, 13),
        _imethod(
            "GetInstance",
            bay + '<IPARAMVALUE NAME="PropertyList"><VALUE.ARRAY><VALUE>IsSpare</VALUE>'
            "<VALUE>PowerState</VALUE></VALUE.ARRAY></IPARAMVALUE>",
            14,
        ),
        _imethod("EnumerateInstances", _classname("ClassName", "GM_DomainGroup"), 15),
        _imethod("EnumerateInstanceNames", _classname("ClassName", "GM_Enclosure"), 16),
        _imethod(
            "OpenEnumerateInstances",
            _classname("ClassName", "GM_ServerProfile")
            + '<IPARAMVALUE NAME="MaxObjectCount"><VALUE>2</VALUE></IPARAMVALUE>',
            17,
        ),
        _imethod(
            "PullInstancesWithPath",
            '<IPARAMVALUE NAME="EnumerationContext"><VALUE>0123456789abcdef01234567</VALUE>'
            '</IPARAMVALUE><IPARAMVALUE NAME="MaxObjectCount"><VALUE>5</VALUE></IPARAMVALUE>',
            18,
        ),
        _imethod("Associators", f'<IPARAMVALUE NAME="ObjectName">{BAY_NAME}</IPARAMVALUE>', 19),
        _imethod(
            "ModifyInstance",
            f'<IPARAMVALUE NAME="ModifiedInstance"><VALUE.NAMEDINSTANCE>{BAY_NAME}'
            f"{bay_instance}</VALUE.NAMEDINSTANCE></IPARAMVALUE>",
            20,
        ),
        _imethod("CreateInstance", f'<IPARAMVALUE NAME="NewInstance">{group}</IPARAMVALUE>', 21),
        _imethod("DeleteInstance", bay, 22),
    ]


def _method_seed(path: Path) -> Seed | None:
    body = path.read_bytes()
    match = re.search(rb'<(I?)METHODCALL NAME="([^"]+)"', body)
    if match is None:
        return None
    name = match.group(2).decode()
    if match.group(1):
        return Seed(path.stem, body, name, "root/cimv2")
    return Seed(path.stem, body, name, "root/cimv2:GM_GroupManager")


def _export_seed() -> Seed:
    body = (
        b'<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        b'<MESSAGE ID="31" PROTOCOLVERSION="1.0"><SIMPLEEXPREQ>'
        b'<EXPMETHODCALL NAME="ExportIndication"><EXPPARAMVALUE NAME="NewIndication">'
        b'<INSTANCE CLASSNAME="CIM_AlertIndication"><PROPERTY NAME="Description" TYPE="string">'
        b"<VALUE>fuzz</VALUE></PROPERTY></INSTANCE></EXPPARAMVALUE></EXPMETHODCALL>"
        b"</SIMPLEEXPREQ></MESSAGE></CIM>"
    )
    return Seed("ExportIndication", body, "ExportIndication", "", export=True)


def seeds() -> list[Seed]:
    files = sorted((ROOT / "etc" / "requests").glob("*.xml"))
    found = [_method_seed(p) for p in files if p.stem != "stepDown"]
    return [s for s in found if s is not None] + _intrinsic_seeds() + [_export_seed()]


def _auth(user: str = "admin") -> str:
    token = base64.b64encode(f"{user}:{USERS[user][1]}".encode()).decode()
    return f"Basic {token}"


# ---- header styles: (method, [(name, value)], line ending) ----


def _headers(seed: Seed, style: str) -> tuple[str, list[tuple[str, str]], bytes]:
    if seed.export:
        return (
            "POST",
            [
                ("Host", "127.0.0.1"),
                ("Content-Type", 'application/xml; charset="utf-8"'),
                ("CIMExport", "MethodRequest"),
                ("CIMExportMethod", seed.cim_method),
                ("Authorization", _auth()),
            ],
            b"\r\n",
        )
    obj = quote(seed.cim_object, safe="")
    if style == "wbemexec":
        return (
            "M-POST",
            [
                ("Host", ""),
                ("Content-Type", 'application/xml; charset="utf-8"'),
                ("Man", "http://www.dmtf.org/cim/mapping/http/v1.0;ns=73"),
                ("73-CIMOperation", "MethodCall"),
                ("73-CIMMethod", seed.cim_method),
                ("73-CIMObject", obj),
                ("Authorization", _auth()),
            ],
            b"\n",
        )
    common = [
        ("Host", "127.0.0.1:5988"),
        ("Content-Type", 'application/xml; charset="utf-8"'),
        ("CIMOperation", "MethodCall"),
        ("CIMMethod", seed.cim_method),
        ("CIMObject", obj),
        ("Authorization", _auth()),
    ]
    if style == "wbemcli":
        return (
            "POST",
            [*common, ("Accept", "application/xml"), ("Expect", ""), ("TE", "trailers")],
            b"\r\n",
        )
    return (
        "POST",
        [*common, ("CIMProtocolVersion", "1.0"), ("Accept-Encoding", "identity")],
        b"\r\n",
    )


STYLES = ("pywbem", "wbemcli", "wbemexec")


def render(
    method: str,
    headers: list[tuple[str, str]],
    body: bytes,
    eol: bytes = b"\r\n",
    *,
    version: str = "1.1",
    length: int | None = None,
) -> bytes:
    lines = [f"{method} /cimom HTTP/{version}".encode("latin-1")]
    lines += [f"{k}: {v}".encode("latin-1", "replace") for k, v in headers]
    lines.append(b"Content-Length: %d" % (len(body) if length is None else length))
    lines.append(b"Connection: close")
    return eol.join(lines) + eol + eol + body


# ---- mutations: each returns (request bytes, may the request be incomplete?) ----

Mutation = Callable[[Seed, random.Random], tuple[bytes, bool]]

_CIM_TAGS = [
    "CIM",
    "MESSAGE",
    "SIMPLEREQ",
    "IMETHODCALL",
    "METHODCALL",
    "LOCALNAMESPACEPATH",
    "NAMESPACE",
    "IPARAMVALUE",
    "PARAMVALUE",
    "VALUE",
    "VALUE.ARRAY",
    "VALUE.REFERENCE",
    "CLASSNAME",
    "INSTANCENAME",
    "KEYBINDING",
    "KEYVALUE",
    "INSTANCE",
    "PROPERTY",
    "PROPERTY.ARRAY",
    "VALUE.NAMEDINSTANCE",
    "LOCALCLASSPATH",
    "LOCALINSTANCEPATH",
    "INSTANCEPATH",
    "NAMESPACEPATH",
    "HOST",
    "MULTIREQ",
    "EXPMETHODCALL",
    "ERROR",
    "QUALIFIER",
]
_WEIRD_TEXT = [
    "",
    " ",
    "TRUE",
    "FALSE",
    "true",
    "-1",
    "0",
    "4294967296",
    "18446744073709551616",
    "1e400",
    "NaN",
    "\u00e9\u4e2d\U0001f600",
    "\x7f",
    "a" * 3000,
    "&amp;",
    "]]>",
    "20240101000000.000000+000",
    "99999999999999.999999+999",
    "GM_GroupManager",
    "root/cimv2",
    "../../etc/passwd",
    "%s%n",
    "enc01",
    "12",
    "dg-web",
    "\t\n  \r",
]
_WEIRD_ATTR = [
    "",
    "x",
    "2.0",
    "1.0",
    "3.0",
    "1.1",
    "2.9999",
    "string",
    "uint32",
    "boolean",
    "reference",
    "datetime",
    "sint8",
    "real64",
    "GM_DeviceBay",
    "CIM_Nothing",
    "failoverProfile",
    "GetInstance",
    "a" * 600,
    "\u00e9",
]


def m_byte_flips(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    body = bytearray(seed.body)
    for _ in range(rng.randint(1, 8)):
        body[rng.randrange(len(body))] = rng.randrange(256)
    method, headers, eol = _headers(seed, rng.choice(STYLES))
    return render(method, headers, bytes(body), eol), False


def m_truncate(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    cut = rng.randrange(len(seed.body))
    method, headers, eol = _headers(seed, rng.choice(STYLES))
    if rng.random() < 0.2:
        # The declared length promises more than is sent: the client then closes its side.
        return render(method, headers, seed.body[:cut], eol, length=len(seed.body)), True
    return render(method, headers, seed.body[:cut], eol), False


def m_splice(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    other = rng.choice(seeds_cache())
    a = rng.randrange(len(seed.body))
    b = rng.randrange(len(other.body))
    body = seed.body[:a] + other.body[b:]
    method, headers, eol = _headers(seed, rng.choice(STYLES))
    return render(method, headers, body, eol), False


def m_headers(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    method, headers, eol = _headers(seed, rng.choice(STYLES))
    version = "1.1"
    body = seed.body
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(12)
        if choice == 0 and headers:
            headers.pop(rng.randrange(len(headers)))
        elif choice == 1 and headers:
            headers.append(rng.choice(headers))
        elif choice == 2 and headers:
            i = rng.randrange(len(headers))
            headers[i] = (headers[i][0], rng.choice(_WEIRD_TEXT[:-6] + _WEIRD_ATTR[:8]))
        elif choice == 3 and headers:
            i = rng.randrange(len(headers))
            name = headers[i][0]
            headers[i] = (
                rng.choice([name.upper(), name.lower(), name + " ", "X-" + name]),
                headers[i][1],
            )
        elif choice == 4:
            method = rng.choice(["GET", "PUT", "M-POST", "POST", "OPTIONS", "post", "M-GET", "ÿ"])
        elif choice == 5:
            version = rng.choice(["1.0", "2.0", "0.9", "1.1", "x", "1.10"])
        elif choice == 6:
            headers.append(
                (
                    "Content-Type",
                    rng.choice(
                        [
                            "text/xml",
                            "application/json",
                            'application/xml; charset="latin-1"',
                            "application/xml; charset=utf-16",
                        ]
                    ),
                )
            )
        elif choice == 7:
            headers.append(
                (
                    "Man",
                    rng.choice(
                        [
                            "http://www.dmtf.org/cim/mapping/http/v1.0;ns=",
                            "x;ns=99",
                            ";ns=73",
                            "http://x;ns=7 3",
                        ]
                    ),
                )
            )
        elif choice == 8:
            headers.append(("Expect", rng.choice(["100-continue", "200-ok", ""])))
        elif choice == 9:
            headers.append(("CIMProtocolVersion", rng.choice(["1.0", "1.1", "2.0", "x"])))
        elif choice == 10:
            headers.append(("Transfer-Encoding", rng.choice(["chunked", "gzip", "identity"])))
        else:
            headers.append(("CIMBatch", "CIMBatch"))
    incomplete = any(k.lower() == "transfer-encoding" for k, _ in headers)
    return render(method, headers, body, eol, version=version), incomplete


def m_raw_head(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    """Byte-level damage to the head itself: flips, CR/LF/colon/NUL insertion, cuts."""
    method, headers, eol = _headers(seed, rng.choice(STYLES))
    request = bytearray(render(method, headers, seed.body, eol))
    head_end = request.find(eol + eol)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(max(1, head_end))
        kind = rng.randrange(3)
        if kind == 0:
            request[pos] = rng.randrange(256)
        elif kind == 1:
            request[pos:pos] = rng.choice([b"\r", b"\n", b":", b"\x00", b" ", b"\r\n ", b"\t"])
        else:
            del request[pos : pos + rng.randint(1, 20)]
    return bytes(request), True


def _parse(body: bytes) -> etree._Element | None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        return etree.fromstring(body, parser)
    except etree.XMLSyntaxError:
        return None


def m_xml(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    """Structural mutations of the CIM-XML tree: delete, duplicate, move, rename elements,
    change or drop attributes, replace text, nest deeply, add DOCTYPE/entities."""
    root = _parse(seed.body)
    assert root is not None, seed.name
    elements = list(root.iter())
    for _ in range(rng.randint(1, 4)):
        el = rng.choice(elements)
        parent = el.getparent()
        choice = rng.randrange(9)
        if choice == 0 and parent is not None:
            parent.remove(el)
        elif choice == 1 and parent is not None:
            parent.insert(parent.index(el), etree.fromstring(etree.tostring(el)))
        elif choice == 2:
            el.tag = rng.choice(_CIM_TAGS)
        elif choice == 3 and el.attrib:
            name = rng.choice(list(el.attrib))
            if rng.random() < 0.5:
                del el.attrib[name]
            else:
                el.attrib[name] = rng.choice(_WEIRD_ATTR)
        elif choice == 4:
            el.attrib[
                rng.choice(
                    [
                        "NAME",
                        "TYPE",
                        "PARAMTYPE",
                        "CLASSNAME",
                        "VALUETYPE",
                        "CIMVERSION",
                        "ID",
                        "{http://www.w3.org/XML/1998/namespace}lang",
                        "EmbeddedObject",
                    ]
                )
            ] = rng.choice(_WEIRD_ATTR)
        elif choice == 5:
            el.text = rng.choice(_WEIRD_TEXT)
        elif choice == 6:
            node = el
            for _ in range(rng.randint(5, 80)):
                node = etree.SubElement(node, rng.choice(["VALUE.ARRAY", "VALUE", "INSTANCE"]))
        elif choice == 7 and parent is not None and len(parent) > 1:
            children = list(parent)
            rng.shuffle(children)
            parent[:] = children
        elif choice == 8:
            target = rng.choice(elements)
            if (
                target is not el
                and el not in target.iterancestors()
                and target.getparent() is not None
            ):
                el.append(etree.fromstring(etree.tostring(target)))
    body = etree.tostring(root, xml_declaration=rng.random() < 0.9, encoding="utf-8")
    if rng.random() < 0.05:
        body = body.replace(b"<CIM ", b'<!DOCTYPE CIM [<!ENTITY x "xx">]><CIM ', 1)
    method, headers, eol = _headers(seed, rng.choice(STYLES))
    return render(method, headers, body, eol), False


def m_values(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    """Only the values change: what the CIM layer and the domains see is valid CIM-XML with
    hostile content (types, ranges, unknown names, odd Unicode)."""
    root = _parse(seed.body)
    assert root is not None
    targets = [el for el in root.iter() if el.tag in ("VALUE", "KEYVALUE")]
    if not targets:
        targets = [el for el in root.iter() if "NAME" in el.attrib]
    for el in rng.sample(targets, min(len(targets), rng.randint(1, 3))):
        if el.tag in ("VALUE", "KEYVALUE"):
            el.text = rng.choice(_WEIRD_TEXT)
        else:
            el.attrib["NAME"] = rng.choice(_WEIRD_ATTR)
    method, headers, eol = _headers(seed, rng.choice(STYLES))
    return render(
        method, headers, etree.tostring(root, xml_declaration=True, encoding="utf-8"), eol
    ), False


def m_identity(seed: Seed, rng: random.Random) -> tuple[bytes, bool]:
    """The seed unchanged, in a random client's style (the control group)."""
    method, headers, eol = _headers(seed, rng.choice(STYLES))
    return render(method, headers, seed.body, eol), False


MUTATIONS: dict[str, Mutation] = {
    "identity": m_identity,
    "byte-flips": m_byte_flips,
    "truncate": m_truncate,
    "splice": m_splice,
    "headers": m_headers,
    "raw-head": m_raw_head,
    "xml-structure": m_xml,
    "xml-values": m_values,
}
WEIGHTS = {
    "identity": 1,
    "byte-flips": 3,
    "truncate": 2,
    "splice": 1,
    "headers": 3,
    "raw-head": 2,
    "xml-structure": 4,
    "xml-values": 4,
}

_SEEDS: list[Seed] = []


def seeds_cache() -> list[Seed]:
    if not _SEEDS:
        _SEEDS.extend(seeds())
    return _SEEDS


def mutated(run_seed: int, index: int) -> tuple[str, str, bytes, bool]:
    """(mutation, seed name, request bytes, may be incomplete) of example `index` of a run."""
    rng = random.Random(f"{run_seed}:{index}")
    seed = rng.choice(seeds_cache())
    names = list(WEIGHTS)
    kind = rng.choices(names, weights=[WEIGHTS[n] for n in names])[0]
    request, incomplete = MUTATIONS[kind](seed, rng)
    return kind, seed.name, request, incomplete
