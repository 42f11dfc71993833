"""The HTTP/1.1 transport: an asyncio `Protocol` per connection, calling the `Application`.

What it does, in the order a request meets it (the OpenPegasus order of DSP0200 checks,
reference §1.6: method → authentication → Host → the application):

1. framing (`provider.http.parser`): request line, header block ≤ `max_header_bytes` (431),
   body by Content-Length or chunked (≤ `max_body_bytes`, else 413 before reading it), a body
   with no length (411); such errors end the connection, since the next request's start is lost;
2. method: anything but POST and M-POST → 501 (DSP0200 via OpenPegasus
   `HTTPAuthenticatorDelegator`); M-POST over HTTP/1.0 → 400;
3. authentication (TCP/TLS: HTTP Basic; Unix socket: SO_PEERCRED) → 401 with a challenge;
4. `Host` on HTTP/1.1 (RFC 9112 §3.2) → 400, but an empty value is accepted because OpenPegasus
   `wbemexec` without `-h` sends `Host: ` (reference §1.2);
5. the application; a `ProtocolError` it raises becomes its status with `CIMError` and
   `PGErrorDetail`; anything else becomes 500, is logged, and ends the connection.

Responses go out in request order (pipelining, RFC 9112 §9.3.2). Each connection has one
worker task at a time that serves its queue; the reading side stops when the queue is full.
Timeouts use one timer per connection that is re-armed only when it fires, so the fast path
(a whole request in one read) sets a timestamp and nothing else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import os
import socket
import ssl
import stat
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from provider.errors import AuthenticationRequired, ProtocolError
from provider.http.auth import (
    Authenticator,
    LoginThrottle,
    parse_basic_authorization,
    principal_for_peer,
)
from provider.http.limits import TransportLimits
from provider.http.messages import Application, HttpRequest, HttpResponse, Principal, Via
from provider.http.parser import (
    BodyFraming,
    ChunkedDecoder,
    HeadError,
    RequestHead,
    body_framing,
    find_head_end,
    parse_head,
    strip_extension_prefixes,
)
from provider.http.wire import (
    date_header,
    encode_headers,
    error_response,
    mpost_response_headers,
    status_line,
)

__all__ = [
    "BoundListener",
    "HttpServer",
    "Listener",
    "TCPListener",
    "TLSListener",
    "UnixListener",
    "new_event_loop",
    "run",
    "serve",
]

log = logging.getLogger("provider.http")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TCPListener:
    """Plain HTTP (DSP0200 default port 5988). Port 0 picks a free port."""

    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True, slots=True)
class TLSListener:
    """HTTPS (DSP0200 default port 5989); see `provider.http.tls.make_server_ssl_context`."""

    context: ssl.SSLContext
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True, slots=True)
class UnixListener:
    """The local socket: peers are identified by their uid (SO_PEERCRED), no password."""

    path: Path


Listener = TCPListener | TLSListener | UnixListener


@dataclass(frozen=True, slots=True)
class BoundListener:
    """A listener as bound: the real port when 0 was asked for."""

    listener: Listener
    via: Via
    host: str | None
    port: int | None
    path: Path | None


@dataclass(slots=True)
class _Work:
    """One request in the connection's queue: either to serve, or already answered by an error."""

    head: RequestHead
    body: bytes
    keep_alive: bool
    is_mpost: bool
    mpost_ns: str | None
    early_error: HeadError | None  # answered before authentication (501, M-POST/1.0, 417)
    late_error: HeadError | None  # answered after authentication (missing Host)


@dataclass(slots=True)
class _Fatal:
    """An answer after which the connection ends (framing lost, limit hit, timeout)."""

    status: int
    detail: str


_Item = _Work | _Fatal

# Parser states.
_HEAD, _BODY_LENGTH, _BODY_CHUNKED, _DEAD = range(4)

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_AUTH_RECHECK = 1.0  # seconds a connection's verified credentials stand without a look
_SO_PEERCRED = getattr(socket, "SO_PEERCRED", None)


