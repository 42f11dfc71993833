"""The decision log: every indication's decision, kept so an administrator can see why a
failover did or did not happen (GM_EventDecision). Blocking; call from worker threads.

The active records in the store (`events_decisions`, a fenced write like every change) and
keeps the newest `retention` rows. A standby changes nothing in the store (SPEC "Only the
active Group Manager changes anything"), so its decisions — "not-active" for failover events,
alerts — live in a bounded in-memory list of this process and are shown next to the stored
ones with the node's name; they also feed its own de-duplication.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from provider.cim.provider import numbered
from provider.errors import Fenced, NotActive
from provider.jobs.model import JobState
from provider.store import Tx

from .decide import Outcome, Past

__all__ = ["Decision", "DecisionLog", "Notice"]

_COLUMNS = (
    "id, at, node, sender, indication_class, indication_id, event_id, severity, system_named,"
    " system_key, enclosure, bay, domain_group, rule, mode, decision, job_id, reason, notified,"
    " mail, end_mail"
)
_D_COLUMNS = ", ".join(f"d.{c.strip()}" for c in _COLUMNS.split(","))
_PREFIX = "GM:EventDecision:"


@dataclass(frozen=True)
class Decision:
    at: datetime
    node: str
    sender: str
    indication_class: str
    indication_id: str
    event_id: str
    severity: str
    system_named: str
    system_key: str
    enclosure: str | None
    bay: str | None
    domain_group: str | None
    rule: str | None
    mode: str | None
    outcome: Outcome
    job_id: int | None
    reason: str
    notified: bool
    instance_id: str = ""  # set once recorded
    # Its mails as the store has them (owed, sent, given-up; None: none owed by the store).
    mail: str | None = None
    end_mail: str | None = None

    def past(self) -> Past:
        return Past(self.at, self.outcome, self.rule or "", self.job_id, sender=self.sender)

    @property
    def owes_end_mail(self) -> bool:
        """A failover this decision started: how its job ended is mailed too."""
        return self.outcome is Outcome.FAILOVER_STARTED and self.job_id is not None

    @property
    def stored(self) -> bool:
        """In the store (the active's), not in this process's memory (a standby's)."""
        return numbered(self.instance_id, _PREFIX) is not None

    @property
    def label(self) -> str:
        """The system as the end mail names it: the event's first name (a started
        failover's decision lists every name the system had after it), its bay and group."""
        named = self.system_named.split(",")[0].strip() or "(no name given)"
        if self.enclosure is None:
            return named
        return f"{named} (enclosure {self.enclosure} bay {self.bay}, group {self.domain_group})"


def _decision(row: Any) -> Decision:
    return Decision(
        at=datetime.fromtimestamp(float(row[1]), UTC),
        node=str(row[2]),
        sender=str(row[3]),
        indication_class=str(row[4]),
        indication_id=str(row[5]),
        event_id=str(row[6]),
        severity=str(row[7]),
        system_named=str(row[8]),
        system_key=str(row[9]),
        enclosure=row[10],
        bay=row[11],
        domain_group=row[12],
        rule=row[13],
        mode=row[14],
        outcome=Outcome(str(row[15])),
        job_id=None if row[16] is None else int(row[16]),
        reason=str(row[17]),
        notified=bool(row[18]),
        instance_id=f"{_PREFIX}{int(row[0])}",
        mail=row[19],
        end_mail=row[20],
    )


# Writes the notice (subject, body) of a decision just given its number.
Render = Callable[[Decision], tuple[str, str]]


@dataclass(frozen=True)
class Notice:
    """The mail of a stored decision, owed until sent (migration 0003)."""

    instance_id: str
    at: datetime
    subject: str
    body: str


class DecisionLog:
    def __init__(self, store: Any, roles: Any, node: str, retention: int) -> None:
        self.store = store
        self.roles = roles
        self.node = node
        self.retention = retention
        self._local: deque[Decision] = deque(maxlen=retention)
        self._local_seq = 0
        self._lock = threading.Lock()

    def keep(self, retention: int) -> None:
        """Keep this many decisions from now on (the rules file's `retention`, edited)."""
        if retention == self.retention:
            return
        with self._lock:
            self.retention = retention
            self._local = deque(self._local, maxlen=retention)

    def history(self, system_key: str, since: datetime) -> list[Past]:
        with self.store.read() as tx:
            rows = tx.fetchall(
                f"SELECT {_COLUMNS} FROM events_decisions WHERE system_key = %(k)s"
                " AND at > %(t)s ORDER BY id DESC LIMIT 100",
                {"k": system_key, "t": since.timestamp()},
            )
        past = [_decision(r).past() for r in rows]
        with self._lock:
            past += [d.past() for d in self._local if d.system_key == system_key and d.at > since]
        return past

    def failed_over_naming(self, names: list[str], since: datetime) -> Decision | None:
        """The newest failover started since `since` for a system the event names: VCEM removes
        the source's host name and IPs from discovery during the move and rediscovers them on
        the spare ten minutes later (reference vcem-domain.md §1.6), so a repeat event in that
        window resolves to no bay; this finds the system it meant. After the rediscovery the
        names resolve to the spare's bay, another key: this finds the failover all the same,
        so that the same server is never failed over twice within the cool-down."""
        wanted = {n.strip().lower() for n in names if n.strip()}
        if not wanted:
            return None
        with self.store.read() as tx:
            rows = tx.fetchall(
                f"SELECT {_COLUMNS} FROM events_decisions WHERE decision = %(d)s"
                " AND at > %(t)s ORDER BY id DESC LIMIT 100",
                {"d": Outcome.FAILOVER_STARTED.value, "t": since.timestamp()},
            )
        candidates = [_decision(r) for r in rows]
        with self._lock:
            candidates += [
                d for d in self._local if d.outcome is Outcome.FAILOVER_STARTED and d.at > since
            ]
        for decision in sorted(candidates, key=lambda d: d.at, reverse=True):
            named = {n.strip().lower() for n in decision.system_named.split(",")}
            if named & wanted:
                return decision
        return None

    def record(self, decision: Decision, mail: Render | None = None) -> Decision:
        """Store the decision (active), or keep it in memory (standby, or superseded now).

        `mail` writes the notice of a notified decision (it needs the decision's number): it is
        stored with the decision, owed until `EndMails` has sent it, in the same transaction,
        so no notice is lost between recording and sending."""
        try:
            with self.roles.fenced("record event decisions") as tx:
                return self.record_in(tx, decision, mail)
        except (NotActive, Fenced):
            return self._remember(decision)

    def record_in(self, tx: Tx, d: Decision, mail: Render | None = None) -> Decision:
        """Store the decision in the caller's fenced transaction (`record`'s own, or the
        failover job's)."""
        new_id = tx.scalar(
            "INSERT INTO events_decisions (at, node, sender, indication_class, indication_id,"
            " event_id, severity, system_named, system_key, enclosure, bay, domain_group, rule,"
            " mode, decision, job_id, reason, notified, end_mail) VALUES (%(at)s, %(node)s,"
            " %(sender)s, %(cls)s, %(iid)s, %(eid)s, %(sev)s, %(named)s, %(key)s, %(enc)s,"
            " %(bay)s, %(grp)s, %(rule)s, %(mode)s, %(dec)s, %(job)s, %(reason)s, %(notified)s,"
            " %(end_mail)s) RETURNING id",
            {
                "at": d.at.timestamp(),
                "node": d.node,
                "sender": d.sender,
                "cls": d.indication_class,
                "iid": d.indication_id,
                "eid": d.event_id,
                "sev": d.severity,
                "named": d.system_named,
                "key": d.system_key,
                "enc": d.enclosure,
                "bay": d.bay,
                "grp": d.domain_group,
                "rule": d.rule,
                "mode": d.mode,
                "dec": d.outcome.value,
                "job": d.job_id,
                "reason": d.reason,
                "notified": d.notified,
                "end_mail": "owed" if d.owes_end_mail else None,
            },
        )
        kept = replace(
            d,
            instance_id=f"{_PREFIX}{int(new_id)}",
            end_mail="owed" if d.owes_end_mail else None,
        )
        if d.notified and mail is not None:
            kept = replace(kept, mail="owed")
            subject, body = mail(kept)  # the notice names the decision's number
            tx.execute(
                "UPDATE events_decisions SET mail = 'owed', mail_subject = %(s)s,"
                " mail_body = %(b)s WHERE id = %(id)s",
                {"s": subject, "b": body, "id": new_id},
            )
        # Bounded retention: the newest `retention` decisions stay (ids only grow), and those
        # whose notice or end mail is still owed.
        tx.execute(
            "DELETE FROM events_decisions WHERE id <= %(last)s"
            " AND (end_mail IS NULL OR end_mail <> 'owed') AND (mail IS NULL OR mail <> 'owed')",
            {"last": new_id - self.retention},
        )
        return kept

    def _remember(self, d: Decision) -> Decision:
        with self._lock:
            self._local_seq += 1
            kept = replace(d, instance_id=f"{_PREFIX}{self.node}-{self._local_seq}")
            self._local.append(kept)
        return kept

    def owed_end_mails(self) -> list[tuple[Decision, JobState | None, bool]]:
        """The stored decisions whose job's end has not been mailed yet, oldest first, each
        with its job's state (None: the job is gone) and whether the decision's own notice
        ("started") is still owed. One query, polled while active."""
        with self.store.read_one() as tx:
            rows = tx.fetchall(
                f"SELECT {_D_COLUMNS}, j.state, d.mail FROM events_decisions d"
                " LEFT JOIN gm_jobs j ON j.id = d.job_id"
                " WHERE d.end_mail = 'owed' ORDER BY d.id"
            )
        return [
            (_decision(r), None if r[-2] is None else JobState(r[-2]), r[-1] == "owed")
            for r in rows
        ]

    def owed_notices(self) -> list[Notice]:
        """The stored notices not sent yet, oldest first. One query, polled while active."""
        with self.store.read_one() as tx:
            rows = tx.fetchall(
                "SELECT id, at, mail_subject, mail_body FROM events_decisions"
                " WHERE mail = 'owed' ORDER BY id"
            )
        return [
            Notice(
                f"{_PREFIX}{int(r[0])}",
                datetime.fromtimestamp(float(r[1]), UTC),
                str(r[2] or ""),
                str(r[3] or ""),
            )
            for r in rows
        ]

    def settle_notice(self, instance_id: str, how: str) -> bool:
        """Mark a notice 'sent' or 'given-up' (fenced: only the active settles). False when it
        was settled already (by the other node)."""
        number = int(instance_id.removeprefix(_PREFIX))
        with self.roles.fenced("settle the mail of an event decision") as tx:
            changed: int = tx.execute(
                "UPDATE events_decisions SET mail = %(how)s WHERE id = %(id)s AND mail = 'owed'",
                {"how": how, "id": number},
            )
        return changed == 1

    def settle_end_mail(self, decision: Decision, how: str) -> bool:
        """Mark the end mail of `decision` 'sent' or 'given-up' (a fenced write: only the
        active settles). False when it was settled already (by the other node)."""
        number = int(decision.instance_id.removeprefix(_PREFIX))
        with self.roles.fenced("settle the end mail of an event-started failover") as tx:
            changed: int = tx.execute(
                "UPDATE events_decisions SET end_mail = %(how)s"
                " WHERE id = %(id)s AND end_mail = 'owed'",
                {"how": how, "id": number},
            )
        return changed == 1

    def recent(self) -> Iterator[Decision]:
        """Newest first: this node's in-memory decisions, then the stored ones."""
        with self._lock:
            local = list(reversed(self._local))
        yield from local
        with self.store.read() as tx:
            rows = tx.fetchall(
                f"SELECT {_COLUMNS} FROM events_decisions ORDER BY id DESC LIMIT %(n)s",
                {"n": self.retention},
            )
        for row in rows:
            yield _decision(row)

    def get(self, instance_id: str) -> Decision | None:
        if not instance_id.startswith(_PREFIX):
            return None
        number = numbered(instance_id, _PREFIX)
        if number is not None:
            with self.store.read() as tx:
                row = tx.fetchone(
                    f"SELECT {_COLUMNS} FROM events_decisions WHERE id = %(id)s",
                    {"id": number},
                )
            return None if row is None else _decision(row)
        with self._lock:
            return next((d for d in self._local if d.instance_id == instance_id), None)
