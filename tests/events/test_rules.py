"""Rules file parsing (errors name file and line) and pure matching: no sockets, no store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from provider.errors import ConfigError
from provider.events.rules import Mode, Window, event_from_instance, parse_rules, system_names
from tests.events._wire import indication

ROOT = Path(__file__).resolve().parents[2]
P = Path("/etc/gm/events.toml")


def test_the_shipped_rules_file_loads_with_the_vcem_failover_events() -> None:
    from provider.events.rules import load_rules

    rules = load_rules(ROOT / "etc" / "events.toml")
    first, unreachable = rules.rules
    assert first.name == "vcem-failover-events" and first.mode is Mode.ALERT and first.enabled
    assert first.match == (("EventID", ("1001", "2005", "6015", "6029")),)
    assert unreachable.name == "system-unreachable" and not unreachable.enabled


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('timezone = "UTC"\nbogus = 1\n', 2, "unknown setting 'bogus'"),
        ('\n\ntimezone = "Mars/Olympus"\n', 3, "unknown time zone"),
        ("retention = 3\n", 1, "retention must be"),
        ('[rule.a]\nmode = "alert"\n\n[rule.b]\nmode = "fail"\n', 5, 'mode must be "alert"'),
        ('[rule.a]\nmode = "alert"\nmatch = { Severity = [true] }\n', 3, "match.Severity"),
        ('[rule.a]\nmode = "alert"\ncolour = "red"\n', 3, "unknown key 'colour'"),
        (
            '[rule.a]\nmode = "failover"\n\nwindows = [{ days = ["sat"], from = "25:00" }]\n',
            4,
            "no such time of day",
        ),
        ('[rule.a]\nmode = "failover"\nwindows = [{ days = ["someday"] }]\n', 3, "days are"),
        ('[rule.a]\nmode = "alert"\ncooldown_minutes = -1\n', 3, "whole minutes"),
        ('[rule."a b"]\nmode = "alert"\n', 1, "rule name 'a b'"),
        ("[rule.a\n", 1, ""),  # a TOML syntax error: tomllib's own position
    ],
)
def test_errors_name_the_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rules(text, P)
    text_of = str(err.value)
    if message:
        assert text_of.startswith(f"{P}:{line}: "), text_of
        assert message in text_of
    else:
        assert text_of.startswith(f"{P}: ") and "line 1" in text_of


def _rule(body: str):  # type: ignore[no-untyped-def]
    return parse_rules(f'[rule.r]\nmode = "alert"\n{body}\n', P).rules[0]


def test_class_and_property_patterns() -> None:
    rule = _rule(
        'classes = ["*AlertIndication"]\n'
        'match = { PerceivedSeverity = [6, 7], EventID = "10*", Tags = "disk" }'
    )
    hit = indication(PerceivedSeverity=6, EventID="1001", Tags=["cpu", "Disk"])
    assert rule.matches_event(event_from_instance(hit))
    # Numbers match by value text; strings case-insensitively; arrays by any element.
    for miss in (
        indication(PerceivedSeverity=5, EventID="1001", Tags=["disk"]),
        indication(PerceivedSeverity=6, EventID="2001", Tags=["disk"]),
        indication(PerceivedSeverity=6, EventID="1001"),  # property missing: no match
        indication("CIM_InstModification", PerceivedSeverity=6, EventID="1001", Tags=["disk"]),
    ):
        assert not rule.matches_event(event_from_instance(miss))


def test_system_filter_by_name_pattern_and_group() -> None:
    rule = _rule('systems = ["web*.example.com", "192.0.2.*"]\ngroups = ["dg-web"]')
    assert rule.matches_system(["web01.example.com"], "dg-web")
    assert rule.matches_system(["x", "192.0.2.11"], "dg-web")
    assert not rule.matches_system(["web01.example.com"], "dg-db")
    assert not rule.matches_system(["db01.example.com"], "dg-web")


def test_system_names_take_the_name_key_of_a_wbem_path_and_keep_the_order() -> None:
    event = event_from_instance(
        indication(
            AlertingManagedElement='//sim/root/cimv2:CIM_ComputerSystem.CreationClassName="CIM_'
            'ComputerSystem",Name="web01.example.com"',
            SystemName="WEB01.example.com",
            IPAddress="192.0.2.11",
        )
    )
    order = ("AlertingManagedElement", "SystemName", "HostName", "IPAddress")
    assert system_names(event, order) == ["web01.example.com", "192.0.2.11"]
    assert system_names(event, ("IPAddress", "SystemName")) == ["192.0.2.11", "WEB01.example.com"]


def _at(day: int, hh: int, mm: int = 0) -> datetime:
    # 2024-01-01 was a Monday: day 0.
    return datetime(2024, 1, 1 + day, hh, mm, tzinfo=UTC)


def test_windows_including_past_midnight() -> None:
    weekend = Window(frozenset({5, 6}), 0, 1440)
    assert weekend.contains(_at(5, 0)) and weekend.contains(_at(6, 23, 59))
    assert not weekend.contains(_at(4, 23, 59)) and not weekend.contains(_at(0, 0))
    nights = Window(frozenset({4}), 20 * 60, 6 * 60)  # Friday 20:00 to Saturday 06:00
    assert nights.contains(_at(4, 20)) and nights.contains(_at(5, 5, 59))
    assert not nights.contains(_at(5, 6)) and not nights.contains(_at(4, 19, 59))
    assert not nights.contains(_at(3, 23)) and not nights.contains(_at(4, 3))
    assert nights.describe() == "fri 20:00-06:00"


def test_rule_windows_use_the_rule_sets_time_zone() -> None:
    rules = parse_rules(
        'timezone = "Asia/Tokyo"\n[rule.r]\nmode = "failover"\n'
        'windows = [{ days = ["mon"], from = "08:00", to = "09:00" }]\n',
        P,
    )
    rule = rules.rules[0]
    # Monday 08:30 in Tokyo is Sunday 23:30 UTC.
    assert rule.in_window(rules.local(datetime(2023, 12, 31, 23, 30, tzinfo=UTC)))
    assert not rule.in_window(rules.local(datetime(2024, 1, 1, 8, 30, tzinfo=UTC)))


def test_a_bad_rules_file_stops_the_server_start_naming_its_line(tmp_path: Path) -> None:
    from tests.harness import configure

    rules = tmp_path / "events.toml"
    rules.write_text('cooldown_minutes = 5\n\n[rule.x]\nmode = "automatic"\n', encoding="utf-8")
    handle = configure(tmp_path, config={"events": {"rules": str(rules)}})
    with pytest.raises(RuntimeError) as err:
        handle.start(timeout=20)
    assert f'{rules}:4: rule x: mode must be "alert" or "failover".' in str(err.value)
