"""Soak: hold a mixed load at about 80 % of the measured throughput and watch for errors and
memory growth (issue 7: "a 10-minute soak ... shows no errors and flat memory").

1. Starts a real `gm-provider serve` (tests/harness.py: SQLite, simulated hardware, the example
   inventory) and checks that each request of the mix succeeds (HTTP 200, no CIM ERROR).
2. Measures throughput: closed loop, keep-alive, `--connections` connections, the mix
   GetInstance (a device bay) / EnumerateInstances (GM_DomainGroup) / InvokeMethod getRole
   round-robin (bench/loadgen.py `run_load_async`).
3. Holds `--load` (0.8) of it for `--minutes`: the same connections, each request released on
   a shared schedule (an open-loop pace, so the server never runs flat out), in windows of
   `--window` seconds; the server's RSS (/proc/<pid>/status VmRSS) is sampled every
   `--rss-every` seconds.

Prints one line per window and a summary: calls, errors (anything but HTTP 200, or a
connection that failed; must be 0), throughput, p50/p99, RSS first/last/max. Exit status 1 on
errors or when the RSS of the last quarter exceeds that of the second quarter (after warm-up)
by more than 10 %.

    python bench/soak.py --minutes 10            # `make soak`
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pywbem  # noqa: E402

from bench.loadgen import (  # noqa: E402
    LoadResult,
    _Client,
    _new_loop,
    _Shared,
    build_post,
    run_load_async,
)
from tests.harness import USERS, ProviderHandle, provider_process  # noqa: E402

_NS = '<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'
_RESERVOIR = 200_000  # latency samples kept over the whole soak for p50/p99


def _xml(inner: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\n'
        '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">'
        f"<SIMPLEREQ>{inner}</SIMPLEREQ></MESSAGE></CIM>\n"
    ).encode()


def mix() -> list[tuple[str, dict[str, str], bytes]]:
    """(name, headers, body) of the three requests of the mix."""
    get_instance = _xml(
        f'<IMETHODCALL NAME="GetInstance">{_NS}<IPARAMVALUE NAME="InstanceName">'
        '<INSTANCENAME CLASSNAME="GM_DeviceBay">'
        '<KEYBINDING NAME="EnclosureName"><KEYVALUE VALUETYPE="string">enc01</KEYVALUE>'
        '</KEYBINDING><KEYBINDING NAME="BayName"><KEYVALUE VALUETYPE="string">12</KEYVALUE>'
        "</KEYBINDING></INSTANCENAME></IPARAMVALUE></IMETHODCALL>"
    )
    enumerate_ = _xml(
        f'<IMETHODCALL NAME="EnumerateInstances">{_NS}<IPARAMVALUE NAME="ClassName">'
        '<CLASSNAME NAME="GM_DomainGroup"/></IPARAMVALUE></IMETHODCALL>'
    )
    get_role = _xml(
        f'<METHODCALL NAME="getRole"><LOCALCLASSPATH>{_NS}<CLASSNAME NAME="GM_GroupManager"/>'
        "</LOCALCLASSPATH></METHODCALL>"
    )
    op = {"CIMOperation": "MethodCall", "CIMObject": "root%2Fcimv2"}
    return [
        ("GetInstance", {**op, "CIMMethod": "GetInstance"}, get_instance),
        ("EnumerateInstances", {**op, "CIMMethod": "EnumerateInstances"}, enumerate_),
        (
            "getRole",
            {**op, "CIMMethod": "getRole", "CIMObject": "root%2Fcimv2%3AGM_GroupManager"},
            get_role,
        ),
    ]


def requests(user: str) -> list[bytes]:
    return [
        build_post("/cimom", body, headers, user=user, password=USERS[user][1])
        for _, headers, body in mix()
    ]


def check_mix(gm: ProviderHandle) -> None:
    """Each request of the mix succeeds once before the load starts (so a 200 under load
    means what it should)."""
    conn = gm.connection("reader")
    bay = pywbem.CIMInstanceName("GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "12"})
    assert conn.GetInstance(bay)["BayName"] == "12"
    assert conn.EnumerateInstances("GM_DomainGroup")
    rv, out = conn.InvokeMethod("getRole", "GM_GroupManager")
    assert rv == 0 and out["Role"] == "active"


class _Pacer:
    """A shared schedule: request k may start at start + k / rate."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.perf_counter()

    def slot(self, now: float) -> float:
        # A connection that falls behind does not get to burst: slots in the past are skipped.
        self.next = max(self.next, now - self.interval)
        slot = self.next
        self.next += self.interval
        return slot


