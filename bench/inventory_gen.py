"""Generate a data-centre-sized VCEM inventory (the format of etc/inventory.example.toml).

VCEM's limits were 250 domain groups, 1,000 enclosures and 16,000 servers (reference
vcem-domain.md §7.1). `write_inventory(path, bays=16000)` makes 250 groups of 4
one-enclosure domains, 16 bays per c7000 enclosure; in each enclosure bay 16 is a powered-off
spare with no profile, the other bays run a profile with a host name and an IP address (from
198.18.0.0/15, the range reserved for benchmarks; never contacted).

    python bench/inventory_gen.py OUT.toml [--bays 16000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BAYS_PER_ENCLOSURE = 16
ENCLOSURES_PER_GROUP = 4


def inventory_text(bays: int) -> str:
    enclosures = max(1, -(-bays // BAYS_PER_ENCLOSURE))
    out: list[str] = []
    for e in range(enclosures):
        group = f"dg{e // ENCLOSURES_PER_GROUP:03d}"
        enc = f"enc{e:04d}"
        if e % ENCLOSURES_PER_GROUP == 0:
            out.append(f'[vcem.groups.{group}]\ndescription = "generated group {group}"\n')
        out.append(f'[vcem.domains.dom{e:04d}]\ngroup = "{group}"\nenclosures = ["{enc}"]\n')
        out.append(f'[vcem.enclosures.{enc}]\ntype = "c7000"\n')
        in_this = min(BAYS_PER_ENCLOSURE, bays - e * BAYS_PER_ENCLOSURE)
        for b in range(1, in_this + 1):
            spare = b == BAYS_PER_ENCLOSURE
            out.append(f"[vcem.enclosures.{enc}.bays.{b}]")
            out.append('model = "BL460c"\ngeneration = "G7"')
            if spare:
                out.append('power = "off"\nspare = true\n')
                continue
            n = e * BAYS_PER_ENCLOSURE + b
            out.append(
                f'power = "on"\nhost = "srv{n:05d}.example.com"\n'
                f'ips = ["198.{18 + n // 65536}.{n // 256 % 256}.{n % 256}"]\n'
            )
            out.append(
                f'[vcem.profiles.p{n:05d}]\nenclosure = "{enc}"\nbay = "{b}"\n'
                f'boot_from_san = true\nmacs = ["00:17:A4:{n >> 16 & 255:02X}:{n >> 8 & 255:02X}:'
                f'{n & 255:02X}"]\nwwns = ["50:06:0B:00:00:{n >> 16 & 255:02X}:'
                f'{n >> 8 & 255:02X}:{n & 255:02X}"]\nserial_number = "VCX{n:07d}"\n'
            )
    return "\n".join(out)


def write_inventory(path: Path, bays: int) -> Path:
    path.write_text(inventory_text(bays), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--bays", type=int, default=16000)
    args = parser.parse_args()
    write_inventory(args.out, args.bays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
