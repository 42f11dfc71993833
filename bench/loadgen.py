"""Closed-loop keep-alive HTTP load generator for loopback benchmarks.

N connections; each sends one pre-built request, waits for the whole response, records the
latency, and sends the next (closed loop: the offered load follows the server's speed, as in
the OpenPegasus figures of SPEC §5). Requests are raw bytes built once, responses are framed
by Content-Length or chunked coding with a few `bytes.find` calls, so the generator spends
as little of the shared CPU as possible. Runs on uvloop when it is installed.

Library use (other benches):

    from bench.loadgen import build_post, run_load
    result = run_load(build_post("/cimom", body, {"CIMOperation": "MethodCall"}), port=port)
    print(result.line())

Script use:

    python bench/loadgen.py --port 5988 --body request.xml --header CIMOperation:MethodCall
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import ssl
import statistics
import sys
import time
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

__all__ = ["LoadResult", "build_post", "load", "main", "run_load"]

MAX_SAMPLES = 2_000_000  # latency samples kept (16 MB); calls beyond it are counted only


def build_post(
    target: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    user: str | None = None,
    password: str | None = None,
    method: str = "POST",
) -> bytes:
    """A complete HTTP/1.1 request with Content-Length (and Basic credentials if given)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines.append('Content-Type: application/xml; charset="utf-8"')
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
        lines.append(f"Authorization: Basic {token}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(slots=True)
class LoadResult:
    """What one run measured."""

    calls: int
    duration: float
    latencies: array[float] = field(repr=False)
    statuses: dict[int, int]
    reconnects: int

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.duration if self.duration else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))] * 1000.0

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    def line(self) -> str:
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.calls_per_s:10.0f} calls/s  p50 {self.p50_ms:6.3f} ms  "
            f"p99 {self.p99_ms:6.3f} ms  ({self.calls} calls in {self.duration:.2f} s; "
            f"status {statuses}; reconnects {self.reconnects})"
        )


class _Shared:
    def __init__(self, requests_limit: int | None, stop_at: float, record_from: float) -> None:
        self.requests_limit = requests_limit
        self.started = 0
        self.stop_at = stop_at
        self.record_from = record_from
        self.calls = 0
        self.latencies: array[float] = array("d")
        self.statuses: dict[int, int] = {}
        self.reconnects = 0
        self.first: float | None = None
        self.last = 0.0

    def may_start(self, now: float) -> bool:
        if now >= self.stop_at:
            return False
        if self.requests_limit is not None and self.started >= self.requests_limit:
            return False
        self.started += 1
        return True


