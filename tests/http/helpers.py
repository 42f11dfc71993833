"""Helpers for transport tests: a raw HTTP client on asyncio streams, and small apps.

Every test starts its own server on 127.0.0.1 port 0 (inside `asyncio.run`, or in a thread
for blocking clients), speaks raw bytes to it (so malformed requests can be sent), and closes
it; no test touches another host.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from provider.http.auth import Authenticator
from provider.http.limits import TransportLimits
from provider.http.messages import Application, HttpRequest, HttpResponse
from provider.http.server import HttpServer, TCPListener, serve

READ_TIMEOUT = 3.0


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    raw_head: bytes = b""
    names: list[str] = field(default_factory=list)  # header names as sent, in order
    trailers: dict[str, str] = field(default_factory=dict)  # after a chunked body's last chunk


class RawClient:
    """One connection; `send` raw bytes, `response()` parses exactly one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def tcp(
        cls, port: int, *, context: ssl.SSLContext | None = None, limit: int = 2**20
    ) -> RawClient:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=context,
            server_hostname="localhost" if context else None,
            limit=limit,
        )
        return cls(reader, writer)

    @classmethod
    async def unix(cls, path: Path) -> RawClient:
        reader, writer = await asyncio.open_unix_connection(str(path))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> Response:
        return await asyncio.wait_for(self._response(), READ_TIMEOUT)

    async def _response(self) -> Response:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        _version, status, reason = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        names: list[str] = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                names.append(name)
                headers[name.lower()] = value.strip()
        parts: list[bytes] = []
        trailers: dict[str, str] = {}
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                        name, _, value = line.decode("latin-1").partition(":")
                        trailers[name.lower()] = value.strip()
                    break
                parts.append(await self.reader.readexactly(size))
                assert await self.reader.readexactly(2) == b"\r\n"
        elif "content-length" in headers:
            parts.append(await self.reader.readexactly(int(headers["content-length"])))
        return Response(int(status), reason, headers, b"".join(parts), raw, names, trailers)

    async def at_eof(self, timeout: float = READ_TIMEOUT) -> bool:
        """True once the server has closed (whatever it sent first is discarded)."""

        async def drain() -> None:
            while await self.reader.read(65536):
                pass

        try:
            await asyncio.wait_for(drain(), timeout)
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


def post(
    body: bytes = b"<x/>",
    *,
    method: str = "POST",
    version: str = "1.1",
    target: str = "/cimom",
    headers: list[tuple[str, str]] | None = None,
    host: bool = True,
) -> bytes:
    """A request with Content-Length; `headers` are added as given."""
    lines = [f"{method} {target} HTTP/{version}"]
    if host:
        lines.append("Host: 127.0.0.1")
    lines.append("Content-Type: application/xml")
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Recorder:
    """An app that records each request and echoes its body."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        user = request.principal.user if request.principal else "-"
        return HttpResponse(
            200,
            [
                ("Content-Type", 'application/xml; charset="utf-8"'),
                ("CIMOperation", "MethodResponse"),
                ("X-User", user),
            ],
            request.body,
        )


async def chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


@contextlib.contextmanager
def server_in_thread(
    app: Application,
    *,
    authenticator: Authenticator | None = None,
    limits: TransportLimits | None = None,
) -> Iterator[int]:
    """A server on its own event loop in a thread, for blocking clients; yields its port."""
    ready = threading.Event()
    holder: list[tuple[HttpServer, asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        server = await serve(
            app,
            [TCPListener()],
            authenticator=authenticator,
            require_auth=authenticator is not None,
            limits=limits,
        )
        holder.append((server, asyncio.get_running_loop()))
        ready.set()
        await server.wait_closed()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(5), "server did not start"
    server, loop = holder[0]
    try:
        yield server.ports[0]
    finally:
        asyncio.run_coroutine_threadsafe(server.close(grace=0.5), loop).result(5)
        thread.join(5)
