"""parse_request: the request shapes real clients send (reference cim-xml-protocol.md 2.2),
and every ProtocolError path with its HTTP status and CIMError value (reference 1.6, 5.1)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from pywbem import CIMClassName, CIMDateTime, CIMInstance, CIMInstanceName, Uint32

from provider.cimxml import parse as parse_module
from provider.cimxml.messages import ExportCall, ExtrinsicCall, IntrinsicCall, ParamValue
from provider.cimxml.parse import parse_request
from provider.errors import ProtocolError

DATA = Path(__file__).parent / "data"
DECL = b'<?xml version="1.0" encoding="utf-8" ?>\n'
NS = b'<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'


def wrap(
    call: bytes, *, cim: bytes = b'CIMVERSION="2.0" DTDVERSION="2.0"', pv: bytes = b"1.0"
) -> bytes:
    return (
        DECL + b"<CIM " + cim + b'><MESSAGE ID="1001" PROTOCOLVERSION="' + pv + b'">'
        b"<SIMPLEREQ>" + call + b"</SIMPLEREQ></MESSAGE></CIM>"
    )


# Verbatim from reference 2.2 (sblim wbemcli 1.6.3 `cm` on an instance).
WBEMCLI_CM = (DATA / "wbemcli_cm.xml").read_bytes()

# The same call as pywbem 1.9.1 sends it (reference 2.2: PARAMTYPE, KEYVALUE TYPE, ID 1001).
PYWBEM_CM = (
    WBEMCLI_CM.replace(b'ID="4711"', b'ID="1001"')
    .replace(b'VALUETYPE="string">', b'VALUETYPE="string" TYPE="string">')
    .replace(b'NAME="Msg">', b'NAME="Msg" PARAMTYPE="string">')
    .replace(b'NAME="N">', b'NAME="N" PARAMTYPE="uint32">')
    .replace(b'NAME="Arr">', b'NAME="Arr" PARAMTYPE="string">')
)

# OpenPegasus style (reference 2.2, wbemexec tests/cimrequest.xml): no XML declaration here,
# whitespace inside VALUE and between elements.
PEGASUS_ECN = (DATA / "pegasus_enumerateclassnames.xml").read_bytes()

# The seed's cron request file: static method on a LOCALCLASSPATH, empty MESSAGE ID.
CHECK_SCAVENGED = b"""<?xml version="1.0" encoding="utf-8"?>
<CIM CIMVERSION="2.0" DTDVERSION="2.0">
  <MESSAGE ID="" PROTOCOLVERSION="1.0">
    <SIMPLEREQ>
      <METHODCALL NAME="checkScavengedMember">
        <LOCALCLASSPATH>
          <LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>
          <CLASSNAME NAME="GM_GroupManager"/>
        </LOCALCLASSPATH>
      </METHODCALL>
    </SIMPLEREQ>
  </MESSAGE>
