"""DSP0200 header checks for CIM operation and export requests: pure functions.

The transport hands over the request headers (lower-case names, M-POST `NN-` prefixes already
removed). `check_operation_headers` / `check_export_headers` run before the body is parsed, in
OpenPegasus' order (`CIMOperationRequestDecoder::handleHTTPMessage`, reference
cim-xml-protocol.md 1.6 "Order of checks"):

    CIMOperation present -> == MethodCall -> no CIMBatch -> CIMProtocolVersion (default 1.0)
    -> CIMMethod / CIMObject present, non-empty, decodable -> Content-Type

(Host is the transport's check.) Once the body is parsed, `check_request_matches_headers`
compares the headers with the message (DSP0200 §3.3.6/§3.3.7 in the 1.1 numbering: "does not
match ... MUST fail the request and return a status of 400 Bad Request ... header-mismatch").

Every failure is a `ProtocolError` carrying the HTTP status, the CIMError value (None where
DSP0200 defines none) and a detail for `PGErrorDetail`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_to_bytes

from pywbem import CIMClassName, CIMInstanceName

from provider.cimxml.messages import ExportCall, ExtrinsicCall, IntrinsicCall, Request
from provider.errors import ProtocolError

__all__ = [
    "ExportHeaders",
    "OperationHeaders",
    "check_export_headers",
    "check_headers",
    "check_operation_headers",
    "check_request_matches_headers",
]


@dataclass(frozen=True, slots=True)
class OperationHeaders:
    """The CIM operation headers of one request, checked and decoded."""

    method: str  # CIMMethod, percent-decoded
    object: str  # CIMObject, percent-decoded ("root/cimv2", "root/cimv2:GM_X.Name=\"a\"")
    object_raw: str  # CIMObject as received (pywbem >= 1.0 sends it unescaped)
    protocol_version: str  # CIMProtocolVersion, "1.0" when absent
    protocol_version_sent: bool


@dataclass(frozen=True, slots=True)
class ExportHeaders:
    """The CIM export headers of one indication delivery (DSP0200 §6.3, reference 2.5)."""

    method: str  # CIMExportMethod, percent-decoded
    protocol_version: str
    protocol_version_sent: bool


# DSP0200: CIMProtocolVersion = 1*DIGIT "." 1*DIGIT; only major version 1 is implemented.
_PROTOCOL_VERSION = re.compile(r"1\.\d+(?:\.\d+)?")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _mismatch(detail: str) -> ProtocolError:
    return ProtocolError(400, "header-mismatch", detail)


def _decode(value: str | None, header: str) -> str:
    """A header value per DSP0200 "Encoding CIM Object Paths": UTF-8, then %-escaped."""
    if value is None:
        raise _mismatch(f"Missing {header} HTTP header.")
    if _BAD_ESCAPE.search(value):
        raise _mismatch(f"{header} value syntax error.")
    try:
        decoded = unquote_to_bytes(value).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _mismatch(f"{header} value syntax error.") from None
    if not decoded:
        raise _mismatch(f"Empty {header} HTTP header.")
    return decoded


def _protocol_version(sent: str | None) -> tuple[str, bool]:
    if sent is None:
        return "1.0", False  # "Mandated by the Specification" (OpenPegasus)
    version = sent.strip()
    if not _PROTOCOL_VERSION.fullmatch(version):
        raise ProtocolError(
            501,
            "unsupported-protocol-version",
            f'CIM protocol version "{version}" is not supported.',
        )
    return version, True


def _check_content_type(value: str | None) -> None:
    """application/xml or text/xml; charset utf-8 (quoted or not) or none (DSP0200 §4.1)."""
    ok = value is not None
    if value is not None:
        mime, *params = value.split(";")
        ok = mime.strip().lower() in ("application/xml", "text/xml")
        for param in params:
            name, _, arg = param.partition("=")
            if name.strip().lower() == "charset" and arg.strip().strip('"').lower() != "utf-8":
                ok = False
    if not ok:
        raise ProtocolError(400, None, "HTTP Content-Type header error.")


def check_operation_headers(headers: Mapping[str, str]) -> OperationHeaders:
    """Check a CIM operation request's headers before its body is read (DSP0200 §6.3)."""
    # A client sends the same few header values call after call, so the checked result is
    # remembered by value (failures are not: they raise again, each time).
    return _operation_headers(
        headers.get("cimoperation"),
        "cimbatch" in headers,
        headers.get("cimprotocolversion"),
        headers.get("cimmethod"),
        headers.get("cimobject"),
        headers.get("content-type"),
    )