class _PacedClient(_Client):
    """bench/loadgen.py's closed-loop client, each request held until its slot."""

    pacer: _Pacer

    def _send(self) -> None:
        now = time.perf_counter()
        wait = self.pacer.slot(now) - now
        if wait <= 0:
            super()._send()
            return
        asyncio.get_running_loop().call_later(wait, self._send_if_open)

    def _send_if_open(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            super()._send()


async def paced_load(
    reqs: Sequence[bytes], port: int, connections: int, rate: float, duration: float
) -> LoadResult:
    """Like `run_load_async`, paced at `rate` calls/s over all connections."""
    loop = asyncio.get_running_loop()
    begin = time.perf_counter()
    shared = _Shared(None, begin + duration, begin)
    pacer = _Pacer(rate)

    async def connection() -> None:
        while True:
            done: asyncio.Future[bool] = loop.create_future()

            def client(done: asyncio.Future[bool] = done) -> _PacedClient:
                c = _PacedClient(reqs, shared, done)
                c.pacer = pacer
                return c

            await loop.create_connection(client, "127.0.0.1", port)
            if await done or time.perf_counter() >= shared.stop_at:
                return

    await asyncio.gather(*(connection() for _ in range(connections)))
    measured = (shared.last - shared.first) if shared.first is not None else 0.0
    return LoadResult(shared.calls, measured, shared.latencies, shared.statuses, shared.reconnects)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Soak:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    samples: list[float] = field(default_factory=list)
    seen: int = 0
    rss: list[tuple[float, float]] = field(default_factory=list)

    def add(self, result: LoadResult, rng: random.Random) -> None:
        self.calls += result.calls
        self.seconds += result.duration
        self.errors += sum(n for status, n in result.statuses.items() if status != 200)
        for latency in result.latencies:  # reservoir sampling (Vitter's algorithm R)
            self.seen += 1
            if len(self.samples) < _RESERVOIR:
                self.samples.append(latency)
            else:
                j = rng.randrange(self.seen)
                if j < _RESERVOIR:
                    self.samples[j] = latency

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000.0


async def soak(gm: ProviderHandle, args: argparse.Namespace) -> int:
    reqs = requests("reader")
    assert gm.proc is not None
    pid = gm.proc.pid
    measured = await run_load_async(
        reqs, port=gm.port, connections=args.connections, duration=args.measure, warmup=1.0
    )
    rate = measured.calls_per_s * args.load
    print(
        f"soak: throughput, closed loop, {args.connections} connections, mix of "
        f"{', '.join(name for name, _, _ in mix())}: {measured.line().strip()}",
        flush=True,
    )
    print(
        f"soak: holding {rate:.0f} calls/s ({args.load:.0%}) for {args.minutes:g} min, "
        f"RSS every {args.rss_every:g} s",
        flush=True,
    )
    total = Soak()
    rng = random.Random(7)
    stop = time.monotonic() + args.minutes * 60.0
    start = time.monotonic()

    async def sample_rss() -> None:
        while True:
            total.rss.append((time.monotonic() - start, rss_mb(pid)))
            await asyncio.sleep(args.rss_every)

    sampler = asyncio.create_task(sample_rss())
    try:
        while (left := stop - time.monotonic()) > 0.5:
            result = await paced_load(reqs, gm.port, args.connections, rate, min(args.window, left))
            total.add(result, rng)
            if gm.proc.poll() is not None:
                print("soak: the provider died", flush=True)
                total.errors += 1
                break
            errors = sum(n for s, n in result.statuses.items() if s != 200)
            print(
                f"  t={time.monotonic() - start:6.0f} s {result.line().strip()}  "
                f"errors {errors}  rss {total.rss[-1][1]:.1f} MB",
                flush=True,
            )
    finally:
        sampler.cancel()
    return report(total)


def report(total: Soak) -> int:
    rss = [mb for _, mb in total.rss]
    print(
        f"soak: {total.calls} calls in {total.seconds:.0f} s, errors {total.errors}, "
        f"{total.calls / total.seconds:.0f} calls/s, p50 {total.percentile_ms(50):.3f} ms, "
        f"p99 {total.percentile_ms(99):.3f} ms"
    )
    quarter = max(1, len(rss) // 4)
    early = statistics.mean(rss[quarter : 2 * quarter] or rss[:1])
    late = statistics.mean(rss[-quarter:])
    growth = (late - early) / early
    print(
        f"soak: RSS first {rss[0]:.1f} MB, last {rss[-1]:.1f} MB, max {max(rss):.1f} MB "
        f"({len(rss)} samples; last quarter {growth:+.1%} against the second: "
        f"{'flat' if growth <= 0.10 else 'GROWING'})"
    )
    return 0 if total.errors == 0 and growth <= 0.10 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.8, help="fraction of the throughput")
    parser.add_argument("-c", "--connections", type=int, default=8)
    parser.add_argument("--measure", type=float, default=5.0, help="seconds of measurement")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per report line")
    parser.add_argument("--rss-every", type=float, default=5.0)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="gm-soak-") as tmp,
        provider_process(
            Path(tmp), config={"server": {"max_connections": 4 * args.connections + 16}}
        ) as gm,
    ):
        check_mix(gm)
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            return runner.run(soak(gm, args))


if __name__ == "__main__":
    sys.exit(main())
