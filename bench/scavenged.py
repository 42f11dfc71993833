"""checkScavengedMember over many scavenged members: wall time is bounded by the probe timeout.

SPEC §5: "checkScavengedMember over 1,000 members bounded by the probe timeout, not by their
number". Set-up (not timed): an inventory of `--members` one-nPar complexes in one capacity
group; every member gets a deferred seizure (complete outage) written into the store with the
same pure rules the server uses; then a real `gm-provider serve` starts on that store with the
`static` prober in `simulate_timeout` mode: half of the hosts answer at once, the other half
are unreachable and take the full probe timeout (as ping does for a dead host). Timed: one
`checkScavengedMember` through CIM-XML, then a second one (only the unreachable half is still
pending).

    python bench/scavenged.py [--members 1000] [--timeout 1.0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli._client import CimClient  # noqa: E402
from provider.gicap import repo, rules  # noqa: E402
from provider.gicap.inventory import parse_capacity_inventory  # noqa: E402
from provider.store import open_store  # noqa: E402
from tests.harness import USERS, configure  # noqa: E402


def _host(i: int) -> str:
    return f"h{i:05d}.bench.example.com"


def inventory(members: int) -> str:
    lines = ["[gicap]", f"sharing_rights = {members * 8}", "", "[gicap.groups.bench]", ""]
    for i in range(members):
        lines += [
            f"[gicap.complexes.cx{i:05d}]",
            "usage_rights = 6",
            'group = "bench"',
            "",
            f"[gicap.complexes.cx{i:05d}.npars.npar0]",
            f'hosts = ["{_host(i)}"]',
            'cells = [{ name = "c0", cores = 4 }, { name = "c1", cores = 4 }]',
            "intended_active = 6",
            "",
        ]
    return "\n".join(lines)


def prepare(workdir: Path, members: int) -> tuple[Path, str]:
    text = inventory(members)
    path = workdir / "inventory.toml"
    path.write_text(text)
    state = parse_capacity_inventory(text, path)
    now = datetime.now(UTC)
    for i in range(members):
        state = rules.seize(state, _host(i), {_host(i): False}, now).state
    url = f"sqlite:///{workdir}/gm.db"
    store = open_store(url)
    epoch = store.acquire("bench-setup", 30.0)
    assert epoch is not None
    with store.fenced("bench-setup", epoch) as tx:
        repo.seed(tx, state, str(path))
    store.step_down("bench-setup", epoch)
    store.close()
    return path, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gm-bench-") as tmp:
        workdir = Path(tmp)
        t0 = time.perf_counter()
        inv, url = prepare(workdir, args.members)
        setup = time.perf_counter() - t0
        hosts_file = workdir / "hosts.json"
        down = {_host(i): "down" for i in range(args.members) if i % 2}
        hosts_file.write_text(json.dumps(down))
        handle = configure(
            workdir,
            inventory=inv,
            store_url=url,
            config={
                "probe": {
                    "method": "static",
                    "state_file": str(hosts_file),
                    "simulate_timeout": True,
                    "timeout": args.timeout,
                },
                "gicap": {"crontab": str(workdir / "crontab"), "tick": 60.0},
            },
        )
        handle.start(timeout=60)
        try:
            client = CimClient(handle.url, "capacity", USERS["capacity"][1], timeout=120)
            results = []
            for _ in range(2):
                t = time.perf_counter()
                _, out = client.invoke("checkScavengedMember")
                results.append((time.perf_counter() - t, out))
        finally:
            handle.stop()
    print(f"checkScavengedMember, {args.members} scavenged members, half unreachable")
    print(f"  probe: static, unreachable hosts take the full timeout of {args.timeout:.1f} s")
    print(f"  set-up (inventory, {args.members} deferred seizures, store): {setup:.2f} s")
    for n, (wall, out) in enumerate(results, 1):
        print(
            f"  call {n}: {wall:.2f} s wall; reconnected {len(out['Reconnected'] or [])}, "
            f"reverted {len(out['Reverted'] or [])}, still pending {out['Remaining']}"
        )
    serial = args.members // 2 * args.timeout
    print(f"  one probe after another would take at least {serial:.0f} s for the dead hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
