"""How long takeControl takes, and what the fence costs, on SQLite and on PostgreSQL.

Two nodes, each with its own store connection, take control from each other in turn
(forced, the `icapmanage -Q` case); after each takeover the superseded node makes one write,
which is fenced and turns it standby (how it learns, SPEC 4.2). Timed separately:

* take_control: a standby's forced takeover: one UPDATE ... RETURNING committed durably,
  then the node's gm_nodes report (a second commit);
* fenced-out write: the old active's next write, refused by the FENCE;
* fenced write: an active's write transaction with one audit row (FENCE + INSERT + COMMIT);
* renew: one tick of the lease loop of the active (RENEW, then the gm_nodes report).

SQLite runs on a temp file (WAL, synchronous=FULL). PostgreSQL runs on a private cluster with
durable settings (tests/pg.py), over TCP on 127.0.0.1, unless --pg-url names a server.

    python bench/takecontrol.py [--alternations 200] [--backend sqlite|postgresql|both]
                                [--pg-url postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provider.errors import Fenced  # noqa: E402
from provider.roles import Role, RoleManager  # noqa: E402
from provider.store import Store, discover_migrations, open_store  # noqa: E402

TTL = 30.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def fenced_out_write(manager: RoleManager) -> None:
    try:
        with manager.fenced("write") as tx:
            tx.audit("must not commit")
    except Fenced:
        return
    raise AssertionError(f"{manager.node_name} wrote after being superseded")


def fenced_write(manager: RoleManager) -> None:
    with manager.fenced("write") as tx:
        tx.audit("bench")


def measure(url: str, alternations: int) -> dict[str, list[float]]:
    own = [m for m in discover_migrations() if m.module == "store"]
    stores: list[Store] = [open_store(url, migrations=own) for _ in range(2)]
    try:
        nodes = [RoleManager(store, f"gm{i + 1}", TTL, TTL / 3) for i, store in enumerate(stores)]
        for node in nodes:
            node.start()
        nodes[0].take_control(force=True)
        times: dict[str, list[float]] = {
            "take_control": [],
            "fenced-out write": [],
            "fenced write": [],
            "renew": [],
        }
        for i in range(alternations):
            new, old = nodes[(i + 1) % 2], nodes[i % 2]
            times["take_control"].append(timed(functools.partial(new.take_control, force=True)))
            times["fenced-out write"].append(timed(functools.partial(fenced_out_write, old)))
            assert (new.role, old.role) == (Role.ACTIVE, Role.STANDBY)
            times["fenced write"].append(timed(functools.partial(fenced_write, new)))
            times["renew"].append(timed(new.tick))
        for node in nodes:
            node.close()
        return times
    finally:
        for store in stores:
            store.close()


def report(backend: str, times: dict[str, list[float]]) -> None:
    for what, samples in times.items():
        print(
            f"{backend:<11} {what:<17} median {statistics.median(samples) * 1000:7.3f} ms"
            f"   p99 {percentile(samples, 0.99) * 1000:7.3f} ms   (n={len(samples)})"
        )


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.pg import running_cluster

    with running_cluster(durable=True) as cluster:
        yield cluster.create_database("gm_bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alternations", type=int, default=200)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=None, help="use this server instead of a private one")
    args = parser.parse_args()
    print(f"takeControl between two nodes, {args.alternations} alternations, forced")
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="gm-bench-") as tmp:
            report("sqlite", measure(f"sqlite://{tmp}/gm.db", args.alternations))
    if args.backend in ("postgresql", "both"):
        with postgres(args.pg_url) as url:
            report("postgresql", measure(url, args.alternations))


if __name__ == "__main__":
    main()