</CIM>
"""

GET_INSTANCE_PEGASUS_KEYS = wrap(
    b'<IMETHODCALL NAME="GetInstance">' + NS + b'<IPARAMVALUE NAME="InstanceName">'
    b'<INSTANCENAME CLASSNAME="GM_DeviceBay">'
    b'<KEYBINDING NAME="EnclosureName"><KEYVALUE VALUETYPE="string">\n    enc1\n  </KEYVALUE>'
    b"</KEYBINDING>"
    b'<KEYBINDING NAME="Slot"><KEYVALUE VALUETYPE="numeric">  3 </KEYVALUE></KEYBINDING>'
    b'<KEYBINDING NAME="Spare"><KEYVALUE VALUETYPE="boolean">true</KEYVALUE></KEYBINDING>'
    b'<KEYBINDING NAME="Id"><KEYVALUE VALUETYPE="numeric" TYPE="uint32">7</KEYVALUE></KEYBINDING>'
    b'<KEYBINDING NAME="At"><KEYVALUE TYPE="datetime">20260102030405.000000+000</KEYVALUE>'
    b"</KEYBINDING>"
    b"</INSTANCENAME></IPARAMVALUE>"
    b'<IPARAMVALUE NAME="PropertyList"><VALUE.ARRAY><VALUE>A</VALUE><VALUE.NULL/></VALUE.ARRAY>'
    b'</IPARAMVALUE><IPARAMVALUE NAME="LocalOnly"></IPARAMVALUE></IMETHODCALL>'
)

EXPORT_INDICATION = (DATA / "export_indication.xml").read_bytes()


def test_wbemcli_extrinsic_call_on_instance() -> None:
    call = parse_request(WBEMCLI_CM)
    assert call == ExtrinsicCall(
        message_id="4711",
        protocol_version="1.0",
        method="Ping",
        target=CIMInstanceName("Foo", {"Name": "a b"}, namespace="root/cimv2"),
        params=(
            ParamValue("Msg", None, "hi there"),
            ParamValue("N", None, "3"),
            ParamValue("Arr", None, ["x", "y"]),
        ),
    )


def test_pywbem_extrinsic_call_keeps_paramtype_and_untyped_values() -> None:
    call = parse_request(PYWBEM_CM)
    assert isinstance(call, ExtrinsicCall)
    assert call.message_id == "1001"
    assert [(p.name, p.paramtype, p.value) for p in call.params] == [
        ("Msg", "string", "hi there"),
        ("N", "uint32", "3"),
        ("Arr", "string", ["x", "y"]),
    ]


def test_pegasus_intrinsic_call_keeps_value_text_exactly() -> None:
    call = parse_request(PEGASUS_ECN)
    assert call == IntrinsicCall(
        message_id="51000",
        protocol_version="1.0",
        method="EnumerateClassNames",
        namespace="test/static",
        params={
            "ClassName": CIMClassName("WET_Statistics"),
            "DeepInheritance": "\n      TRUE\n     ",
        },
    )


def test_cron_request_file_static_method_with_empty_message_id() -> None:
    call = parse_request(CHECK_SCAVENGED)
    assert call == ExtrinsicCall(
        "",
        "1.0",
        "checkScavengedMember",
        CIMClassName("GM_GroupManager", namespace="root/cimv2"),
        (),
    )


def test_keyvalues_typed_from_valuetype_or_type_and_stripped() -> None:
    call = parse_request(GET_INSTANCE_PEGASUS_KEYS)
    assert isinstance(call, IntrinsicCall)
    name = call.params["InstanceName"]
    keys = dict(name.keybindings)
    assert keys["EnclosureName"] == "enc1"
    assert keys["Slot"] == 3 and type(keys["Slot"]) is int
    assert keys["Spare"] is True
    assert keys["Id"] == 7 and isinstance(keys["Id"], Uint32)
    assert keys["At"] == CIMDateTime("20260102030405.000000+000")
    assert call.params["PropertyList"] == ["A", None]
    assert call.params["LocalOnly"] is None


def test_export_indication_with_embedded_instance_and_reference() -> None:
    call = parse_request(EXPORT_INDICATION)
    assert isinstance(call, ExportCall)
    assert call.method == "ExportIndication"
    ind = call.params["NewIndication"]
    assert isinstance(ind, CIMInstance)
    assert ind["Severity"] == 5
    assert ind["Message"] == " bay 3 failed "  # strings exactly as sent
    assert ind["Ids"] == [1, 2]
    source = ind["Source"]
    assert isinstance(source, CIMInstance) and source["BayName"] == "3"
    assert ind.properties["Source"].embedded_object == "instance"
    assert ind["Bay"] == CIMInstanceName(
        "GM_DeviceBay", {"BayName": "3"}, namespace="root/cimv2", host="gm1"
    )


def test_create_instance_and_class_parameters() -> None:
    body = wrap(
        b'<IMETHODCALL NAME="CreateClass">' + NS + b'<IPARAMVALUE NAME="NewClass">'
        b'<CLASS NAME="GM_X" SUPERCLASS="CIM_Y"><QUALIFIER NAME="Description" TYPE="string">'
        b"<VALUE>d</VALUE></QUALIFIER>"
        b'<PROPERTY NAME="Name" TYPE="string"><QUALIFIER NAME="Key" TYPE="boolean" '
        b'OVERRIDABLE="false"><VALUE>TRUE</VALUE></QUALIFIER></PROPERTY>'
        b'<METHOD NAME="m" TYPE="uint32"><PARAMETER NAME="a" TYPE="string"></PARAMETER>'
        b'<PARAMETER.ARRAY NAME="b" TYPE="uint8"/><PARAMETER.REFERENCE NAME="c" '
        b'REFERENCECLASS="GM_X"/><PARAMETER.REFARRAY NAME="d"/></METHOD>'
        b"</CLASS></IPARAMVALUE></IMETHODCALL>"
    )
    call = parse_request(body)
    assert isinstance(call, IntrinsicCall)
    cls = call.params["NewClass"]
    assert cls.classname == "GM_X" and cls.superclass == "CIM_Y"
    assert cls.properties["Name"].qualifiers["Key"].value is True
    assert cls.properties["Name"].qualifiers["Key"].overridable is False
    method = cls.methods["m"]
    assert method.return_type == "uint32"
    assert [(p.name, p.type, p.is_array) for p in method.parameters.values()] == [
        ("a", "string", False),
        ("b", "uint8", True),
        ("c", "reference", False),
        ("d", "reference", True),
    ]


# ---- errors -------------------------------------------------------------------------------


def _error(body: bytes, **kw: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(body, **kw)
    return info.value


GETCLASS = b'<IMETHODCALL NAME="GetClass">' + NS + b"</IMETHODCALL>"


@pytest.mark.parametrize(
    ("body", "status", "cim_error", "in_detail"),
    [
        (b"", 400, "request-not-well-formed", "empty"),
        (b"<CIM", 400, "request-not-well-formed", ""),
        (wrap(GETCLASS).replace(b"</CIM>", b""), 400, "request-not-well-formed", ""),
        (wrap(GETCLASS) + b"<x/>", 400, "request-not-well-formed", ""),
        (b"<CIM>&undefined;</CIM>", 400, "request-not-well-formed", "undefined"),
        (wrap(GETCLASS).replace(b"root", b"r\xffot"), 400, "request-not-valid", "UTF-8"),
        (
            wrap(GETCLASS, cim=b'CIMVERSION="3.0" DTDVERSION="2.0"'),
            501,
            "unsupported-cim-version",
            "3.0",
        ),
        (
            wrap(GETCLASS, cim=b'CIMVERSION="2" DTDVERSION="2.0"'),
            501,
            "unsupported-cim-version",
            "",
        ),
        (
            wrap(GETCLASS, cim=b'CIMVERSION="2.0" DTDVERSION="1.1"'),
            501,
            "unsupported-dtd-version",
            "",
        ),
        (wrap(GETCLASS, pv=b"2.0"), 501, "unsupported-protocol-version", "2.0"),
        (wrap(GETCLASS, pv=b"1.x"), 501, "unsupported-protocol-version", ""),
        (wrap(GETCLASS, cim=b'DTDVERSION="2.0"'), 400, "request-not-valid", "CIMVERSION"),
        (wrap(GETCLASS).replace(b'ID="1001" ', b""), 400, "request-not-valid", "ID"),
        (
            wrap(GETCLASS).replace(b"SIMPLEREQ", b"MULTIREQ"),
            400,
            "header-mismatch",
            "without the CIMBatch header",
        ),
        (
            wrap(GETCLASS).replace(b"SIMPLEREQ", b"MULTIEXPREQ"),
            400,
            "header-mismatch",
            "without the CIMExportBatch header",
        ),
        (wrap(GETCLASS).replace(b"SIMPLEREQ", b"SIMPLERSP"), 400, "request-not-valid", "SIMPLERSP"),
        (b'<FOO CIMVERSION="2.0"/>', 400, "request-not-valid", "<FOO>"),
        (
            wrap(b'<IMETHODCALL NAME="GetClass"></IMETHODCALL>'),
            400,
            "request-not-valid",
            "LOCALNAMESPACEPATH",
        ),
        (wrap(b"<IMETHODCALL>" + NS + b"</IMETHODCALL>"), 400, "request-not-valid", "NAME"),
        (
            wrap(b'<IMETHODCALL NAME="GetClass">' + NS + b"<BOGUS/></IMETHODCALL>"),
            400,
            "request-not-valid",
            "<BOGUS>",
        ),
        (
            wrap(b'<IMETHODCALL NAME="GetClass">junk' + NS + b"</IMETHODCALL>"),
            400,
            "request-not-valid",
            "junk",
        ),
        (
            wrap(
                b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="I"><INSTANCENAME '
                b'CLASSNAME="X"><KEYBINDING NAME="k"><KEYVALUE VALUETYPE="numeric">abc'
                b"</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE></IMETHODCALL>"
            ),
            400,
            "request-not-valid",
            'KEYBINDING[NAME="k"]',
        ),
        (
            wrap(
                b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="I"><INSTANCE CLASSNAME="X">'
                b'<PROPERTY NAME="p" TYPE="uint8"><VALUE>300</VALUE></PROPERTY></INSTANCE>'
                b"</IPARAMVALUE></IMETHODCALL>"
            ),
            400,
            "request-not-valid",
            "uint8",
        ),
        (
            wrap(
                b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="I"><INSTANCE CLASSNAME="X">'
                b'<PROPERTY NAME="p" TYPE="boolean"><VALUE>yes</VALUE></PROPERTY></INSTANCE>'
                b"</IPARAMVALUE></IMETHODCALL>"
            ),
            400,
            "request-not-valid",
            "boolean",
        ),
        (
            wrap(
                b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="I"><INSTANCE CLASSNAME="X">'
                b'<PROPERTY NAME="p" TYPE="int"><VALUE>1</VALUE></PROPERTY></INSTANCE>'
                b"</IPARAMVALUE></IMETHODCALL>"
            ),
            400,
            "request-not-valid",
            "TYPE='int'",
        ),
        (
            wrap(
                b'<METHODCALL NAME="m"><LOCALCLASSPATH>' + NS + b'<CLASSNAME NAME="X"/>'
                b'</LOCALCLASSPATH><PARAMVALUE NAME="p" PARAMTYPE="text"></PARAMVALUE></METHODCALL>'
            ),
            400,
            "request-not-valid",
            "PARAMTYPE",
        ),
        (
            wrap(b'<METHODCALL NAME="m">' + NS + b"</METHODCALL>"),
            400,
            "request-not-valid",
            "LOCALCLASSPATH",
        ),
    ],
)
def test_protocol_errors(body: bytes, status: int, cim_error: str, in_detail: str) -> None:
    err = _error(body)
    assert (err.status, err.cim_error) == (status, cim_error)
    assert in_detail in err.detail


def test_invalid_detail_says_where() -> None:
    body = wrap(
        b'<IMETHODCALL NAME="GetInstance">' + NS + b'<IPARAMVALUE NAME="InstanceName">'
        b'<INSTANCENAME CLASSNAME="X"><KEYBINDING NAME="k"><VALUE>1</VALUE></KEYBINDING>'
        b"</INSTANCENAME></IPARAMVALUE></IMETHODCALL>"
    )
    err = _error(body)
    assert "<VALUE>" in err.detail
    assert 'IPARAMVALUE[NAME="InstanceName"]/INSTANCENAME/KEYBINDING[NAME="k"]' in err.detail
    assert "(line 2)" in err.detail


def test_missing_xml_declaration_and_comments_are_accepted() -> None:
    body = wrap(GETCLASS)[len(DECL) :].replace(b"<SIMPLEREQ>", b"<SIMPLEREQ><!-- hi --><?pi x?>")
    assert isinstance(parse_request(body), IntrinsicCall)


def test_versions_with_any_numeric_minor_and_update_are_accepted() -> None:
    body = wrap(GETCLASS, cim=b'CIMVERSION="2.4.0" DTDVERSION="2.31"', pv=b"1.4")
    call = parse_request(body)
    assert call.protocol_version == "1.4"


# ---- hostile input ------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE CIM [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">&lol9;</CIM>'
)

EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE CIM [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<CIM CIMVERSION="2.0" DTDVERSION="2.0">&xxe;</CIM>'
)

EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE CIM SYSTEM "http://127.0.0.1:9/cim.dtd">'
    b'<CIM CIMVERSION="2.0" DTDVERSION="2.0"></CIM>'
)


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD])
def test_doctype_and_entities_refused_before_parsing_with_bounded_memory(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refused on the raw bytes: the XML parser never sees an entity bomb.
    def no_parsing(*args: object) -> None:
        raise AssertionError("the XML parser was called")

    monkeypatch.setattr(parse_module.etree, "fromstring", no_parsing)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = _error(body)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert (err.status, err.cim_error) == (400, "request-not-valid")
    assert "DOCTYPE" in err.detail
    assert grown_kib < 10_000


def test_internal_subset_without_the_word_doctype_cannot_sneak_in() -> None:
    # An entity reference with no declaration is simply not well-formed.
    err = _error(b'<CIM CIMVERSION="2.0" DTDVERSION="2.0">&lol9;</CIM>')
    assert err.cim_error == "request-not-well-formed"


def _nested_reference(depth: int) -> bytes:
    inner = b'<KEYVALUE VALUETYPE="string">x</KEYVALUE>'
    for _ in range(depth):
        inner = (
            b'<VALUE.REFERENCE><INSTANCENAME CLASSNAME="X"><KEYBINDING NAME="k">'
            + inner
            + b"</KEYBINDING></INSTANCENAME></VALUE.REFERENCE>"
        )
    return wrap(
        b'<IMETHODCALL NAME="GetInstance">' + NS + b'<IPARAMVALUE NAME="InstanceName">'
        b'<INSTANCENAME CLASSNAME="X"><KEYBINDING NAME="k">'
        + inner
        + b"</KEYBINDING></INSTANCENAME></IPARAMVALUE></IMETHODCALL>"
    )


def test_depth_limit() -> None:
    assert isinstance(parse_request(_nested_reference(5)), IntrinsicCall)
    err = _error(_nested_reference(20))
    assert (err.status, err.cim_error) == (400, "request-not-valid")
    assert "nesting exceeds the limit of 48" in err.detail
    err = _error(_nested_reference(2), max_depth=10)
    assert "limit of 10" in err.detail


def test_libxml2_depth_cap_reported_as_limit() -> None:
    err = _error(b"<CIM>" + b"<a>" * 300 + b"</a>" * 300 + b"</CIM>", max_depth=1000)
    assert (err.status, err.cim_error) == (400, "request-not-valid")
    assert "nesting" in err.detail


def test_element_count_limit() -> None:
    values = b"<VALUE>x</VALUE>" * 200
    body = wrap(
        b'<IMETHODCALL NAME="G">'
        + NS
        + b'<IPARAMVALUE NAME="P"><VALUE.ARRAY>'
        + values
        + b"</VALUE.ARRAY></IPARAMVALUE></IMETHODCALL>"
    )
    call = parse_request(body)
    assert isinstance(call, IntrinsicCall) and len(call.params["P"]) == 200
    err = _error(body, max_elements=100)
    assert (err.status, err.cim_error) == (400, "request-not-valid")
    assert "more than 100 elements" in err.detail


def test_a_method_without_a_return_type_is_not_valid() -> None:
    """Found by the fuzz test: pywbem's CIMMethod refused it with a ValueError, which the
    transport answered 500 (an internal error) instead of 400."""
    body = wrap(
        b'<IMETHODCALL NAME="CreateClass">' + NS + b'<IPARAMVALUE NAME="NewClass">'
        b'<CLASS NAME="GM_X"><METHOD NAME="stepDown"></METHOD></CLASS>'
        b"</IPARAMVALUE></IMETHODCALL>"
    )
    err = _error(body)
    assert err.status == 400 and err.cim_error == "request-not-valid"
    assert "missing attribute TYPE" in err.detail and "METHOD" in err.detail


def test_a_parameter_given_twice_is_left_to_the_operation_layer() -> None:
    """Well-formed CIM-XML: the operation answers CIM_ERR_INVALID_PARAMETER (DSP0200), not
    the codec an HTTP 400. The first value is kept; the repeat is named."""
    call = parse_request(
        wrap(
            b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="A"><VALUE>1</VALUE>'
            b'</IPARAMVALUE><IPARAMVALUE NAME="a"><VALUE>2</VALUE></IPARAMVALUE></IMETHODCALL>'
        )
    )
    assert isinstance(call, IntrinsicCall)
    assert call.params == {"A": "1"} and call.duplicate == "a"
