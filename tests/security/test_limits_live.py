"""The transport's limits on a live provider, configured in `[server]`: each is answered with
its HTTP status (RFC 9110 §15.5; provider/http/limits.py) and the server keeps serving.

Timeouts are shortened by the configuration so the slow-client tests take about a second."""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.harness import ProviderHandle, provider_process
from tests.security.helpers import (
    Reply,
    basic,
    exchange,
    method_call,
    method_headers,
    parse_reply,
    read_all,
)

LIMITS = {
    "max_body_bytes": 64 * 1024,
    "max_header_bytes": 4096,
    "max_xml_depth": 20,
    "max_xml_elements": 500,
    "max_connections": 12,
    "request_timeout": 1.0,
    "idle_timeout": 1.5,
}
GET_ROLE = method_call("getRole", {})


@pytest.fixture(scope="module")
def gm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderHandle]:
    with provider_process(tmp_path_factory.mktemp("gm-limits"), config={"server": LIMITS}) as h:
        yield h


def _head(length: int | None = None, extra: str = "") -> bytes:
    head = "POST /cimom HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in method_headers("getRole", basic("reader")).items()
    )
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + extra + "\r\n").encode()


def _alive(gm: ProviderHandle) -> None:
    reply = exchange(gm.port, GET_ROLE, method_headers("getRole", basic("reader")))
    assert reply.status == 200 and b'NAME="Role"' in reply.body


def _answer(sock: socket.socket) -> Reply:
    return parse_reply(read_all(sock))


def test_oversized_body_is_413_before_it_is_read(gm: ProviderHandle) -> None:
    with socket.create_connection(("127.0.0.1", gm.port), timeout=5) as sock:
        sock.sendall(_head(length=10 * 1024 * 1024))  # the body is never sent
        reply = _answer(sock)
    assert reply.status == 413
    _alive(gm)


def test_oversized_chunked_body_is_413(gm: ProviderHandle) -> None:
    chunk = b"%x\r\n%s\r\n" % (16 * 1024, b" " * 16 * 1024)
    with socket.create_connection(("127.0.0.1", gm.port), timeout=5) as sock:
        sock.sendall(_head(extra="Transfer-Encoding: chunked\r\n"))
        try:
            for _ in range(8):  # 128 KiB: twice the limit
                sock.sendall(chunk)
        except OSError:
            pass  # the server may close as soon as it has answered
        reply = _answer(sock)
    assert reply.status == 413
    _alive(gm)


def test_body_without_length_is_411(gm: ProviderHandle) -> None:
    with socket.create_connection(("127.0.0.1", gm.port), timeout=5) as sock:
        sock.sendall(_head())
        assert _answer(sock).status == 411


def test_oversized_header_block_is_431(gm: ProviderHandle) -> None:
    with socket.create_connection(("127.0.0.1", gm.port), timeout=5) as sock:
        sock.sendall(_head(length=len(GET_ROLE), extra=f"X-Padding: {'a' * 8000}\r\n"))
        assert _answer(sock).status == 431
    _alive(gm)


def test_too_deep_or_too_many_elements_is_400_request_not_valid(gm: ProviderHandle) -> None:
    headers = method_headers("getRole", basic("reader"))
    deep = GET_ROLE.replace(
        b"</METHODCALL>",
        b'<PARAMVALUE NAME="x"><VALUE.ARRAY>'
        + b"<VALUE.ARRAY>" * 25
        + b"</VALUE.ARRAY>" * 26
        + b"</PARAMVALUE></METHODCALL>",
    )
    many = GET_ROLE.replace(
        b"</METHODCALL>",
        b'<PARAMVALUE NAME="x"><VALUE.ARRAY>'
        + b"<VALUE>1</VALUE>" * 600
        + b"</VALUE.ARRAY></PARAMVALUE></METHODCALL>",
    )
    # The details name the configured limits (20 and 500), not the codec's defaults.
    for body, detail in ((deep, "limit of 20"), (many, "more than 500 elements")):
        reply = exchange(gm.port, body, headers)
        assert reply.status == 400, reply
        assert reply.headers["cimerror"] == "request-not-valid"
        assert detail in urllib.parse.unquote(reply.headers["pgerrordetail"])
    _alive(gm)


def test_slow_loris_clients_get_408_while_others_are_served(gm: ProviderHandle) -> None:
    """Six clients trickle a header byte every 0.2 s: each is cut off with 408 after the
    request timeout (1 s), not when it finishes; a normal client is served meanwhile."""
    head = _head(length=len(GET_ROLE))
    slow = [socket.create_connection(("127.0.0.1", gm.port), timeout=5) for _ in range(6)]
    started = time.monotonic()
    try:
        for i in range(8):
            for sock in slow:
                sock.sendall(head[i : i + 1])
            if i == 2:
                _alive(gm)
            time.sleep(0.2)
        replies = []
        for sock in slow:
            replies.append(_answer(sock))
        elapsed = time.monotonic() - started
    finally:
        for sock in slow:
            sock.close()
    assert [r.status for r in replies] == [408] * 6
    assert elapsed < 3.0
    _alive(gm)


def test_slow_body_gets_408(gm: ProviderHandle) -> None:
    with socket.create_connection(("127.0.0.1", gm.port), timeout=5) as sock:
        sock.sendall(_head(length=len(GET_ROLE)) + GET_ROLE[:10])
        started = time.monotonic()
        reply = _answer(sock)
    assert reply.status == 408 and time.monotonic() - started < 3.0


def test_silent_connection_is_closed_with_408(gm: ProviderHandle) -> None:
    with socket.create_connection(("127.0.0.1", gm.port), timeout=5) as sock:
        started = time.monotonic()
        reply = _answer(sock)
    assert reply.status == 408 and 0.8 < time.monotonic() - started < 3.0


def test_connections_above_the_limit_get_503(gm: ProviderHandle) -> None:
    held = [socket.create_connection(("127.0.0.1", gm.port), timeout=5) for _ in range(12)]
    try:
        time.sleep(0.1)  # let the server accept them all
        with socket.create_connection(("127.0.0.1", gm.port), timeout=5) as extra:
            reply = _answer(extra)
        assert reply.status == 503 and reply.headers.get("retry-after") == "1"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    _alive(gm)