def _auth_threads() -> int:
    """One per core this process may use, but one (at most 4: each scrypt holds 16 MiB)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return min(4, max(1, cores - 1))


class _ServerState:
    """What the connections of one server share."""

    def __init__(
        self,
        app: Application,
        authenticator: Authenticator | None,
        require_auth: bool,
        limits: TransportLimits,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.require_auth = require_auth
        self.limits = limits
        self.connections: set[_Connection] = set()
        # Open connections by kind (True: the local Unix socket). Each kind has its own
        # `max_connections`: clients on the network cannot fill the slots of cron and of
        # administrators on the Group Manager itself.
        self.open_by_kind = {True: 0, False: 0}
        self.closing = False
        # Password checks (scrypt, slow by design) run on threads of their own: a storm of
        # logins -- 500 scripts with a stale password -- then waits for these, and never
        # delays the work other code hands to the loop's default executor (a failover's
        # submit, a capacity change). The loop keeps a core (`_auth_threads`).
        self.auth_pool = ThreadPoolExecutor(_auth_threads(), thread_name_prefix="gm-auth")
        self.throttle = LoginThrottle()
        # Checks running, by (address, Authorization header): connections that send the same
        # credentials at once (a pool, parallel cron jobs) wait for one check, which counts
        # once against the throttle.
        self.auth_checks: dict[tuple[str, str], _Check] = {}

    def forget_check(self, check: _Check) -> None:
        """A check no longer to be joined (ended, or dropped unstarted)."""
        if self.auth_checks.get(check.key) is check:
            del self.auth_checks[check.key]

    def check_ended(self, check: _Check) -> None:
        """A check's end, on the loop: the throttle counts it (a wrong password once)."""
        self.forget_check(check)
        work = check.work
        ok = None if work.cancelled() or work.exception() else work.result() is not None
        address = check.key[0]
        if self.throttle.end(address, check.user, ok):
            log.warning(
                "login: too many wrong passwords for user %r (or users) from %s within "
                "%d s; such passwords from there are not checked for a while (a guess?)",
                check.user,
                address,
                self.throttle.window,
            )


@dataclass(eq=False)
class _Check:
    """One password check, and how many connections wait for its answer. `work` is the
    thread pool's own future: a check that has started runs to its end and is counted
    then, whoever still waits (hanging up must not take a guess off the count, since its
    verdict is remembered); one still queued is dropped when its last waiter leaves."""

    key: tuple[str, str]  # (address, Authorization header)
    user: str
    work: concurrent.futures.Future[Principal | None]
    answer: asyncio.Future[Principal | None]  # the same, for the loop
    waiters: int = 0


