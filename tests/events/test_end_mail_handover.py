"""The end of an event-started failover is mailed even when the node that started the job
stops before the job ends: what is owed is in the store, and the node that is active when
the job ends mails it (provider/events/listener.py, EndMails). Before, the end was followed
in the memory of the starting node and was lost with it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pywbem
from aiosmtpd.controller import Controller

from tests.events._wire import Inbox, body_of, free_port, indication, send
from tests.events.conftest import rules_text
from tests.harness import ProviderHandle, configure
from tests.vcem.cimtools import TERMINAL, config, invoke


@contextlib.contextmanager
def _pair(
    tmp_path: Path, handler: Any, simulator: dict[str, Any]
) -> Iterator[tuple[ProviderHandle, ProviderHandle]]:
    """gm1 active and gm2 standby on one SQLite store, mailing to `handler` on loopback."""
    rules = tmp_path / "events.toml"
    rules.write_text(rules_text(), encoding="utf-8")
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    common = config(
        events={"rules": str(rules)},
        notify={"smtp_host": "127.0.0.1", "smtp_port": controller.port, "to": ["ops@x.example"]},
        simulator=simulator,
    )
    store = f"sqlite:///{tmp_path}/gm.db"
    roles = {"lease_ttl": 6.0, "renew_interval": 1.0}
    nodes = [
        configure(
            tmp_path,
            node=name,
            store_url=store,
            config={**common, "roles": {**roles, "start_as": start_as}},
        )
        for name, start_as in (("gm1", "active"), ("gm2", "standby"))
    ]
    try:
        for node in nodes:
            node.start()
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()
        controller.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ProviderHandle, ProviderHandle, Inbox]]:
    inbox = Inbox()
    # The job is still powering the source off when its node stops.
    with _pair(tmp_path, inbox, {"delay_ms": {"power_off": 1500}}) as (gm1, gm2):
        yield gm1, gm2, inbox


@pytest.mark.slow
def test_the_end_mail_comes_from_the_node_active_when_the_job_ends(
    pair: tuple[ProviderHandle, ProviderHandle, Inbox], tmp_path: Path
) -> None:
    gm1, gm2, inbox = pair
    send(gm1.port, indication(EventID="1001", PerceivedSeverity=5, SystemName="web01.example.com"))
    started = inbox.wait_for("started for web01.example.com")
    job_id = int(str(started["Subject"]).split("job ")[1].split()[0])

    gm1.stop()  # drains the step in flight, then hands the lease back; the job is not over
    job = pywbem.CIMInstanceName("GM_ConcreteJob", {"InstanceID": f"GM:ConcreteJob:{job_id}"})
    assert gm2.connection().GetInstance(job)["JobState"] not in TERMINAL
    assert inbox.about(f"job {job_id} completed") == []
    rv, _ = invoke(gm2.connection(), "takeControl")
    assert rv == 0

    ended = inbox.wait_for(f"job {job_id} completed", timeout=30)
    body = body_of(ended)
    subject = " ".join(str(ended["Subject"]).split())  # unfolded
    assert subject.endswith("completed for web01.example.com (enclosure enc01 bay 3, group dg-web)")
    assert f"vcemcli -show job -jobid {job_id}" in body and "enclosure enc01 bay 12" in body
    time.sleep(1.0)  # a second pass of gm2's follower must not mail it again
    assert len(inbox.about(f"job {job_id} completed")) == 1
    with sqlite3.connect(tmp_path / "gm.db") as db:
        owed = db.execute(
            "SELECT end_mail FROM events_decisions WHERE job_id = ?", (job_id,)
        ).fetchall()
    assert owed == [("sent",)]


@dataclass
class _SlowInbox(Inbox):
    """Takes each message only after `delay` seconds (a slow mail server)."""

    delay: float = 2.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)

    def __post_init__(self) -> None:
        self.receiving = threading.Event()


@pytest.mark.slow
@pytest.mark.parametrize("handover", ["stepDown", "stop"])
def test_a_mail_under_way_at_a_hand_over_is_sent_once(tmp_path: Path, handover: str) -> None:
    """stepDown (or a stop, which cancelled the mail's task first) let the lease go while the
    active was still sending an alert's mail: it could not mark it sent any more, and the
    new active found it owed and sent it again."""
    inbox = _SlowInbox()
    with _pair(tmp_path, inbox, {}) as (gm1, gm2):
        send(gm1.port, indication(EventID="6015", SystemName="web02.example.com"))
        assert inbox.receiving.wait(10)  # the mail is under way
        if handover == "stepDown":
            rv, _ = invoke(gm1.connection(), "stepDown")
            assert rv == 0
        else:
            assert gm1.stop() == 0
        rv, _ = invoke(gm2.connection(), "takeControl")
        assert rv == 0
        inbox.wait_for("web02.example.com")
        time.sleep(inbox.delay + 2.0)  # gm2's passes: nothing owed, nothing sent again
        assert len(inbox.about("web02.example.com")) == 1
        with sqlite3.connect(tmp_path / "gm.db") as db:
            marks = db.execute("SELECT mail FROM events_decisions").fetchall()
        assert marks == [("sent",)]
