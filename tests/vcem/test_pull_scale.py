"""A data-centre inventory through the pull operations (issue 8): every bay exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.inventory_gen import BAYS_PER_ENCLOSURE, write_inventory
from tests.harness import configure

BAYS = 16_000
PAGE = 1000  # pywbemcli's default MaxObjectCount


@pytest.mark.slow
def test_pull_enumeration_of_16000_bays_returns_every_bay_exactly_once(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path / "inventory.toml", bays=BAYS)
    # Seeding 16,000 bays takes seconds: a lease longer than that keeps the node active.
    config = {"roles": {"lease_ttl": 60.0, "renew_interval": 5.0}}
    gm = configure(tmp_path, config=config, inventory=inventory)
    gm.start(timeout=120)
    try:
        conn = gm.connection(timeout=120)
        seen: Counter[tuple[str, str]] = Counter()
        pages = []
        result = conn.OpenEnumerateInstances("GM_DeviceBay", MaxObjectCount=PAGE)
        while True:
            pages.append(len(result.instances))
            for instance in result.instances:
                assert instance.path.classname == "GM_DeviceBay"
                key = (instance["EnclosureName"], instance["BayName"])
                assert (instance.path["EnclosureName"], instance.path["BayName"]) == key
                seen[key] += 1
            if result.eos:
                break
            result = conn.PullInstancesWithPath(result.context, MaxObjectCount=PAGE)
    finally:
        gm.stop()

    expected = {
        (f"enc{n // BAYS_PER_ENCLOSURE:04d}", str(n % BAYS_PER_ENCLOSURE + 1)) for n in range(BAYS)
    }
    assert set(seen) == expected
    assert [key for key, times in seen.items() if times != 1] == []
    assert pages == [PAGE] * (BAYS // PAGE)