@lru_cache(maxsize=512)
def _operation_headers(
    operation: str | None,
    batch: bool,
    protocol_version: str | None,
    cim_method: str | None,
    raw_object: str | None,
    content_type: str | None,
) -> OperationHeaders:
    if operation is None:
        # "it shall not process it as a CIM operation request. The status code ... is outside
        # the scope of this specification": OpenPegasus answers a bare 400.
        raise ProtocolError(400, None, "Missing CIMOperation HTTP header.")
    if operation.strip().lower() != "methodcall":
        raise ProtocolError(
            400, "unsupported-operation", f'CIMOperation value "{operation}" is not supported.'
        )
    if batch:
        # DSP0200 §3.3.9: "the Server does not support Multiple Operations ... 501".
        raise ProtocolError(
            501, "multiple-requests-unsupported", "Multiple requests are not supported."
        )
    version, sent = _protocol_version(protocol_version)
    method = _decode(cim_method, "CIMMethod")
    if raw_object is None or not raw_object.strip():
        _decode(raw_object, "CIMObject")  # raises: missing or empty
    assert raw_object is not None
    try:
        cim_object = _decode(raw_object, "CIMObject")
    except ProtocolError:
        # pywbem >= 1.0 sends CIMObject unescaped (reference 1.4), so a key value holding "%"
        # is not an escape error: keep the raw text, and let the comparison with the body
        # decide (a mismatch is still 400 header-mismatch).
        cim_object = raw_object.strip()
    _check_content_type(content_type)
    return OperationHeaders(method, cim_object, raw_object.strip(), version, sent)


def check_export_headers(headers: Mapping[str, str]) -> ExportHeaders:
    """Check a CIM export request's headers (OpenPegasus CIMExportRequestDecoder, ref. 2.5)."""
    export = headers.get("cimexport")
    if export is None:
        raise ProtocolError(400, None, "Missing CIMExport HTTP header.")
    if export.strip().lower() != "methodrequest":
        raise ProtocolError(
            400, "unsupported-operation", f'CIMExport value "{export}" is not supported.'
        )
    if "cimexportbatch" in headers:
        raise ProtocolError(
            501, "multiple-requests-unsupported", "Multiple export requests are not supported."
        )
    version, sent = _protocol_version(headers.get("cimprotocolversion"))
    method = _decode(headers.get("cimexportmethod"), "CIMExportMethod")
    _check_content_type(headers.get("content-type"))
    return ExportHeaders(method, version, sent)


def check_headers(headers: Mapping[str, str]) -> OperationHeaders | ExportHeaders:
    """Operation or export, by which header is present; neither -> bare 400."""
    if "cimoperation" not in headers and "cimexport" in headers:
        return check_export_headers(headers)
    return check_operation_headers(headers)


# ---- header vs body ------------------------------------------------------------------------


def check_request_matches_headers(hdrs: OperationHeaders | ExportHeaders, request: Request) -> None:
    """CIMMethod/CIMExportMethod, CIMProtocolVersion and CIMObject must match the message."""
    if isinstance(hdrs, ExportHeaders) != isinstance(request, ExportCall):
        raise _mismatch("The request body does not match the CIMOperation/CIMExport header.")
    if hdrs.protocol_version_sent and hdrs.protocol_version != request.protocol_version:
        raise _mismatch(
            f'CIMProtocolVersion "{hdrs.protocol_version}" does not match '
            f'PROTOCOLVERSION "{request.protocol_version}".'
        )
    header = "CIMExportMethod" if isinstance(hdrs, ExportHeaders) else "CIMMethod"
    if hdrs.method.lower() != request.method.lower():
        raise _mismatch(f'{header} "{hdrs.method}" does not match the method "{request.method}".')
    if isinstance(request, ExportCall):
        return
    assert isinstance(hdrs, OperationHeaders)
    # pywbem sends CIMObject unescaped, so a key holding "%41" arrives looking escaped: the raw
    # value is the second candidate.
    for candidate in (hdrs.object, hdrs.object_raw):
        if _object_matches(candidate, request):
            return
    raise _mismatch(f'CIMObject "{hdrs.object}" does not match the request.')


def _object_matches(value: str, request: IntrinsicCall | ExtrinsicCall) -> bool:
    if isinstance(request, IntrinsicCall):
        return _norm_namespace(value) == _norm_namespace(request.namespace)
    target = request.target
    return _header_path(value, isinstance(target, CIMClassName)) == _norm_path(target)


@lru_cache(maxsize=512)
def _header_path(value: str, is_class: bool) -> tuple[Any, ...] | None:
    """The comparable form of a CIMObject path (None if it is no path); remembered, as
    pywbem's WBEM URI parser costs ~10-20 µs and clients repeat their CIMObject."""
    try:
        if is_class:
            path: CIMClassName | CIMInstanceName = CIMClassName.from_wbem_uri("/" + value)
        else:
            path = CIMInstanceName.from_wbem_uri("/" + value.lstrip("/"))
    except (ValueError, TypeError):
        return None
    return _norm_path(path)


def _norm_namespace(namespace: str | None) -> str:
    return (namespace or "").strip("/").lower()


def _norm_path(path: CIMClassName | CIMInstanceName, namespace: bool = True) -> tuple[Any, ...]:
    """A comparable form: names case-insensitive, keybinding order not significant. A reference
    key is compared without its namespace (KEYVALUE references usually carry none)."""
    ns = _norm_namespace(path.namespace) if namespace else ""
    if isinstance(path, CIMClassName):
        return ("class", ns, path.classname.lower())
    keys = sorted((name.lower(), _norm_key(value)) for name, value in path.keybindings.items())
    return ("instance", ns, path.classname.lower(), tuple(keys))


def _norm_key(value: Any) -> Any:
    """Keys compared by their text: a WBEM URI and a KEYVALUE type the same key differently."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, CIMInstanceName):
        return _norm_path(value, namespace=False)
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, int):
        return str(int(value))
    return str(value).strip()  # the parser strips KEYVALUE text
