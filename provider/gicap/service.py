"""The capacity service: the GiCAP rules with their I/O — store, probes, cron, notifications.

Every change follows one shape: read what the probes need (any role), probe (async, all
hosts at once), then in ONE fenced transaction load the state, apply the pure rule and save
the difference (a rule re-checks everything against the state it gets, so a change between
the read and the write is harmless). After the commit: notifications, then the crontab.

Reads for the CIM layer come from a snapshot refreshed after each change and by the
background loop, so instance enumeration never touches the store from the event loop.

The snapshot is the last state this node read or wrote, with the store's version of it
(`repo.version`, migration 0002): a load or a change reads the tables again only when the
version has moved (another node, a hand edit), so at 1,000 members an operation no longer
decodes the whole state once or twice. States are never changed in place (the rules change
a clone), so the same object can serve every reader.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from provider.drivers.cron import CronSettings, ScavengerCron
from provider.drivers.notify import Notifier
from provider.drivers.probe import Prober, ProbeSettings, probe_hosts
from provider.errors import ConfigError, Fenced, NotActive, StoreError
from provider.paths import checkout_root
from provider.roles import Role
from provider.services import Services

from . import repo, rules
from .inventory import load_capacity_inventory
from .model import UNASSIGNED, CapacityState
from .rules import Action, Outcome

__all__ = ["CapacityService", "GicapSettings", "gicap_settings"]

log = logging.getLogger(__name__)

# What completes "Only an active Group Manager can <what>." (SPEC 3.3). The scavenged check's
# text is seed 003's, byte for byte.
WHAT_SEIZE = "seize usage rights from a member"
WHAT_RESTORE = "restore seized usage rights to a member"
WHAT_CHECK = (
    "check to see if it can reconnect to members\nfrom which usage rights were previously seized"
)
WHAT_ACTIVATE = "activate cores on a member"
WHAT_DEACTIVATE = "deactivate cores on a member"
WHAT_GROUPS = "change capacity groups and their members"
WHAT_PERIODIC = "rebalance usage rights and account temporary capacity"
WHAT_SEED = "seed the capacity groups from the inventory"

_SUBJECTS = {
    # Reference §3.3 / §6: the e-mails GiCAP sends on seizure and on expiry.
    "seize": "Core usage rights acquired from an inactive group member",
    "revert": "Seized usage rights expired and reverted",
    "reclaim": "Usage rights reclaimed from a member",
    "reconnect": "Scavenged member reconnected",
    "twelve_hour": "Seized partition assumed to use all its cores",
    "out_of_compliance": "Instant Capacity compliance exception",
    "expiry_warning": "Seized usage rights expire soon",
    "ticap_reminder": "Temporary Capacity Expiration Reminder",  # [V: UG10g p57]
}


@dataclass(frozen=True)
class GicapSettings:
    tick: float = 5.0  # background loop period, seconds
    rebalance_interval: timedelta = timedelta(minutes=30)  # iCAP's loop (§4.3)
    clock_offset_file: Path | None = None  # TESTS ONLY: seconds added to the clock
    cron: CronSettings = field(default_factory=CronSettings)


def _path(config: Any, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else Path(config.path).resolve().parent.parent / p


def gicap_settings(
    config: Any, etc_dir: Path, venv_bin: Path, socket: Path | None
) -> GicapSettings:
    section = config.section("gicap")
    known = {
        "tick",
        "rebalance_minutes",
        "crontab",
        "crontab_user",
        "cron_schedule",
        "test_clock_offset_file",
    }
    for key in section:
        if key not in known:
            raise config.error(
                "gicap", key, f"unknown setting gicap.{key}; known: {', '.join(sorted(known))}."
            )

    def number(key: str, default: float) -> float:
        value = section.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise config.error("gicap", key, f"gicap.{key} must be a number > 0.")
        return float(value)

    def text(key: str, default: str) -> str:
        value = section.get(key, default)
        if not isinstance(value, str) or not value:
            raise config.error("gicap", key, f"gicap.{key} must be a non-empty string.")
        return value

    # In a source checkout (`make run`, tests) the default is a crontab file under the state
    # directory, so that trying the product never edits the user's real crontab.
    default_tab = "user" if checkout_root() is None else str(Path(config.state_dir) / "crontab")
    crontab = text("crontab", default_tab)
    schedule = text("cron_schedule", "*/30 * * * *")
    if len(schedule.split()) != 5:
        raise config.error("gicap", "cron_schedule", "gicap.cron_schedule needs 5 cron fields.")
    cron_user = section.get("crontab_user")
    if cron_user is not None:
        if not isinstance(cron_user, str) or not cron_user or any(c.isspace() for c in cron_user):
            raise config.error(
                "gicap", "crontab_user", 'gicap.crontab_user must be a user name, e.g. "root".'
            )
        if crontab == "user":
            raise config.error(
                "gicap",
                "crontab_user",
                "gicap.crontab_user is the user field of a crontab file (/etc/cron.d); "
                'it needs gicap.crontab = "/etc/cron.d/<name>", not "user".',
            )
    elif crontab != "user" and _system_crontab(Path(crontab)):
        raise config.error(
            "gicap",
            "crontab",
            f"{crontab} is a system crontab: its lines name the user a command runs as. Set "
            'gicap.crontab_user (e.g. "root"), or cron would never run the entry.',
        )
    offset = section.get("test_clock_offset_file")
    return GicapSettings(
        tick=number("tick", 5.0),
        rebalance_interval=timedelta(minutes=number("rebalance_minutes", 30.0)),
        clock_offset_file=_path(config, offset) if isinstance(offset, str) and offset else None,
        cron=CronSettings(
            target=crontab if crontab == "user" else str(_path(config, crontab)),
            schedule=schedule,
            wbemexec=venv_bin / "wbemexec",
            request_file=etc_dir / "requests" / "GiCAP.checkScavengedMember.xml",
            socket=socket,
            user=cron_user,
        ),
    )


def _system_crontab(path: Path) -> bool:
    """/etc/crontab, or a file under /etc/cron.d: the format with a user field."""
    return path == Path("/etc/crontab") or Path("/etc/cron.d") in path.parents


class CapacityService:
    def __init__(
        self,
        services: Services,
        settings: GicapSettings,
        prober: Prober,
        probe: ProbeSettings,
        notifier: Notifier,
    ) -> None:
        self.services = services
        self.roles = services.roles
        self.store = services.store
        self.settings = settings
        self.prober = prober
        self.probe = probe
        self.notifier = notifier
        self.cron = ScavengerCron(settings.cron, services.node_name)
        # The last state read or written and the store version it has (-1: none yet).
        self._known: tuple[int, CapacityState] = (-1, CapacityState())
        self._lock = threading.Lock()
        self._last_periodic: datetime | None = None
        self._role_changed = threading.Event()
        self._role_changed.set()  # sync the crontab once at start
        # What the crontab was last made to say (entry wanted or not); None: not known, or
        # the last write failed. The background pass syncs again whenever the state wants
        # something else, so a crontab that could not be written is retried every tick and a
        # change that ends the last pending seizure (a member removed, a partition seen up)
        # removes the entry without a method of its own having to.
        self._cron_synced: bool | None = None
        self._cron_failing = False

    # -- time --------------------------------------------------------------------------

    def now(self) -> datetime:
        """The domain clock: services.clock plus, in tests only, the offset in
        `[gicap] test_clock_offset_file` (seconds), so a running server can be moved 10 days
        ahead to test expiry (docs/capacity.md)."""
        now = self.services.clock()
        path = self.settings.clock_offset_file
        if path is not None:
            try:
                now += timedelta(seconds=float(path.read_text().strip() or 0))
            except FileNotFoundError:
                pass
            except ValueError as exc:
                raise ConfigError(f"{path}: the clock offset must be seconds: {exc}") from exc
        return now

    # -- store ---------------------------------------------------------------------------

    def _remember(self, version: int, state: CapacityState) -> None:
        with self._lock:
            if version >= self._known[0]:  # never go back to an older state
                self._known = (version, state)

    def _state_at(self, tx: Any, version: int) -> CapacityState:
        """The state of the store at `version` (read in `tx`): the known one when it is that
        version, else loaded and remembered."""
        with self._lock:
            known, state = self._known
        if known == version:
            return state
        state = repo.load(tx)
        self._remember(version, state)
        return state

    def load_sync(self) -> CapacityState:
        with self.store.read() as tx:
            version = repo.version(tx)
            if version is None:  # not seeded yet
                state = repo.load(tx)
                self._remember(-1, state)
                return state
            return self._state_at(tx, version)

    async def load(self) -> CapacityState:
        return await asyncio.to_thread(self.load_sync)

    def snapshot(self) -> CapacityState:
        with self._lock:
            return self._known[1]

    def seed_if_needed(self) -> None:
        """First start of the first active: the inventory seeds the store (its docs say so)."""
        with self.store.read() as tx:
            if repo.is_seeded(tx):
                return
        path = self.services.inventory_path
        state = load_capacity_inventory(path)
        with self.roles.fenced(WHAT_SEED) as tx:
            if repo.is_seeded(tx):
                return
            repo.seed(tx, state, str(path))
            tx.audit(f"gicap: seeded {len(state.groups)} groups from {path}")
        log.info("capacity state seeded from %s", path)

    def change_sync(self, what: str, rule: Callable[[CapacityState], Outcome]) -> Outcome:
        with self.roles.fenced(what) as tx:
            if not repo.is_seeded(tx):
                raise NotActive(what)  # never seeded: no active has run yet
            before = self._state_at(tx, repo.claim(tx))
            outcome = rule(before)
            repo.save(tx, before, outcome.state)
            after = repo.version(tx)
            assert after is not None
            kinds = sorted({a.kind for a in outcome.actions})
            if kinds:
                tx.audit(f"gicap: {', '.join(kinds)}")
        self._remember(after, outcome.state)  # committed
        return outcome

    async def change(self, what: str, rule: Callable[[CapacityState], Outcome]) -> Outcome:
        outcome = await asyncio.to_thread(self.change_sync, what, rule)
        await self.report(outcome.actions)
        return outcome

    async def report(self, actions: list[Action]) -> None:
        """Log every action now; mail those that notify in the background (`Notifier.tell`),
        so the method's answer and its audit line do not wait for the mail server."""
        for action in actions:
            if action.notify:
                subject = _SUBJECTS.get(action.kind, "Instant Capacity notice")
                self.notifier.tell(f"{subject}: {action.group}", action.text)
            else:
                log.info("%s: %s", action.kind, action.text)

    async def sync_cron(self, state: CapacityState) -> None:
        """Seed 003: the entry stays while any member of any group has rights seized from it
        pending; installed by the first deferred seizure; removed after the last."""
        await self._sync_cron(bool(state.pending()))

    async def _sync_cron(self, wanted: bool) -> None:
        # The seizure is committed whatever happens here: a crontab that cannot be written
        # is reported (log and e-mail, once until it works again), never turned into a
        # failure of the method; the background pass retries it.
        try:
            result = await asyncio.to_thread(self.cron.sync, wanted)
        except Exception as exc:
            self._cron_synced = None
            if not self._cron_failing:
                self._cron_failing = True
                self.notifier.tell(
                    "Cannot update the checkScavengedMember cron entry",
                    f"{self.cron.settings.target}: {exc}. Run checkScavengedMember yourself "
                    f"({self.cron.command}) until this is fixed; the Group Manager retries "
                    f"every {self.settings.tick:g} s and says when it has written it.",
                )
            return
        self._cron_synced = wanted
        if self._cron_failing:
            self._cron_failing = False
            log.warning(
                "checkScavengedMember cron entry %s: the crontab (%s) can be written again",
                "in place" if wanted else "removed",
                self.cron.settings.target,
            )
        elif result != "unchanged":
            log.info("checkScavengedMember cron entry %s (%s)", result, self.cron.settings.target)

    # -- operations ----------------------------------------------------------------------

    async def _answers(self, hosts: list[str]) -> dict[str, bool]:
        return await probe_hosts(self.prober, hosts, self.probe.timeout, self.probe.max_concurrency)

    async def seize(self, host: str) -> Outcome:
        state = await self.load()
        cx = state.complex_of(host)
        answered = await self._answers(cx.all_hosts if cx is not None else [])
        now = self.now()
        outcome = await self.change(WHAT_SEIZE, lambda s: rules.seize(s, host, answered, now))
        await self.sync_cron(outcome.state)
        return outcome

    async def restore(self, host: str) -> Outcome:
        now = self.now()
        outcome = await self.change(WHAT_RESTORE, lambda s: rules.restore(s, host, now))
        await self.sync_cron(outcome.state)
        return outcome

    async def check_scavenged(self) -> Outcome:
        state = await self.load()
        pending = {s.member for s in state.pending()}
        hosts = [h for name in pending for h in state.complexes[name].all_hosts]
        answered = await self._answers(hosts)
        reachable = {
            name: any(answered.get(h, False) for h in state.complexes[name].all_hosts)
            for name in pending
        }
        now = self.now()
        outcome = await self.change(WHAT_CHECK, lambda s: rules.check_scavenged(s, reachable, now))
        await self.sync_cron(outcome.state)
        return outcome

    async def _silent_while_seized(self, host: str) -> bool:
        """Does no host of `host`'s partition answer, while its rights are seized? Probed only
        then (the partition that asks for cores runs, unless someone asks on its behalf)."""
        state = await self.load()
        cx = state.complex_of(host)
        part = cx.partition_of(host) if cx is not None else None
        if cx is None or part is None or not state.in_force(cx.name, part.name):
            return False
        answered = await self._answers(part.all_hosts)
        return not any(answered.get(h, False) for h in part.all_hosts)

    async def activate(self, host: str, count: int, use_ticap: bool) -> Outcome:
        silent = await self._silent_while_seized(host)
        now = self.now()
        outcome = await self.change(
            WHAT_ACTIVATE, lambda s: rules.activate(s, host, count, use_ticap, now, silent)
        )
        await self.sync_cron(outcome.state)  # a scavenged member's activation reconnects it
        return outcome

    async def deactivate(self, host: str, count: int) -> Outcome:
        silent = await self._silent_while_seized(host)
        now = self.now()
        outcome = await self.change(
            WHAT_DEACTIVATE, lambda s: rules.deactivate(s, host, count, now, silent)
        )
        await self.sync_cron(outcome.state)
        return outcome

    async def periodic(self) -> Outcome:
        """Rebalance, 12-hour rule, TiCAP accounting, warnings (§3.5, §4.2, §4.3)."""
        state = await self.load()
        watch = {
            s.id: state.complexes[s.member].partition(s.partition).all_hosts
            for s in state.seizures
            if s.state.holds_rights and not s.rebooted and s.partition != UNASSIGNED
        }
        answered = await self._answers([h for hosts in watch.values() for h in hosts])
        seen_up = {sid: any(answered.get(h, False) for h in hosts) for sid, hosts in watch.items()}
        now = self.now()
        return await self.change(WHAT_PERIODIC, lambda s: rules.periodic(s, now, seen_up))

    # -- background ----------------------------------------------------------------------

    def on_role_change(self, change: Any) -> None:
        """RoleManager listener (runs in the thread that changed the role): re-install the
        cron entry on a new active after a takeover; drop ours on demotion (§3.8 [I])."""
        self._role_changed.set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._tick()
            except (NotActive, Fenced):
                pass
            except StoreError as exc:
                # An outage of the store, expected and retried: one line, as the lease loop
                # and the job runner say it (a traceback every tick buried the log).
                log.warning("capacity background pass: %s", exc.description)
            except Exception:
                log.exception("capacity background pass failed")
            await asyncio.sleep(max(0.05, self.settings.tick - (time.monotonic() - started)))

    async def _tick(self) -> None:
        active = self.roles.role is Role.ACTIVE
        if active:
            await asyncio.to_thread(self.seed_if_needed)
        state = await self.load()
        wanted = active and bool(state.pending())
        if self._role_changed.is_set() or wanted != self._cron_synced:
            if self._role_changed.is_set() and active:
                # A new active runs the background pass now, not up to 30 minutes after one
                # it ran in an earlier active period (before a takeover and back).
                self._last_periodic = None
            self._role_changed.clear()
            await self._sync_cron(wanted)
        if not active:
            return
        now = self.now()
        last = self._last_periodic
        if last is None or now - last >= self.settings.rebalance_interval or now < last:
            self._last_periodic = now
            await self.periodic()
