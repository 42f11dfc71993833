"""One manager pair for the live event tests: `gm1` active and `gm2` standby, real
`gm-provider serve` processes sharing one SQLite store, the example inventory, a rules file
written here, and a real SMTP listener (aiosmtpd) on 127.0.0.1 for `[notify]`.

Each test speaks about its own systems (host names of the example inventory), so the
first-occurrence cool-down of one test never silences another."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pywbem
from aiosmtpd.controller import Controller

from tests.events._wire import Inbox, free_port
from tests.harness import ProviderHandle, configure

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def closed_days() -> list[str]:
    """Every day but today and tomorrow (UTC): a window certainly closed during the test,
    even if it runs across midnight."""
    today = datetime.now(UTC).weekday()
    return [d for i, d in enumerate(DAYS) if i not in (today, (today + 1) % 7)]


def rules_text() -> str:
    days = ", ".join(f'"{d}"' for d in closed_days())
    return f"""
timezone = "UTC"
cooldown_minutes = 30

[rule.lab-weekend-failover]
mode = "failover"
classes = ["*AlertIndication"]
match = {{ EventID = ["1001", "2005"] }}
groups = ["dg-lab"]
windows = [{{ days = [{days}], from = "00:00", to = "24:00" }}]

[rule.pre-failure-failover]
description = "VCEM Failover Events, automatic"
mode = "failover"
classes = ["CIM_AlertIndication", "HP_*"]
match = {{ EventID = ["1001", "2005"], PerceivedSeverity = [5, 6, 7] }}
groups = ["dg-web", "dg-db"]

[rule.memory-alert]
mode = "alert"
classes = ["*AlertIndication"]
match = {{ EventID = "6015" }}
"""


@dataclass
class World:
    active: ProviderHandle
    standby: ProviderHandle
    inbox: Inbox
    rules: Path

    def decisions(self, node: ProviderHandle | None = None) -> list[pywbem.CIMInstance]:
        conn = (node or self.active).connection()
        return list(conn.EnumerateInstances("GM_EventDecision"))

    def decisions_about(
        self, system: str, node: ProviderHandle | None = None
    ) -> list[pywbem.CIMInstance]:
        return [d for d in self.decisions(node) if system in (d["SystemName"] or "")]

    def wait_job(self, job_id: int, timeout: float = 20.0) -> None:
        path = pywbem.CIMInstanceName("GM_ConcreteJob", {"InstanceID": f"GM:ConcreteJob:{job_id}"})
        deadline = time.monotonic() + timeout
        while self.active.connection().GetInstance(path)["JobState"] not in (7, 8, 10):
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            time.sleep(0.05)

    def job_ids(self) -> set[int]:
        return {
            int(j["JobID"]) for j in self.active.connection().EnumerateInstances("GM_ConcreteJob")
        }


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("events")
    rules = tmp / "events.toml"
    rules.write_text(rules_text(), encoding="utf-8")
    inbox = Inbox()
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    common = {
        "events": {"rules": str(rules)},
        "notify": {"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "to": ["ops@example.com"]},
    }
    store = f"sqlite:///{tmp}/gm.db"
    roles = {"lease_ttl": 6.0, "renew_interval": 1.0}
    active = configure(
        tmp,
        node="gm1",
        store_url=store,
        config={**common, "roles": {**roles, "start_as": "active"}},
    )
    standby = configure(
        tmp,
        node="gm2",
        store_url=store,
        config={**common, "roles": {**roles, "start_as": "standby"}},
    )
    try:
        active.start()
        standby.start()
        yield World(active, standby, inbox, rules)
    finally:
        standby.stop()
        active.stop()
        controller.stop()


def recent(d: pywbem.CIMInstance, seconds: float = 120) -> bool:
    return bool(d["Time"].datetime > datetime.now(UTC) - timedelta(seconds=seconds))
