"""The transport against raw bytes on loopback: framing, DSP0200 rules, limits, errors."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import pytest

from provider.errors import ProtocolError
from provider.http.auth import (
    FileAuthenticator,
    InMemoryAuthenticator,
    LoginThrottle,
    UserRecord,
    format_users_line,
    hash_password,
)
from provider.http.limits import TransportLimits
from provider.http.messages import Application, HttpRequest, HttpResponse, Principal
from provider.http.server import HttpServer, TCPListener, serve
from tests.http.helpers import RawClient, Recorder, chunks, post, server_in_thread

pytestmark = pytest.mark.timeout(10)

Scenario = Callable[[HttpServer, Recorder], Awaitable[None]]


def run_with(
    scenario: Scenario,
    *,
    app: Application | None = None,
    limits: TransportLimits | None = None,
    auth: bool = False,
) -> Recorder:
    """Start a server (port 0), run the scenario against it, close it."""
    recorder = Recorder()

    async def main() -> None:
        server = await serve(
            app or recorder,
            [TCPListener()],
            authenticator=InMemoryAuthenticator({"admin": "secret"}, {"admin": "administrator"}),
            require_auth=auth,
            limits=limits,
        )
        try:
            await scenario(server, recorder)
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())
    return recorder


def reset(client: RawClient) -> None:
    """The client is gone at once (RST), not half-closed: a half-closed client may still be
    waiting for its answer (RFC 9112 §9.6)."""
    sock = client.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.writer.transport.abort()


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        for n in range(3):
            await client.send(post(b"<req n='%d'/>" % n))
            response = await client.response()
            assert response.status == 200
            assert response.body == b"<req n='%d'/>" % n
            assert "connection" not in response.headers
            assert "date" in response.headers
        assert server.connection_count == 1
        await client.close()

    assert len(run_with(scenario).requests) == 3


def test_pipelined_requests_are_answered_in_order() -> None:
    async def slow_first(request: HttpRequest) -> HttpResponse:
        if request.body == b"first":
            await asyncio.sleep(0.05)
        return HttpResponse(200, [("Content-Type", "application/xml")], request.body)

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(post(b"first") + post(b"second") + b"\r\n" + post(b"third"))
        assert [(await client.response()).body for _ in range(3)] == [
            b"first",
            b"second",
            b"third",
        ]
        await client.close()

    run_with(scenario, app=slow_first)


def test_connection_close_and_http10_semantics() -> None:
    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(post(headers=[("Connection", "close")]))
        response = await client.response()
        assert response.status == 200 and response.headers["connection"] == "close"
        assert await client.at_eof()

        client = await RawClient.tcp(server.ports[0])
        await client.send(post(version="1.0", host=False))
        assert (await client.response()).status == 200
        assert await client.at_eof()  # HTTP/1.0 without keep-alive: one request

        client = await RawClient.tcp(server.ports[0])
        await client.send(post(version="1.0", headers=[("Connection", "keep-alive")]))
        response = await client.response()
        assert response.headers["connection"] == "keep-alive"
        await client.send(post(version="1.0", headers=[("Connection", "keep-alive")]))
        assert (await client.response()).status == 200
        await client.close()

    run_with(scenario)


def test_mpost_strips_prefixes_and_answers_in_mpost_form() -> None:
    request = (
        b"M-POST /cimom HTTP/1.1\r\nHost: \r\nContent-Type: application/xml\r\n"
        b"Man: http://www.dmtf.org/cim/mapping/http/v1.0; ns=73\r\n"
        b"73-CIMProtocolVersion: 1.0\r\n73-CIMOperation: MethodCall\r\n"
        b"73-CIMMethod: GetClass\r\n12-CIMObject: root%2Fcimv2\r\nContent-Length: 4\r\n\r\n<x/>"
    )

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(request)
        response = await client.response()
        assert response.status == 200
        assert response.headers["ext"] == ""
        assert response.headers["man"] == "http://www.dmtf.org/cim/mapping/http/v1.0; ns=73"
        assert response.headers["73-cimoperation"] == "MethodResponse"
        assert "cimoperation" not in response.headers
        await client.close()

    seen = run_with(scenario).requests[0]
    assert seen.is_mpost and seen.method == "M-POST" and seen.mpost_ns == "73"
    assert seen.headers["cimoperation"] == "MethodCall"
    assert seen.headers["cimmethod"] == "GetClass"
    assert seen.headers["cimobject"] == "root%2Fcimv2"  # undeclared DD- prefix, as Pegasus
    assert seen.headers["host"] == ""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (post(method="M-POST", version="1.0"), 400),  # OpenPegasus: M-POST needs HTTP/1.1
        (b"GET /cimom HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        (post(method="PUT"), 501),
        (post(host=False), 400),
    ],
)
def test_dsp0200_method_and_host_rules(request_bytes: bytes, status: int) -> None:
    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(request_bytes)
        response = await client.response()
        assert response.status == status
        assert "cimerror" not in response.headers
        if status == 400 and b"Host" not in request_bytes:
            assert response.headers["pgerrordetail"] == (
                "HTTP%20request%20message%20lacks%20a%20Host%20header%20field."
            )
        if b"HTTP/1.0" in request_bytes:
            assert await client.at_eof()  # no keep-alive asked for
            return
        # These refusals keep an HTTP/1.1 connection usable.
        await client.send(post())
        assert (await client.response()).status == 200
        await client.close()

    run_with(scenario)


def test_unauthenticated_gets_basic_challenge_then_succeeds() -> None:
    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(post())
        challenge = await client.response()
        assert challenge.status == 401
        assert challenge.headers["www-authenticate"] == 'Basic realm="gm-provider"'
        await client.send(post(headers=[basic("admin", "wrong")]))
        assert (await client.response()).status == 401
        await client.send(post(headers=[basic("admin", "secret")]))
        response = await client.response()
        assert response.status == 200 and response.headers["x-user"] == "admin"
        await client.close()

    [request] = run_with(scenario, auth=True).requests
    assert request.principal is not None
    assert request.principal.role == "administrator"
    assert request.principal.via.value == "http"
    assert request.principal.peer.startswith("127.0.0.1:")


def test_logins_do_not_wait_for_the_default_executor() -> None:
    """Password checks have threads of their own: work queued on the loop's default executor
    (here: its only worker, blocked) does not hold logins back, and a storm of logins does
    not hold that work back."""
    release = threading.Event()

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        blocked = loop.run_in_executor(None, release.wait, 5)
        client = await RawClient.tcp(server.ports[0])
        await client.send(post(headers=[basic("admin", "secret")]))
        assert (await client.response()).status == 200  # within READ_TIMEOUT, not after 5 s
        assert not blocked.done()
        release.set()
        await blocked
        await client.close()

    try:
        run_with(scenario, auth=True)
    finally:
        release.set()


def test_a_new_connection_with_verified_credentials_skips_the_password_check(
    tmp_path: Path,
) -> None:
    """`wbemexec` from cron opens a connection per call: the second call's credentials are
    recalled, not checked with scrypt again; a wrong password is recalled as wrong."""
    users = tmp_path / "users"
    record = UserRecord("admin", "administrator", hash_password("secret", n=2**10))
    users.write_text(format_users_line(record) + "\n")
    checked: list[str] = []

    class Counting(FileAuthenticator):
        def verify_basic(self, user: str, password: str) -> Principal | None:
            checked.append(password)
            return super().verify_basic(user, password)

    async def main() -> None:
        server = await serve(
            Recorder(), [TCPListener()], authenticator=Counting(users), require_auth=True
        )
        try:
            for password, status in [("secret", 200), ("secret", 200), ("bad", 401)] * 2:
                client = await RawClient.tcp(server.ports[0])
                await client.send(post(headers=[basic("admin", password)]))
                assert (await client.response()).status == status
                await client.close()
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())
    assert checked == ["secret", "bad"]


def test_a_client_that_leaves_does_not_keep_its_password_check_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("provider.http.server._auth_threads", lambda: 1)
    release = threading.Event()
    checked: list[str] = []

    class Slow(InMemoryAuthenticator):
        def verify_basic(self, user: str, password: str) -> Principal | None:
            checked.append(password)
            if password == "hold":
                release.wait(5)
            return super().verify_basic(user, password)

    async def main() -> None:
        server = await serve(
            Recorder(),
            [TCPListener()],
            authenticator=Slow({"admin": "secret"}),
            require_auth=True,
        )
        try:
            holding = await RawClient.tcp(server.ports[0])
            await holding.send(post(headers=[basic("admin", "hold")]))  # the only thread
            while not checked:
                await asyncio.sleep(0.01)
            leaving = await RawClient.tcp(server.ports[0])
            await leaving.send(post(headers=[basic("admin", "queued")]))
            await asyncio.sleep(0.2)
            # Gone (reset) before its check could start. A half-close would still be owed
            # its answer (RFC 9112 §9.6): the client may be waiting for it.
            reset(leaving)
            await asyncio.sleep(0.2)
            release.set()
            assert (await holding.response()).status == 401
            await holding.close()
            client = await RawClient.tcp(server.ports[0])  # the thread is free again
            await client.send(post(headers=[basic("admin", "secret")]))
            assert (await client.response()).status == 200
            await client.close()
        finally:
            release.set()
            await server.close(grace=1.0)

    asyncio.run(main())
    assert checked == ["hold", "secret"]


def test_a_shared_password_check_goes_on_for_those_still_waiting() -> None:
    """Two connections wait for one check of the same credentials; the first leaves: the
    check is not dropped, and the other gets its answer."""
    release = threading.Event()
    checked: list[str] = []

    class Slow(InMemoryAuthenticator):
        def verify_basic(self, user: str, password: str) -> Principal | None:
            checked.append(password)
            release.wait(5)
            return super().verify_basic(user, password)

    async def main() -> int:
        server = await serve(
            Recorder(), [TCPListener()], authenticator=Slow({"admin": "secret"}), require_auth=True
        )
        try:
            leaving = await RawClient.tcp(server.ports[0])
            await leaving.send(post(headers=[basic("admin", "secret")]))
            while not checked:
                await asyncio.sleep(0.01)
            staying = await RawClient.tcp(server.ports[0])
            await staying.send(post(headers=[basic("admin", "secret")]))
            await asyncio.sleep(0.2)
            reset(leaving)
            await asyncio.sleep(0.2)
            release.set()
            status = (await staying.response()).status
            await staying.close()
            return status
        finally:
            release.set()
            await server.close(grace=1.0)

    assert asyncio.run(main()) == 200
    assert checked == ["secret"]


def test_a_changed_password_ends_an_open_connection_s_access(tmp_path: Path) -> None:
    """A keep-alive connection's credentials are looked at again after a second: a password
    changed (or a user deleted) in the users file does not go on for the connection's life."""
    users = tmp_path / "users"
    record = UserRecord("admin", "administrator", hash_password("secret", n=2**10))
    users.write_text(format_users_line(record) + "\n")

    async def main() -> None:
        server = await serve(
            Recorder(), [TCPListener()], authenticator=FileAuthenticator(users), require_auth=True
        )
        try:
            client = await RawClient.tcp(server.ports[0])
            await client.send(post(headers=[basic("admin", "secret")]))
            assert (await client.response()).status == 200
            changed = tmp_path / "users.tmp"
            record = UserRecord("admin", "administrator", hash_password("new", n=2**10))
            changed.write_text(format_users_line(record) + "\n")
            changed.replace(users)
            await asyncio.sleep(1.1)
            await client.send(post(headers=[basic("admin", "secret")]))
            assert (await client.response()).status == 401
            await client.send(post(headers=[basic("admin", "new")]))
            assert (await client.response()).status == 200
            await client.close()
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())


