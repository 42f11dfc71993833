"""The [vcem] inventory: the example loads; errors name the file and the offending line."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.errors import ConfigError
from provider.vcem.inventory import load_inventory, parse_inventory
from tests.vcem.direct import EXAMPLE

GOOD = """\
[vcem.groups.g1]

[vcem.domains.d1]
group = "g1"
enclosures = ["e1"]

[vcem.enclosures.e1]
type = "c3000"

[vcem.enclosures.e1.bays.1]
model = "BL460c"
power = "on"
host = "a.example.com"
ips = ["192.0.2.1"]
"""


def test_the_example_inventory_loads_with_full_height_blades_and_spares() -> None:
    inv = load_inventory(EXAMPLE)
    assert {g.name for g in inv.groups} == {"dg-web", "dg-db", "dg-lab"}
    bay3 = next(b for b in inv.bays if b.key == ("enc01", "3"))
    assert bay3.host == "web01.example.com" and "2001:db8:0:1::11" in bay3.ips
    assert next(b for b in inv.bays if b.key == ("enc01", "9")).covered_by == "1"
    assert sum(b.spare for b in inv.bays) >= 6


@pytest.mark.parametrize(
    ("edit", "line", "words"),
    [
        (('power = "on"', 'power = "sleepy"'), 12, "power must be"),
        (('group = "g1"', 'group = "g9"'), 4, "no domain group"),
        (('type = "c3000"', 'type = "c9000"'), 8, "enclosure type"),
        (('ips = ["192.0.2.1"]', 'ips = ["192.0.2.999"]'), 14, "not an IP address"),
        (('model = "BL460c"', 'modle = "BL460c"'), 11, "unknown key 'modle'"),
        (('enclosures = ["e1"]', 'enclosures = ["e1", "e2", "e3", "e4", "e5"]'), 5, "1 to 4"),
    ],
)
def test_errors_name_file_and_line(edit: tuple[str, str], line: int, words: str) -> None:
    text = GOOD.replace(*edit)
    with pytest.raises(ConfigError) as err:
        parse_inventory(text, Path("inv.toml"))
    assert err.value.description.startswith(f"inv.toml:{line}: "), err.value.description
    assert words in err.value.description


def test_duplicate_host_and_profile_on_a_spare_are_refused() -> None:
    dup = GOOD + '\n[vcem.enclosures.e1.bays.2]\nmodel = "BL460c"\nhost = "A.example.com"\n'
    with pytest.raises(ConfigError, match=r"inv.toml:18: a.example.com is already the host"):
        parse_inventory(dup, Path("inv.toml"))
    spare = GOOD + (
        '\n[vcem.enclosures.e1.bays.2]\nmodel = "BL460c"\nspare = true\n'
        '\n[vcem.profiles.p]\nenclosure = "e1"\nbay = "2"\n'
    )
    with pytest.raises(ConfigError, match=r"inv.toml:22: .*is a spare"):
        parse_inventory(spare, Path("inv.toml"))
