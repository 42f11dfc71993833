"""EndMails on both backends, with a real SMTP listener: an owed end mail waits for its job,
survives retention, is tried again after the SMTP server refused it, and is given up for a
job that never ends or is gone. (The pair test beside this one shows it across a takeover.)"""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from provider.drivers.notify import Notifier, NotifySettings
from provider.events.decide import Outcome
from provider.events.journal import Decision, DecisionLog
from provider.events.listener import FOLLOW_LIMIT, MAIL_RETRY, EndMails
from provider.jobs.journal import JobJournal, JobRequest
from provider.jobs.model import JobType
from provider.roles import RoleManager
from provider.store import Store, open_store
from tests.events._wire import free_port
from tests.pg import postgres_cluster, postgres_url, store_url  # noqa: F401  (fixtures)


@dataclass
class Smtp:
    """aiosmtpd handler that refuses mail (451) while `refusing` is set."""

    refusing: bool = False
    tries: int = 0
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tries += 1
        if self.refusing:
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811
    store = open_store(store_url)  # every domain's migrations
    yield store
    store.close()


@pytest.fixture
def smtp() -> Iterator[tuple[Smtp, int]]:
    handler = Smtp()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller.port
    finally:
        controller.stop()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def decision(clock: Clock, outcome: Outcome, job_id: int | None) -> Decision:
    return Decision(
        at=clock.now,
        node="gm1",
        sender="admin",
        indication_class="CIM_AlertIndication",
        indication_id="",
        event_id="1001",
        severity="5",
        system_named="web01.example.com, 192.0.2.11",
        system_key="bay:enc01/3",
        enclosure="enc01",
        bay="3",
        domain_group="dg-web",
        rule="pre-failure-failover",
        mode="failover",
        outcome=outcome,
        job_id=job_id,
        reason="",
        notified=True,
    )


def test_owed_end_mails(store: Store, smtp: tuple[Smtp, int]) -> None:
    handler, port = smtp
    clock = Clock()
    roles = RoleManager(store, "gm1", 30.0, 5.0, start_as="active")
    roles.start()
    jobs = JobJournal(store, roles.fenced)
    request = JobRequest(JobType.FAILOVER, "dg-web", "failover", "enc01", "3", "web01", "admin")
    with roles.fenced("test jobs") as tx:
        done, hung = jobs.submit(request, tx), jobs.submit(request, tx)
    log = DecisionLog(store, roles, "gm1", retention=3)
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=port, to=("ops@x.example",))
    end_mails = EndMails(log, store, roles, Notifier(settings, "gm1"), clock)

    owed = [log.record(decision(clock, Outcome.FAILOVER_STARTED, n)) for n in (done, hung, 999)]
    for _ in range(5):  # retention 3: these push the owed ones out of the newest three
        log.record(decision(clock, Outcome.ALERTED, None))
    assert [d.instance_id for d, _, _ in log.owed_end_mails()] == [d.instance_id for d in owed]

    def settle() -> int:
        return asyncio.run(end_mails.settle_ended())

    # No job has ended; the job that is gone is given up at once.
    assert settle() == 0 and handler.tries == 0
    assert [d.job_id for d, _, _ in log.owed_end_mails()] == [done, hung]

    # The job ends while the SMTP server refuses mail: still owed, tried again only later.
    with roles.fenced("test end") as tx:
        tx.execute("UPDATE gm_jobs SET state = 'completed' WHERE id = %(id)s", {"id": done})
    handler.refusing = True
    assert settle() == 0 and handler.tries == 1
    assert settle() == 0 and handler.tries == 1  # not before MAIL_RETRY
    clock.now += timedelta(seconds=MAIL_RETRY)
    handler.refusing = False
    assert settle() == 1 and handler.tries == 2
    [mail] = handler.messages
    subject = " ".join(str(mail["Subject"]).split())
    assert subject == (
        f"Automatic failover: job {done} completed for web01.example.com "
        "(enclosure enc01 bay 3, group dg-web)"
    )
    assert settle() == 0 and handler.tries == 2  # sent once
    assert [d.job_id for d, _, _ in log.owed_end_mails()] == [hung]

    # A job that never ends is given up after FOLLOW_LIMIT.
    clock.now += timedelta(seconds=FOLLOW_LIMIT)
    assert settle() == 0 and log.owed_end_mails() == []
    with store.read() as tx:
        rows = tx.fetchall(
            "SELECT job_id, end_mail FROM events_decisions WHERE end_mail IS NOT NULL ORDER BY id"
        )
    assert [tuple(r) for r in rows] == [(done, "sent"), (hung, "given-up"), (999, "given-up")]
    roles.close()


def test_a_decision_the_node_could_not_store_is_followed_in_memory(
    store: Store, smtp: tuple[Smtp, int]
) -> None:
    """The node lost the role between starting the job and recording the decision: the
    decision is kept in its memory, and so is the end mail it owes (mailing is no change)."""
    handler, port = smtp
    clock = Clock()
    active = RoleManager(store, "gm1", 30.0, 5.0, start_as="active")
    active.start()
    standby = RoleManager(store, "gm2", 30.0, 5.0)
    standby.start()
    jobs = JobJournal(store, active.fenced)
    request = JobRequest(JobType.FAILOVER, "dg-web", "failover", "enc01", "3", "web01", "admin")
    with active.fenced("test jobs") as tx:
        job_id = jobs.submit(request, tx)
    log = DecisionLog(store, standby, "gm2", retention=3)
    kept = log.record(decision(clock, Outcome.FAILOVER_STARTED, job_id))
    assert not kept.stored and log.owed_end_mails() == []
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=port, to=("ops@x.example",))
    end_mails = EndMails(log, store, standby, Notifier(settings, "gm2"), clock)
    end_mails.follow(kept)
    assert asyncio.run(end_mails.settle_ended()) == 0  # not ended yet
    with active.fenced("test end") as tx:
        tx.execute(
            "UPDATE gm_jobs SET state = 'exception', error_description = %(why)s WHERE id = %(id)s",
            {"id": job_id, "why": "This system is not an active Group Manager.\nOnly one."},
        )
    assert asyncio.run(end_mails.settle_ended()) == 1
    assert asyncio.run(end_mails.settle_ended()) == 0  # once
    [mail] = handler.messages
    assert f"Automatic failover FAILED: job {job_id}" in " ".join(str(mail["Subject"]).split())
    # Our own text over two lines: one line in the mail, not an escape (`\x0a`).
    assert "Reason:    This system is not an active Group Manager. Only one." in str(
        mail.get_payload(decode=True).decode()
    )
    active.close()
    standby.close()


class _RudeQuit(Smtp):
    """Takes the message, then answers QUIT with 421 instead of 221."""

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        return "421 4.3.2 shutting down"


def test_a_mail_taken_is_sent_once_whatever_the_server_answers_to_quit() -> None:
    """smtplib's context manager raised on the QUIT answer; the mail was taken already, and
    the owed mail went out again every retry for six hours."""
    handler = _RudeQuit()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        notifier = Notifier(
            NotifySettings(smtp_host="127.0.0.1", smtp_port=controller.port, to=("a@x.example",)),
            "gm1",
        )
        assert asyncio.run(notifier.notify("subject", "body")) is True
        assert handler.tries == 1 and len(handler.messages) == 1
    finally:
        controller.stop()