class _Connection(asyncio.Protocol):
    """One client connection. See the module docstring for the order of checks."""

    def __init__(self, server: _ServerState, via: Via) -> None:
        self._server = server
        self._limits = server.limits
        self._via = via
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._peer_principal: Principal | None = None
        # A Unix-socket peer's (uid, gid), and when its role is looked up again.
        self._peer_ids: tuple[int, int] | None = None
        self._peer_recheck = 0.0
        self._auth_cache: tuple[str, Principal, float] | None = None
        # The password check this connection waits for (shared), and its own wait.
        self._auth_check: _Check | None = None
        self._auth_wait: asyncio.Future[Principal | None] | None = None
        self._buf = bytearray()
        self._state = _HEAD
        self._work: _Work | None = None
        self._body = bytearray()
        self._remaining = 0
        self._chunked: ChunkedDecoder | None = None
        self._keep_body = True
        self._queue: deque[_Item] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._continue_wanted = False
        self._closed = False
        self._ending = False  # the last response is queued or sent: read nothing more
        self._served = 0
        now = self._loop.time()
        self._idle_since = now
        self._head_started: float | None = None
        self._body_started: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._linger: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        server = self._server
        server.connections.add(self)
        local = self._via is Via.UNIX
        server.open_by_kind[local] += 1
        transport.set_write_buffer_limits(high=256 * 1024)
        if server.open_by_kind[local] > self._limits.max_connections or server.closing:
            # RFC 9110 §15.6.4: 503 "the server is currently unable to handle the request due
            # to a temporary overload"; Retry-After tells a client when to try again.
            self._end_with(_Fatal(503, "Too many concurrent connections; try again later."))
            return
        if self._via is Via.UNIX:
            self._identify_unix_peer(transport)
        else:
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and len(peer) >= 2:
                host = str(peer[0])
                self._peer = f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
        self._arm_timer(self._idle_since + self._limits.header_timeout)

    def _identify_unix_peer(self, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is None or _SO_PEERCRED is None:
            return
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            log.warning("could not read the peer credentials of a Unix-socket client")
            return
        _pid, uid, gid = struct.unpack("3i", raw)
        self._peer = f"uid={uid}"
        self._peer_ids = (uid, gid)
        self._identify_peer()

    def _identify_peer(self) -> None:
        """The peer's principal from the users file as it is now: looked at again, as Basic
        credentials are, after `_AUTH_RECHECK`, so a local account deleted from the users
        file or given another role does not keep the old one for a keep-alive connection."""
        assert self._peer_ids is not None
        uid, gid = self._peer_ids
        self._peer_recheck = self._loop.time() + _AUTH_RECHECK
        authenticator = self._server.authenticator
        try:
            if authenticator is None:
                self._peer_principal = principal_for_peer(uid, gid)
            else:
                self._peer_principal = authenticator.identify_peer(uid, gid)
        except Exception:
            self._peer_principal = None
            log.exception("identify_peer failed for uid %d", uid)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._auth_wait is not None:
            self._auth_wait.cancel()
        self._leave_check()
        self._state = _DEAD
        server = self._server
        if self in server.connections:
            server.connections.discard(self)
            server.open_by_kind[self._via is Via.UNIX] -= 1
        self._queue.clear()
        self._buf = bytearray()
        for handle in (self._timer, self._linger):
            if handle is not None:
                handle.cancel()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    def eof_received(self) -> bool | None:
        # The client sent everything it will send. Requests already queued are still answered
        # (a client may half-close after its last request); then we close.
        if self._linger is not None or (self._worker is None and not self._queue):
            self._close_transport()
            return None
        self._state = _DEAD
        self._ending = True
        # Keep the write side open for the answers; TLS cannot half-close (asyncio ignores it).
        return self._via is not Via.HTTPS

    def data_received(self, data: bytes) -> None:
        if self._state == _DEAD:
            return  # lingering after an error, or closing: input is discarded, never kept
        buf: bytes | bytearray = data
        if self._buf:
            self._buf += data
            buf = self._buf
        try:
            self._process(buf)
        except Exception:
            # A bug of ours, never a client's fault; the client gets a 500, the server lives on.
            log.exception("internal error while parsing a request from %s", self._peer)
            self._end_with(_Fatal(500, "Internal error while reading the request."))

    # ---- reading -----------------------------------------------------------------------------

    def _process(self, buf: bytes | bytearray) -> None:
        """Parse what `buf` holds; keep an incomplete rest in `self._buf` for the next read.

        `buf` is the bytes just read when nothing was left over (the common case: no copy), or
        `self._buf` with them appended.
        """
        pos = 0
        limits = self._limits
        while not self._reading_paused:
            state = self._state
            if state == _HEAD:
                end = len(buf)
                # RFC 9112 §2.2: "a server that is expecting to receive and parse a request-line
                # SHOULD ignore at least one empty line (CRLF) received prior to the
                # request-line" — wbemexec appends one after its body (reference §4.2).
                while pos < end and buf[pos] in b"\r\n":
                    pos += 1
                if pos == end:
                    break
                head_end, body_start = find_head_end(buf, pos, limits.max_header_bytes)
                if head_end < 0:
                    if end - pos > limits.max_header_bytes:
                        self._end_with(_Fatal(431, self._header_limit_detail()))
                        return
                    if self._head_started is None:
                        self._head_started = self._loop.time()
                        self._arm_timer(self._head_started + limits.header_timeout)
                    break
                self._head_started = None
                try:
                    head = parse_head(buf, pos, head_end)
                except HeadError as exc:
                    self._end_with(_Fatal(exc.status, exc.detail))
                    return
                pos = self._start_request(head, buf, body_start)
                if pos < 0:
                    return
            elif state == _BODY_LENGTH:
                take = min(self._remaining, len(buf) - pos)
                if take == 0:
                    break
                self._continue_wanted = False
                if self._keep_body:
                    self._body += buf[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining:
                    break
                self._body_complete()
            elif state == _BODY_CHUNKED:
                decoder = self._chunked
                assert decoder is not None
                if pos == len(buf):
                    break
                self._continue_wanted = False
                try:
                    pos = decoder.feed(buf, pos)
                except HeadError as exc:
                    self._end_with(_Fatal(exc.status, exc.detail))
                    return
                if not decoder.done:
                    break
                self._body = decoder.body
                self._body_complete()
            else:
                return
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < len(buf):
            self._buf = bytearray(buf[pos:])
        if self._state in (_BODY_LENGTH, _BODY_CHUNKED) and self._body_started is None:
            self._body_started = self._loop.time()
            self._arm_timer(self._body_started + limits.body_timeout)

    def _header_limit_detail(self) -> str:
        return (
            f"HTTP request header block exceeds the limit of {self._limits.max_header_bytes} bytes."
        )

    def _start_request(self, head: RequestHead, buf: bytes | bytearray, pos: int) -> int:
        """Check a complete head and set up reading its body (which starts at `pos`).

        Returns where reading goes on, or -1 when the connection ends.
        """
        try:
            framing, length = body_framing(head)
        except HeadError as exc:
            self._end_with(_Fatal(exc.status, exc.detail))
            return -1
        work = self._check_head(head, framing, length)
        if work is None:
            return -1
        keep = work.early_error is None
        if framing is BodyFraming.LENGTH and len(buf) - pos >= length:
            # The common case: the whole body is here already.
            if keep:
                work.body = bytes(buf[pos : pos + length])
            self._finish_request(work)
            return pos + length
        if framing is BodyFraming.NONE:
            self._finish_request(work)
            return pos
        self._work = work
        self._keep_body = keep
        self._body = bytearray()
        if framing is BodyFraming.CHUNKED:
            limits = self._limits
            self._chunked = ChunkedDecoder(
                limits.max_body_bytes, limits.max_header_bytes, keep=keep
            )
            self._state = _BODY_CHUNKED
        else:
            self._remaining = length
            self._state = _BODY_LENGTH
        if pos == len(buf):
            expect = head.headers.get("expect", "")
            if work.early_error is None and expect.strip().lower() == "100-continue":
                self._continue_wanted = work.head.http_version == "1.1"
                self._send_continue_if_due()
            elif work.early_error is not None and expect:
                # The client waits for our word before sending the body: refuse now and close
                # (RFC 9110 §10.1.1 lets a server answer before reading the content).
                self._end_with(_Fatal(work.early_error.status, work.early_error.detail))
                return -1
        return pos

    def _check_head(self, head: RequestHead, framing: BodyFraming, length: int) -> _Work | None:
        """The checks a complete head allows, in OpenPegasus order; None: the connection ends."""
        headers = head.headers
        method = head.method
        version = head.http_version
        max_body = self._limits.max_body_bytes
        if framing is BodyFraming.LENGTH and length > max_body:
            # Refused from the Content-Length alone: the body is never read (RFC 9110 §15.5.14).
            detail = f"Request body of {length} bytes exceeds the limit of {max_body} bytes."
            self._end_with(_Fatal(413, detail))
            return None
        early: HeadError | None = None
        mpost_ns: str | None = None
        is_mpost = method == "M-POST"
        if is_mpost:
            mpost_ns = strip_extension_prefixes(headers)
            if version == "1.0":
                # DSP0200: M-POST is an HTTP/1.1 extension (RFC 2774); OpenPegasus answers 400.
                early = HeadError(400, "M-POST method invalid with HTTP version 1.0.")
        elif method != "POST":
            early = HeadError(501, f"HTTP method {method} is not supported; use POST or M-POST.")
        if early is None and framing is BodyFraming.NONE:
            # RFC 9110 §15.5.12: 411 Length Required. A CIM request always has a body.
            self._end_with(_Fatal(411, "HTTP request lacks a Content-Length header field."))
            return None
        connection = headers.get("connection")
        if version == "1.1":
            keep_alive = connection is None or "close" not in connection.lower()
        else:
            keep_alive = connection is not None and "keep-alive" in connection.lower()
        expect = headers.get("expect")
        # RFC 9110 §10.1.1: only 100-continue is defined; an empty `Expect:` (wbemcli sends
        # one) expects nothing, and an HTTP/1.0 request's expectation "MUST" be ignored.
        if (
            expect
            and early is None
            and version == "1.1"
            and expect.strip().lower() != "100-continue"
        ):
            early = HeadError(417, f"Unsupported expectation {expect!r}.")
        late: HeadError | None = None
        if version == "1.1" and "host" not in headers:
            late = HeadError(400, "HTTP request message lacks a Host header field.")
        return _Work(head, b"", keep_alive, is_mpost, mpost_ns, early, late)

    def _body_complete(self) -> None:
        work = self._work
        assert work is not None
        if self._keep_body:
            work.body = bytes(self._body)
        self._work = None
        self._finish_request(work)

    def _finish_request(self, work: _Work) -> None:
        self._body = bytearray()
        self._chunked = None
        self._body_started = None
        self._state = _HEAD
        self._enqueue(work)
        if not work.keep_alive:
            self._state = _DEAD
            self._ending = True

    def _enqueue(self, item: _Item) -> None:
        self._queue.append(item)
        if len(self._queue) >= self._limits.max_pipelined and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()
        if self._worker is None:
            self._worker = self._loop.create_task(self._serve_queue())

    def _end_with(self, fatal: _Fatal) -> None:
        """Queue a last answer; read (and keep) nothing more."""
        self._state = _DEAD
        self._ending = True
        self._buf = bytearray()
        self._continue_wanted = False
        self._queue.append(fatal)
        if self._worker is None:
            self._worker = self._loop.create_task(self._serve_queue())

    def _send_continue_if_due(self) -> None:
        # Interim responses must not overtake final ones of earlier requests (RFC 9112 §9.3.2).
        if self._continue_wanted and self._worker is None and not self._closed:
            self._continue_wanted = False
            assert self._transport is not None
            self._transport.write(_CONTINUE)

    # ---- timers ------------------------------------------------------------------------------

    def _arm_timer(self, when: float) -> None:
        if self._timer is not None and self._timer_when <= when:
            return  # the armed timer fires first and re-arms itself for the later deadline
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _deadline(self) -> float | None:
        if self._closed or self._ending or self._reading_paused:
            return None
        limits = self._limits
        if self._state == _HEAD:
            if self._head_started is not None:
                return self._head_started + limits.header_timeout
            if self._worker is not None or self._queue:
                return None  # the client waits for us
            timeout = limits.keepalive_timeout if self._served else limits.header_timeout
            return self._idle_since + timeout
        if self._body_started is not None:
            return self._body_started + limits.body_timeout
        return None

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline()
        now = self._loop.time()
        if deadline is None:
            self._arm_timer(now + self._limits.header_timeout)
        elif deadline > now:
            self._arm_timer(deadline)
        else:
            # RFC 9110 §15.5.9: 408 "the server did not receive a complete request message
            # within the time that it was prepared to wait"; the client MAY repeat it.
            what = {
                _HEAD: "the request header" if self._head_started else "a request",
                _BODY_LENGTH: "the request body",
                _BODY_CHUNKED: "the request body",
            }.get(self._state, "a request")
            self._end_with(_Fatal(408, f"Timed out waiting for {what}."))

    # ---- writing -----------------------------------------------------------------------------

    async def _serve_queue(self) -> None:
        try:
            while self._queue and not self._closed:
                item = self._queue.popleft()
                if self._reading_paused and len(self._queue) < self._limits.max_pipelined:
                    self._reading_paused = False
                    assert self._transport is not None
                    self._transport.resume_reading()
                    self._loop.call_soon(self._resume_processing)
                if isinstance(item, _Fatal):
                    await self._send_error(item.status, item.detail)
                    self._start_linger()
                    return
                close = await self._serve(item)
                self._served += 1
                if close or (self._ending and not self._queue):
                    self._close_transport()
                    return
        except Exception:
            log.exception("internal error while answering %s", self._peer)
            self._close_transport()
            return
        finally:
            self._worker = None
        self._idle_since = self._loop.time()
        if not self._closed:
            self._arm_timer(self._idle_since + self._limits.keepalive_timeout)
            self._send_continue_if_due()

    def _resume_processing(self) -> None:
        if not self._closed and self._state != _DEAD and self._buf:
            self.data_received(b"")  # parse what was left in the buffer while paused

    async def _serve(self, work: _Work) -> bool:
        """Answer one request; True when the connection must close afterwards."""
        head = work.head
        close = not work.keep_alive
        if work.early_error is not None:
            err = work.early_error
            await self._send(error_response(err.status, err.detail), work, close)
            return close
        try:
            principal, failure = await self._authenticate(head)
        except Exception:
            log.exception("checking the credentials of %s failed", self._peer)
            detail = "The server could not check the credentials; its log says why."
            await self._send(error_response(500, detail), work, True)
            return True
        if principal is None and failure is not None:
            await self._send(error_response(401, failure), work, close)
            return close
        if work.late_error is not None:
            err = work.late_error
            await self._send(error_response(err.status, err.detail), work, close)
            return close
        request = HttpRequest(
            method=head.method,
            target=head.target,
            http_version=head.http_version,
            headers=head.headers,
            body=work.body,
            principal=principal,
            is_mpost=work.is_mpost,
            mpost_ns=work.mpost_ns,
        )
        try:
            response = await self._server.app(request)
        except AuthenticationRequired as exc:
            response = error_response(401, exc.detail)
        except ProtocolError as exc:
            response = error_response(exc.status, exc.detail, exc.cim_error)
        except Exception:
            log.exception("the application failed on a request from %s", self._peer)
            await self._send(error_response(500, "Internal server error."), work, True)
            return True
        if work.is_mpost:
            response.headers = mpost_response_headers(response.headers, work.mpost_ns)
        return await self._send(response, work, close) or close

    async def _authenticate(self, head: RequestHead) -> tuple[Principal | None, str | None]:
        """(principal, None), or (None, why) for a 401, or (None, None) when anonymous is fine.

        DSP0200 §1.7 of our reference: HTTP Basic (RFC 7617); the 401 carries a challenge.
        """
        if self._peer_ids is not None and self._loop.time() >= self._peer_recheck:
            self._identify_peer()
        if self._peer_principal is not None:
            return self._peer_principal, None
        authorization = head.headers.get("authorization")
        server = self._server
        if authorization is None or server.authenticator is None:
            if server.require_auth or self._via is Via.UNIX:
                return None, "Authentication required."
            return None, None
        cached = self._auth_cache
        now = self._loop.time()
        if cached is not None and cached[0] == authorization and now < cached[2]:
            return cached[1], None
        # Past `_AUTH_RECHECK`, the answer is asked for again (recalled unless the users file
        # changed): a user deleted, or whose password or role changed, does not go on for
        # the life of a keep-alive connection.
        credentials = parse_basic_authorization(authorization)
        if credentials is None:
            self._refused_login(None, "a malformed Authorization header")
            return None, "Malformed Authorization header; use HTTP Basic."
        known, principal = server.authenticator.recall_basic(*credentials)
        user = credentials[0]
        address = self._address()
        if not known:
            key = (address, authorization)
            check = server.auth_checks.get(key)
            if check is None or check.work.cancelled():
                wait = server.throttle.begin(address, user)
                if wait > 0:
                    return None, (
                        f"Too many wrong passwords for {user} from this address; its "
                        f"passwords are not checked for another {math.ceil(wait)} s."
                    )
                # scrypt takes tens of milliseconds on purpose: keep it off the event loop.
                work = server.auth_pool.submit(server.authenticator.verify_basic, *credentials)
                check = _Check(key, user, work, asyncio.wrap_future(work, loop=self._loop))
                server.auth_checks[key] = check
                loop = self._loop

                def ended(_: object, check: _Check = check) -> None:
                    # On the check's thread: count it on the loop (unless that has closed).
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(server.check_ended, check)

                work.add_done_callback(ended)
            check.waiters += 1
            self._auth_check = check
            # Each connection waits on its own: one that leaves does not cancel the others'.
            self._auth_wait = asyncio.shield(check.answer)
            try:
                principal = await self._auth_wait
            finally:
                self._auth_wait = None
                self._leave_check()
        if principal is None:
            self._refused_login(user, "a wrong password or an unknown user")
            return None, "Invalid user name or password."
        principal = dataclasses.replace(principal, via=self._via, peer=self._peer)
        self._auth_cache = (authorization, principal, now + _AUTH_RECHECK)
        return principal, None

    def _leave_check(self) -> None:
        """This connection no longer waits for its password check. A check nobody waits for
        is dropped from the queue (connect, send a made-up password, leave, again: the queue
        stays bounded by the connections)."""
        check, self._auth_check = self._auth_check, None
        if check is not None:
            check.waiters -= 1
            # Only a check still queued can be dropped; one that runs ends and is counted.
            if check.waiters == 0 and check.work.cancel():
                self._server.forget_check(check)

    def _refused_login(self, user: str | None, why: str) -> None:
        """A 401 for credentials that were given: no CIM request was read, so the audit log
        has no line for it; the server log says who tried from where (the address without
        its port, so the log's repeat filter says a storm once a minute, with its count)."""
        who = f"user {user!r}" if user is not None else "a client"
        log.warning("login refused: %s from %s gave %s", who, self._address(), why)

    def _address(self) -> str:
        """The peer without its port (what a login storm or a guesser has in common)."""
        return self._peer.rsplit(":", 1)[0] if self._via is not Via.UNIX else self._peer

    async def _send_error(self, status: int, detail: str) -> None:
        response = error_response(status, detail)
        head = status_line(status) + date_header() + encode_headers(response.headers)
        self._write(head + b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    async def _send(self, response: HttpResponse, work: _Work, close: bool) -> bool:
        """Write one response; True when the connection must close after it."""
        try:
            head = status_line(response.status) + date_header() + encode_headers(response.headers)
        except (ValueError, UnicodeEncodeError):
            log.exception("the application returned an unsendable header for %s", self._peer)
            response = error_response(500, "Internal server error.")
            head = status_line(500) + date_header() + encode_headers(response.headers)
            close = True
        if close:
            head += b"Connection: close\r\n"
        elif work.head.http_version == "1.0":
            head += b"Connection: keep-alive\r\n"  # RFC 9112 §9.3: 1.0 persistence is opt-in
        body = response.body
        if isinstance(body, bytes | bytearray | memoryview):
            self._write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
            return close
        if work.head.http_version == "1.0":
            # No chunked coding in HTTP/1.0 (RFC 9112 §7): collect, then send with a length.
            data = b"".join([chunk async for chunk in _aiter(body)])
            self._write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(data), data))
            return close
        trailers = response.failure_trailers
        if trailers is not None and _accepts_trailers(work.head.headers.get("te")):
            head += b"Trailer: %s\r\n" % ", ".join(response.trailer_names).encode("ascii")
        else:
            trailers = None
        return await self._send_chunked(head, body, trailers)

    async def _send_chunked(
        self,
        head: bytes,
        body: Iterable[bytes] | AsyncIterator[bytes],
        trailers: Callable[[Exception], list[tuple[str, str]]] | None = None,
    ) -> bool:
        """Stream a body (RFC 9112 §7.1), waiting for the client whenever the transport's
        buffer is full, so a large enumeration holds one chunk in memory, not the whole reply.
        `trailers`: what to say after the last chunk if the body fails (see HttpResponse)."""
        self._write(head + b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            async for chunk in _aiter(body):
                if self._closed:
                    return True
                if chunk:
                    self._writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                    if self._write_paused:
                        await self._drain()
                    else:
                        # Let other connections in between chunks: a 16,000-bay enumeration
                        # to a fast reader would otherwise hold the event loop for its whole
                        # ~250 ms, and every other request (a failover's submit) would wait.
                        await asyncio.sleep(0)
        except Exception as exc:
            # The status line is gone already; an unfinished chunked body is how HTTP/1.1 says
            # "this response is broken" (RFC 9112 §8: the message is incomplete). A client
            # that accepts trailers also hears why, after the last chunk (DSP0200's
            # CIMStatusCode trailer, as SFCB sends it); the connection ends either way.
            log.exception("the response body of a request from %s failed mid-stream", self._peer)
            if trailers is not None and not self._closed:
                try:
                    fields = encode_headers(trailers(exc))
                except Exception:
                    log.exception("the trailers of a failed response could not be made")
                    return True
                self._write(b"0\r\n" + fields + b"\r\n")
            return True
        self._write(b"0\r\n\r\n")
        return False

    def _write(self, data: bytes) -> None:
        if not self._closed and self._transport is not None:
            self._transport.write(data)

    def _writelines(self, data: Sequence[bytes]) -> None:
        if not self._closed and self._transport is not None:
            self._transport.writelines(data)

    async def _drain(self) -> None:
        while self._write_paused and not self._closed:
            waiter = self._loop.create_future()
            self._drain_waiter = waiter
            try:
                await asyncio.wait_for(waiter, self._limits.send_timeout)
            except TimeoutError:
                log.info("client %s stopped reading; connection cut", self._peer)
                if self._transport is not None:
                    self._transport.abort()
                raise ConnectionError("client stopped reading") from None

    def _wake_writer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._drain_waiter = None

    # ---- closing -----------------------------------------------------------------------------

    def _start_linger(self) -> None:
        """Close after an error without making the client lose our answer.

        Closing a socket with unread input makes the kernel send a reset, which can destroy the
        response in flight (RFC 9112 §9.6). So: send FIN, keep discarding input until the client
        closes too or `linger_timeout` passes, then close.
        """
        transport = self._transport
        if self._closed or transport is None:
            return
        self._state = _DEAD
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = self._loop.call_later(self._limits.linger_timeout, self._close_transport)

    def _close_transport(self) -> None:
        self._state = _DEAD
        if self._transport is not None and not self._closed:
            self._transport.close()

    def shutdown(self) -> None:
        """Server stopping: close now if idle, else after the response in progress."""
        self._ending = True
        if self._worker is None:
            self._close_transport()


def _accepts_trailers(te: str | None) -> bool:
    """RFC 9110 §10.1.4: `TE: trailers` says the client reads trailer fields (the OpenPegasus
    client sends "chunked, trailers"; wbemcli "trailers")."""
    if not te:
        return False
    return any(part.split(";", 1)[0].strip().lower() == "trailers" for part in te.split(","))


async def _aiter(body: Iterable[bytes] | AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if isinstance(body, AsyncIterator):
        async for chunk in body:
            yield chunk
    else:
        for chunk in body:
            yield chunk


class HttpServer:
    """A running transport. `await close()` stops listening and ends every connection."""

    def __init__(
        self,
        state: _ServerState,
        servers: list[asyncio.Server],
        listeners: tuple[BoundListener, ...],
    ) -> None:
        self._state = state
        self._servers = servers
        self.listeners = listeners
        self._closed = asyncio.Event()

    @property
    def ports(self) -> tuple[int, ...]:
        """The bound TCP and TLS ports, in the order the listeners were given."""
        return tuple(b.port for b in self.listeners if b.port is not None)

    @property
    def connection_count(self) -> int:
        return len(self._state.connections)

    def set_application(self, app: Application) -> None:
        """The application that answers from the next request on (a server may listen
        before its application is ready, with one that answers 503 meanwhile)."""
        self._state.app = app

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; let responses in progress finish for up to `grace` seconds."""
        if self._state.closing:
            await self._closed.wait()
            return
        self._state.closing = True
        for server in self._servers:
            server.close()
        for conn in list(self._state.connections):
            conn.shutdown()
        deadline = asyncio.get_running_loop().time() + grace
        while self._state.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self._state.connections):
            if conn._transport is not None:
                conn._transport.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        for bound in self.listeners:
            if bound.path is not None:
                with contextlib.suppress(OSError):
                    bound.path.unlink()
        self._state.auth_pool.shutdown(wait=False, cancel_futures=True)
        self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> HttpServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(
    app: Application,
    listeners: Sequence[Listener],
    *,
    authenticator: Authenticator | None = None,
    require_auth: bool = True,
    limits: TransportLimits | None = None,
) -> HttpServer:
    """Start listening on every listener and return the running server.

    `require_auth` applies to TCP and TLS: without an `authenticator` it must be False. Over
    the Unix socket the peer's account is the principal (`authenticator.identify_peer`; every
    local account when there is no authenticator) and Basic is asked for only if it is refused.
    """
    if (
        require_auth
        and authenticator is None
        and any(not isinstance(listener, UnixListener) for listener in listeners)
    ):
        raise ValueError("require_auth needs an authenticator for TCP/TLS listeners")
    state = _ServerState(app, authenticator, require_auth, limits or TransportLimits())
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    bound: list[BoundListener] = []
    try:
        for listener in listeners:
            server, item = await _listen(loop, state, listener)
            servers.append(server)
            bound.append(item)
    except BaseException:
        for server in servers:
            server.close()
        state.auth_pool.shutdown(wait=False)
        raise
    return HttpServer(state, servers, tuple(bound))


async def _listen(
    loop: asyncio.AbstractEventLoop, state: _ServerState, listener: Listener
) -> tuple[asyncio.Server, BoundListener]:
    if isinstance(listener, UnixListener):
        path = listener.path
        _prepare_unix_path(path)
        server = await loop.create_unix_server(
            lambda: _Connection(state, Via.UNIX), str(path), backlog=1024
        )
        # Any local user may connect: who they are is read from the socket (SO_PEERCRED).
        os.chmod(path, 0o666)
        return server, BoundListener(listener, Via.UNIX, None, None, path)
    via = Via.HTTPS if isinstance(listener, TLSListener) else Via.HTTP
    context = listener.context if isinstance(listener, TLSListener) else None
    server = await loop.create_server(
        lambda: _Connection(state, via),
        listener.host,
        listener.port,
        ssl=context,
        # A client that never finishes its handshake is a slow client too.
        ssl_handshake_timeout=state.limits.header_timeout if context else None,
        reuse_address=True,
        backlog=1024,
    )
    sockname = server.sockets[0].getsockname()
    return server, BoundListener(listener, via, str(sockname[0]), int(sockname[1]), None)


def _prepare_unix_path(path: Path) -> None:
    """Create the socket's directory; remove a socket file no server answers on any more."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except OSError:
        path.unlink()  # stale: left by a server that died
        return
    finally:
        probe.close()
    raise OSError(f"another server is listening on {path}")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop for the transport: uvloop when installed, else asyncio's default.

    Measured at the HTTP floor (bench/http_floor.py): 20.4 µs of server CPU per call on uvloop
    against 44.9 µs on asyncio's loop (see `provider.http.parser` for the setting).
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` to completion on `new_event_loop()` (the entry point for `serve`)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())
