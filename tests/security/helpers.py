"""Raw CIM-XML requests for the security tests: exact bytes on the wire, exact answers back."""

from __future__ import annotations

import base64
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pywbem

from tests.harness import USERS


def basic(user: str, password: str | None = None) -> str:
    secret = USERS[user][1] if password is None else password
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "<VALUE.ARRAY>" + "".join(_value(v) for v in value) + "</VALUE.ARRAY>"
    if isinstance(value, bool):
        return f"<VALUE>{'TRUE' if value else 'FALSE'}</VALUE>"
    return f"<VALUE>{escape(str(value))}</VALUE>"


def method_call(method: str, params: Mapping[str, Any], message_id: int = 1) -> bytes:
    """A static METHODCALL on root/cimv2:GM_GroupManager, as etc/requests/ files are."""
    pvs = "".join(
        f"<PARAMVALUE NAME={quoteattr(name)}>{_value(value)}</PARAMVALUE>"
        for name, value in params.items()
    )
    return (
        '<?xml version="1.0" encoding="utf-8" ?>'
        f'<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="{message_id}" '
        f'PROTOCOLVERSION="1.0"><SIMPLEREQ><METHODCALL NAME={quoteattr(method)}>'
        '<LOCALCLASSPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/>'
        '</LOCALNAMESPACEPATH><CLASSNAME NAME="GM_GroupManager"/></LOCALCLASSPATH>'
        f"{pvs}</METHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    ).encode()


def method_headers(method: str, authorization: str | None) -> dict[str, str]:
    headers = {
        "Host": "127.0.0.1",
        "Content-Type": 'application/xml; charset="utf-8"',
        "CIMOperation": "MethodCall",
        "CIMMethod": method,
        "CIMObject": "root%2Fcimv2%3AGM_GroupManager",
    }
    if authorization is not None:
        headers["Authorization"] = authorization
    return headers


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_reply(raw: bytes) -> Reply:
    if not raw:
        raise ConnectionError("the server closed the connection without an answer")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Reply(int(lines[0].split()[1]), headers, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


def exchange(
    port: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    method: str = "POST",
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh connection (Connection: close); the whole answer."""
    head = f"{method} /cimom HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + body)
        return parse_reply(read_all(sock))


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def dummy_inputs(method: pywbem.CIMMethod) -> dict[str, Any]:
    """Input values that type-check against the declaration, so that the privilege check (and
    not parameter typing) decides the answer; what they name mostly does not exist."""
    values = {"string": "enc01", "boolean": False, "uint32": 1, "uint64": 1, "uint16": 1}
    params: dict[str, Any] = {}
    for name, param in method.parameters.items():
        q_in = param.qualifiers.get("In")
        if q_in is not None and q_in.value is False:
            continue
        if method.name == "failoverProfile" and name in ("HostName", "IPAddress"):
            continue  # failoverProfile takes one way of naming the source
        if name == "Action":
            params[name] = "start"
            continue
        value = pywbem.cimvalue(values[param.type], param.type)
        params[name] = [value] if param.is_array else value
    return params


def state_changing(cls: pywbem.CIMClass, read_actions: Sequence[str]) -> list[pywbem.CIMMethod]:
    return [m for m in cls.methods.values() if m.name not in read_actions]
