"""The simulated hardware (the default driver): enclosures, blades and Virtual Connect in the store.

Device state lives in the `sim_*` tables, so it survives a crash of the provider exactly as
real hardware would, and a restarted provider must *read* it to know what happened: the
point of the crash tests. Every action also counts itself per bay (`power_ons`, ...), so a
test can prove that no bay was powered on twice.

Configuration, `[simulator]` in gm-provider.toml:

    delay_ms = { power_on = 0, power_off = 0, assign = 0, unassign = 0, read = 0, discover = 0 }
    fail = { power_on = ["enc02/5"] }     # these bays fail that operation (DeviceError)
    crash_during = "power_on"             # kill -9 ourselves half-way through that operation's
                                          # delay, once per state directory (crash tests)
    crash_at = "power_off_source:act"     # for the job runner: see provider.jobs.runner

A delayed operation takes effect at the *end* of its delay, like a blade that needs time to
power up: a crash during the delay leaves the device as it was. Real hardware cannot check our
fencing epoch (reference ha-jobs-style.md A.7.4); the simulator's writes are fenced
transactions anyway because every write of this program is (DESIGN), so a superseded node's
half-done action is refused rather than applied.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provider.errors import ConfigError, DeviceError

from .base import (
    BayRef,
    DeviceState,
    Discovery,
    DriverContext,
    HardwareDriver,
    PowerState,
    register_driver,
)

__all__ = ["OPERATIONS", "SimulatorDriver", "SimulatorSettings", "parse_simulator_settings"]

OPERATIONS = ("power_on", "power_off", "assign", "unassign", "read", "discover")
_KEYS = {"delay_ms", "fail", "crash_during", "crash_at"}


@dataclass(frozen=True)
class SimulatorSettings:
    delay_ms: Mapping[str, int] = field(default_factory=dict)
    fail: Mapping[str, frozenset[BayRef]] = field(default_factory=dict)
    crash_during: str | None = None
    crash_at: str | None = None  # interpreted by the job runner


def parse_simulator_settings(section: Mapping[str, Any], error: Any = None) -> SimulatorSettings:
    """Validate `[simulator]`; `error(key, message)` builds a line-precise ConfigError."""

    def fail(key: str | None, message: str) -> ConfigError:
        return error(key, message) if error is not None else ConfigError(message)

    for key in section:
        if key not in _KEYS:
            raise fail(key, f"unknown setting simulator.{key}; known: {', '.join(sorted(_KEYS))}.")
    delays: dict[str, int] = {}
    raw_delays = section.get("delay_ms", {})
    if not isinstance(raw_delays, dict):
        raise fail("delay_ms", "simulator.delay_ms must be a table of operation = milliseconds.")
    for op, value in raw_delays.items():
        if op not in OPERATIONS:
            raise fail(
                "delay_ms", f"simulator.delay_ms.{op}: operations are {', '.join(OPERATIONS)}."
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise fail("delay_ms", f"simulator.delay_ms.{op} must be a whole number >= 0.")
        delays[op] = value
    failures: dict[str, frozenset[BayRef]] = {}
    raw_fail = section.get("fail", {})
    if not isinstance(raw_fail, dict):
        raise fail("fail", 'simulator.fail must be a table: power_on = ["enc02/5"].')
    for op, bays in raw_fail.items():
        if op not in OPERATIONS:
            raise fail("fail", f"simulator.fail.{op}: operations are {', '.join(OPERATIONS)}.")
        if not isinstance(bays, list) or not all(isinstance(b, str) and "/" in b for b in bays):
            raise fail("fail", f'simulator.fail.{op} must list bays as "enclosure/bay".')
        failures[op] = frozenset(BayRef(*b.split("/", 1)) for b in bays)
    crash_during = section.get("crash_during")
    if crash_during is not None and crash_during not in OPERATIONS:
        raise fail("crash_during", f"simulator.crash_during: one of {', '.join(OPERATIONS)}.")
    crash_at = section.get("crash_at")
    if crash_at is not None and not isinstance(crash_at, str):
        raise fail("crash_at", 'simulator.crash_at must be "<step>[:intent|act|record]".')
    return SimulatorSettings(delays, failures, crash_during, crash_at)


def crash_once(state_dir: Path, what: str) -> None:
    """kill -9 this process, unless this crash point already fired for this state directory
    (the restarted provider must get past it). The marker is written first, durably."""
    marker = state_dir / f"crash-{what.replace(':', '-')}.fired"
    if marker.exists():
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(marker, "w") as fh:
        fh.write(what)
        fh.flush()
        os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


class SimulatorDriver(HardwareDriver):
    name = "simulator"

    def __init__(self, context: DriverContext) -> None:
        self.store = context.store
        self.fenced = context.fenced
        self.state_dir = context.state_dir
        self.settings = parse_simulator_settings(context.settings, context.config_error)

    # -- helpers -------------------------------------------------------------------------

    def _operate(self, op: str, bay: BayRef) -> None:
        """The device's own time for `op`, and the configured failures and crash."""
        delay = self.settings.delay_ms.get(op, 0) / 1000.0
        if self.settings.crash_during == op:
            time.sleep(delay / 2)
            crash_once(self.state_dir, f"during-{op}")
            time.sleep(delay / 2)
        elif delay:
            time.sleep(delay)
        if bay in self.settings.fail.get(op, frozenset()):
            raise DeviceError(
                f"{_WORDS[op]} of {bay} failed: simulated hardware fault "
                f"(injected by [simulator] fail.{op})."
            )

    def _change(self, bay: BayRef, sql: str, what: str, params: Mapping[str, Any]) -> None:
        with self.fenced(what) as tx:
            changed = tx.execute(sql, {"enc": bay.enclosure, "bay": bay.bay, **params})
        if changed == 0:
            raise DeviceError(f"the simulated hardware has no {bay}.")

    # -- the interface ---------------------------------------------------------------------

    def read(self, bays: Sequence[BayRef]) -> dict[BayRef, DeviceState]:
        if not bays:
            return {}
        for bay in bays:
            self._operate("read", bay)
        wanted = set(bays)
        result: dict[BayRef, DeviceState] = {}
        # One query for the asked-for bays, each found by its key (an OR of key lookups).
        ordered = sorted(wanted)
        params: dict[str, str] = {}
        terms: list[str] = []
        for i, bay in enumerate(ordered):
            params[f"e{i}"], params[f"b{i}"] = bay.enclosure, bay.bay
            terms.append(f"(enclosure = %(e{i})s AND bay = %(b{i})s)")
        # One statement: read_one() runs it without BEGIN and COMMIT (its own snapshot).
        with self.store.read_one() as tx:
            rows = tx.fetchall(
                "SELECT enclosure, bay, present, model, generation, product, power, profile"
                " FROM sim_bays WHERE " + " OR ".join(terms),
                params,
            )
        for enc, name, present, model, generation, product, power, profile in rows:
            result[BayRef(enc, name)] = DeviceState(
                present=bool(present),
                model=str(model),
                generation=str(generation),
                product=str(product),
                power=PowerState(power) if present else PowerState.UNKNOWN,
                profile=None if profile is None else str(profile),
            )
        missing = wanted - result.keys()
        if missing:
            raise DeviceError(
                "the simulated hardware has no " + ", ".join(str(b) for b in sorted(missing)) + "."
            )
        return result

    def hard_power_off(self, bay: BayRef, job_key: str) -> None:
        self._operate("power_off", bay)
        self._change(
            bay,
            "UPDATE sim_bays SET power = 'off', power_offs = power_offs + 1"
            " WHERE enclosure = %(enc)s AND bay = %(bay)s AND present = TRUE",
            f"power off {bay} ({job_key})",
            {},
        )

    def power_on(self, bay: BayRef, job_key: str) -> None:
        self._operate("power_on", bay)
        self._change(
            bay,
            "UPDATE sim_bays SET power = 'on', power_ons = power_ons + 1"
            " WHERE enclosure = %(enc)s AND bay = %(bay)s AND present = TRUE",
            f"power on {bay} ({job_key})",
            {},
        )

    def assign_profile(self, bay: BayRef, profile: str, job_key: str) -> None:
        self._operate("assign", bay)
        # Virtual Connect refuses a second profile on a bay: so does the simulator.
        self._change(
            bay,
            "UPDATE sim_bays SET profile = %(profile)s, assigns = assigns + 1"
            " WHERE enclosure = %(enc)s AND bay = %(bay)s"
            " AND (profile IS NULL OR profile = %(profile)s)",
            f"assign profile {profile} to {bay} ({job_key})",
            {"profile": profile},
        )

    def unassign_profile(self, bay: BayRef, profile: str, job_key: str) -> None:
        self._operate("unassign", bay)
        self._change(
            bay,
            "UPDATE sim_bays SET profile = NULL, unassigns = unassigns + 1"
            " WHERE enclosure = %(enc)s AND bay = %(bay)s AND profile = %(profile)s",
            f"unassign profile {profile} from {bay} ({job_key})",
            {"profile": profile},
        )

    def discover(self, bay: BayRef) -> Discovery:
        self._operate("discover", bay)
        with self.store.read_one() as tx:
            row = tx.fetchone(
                "SELECT o.host, o.ips FROM sim_bays b JOIN sim_os o ON o.profile = b.profile"
                " WHERE b.enclosure = %(enc)s AND b.bay = %(bay)s AND b.power = 'on'",
                {"enc": bay.enclosure, "bay": bay.bay},
            )
        if row is None:
            return Discovery(None, ())  # nothing running there, or no OS answers
        return Discovery(None if row[0] is None else str(row[0]), tuple(json.loads(row[1])))

    def seed(self, tx: Any, inventory: Any) -> None:
        """Create the simulated devices from the inventory (first start only)."""
        profile_of = {(p.enclosure, p.bay): p.name for p in inventory.profiles if p.bay}
        for bay in inventory.bays:
            server = bay.server
            tx.execute(
                "INSERT INTO sim_bays (enclosure, bay, present, model, generation, product,"
                " power, profile) VALUES (%(enc)s, %(bay)s, %(present)s, %(model)s, %(gen)s,"
                " %(product)s, %(power)s, %(profile)s) ON CONFLICT (enclosure, bay) DO NOTHING",
                {
                    "enc": bay.enclosure,
                    "bay": bay.name,
                    "present": server is not None,
                    "model": server.model if server else "",
                    "gen": server.generation if server else "",
                    "product": server.product if server else "",
                    "power": "on" if server is not None and server.power_on else "off",
                    "profile": profile_of.get(bay.key),
                },
            )
            profile = profile_of.get(bay.key)
            if profile is not None and (bay.host or bay.ips):
                # The OS on the profile's boot LUN answers with this bay's discovery data.
                tx.execute(
                    "INSERT INTO sim_os (profile, host, ips) VALUES (%(p)s, %(h)s, %(ips)s)"
                    " ON CONFLICT (profile) DO NOTHING",
                    {"p": profile, "h": bay.host, "ips": json.dumps(list(bay.ips))},
                )


_WORDS = {
    "power_on": "Power on",
    "power_off": "Hard power-off",
    "assign": "Profile assignment",
    "unassign": "Profile unassignment",
    "read": "Reading the state",
    "discover": "Discovery",
}

register_driver("simulator", SimulatorDriver)
