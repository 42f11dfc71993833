"""The pure decision (provider.events.decide): the order of the checks and first-occurrence
de-duplication, with the time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from provider.events.decide import Outcome, Past, System, decide
from provider.events.rules import RuleSet, event_from_instance, parse_rules
from tests.events._wire import indication

NOW = datetime(2024, 1, 6, 12, 0, tzinfo=UTC)  # a Saturday
RULES = parse_rules(
    """
timezone = "UTC"
[rule.weekend-failover]
mode = "failover"
match = { EventID = "1001" }
groups = ["dg-web"]
windows = [{ days = ["sat", "sun"] }]
cooldown_minutes = 60

[rule.alert]
mode = "alert"
match = { EventID = ["1001", "6015"] }
cooldown_minutes = 10
""",
    Path("events.toml"),
)
CPU = event_from_instance(indication(EventID="1001", SystemName="web01.example.com"))
MEMORY = event_from_instance(indication(EventID="6015", SystemName="web01.example.com"))


def _system(group: str = "dg-web", disabled: bool = False) -> System:
    return System(
        named="web01.example.com",
        by_ip=False,
        enclosure="enc01",
        bay="3",
        group=group,
        host="web01.example.com",
        ips=("192.0.2.11",),
        automatic_failover_disabled=disabled,
    )


def _decide(
    event=CPU,  # type: ignore[no-untyped-def]
    system: System | None = None,
    history: list[Past] | None = None,
    now: datetime = NOW,
    active: bool = True,
    rules: RuleSet = RULES,
    sender: str = "",
):
    return decide(
        rules,
        event,
        ["web01.example.com"],
        system or _system(),
        history or [],
        now,
        active,
        sender,
    )


def test_failover_rule_in_its_window() -> None:
    plan = _decide()
    assert plan.outcome is Outcome.FAILOVER and plan.rule is not None
    assert plan.rule.name == "weekend-failover"


def test_outside_the_window_nothing_happens_even_if_a_later_rule_matches() -> None:
    monday = NOW + timedelta(days=2)
    plan = _decide(now=monday)
    assert plan.outcome is Outcome.OUTSIDE_WINDOW and not plan.outcome.notifies
    assert "sat,sun 00:00-24:00 (UTC time)" in plan.reason


def test_a_rule_for_other_groups_leaves_the_event_to_the_next_rule() -> None:
    plan = _decide(system=_system(group="dg-db"))
    assert plan.outcome is Outcome.ALERTED and plan.rule is not None
    assert plan.rule.name == "alert"


def test_kill_switch_and_standby_never_plan_a_failover() -> None:
    assert _decide(system=_system(disabled=True)).outcome is Outcome.KILL_SWITCH
    assert _decide(active=False).outcome is Outcome.NOT_ACTIVE
    # An alert rule alerts on a standby too: alerting changes nothing.
    assert _decide(MEMORY, active=False).outcome is Outcome.ALERTED


def test_unknown_system_is_never_guessed() -> None:
    plan = decide(RULES, CPU, ["web01"], None, [], NOW, True)
    assert plan.outcome is Outcome.UNKNOWN_SYSTEM and plan.outcome.notifies
    assert "web01" in plan.reason
    assert decide(RULES, CPU, [], None, [], NOW, True).reason.startswith(
        "the indication names no host name or IP address"
    )


def test_no_rule() -> None:
    other = event_from_instance(indication(EventID="42"))
    assert decide(RULES, other, [], None, [], NOW, True).outcome is Outcome.NO_RULE


def test_a_started_failover_silences_every_event_for_the_system_during_the_cooldown() -> None:
    started = Past(NOW - timedelta(minutes=59), Outcome.FAILOVER_STARTED, "weekend-failover", 7)
    plan = _decide(history=[started])
    assert plan.outcome is Outcome.SUPPRESSED and "failover job 7" in plan.reason
    # The alert rule's own cool-down (10 minutes) is what counts for an alert.
    assert _decide(MEMORY, history=[started]).outcome is Outcome.ALERTED
    recent = Past(NOW - timedelta(minutes=5), Outcome.FAILOVER_STARTED, "weekend-failover", 7)
    assert _decide(MEMORY, history=[recent]).outcome is Outcome.SUPPRESSED
    # After the cool-down, the next failover event acts again.
    old = Past(NOW - timedelta(minutes=61), Outcome.FAILOVER_STARTED, "weekend-failover", 7)
    assert _decide(history=[old]).outcome is Outcome.FAILOVER


def test_a_failover_of_the_server_on_another_bay_silences_failovers_not_alerts() -> None:
    """The server moved to the spare (found by its names): another failover of it waits for
    the cool-down, but an alert about the hardware it runs on now is still mailed."""
    moved = Past(NOW - timedelta(minutes=5), Outcome.FAILOVER_STARTED, "weekend-failover", 7, True)
    assert _decide(history=[moved]).outcome is Outcome.SUPPRESSED
    assert _decide(MEMORY, history=[moved]).outcome is Outcome.ALERTED


def test_an_alert_does_not_hold_back_a_failover_but_repeats_are_not_mailed() -> None:
    alerted = Past(NOW - timedelta(minutes=1), Outcome.ALERTED, "alert", None)
    assert _decide(history=[alerted]).outcome is Outcome.FAILOVER
    assert _decide(MEMORY, history=[alerted]).outcome is Outcome.SUPPRESSED


def test_a_refused_failover_is_not_retried_within_the_cooldown() -> None:
    refused = Past(NOW - timedelta(minutes=30), Outcome.FAILOVER_REFUSED, "weekend-failover", None)
    plan = _decide(history=[refused])
    assert plan.outcome is Outcome.SUPPRESSED and "failover-refused" in plan.reason


def test_repeated_unknown_system_and_kill_switch_are_mailed_once() -> None:
    unknown = Past(NOW - timedelta(minutes=1), Outcome.UNKNOWN_SYSTEM, "weekend-failover", None)
    plan = decide(RULES, CPU, ["ghost"], None, [unknown], NOW, True)
    assert plan.outcome is Outcome.SUPPRESSED
    killed = Past(NOW - timedelta(minutes=1), Outcome.KILL_SWITCH, "weekend-failover", None)
    assert _decide(system=_system(disabled=True), history=[killed]).outcome is Outcome.SUPPRESSED
    # Switched back on: the failover happens (the kill switch is no first occurrence).
    assert _decide(history=[killed]).outcome is Outcome.FAILOVER


def test_a_sender_who_could_not_act_silences_no_one_else() -> None:
    """Any authenticated user may deliver an indication: a read-only user's (refused, or a
    forged alert) came first and the genuine sender's failover or alert was recorded as a
    repeat for the cool-down. A started failover still silences every sender."""
    ago = NOW - timedelta(minutes=1)
    refused = Past(ago, Outcome.FAILOVER_REFUSED, "weekend-failover", None, sender="reader")
    assert _decide(history=[refused], sender="sim").outcome is Outcome.FAILOVER
    assert _decide(history=[refused], sender="reader").outcome is Outcome.SUPPRESSED
    alerted = Past(ago, Outcome.ALERTED, "alert", None, sender="reader")
    assert _decide(MEMORY, history=[alerted], sender="sim").outcome is Outcome.ALERTED
    started = Past(ago, Outcome.FAILOVER_STARTED, "weekend-failover", 7, sender="admin")
    assert _decide(history=[started], sender="sim").outcome is Outcome.SUPPRESSED
