"""Export requests (DSP0200 §2.5 of reference cim-xml-protocol.md) built from pywbem's public
CIM objects, sent over a real HTTP connection, and the replies taken apart."""

from __future__ import annotations

import base64
import email
import http.client
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import pywbem
from lxml import etree

from tests.harness import USERS

EXPORT_HEADERS = {
    "Content-Type": 'application/xml; charset="utf-8"',
    "CIMExport": "MethodRequest",
    "CIMExportMethod": "ExportIndication",
}


def indication(classname: str = "CIM_AlertIndication", **properties: Any) -> pywbem.CIMInstance:
    """An indication instance; plain ints become uint16 (PerceivedSeverity, AlertType...)."""
    typed = {
        name: pywbem.Uint16(value) if isinstance(value, int) else value
        for name, value in properties.items()
    }
    return pywbem.CIMInstance(classname, properties=typed)


def export_body(
    inst: pywbem.CIMInstance | None, method: str = "ExportIndication", param: str = "NewIndication"
) -> bytes:
    inner = f'<EXPPARAMVALUE NAME="{param}">{inst.tocimxmlstr()}</EXPPARAMVALUE>' if inst else ""
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\n'
        '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">'
        f'<SIMPLEEXPREQ><EXPMETHODCALL NAME="{method}">{inner}</EXPMETHODCALL></SIMPLEEXPREQ>'
        "</MESSAGE></CIM>"
    ).encode()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> tuple[int, str] | None:
        """(CODE, DESCRIPTION) of the ERROR inside EXPMETHODRESPONSE, None on success."""
        root = etree.fromstring(self.body)
        assert root.find("MESSAGE/SIMPLEEXPRSP/EXPMETHODRESPONSE") is not None, self.body
        err = root.find("MESSAGE/SIMPLEEXPRSP/EXPMETHODRESPONSE/ERROR")
        if err is None:
            return None
        return int(err.get("CODE")), str(err.get("DESCRIPTION"))


def post(
    port: int,
    body: bytes,
    headers: Mapping[str, str | None] | None = None,
    user: str | None = "admin",
    method: str = "POST",
) -> Reply:
    """POST `body` with the export headers; `headers` overrides them (None removes one)."""
    merged: dict[str, str | None] = {**EXPORT_HEADERS, **(headers or {})}
    sent = {k: v for k, v in merged.items() if v is not None}
    if user is not None:
        token = base64.b64encode(f"{user}:{USERS[user][1]}".encode()).decode()
        sent["Authorization"] = f"Basic {token}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, "/cimom", body=body, headers=sent)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def send(port: int, inst: pywbem.CIMInstance, user: str = "admin") -> None:
    """Deliver one indication; it must be accepted (HTTP 200, no ERROR)."""
    reply = post(port, export_body(inst), user=user)
    assert reply.status == 200, (reply.status, reply.headers, reply.body)
    assert reply.headers.get("cimexport") == "MethodResponse"
    assert reply.error() is None, reply.body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    """The aiosmtpd handler: every message delivered to the loopback SMTP listener."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def about(self, text: str) -> list[Message]:
        return [m for m in self.messages if text in str(m["Subject"]) or text in _body(m)]

    def wait_for(self, text: str, timeout: float = 10.0) -> Message:
        found = _wait(lambda: self.about(text), timeout)
        assert found, f"no mail about {text!r}; subjects: {[m['Subject'] for m in self.messages]}"
        return found[0]


def _body(m: Message) -> str:
    payload = m.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(m.get_payload())


def body_of(m: Message) -> str:
    return _body(m)


def _wait(probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
