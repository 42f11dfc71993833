"""Guard rails of automatic failover (reference vcem-domain.md §5.4 [I]) and the mail an
administrator must not miss, on a live node of its own (its rules, its simulator faults,
a mail server that can refuse):

* the same server is not failed over twice within the cool-down, also once the spare has
  been rediscovered under the server's names (the names then resolve to the spare's bay);
* an event does not fail a server over into an empty spare pool (the failover would power it
  off before looking for a spare);
* a failover that starts and then fails is mailed with its reason;
* the mail of a decision that the SMTP server refused is sent once it takes mail again, and
  the cool-down that silences the repeats does not silence the first one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pywbem
from aiosmtpd.controller import Controller

from tests.events._wire import Inbox, body_of, free_port, indication, send
from tests.harness import ProviderHandle, configure
from tests.vcem.cimtools import TERMINAL, config

RULES = """
timezone = "UTC"
cooldown_minutes = 30

[rule.failover]
mode = "failover"
match = { EventID = "1001" }

[rule.alert]
mode = "alert"
match = { EventID = "6015" }
"""


@dataclass
class FlakyInbox(Inbox):
    """An SMTP listener that answers 451 (try again later) while `refusing` is set."""

    refusing: bool = False
    tries: int = 0
    delay: float = 0.0  # seconds before answering DATA (a slow mail server)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tries += 1
        await asyncio.sleep(self.delay)
        if self.refusing:
            return "451 4.3.0 try again later"
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Node:
    gm: ProviderHandle
    inbox: FlakyInbox
    db: Path

    def decisions(self, system: str) -> list[pywbem.CIMInstance]:
        found = self.gm.connection().EnumerateInstances("GM_EventDecision")
        return [d for d in found if system in (d["SystemName"] or "")]

    def jobs(self) -> set[int]:
        return {int(j["JobID"]) for j in self.gm.connection().EnumerateInstances("GM_ConcreteJob")}

    def wait_job(self, job_id: int, timeout: float = 20.0) -> int:
        path = pywbem.CIMInstanceName("GM_ConcreteJob", {"InstanceID": f"GM:ConcreteJob:{job_id}"})
        deadline = time.monotonic() + timeout
        while (state := self.gm.connection().GetInstance(path)["JobState"]) not in TERMINAL:
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            time.sleep(0.05)
        return int(state)

    def bay(self, enclosure: str, bay: str) -> pywbem.CIMInstance:
        path = pywbem.CIMInstanceName("GM_DeviceBay", {"EnclosureName": enclosure, "BayName": bay})
        return self.gm.connection().GetInstance(path)

    def mail_state(self, instance_id: str) -> str | None:
        number = int(instance_id.rsplit(":", 1)[1])
        with sqlite3.connect(self.db) as db:
            row = db.execute("SELECT mail FROM events_decisions WHERE id = ?", (number,)).fetchone()
        return None if row is None else row[0]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("guards")
    rules = tmp / "events.toml"
    rules.write_text(RULES, encoding="utf-8")
    inbox = FlakyInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings = config(
        events={"rules": str(rules)},
        notify={
            "smtp_host": "127.0.0.1",
            "smtp_port": controller.port,
            "to": ["ops@example.com"],
            "retry_s": 0.3,
        },
        # dg-db's qualified spare for db01 does not power on.
        # and app01's (enc02 bay 2) refuses the profile after it left app01's bay.
        simulator={"fail": {"power_on": ["enc04/8"], "assign": ["enc02/2"]}},
        roles={"start_as": "active"},
    )
    gm = configure(tmp, config=settings)
    try:
        gm.start()
        yield Node(gm, inbox, tmp / "gm.db")
    finally:
        gm.stop()
        controller.stop()


def _wait(probe: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_the_same_server_is_not_failed_over_again_after_its_rediscovery(node: Node) -> None:
    before = node.jobs()
    event = indication(EventID="1001", PerceivedSeverity=5, SystemName="web01.example.com")
    send(node.gm.port, event)
    (job_id,) = node.jobs() - before
    assert node.wait_job(job_id) == 7
    # Discovery now finds web01 on the spare (rediscovery_delay_s = 0): its names resolve to
    # another bay than the one failed over.
    moved = _wait(lambda: node.bay("enc01", "12")["HostName"] == "web01.example.com")
    assert moved and node.bay("enc01", "3")["HostName"] is None

    send(node.gm.port, event)
    send(node.gm.port, indication(EventID="1001", PerceivedSeverity=5, IPAddress="192.0.2.11"))
    assert node.jobs() - before == {job_id}
    repeats = [d for d in node.decisions("web01") if d["Decision"] != "failover-started"]
    repeats += [d for d in node.decisions("192.0.2.11") if d["Decision"] != "failover-started"]
    assert [d["Decision"] for d in repeats] == ["suppressed-duplicate"] * 2, [
        (d["Decision"], d["Reason"]) for d in repeats
    ]
    assert all(f"failover job {job_id} was started" in d["Reason"] for d in repeats)
    assert all(d["EnclosureName"] == "enc01" and d["BayName"] == "12" for d in repeats)


def test_no_automatic_failover_into_an_empty_spare_pool(node: Node) -> None:
    before = node.jobs()
    send(
        node.gm.port,
        indication(EventID="1001", PerceivedSeverity=5, SystemName="lab02.example.com"),
    )
    assert node.jobs() == before
    (decision,) = node.decisions("lab02.example.com")
    assert decision["Decision"] == "failover-refused" and decision["Notified"] is True
    reason = decision["Reason"]
    assert "domain group dg-lab has no qualified spare for enc05 bay 2" in reason, reason
    assert "vcemcli -failover -enclosurename enc05 -bayname 2" in reason
    assert node.bay("enc05", "2")["PowerState"] == "on"  # left running
    mail = node.inbox.wait_for("Automatic failover refused for lab02.example.com")
    assert "no qualified spare" in body_of(mail)


def test_a_failover_that_fails_is_mailed_with_its_reason(node: Node) -> None:
    before = node.jobs()
    send(
        node.gm.port,
        indication(EventID="1001", PerceivedSeverity=5, SystemName="db01.example.com"),
    )
    (job_id,) = node.jobs() - before
    node.inbox.wait_for(f"job {job_id} started")
    assert node.wait_job(job_id) != 7
    failed = node.inbox.wait_for(f"FAILED: job {job_id}")
    body = body_of(failed)
    assert "simulated hardware fault" in body and "power_on" in body, body
    # The profile reached the spare before its power-on failed: it is there now.
    assert "Profile db01-profile is now in enclosure enc04 bay 8" in body, body
    # The start went out before the end.
    subjects = [str(m["Subject"]) for m in node.inbox.about(f"job {job_id}")]
    assert len(subjects) == 2 and "started" in subjects[0], subjects


def test_a_failover_that_strands_the_profile_says_where_it_is(node: Node) -> None:
    """The end mail told to fail over again from the source bay, where the profile no longer
    was: the move had taken it off and the spare had refused it."""
    before = node.jobs()
    send(
        node.gm.port,
        indication(EventID="1001", PerceivedSeverity=5, SystemName="app01.example.com"),
    )
    (job_id,) = node.jobs() - before
    assert node.wait_job(job_id) != 7
    body = body_of(node.inbox.wait_for(f"FAILED: job {job_id}"))
    assert "Profile app01-profile is now on no bay" in body, body
    assert "vcemcli -move profile -profilename app01-profile" in body
    assert "vcemcli -failover" not in body


def test_the_start_of_a_failover_is_mailed_before_its_end(node: Node) -> None:
    """With a slow mail server, a failover decided while another mail was being sent ended
    before the pass that mailed its end had read it as owed: "completed" came before
    "started"."""
    node.inbox.delay = 1.0
    try:
        send(node.gm.port, indication(EventID="6015", SystemName="lab01.example.com"))
        before = node.jobs()
        send(
            node.gm.port,
            indication(EventID="1001", PerceivedSeverity=5, SystemName="web03.example.com"),
        )
        (job_id,) = node.jobs() - before
        assert node.wait_job(job_id) == 7
        node.inbox.wait_for(f"job {job_id} completed", timeout=20)
    finally:
        node.inbox.delay = 0.0
    subjects = [str(m["Subject"]) for m in node.inbox.about(f"job {job_id}")]
    assert len(subjects) == 2 and "started" in subjects[0], subjects


def test_a_refused_mail_is_sent_when_the_mail_server_takes_mail_again(node: Node) -> None:
    node.inbox.refusing = True
    tries = node.inbox.tries
    event = indication(EventID="6015", SystemName="web02.example.com")
    try:
        send(node.gm.port, event)
        (first,) = node.decisions("web02.example.com")
        assert first["Decision"] == "alerted" and first["Notified"] is True
        _wait(lambda: node.inbox.tries >= tries + 2)  # refused, and tried again
        assert node.mail_state(first["InstanceID"]) == "owed"
        # ...and so says the decision: the administrator can see the mail has not gone.
        (shown,) = node.decisions("web02.example.com")
        assert shown["MailState"] == "owed" and shown["EndMailState"] is None
        # A repeat within the cool-down is recorded only: the first mail is still owed.
        send(node.gm.port, event)
        decisions = node.decisions("web02.example.com")
        assert sorted(d["Decision"] for d in decisions) == ["alerted", "suppressed-duplicate"]
        assert node.inbox.about("web02.example.com") == []
    finally:
        node.inbox.refusing = False
    mail = node.inbox.wait_for("web02.example.com")
    assert first["InstanceID"] in body_of(mail)
    _wait(lambda: node.mail_state(first["InstanceID"]) == "sent")
    sent = [d for d in node.decisions("web02.example.com") if d["Decision"] == "alerted"]
    assert [d["MailState"] for d in sent] == ["sent"]
    time.sleep(1.0)  # later passes do not send it again
    assert len(node.inbox.about("web02.example.com")) == 1
