"""The indication listener: the `ExportHandler` that `provider.app` calls for every DSP0200
export request (`CIMExport: MethodRequest`, `ExportIndication`), after the transport has
authenticated the sender and `provider.cimxml.headers` has checked the export headers.

One indication, in order (the I/O around the pure `decide`):

1. the export method must be ExportIndication with one NewIndication instance, else a CIM
   error inside the EXPMETHODRESPONSE (CIM_ERR_NOT_SUPPORTED / CIM_ERR_INVALID_PARAMETER, as
   pywbem's WBEMListener answers);
2. the names the indication gives its system are resolved to a bay through the inventory's
   discovery data, with the same lookups failoverProfile uses for HostName / IPAddress;
3. `decide()` with the system's recent decisions and the time;
4. a failover goes through the failoverProfile method of the CIM layer — privilege check
   with the sender's principal, role gate, the VCEM service's fenced submission — so there
   is no back door around the role gate (DESIGN "One way in"); seed 000: "HP SIM Automatic
   Event Handling directly initiates failover via the CLI and sends an alert to the
   administrator that this action has been taken";
5. the decision is recorded (journal.DecisionLog), then the administrator is told by log
   and e-mail (provider.drivers.notify) in the background: the sender of the indication does
   not wait for the mail server.

Decisions of one process are serialised (an asyncio lock), so two copies of one event that
arrive together cannot both pass the first-occurrence check.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pywbem import CIMInstance

from provider.cim.provider import OperationContext, ProviderRegistry, authorize_call
from provider.cimxml.messages import ExportCall
from provider.drivers.base import DeviceState, PowerState
from provider.drivers.notify import Notifier
from provider.errors import (
    CIMClientError,
    Fenced,
    InvalidParameter,
    NotActive,
    NotFound,
    NotSupported,
    ServerError,
    StoreError,
)
from provider.http.messages import Principal
from provider.jobs.journal import Job, JobJournal
from provider.jobs.model import JobState
from provider.jobs.steps import spare_candidate
from provider.privileges import TableAuthorizer
from provider.roles import Role
from provider.vcem import repository as repo
from provider.vcem.service import MOVED_MARK, FailoverSource, moved_hint
from provider.vcem.spares import NoSpare, SourceServer, choose_spare

from .decide import Outcome, Past, Plan, System, decide, unknown_key
from .journal import Decision, DecisionLog, Notice
from .rules import Event, RulesFile, event_from_instance, system_names

__all__ = ["EventListener", "FailoverPath", "resolve_system"]

log = logging.getLogger("gm.events")

NS = "root/cimv2"
_MANAGER = "GM_GroupManager"


@dataclass
class FailoverPath:
    """Starts a failover exactly as an InvokeMethod of GM_GroupManager.failoverProfile does
    (provider.cim.operations.CimOperations.extrinsic): the registered MethodSpec, its
    privilege (`failoverProfile`, checked for the principal that sent the indication: the
    CLI of HP SIM's custom tool runs with VCEM administrator rights, seed 000 "The highest
    level of VCEM administrator privilege is needed to initiate failover"), the role gate,
    then its handler, which submits the job in a fenced transaction."""

    registry: ProviderRegistry
    authorizer: TableAuthorizer
    roles: Any  # provider.roles.RoleManager
    host: str
    # provider.audit.AuditLog: the failover is audited as the method call would be, with
    # operation "ExportIndication" (what started it) and the sender as its user.
    audit: Any = None

    async def start(
        self,
        principal: Principal | None,
        system: System,
        with_job: Callable[[Any, int], None] | None = None,
    ) -> int:
        """Submit the failover; `with_job(tx, job_id)` runs in the job's own transaction."""
        # The custom tool "passes either the host name or IP address of the system that
        # posted the failover event" (reference §5.2): so do we.
        params = {"IPAddress" if system.by_ip else "HostName": system.named}
        if self.audit is None:
            return await self._start(principal, params, with_job)
        where = dict(namespace=NS, target=f"{NS}:{_MANAGER}", params=list(params.items()))
        try:
            job = await self._start(principal, params, with_job)
        except Exception as exc:
            self.audit.record(principal, "ExportIndication", "failoverProfile", error=exc, **where)
            raise
        # Audited as the failoverProfile call it stands for: 4096, job started (SPEC 3.3).
        self.audit.record(
            principal, "ExportIndication", "failoverProfile", return_value=4096, job=job, **where
        )
        return job

    async def _start(
        self,
        principal: Principal | None,
        params: dict[str, str],
        with_job: Callable[[Any, int], None] | None = None,
    ) -> int:
        spec = self.registry.method(NS, _MANAGER, "failoverProfile")
        if spec is None:
            raise NotSupported("failoverProfile has no provider here (is provider.vcem installed?)")
        # The method's own checks (the domain group of the failed server's bay included: a
        # user bound to that group was refused "for every domain group" here).
        await authorize_call(self.authorizer, self.roles, spec, principal, params)
        ctx = OperationContext(principal, NS, self.host, with_submission=with_job)
        try:
            outcome = await spec.handler(ctx, params)
        except Fenced as exc:
            raise NotActive(spec.what or spec.name) from exc
        return int(outcome.out["JobID"])


def _moved_system(names: list[str], earlier: Decision) -> System | None:
    """The bay the failover `earlier` moved the named system away from."""
    if earlier.enclosure is None or earlier.bay is None:
        return None
    named = next(n for n in names if n.lower() in earlier.system_named.lower())
    return System(
        named=named,
        by_ip=_is_ip(named),
        enclosure=earlier.enclosure,
        bay=earlier.bay,
        group=earlier.domain_group or "",
        host=None,
        ips=(),
        automatic_failover_disabled=False,
    )


def _started_reason(system: System, plan: Plan, job: int) -> str:
    rule = plan.rule.name if plan.rule is not None else "-"
    return f"failover job {job} started for {system.label} by rule {rule}"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def resolve_system(store: Any, names: list[str]) -> System | None:
    """The first name that the discovery data knows, as failoverProfile would resolve it
    (host name → bay_by_host, IP address → bay_by_ip); None when none does. Blocking."""
    with store.read() as tx:
        for name in names:
            by_ip = _is_ip(name)
            row = repo.bay_by_ip(tx, name) if by_ip else repo.bay_by_host(tx, name)
            if row is None:
                continue
            group = repo.group(tx, row.group)
            return System(
                named=name,
                by_ip=by_ip,
                enclosure=row.enclosure,
                bay=row.bay,
                group=row.group,
                host=row.host,
                ips=row.ips,
                automatic_failover_disabled=group is not None and group.auto_failover_disabled,
            )
    return None


def moved_system_hint(store: Any, names: list[str]) -> str:
    """For names that resolve to no bay: where a job moved that server's profile (its
    names come back with discovery), as a failover by name says it; else "". The decision
    told the person on call to fix the inventory while the job's rediscovery was pending."""
    with store.read() as tx:
        for name in names:
            by_ip = _is_ip(name)
            source = FailoverSource(ip=name) if by_ip else FailoverSource(host=name)
            hint = moved_hint(tx, source)
            if hint:
                return hint
    return ""


def no_spare_reason(store: Any, system: System) -> str | None:
    """Why an automatic failover of `system` would find no spare, by the last known state of
    its group's bays (the job reads the devices again), or None when one qualifies.

    VCEM powers the source off before it looks for a spare (reference vcem-domain.md §2.3), so
    a failover into an empty pool leaves a server off for nothing; an event must not do that
    (§5.4 [I]: "stop automatic failover if the spare pool is empty"). A by-hand failoverProfile
    is not held back: the administrator chose it. A power state the store does not know does
    not count against a spare.
    """
    with store.read() as tx:
        group = repo.group(tx, system.group)
        source = repo.bay(tx, system.enclosure, system.bay)
        spares = repo.bays_of_group(tx, system.group, spares_only=True)
    if group is None or source is None:
        return None  # the failover path says what is wrong with them
    candidates = [
        spare_candidate(
            b,
            DeviceState(
                present=b.server_present,
                model=b.model,
                generation=b.generation,
                product=b.product,
                # A power state the store does not know does not count against a spare.
                power=PowerState.ON if b.power_state == "on" else PowerState.OFF,
                profile=None,
            ),
        )
        for b in spares
    ]
    server = SourceServer(source.enclosure, source.bay, source.model, source.generation)
    choice = choose_spare(server, candidates, group.same_generation)
    if not isinstance(choice, NoSpare):
        return None
    return (
        f"no automatic failover: domain group {group.name} has no qualified spare for "
        f"{source.label} (model {source.model}) by the last known state of its bays: "
        f"{choice.describe()}. A failover powers the server off before it looks for a spare, "
        "so it would have stayed off for nothing; it was left running. Designate a spare "
        f"(setSpare), then fail over by hand: vcemcli -failover -enclosurename "
        f"{source.enclosure} -bayname {source.bay}"
    )


def _names_of(names: list[str], system: System | None, outcome: Outcome) -> list[str]:
    """The event's names; for a started failover also every name the system had, so a later
    event naming it by another name (an IP) finds this decision once discovery dropped it."""
    if system is None or outcome is not Outcome.FAILOVER_STARTED:
        return names
    known = [*names, *([system.host] if system.host else []), *system.ips]
    return list(dict.fromkeys(known))


class EventListener:
    def __init__(
        self,
        *,
        rules: RulesFile,
        journal: DecisionLog,
        store: Any,
        roles: Any,
        failover: FailoverPath,
        notifier: Notifier,
        clock: Callable[[], datetime],
        node: str,
    ) -> None:
        self.rules = rules
        self.journal = journal
        self.store = store
        self.roles = roles
        self.failover = failover
        self.notifier = notifier
        self.clock = clock
        self.node = node
        self._lock = asyncio.Lock()
        self.end_mails = EndMails(journal, store, roles, notifier, clock)

    async def __call__(self, call: ExportCall, principal: Principal | None) -> None:
        indication = _new_indication(call)
        event = event_from_instance(indication)
        async with self._lock:
            decision, system = await self._decide(event, principal)
        if decision.notified and decision.stored:
            # Recorded with its mail, owed in the store until sent (EndMails): told now.
            log.warning("%s: %s", *notice(decision, event, system))
            self.end_mails.wake()
        elif decision.notified:
            # Not stored (a standby's decision, or the role was lost): mailed once from here.
            self.notifier.tell(*notice(decision, event, system))
        else:
            log.info("%s", _log_line(decision))
        if decision.owes_end_mail:
            # The on-call person must also learn how it ended, above all when it failed:
            # `EndMails` mails it from the store, on whichever node is active then.
            self.end_mails.follow(decision)

    async def _decide(
        self, event: Event, principal: Principal | None
    ) -> tuple[Decision, System | None]:
        now = self.clock()
        rules = self.rules.current()  # the file as it is now (read again if edited)
        self.journal.keep(rules.retention)
        names = system_names(event, rules.system_properties)
        since = now - timedelta(minutes=rules.max_cooldown_minutes())
        system, key, history = await asyncio.to_thread(self._recall, names, since)
        active = self.roles.role is Role.ACTIVE
        sender = principal.user if principal is not None else "anonymous"
        plan = decide(rules, event, names, system, history, now, active, sender)
        if plan.outcome is Outcome.UNKNOWN_SYSTEM and names:
            moved = await asyncio.to_thread(moved_system_hint, self.store, names)
            if moved:
                plan = dataclasses.replace(plan, reason=plan.reason + "." + moved)

        def decision(outcome: Outcome, reason: str, job_id: int | None) -> Decision:
            return Decision(
                at=now,
                node=self.node,
                sender=sender,
                indication_class=event.classname,
                indication_id=event.text("IndicationIdentifier"),
                event_id=event.text("EventID") or event.text("MessageID"),
                severity=event.text("PerceivedSeverity"),
                system_named=", ".join(_names_of(names, system, outcome)),
                system_key=key,
                enclosure=system.enclosure if system is not None else None,
                bay=system.bay if system is not None else None,
                domain_group=system.group if system is not None else None,
                rule=plan.rule.name if plan.rule is not None else None,
                mode=plan.rule.mode.value if plan.rule is not None else None,
                outcome=outcome,
                job_id=job_id,
                reason=reason,
                notified=outcome.notifies,
            )

        def render(d: Decision) -> tuple[str, str]:
            return notice(d, event, system)

        outcome, reason, job_id = plan.outcome, plan.reason, None
        if plan.outcome is Outcome.FAILOVER:
            assert system is not None and plan.rule is not None
            recorded: list[Decision] = []

            def with_job(tx: Any, job: int) -> None:
                # In the job's own transaction: the failover and why it was started are
                # committed together, or neither (a crash in between lost the decision and
                # both its mails while the job ran).
                recorded.append(
                    self.journal.record_in(
                        tx,
                        decision(Outcome.FAILOVER_STARTED, _started_reason(system, plan, job), job),
                        render,
                    )
                )

            outcome, reason, job_id = await self._fail_over(plan, system, principal, with_job)
            if recorded and outcome is Outcome.FAILOVER_STARTED:
                return recorded[0], system
        stored = await asyncio.to_thread(
            self.journal.record, decision(outcome, reason, job_id), render
        )
        return stored, system

    def _recall(self, names: list[str], since: datetime) -> tuple[System | None, str, list[Past]]:
        """The system the names resolve to, its key and its recent decisions.

        A failover started recently under any of its names counts too: once the spare is
        rediscovered (`[vcem] rediscovery_delay_s`) the host name resolves to the spare's
        bay, and a repeat event about the same server must still fall in the cool-down
        (reference vcem-domain.md §5.4: "never auto-failover the same server twice within
        T"). Before that, VCEM has dropped the names from discovery (§1.6) and they resolve
        to no bay: the failover tells which one they meant."""
        system = resolve_system(self.store, names)
        known = [*names, *(system.names() if system is not None else [])]
        earlier = self.journal.failed_over_naming(known, since)
        if system is None and earlier is not None:
            system = _moved_system(names, earlier)
        key = system.key if system is not None else unknown_key(names)
        history = self.journal.history(key, since)
        if earlier is not None and earlier.system_key != key:
            history.append(dataclasses.replace(earlier.past(), elsewhere=True))
        return system, key, history

    async def _fail_over(
        self,
        plan: Plan,
        system: System,
        principal: Principal | None,
        with_job: Callable[[Any, int], None] | None = None,
    ) -> tuple[Outcome, str, int | None]:
        assert plan.rule is not None
        empty = await asyncio.to_thread(no_spare_reason, self.store, system)
        if empty is not None:
            return Outcome.FAILOVER_REFUSED, empty, None
        try:
            job_id = await self.failover.start(principal, system, with_job)
        except NotActive as exc:
            # Lost the role between the check and the gate: a standby never acts.
            return Outcome.NOT_ACTIVE, exc.description.replace("\n", " ").strip(), None
        except (CIMClientError, ServerError) as exc:
            return Outcome.FAILOVER_REFUSED, f"failoverProfile refused: {exc.description}", None
        return (
            Outcome.FAILOVER_STARTED,
            _started_reason(system, plan, job_id),
            job_id,
        )


def _new_indication(call: ExportCall) -> CIMInstance:
    """DSP0200 ExportIndication takes one parameter, NewIndication, an instance."""
    if call.method.lower() != "exportindication":
        raise NotSupported(
            f"Export method {call.method} is not supported; this listener accepts ExportIndication."
        )
    params = {name.lower(): value for name, value in call.params.items()}
    extra = sorted(name for name in call.params if name.lower() != "newindication")
    indication = params.get("newindication")
    if extra or not isinstance(indication, CIMInstance):
        raise InvalidParameter(
            "ExportIndication takes exactly one parameter, NewIndication, holding the "
            f"indication instance; got {', '.join(sorted(call.params)) or 'none'}."
        )
    return indication


# An indication's texts (its Description, the names it gives, quoted in a reason) reach the
# server log and the mail: a line break or other control character in them is written as an
# escape, so a sender cannot add lines that look like ours ("Decision: ...", a log record).
_CONTROLS = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
}


