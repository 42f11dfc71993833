"""Values a client can get wrong, each answered with its CIM status, never an internal error
(found by running the product: a superscript digit, a number past the store's integers)."""

from __future__ import annotations

import pytest
import pywbem

from tests.harness import ProviderHandle
from tests.server.test_dsp0200_live import _headers, exchange


@pytest.mark.parametrize(
    "instance_id",
    [
        "GM:ConcreteJob:\u00b2",  # superscript two: str.isdigit() says yes, int() says no
        "GM:ConcreteJob:\u0661",  # Arabic-Indic one: int() reads it as 1
        "GM:ConcreteJob:99999999999999999999999",  # past a 64-bit integer
        "GM:ConcreteJob:01",  # not how job 1 is named
        "GM:EventDecision:\u00b2",
        "GM:EventDecision:99999999999999999999999",
    ],
)
def test_an_instance_id_that_names_no_instance_is_not_found(
    gm: ProviderHandle, instance_id: str
) -> None:
    classname = instance_id.split(":")[1]
    path = pywbem.CIMInstanceName(f"GM_{classname}", {"InstanceID": instance_id})
    with pytest.raises(pywbem.CIMError) as err:
        gm.connection().GetInstance(path)
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND, err.value


@pytest.mark.parametrize("count", ["\u00b2", "\u0663", "-1", "4294967296"])
def test_a_max_object_count_that_is_not_a_uint32_is_invalid(gm: ProviderHandle, count: str) -> None:
    body = (
        '<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        '<MESSAGE ID="9" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
        '<IMETHODCALL NAME="OpenEnumerateInstances">'
        '<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'
        '<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="GM_Enclosure"/></IPARAMVALUE>'
        f'<IPARAMVALUE NAME="MaxObjectCount"><VALUE>{count}</VALUE></IPARAMVALUE>'
        "</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    )
    status, _, payload = exchange(gm, body, _headers(CIMMethod="OpenEnumerateInstances"))
    assert status == 200
    assert b'<ERROR CODE="4"' in payload and b"MaxObjectCount" in payload, payload


def _message(inner: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        f'<MESSAGE ID="9" PROTOCOLVERSION="1.0"><SIMPLEREQ>{inner}</SIMPLEREQ></MESSAGE></CIM>'
    )


_NS = '<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'


def test_a_reference_where_a_string_is_declared_is_a_type_mismatch(gm: ProviderHandle) -> None:
    """setSpare took <VALUE.REFERENCE><CLASSNAME NAME="enc01"/> as the text "enc01" and
    changed the bay."""
    conn = gm.connection()
    bay = pywbem.CIMInstanceName("GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "4"})
    before = conn.GetInstance(bay)["IsSpare"]
    call = (
        f'<METHODCALL NAME="setSpare"><LOCALCLASSPATH>{_NS}<CLASSNAME NAME="GM_GroupManager"/>'
        '</LOCALCLASSPATH><PARAMVALUE NAME="EnclosureName" PARAMTYPE="reference">'
        '<VALUE.REFERENCE><CLASSNAME NAME="enc01"/></VALUE.REFERENCE></PARAMVALUE>'
        '<PARAMVALUE NAME="BayName" PARAMTYPE="string"><VALUE>4</VALUE></PARAMVALUE>'
        f'<PARAMVALUE NAME="IsSpare" PARAMTYPE="boolean"><VALUE>{str(not before).upper()}'
        "</VALUE></PARAMVALUE></METHODCALL>"
    )
    headers = _headers(CIMMethod="setSpare", CIMObject="root%2Fcimv2%3AGM_GroupManager")
    status, _, payload = exchange(gm, _message(call), headers)
    assert status == 200
    assert b'<ERROR CODE="13"' in payload and b"EnclosureName is a string" in payload, payload
    assert conn.GetInstance(bay)["IsSpare"] == before
    # A key given as a reference to an instance is refused the same way.
    get = (
        f'<IMETHODCALL NAME="GetInstance">{_NS}<IPARAMVALUE NAME="InstanceName">'
        '<INSTANCENAME CLASSNAME="GM_DeviceBay"><KEYBINDING NAME="EnclosureName">'
        '<VALUE.REFERENCE><INSTANCENAME CLASSNAME="GM_Enclosure"><KEYBINDING NAME="Name">'
        "<KEYVALUE>enc01</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE></KEYBINDING>"
        '<KEYBINDING NAME="BayName"><KEYVALUE>4</KEYVALUE></KEYBINDING></INSTANCENAME>'
        "</IPARAMVALUE></IMETHODCALL>"
    )
    status, _, payload = exchange(gm, _message(get), _headers(CIMMethod="GetInstance"))
    assert status == 200 and b'<ERROR CODE="13"' in payload, payload
    # A class where a key's reference must name an instance: not a valid request.
    status, headers, _ = exchange(
        gm,
        _message(get).replace(
            '<INSTANCENAME CLASSNAME="GM_Enclosure"><KEYBINDING NAME="Name">'
            "<KEYVALUE>enc01</KEYVALUE></KEYBINDING></INSTANCENAME>",
            '<CLASSNAME NAME="enc01"/>',
        ),
        _headers(CIMMethod="GetInstance"),
    )
    assert status == 400 and headers["cimerror"] == "request-not-valid"


def test_modify_with_an_empty_property_list_changes_nothing(gm: ProviderHandle) -> None:
    """ModifyInstance of a bay with PropertyList=[] answered "IsSpare must be true or false"."""
    conn = gm.connection()
    path = pywbem.CIMInstanceName("GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "4"})
    bay = conn.GetInstance(path)
    conn.ModifyInstance(bay, PropertyList=[])
    assert conn.GetInstance(path)["IsSpare"] == bay["IsSpare"]
    with pytest.raises(pywbem.CIMError) as err:
        conn.ModifyInstance(bay, PropertyList=["Bogus"])
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "Bogus" in err.value.status_description
    gone = pywbem.CIMInstanceName("GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "99"})
    bay.path = gone
    with pytest.raises(pywbem.CIMError) as err:
        conn.ModifyInstance(bay, PropertyList=[])
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND


def test_an_enumeration_that_never_times_out_is_refused(gm: ProviderHandle) -> None:
    """OperationTimeout=0 ("never time out", DSP0200) was taken silently as 60 s."""
    with pytest.raises(pywbem.CIMError) as err:
        gm.connection().OpenEnumerateInstances("GM_Enclosure", OperationTimeout=0)
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_OPERATION_TIMEOUT
    assert "never time out" in err.value.status_description


@pytest.mark.parametrize(
    ("method", "params", "wrong"),
    [
        # A boolean for a host name: it looked for a host named "TRUE".
        ("seizeRights", {"HostName": ("boolean", "TRUE")}, "HostName is a string"),
        # pywbem's Uint32(3) for a bay name: it went on to fail over "enc01 bay 3".
        (
            "failoverProfile",
            {"EnclosureName": ("string", "enc01"), "BayName": ("uint32", "3")},
            "BayName is a string",
        ),
        ("activateCores", {"HostName": ("string", "x"), "Count": ("sint8", "2")}, "a uint32"),
    ],
)
def test_a_parameter_typed_as_another_cim_type_is_a_type_mismatch(
    gm: ProviderHandle, method: str, params: dict[str, tuple[str, str]], wrong: str
) -> None:
    values = "".join(
        f'<PARAMVALUE NAME="{name}" PARAMTYPE="{kind}"><VALUE>{text}</VALUE></PARAMVALUE>'
        for name, (kind, text) in params.items()
    )
    call = (
        f'<METHODCALL NAME="{method}"><LOCALCLASSPATH>{_NS}<CLASSNAME NAME="GM_GroupManager"/>'
        f"</LOCALCLASSPATH>{values}</METHODCALL>"
    )
    headers = _headers(CIMMethod=method, CIMObject="root%2Fcimv2%3AGM_GroupManager")
    status, _, payload = exchange(gm, _message(call), headers)
    assert status == 200
    assert b'<ERROR CODE="13"' in payload and wrong.encode() in payload, payload


def test_text_and_untyped_values_are_read_in_the_declared_type(gm: ProviderHandle) -> None:
    """Request files write numbers as text (PARAMTYPE="string") and wbemcli sends no
    PARAMTYPE: both are read as the MOF declares them."""
    for attr in (' PARAMTYPE="string"', ""):
        call = (
            f'<METHODCALL NAME="setSpare"><LOCALCLASSPATH>{_NS}'
            '<CLASSNAME NAME="GM_GroupManager"/></LOCALCLASSPATH>'
            '<PARAMVALUE NAME="EnclosureName"><VALUE>enc01</VALUE></PARAMVALUE>'
            '<PARAMVALUE NAME="BayName"><VALUE>12</VALUE></PARAMVALUE>'
            f'<PARAMVALUE NAME="IsSpare"{attr}><VALUE>TRUE</VALUE></PARAMVALUE></METHODCALL>'
        )
        headers = _headers(CIMMethod="setSpare", CIMObject="root%2Fcimv2%3AGM_GroupManager")
        status, _, payload = exchange(gm, _message(call), headers)
        assert status == 200 and b"<ERROR" not in payload, payload


def test_a_key_the_class_does_not_have_is_named_as_sent(gm: ProviderHandle) -> None:
    path = pywbem.CIMInstanceName(
        "GM_DeviceBay",
        {"EnclosureName": "enc01", "BayName": "1", "SlotNumber": "3"},
        namespace="root/cimv2",
    )
    with pytest.raises(pywbem.CIMError) as err:
        gm.connection().GetInstance(path)
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "GM_DeviceBay has no key named SlotNumber; its keys are" in (
        err.value.status_description
    )
    # A key missing is named, whatever the case of those sent.
    path = pywbem.CIMInstanceName("GM_DeviceBay", {"enclosurename": "enc01"}, "root/cimv2")
    with pytest.raises(pywbem.CIMError) as err:
        gm.connection().GetInstance(path)
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "The path of GM_DeviceBay needs key BayName; got" in err.value.status_description
    # Key names match as pywbem matches them (case folded: a long s is an s), and the extra
    # named is the one that did not match.
    keys = {"Encloſurename": "enc01", "BayName": "1", "Foo": "x"}
    with pytest.raises(pywbem.CIMError) as err:
        gm.connection().GetInstance(pywbem.CIMInstanceName("GM_DeviceBay", keys, "root/cimv2"))
    assert "GM_DeviceBay has no key named Foo; its keys are" in err.value.status_description


def test_an_embedded_object_where_the_mof_declares_none_is_invalid(gm: ProviderHandle) -> None:
    """Read as text, an embedded instance became a host name to look up."""
    call = (
        f'<METHODCALL NAME="failoverProfile"><LOCALCLASSPATH>{_NS}'
        '<CLASSNAME NAME="GM_GroupManager"/></LOCALCLASSPATH>'
        '<PARAMVALUE NAME="HostName" PARAMTYPE="string" EmbeddedObject="instance"><VALUE>'
        "&lt;INSTANCE CLASSNAME=&quot;X&quot;/&gt;</VALUE></PARAMVALUE></METHODCALL>"
    )
    headers = _headers(CIMMethod="failoverProfile", CIMObject="root%2Fcimv2%3AGM_GroupManager")
    status, _, payload = exchange(gm, _message(call), headers)
    assert status == 200
    assert b'<ERROR CODE="4"' in payload and b"not an embedded object" in payload, payload
