"""DSP0200 header checks: statuses and CIMError values as OpenPegasus answers (reference 1.6),
and the header/body comparison with raw, half- and fully-escaped CIMObject (reference 1.4)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from pywbem import CIMClassName, CIMInstanceName, Uint32

from provider.cimxml.headers import (
    ExportHeaders,
    OperationHeaders,
    check_export_headers,
    check_headers,
    check_operation_headers,
    check_request_matches_headers,
)
from provider.cimxml.messages import ExportCall, ExtrinsicCall, IntrinsicCall
from provider.errors import ProtocolError

GOOD = {
    "content-type": 'application/xml; charset="utf-8"',
    "cimoperation": "MethodCall",
    "cimmethod": "GetInstance",
    "cimobject": "root%2Fcimv2",
    "cimprotocolversion": "1.0",
}


def _with(**changes: str | None) -> dict[str, str]:
    headers = dict(GOOD)
    for name, value in changes.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return headers


def test_good_headers_decoded() -> None:
    hdrs = check_operation_headers(GOOD)
    assert hdrs == OperationHeaders("GetInstance", "root/cimv2", "root%2Fcimv2", "1.0", True)


def test_protocol_version_defaults_to_1_0() -> None:
    hdrs = check_operation_headers(_with(cimprotocolversion=None))
    assert (hdrs.protocol_version, hdrs.protocol_version_sent) == ("1.0", False)


@pytest.mark.parametrize(
    "content_type",
    [
        'application/xml; charset="utf-8"',
        "application/xml; charset=utf-8",
        "text/xml",
        "TEXT/XML; Charset=UTF-8",
        "application/xml;charset='utf-8'".replace("'", '"'),
    ],
)
def test_content_types_accepted(content_type: str) -> None:
    check_operation_headers(_with(**{"content-type": content_type}))


@pytest.mark.parametrize(
    ("changes", "status", "cim_error", "detail"),
    [
        ({"cimoperation": None}, 400, None, "CIMOperation"),
        ({"cimoperation": "MethodResponse"}, 400, "unsupported-operation", ""),
        ({"cimoperation": ""}, 400, "unsupported-operation", ""),
        ({"cimbatch": ""}, 501, "multiple-requests-unsupported", ""),
        ({"cimprotocolversion": "2.0"}, 501, "unsupported-protocol-version", ""),
        ({"cimprotocolversion": "one"}, 501, "unsupported-protocol-version", ""),
        ({"cimmethod": None}, 400, "header-mismatch", "Missing CIMMethod"),
        ({"cimmethod": ""}, 400, "header-mismatch", "Empty CIMMethod"),
        ({"cimmethod": "Get%ZZ"}, 400, "header-mismatch", "CIMMethod value syntax error."),
        ({"cimmethod": "Get%FF"}, 400, "header-mismatch", "CIMMethod value syntax error."),
        ({"cimobject": None}, 400, "header-mismatch", "Missing CIMObject"),
        ({"cimobject": "  "}, 400, "header-mismatch", "Empty CIMObject"),
        ({"content-type": None}, 400, None, "HTTP Content-Type header error."),
        ({"content-type": "text/html"}, 400, None, "HTTP Content-Type header error."),
        ({"content-type": "application/xml; charset=latin-1"}, 400, None, "Content-Type"),
    ],
)
def test_operation_header_errors(
    changes: dict[str, str | None], status: int, cim_error: str | None, detail: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        check_operation_headers(_with(**changes))
    assert (info.value.status, info.value.cim_error) == (status, cim_error)
    assert detail in info.value.detail


def test_checks_run_in_pegasus_order() -> None:
    # CIMBatch is reported before a bad CIMProtocolVersion, which comes before CIMMethod,
    # which comes before Content-Type.
    bad = _with(cimbatch="", cimprotocolversion="9.9", cimmethod=None, **{"content-type": "x"})
    with pytest.raises(ProtocolError) as info:
        check_operation_headers(bad)
    assert info.value.cim_error == "multiple-requests-unsupported"
    bad.pop("cimbatch")
    with pytest.raises(ProtocolError) as info:
        check_operation_headers(bad)
    assert info.value.cim_error == "unsupported-protocol-version"
    bad.pop("cimprotocolversion")
    with pytest.raises(ProtocolError) as info:
        check_operation_headers(bad)
    assert info.value.cim_error == "header-mismatch"


# ---- header vs body ------------------------------------------------------------------------

INTRINSIC = IntrinsicCall("1", "1.0", "GetInstance", "root/cimv2", {})
PATH = CIMInstanceName(
    "GM_DeviceBay", {"EnclosureName": "enc 1", "Slot": Uint32(3)}, namespace="root/cimv2"
)
ON_INSTANCE = ExtrinsicCall("1", "1.0", "failoverProfile", PATH, ())
ON_CLASS = ExtrinsicCall(
    "1", "1.0", "checkScavengedMember", CIMClassName("GM_GroupManager", namespace="root/cimv2"), ()
)


def _hdrs(method: str, obj: str, version: str | None = None) -> OperationHeaders:
    changes: dict[str, str | None] = {"cimmethod": method, "cimobject": obj}
    changes["cimprotocolversion"] = version
    return check_operation_headers(_with(**changes))


RAW_PATH = 'root/cimv2:GM_DeviceBay.Slot=3,EnclosureName="enc 1"'


@pytest.mark.parametrize(
    ("request_", "method", "obj"),
    [
        (INTRINSIC, "GetInstance", "root/cimv2"),
        (INTRINSIC, "getinstance", "ROOT%2FCIMV2"),
        (INTRINSIC, "GetInstance", "/root/cimv2"),
        (ON_CLASS, "checkScavengedMember", "root/cimv2:GM_GroupManager"),
        (ON_CLASS, "checkScavengedMember", "root%2Fcimv2%3Agm_groupmanager"),
        (ON_INSTANCE, "failoverProfile", RAW_PATH),  # pywbem: raw
        (
            ON_INSTANCE,
            "failoverProfile",
            'root%2Fcimv2%3AGM_DeviceBay.Slot=3,EnclosureName="enc 1"',
        ),
        (ON_INSTANCE, "failoverProfile", quote(RAW_PATH.encode(), safe="!'()*-._~")),  # Pegasus
    ],
)
def test_matching_headers(request_: IntrinsicCall | ExtrinsicCall, method: str, obj: str) -> None:
    check_request_matches_headers(_hdrs(method, obj), request_)


def test_raw_cimobject_with_percent_in_a_key_matches() -> None:
    path = CIMInstanceName("GM_X", {"Name": "100%zz"}, namespace="root/cimv2")
    call = ExtrinsicCall("1", "1.0", "m", path, ())
    check_request_matches_headers(_hdrs("m", 'root/cimv2:GM_X.Name="100%zz"'), call)
    path = CIMInstanceName("GM_X", {"Name": "%41"}, namespace="root/cimv2")
    call = ExtrinsicCall("1", "1.0", "m", path, ())
    check_request_matches_headers(_hdrs("m", 'root/cimv2:GM_X.Name="%41"'), call)


@pytest.mark.parametrize(
    ("request_", "method", "obj", "version"),
    [
        (INTRINSIC, "EnumerateInstances", "root/cimv2", None),
        (INTRINSIC, "GetInstance", "root/interop", None),
        (INTRINSIC, "GetInstance", "root/cimv2", "1.1"),
        (ON_CLASS, "checkScavengedMember", "root/cimv2:GM_Other", None),
        (ON_CLASS, "checkScavengedMember", "root/cimv2", None),
        (
            ON_INSTANCE,
            "failoverProfile",
            'root/cimv2:GM_DeviceBay.Slot=4,EnclosureName="enc 1"',
            None,
        ),
        (ON_INSTANCE, "failoverProfile", 'root/cimv2:GM_DeviceBay.EnclosureName="enc 1"', None),
        (ON_INSTANCE, "failoverProfile", "root/cimv2:GM_DeviceBay", None),
        (ON_INSTANCE, "failoverProfile", "not a path at all %zz", None),
    ],
)
def test_mismatching_headers(
    request_: IntrinsicCall | ExtrinsicCall, method: str, obj: str, version: str | None
) -> None:
    with pytest.raises(ProtocolError) as info:
        check_request_matches_headers(_hdrs(method, obj, version), request_)
    assert (info.value.status, info.value.cim_error) == (400, "header-mismatch")


# ---- export (reference 2.5) ---------------------------------------------------------------

EXPORT = {
    "content-type": "application/xml",
    "cimexport": "MethodRequest",
    "cimexportmethod": "ExportIndication",
}


def test_export_headers() -> None:
    hdrs = check_export_headers(EXPORT)
    assert hdrs == ExportHeaders("ExportIndication", "1.0", False)
    assert check_headers(EXPORT) == hdrs
    call = ExportCall("1", "1.0", "ExportIndication", {})
    check_request_matches_headers(hdrs, call)
    with pytest.raises(ProtocolError) as info:
        check_request_matches_headers(hdrs, INTRINSIC)
    assert info.value.cim_error == "header-mismatch"
    with pytest.raises(ProtocolError) as info:
        check_request_matches_headers(hdrs, ExportCall("1", "1.0", "Other", {}))
    assert info.value.cim_error == "header-mismatch"


@pytest.mark.parametrize(
    ("changes", "status", "cim_error"),
    [
        ({"cimexport": None}, 400, None),
        ({"cimexport": "MethodResponse"}, 400, "unsupported-operation"),
        ({"cimexportbatch": ""}, 501, "multiple-requests-unsupported"),
        ({"cimexportmethod": None}, 400, "header-mismatch"),
        ({"cimexportmethod": ""}, 400, "header-mismatch"),
        ({"content-type": "text/plain"}, 400, None),
    ],
)
def test_export_header_errors(
    changes: dict[str, str | None], status: int, cim_error: str | None
) -> None:
    headers = dict(EXPORT)
    for name, value in changes.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    with pytest.raises(ProtocolError) as info:
        check_export_headers(headers)
    assert (info.value.status, info.value.cim_error) == (status, cim_error)


def test_neither_operation_nor_export_is_a_bare_400() -> None:
    with pytest.raises(ProtocolError) as info:
        check_headers({"content-type": "application/xml"})
    assert (info.value.status, info.value.cim_error) == (400, None)