def test_oversized_content_length_is_refused_without_reading_the_body() -> None:
    limits = TransportLimits(max_body_bytes=1000)

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        # The head promises 10 MB, none of which is ever sent: the answer must not wait for it.
        await client.send(
            b"POST /cimom HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n<partial"
        )
        response = await client.response()
        assert response.status == 413
        assert "1000" in response.headers["pgerrordetail"]
        assert response.headers["connection"] == "close"
        assert await client.at_eof()

    assert run_with(scenario, limits=limits).requests == []


def test_oversized_chunked_body_is_refused_as_soon_as_it_exceeds_the_limit() -> None:
    limits = TransportLimits(max_body_bytes=100)

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(
            b"POST /cimom HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"50\r\n" + b"a" * 80 + b"\r\n50\r\n"
        )
        assert (await client.response()).status == 413

    run_with(scenario, limits=limits)


def test_chunked_request_body_and_expect_continue() -> None:
    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(
            b"POST /cimom HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;ext=1\r\n<CIM\r\n2\r\n/>\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        assert (await client.response()).body == b"<CIM/>"
        await client.send(
            b"POST /cimom HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        interim = await client.response()
        assert interim.status == 100
        await client.send(b"<x/>")
        assert (await client.response()).body == b"<x/>"
        # wbemcli sends an empty Expect: it expects nothing.
        await client.send(post(headers=[("Expect", "")]))
        assert (await client.response()).status == 200
        await client.close()

    run_with(scenario)


def test_missing_length_is_411_and_oversized_head_is_431() -> None:
    limits = TransportLimits(max_header_bytes=1024)

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(b"POST /cimom HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await client.response()).status == 411
        assert await client.at_eof()

        client = await RawClient.tcp(server.ports[0])
        await client.send(b"POST /cimom HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000)
        response = await client.response()
        assert response.status == 431
        assert "1024" in response.headers["pgerrordetail"]
        assert await client.at_eof()

    run_with(scenario, limits=limits)


def test_slow_loris_gets_408_and_is_disconnected() -> None:
    limits = TransportLimits(header_timeout=0.3, body_timeout=0.3, keepalive_timeout=0.3)

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        started = time.monotonic()
        await client.send(b"POST /cimom HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(0.1)
        await client.send(b"X-Slow: 1\r\n")  # trickling bytes does not extend the deadline
        response = await client.response()
        assert response.status == 408
        assert 0.25 < time.monotonic() - started < 2.0
        assert await client.at_eof()

        client = await RawClient.tcp(server.ports[0])
        await client.send(b"POST /cimom HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n<x")
        assert (await client.response()).status == 408

        client = await RawClient.tcp(server.ports[0])
        await client.send(post())
        assert (await client.response()).status == 200
        assert (await client.response()).status == 408  # then idle past keepalive_timeout
        assert await client.at_eof()

    run_with(scenario, limits=limits)


def test_iterator_bodies_are_streamed_chunked_and_buffered_for_http10() -> None:
    parts = [b"<a>", b"", b"x" * 100_000, b"</a>"]

    async def streaming(request: HttpRequest) -> HttpResponse:
        body = iter(parts) if request.body == b"sync" else chunks(parts)
        return HttpResponse(200, [("Content-Type", "application/xml")], body)

    def expected() -> bytes:
        return b"".join(parts)

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        for kind in (b"async", b"sync"):
            await client.send(post(kind))
            response = await client.response()
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.body == expected()
        await client.send(post(b"async", version="1.0"))
        response = await client.response()
        assert "transfer-encoding" not in response.headers
        assert int(response.headers["content-length"]) == len(expected())
        assert response.body == expected()
        await client.close()

    run_with(scenario, app=streaming)


def test_a_stream_that_fails_says_why_in_trailers_to_a_client_that_takes_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DSP0200's CIMStatusCode trailer (as SFCB sends it): the status line went out before
    the failure; a client that sent `TE: trailers` hears why after the last chunk. Either
    way the connection ends, so no client takes the unfinished body for a whole one."""

    async def broken() -> AsyncIterator[bytes]:
        yield b"<a>"
        raise RuntimeError("store gone")

    async def app(request: HttpRequest) -> HttpResponse:
        return HttpResponse(
            200,
            [("Content-Type", "application/xml")],
            broken(),
            ("X-Status",),
            lambda exc: [("X-Status", f"failed: {exc}")],
        )

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        for te, trailers in (("trailers", {"x-status": "failed: store gone"}), (None, None)):
            client = await RawClient.tcp(server.ports[0])
            await client.send(post(headers=[("TE", te)] if te else []))
            if trailers is None:
                raw = await asyncio.wait_for(client.reader.read(), 5)
                assert b"trailer:" not in raw.lower() and raw.endswith(b"3\r\n<a>\r\n")
            else:
                response = await client.response()
                assert response.headers["trailer"] == "X-Status"
                assert response.body == b"<a>" and response.trailers == trailers
            assert await client.at_eof()
            await client.close()

    with caplog.at_level(logging.ERROR):
        run_with(scenario, app=app)
    assert "failed mid-stream" in caplog.text


def test_app_exception_is_500_and_server_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    async def flaky(request: HttpRequest) -> HttpResponse:
        if request.body == b"boom":
            raise RuntimeError("application bug")
        return HttpResponse(200, [], b"ok")

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(post(b"boom"))
        response = await client.response()
        assert response.status == 500 and response.headers["connection"] == "close"
        assert await client.at_eof()
        client = await RawClient.tcp(server.ports[0])
        await client.send(post(b"fine"))
        assert (await client.response()).body == b"ok"
        await client.close()

    with caplog.at_level(logging.ERROR, logger="provider.http"):
        run_with(scenario, app=flaky)
    assert any("application bug" in (r.exc_text or "") for r in caplog.records)


def test_protocol_error_from_app_carries_status_cimerror_and_detail() -> None:
    async def refusing(request: HttpRequest) -> HttpResponse:
        raise ProtocolError(400, "header-mismatch", "Missing CIMMethod HTTP header.")

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(post())
        response = await client.response()
        assert response.status == 400
        assert response.headers["cimerror"] == "header-mismatch"
        assert response.headers["pgerrordetail"] == "Missing%20CIMMethod%20HTTP%20header."
        await client.send(post())  # still usable
        assert (await client.response()).status == 400
        await client.close()

    run_with(scenario, app=refusing)


def test_too_many_connections_get_503() -> None:
    limits = TransportLimits(max_connections=2)

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        first = await RawClient.tcp(server.ports[0])
        second = await RawClient.tcp(server.ports[0])
        await first.send(post())
        await second.send(post())
        await first.response()
        await second.response()
        third = await RawClient.tcp(server.ports[0])
        response = await third.response()
        assert response.status == 503 and response.headers["retry-after"] == "1"
        assert await third.at_eof()
        await first.close()
        await second.close()

    run_with(scenario, limits=limits)


def test_response_headers_with_newlines_are_never_sent() -> None:
    async def splitting(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [("X-Echo", "a\r\nSet-Cookie: evil")], b"")

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(post())
        response = await client.response()
        assert response.status == 500 and "set-cookie" not in response.headers

    run_with(scenario, app=splitting)


def test_streamed_body_waits_for_a_slow_reader() -> None:
    chunk = b"x" * 65536
    produced = 0

    def enumerate_lots() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(1024):  # 64 MiB if nothing held it back
            produced += len(chunk)
            yield chunk

    async def streaming(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, [("Content-Type", "application/xml")], enumerate_lots())

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(post())
        await asyncio.sleep(0.3)  # not reading: the server must stop producing
        assert produced < 16 * 1024 * 1024
        response = await client.response()
        assert len(response.body) == 1024 * len(chunk)
        await client.close()

    run_with(scenario, app=streaming)


def test_wbemexec_style_request_with_bare_lf_lines_and_empty_host() -> None:
    # A hand-written request file: LF line ends, `Host: ` empty (wbemexec without -h), and the
    # historical Content-Length one larger than the XML, filled by wbemexec's extra "\n".
    xml = b'<?xml version="1.0" encoding="utf-8" ?>\n<CIM/>'
    raw = (
        b"POST /cimom HTTP/1.1\nHost: \nContent-Type: application/xml\n"
        b"CIMOperation: MethodCall\nContent-Length: %d\n\n" % (len(xml) + 1)
    ) + xml

    async def scenario(server: HttpServer, rec: Recorder) -> None:
        client = await RawClient.tcp(server.ports[0])
        await client.send(raw + b"\n")
        response = await client.response()
        assert response.status == 200 and response.body == xml + b"\n"
        await client.send(raw + b"\n")  # and the connection goes on
        assert (await client.response()).status == 200
        await client.close()

    [first, _] = run_with(scenario).requests
    assert first.headers["host"] == "" and first.headers["cimoperation"] == "MethodCall"


def test_a_real_http_client_keeps_its_connection_and_sends_basic() -> None:
    import requests  # pywbem's own HTTP stack

    recorder = Recorder()
    authenticator = InMemoryAuthenticator({"admin": "secret"})
    with (
        server_in_thread(recorder, authenticator=authenticator) as port,
        requests.Session() as session,
    ):
        for _ in range(3):
            reply = session.post(
                f"http://127.0.0.1:{port}/cimom",
                data=b"<x/>",
                auth=("admin", "secret"),
                headers={"CIMOperation": "MethodCall"},
                timeout=5,
            )
            assert reply.status_code == 200 and reply.content == b"<x/>"
        refused = session.post(f"http://127.0.0.1:{port}/cimom", data=b"<x/>", timeout=5)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="gm-provider"'
    peers = {r.principal.peer for r in recorder.requests if r.principal}
    assert len(peers) == 1  # one connection served all three


def test_login_throttle_counts_wrong_passwords_and_running_checks() -> None:
    now = [0.0]
    throttle = LoginThrottle(
        guesses=3, window=60.0, entries=4, clock=lambda: now[0], address_guesses=5
    )

    def guess(address: str = "h", user: str = "u", ok: bool | None = False) -> bool:
        assert throttle.begin(address, user) == 0.0
        return throttle.end(address, user, ok)

    assert [guess() for _ in range(3)] == [False, False, True]
    assert throttle.wait("h", "u") == 60.0
    assert throttle.wait("h2", "u") == throttle.wait("h", "v") == 0.0
    now[0] = 59.0
    assert throttle.wait("h", "u") == 1.0
    now[0] = 60.5
    assert throttle.wait("h", "u") == 0.0  # aged out
    # Checks still running count: three begun at once, the fourth waits for their answers.
    for _ in range(3):
        assert throttle.begin("h", "u") == 0.0
    assert throttle.wait("h", "u") == 1.0
    for _ in range(3):
        throttle.end("h", "u", None)  # did not finish: released, not counted
    assert throttle.wait("h", "u") == 0.0
    guess(ok=False)
    guess(ok=True)  # the right password clears the user's count
    assert throttle.wait("h", "u") == 0.0
    # Made-up names from one address: the address's own count (one failure so far) locks
    # them all at five.
    assert [guess(user=f"x{i}") for i in range(4)] == [False, False, False, True]
    assert throttle.wait("h", "anyone") > 0 and throttle.wait("h2", "anyone") == 0.0


def test_password_guessing_is_stopped_without_locking_out_known_callers(tmp_path: Path) -> None:
    """scrypt alone let one address try ~27 passwords a second. Five new wrong passwords for
    a user: its unknown credentials from that address are refused unchecked (the right one
    too), while credentials verified before are still served, and other users are not
    touched."""
    users = tmp_path / "users"
    users.write_text(
        "".join(
            format_users_line(UserRecord(name, "administrator", hash_password(pw, n=2**10))) + "\n"
            for name, pw in (("admin", "secret"), ("ops", "ops-pw"), ("dev", "dev-pw"))
        )
    )

    async def one(port: int, user: str, password: str) -> tuple[int, str]:
        client = await RawClient.tcp(port)
        try:
            await client.send(post(headers=[basic(user, password)]))
            response = await client.response()
            return response.status, unquote(response.headers.get("pgerrordetail", ""))
        finally:
            await client.close()

    async def main() -> None:
        server = await serve(
            Recorder(), [TCPListener()], authenticator=FileAuthenticator(users), require_auth=True
        )
        port = server.ports[0]
        try:
            assert (await one(port, "admin", "secret"))[0] == 200  # verified before
            for user in ("admin", "ops"):
                for n in range(5):
                    status, detail = await one(port, user, f"guess-{n}")
                    assert (status, detail) == (401, "Invalid user name or password.")
            assert (await one(port, "admin", "secret"))[0] == 200  # recalled: served
            status, detail = await one(port, "ops", "ops-pw")  # right, but never checked
            assert status == 401 and "Too many wrong passwords for ops" in detail, detail
            assert (await one(port, "dev", "dev-pw"))[0] == 200
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())


def test_guesses_sent_at_once_are_counted_before_their_answers(tmp_path: Path) -> None:
    """The lock was looked at before a check and counted after it: 100 guesses sent at once
    were all checked. Now at most five are."""
    users = tmp_path / "users"
    users.write_text(
        format_users_line(UserRecord("admin", "administrator", hash_password("s", n=2**12))) + "\n"
    )

    async def guess(port: int, n: int) -> str:
        client = await RawClient.tcp(port)
        try:
            await client.send(post(headers=[basic("admin", f"guess-{n}")]))
            response = await client.response()
            assert response.status == 401
            return unquote(response.headers.get("pgerrordetail", ""))
        finally:
            await client.close()

    async def main() -> list[str]:
        server = await serve(
            Recorder(), [TCPListener()], authenticator=FileAuthenticator(users), require_auth=True
        )
        try:
            return await asyncio.gather(*(guess(server.ports[0], n) for n in range(40)))
        finally:
            await server.close(grace=1.0)

    details = asyncio.run(main())
    checked = [d for d in details if d == "Invalid user name or password."]
    assert 1 <= len(checked) <= 5, len(checked)
    assert all(
        d.startswith("Too many wrong passwords for admin") for d in details if d not in checked
    )


def test_logins_sent_at_once_with_the_same_credentials_share_one_check(tmp_path: Path) -> None:
    """Eight connections opened at once by one client (a pool, a benchmark, parallel cron
    jobs) with the right password: running checks counted as guesses refused the sixth with
    a 401. The same credentials from one address are now checked once, for all of them; the
    same wrong password sent 40 times at once is one guess, not a lock."""
    users = tmp_path / "users"
    users.write_text(
        format_users_line(UserRecord("admin", "administrator", hash_password("s", n=2**12))) + "\n"
    )
    verified: list[str] = []

    class Counting(FileAuthenticator):
        def verify_basic(self, user: str, password: str) -> Principal | None:
            verified.append(password)
            return super().verify_basic(user, password)

    async def login(port: int, password: str) -> int:
        client = await RawClient.tcp(port)
        try:
            await client.send(post(headers=[basic("admin", password)]))
            return (await client.response()).status
        finally:
            await client.close()

    async def main() -> tuple[list[int], list[int], int]:
        server = await serve(
            Recorder(), [TCPListener()], authenticator=Counting(users), require_auth=True
        )
        port = server.ports[0]
        try:
            wrong = await asyncio.gather(*(login(port, "stale") for _ in range(40)))
            right = await asyncio.gather(*(login(port, "s") for _ in range(40)))
            return wrong, right, await login(port, "s")
        finally:
            await server.close(grace=1.0)

    wrong, right, later = asyncio.run(main())
    assert wrong == [401] * 40
    assert right == [200] * 40
    assert later == 200
    assert sorted(set(verified)) == ["s", "stale"] and len(verified) <= 4, verified


def test_the_application_is_set_once_it_is_ready() -> None:
    """A node listens before its application is ready (a second copy of a node must fail on
    the port before it takes the lease); meanwhile requests get a 503, then the real one
    answers, on the same keep-alive connection."""

    async def starting(request: HttpRequest) -> HttpResponse:
        raise ProtocolError(503, None, "The Group Manager is starting; try again shortly.")

    async def main() -> tuple[int, str, int]:
        server = await serve(starting, [TCPListener()], require_auth=False)
        recorder = Recorder()
        try:
            early = await RawClient.tcp(server.ports[0])
            await early.send(post())
            first = await early.response()
            await early.close()
            server.set_application(recorder)
            client = await RawClient.tcp(server.ports[0])
            await client.send(post())
            second = await client.response()
            await client.close()
            return first.status, first.headers.get("retry-after", ""), second.status
        finally:
            await server.close(grace=1.0)

    assert asyncio.run(main()) == (503, "1", 200)


def test_a_guess_abandoned_while_its_check_runs_still_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hanging up during the check dropped it from the throttle's count while the check went
    on and its verdict was remembered: connect, guess, hang up, and the next connection with
    the same guess was answered from memory, never counted. A check that has started is now
    counted when it ends, whoever still waits."""
    monkeypatch.setattr("provider.http.server._auth_threads", lambda: 1)
    started = threading.Event()

    class Slow(InMemoryAuthenticator):
        def verify_basic(self, user: str, password: str) -> Principal | None:
            started.set()
            time.sleep(0.05)
            return super().verify_basic(user, password)

    async def abandon(port: int, password: str) -> None:
        started.clear()
        client = await RawClient.tcp(port)
        await client.send(post(headers=[basic("admin", password)]))
        while not started.is_set():
            await asyncio.sleep(0.002)
        reset(client)
        await asyncio.sleep(0.1)  # the check ends meanwhile

    async def main() -> tuple[int, str]:
        server = await serve(
            Recorder(), [TCPListener()], authenticator=Slow({"admin": "secret"}), require_auth=True
        )
        port = server.ports[0]
        try:
            for n in range(5):  # the throttle's limit for a user and address
                await abandon(port, f"guess-{n}")
            client = await RawClient.tcp(port)
            await client.send(post(headers=[basic("admin", "secret")]))
            response = await client.response()
            await client.close()
            return response.status, unquote(response.headers.get("pgerrordetail", ""))
        finally:
            await server.close(grace=1.0)

    status, detail = asyncio.run(main())
    assert status == 401 and "Too many wrong passwords for admin" in detail, (status, detail)


def test_a_connection_that_joins_a_check_its_first_waiter_left_is_answered() -> None:
    """The only waiter of a running check leaves, and a connection with the same
    credentials arrives on the next loop turn: it joined the check that leaving had just
    cancelled, and was never answered (408 after the header timeout). The running check now
    goes on and answers it."""
    release = threading.Event()
    started = threading.Event()

    class Slow(InMemoryAuthenticator):
        def verify_basic(self, user: str, password: str) -> Principal | None:
            started.set()
            release.wait(5)
            return super().verify_basic(user, password)

    async def main() -> int:
        server = await serve(
            Recorder(), [TCPListener()], authenticator=Slow({"admin": "secret"}), require_auth=True
        )
        port = server.ports[0]
        try:
            first = await RawClient.tcp(port)
            second = await RawClient.tcp(port)
            await first.send(post(headers=[basic("admin", "secret")]))
            while not started.is_set():
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            reset(first)
            await asyncio.sleep(0)
            second.writer.write(post(headers=[basic("admin", "secret")]))
            await asyncio.sleep(0.1)
            release.set()
            status = (await asyncio.wait_for(second.response(), 5)).status
            await second.close()
            return status
        finally:
            release.set()
            await server.close(grace=1.0)

    assert asyncio.run(main()) == 200