class _Client(asyncio.Protocol):
    """One closed-loop connection."""

    def __init__(self, requests: Sequence[bytes], shared: _Shared, done: asyncio.Future[bool]):
        self._requests = requests
        self._next = 0
        self._shared = shared
        self._done = done
        self._buf = bytearray()
        self._sent_at = 0.0
        self._transport: asyncio.Transport | None = None
        self._need = -1  # total bytes of the current response once known; -2: chunked

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        now = time.perf_counter()
        if not self._shared.may_start(now):
            self._finish(True)
            return
        request = self._requests[self._next]
        self._next = (self._next + 1) % len(self._requests)
        self._sent_at = now
        self._need = -1
        assert self._transport is not None
        self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while self._complete():
            pass

    def _complete(self) -> bool:
        buf = self._buf
        if self._need == -1:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                return False
            head = bytes(buf[:head_end]).lower()
            status = int(head[9:12])
            if status == 100:
                del buf[: head_end + 4]
                return True
            self._status = status
            self._close_after = b"\r\nconnection: close" in head
            self._body_at = head_end + 4
            cl = head.find(b"\r\ncontent-length:")
            if cl >= 0:
                line_end = head.find(b"\r\n", cl + 2)
                value = head[cl + 17 : line_end if line_end >= 0 else len(head)]
                self._need = self._body_at + int(value)
            elif b"\r\ntransfer-encoding: chunked" in head:
                self._need = -2
                self._chunk_at = self._body_at
            else:
                self._need = self._body_at
        if self._need == -2:
            end = self._chunked_end()
            if end < 0:
                return False
            self._need = end
        if len(buf) < self._need:
            return False
        del buf[: self._need]
        self._record()
        if not self._close_after:
            self._send()
        return False

    def _chunked_end(self) -> int:
        buf = self._buf
        pos = self._chunk_at
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return -1
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end == line_end:
                    return line_end + 4
                return -1 if trailer_end < 0 else trailer_end + 4
            nxt = line_end + 2 + size + 2
            if len(buf) < nxt:
                return -1
            pos = self._chunk_at = nxt

    def _record(self) -> None:
        now = time.perf_counter()
        shared = self._shared
        shared.statuses[self._status] = shared.statuses.get(self._status, 0) + 1
        if now >= shared.record_from:
            if shared.first is None:
                shared.first = self._sent_at
            shared.calls += 1
            shared.last = now
            if len(shared.latencies) < MAX_SAMPLES:
                shared.latencies.append(now - self._sent_at)
        if self._close_after:
            shared.reconnects += 1
            assert self._transport is not None
            self._transport.close()
            self._finish(False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(False)

    def _finish(self, finished: bool) -> None:
        if not self._done.done():
            self._done.set_result(finished)
        if finished and self._transport is not None:
            self._transport.close()


async def run_load_async(
    requests: bytes | Sequence[bytes],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    unix_path: str | Path | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connections: int = 8,
    duration: float = 5.0,
    warmup: float = 0.5,
    max_requests: int | None = None,
) -> LoadResult:
    """Drive the server for `warmup + duration` seconds (or until `max_requests` calls have
    started) and measure the calls completed after the warm-up."""
    reqs = [requests] if isinstance(requests, bytes) else list(requests)
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    shared = _Shared(max_requests, begin + warmup + duration, begin + warmup)

    async def connection() -> None:
        while True:
            done: asyncio.Future[bool] = loop.create_future()
            client = functools.partial(_Client, reqs, shared, done)
            if unix_path is not None:
                await loop.create_unix_connection(client, str(unix_path), ssl=ssl_context)
            else:
                await loop.create_connection(
                    client,
                    host,
                    port or 0,
                    ssl=ssl_context,
                    server_hostname=host if ssl_context else None,
                )
            if await done:
                return
            if time.perf_counter() >= shared.stop_at:
                return

    await asyncio.gather(*(connection() for _ in range(connections)))
    measured = (shared.last - shared.first) if shared.first is not None else 0.0
    return LoadResult(shared.calls, measured, shared.latencies, shared.statuses, shared.reconnects)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_load(requests: bytes | Sequence[bytes], **options: object) -> LoadResult:
    """`run_load_async` on a fresh (uvloop) event loop; the options are the same."""
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(run_load_async(requests, **options))  # type: ignore[arg-type]


load = run_load


def median_line(results: Sequence[LoadResult]) -> str:
    """Medians over runs: calls/s, p50, p99."""
    rate = statistics.median(r.calls_per_s for r in results)
    p50 = statistics.median(r.p50_ms for r in results)
    p99 = statistics.median(r.p99_ms for r in results)
    return f"median of {len(results)}: {rate:.0f} calls/s  p50 {p50:.3f} ms  p99 {p99:.3f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--unix", help="Unix socket path instead of TCP")
    parser.add_argument("--target", default="/cimom")
    parser.add_argument("--body", type=Path, help="file with the request body")
    parser.add_argument("--header", action="append", default=[], help="Name:Value (repeatable)")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("-n", "--requests", type=int, help="stop after this many calls")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.port is None and args.unix is None:
        parser.error("give --port or --unix")
    body = args.body.read_bytes() if args.body else b'<?xml version="1.0"?>\n'
    headers = dict(h.split(":", 1) for h in args.header)
    request = build_post(args.target, body, headers, user=args.user, password=args.password)
    results = []
    for run in range(args.runs):
        result = run_load(
            request,
            host=args.host,
            port=args.port,
            unix_path=args.unix,
            connections=args.connections,
            duration=args.duration,
            max_requests=args.requests,
        )
        print(f"run {run + 1}: {result.line()}")
        results.append(result)
    print(median_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
