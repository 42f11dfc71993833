"""The HTTP floor: our transport with an application that returns a fixed ~250-byte XML reply.

Everything the CIM layer adds is measured against this figure (SPEC §5: "CIM overhead small
next to the bare HTTP floor of the same server stack"). The server runs in a subprocess so
that client and server are separate processes sharing the machine's cores, as in the
OpenPegasus figures; 8 keep-alive connections, closed loop, median of 3 runs.

    python bench/http_floor.py [--duration 5] [--runs 3] [--connections 8] [--auth]

Measured on the 2-core development machine (shared with other work at the time), uvloop:
median of 3 runs of 5 s, 43,123 calls/s, p50 0.171 ms, p99 0.445 ms; with `--auth` (Basic,
verified once per connection) 48,026 calls/s, p50 0.150 ms, p99 0.348 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import build_post, median_line, run_load  # noqa: E402
from provider.http.auth import InMemoryAuthenticator  # noqa: E402
from provider.http.messages import HttpRequest, HttpResponse  # noqa: E402
from provider.http.server import TCPListener, run, serve  # noqa: E402

REPLY = (
    b'<?xml version="1.0" encoding="utf-8" ?>\n'
    b'<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">'
    b'<SIMPLERSP><IMETHODRESPONSE NAME="GetInstance"><IRETURNVALUE>'
    b'<INSTANCE CLASSNAME="GM_Bench"></INSTANCE>'
    b"</IRETURNVALUE></IMETHODRESPONSE></SIMPLERSP></MESSAGE></CIM>\n"
)
REQUEST_BODY = (
    b'<?xml version="1.0" encoding="utf-8" ?>\n'
    b'<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">'
    b'<SIMPLEREQ><IMETHODCALL NAME="GetInstance"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
    b'<NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>\n'
)
USER, PASSWORD = "bench", "bench-password"


async def fixed_reply(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        200,
        [("Content-Type", 'application/xml; charset="utf-8"'), ("CIMOperation", "MethodResponse")],
        REPLY,
    )


async def serve_until_stdin_closes(auth: bool) -> None:
    authenticator = InMemoryAuthenticator({USER: PASSWORD}) if auth else None
    server = await serve(
        fixed_reply, [TCPListener()], authenticator=authenticator, require_auth=auth
    )
    print(server.ports[0], flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    await server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--auth", action="store_true", help="require HTTP Basic (cached)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run(lambda: serve_until_stdin_closes(args.auth))
        return 0
    command = [sys.executable, __file__, "--serve"] + (["--auth"] if args.auth else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        headers = {
            "CIMOperation": "MethodCall",
            "CIMMethod": "GetInstance",
            "CIMObject": "root/cimv2",
        }
        credentials = {"user": USER, "password": PASSWORD} if args.auth else {}
        request = build_post("/cimom", REQUEST_BODY, headers, **credentials)
        print(f"HTTP floor: our transport, {len(REPLY)}-byte reply, {args.connections} connections")
        results = []
        for number in range(args.runs):
            result = run_load(
                request, port=port, connections=args.connections, duration=args.duration
            )
            print(f"run {number + 1}: {result.line()}")
            results.append(result)
        print(median_line(results))
        proc.stdin.close()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
