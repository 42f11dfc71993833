"""Capacity (GiCAP) operations at 100 and 1,000 members: where the time of one operation goes.

The state: `--members` one-nPar complexes (2 cells of 4 cores, 6 usage rights, 6 cores
intended) in one capacity group with a TiCAP pool, every second one with a pending deferred
seizure (so half the members are scavenged), plus one complex outside any group. Three layers,
each the median of `--repeat` calls:

* **rule**: the pure function of `provider.gicap.rules` on the same input state each time
  (the rules return a changed copy, so the input never changes);
* **service**: `CapacityService` in this process on a real SQLite store, as the server runs
  it (fenced transaction: load, rule, save the difference, commit; the seize, check and
  periodic operations first read the state to know which hosts to probe; the static prober
  answers at once), operations in do/undo pairs so the state stays the same size;
* **CIM-XML**: a real `gm-provider serve` on that store, methods called over HTTP.

    python bench/capacity_ops.py [--members 100 1000] [--repeat 15] [--no-cim]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli._client import CimClient, Param  # noqa: E402
from provider.drivers.cron import CronSettings  # noqa: E402
from provider.drivers.notify import Notifier, NotifySettings  # noqa: E402
from provider.drivers.probe import ProbeSettings, StaticProber  # noqa: E402
from provider.gicap import repo, rules  # noqa: E402
from provider.gicap.inventory import parse_capacity_inventory  # noqa: E402
from provider.gicap.model import CapacityState  # noqa: E402
from provider.gicap.service import CapacityService, GicapSettings  # noqa: E402
from provider.roles import Role  # noqa: E402
from provider.services import Services  # noqa: E402
from provider.store import open_store  # noqa: E402
from tests.harness import USERS, configure  # noqa: E402

GROUP = "bench"
SPARE_HOST = "spare.bench.example.com"


def _host(i: int) -> str:
    return f"h{i:05d}.bench.example.com"


def inventory(members: int) -> str:
    lines = [
        "[gicap]",
        f"sharing_rights = {members * 8 + 8}",
        "",
        f"[gicap.groups.{GROUP}]",
        "temporary_capacity_minutes = 1000000",
        "",
    ]
    for i in range(members):
        lines += [
            f"[gicap.complexes.cx{i:05d}]",
            "usage_rights = 6",
            f'group = "{GROUP}"',
            "",
            f"[gicap.complexes.cx{i:05d}.npars.npar0]",
            f'hosts = ["{_host(i)}"]',
            'cells = [{ name = "c0", cores = 4 }, { name = "c1", cores = 4 }]',
            "intended_active = 6",
            "",
        ]
    lines += [
        "[gicap.complexes.spare]",
        "usage_rights = 6",
        "",
        "[gicap.complexes.spare.npars.npar0]",
        f'hosts = ["{SPARE_HOST}"]',
        'cells = [{ name = "c0", cores = 4 }, { name = "c1", cores = 4 }]',
        "intended_active = 6",
        "",
    ]
    return "\n".join(lines)


def base_state(members: int, now: datetime) -> CapacityState:
    """The inventory with a deferred seizure on every odd member (built with the rules)."""
    state = parse_capacity_inventory(inventory(members), Path("bench-inventory.toml"))
    for i in range(1, members, 2):
        state = rules.seize(state, _host(i), {_host(i): False}, now).state
    return state


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _line(layer: str, members: int, op: str, ms: float) -> None:
    print(f"  {layer:8} {members:5} members  {op:24} {ms:9.2f} ms", flush=True)


# -- rule ------------------------------------------------------------------------------------


def bench_rules(state: CapacityState, members: int, now: datetime, repeat: int) -> None:
    reachable = {c: False for c in state.complexes}
    later = now + timedelta(days=11)  # every deferred seizure expired: all revert
    ops: list[tuple[str, Callable[[], object]]] = [
        ("seize", lambda: rules.seize(state, _host(0), {_host(0): False}, now)),
        ("restore", lambda: rules.restore(state, _host(1), now)),
        ("check_scavenged", lambda: rules.check_scavenged(state, reachable, now)),
        ("activate", lambda: rules.activate(state, _host(0), 1, False, now)),
        ("deactivate", lambda: rules.deactivate(state, _host(0), 1, now)),
        ("check_scavenged +11 d", lambda: rules.check_scavenged(state, reachable, later)),
        ("periodic", lambda: rules.periodic(state, now, {})),
        ("periodic +13 h", lambda: rules.periodic(state, now + timedelta(hours=13), {})),
        ("add_member", lambda: rules.add_member(state, "spare", [SPARE_HOST], GROUP)),
        ("remove_member", lambda: rules.remove_member(state, "cx00000")),
        ("set_inactive_cells", lambda: rules.set_inactive_cells(state, "cx00000", [], now)),
        ("describe_group", lambda: rules.describe_group(state, GROUP, "x")),
    ]
    for name, fn in ops:
        _line("rule", members, name, median_ms(fn, repeat))


# -- service ---------------------------------------------------------------------------------


class _Roles:
    """What CapacityService uses of the role manager: the active role and fenced writes."""

    role = Role.ACTIVE

    def __init__(self, store: Any, epoch: int) -> None:
        self.store = store
        self.epoch = epoch

    def fenced(self, what: str) -> AbstractContextManager[Any]:
        return self.store.fenced("bench", self.epoch)  # type: ignore[no-any-return]


def seed_store(url: str, state: CapacityState) -> None:
    store = open_store(url)
    epoch = store.acquire("bench-setup", 30.0)
    assert epoch is not None
    with store.fenced("bench-setup", epoch) as tx:
        repo.seed(tx, state, "bench")
    store.step_down("bench-setup", epoch)
    store.close()


def _pairs(first: Callable[[], object], second: Callable[[], object]) -> Iterator[float]:
    """Alternate do/undo forever, yielding the time of each call."""
    while True:
        for fn in (first, second):
            t = time.perf_counter()
            fn()
            yield time.perf_counter() - t


def _paired_ms(
    first: Callable[[], object], second: Callable[[], object], repeat: int
) -> tuple[float, float]:
    it = _pairs(first, second)
    a, b = [], []
    for _ in range(repeat):
        a.append(next(it))
        b.append(next(it))
    return statistics.median(a) * 1000, statistics.median(b) * 1000


def bench_service(url: str, members: int, repeat: int) -> None:
    store = open_store(url)
    epoch = store.acquire("bench", 300.0)
    assert epoch is not None
    services = Services(
        node_name="bench",
        config=None,
        store=store,
        roles=_Roles(store, epoch),
        etc_dir=ROOT / "etc",
        state_dir=Path(url.removeprefix("sqlite:///")).parent,
        inventory_path=Path("bench-inventory.toml"),
    )
    service = CapacityService(
        services,
        GicapSettings(cron=CronSettings(target=str(services.state_dir / "crontab"))),
        StaticProber(default_up=False),
        ProbeSettings(method="static"),
        Notifier(NotifySettings(), "bench"),
    )
    loop = asyncio.new_event_loop()

    def run(coro: Any) -> Any:
        return loop.run_until_complete(coro)

    try:
        run(service.load())
        t = time.perf_counter()
        for _ in range(repeat):
            with store.read() as tx:
                repo.load(tx)
        _line("service", members, "(repo.load alone)", (time.perf_counter() - t) / repeat * 1000)
        seize, restore = _paired_ms(
            lambda: run(service.seize(_host(0))),
            lambda: run(service.restore(_host(0))),
            repeat,
        )
        _line("service", members, "seize (probes)", seize)
        _line("service", members, "restore", restore)
        act, deact = _paired_ms(
            lambda: run(service.activate(_host(0), 1, False)),
            lambda: run(service.deactivate(_host(0), 1)),
            repeat,
        )
        _line("service", members, "activate", act)
        _line("service", members, "deactivate", deact)
        _line(
            "service",
            members,
            "check_scavenged (probes)",
            median_ms(lambda: run(service.check_scavenged()), repeat),
        )
        _line(
            "service",
            members,
            "periodic (probes)",
            median_ms(lambda: run(service.periodic()), repeat),
        )
        add, remove = _paired_ms(
            lambda: service.change_sync(
                "x", lambda s: rules.add_member(s, "spare", [SPARE_HOST], GROUP)
            ),
            lambda: service.change_sync("x", lambda s: rules.remove_member(s, "spare")),
            repeat,
        )
        _line("service", members, "add_member", add)
        _line("service", members, "remove_member", remove)
    finally:
        loop.close()
        store.step_down("bench", epoch)
        store.close()


# -- CIM-XML ---------------------------------------------------------------------------------


def bench_cim(workdir: Path, url: str, members: int, repeat: int) -> None:
    hosts_file = workdir / "hosts.json"
    hosts_file.write_text("{}")
    inv = workdir / "inventory.toml"
    inv.write_text(inventory(members))
    handle = configure(
        workdir,
        inventory=inv,
        store_url=url,
        config={
            "probe": {"method": "static", "state_file": str(hosts_file), "default": "down"},
            "gicap": {
                "crontab": str(workdir / "crontab"),
                "tick": 3600.0,
                "rebalance_minutes": 100000.0,
            },
        },
    )
    handle.start(timeout=120)
    try:
        client = CimClient(handle.url, "capacity", USERS["capacity"][1], timeout=120)
        host = [Param("HostName", "string", _host(0))]
        one = [*host, Param("Count", "uint32", 1)]
        seize, restore = _paired_ms(
            lambda: client.invoke("seizeRights", host),
            lambda: client.invoke("restoreRights", host),
            repeat,
        )
        _line("CIM-XML", members, "seizeRights", seize)
        _line("CIM-XML", members, "restoreRights", restore)
        act, deact = _paired_ms(
            lambda: client.invoke("activateCores", one),
            lambda: client.invoke("deactivateCores", one),
            repeat,
        )
        _line("CIM-XML", members, "activateCores", act)
        _line("CIM-XML", members, "deactivateCores", deact)
        _line(
            "CIM-XML",
            members,
            "checkScavengedMember",
            median_ms(lambda: client.invoke("checkScavengedMember"), repeat),
        )
    finally:
        handle.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-cim", action="store_true", help="skip the CIM-XML layer")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the notices of the operations (logged, never mailed)
    print(f"capacity operations, median of {args.repeat} (ms)")
    for members in args.members:
        now = datetime.now(UTC)
        t = time.perf_counter()
        state = base_state(members, now)
        print(
            f"  set-up   {members:5} members  {members // 2} seizures with the rules "
            f"{time.perf_counter() - t:9.2f} s",
            flush=True,
        )
        bench_rules(state, members, now, args.repeat)
        with tempfile.TemporaryDirectory(prefix="gm-bench-") as tmp:
            url = f"sqlite:///{tmp}/gm.db"
            seed_store(url, state)
            bench_service(url, members, args.repeat)
            if not args.no_cim:
                bench_cim(Path(tmp), url, members, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