def one_line(text: str) -> str:
    return text.translate(_CONTROLS)


def _log_line(d: Decision) -> str:
    rule = f" rule {d.rule}" if d.rule else ""
    job = f" job {d.job_id}" if d.job_id is not None else ""
    return one_line(
        f"event {d.indication_class} from {d.sender} about {d.system_named or '(no system)'}:"
        f" {d.outcome.value}{rule}{job}: {d.reason}"
    )


_SUBJECTS = {
    Outcome.FAILOVER_STARTED: "Automatic failover: job {job} started for {system}",
    Outcome.ALERTED: "Failover event on {system}: verify, then fail over if needed",
    Outcome.UNKNOWN_SYSTEM: "Failover event for an unknown system: {system}",
    Outcome.KILL_SWITCH: "Automatic failover is disabled: no failover for {system}",
    Outcome.NOT_ACTIVE: "Standby Group Manager {node}: no failover for {system}",
    Outcome.FAILOVER_REFUSED: "Automatic failover refused for {system}",
}


# How often, and how long, the end of an event-started job is waited for (its mail); how
# long a mail the SMTP server refused waits before it is tried again.
FOLLOW_POLL = 0.5
FOLLOW_LIMIT = 6 * 3600.0
MAIL_RETRY = 60.0


class EndMails:
    """Mails how each event-started failover job ended.

    What is owed lives in the store (`events_decisions.end_mail`, migration 0002), not in the
    memory of the node that started the job: the active node mails it when the job ends, so
    a restart, a stepDown or a takeover in between loses no end mail. A mail is marked sent
    only after the SMTP server took it (a crash in between sends it twice rather than never:
    "it failed" must reach the on-call person); if marking fails, it is marked at the next
    pass, not mailed again. One the SMTP server refused is tried again every `retry` seconds.
    An end not mailed `limit` after the event (the job never ended, or mail kept failing),
    the end of a job that is gone, and one whose mail failed `MAX_FAILURES` times for a
    reason of ours, are given up with a warning in the log (the job's own record tells).

    A decision this node could not store (it lost the role between starting the job and
    recording the decision) is followed in memory instead (`follow`), on any role: reading
    the job and mailing change nothing in the store.

    The notice of a decision (migration 0003: the alert, "failover job N started", a
    refusal...) is owed in the store the same way, written when the decision was recorded:
    each pass sends the owed notices first, oldest first, and a job's end is not mailed
    before its start was. A notice the SMTP server did not take is tried again every `retry`
    seconds and given up `limit` after its event.
    """

    MAX_FAILURES = 5

    def __init__(
        self,
        journal: DecisionLog,
        store: Any,
        roles: Any,
        notifier: Notifier,
        clock: Callable[[], datetime],
        *,
        poll: float = FOLLOW_POLL,
        limit: float = FOLLOW_LIMIT,
        retry: float | None = None,
    ) -> None:
        self.journal = journal
        self.store = store
        self.jobs = JobJournal(store, roles.fenced, clock=lambda: clock().timestamp())
        self.roles = roles
        self.notifier = notifier
        self.clock = clock
        self.poll = poll
        self.limit = timedelta(seconds=limit)
        if retry is None:
            retry = getattr(getattr(notifier, "settings", None), "retry", MAIL_RETRY)
        self.retry = timedelta(seconds=retry)
        self._local: dict[str, Decision] = {}  # followed in memory (see above)
        self._ends = _Attempts()  # end mails, by decision
        self._notices = _Attempts()  # the decisions' own mails, by decision
        self._wake: asyncio.Event | None = None
        # A planned hand-over (stepDown, a stop) waits for a mail being sent and marked, so
        # that the next active does not find it owed and send it again (`pause`).
        self._flight = threading.Condition()
        self._sending = 0
        self._paused = False
        roles.add_quiescer(self)

    def pause(self, timeout: float) -> bool:
        """Quiescer (provider.roles): send no new mail; wait up to `timeout` for the one being
        sent to be marked. Always True: a mail that outlasts the drain time may go out twice,
        which is better than refusing the hand-over (it is not a device action)."""
        with self._flight:
            self._paused = True
            self._flight.wait_for(lambda: self._sending == 0, timeout)
        return True

    def resume(self) -> None:
        with self._flight:
            self._paused = False

    def acting(self) -> str:
        return ""  # a mail never holds a hand-over back (`pause`)

    def _take_off(self) -> bool:
        """A mail may start now (not paused for a hand-over); counted until `_landed`."""
        with self._flight:
            if self._paused:
                return False
            self._sending += 1
            return True

    def _landed(self) -> None:
        with self._flight:
            self._sending -= 1
            self._flight.notify_all()

    def follow(self, decision: Decision) -> None:
        """Mail the end of this decision's job: from the store's `owed` mark, or from memory
        when the decision is not stored."""
        if not decision.stored:
            self._local[decision.instance_id] = decision
        self.wake()

    def wake(self) -> None:
        """Look now (a failover just started), not at the next poll."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """The server's background task: a pass every `poll` seconds."""
        self._wake = asyncio.Event()
        while True:
            try:
                await self.send_notices()
                await self.settle_ended()
            except (StoreError, NotActive, Fenced) as exc:
                log.warning("end mails of event-started failovers: %s", exc.description)
            except Exception:
                # A bug of ours must not end the loop: every later end mail would be lost.
                log.exception("end mails of event-started failovers failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll)
            self._wake.clear()

    async def send_notices(self) -> int:
        """One pass over the owed notices (active only); returns how many were mailed."""
        if self.roles.role is not Role.ACTIVE:
            return 0
        owed = await asyncio.to_thread(self.journal.owed_notices)
        self._notices.keep_only({n.instance_id for n in owed})
        now = self.clock()
        mailed = 0
        for notice in owed:
            key = notice.instance_id
            mailed += await self._attempt(
                self._notices,
                key,
                f"the mail of event decision {key}",
                self._send_notice(notice, now),
                functools.partial(self._notice_done, key, "given-up"),
            )
        return mailed

    async def _attempt(
        self,
        attempts: _Attempts,
        key: str,
        what: str,
        send: Awaitable[int],
        give_up: Callable[[str], Awaitable[None]],
    ) -> int:
        """One mail's attempt: a failure of ours is counted and, after MAX_FAILURES, the
        mail given up; the store or the role failing waits for the next pass."""
        try:
            return await send
        except (StoreError, NotActive, Fenced):
            raise
        except Exception:
            failures = attempts.failed(key)
            log.exception("%s failed (%d)", what, failures)
            if failures >= self.MAX_FAILURES:
                await give_up(f"it failed {failures} times")
            return 0

    async def _send_notice(self, notice: Notice, now: datetime) -> int:
        key = notice.instance_id
        if key in self._notices.mailed:
            await self._notice_done(key, "sent")  # mailed at an earlier pass; marking failed
            return 0
        if now - notice.at > self.limit:
            hours = self.limit.total_seconds() / 3600
            await self._notice_done(key, "given-up", f"not mailed after {hours:g} h")
            return 0
        if self._notices.waiting(key, now):
            return 0
        if self.roles.role is not Role.ACTIVE or not self._take_off():
            return 0  # the role is going or gone: the next active mails it
        try:
            # The notice was logged when the event was decided; attempts only mail it.
            if not await self.notifier.notify(notice.subject, notice.body, log_notice=False):
                self._notices.retry(key, now + self.retry)
                return 0
            self._notices.mailed.add(key)
            await self._notice_done(key, "sent")
            return 1
        finally:
            self._landed()

    async def _notice_done(self, key: str, how: str, why: str = "") -> None:
        if why:
            log.warning("no mail for event decision %s: %s", key, why)
        await asyncio.to_thread(self.journal.settle_notice, key, how)
        self._notices.forget(key)

    async def settle_ended(self) -> int:
        """One pass: mail every owed end that has come; returns how many were mailed."""
        owed: list[tuple[Decision, JobState | None, bool]] = []
        if self.roles.role is Role.ACTIVE:
            owed = await asyncio.to_thread(self.journal.owed_end_mails)
            # Forget what the other node settled meanwhile (it was active for a while).
            self._ends.keep_only({d.instance_id for d, _, _ in owed} | set(self._local))
        for decision in list(self._local.values()):
            assert decision.job_id is not None
            try:
                job = await asyncio.to_thread(self.jobs.get, decision.job_id)
                owed.append((decision, job.state, False))
            except NotFound:
                owed.append((decision, None, False))
        mailed = 0
        now = self.clock()
        for decision, state, notice_owed in owed:
            if notice_owed:
                continue  # "started" goes out before how it ended (read with the end)
            mailed += await self._attempt(
                self._ends,
                decision.instance_id,
                f"the end mail of job {decision.job_id}",
                self._settle(decision, state, now),
                functools.partial(self._give_up, decision),
            )
        return mailed

    async def _settle(self, decision: Decision, state: JobState | None, now: datetime) -> int:
        key = decision.instance_id
        assert decision.job_id is not None
        if key in self._ends.mailed:
            await self._done(decision, "sent")  # mailed at an earlier pass; marking failed
            return 0
        if state is None:
            await self._give_up(decision, f"job {decision.job_id} is gone")
            return 0
        if now - decision.at > self.limit:
            why = "has not ended" if not state.finished else "could not be mailed"
            hours = self.limit.total_seconds() / 3600
            await self._give_up(decision, f"job {decision.job_id} {why} after {hours:g} h")
            return 0
        if not state.finished or self._ends.waiting(key, now):
            return 0
        if decision.stored and self.roles.role is not Role.ACTIVE:
            return 0  # the role was lost during this pass: the new active mails it
        if decision.stored and not self._take_off():
            return 0  # a hand-over is under way: the next active mails it
        try:
            job = await asyncio.to_thread(self.jobs.get, decision.job_id)
            at = await asyncio.to_thread(self._profile_at, job)
            subject, body = end_notice(decision, job, at)
            if not await self.notifier.notify(subject, body):
                self._ends.retry(key, now + self.retry)
                return 0
            self._ends.mailed.add(key)
            await self._done(decision, "sent")
            return 1
        finally:
            if decision.stored:
                self._landed()

    def _profile_at(self, job: Job) -> tuple[str | None, str | None] | None:
        """Where the job's profile is now by the inventory (None: the profile is gone)."""
        with self.store.read_one() as tx:
            profile = repo.profile(tx, job.profile)
        return None if profile is None else (profile.enclosure, profile.bay)

    async def _give_up(self, decision: Decision, why: str) -> None:
        log.warning("no end mail for event decision %s: %s", decision.instance_id, why)
        await self._done(decision, "given-up")

    async def _done(self, decision: Decision, how: str) -> None:
        key = decision.instance_id
        if decision.stored:
            await asyncio.to_thread(self.journal.settle_end_mail, decision, how)
        self._local.pop(key, None)
        self._ends.forget(key)


class _Attempts:
    """What this node remembers of the mails of one kind it tries (keyed by decision): when
    one refused by the SMTP server is tried again, how often one failed for a reason of ours,
    and which were mailed but not yet marked sent in the store."""

    def __init__(self) -> None:
        self._retry_at: dict[str, datetime] = {}
        self._failures: dict[str, int] = {}
        self.mailed: set[str] = set()

    def keep_only(self, keys: set[str]) -> None:
        """Forget every other key (settled meanwhile, by this node or the other)."""
        for kept in (self._retry_at, self._failures):
            for key in [k for k in kept if k not in keys]:
                del kept[key]
        self.mailed &= keys

    def waiting(self, key: str, now: datetime) -> bool:
        return self._retry_at.get(key, now) > now

    def retry(self, key: str, at: datetime) -> None:
        self._retry_at[key] = at

    def failed(self, key: str) -> int:
        self._failures[key] = failures = self._failures.get(key, 0) + 1
        return failures

    def forget(self, key: str) -> None:
        self.mailed.discard(key)
        self._retry_at.pop(key, None)
        self._failures.pop(key, None)


def end_notice(
    d: Decision, job: Job, profile_at: tuple[str | None, str | None] | None = None
) -> tuple[str, str]:
    """The mail for the end of the failover job an event started. `profile_at`: where the
    profile is now (enclosure, bay), to give the right command when a failed job left it
    elsewhere than on the source."""
    where = d.label
    lines = [
        f"Job:       {job.id} (GM_ConcreteJob InstanceID=GM:ConcreteJob:{job.id}; "
        f"vcemcli -show job -jobid {job.id})",
        f"Started:   by rule {d.rule} for the event received {d.at:%Y-%m-%d %H:%M:%S} UTC "
        f"(GM_EventDecision InstanceID={d.instance_id})",
        f"Source:    enclosure {job.source_enclosure} bay {job.source_bay}",
    ]
    if job.state is JobState.COMPLETED:
        subject = f"Automatic failover: job {job.id} completed for {where}"
        lines += [
            f"Profile:   {job.profile} now in enclosure {job.target_enclosure} bay "
            f"{job.target_bay}, powered {'on' if job.power_on else 'off'}",
            "The host name and IP addresses follow once the server has booted (rediscovery).",
        ]
    else:
        subject = f"Automatic failover FAILED: job {job.id} for {where}"
        lines += [
            f"State:     {job.state.value} at step {job.error_step or job.current_step or '-'}",
            # Our own text, which may run over lines (a standby's refusal): one line here,
            # not escapes as an indication's text gets.
            f"Reason:    {' '.join((job.error_description or '').split())}",
        ]
        on_source = profile_at is None or profile_at == (job.source_enclosure, job.source_bay)
        if on_source:
            lines.append(
                "Nothing was rolled back. Fix the cause, then fail over by hand: vcemcli "
                f"-failover -enclosurename {job.source_enclosure} -bayname {job.source_bay}"
            )
        else:
            where = (
                f"in enclosure {profile_at[0]} bay {profile_at[1]}"
                if profile_at is not None and profile_at[0] is not None
                else "on no bay"
            )
            lines.append(
                f"Nothing was rolled back. Profile {job.profile} is now {where}. Fix the cause, "
                f"then place it: vcemcli -move profile -profilename {job.profile} "
                "-targetenclosurename <enclosure> -targetbayname <bay>"
            )
    return one_line(subject), "\n".join(one_line(line) for line in lines)


def notice(d: Decision, event: Event, system: System | None) -> tuple[str, str]:
    """The subject and body of the mail (and log line) for a notified decision: the event,
    the system, the job number (reference §5.4: "failover job N started for enc:bay because
    event E")."""
    where = system.label if system is not None else (d.system_named or "(no name given)")
    subject = _SUBJECTS[d.outcome].format(job=d.job_id, system=where, node=d.node)
    described = event.text("Description") or event.text("Message")
    lines = [
        f"Event:     {d.indication_class}"
        + (f" EventID {d.event_id}" if d.event_id else "")
        + (f" PerceivedSeverity {d.severity}" if d.severity else ""),
    ]
    if described:
        lines.append(f"           {described}")
    lines += [
        f"Received:  {d.at:%Y-%m-%d %H:%M:%S} UTC from {d.sender} by Group Manager {d.node}",
        f"System:    {where}",
        f"Rule:      {d.rule} (mode {d.mode})",
        f"Decision:  {d.outcome.value}: {d.reason}",
        f"Record:    GM_EventDecision InstanceID={d.instance_id}",
    ]
    if d.job_id is not None:
        lines.append(
            f"Job:       {d.job_id} (GM_ConcreteJob InstanceID=GM:ConcreteJob:{d.job_id}; "
            f"vcemcli -show job -jobid {d.job_id})"
        )
    if d.outcome in (Outcome.ALERTED, Outcome.KILL_SWITCH) and system is not None:
        # Mode 2 of seed 000: "After verifying the problem, the administrator initiates
        # failover via the UI or CLI." The kill switch turns a failover rule into that alert.
        lines.append(
            "After verifying the problem, fail over with: vcemcli -failover "
            f"-enclosurename {system.enclosure} -bayname {system.bay}"
        )
    if d.outcome is Outcome.UNKNOWN_SYSTEM and MOVED_MARK in d.reason:
        lines.append("No failover was started. The decision says where a job moved it.")
    elif d.outcome is Outcome.UNKNOWN_SYSTEM:
        lines.append(
            "No failover was started. Check the host name / IP discovery data of the "
            "inventory, or fail over by enclosure and bay."
        )
    return one_line(subject), "\n".join(one_line(line) for line in lines)
