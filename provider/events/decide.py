"""What to do about one indication: a pure function of the event, the rules, what the store
says about the system, the recent decisions and the time.

The pipeline of reference vcem-domain.md §5.2, in the order the checks run:

    rule for the indication? --no--> no-rule           (recorded, nothing else)
    system known? ------------no--> unknown-system     (recorded and mailed, never guessed)
    rule for that system? ----no--> no-rule
    inside a time window? ----no--> outside-window     (HP SIM's time filter: nothing happens)
    kill switch of its group? yes-> kill-switch        (failover rules only: mailed, no job)
    this node standby? -------yes-> not-active         (failover rules only: "a standby
                                                        never acts"; mailed)
    first occurrence? --------no--> suppressed-duplicate
    mode alert ---------------> alerted                (mailed)
    mode failover ------------> failover               (the caller starts the job: the
                                                        outcome becomes failover-started or
                                                        failover-refused)

"First occurrence" (§5.2: "On the first occurrence of any failover event, HP Systems Insight
Manager runs the custom tool"; §5.4: "never auto-failover the same server twice within T"):
within a rule's cool-down, a failover started for a system silences every later event for
it; otherwise an outcome already notified for that system is not notified again, so a
flapping sensor sends one mail, not a hundred. A refused failover is not retried within the
cool-down either (first occurrence): the mail told the administrator what to fix.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .rules import Event, Mode, Rule, RuleSet

__all__ = ["Outcome", "Past", "Plan", "System", "decide"]


class Outcome(enum.Enum):
    """A decision about one indication (GM_EventDecision.Decision)."""

    NO_RULE = "no-rule"  # no enabled rule matches the indication (or its system)
    UNKNOWN_SYSTEM = "unknown-system"  # the names it gives resolve to no bay
    OUTSIDE_WINDOW = "outside-window"  # the matching rule is not in force now
    KILL_SWITCH = "kill-switch"  # automatic failover is disabled for the domain group
    NOT_ACTIVE = "not-active"  # a standby received a failover event: it never acts
    SUPPRESSED = "suppressed-duplicate"  # a repeat within the cool-down
    ALERTED = "alerted"  # alert mode: the administrator was told
    FAILOVER = "failover"  # planned only: the caller starts the job
    FAILOVER_STARTED = "failover-started"  # the job was scheduled; its number was mailed
    FAILOVER_REFUSED = "failover-refused"  # the failover path refused (maintenance, rights...)

    @property
    def notifies(self) -> bool:
        """Whether the administrator is mailed (all outcomes are logged and recorded)."""
        return self not in (Outcome.NO_RULE, Outcome.OUTSIDE_WINDOW, Outcome.SUPPRESSED)


@dataclass(frozen=True)
class System:
    """The bay the indication's system resolved to through the inventory's discovery data,
    exactly as failoverProfile resolves HostName / IPAddress (seed 000: "the hostname or IP
    address is translated to its unique enclosure-bay location")."""

    named: str  # the host name or IP address that resolved, as the indication gave it
    by_ip: bool
    enclosure: str
    bay: str
    group: str
    host: str | None
    ips: tuple[str, ...]
    automatic_failover_disabled: bool  # GM_DomainGroup.AutomaticFailoverDisabled

    @property
    def key(self) -> str:
        return f"bay:{self.enclosure}/{self.bay}"

    @property
    def label(self) -> str:
        return f"{self.named} (enclosure {self.enclosure} bay {self.bay}, group {self.group})"

    def names(self) -> list[str]:
        return [self.named, *([self.host] if self.host else []), *self.ips]


def unknown_key(names: Sequence[str]) -> str:
    return f"name:{names[0].lower()}" if names else "name:"


@dataclass(frozen=True)
class Past:
    """A recent decision about the same system, for first-occurrence de-duplication."""

    at: datetime
    outcome: Outcome
    rule: str
    job_id: int | None
    # A failover of the same server found by its names on another bay (it moved there): it
    # silences failovers, not the alerts about the hardware it runs on now.
    elsewhere: bool = False
    sender: str = ""  # who delivered the indication it decided about


@dataclass(frozen=True)
class Plan:
    outcome: Outcome
    rule: Rule | None
    reason: str


def decide(
    rules: RuleSet,
    event: Event,
    names: Sequence[str],
    system: System | None,
    history: Sequence[Past],
    now: datetime,
    active: bool,
    sender: str = "",
) -> Plan:
    """The decision for `event`; `history` holds the system's recent decisions (any age:
    each rule applies its own cool-down), `now` is aware, `active` is this node's role,
    `sender` who delivered it."""
    candidates = [r for r in rules.rules if r.enabled and r.matches_event(event)]
    if not candidates:
        return Plan(Outcome.NO_RULE, None, f"no enabled rule matches {event.classname}")
    if system is None:
        said = ", ".join(names) if names else "no host name or IP address"
        reason = (
            f"the indication names {said}; no bay is known by that name in the discovery "
            "data, so nothing is failed over (a system is never guessed)"
        )
        plan = Plan(Outcome.UNKNOWN_SYSTEM, candidates[0], reason)
        return _first_occurrence(plan, history, now, sender)
    rule = next((r for r in candidates if r.matches_system(system.names(), system.group)), None)
    if rule is None:
        return Plan(
            Outcome.NO_RULE,
            None,
            f"rules {', '.join(r.name for r in candidates)} match the indication but not "
            f"system {system.label}",
        )
    if not rule.in_window(rules.local(now)):
        windows = "; ".join(w.describe() for w in rule.windows)
        return Plan(
            Outcome.OUTSIDE_WINDOW,
            rule,
            f"rule {rule.name} is in force only {windows} ({rules.timezone_name} time)",
        )
    if rule.mode is Mode.FAILOVER and system.automatic_failover_disabled:
        plan = Plan(
            Outcome.KILL_SWITCH,
            rule,
            f"automatic failover is disabled for domain group {system.group} "
            "(setAutomaticFailover); nothing was failed over",
        )
    elif rule.mode is Mode.FAILOVER and not active:
        plan = Plan(
            Outcome.NOT_ACTIVE,
            rule,
            "this Group Manager is a standby; only the active Group Manager fails servers over",
        )
    elif rule.mode is Mode.FAILOVER:
        plan = Plan(Outcome.FAILOVER, rule, f"rule {rule.name} (mode failover)")
    else:
        plan = Plan(Outcome.ALERTED, rule, f"rule {rule.name} (mode alert)")
    return _first_occurrence(plan, history, now, sender)


def _first_occurrence(plan: Plan, history: Sequence[Past], now: datetime, sender: str) -> Plan:
    """A started failover silences repeats from anyone (never the same server twice); any
    other first occurrence only those of its own sender: any authenticated user may deliver
    an indication, and one who may not fail over (or who sends a forgery) must not silence
    the genuine sender's failover, nor its alert, for the cool-down."""
    assert plan.rule is not None
    since = now - timedelta(minutes=plan.rule.cooldown_minutes)
    recent = [p for p in history if p.at > since]
    failing_over = plan.rule.mode is Mode.FAILOVER
    started = next(
        (
            p
            for p in recent
            if p.outcome is Outcome.FAILOVER_STARTED and (failing_over or not p.elsewhere)
        ),
        None,
    )
    if started is not None:
        return Plan(
            Outcome.SUPPRESSED,
            plan.rule,
            f"failover job {started.job_id} was started for this system at "
            f"{started.at:%Y-%m-%d %H:%M:%S} UTC (rule {started.rule}); repeats within "
            f"{plan.rule.cooldown_minutes} minutes are not acted on",
        )
    same = {plan.outcome}
    if plan.outcome is Outcome.FAILOVER:
        same.add(Outcome.FAILOVER_REFUSED)
    earlier = next((p for p in recent if p.outcome in same and p.sender == sender), None)
    if earlier is not None:
        return Plan(
            Outcome.SUPPRESSED,
            plan.rule,
            f"first occurrence at {earlier.at:%Y-%m-%d %H:%M:%S} UTC was {earlier.outcome.value}"
            f" (rule {earlier.rule}); repeats within {plan.rule.cooldown_minutes} minutes are "
            "recorded only",
        )
    return plan
