"""CIM calls/s next to the bare HTTP floor of the same server stack, run side by side.

Starts two servers as subprocesses: the HTTP floor (our transport with a handler returning a
fixed ~250-byte body, `bench/http_floor.py --serve --auth`) and a real `gm-provider serve`
(SQLite, simulated hardware, an inventory generated with `--bays` device bays). Then, for
each scenario, a closed-loop keep-alive load at `--connections` connections, `--runs` runs,
alternating floor and CIM so machine noise hits both alike. Prints medians and the ratio
CIM/floor (SPEC 5: "CIM overhead small next to the bare HTTP floor"), then the OpenPegasus
2.14 figures measured on this machine class (SPEC 5) for comparison.

    python bench/cim_vs_http.py [--duration 3] [--runs 3] [--connections 8] [--bays 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.http_floor import PASSWORD as FLOOR_PASSWORD  # noqa: E402
from bench.http_floor import REQUEST_BODY as FLOOR_BODY  # noqa: E402
from bench.http_floor import USER as FLOOR_USER  # noqa: E402
from bench.loadgen import LoadResult, build_post, run_load  # noqa: E402
from tests.harness import USERS, configure  # noqa: E402

# SPEC 5: OpenPegasus 2.14 cimserver on this machine class, 8 connections.
PEGASUS = {
    "GetInstance": "14-15k/s (p50 0.46 ms)",
    "InvokeMethod": "6-8k/s out-of-process providers, 9.8k/s in-process",
    "EnumerateInstances": "78-92/s (1,000 instances)",
}


def _xml(inner: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\n'
        '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">'
        f"<SIMPLEREQ>{inner}</SIMPLEREQ></MESSAGE></CIM>\n"
    ).encode()


_NS = '<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>'


def scenarios(node: str, bays: int = 1000) -> dict[str, tuple[dict[str, str], bytes]]:
    """Request headers and body per scenario; the enumeration returns all `bays` bays."""
    get_instance = _xml(
        f'<IMETHODCALL NAME="GetInstance">{_NS}<IPARAMVALUE NAME="InstanceName">'
        '<INSTANCENAME CLASSNAME="GM_GroupManager"><KEYBINDING NAME="Name">'
        f'<KEYVALUE VALUETYPE="string">{node}</KEYVALUE></KEYBINDING></INSTANCENAME>'
        "</IPARAMVALUE></IMETHODCALL>"
    )
    method = _xml(
        f'<METHODCALL NAME="getRole"><LOCALCLASSPATH>{_NS}<CLASSNAME NAME="GM_GroupManager"/>'
        "</LOCALCLASSPATH></METHODCALL>"
    )
    enumerate_bays = _xml(
        f'<IMETHODCALL NAME="EnumerateInstances">{_NS}<IPARAMVALUE NAME="ClassName">'
        '<CLASSNAME NAME="GM_DeviceBay"/></IPARAMVALUE></IMETHODCALL>'
    )
    return {
        "GetInstance": (
            {"CIMMethod": "GetInstance", "CIMObject": "root%2Fcimv2"},
            get_instance,
        ),
        "InvokeMethod": (
            {"CIMMethod": "getRole", "CIMObject": "root%2Fcimv2%3AGM_GroupManager"},
            method,
        ),
        f"EnumerateInstances({bays})": (
            {"CIMMethod": "EnumerateInstances", "CIMObject": "root%2Fcimv2"},
            enumerate_bays,
        ),
    }


def _median(results: list[LoadResult]) -> tuple[float, float, float]:
    return (
        statistics.median(r.calls_per_s for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--bays", type=int, default=1000)
    args = parser.parse_args()

    from bench.inventory_gen import write_inventory

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    floor_cmd = [sys.executable, str(ROOT / "bench" / "http_floor.py"), "--serve", "--auth"]
    with (
        tempfile.TemporaryDirectory(prefix="gm-bench-") as tmp,
        subprocess.Popen(
            floor_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        ) as floor,
    ):
        assert floor.stdout is not None and floor.stdin is not None
        floor_port = int(floor.stdout.readline())
        inventory = write_inventory(Path(tmp) / "inventory.toml", bays=args.bays)
        gm = configure(Path(tmp), inventory=inventory)
        gm.start(timeout=120)
        try:
            floor_req = build_post(
                "/cimom",
                FLOOR_BODY,
                {
                    "CIMOperation": "MethodCall",
                    "CIMMethod": "GetInstance",
                    "CIMObject": "root/cimv2",
                },
                user=FLOOR_USER,
                password=FLOOR_PASSWORD,
            )
            user, password = "admin", USERS["admin"][1]
            print(
                f"loopback, {args.connections} keep-alive connections, closed loop, "
                f"{args.runs} runs x {args.duration:.0f} s, medians; server and load generator "
                "share the 2 cores"
            )
            print(
                f"{'scenario':<26}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
                f"{'floor/s':>10}{'CIM/floor':>10}   OpenPegasus 2.14 (SPEC 5)"
            )
            for name, (headers, body) in scenarios(gm.node, args.bays).items():
                request = build_post(
                    "/cimom",
                    body,
                    {"CIMOperation": "MethodCall", **headers},
                    user=user,
                    password=password,
                )
                floor_results, cim_results = [], []
                for _ in range(args.runs):
                    floor_results.append(
                        run_load(
                            floor_req,
                            port=floor_port,
                            connections=args.connections,
                            duration=args.duration,
                        )
                    )
                    result = run_load(
                        request, port=gm.port, connections=args.connections, duration=args.duration
                    )
                    bad = {s: n for s, n in result.statuses.items() if s != 200}
                    if bad:
                        raise SystemExit(f"{name}: non-200 answers {bad}:\n{gm.log[-2000:]}")
                    cim_results.append(result)
                rate, p50, p99 = _median(cim_results)
                floor_rate = _median(floor_results)[0]
                print(
                    f"{name:<26}{rate:>10.0f}{p50:>9.3f}{p99:>9.3f}{floor_rate:>10.0f}"
                    f"{rate / floor_rate:>10.3f}   {PEGASUS[name.split('(')[0]]}"
                )
        finally:
            gm.stop()
            floor.stdin.close()
            floor.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
