"""The role manager: the lease loop, takeControl/stepDown, and the gate of every write.

It turns what it observes in the store and on the local clock into events for the pure role
machine (`machine.py`), and keeps the epoch this node holds. The rules it follows:

* Local deadline (Patroni, ha-jobs-style.md A.4, A.7.3): `t0` is read on the monotonic clock
  *before* an ACQUIRE/RENEW/takeover is sent; on success `deadline = t0 + ttl - safety_margin`.
  The store computes its `lease_until` later than `t0`, on its own clock, so the local
  deadline always passes first: a node that cannot renew stops acting as active before the
  other node can acquire the lapsed lease. Past the deadline: LEASE_EXPIRED, standby.
* Fencing (A.7.2): `fenced()` opens `store.fenced(node, epoch)`, whose first statement checks
  the epoch in the store. On `Fenced` the role becomes STANDBY *before* the exception goes on
  (SPEC 4.2), so a superseded active learns it at its next write (or renewal) and reports
  standby from then on.
* Renewal failures: a RENEW the store refuses means the lease is gone: standby at once
  (RENEW_FAILED). A RENEW that fails because the store is unreachable is retried, sooner than
  usual, until the local deadline; the fence keeps writes safe meanwhile.
* Timing rule, validated at construction (Patroni: loop_wait + 2*retry_timeout <= ttl):
  `3 * renew_interval <= ttl`, so two renewals in a row can fail before the lease lapses, and
  `renew_interval + safety_margin < ttl`.
* Start: every node starts STANDBY. `start()` (run by `run()`) makes it ACTIVE only by an
  ACQUIRE, which wins only when the lease is free, lapsed, or held by this same node name (its
  own previous incarnation: node names are unique). It tries when `start_as` is ACTIVE or
  `auto_takeover` is on. `make run` (one node) sets `start_as = "active"`: a fresh store's
  lease is free, and after a restart the lease is its own, so the single node comes up active
  at once. A second node started with `start_as = "active"` while the first holds a valid
  lease stays standby.
* takeControl (`icapmanage -Q`, gicap-domain.md 1.4): on a standby, with `force=False` it
  succeeds only if the lease is free, lapsed or our own, and otherwise is refused naming the
  active node: a healthy active is not replaced by accident. With `force=True` it always
  succeeds with a new epoch, even while the other's lease is valid; the other is fenced at its
  next write or renewal. The `-Q` of the HP tool replaces a live active, so its CLI maps to
  `Force=true`. On the active, takeControl re-asserts control ("it stays active"): it renews
  and returns the same epoch.
* stepDown ends our lease in the store and holds this node back from automatic takeover for
  one ttl, so that the other node gets the lease.
* An active that lost its lease only to time (LEASE_EXPIRED or RENEW_FAILED: the store was
  unreachable past the TTL) takes it back, with a new epoch, once the store answers and the
  lease is still its own and lapsed (not ended by a stepDown, not acquired by the other node),
  whatever `auto_takeover` says: that setting is about replacing another node.

Threads: the methods may be called from any thread (CIM request workers, the loop's worker
thread); the state is guarded by a lock and lease operations are serialised. Blocking calls:
`start`, `tick`, `take_control`, `step_down`, `refresh`, `close`, and the body of `fenced`.
From asyncio, run them with `asyncio.to_thread`; `run()` ticks on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from provider.errors import ConfigError, Fenced, NotActive, Refused, StoreError
from provider.store import FencedTx, Lease, Store

from .machine import Event, Role, RoleMachine

__all__ = ["RoleChange", "RoleManager"]

log = logging.getLogger(__name__)

# When the store is unreachable, retry renewals this often (bounded by the deadline).
_RETRY_FRACTION = 0.25
_MIN_DELAY = 0.01
# Seconds between readings of the store's clock while active (`store_time`).
_CLOCK_SAMPLE = 30.0


@dataclass(frozen=True)
class RoleChange:
    """Passed to listeners after each transition that changed the role."""

    old: Role
    new: Role
    event: Event
    epoch: int


Listener = Callable[[RoleChange], None]

# How long a shutdown waits for a job step that is acting on a device.
DRAIN_TIMEOUT = 30.0
# How long stepDown waits for it: less than a CIM client waits for the answer (wbemexec's
# default, as OpenPegasus', is 20 s), so that the administrator learns whether the node
# stepped down or was refused, not only that the client gave up while the server went on.
STEP_DOWN_WAIT = 15.0


class Quiescer(Protocol):
    """Work that must end before the lease goes (the job runner's device steps)."""

    def pause(self, timeout: float) -> bool:
        """Start nothing new; True once nothing is in flight, False if still after `timeout`."""
        ...

    def resume(self) -> None:
        """Start work again (after a refused step-down, or as a standby: nothing to do)."""
        ...

    def acting(self) -> str:
        """What is still in flight, for the refusal ("job 15"); "" when nothing is."""
        ...


class TimingError(ConfigError):
    """Lease timings that cannot work; `setting` names the one to change."""

    def __init__(self, setting: str, description: str) -> None:
        super().__init__(description)
        self.setting = setting


def default_margin(ttl: float) -> float:
    """The safety margin when none is given: a tenth of the lease."""
    return ttl / 10


def check_timing(ttl: float, renew_interval: float, safety_margin: float | None = None) -> None:
    """TimingError unless the lease can be renewed in time (`safety_margin` None:
    `default_margin`, as RoleManager)."""
    if safety_margin is None:
        safety_margin = default_margin(ttl)
    if not ttl > 0:
        raise TimingError("ttl", f"ttl must be a positive number of seconds, not {ttl!r}")
    if not renew_interval > 0:
        raise TimingError(
            "renew_interval",
            f"renew_interval must be a positive number of seconds, not {renew_interval!r}",
        )
    if renew_interval * 3 > ttl * (1 + 1e-9):
        raise TimingError(
            "renew_interval",
            f"renew_interval ({renew_interval:g} s) must be at most ttl/3 ({ttl:g}/3 = "
            f"{ttl / 3:g} s), so that two renewals can fail before the lease lapses "
            "(Patroni's loop_wait + 2*retry_timeout <= ttl)",
        )
    if not safety_margin >= 0 or renew_interval + safety_margin >= ttl:
        raise TimingError(
            "safety_margin",
            f"safety_margin ({safety_margin:g} s) must be at least 0 and leave room for a "
            f"renewal: renew_interval + safety_margin < ttl ({renew_interval:g} + "
            f"{safety_margin:g} >= {ttl:g})",
        )


def _start_role(start_as: Role | str) -> Role:
    try:
        role = start_as if isinstance(start_as, Role) else Role(start_as)
    except ValueError:
        role = Role.STOPPED
    if role not in (Role.ACTIVE, Role.STANDBY):
        raise ConfigError(f"start_as must be 'active' or 'standby', not {start_as!r}")
    return role


class RoleManager:
    """This node's role in the pair, kept in step with the lease in the store."""

    def __init__(
        self,
        store: Store,
        node_name: str,
        ttl: float = 15.0,
        renew_interval: float = 5.0,
        *,
        safety_margin: float | None = None,
        auto_takeover: bool = False,
        start_as: Role | str = Role.STANDBY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not node_name or node_name != node_name.strip() or len(node_name) > 255:
            raise ConfigError(
                f"node_name must be 1-255 characters without surrounding spaces: {node_name!r}"
            )
        margin = default_margin(ttl) if safety_margin is None else safety_margin
        check_timing(ttl, renew_interval, margin)
        self._store = store
        self._node = node_name
        self._ttl = float(ttl)
        self._renew_interval = float(renew_interval)
        self._margin = float(margin)
        self._auto_takeover = auto_takeover
        self._start_as = _start_role(start_as)
        self._clock = clock
        self._machine = RoleMachine(Role.STANDBY)
        self._epoch = 0  # the epoch we hold while ACTIVE
        self._deadline = float("-inf")
        self._lease: Lease | None = None  # the last lease we read
        self._lease_seen_at = float("-inf")
        self._store_offset = 0.0  # the store's clock minus this host's (`store_time`)
        self._hold_off_until = float("-inf")
        # This process was active and lost the lease only to time (the store unreachable
        # past the TTL): it takes its own lapsed lease back once the store answers, if no
        # other node took it meanwhile (see `_tick_standby`).
        self._lost_to_time = False
        self._started = False
        self._listeners: list[Listener] = []
        self._quiescers: list[Quiescer] = []
        self.drain_timeout = DRAIN_TIMEOUT
        self.step_down_wait = STEP_DOWN_WAIT
        # After a forced takeover from a live active: until then, its steps may still act.
        self._preempted_until = float("-inf")
        self._state_lock = threading.Lock()
        self._lease_lock = threading.RLock()

    # -- what the CIM layer shows (GM_GroupManager) ------------------------------------

    @property
    def node_name(self) -> str:
        return self._node

    @property
    def store(self) -> Store:
        return self._store

    @property
    def role(self) -> Role:
        self._check_deadline()
        return self._machine.role

    @property
    def epoch(self) -> int:
        """The epoch we hold when active; otherwise the last epoch seen in the store."""
        return self.state()[1]

    @property
    def active_manager(self) -> str | None:
        """The active node's name as far as we know (refreshed at each tick), or None."""
        return self.state()[2]

    def state(self) -> tuple[Role, int, str | None]:
        """Role, epoch and active manager read together (GM_GroupManager's instance,
        getRole): three separate reads could straddle a change of role and mix two states."""
        self._check_deadline()
        with self._state_lock:
            role = self._machine.role
            if role is Role.ACTIVE:
                return role, self._epoch, self._node
            lease = self._lease
            epoch = max(self._epoch, lease.epoch if lease else 0)
            # Our own name in a lease while we are standby: we demoted ourselves (deadline)
            # and the store has not caught up; we are not the active one.
            if lease is None or lease.holder in ("", self._node):
                return role, epoch, None
            still_valid = self._lease_seen_at + lease.remaining > self._clock()
            return role, epoch, lease.holder if still_valid else None

    def add_quiescer(self, quiescer: Quiescer) -> None:
        """Ask `quiescer` to end what it has in flight before this node lets the lease go
        (stepDown, shutdown): a device action under way cannot be taken back, and the other
        node would otherwise repeat it as soon as it holds the lease."""
        self._quiescers.append(quiescer)

    def _quiesce(self, wait: float) -> bool:
        """Pause every quiescer; True when nothing is in flight any more (within `wait`
        seconds in all: one deadline for every quiescer, so that a stuck step and a mail
        under way do not add up past a client's wait), False when something still is (the
        caller keeps the lease)."""
        deadline = time.monotonic() + wait
        return all([q.pause(max(0.0, deadline - time.monotonic())) for q in self._quiescers])

    def _resume(self) -> None:
        for q in self._quiescers:
            q.resume()

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(RoleChange)` after every change of role (e.g. to start job recovery
        on becoming active). It runs in the thread that caused the change; keep it short."""
        self._listeners.append(listener)

    # -- transitions ---------------------------------------------------------------------

    def _notify(self, change: RoleChange | None) -> None:
        if change is None:
            return
        log.info(
            "node %s: %s -> %s on %s (epoch %d)",
            self._node,
            change.old.value,
            change.new.value,
            change.event.name,
            change.epoch,
        )
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("role listener %r failed", listener)

    def _process_locked(self, event: Event) -> RoleChange | None:
        old = self._machine.role
        new = self._machine.process(event)
        if old is Role.ACTIVE and new is Role.STANDBY:
            self._lost_to_time = event in (Event.LEASE_EXPIRED, Event.RENEW_FAILED)
        elif new is Role.ACTIVE:
            self._lost_to_time = False
        return None if new is old else RoleChange(old, new, event, self._epoch)

    def _became_active(self, event: Event, epoch: int, t0: float) -> None:
        if event is not Event.LEASE_RENEWED and self._clock() - t0 > self._margin:
            # The statement waited (on PostgreSQL, for the row lock of a frozen active's open
            # transaction) and the deadline counted from before it is near or past: a new
            # active demoted itself 0.16 s after winning. The lease was written when the
            # statement ran, later than t0; renew it now to count from a fresh t0.
            t1 = self._clock()
            if self._store.renew(self._node, epoch, self._ttl):
                t0 = t1
        with self._state_lock:
            self._epoch = epoch
            self._deadline = t0 + self._ttl - self._margin
            change = self._process_locked(event)
        self._notify(change)

    def _demote(self, event: Event, failed_epoch: int) -> None:
        with self._state_lock:
            if self._machine.role is Role.ACTIVE and failed_epoch != self._epoch:
                # The failure concerns an epoch we held before; we hold a newer one now.
                return
            change = self._process_locked(event)
        self._notify(change)

    def _check_deadline(self) -> None:
        # Read on every method call (role, the role gate): the common answers need no lock.
        # Not active, there is no deadline to pass; active and before it, nothing changes.
        # Only a deadline that looks passed is decided under the lock.
        if self._machine.role is not Role.ACTIVE or self._clock() < self._deadline:
            return
        with self._state_lock:
            expired = self._machine.role is Role.ACTIVE and self._clock() >= self._deadline
            change = self._process_locked(Event.LEASE_EXPIRED) if expired else None
        self._notify(change)

    def _active_epoch(self, what: str) -> int:
        self._check_deadline()
        with self._state_lock:
            if self._machine.role is not Role.ACTIVE:
                raise NotActive(what)
            return self._epoch

    def _saw(self, lease: Lease) -> None:
        with self._state_lock:
            self._lease = lease
            self._lease_seen_at = self._clock()
            # The store's clock as the lease row read it, against this host's (to within the
            # read's latency): what `store_time` adds to the host clock.
            self._store_offset = lease.now - time.time()

    def store_time(self) -> float:
        """Now on the store's clock (Unix seconds): the one clock both nodes of a pair share
        (PostgreSQL's; on SQLite, this host's, which every process of the store reads). The
        domains stamp and compare times with it: on two hosts whose clocks differ, a seizure
        stamped by one and checked by the other fired the 12-hour rule after 11 minutes."""
        return time.time() + self._store_offset

    def _report(self) -> None:
        # Best effort: gm_nodes is information for operators, not part of the protocol.
        try:
            self._store.report_node(self._node, self._machine.role.value, self.epoch)
        except StoreError as exc:
            log.warning("node %s: cannot report to the store: %s", self._node, exc)

    # -- the gate of every change --------------------------------------------------------

    def require_active(self, what: str) -> None:
        """Raise NotActive(what) unless this node is active (SPEC 3.3)."""
        self._active_epoch(what)

    @contextlib.contextmanager
    def fenced(self, what: str) -> Iterator[FencedTx]:
        """A fenced write transaction of the active, or NotActive(what) on a standby.

        `what` completes "Only an active Group Manager can ..." (SPEC 3.3). On `Fenced` the
        node becomes standby, then the exception propagates (the CIM layer answers NotActive).
        """
        epoch = self._active_epoch(what)
        try:
            with self._store.fenced(self._node, epoch) as tx:
                yield tx
        except Fenced:
            self._demote(Event.SUPERSEDED, epoch)
            # Best effort, after the demotion: learn who is active now, for ActiveManager
            # and for the log.
            with contextlib.suppress(StoreError):
                self._say_lost(epoch, self.refresh())
            raise

    # -- lease operations ----------------------------------------------------------------

    def start(self) -> Role:
        """Join the pair: ACQUIRE if `start_as` is active or auto_takeover is on."""
        with self._lease_lock:
            if self._started:
                return self.role
            self._started = True
            wants_lease = self._start_as is Role.ACTIVE or self._auto_takeover
            # take_control() may have come first and made us active already.
            if wants_lease and self._machine.role is Role.STANDBY:
                t0 = self._clock()
                epoch = self._store.acquire(self._node, self._ttl)
                if epoch is not None:
                    self._became_active(Event.LEASE_ACQUIRED, epoch, t0)
            lease = self._store.current()
            if wants_lease and self._machine.role is Role.STANDBY:
                self._own_name_held(lease)
            self._saw(lease)
            self._report()
            return self.role

    def _own_name_held(self, lease: Lease) -> None:
        """At start, the lease is valid under this node's name but not this process's: this
        node before a crash (less than a TTL ago), or another process started under the
        same name. Take it back once it lapses, as a lease lost to time, never before: a
        live copy keeps renewing it and this process stays standby, saying why."""
        if lease.holder != self._node or not lease.valid:
            return
        self._lost_to_time = True
        log.warning(
            "node %s: the lease is held under this node's name by another process (this node "
            "before a crash, or a second gm-provider with the same [node] name); waiting for "
            "it to lapse (at most %.0f s). If this node stays standby, two processes share "
            "the name %s: give each its own [node] name.",
            self._node,
            lease.remaining,
            self._node,
        )

    def take_control(self, force: bool = False) -> int:
        """takeControl: become (or stay) active; returns the epoch we hold."""
        with self._lease_lock:
            if self._machine.role is Role.STOPPED:
                raise Refused("This Group Manager is shutting down.\n")
            self._check_deadline()
            if self._machine.role is Role.ACTIVE:
                epoch = self._epoch
                t0 = self._clock()
                if self._store.renew(self._node, epoch, self._ttl):
                    self._became_active(Event.TAKE_CONTROL, epoch, t0)
                    return epoch
                self._demote(Event.RENEW_FAILED, epoch)
            before = self._store.current() if force else None
            t0 = self._clock()
            epoch_or_none = self._store.take_control(self._node, self._ttl, force)
            replaced = before is not None and before.valid and before.holder != self._node
            if epoch_or_none is not None and replaced:
                # A live active was replaced. It learns so at its next renewal, but a device
                # action it has under way still runs to its end, and real hardware cannot
                # check our epoch: its jobs wait (`preempted_for`).
                self._preempted_until = t0 + self._ttl
            if epoch_or_none is None:
                lease = self._store.current()
                self._saw(lease)
                raise Refused(
                    f"{lease.holder} is the active Group Manager (its lease runs "
                    f"{lease.remaining:.0f} s more).\nTake control with Force to replace a "
                    "running active Group Manager.\n"
                )
            self._became_active(Event.TAKE_CONTROL, epoch_or_none, t0)
            self._hold_off_until = float("-inf")
            self._report()
            return epoch_or_none

    def preempted_for(self) -> float:
        """Seconds the jobs adopted from the active this node replaced by force must still
        wait: a device action that node had under way may still be acting until its lease
        would have lapsed (as after a crash, where the lease lapses before anyone adopts)."""
        return max(0.0, self._preempted_until - self._clock())

    def step_down(self) -> None:
        """stepDown: end our lease so the other node can take control.

        First the steps in flight end (`add_quiescer`), with the lease still renewed: the
        other node takes over only when no device action of ours is under way. If one is
        still running after `step_down_wait`, the step-down is refused and nothing changes."""
        self._active_epoch("step down")
        try:
            if not self._quiesce(self.step_down_wait):
                acting = "; ".join(filter(None, (q.acting() for q in self._quiescers)))
                which = f" ({acting})" if acting else ""
                raise Refused(
                    f"A job step is still acting on a device after {self.step_down_wait:g} s"
                    f"{which}; this node stays active so that the other one does not repeat "
                    "it. Try stepDown again when the step has ended.\n"
                )
            with self._lease_lock:
                epoch = self._active_epoch("step down")
                self._hold_off_until = self._clock() + self._ttl
                try:
                    self._store.step_down(self._node, epoch)
                finally:
                    # Even if the store could not be told, we stop acting as active: the
                    # lease then lapses on its own (fail closed).
                    self._demote(Event.STEP_DOWN, epoch)
                self._report()
        finally:
            self._resume()

    def refresh(self) -> Lease:
        """Read the lease now (for an exact ActiveManager); updates what properties show."""
        lease = self._store.current()
        self._saw(lease)
        return lease

    def tick(self) -> float:
        """One step of the lease loop; returns the seconds to wait before the next one.

        Active: renew (or demote). Standby: read the lease and, with auto_takeover, ACQUIRE it
        once it has lapsed. StoreErrors are logged, not raised: the loop must go on.
        """
        with self._lease_lock:
            if not self._started:
                try:
                    self.start()
                except StoreError as exc:
                    log.warning("node %s: cannot start: %s", self._node, exc)
                    self._started = False
                    return self._renew_interval * _RETRY_FRACTION
            self._check_deadline()
            role = self._machine.role
            if role is Role.STOPPED:
                return self._renew_interval
            try:
                delay = self._tick_active() if role is Role.ACTIVE else self._tick_standby()
                if self._clock() - self._lease_seen_at > _CLOCK_SAMPLE:
                    self._saw(self._store.current())  # an active renews without reading
            except StoreError as exc:
                log.warning("node %s: lease loop: %s", self._node, exc)
                delay = self._renew_interval * _RETRY_FRACTION
            self._report()
            if self._machine.role is Role.ACTIVE:
                delay = min(delay, self._deadline - self._clock())
            return max(delay, _MIN_DELAY)

    def _tick_active(self) -> float:
        epoch = self._epoch
        t0 = self._clock()
        if self._store.renew(self._node, epoch, self._ttl):
            self._became_active(Event.LEASE_RENEWED, epoch, t0)
            return self._renew_interval
        self._demote(Event.RENEW_FAILED, epoch)
        delay = self._tick_standby()  # reads the lease: who holds it now, for the log
        if self._lease is not None:
            self._say_lost(epoch, self._lease)
        return delay

    def _say_lost(self, epoch: int, lease: Lease) -> None:
        """Why this node is no longer active, in its log: who holds the lease now, so
        that whoever reads it at 3 a.m. knows which node to look at."""
        if self._machine.role is Role.ACTIVE:
            # Active again, under a newer epoch (a write of the lapsed one was fenced), or
            # the lease is still ours: nothing to say.
            return
        if lease.valid and lease.holder != self._node:
            why = (
                f"node {lease.holder} holds the lease now (epoch {lease.epoch}): it took "
                "control (takeControl, icapmanage -Q) or took over after this node's lease "
                "lapsed"
            )
        elif lease.valid:
            why = (
                f"this node's name holds epoch {lease.epoch}: another process with this [node] name"
            )
        else:
            why = "the lease was released or lapsed (no node is active now)"
        log.warning(
            "node %s: no longer active (epoch %d): %s. This node is standby.",
            self._node,
            epoch,
            why,
        )

    def _tick_standby(self) -> float:
        lease = self._store.current()
        self._saw(lease)
        if self._lost_to_time and lease.holder == self._node and not lease.valid:
            # Our lease lapsed while the store could not be reached, and nobody took it (a
            # stepDown would have ended it, -inf; another node's acquire would hold it):
            # take it back, with a new epoch, whatever `auto_takeover` says, since that is
            # about replacing another node. Otherwise, with automatic takeover off (the
            # default), no node was ever active again after an outage longer than the TTL,
            # and a job stopped half-way (a server powered off) waited for an administrator.
            if lease.lease_until != float("-inf") and self._clock() >= self._hold_off_until:
                t0 = self._clock()
                epoch = self._store.acquire(self._node, self._ttl)
                if epoch is not None:
                    log.warning(
                        "node %s: the store answers again and no other node took the lease: "
                        "active again (epoch %d)",
                        self._node,
                        epoch,
                    )
                    self._became_active(Event.LEASE_ACQUIRED, epoch, t0)
                return self._renew_interval
        elif lease.valid and lease.holder != self._node:
            self._lost_to_time = False  # another node is active: never take it back
        if not self._auto_takeover or self._clock() < self._hold_off_until:
            return self._renew_interval
        if lease.valid and lease.holder != self._node:
            # Wake up just after the other's lease would lapse, not a whole interval later.
            return min(self._renew_interval, lease.remaining + _MIN_DELAY)
        t0 = self._clock()
        epoch = self._store.acquire(self._node, self._ttl)
        if epoch is not None:
            self._became_active(Event.LEASE_ACQUIRED, epoch, t0)
        return self._renew_interval

    async def run(self) -> None:
        """The lease loop for the server's asyncio loop; each tick runs on a thread of its own.

        Runs until `close()` or cancellation. Start it once: `task = create_task(m.run())`.
        Not on the loop's default executor: what waits there (a stepDown draining its job
        steps for up to `drain_timeout`, a burst of requests' store work) must never hold
        back a renewal until the lease lapses under a healthy active. The wait between ticks
        is on the event loop, so a node whose loop stops turning stops renewing: the other
        node then takes over from a node that no longer answers.
        """
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(1, thread_name_prefix="gm-lease")
        try:
            while self._machine.role is not Role.STOPPED:
                delay = await loop.run_in_executor(pool, self.tick)
                await asyncio.sleep(delay)
        finally:
            # Not waiting: a tick blocked on an unreachable store ends on its own timeout.
            pool.shutdown(wait=False)

    def close(self) -> None:
        """Shut down: step down if active (best effort), then STOPPED for good.

        Before the lease is released, the steps in flight end (`add_quiescer`; keep the
        lease loop running meanwhile). If one is still acting after `drain_timeout`, the
        lease is kept: it lapses `ttl` after the last renewal, as after a crash, and the other
        node then reads the device before it acts."""
        drained = self._machine.role is not Role.ACTIVE or self._quiesce(self.drain_timeout)
        with self._lease_lock:
            role = self._machine.role
            if role is Role.STOPPED:
                return
            if role is Role.ACTIVE and not drained:
                log.warning(
                    "node %s: a job step is still acting on a device after %g s; the lease "
                    "is kept and lapses within %g s, so that the other node does not act "
                    "before the device has",
                    self._node,
                    self.drain_timeout,
                    self._ttl,
                )
            elif role is Role.ACTIVE:
                try:
                    self._store.step_down(self._node, self._epoch)
                except StoreError as exc:
                    log.warning("node %s: cannot step down at shutdown: %s", self._node, exc)
            with self._state_lock:
                change = self._process_locked(Event.SHUTDOWN)
            self._notify(change)
            self._report()
