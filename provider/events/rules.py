"""Event rules (`etc/events.toml`): parsing with line-precise errors, and pure matching.

A rule says which indications it is about (indication class, property values such as
PerceivedSeverity, ProbableCause, AlertType, EventID, MessageID), which systems (host name or
IP patterns, domain groups), what to do (`alert` or `failover`, the modes of reference
vcem-domain.md §5.1), when (time windows: HP SIM's task wizard "time filter ... enable VCEM
Profile Failover during the weekends", §5.2) and how long a first occurrence silences the
repeats (`cooldown_minutes`, §5.2 "On the first occurrence of any failover event").

Rules are tried in file order; the first whose indication criteria and system filter both
match decides (a firewall's reading order: what is written first wins). The format is
documented in etc/events.toml and docs/events.md. Nothing here does I/O except
`load_rules`, which reads the file, and `RulesFile`, which reads it again when it changes;
matching takes the event and the time as arguments.
"""

from __future__ import annotations

import enum
import fnmatch
import logging
import os
import re
import threading
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from pywbem import CIMInstance, CIMInstanceName

from provider.errors import ConfigError
from provider.tomlfile import TomlReader, load_toml, locate, parse_toml

log = logging.getLogger("gm.events")

__all__ = [
    "DEFAULT_SYSTEM_PROPERTIES",
    "Event",
    "Mode",
    "Rule",
    "RuleSet",
    "Window",
    "event_from_instance",
    "load_rules",
    "parse_rules",
    "system_names",
]


class Mode(enum.Enum):
    """What a matching rule does (reference vcem-domain.md §5.1, modes 2 and 3)."""

    ALERT = "alert"  # tell the administrator, who verifies and fails over by hand
    FAILOVER = "failover"  # start the failover job, then tell the administrator it did


# Where an indication names the system that posted it, tried in this order. CIM_AlertIndication
# has AlertingManagedElement (a WBEM URI of the element) and SystemName; HP SIM hands its tools
# "%n network name (host name, IP or system name), %a IP address" (reference §5.2).
DEFAULT_SYSTEM_PROPERTIES = ("AlertingManagedElement", "SystemName", "HostName", "IPAddress")

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_TIME = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = {"timezone", "cooldown_minutes", "retention", "system_properties", "rule"}
_RULE_KEYS = {
    "description",
    "enabled",
    "mode",
    "classes",
    "match",
    "systems",
    "groups",
    "windows",
    "cooldown_minutes",
}
_WINDOW_KEYS = {"days", "from", "to"}


