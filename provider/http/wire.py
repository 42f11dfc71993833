"""Response bytes: status lines, header blocks, the errors the transport answers by itself.

Kept apart from the connection logic so the exact bytes we send (DSP0200 §1.5/§1.6 of our
reference, OpenPegasus `XmlWriter::appendHttpErrorResponseHeader`) can be read in one place.
"""

from __future__ import annotations

import time
import urllib.parse
from email.utils import formatdate
from http import HTTPStatus

from provider.http.messages import HttpResponse

__all__ = [
    "CIM_EXTENSION_HEADERS",
    "REALM",
    "date_header",
    "encode_headers",
    "error_response",
    "mpost_response_headers",
    "status_line",
]

REALM = "gm-provider"

# DSP0200 extension headers, named in `Man:` for an M-POST; the response repeats them with the
# request's `NN-` prefix (OpenPegasus `XmlWriter::appendMethodResponseHeader`).
CIM_EXTENSION_HEADERS = frozenset(
    {
        "cimoperation",
        "cimexport",
        "cimprotocolversion",
        "cimmethod",
        "cimobject",
        "cimbatch",
        "cimexportmethod",
        "cimexportbatch",
        "cimerror",
    }
)
_MAN_URI = "http://www.dmtf.org/cim/mapping/http/v1.0"

_status_lines: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 <status> <reason>` CR LF. We answer every request as HTTP/1.1, which RFC 9110
    §6.2 allows for a 1.0 request ("a server SHOULD send a response version equal to the highest
    version to which the server is conformant that has a major version no higher than ...")."""
    line = _status_lines.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        line = f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")
        _status_lines[status] = line
    return line


_date_second = 0
_date_line = b""


def date_header() -> bytes:
    """`Date:` CR LF, formatted once per second (RFC 9110 §6.6.1: an origin server with a clock
    "MUST generate a Date header field" in 2xx, 3xx and 4xx responses)."""
    global _date_second, _date_line
    now = int(time.time())
    if now != _date_second:
        _date_line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode("ascii")
        _date_second = now
    return _date_line


def encode_headers(headers: list[tuple[str, str]]) -> bytes:
    """Header lines for the application's headers; a CR or LF in a name or value (which would
    let request data split the response) raises ValueError."""
    if not headers:
        return b""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if text.count("\n") != len(headers) or text.count("\r") != len(headers):
        raise ValueError("a response header contains CR or LF")
    return text.encode("latin-1")


def mpost_response_headers(headers: list[tuple[str, str]], ns: str | None) -> list[tuple[str, str]]:
    """The M-POST form of a response (RFC 2774 §4; OpenPegasus): `Ext:`, `Cache-Control:
    no-cache`, `Man: ...; ns=NN`, and the CIM extension headers prefixed with `NN-`.

    Only responses that carry `CIMOperation`/`CIMExport` (the application's CIM responses) are
    rewritten; HTTP errors keep OpenPegasus' plain form.
    """
    names = {name.lower() for name, _ in headers}
    if not names & {"cimoperation", "cimexport"}:
        return headers
    out: list[tuple[str, str]] = [("Ext", "")]
    if "cache-control" not in names:
        out.append(("Cache-Control", "no-cache"))
    if ns is None:
        return out + headers
    out.append(("Man", f"{_MAN_URI}; ns={ns}"))
    for name, value in headers:
        out.append((f"{ns}-{name}" if name.lower() in CIM_EXTENSION_HEADERS else name, value))
    return out


def error_response(
    status: int,
    detail: str,
    cim_error: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> HttpResponse:
    """An HTTP error with no body: `CIMError` when DSP0200 names one, and OpenPegasus'
    `PGErrorDetail` with the URI-encoded text, which pywbem and pywbemcli show to the user."""
    headers: list[tuple[str, str]] = []
    if cim_error is not None:
        headers.append(("CIMError", cim_error))
    headers.append(("PGErrorDetail", urllib.parse.quote(detail)))
    if status == 401:
        # RFC 7617 §2; OpenPegasus wbemexec sends credentials only after this challenge.
        headers.append(("WWW-Authenticate", f'Basic realm="{REALM}"'))
    if status == 503:
        # Busy or starting: a client (and pywbem's retry) may come back in a second.
        headers.append(("Retry-After", "1"))
    if extra:
        headers.extend(extra)
    return HttpResponse(status=status, headers=headers, body=b"")