@dataclass(frozen=True)
class Window:
    """Days of the week and a time of day range, in the rule set's time zone. A range whose
    end is before its start runs past midnight into the next day ("Fri 20:00-06:00" covers
    Saturday 03:00)."""

    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight, 1440 = the end of the day

    def contains(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        # Overnight: the evening part on a listed day, the morning part on the day after.
        return (day in self.days and minute >= self.start) or (
            (day - 1) % 7 in self.days and minute < self.end
        )

    def describe(self) -> str:
        names = [n for n, d in _DAYS.items() if d in self.days]
        return f"{','.join(names)} {_hhmm(self.start)}-{_hhmm(self.end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Event:
    """An indication as the rules see it: its class and its properties as text.

    Property names are kept as sent in `names` and looked up case-insensitively (CIM names
    are case-insensitive); array values become tuples of text."""

    classname: str
    properties: Mapping[str, str | tuple[str, ...] | None]  # lower-case name -> value
    names: Mapping[str, str]  # lower-case name -> name as sent

    def get(self, name: str) -> str | tuple[str, ...] | None:
        return self.properties.get(name.lower())

    def text(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            return ""
        return ", ".join(value) if isinstance(value, tuple) else value


def _as_text(value: Any) -> str | tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return tuple(t for t in (_as_text(v) for v in value) if isinstance(t, str))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, CIMInstanceName):
        return str(value.to_wbem_uri())
    if isinstance(value, CIMInstance):
        return str(value.tomof()).strip()
    return str(value).strip()


def event_from_instance(indication: CIMInstance) -> Event:
    props: dict[str, str | tuple[str, ...] | None] = {}
    names: dict[str, str] = {}
    for name, prop in indication.properties.items():
        props[name.lower()] = _as_text(prop.value)
        names[name.lower()] = name
    return Event(indication.classname, props, names)


def system_names(event: Event, properties: Sequence[str]) -> list[str]:
    """The names the indication gives its system, in the configured order, duplicates out.

    A WBEM URI (AlertingManagedElement of a CIM_ComputerSystem) contributes its Name key
    (the system's name in CIM_System), not the whole path."""
    found: list[str] = []
    for prop in properties:
        value = event.get(prop)
        values = value if isinstance(value, tuple) else (value,) if value else ()
        for text in values:
            name = _name_in(text)
            if name and name.lower() not in (f.lower() for f in found):
                found.append(name)
    return found


def _name_in(text: str) -> str:
    if "=" not in text:
        return text.strip()
    try:
        path = CIMInstanceName.from_wbem_uri(text.strip())
    except (ValueError, TypeError):
        return text.strip()
    keys = {k.lower(): v for k, v in path.keybindings.items()}
    value = keys.get("name")
    return str(value).strip() if isinstance(value, str) else ""


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    enabled: bool
    mode: Mode
    classes: tuple[str, ...]  # glob patterns on the indication's class name
    match: tuple[tuple[str, tuple[str, ...]], ...]  # property -> accepted patterns
    systems: tuple[str, ...]  # glob patterns on host name / IP; empty: every system
    groups: tuple[str, ...]  # domain groups; empty: every group
    windows: tuple[Window, ...]  # empty: always
    cooldown_minutes: int
    line: int  # where the rule starts in its file

    def matches_event(self, event: Event) -> bool:
        if not any(_glob(event.classname, pattern) for pattern in self.classes):
            return False
        for prop, patterns in self.match:
            value = event.get(prop)
            values = value if isinstance(value, tuple) else (value,) if value is not None else ()
            if not any(_glob(v, p) for v in values for p in patterns):
                return False
        return True

    def matches_system(self, names: Iterable[str], group: str) -> bool:
        if self.groups and group not in self.groups:
            return False
        if not self.systems:
            return True
        return any(_glob(n, p) for n in names for p in self.systems)

    def in_window(self, local: datetime) -> bool:
        return not self.windows or any(w.contains(local) for w in self.windows)

    def describe_match(self) -> list[str]:
        return [f"{prop}={'|'.join(patterns)}" for prop, patterns in self.match]


def _glob(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())


@dataclass(frozen=True)
class RuleSet:
    path: Path
    rules: tuple[Rule, ...]
    timezone: tzinfo | None  # None: the server's local time zone
    timezone_name: str
    retention: int  # decisions kept in the store
    system_properties: tuple[str, ...]

    def local(self, now: datetime) -> datetime:
        return now.astimezone(self.timezone)

    def max_cooldown_minutes(self) -> int:
        return max((r.cooldown_minutes for r in self.rules), default=0)


# -- parsing ---------------------------------------------------------------------------------


class _Reader(TomlReader):
    def strings(self, where: Sequence[str], table: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, key, f"{key} must be a list of non-empty strings.")
        return tuple(value)

    def minutes(
        self, where: Sequence[str], table: Mapping[str, Any], key: str, default: int
    ) -> int:
        value = table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 525_600:
            raise self.fail(where, key, f"{key} must be whole minutes, 0 to 525600 (a year).")
        return value


def load_rules(path: Path) -> RuleSet:
    text, _ = load_toml(path, "the event rules")
    return parse_rules(text, path)


_Stamp = tuple[int, int, int] | None  # (mtime_ns, size, inode) of the file; None: no file


def _stamp(path: Path) -> _Stamp:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class RulesFile:
    """The rules in force: the file as last read, read again when it has changed (its
    modification time, size or inode; an editor's save-by-rename included), so an edit
    takes effect at the next indication or GM_EventRule enumeration, without a restart
    that would hand the active role to the standby.

    An edit that does not parse changes nothing: the rules read before stay in force, and
    the error (file and line) is logged once per version of the file, until it is fixed.
    `optional`: no file means no rules (an installation without [events] and without
    etc/events.toml); a configured file that disappears keeps the rules read before."""

    def __init__(self, path: Path, *, optional: bool = False) -> None:
        self.path = path
        self.optional = optional
        self._lock = threading.Lock()
        self._stamp = _stamp(path)
        if self._stamp is None and optional:
            self._rules = parse_rules("", path)
        else:
            self._rules = load_rules(path)  # at start a broken or missing file is fatal
        self.refusal: str | None = None  # why the file's current version is not in force

    def current(self) -> RuleSet:
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return self._rules
        with self._lock:
            if stamp == self._stamp:
                return self._rules
            # This version of the file is dealt with, read or refused: said once, until the
            # file changes again.
            self._stamp = stamp
            try:
                if stamp is None:
                    if not self.optional:
                        raise ConfigError(f"{self.path}: the event rules file is gone.")
                    rules = parse_rules("", self.path)
                else:
                    rules = load_rules(self.path)
            except ConfigError as exc:
                self.refusal = exc.description
                log.error(
                    "%s; the %d event rules read before stay in force until the file is fixed",
                    exc.description,
                    len(self._rules.rules),
                )
                return self._rules
            self._rules, self.refusal = rules, None
            log.info("event rules read again from %s: %d rules", self.path, len(rules.rules))
            return rules


def parse_rules(text: str, path: Path) -> RuleSet:
    data = parse_toml(text, path)
    r = _Reader(path, text)
    for key in data:
        if key not in _TOP_KEYS:
            raise r.fail(
                [], key, f"unknown setting {key!r}; known: {', '.join(sorted(_TOP_KEYS))}."
            )
    tz_name = data.get("timezone", "")
    timezone: tzinfo | None = None
    if not isinstance(tz_name, str):
        raise r.fail([], "timezone", 'timezone must be a zone name such as "Europe/Paris".')
    if tz_name:
        try:
            timezone = zoneinfo.ZoneInfo(tz_name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise r.fail([], "timezone", f"unknown time zone {tz_name!r}.") from None
    cooldown = r.minutes([], data, "cooldown_minutes", 60)
    retention = data.get("retention", 1000)
    if not isinstance(retention, int) or isinstance(retention, bool) or retention < 10:
        raise r.fail([], "retention", "retention must be a whole number of decisions >= 10.")
    props = r.strings([], data, "system_properties") or DEFAULT_SYSTEM_PROPERTIES
    for prop in props:
        if not _PROPERTY.match(prop):
            raise r.fail([], "system_properties", f"{prop!r} is not a CIM property name.")
    table = data.get("rule", {})
    if not isinstance(table, dict):
        raise r.fail([], "rule", "rules are tables: [rule.<name>].")
    rules = tuple(_rule(r, name, body, cooldown) for name, body in table.items())
    return RuleSet(path, rules, timezone, tz_name or "local", retention, props)


def _rule(r: _Reader, name: str, body: Any, default_cooldown: int) -> Rule:
    where = ["rule", name]
    if not _NAME.match(name):
        raise r.fail(where, None, f"rule name {name!r}: letters, digits, '.', '_', '-' only.")
    if not isinstance(body, dict):
        raise r.fail(where, None, f"[rule.{name}] must be a table.")
    for key in body:
        if key not in _RULE_KEYS:
            raise r.fail(
                where,
                key,
                f"unknown key {key!r} in [rule.{name}]; known: {', '.join(sorted(_RULE_KEYS))}.",
            )
    mode_text = body.get("mode")
    try:
        mode = Mode(mode_text)
    except ValueError:
        raise r.fail(where, "mode", f'rule {name}: mode must be "alert" or "failover".') from None
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise r.fail(where, "enabled", f"rule {name}: enabled must be true or false.")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise r.fail(where, "description", f"rule {name}: description must be a string.")
    match = body.get("match", {})
    if not isinstance(match, dict):
        raise r.fail(where, "match", f"rule {name}: match is a table {{ Property = values }}.")
    criteria: list[tuple[str, tuple[str, ...]]] = []
    for prop, accepted in match.items():
        if not _PROPERTY.match(prop):
            raise r.fail(where, "match", f"rule {name}: {prop!r} is not a CIM property name.")
        values = accepted if isinstance(accepted, list) else [accepted]
        if not values or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in values
        ):
            raise r.fail(
                where,
                "match",
                f"rule {name}: match.{prop} must be a value or a list of values "
                "(strings or whole numbers).",
            )
        criteria.append((prop, tuple(str(v) for v in values)))
    windows = body.get("windows", [])
    if not isinstance(windows, list):
        raise r.fail(where, "windows", f"rule {name}: windows is a list of tables.")
    return Rule(
        name=name,
        description=description,
        enabled=enabled,
        mode=mode,
        classes=r.strings(where, body, "classes") or ("*",),
        match=tuple(criteria),
        systems=r.strings(where, body, "systems"),
        groups=r.strings(where, body, "groups"),
        windows=tuple(_window(r, where, w) for w in windows),
        cooldown_minutes=r.minutes(where, body, "cooldown_minutes", default_cooldown),
        line=locate(r.text, where),
    )


def _window(r: _Reader, where: list[str], w: Any) -> Window:
    rule = where[-1]
    if not isinstance(w, dict) or set(w) - _WINDOW_KEYS:
        raise r.fail(
            where,
            "windows",
            f'rule {rule}: a window is {{ days = ["sat", "sun"], from = "00:00", to = "24:00" }}.',
        )
    days = w.get("days", list(_DAYS))
    if (
        not isinstance(days, list)
        or not days
        or not all(isinstance(d, str) and d.lower()[:3] in _DAYS for d in days)
    ):
        raise r.fail(where, "windows", f"rule {rule}: days are mon, tue, wed, thu, fri, sat, sun.")
    start = _minutes(r, where, w.get("from", "00:00"))
    end = _minutes(r, where, w.get("to", "24:00"))
    if start == end or start == 1440:
        raise r.fail(where, "windows", f"rule {rule}: a window from {_hhmm(start)} to itself.")
    return Window(frozenset(_DAYS[d.lower()[:3]] for d in days), start, end)


def _minutes(r: _Reader, where: list[str], text: Any) -> int:
    match = _TIME.match(text) if isinstance(text, str) else None
    if match is None:
        raise r.fail(where, "windows", f'rule {where[-1]}: times are "HH:MM", not {text!r}.')
    hours, minutes = int(match["h"]), int(match["m"])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise r.fail(where, "windows", f"rule {where[-1]}: no such time of day {text!r}.")
    return hours * 60 + minutes
