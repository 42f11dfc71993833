"""RoleManager on both backends: start rules, takeControl, stepDown, fencing, deadlines."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from provider.errors import ConfigError, Fenced, NotActive, Refused, StoreError
from provider.roles import Event, Role, RoleChange, RoleManager
from provider.store import Store
from tests.store._helpers import audit_rows, lapse_lease, open_test_store

from ._helpers import FakeClock

TTL = 30.0
RENEW = 5.0

CHECK_SCAVENGED = (
    "check to see if it can reconnect to members\nfrom which usage rights were previously seized"
)


def manager(store: Store, name: str, clock: FakeClock | None = None, **kw: Any) -> RoleManager:
    return RoleManager(store, name, TTL, RENEW, clock=clock or FakeClock(), **kw)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"ttl": 0}, "ttl"),
        ({"renew_interval": 0}, "renew_interval"),
        ({"ttl": 10, "renew_interval": 4}, "renew_interval"),
        ({"ttl": 15, "renew_interval": 5, "safety_margin": 10}, "safety_margin"),
        ({"safety_margin": -1}, "safety_margin"),
        ({"node_name": ""}, "node_name"),
        ({"node_name": " gm1"}, "node_name"),
        ({"start_as": "leader"}, "start_as"),
        ({"start_as": "stopped"}, "start_as"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_setting(
    tmp_path: Any, kwargs: dict[str, Any], setting: str
) -> None:
    args: dict[str, Any] = {"node_name": "gm1", "ttl": 15.0, "renew_interval": 5.0, **kwargs}
    with pytest.raises(ConfigError, match=setting):
        RoleManager(None, **args)  # type: ignore[arg-type]  # fails before touching the store


def test_a_single_node_started_as_active_comes_up_active(store: Store) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    assert gm1.start() is Role.ACTIVE
    assert (gm1.epoch, gm1.active_manager) == (1, "gm1")
    assert [(n.node, n.role, n.epoch) for n in store.nodes()] == [("gm1", "active", 1)]


def test_a_node_started_as_standby_stays_standby(store: Store) -> None:
    gm1 = manager(store, "gm1")
    assert gm1.start() is Role.STANDBY
    assert (gm1.epoch, gm1.active_manager) == (0, None)


def test_a_second_node_started_as_active_stays_standby_while_the_first_holds(store: Store) -> None:
    manager(store, "gm1", start_as="active").start()
    gm2 = manager(store, "gm2", start_as="active")
    assert gm2.start() is Role.STANDBY
    assert (gm2.epoch, gm2.active_manager) == (1, "gm1")


def test_a_restarted_node_takes_its_own_lease_back_and_fences_its_old_self(
    store: Store, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A node restarted after a crash is another process (another store instance): it takes
    its name's lease back once it lapses, not before, since a live process under the same
    name (a copied configuration) would be fenced in the middle of a device step."""
    old = manager(store, "gm1", start_as="active")
    old.start()
    restarted = open_test_store(store_url)
    try:
        new = manager(restarted, "gm1", start_as="active")
        assert new.start() is Role.STANDBY
        assert "held under this node's name by another process" in caplog.text
        assert old.tick() and old.role is Role.ACTIVE  # the live one keeps renewing
        new.tick()
        assert new.role is Role.STANDBY
        lapse_lease(store)  # it stopped renewing: crashed
        new.tick()
        assert new.role is Role.ACTIVE and new.epoch == 2
        with pytest.raises(Fenced), old.fenced("write"):
            pass
        assert old.role is Role.STANDBY
    finally:
        restarted.close()


def test_a_standby_refuses_changes_with_the_spec_text(store: Store) -> None:
    manager(store, "gm1", start_as="active").start()
    gm2 = manager(store, "gm2")
    gm2.start()
    with pytest.raises(NotActive) as caught:
        gm2.require_active(CHECK_SCAVENGED)
    # SPEC 3.3, seed 003: the exact text a standby answers.
    assert caught.value.description == (
        "This system is not an active Group Manager.\nOnly an active Group Manager can check to "
        "see if it can reconnect to members\nfrom which usage rights were previously seized.\n"
    )
    with pytest.raises(NotActive), gm2.fenced("move a profile"):
        pass
    with pytest.raises(NotActive):
        gm2.step_down()


def test_take_control_without_force_is_refused_while_the_active_holds(store: Store) -> None:
    manager(store, "gm1", start_as="active").start()
    gm2 = manager(store, "gm2")
    gm2.start()
    with pytest.raises(Refused, match="gm1 is the active Group Manager"):
        gm2.take_control(force=False)
    assert gm2.role is Role.STANDBY


def test_forced_take_control_supersedes_and_the_old_active_demotes_before_raising(
    store: Store,
) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    with gm1.fenced("write") as tx:
        tx.audit("by gm1")
    seen: list[RoleChange] = []
    gm1.add_listener(seen.append)
    gm2 = manager(store, "gm2")
    gm2.start()
    assert gm2.take_control(force=True) == 2
    assert gm2.role is Role.ACTIVE and gm2.active_manager == "gm2"
    assert gm1.role is Role.ACTIVE  # it has not noticed yet
    try:
        with gm1.fenced("write") as tx:
            tx.audit("by a superseded gm1")
    except Fenced:
        # Standby already, inside the handler: the demotion happened before the raise.
        assert gm1.role is Role.STANDBY
        assert [(c.old, c.new, c.event) for c in seen] == [
            (Role.ACTIVE, Role.STANDBY, Event.SUPERSEDED)
        ]
    else:
        pytest.fail("a superseded active wrote")
    with gm2.fenced("write") as tx:
        tx.audit("by gm2")
    assert audit_rows(store) == [(1, "gm1", "by gm1"), (2, "gm2", "by gm2")]


def test_a_superseded_active_learns_it_at_its_next_renewal(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    manager(store, "gm2").take_control(force=True)
    gm1.tick()
    assert gm1.role is Role.STANDBY
    assert (gm1.epoch, gm1.active_manager) == (2, "gm2")
    # Its log names the node that holds the lease now.
    assert "node gm1: no longer active (epoch 1): node gm2 holds the lease now (epoch 2)" in (
        caplog.text
    )


def test_a_superseded_active_names_the_new_one_when_a_write_is_fenced(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    manager(store, "gm2").take_control(force=True)
    with pytest.raises(Fenced), gm1.fenced("write") as tx:
        tx.audit("by a superseded gm1")
    assert "node gm1: no longer active (epoch 1): node gm2 holds the lease now" in caplog.text


def test_a_lapsed_lease_is_said_so_when_the_renewal_fails(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    gm2 = manager(store, "gm2", start_as="active")
    gm2.start()  # standby: gm1 holds a valid lease
    gm1_epoch = gm1.epoch
    store.step_down("gm1", gm1_epoch)  # released behind gm1's back (as by an operator's SQL)
    gm1.tick()
    assert gm1.role is Role.STANDBY
    assert f"no longer active (epoch {gm1_epoch}): the lease was released or lapsed" in (
        caplog.text
    )


def test_take_control_on_the_active_keeps_its_epoch(store: Store) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    assert gm1.take_control(force=True) == 1
    assert gm1.take_control() == 1
    assert store.current().epoch == 1


def test_past_the_local_deadline_the_active_stops_writing(store: Store) -> None:
    clock = FakeClock()
    gm1 = manager(store, "gm1", clock, start_as="active")
    gm1.start()
    seen: list[RoleChange] = []
    gm1.add_listener(seen.append)
    clock.advance(TTL - TTL / 10 - 0.01)
    assert gm1.role is Role.ACTIVE
    clock.advance(0.02)
    with pytest.raises(NotActive), gm1.fenced("write"):
        pass
    assert gm1.role is Role.STANDBY
    assert [c.event for c in seen] == [Event.LEASE_EXPIRED]
    # The store still shows gm1's lease: the local deadline comes first, by design.
    assert store.current().active_manager == "gm1"


def test_renewal_moves_the_deadline(store: Store) -> None:
    clock = FakeClock()
    gm1 = manager(store, "gm1", clock, start_as="active")
    gm1.start()
    for _ in range(10):
        clock.advance(RENEW)
        assert gm1.tick() <= RENEW
        assert gm1.role is Role.ACTIVE


def test_an_unreachable_store_is_retried_until_the_deadline(store_url: str) -> None:
    from tests.store._helpers import open_test_store

    store = open_test_store(store_url)
    clock = FakeClock()
    gm1 = manager(store, "gm1", clock, start_as="active")
    gm1.start()
    store.close()  # every store call now fails with StoreError
    clock.advance(RENEW)
    delay = gm1.tick()
    assert gm1.role is Role.ACTIVE
    assert delay < RENEW  # retried sooner than the normal interval
    clock.advance(TTL)
    gm1.tick()
    assert gm1.role is Role.STANDBY


def test_step_down_hands_over_to_an_auto_takeover_standby(store: Store) -> None:
    gm1 = manager(store, "gm1", start_as="active", auto_takeover=True)
    gm1.start()
    gm2 = manager(store, "gm2", auto_takeover=True)
    gm2.start()
    assert gm2.role is Role.STANDBY
    gm1.step_down()
    assert gm1.role is Role.STANDBY
    gm1.tick()  # held back for one ttl: does not take its lease straight back
    assert gm1.role is Role.STANDBY
    gm2.tick()
    assert gm2.role is Role.ACTIVE and gm2.epoch == 2


def test_auto_takeover_acquires_a_lapsed_lease_and_the_old_active_demotes(store: Store) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    gm2 = manager(store, "gm2", auto_takeover=True)
    gm2.start()
    gm2.tick()
    assert gm2.role is Role.STANDBY
    lapse_lease(store)
    gm2.tick()
    assert gm2.role is Role.ACTIVE and gm2.epoch == 2
    gm1.tick()
    assert gm1.role is Role.STANDBY and gm1.active_manager == "gm2"


class _Outage:
    """The store, unreachable while `down` is set (every call raises StoreError)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreError("the store does not answer (a test's outage)")
            return attr(*args, **kwargs)

        return call


def _outage_past_the_ttl(store: Store, **kw: Any) -> tuple[RoleManager, _Outage, FakeClock]:
    clock = FakeClock()
    outage = _Outage(store)
    gm1 = RoleManager(outage, "gm1", TTL, RENEW, clock=clock, start_as="active", **kw)  # type: ignore[arg-type]
    gm1.start()
    assert gm1.role is Role.ACTIVE and gm1.epoch == 1
    outage.down = True
    clock.advance(TTL)
    gm1.tick()
    assert gm1.role is Role.STANDBY
    lapse_lease(store)  # the store's clock went past the lease too
    return gm1, outage, clock


def test_after_an_outage_longer_than_the_ttl_the_active_takes_its_lease_back(
    store: Store,
) -> None:
    """With automatic takeover off (the default), no node was ever active again after the
    store was unreachable for longer than the lease: a job stopped half-way waited."""
    gm1, outage, _ = _outage_past_the_ttl(store)
    outage.down = False
    gm1.tick()
    assert gm1.role is Role.ACTIVE and gm1.epoch == 2
    with gm1.fenced("write after the outage") as tx:
        tx.audit("resumed")


def test_a_lease_another_node_took_during_the_outage_is_not_taken_back(store: Store) -> None:
    gm1, outage, _ = _outage_past_the_ttl(store)
    gm2 = manager(store, "gm2", auto_takeover=True)
    gm2.start()
    gm2.tick()
    assert gm2.role is Role.ACTIVE
    outage.down = False
    gm1.tick()
    assert gm1.role is Role.STANDBY and gm1.active_manager == "gm2"
    gm2.step_down()  # later, a lease the other node ended: still not ours to take
    gm1.tick()
    assert gm1.role is Role.STANDBY


def test_a_node_that_stepped_down_does_not_take_its_lease_back(store: Store) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    gm1.step_down()
    for _ in range(3):
        gm1.tick()
    assert gm1.role is Role.STANDBY


def test_close_steps_down_and_stops_for_good(store: Store) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    gm1.close()
    gm1.close()
    assert gm1.role is Role.STOPPED
    assert not store.current().valid
    with pytest.raises(Refused, match="shutting down"):
        gm1.take_control(force=True)
    assert [(n.node, n.role) for n in store.nodes()] == [("gm1", "stopped")]


def test_the_asyncio_loop_fails_over_when_the_active_stops_renewing(store: Store) -> None:
    async def scenario() -> float:
        gm1 = RoleManager(store, "gm1", 0.6, 0.2, start_as="active", auto_takeover=True)
        gm2 = RoleManager(store, "gm2", 0.6, 0.2, auto_takeover=True)
        loop1 = asyncio.create_task(gm1.run())
        await asyncio.sleep(0.1)
        loop2 = asyncio.create_task(gm2.run())
        await asyncio.sleep(0.5)  # longer than the ttl: gm1 kept renewing
        assert (gm1.role, gm2.role) == (Role.ACTIVE, Role.STANDBY)
        loop1.cancel()  # gm1 freezes: no renewal, no step-down
        stopped = time.monotonic()
        while gm2.role is not Role.ACTIVE:
            assert time.monotonic() - stopped < 3, "gm2 never took over"
            await asyncio.sleep(0.02)
        took = time.monotonic() - stopped
        assert gm1.role is Role.STANDBY  # its own local deadline passed meanwhile
        gm2.close()
        await asyncio.wait_for(loop2, 2)
        return took

    took = asyncio.run(scenario())
    assert took <= 0.6 + 0.5


def test_take_control_before_the_loop_starts_is_kept(store: Store) -> None:
    gm1 = manager(store, "gm1", start_as="active")
    assert gm1.take_control() == 1
    gm1.tick()  # the first tick runs start(): it must not acquire a second time
    assert (gm1.role, gm1.epoch) == (Role.ACTIVE, 1)


def test_the_lease_is_renewed_while_the_default_executor_is_blocked(store: Store) -> None:
    """Work waiting on the loop's default executor (a stepDown draining its steps, a burst of
    store reads) must not hold back a renewal until a healthy active loses its lease."""
    release = threading.Event()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        gm1 = RoleManager(store, "gm1", 0.6, 0.2, start_as="active")
        blocked = loop.run_in_executor(None, release.wait, 5)  # the only default worker
        lease_loop = asyncio.create_task(gm1.run())
        for _ in range(30):  # 1.5 s: more than two ttls
            await asyncio.sleep(0.05)
            assert gm1.role is Role.ACTIVE, "the lease lapsed behind the blocked executor"
        assert not blocked.done()
        lease = store.current()
        assert lease.holder == "gm1" and lease.valid
        release.set()
        await blocked
        gm1.close()
        await asyncio.wait_for(lease_loop, 2)

    try:
        asyncio.run(scenario())
    finally:
        release.set()


class _SlowAcquire:
    """A store whose ACQUIRE waits (a row lock held by a frozen active's open transaction)."""

    def __init__(self, store: Store, clock: FakeClock, wait: float) -> None:
        self._store, self._clock, self._wait = store, clock, wait

    def acquire(self, node: str, ttl: float) -> int | None:
        self._clock.advance(self._wait)
        return self._store.acquire(node, ttl)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_an_acquire_that_waited_counts_the_lease_from_after_the_wait(store: Store) -> None:
    """The deadline was counted from before the statement: a new active that waited most of
    a TTL for the lock demoted itself at once (LEASE_EXPIRED) and burnt an epoch."""
    clock = FakeClock()
    slow = _SlowAcquire(store, clock, TTL - 1)
    gm2 = RoleManager(slow, "gm2", TTL, RENEW, clock=clock, start_as="active")  # type: ignore[arg-type]
    assert gm2.start() is Role.ACTIVE
    clock.advance(RENEW)
    gm2.require_active("write")  # still within its deadline: no LEASE_EXPIRED
    assert gm2.role is Role.ACTIVE and gm2.epoch == 1


class _SkewedStore:
    """The store's clock 13 hours ahead of this host's (another host's database)."""

    def __init__(self, store: Store, skew: float) -> None:
        self._store, self._skew = store, skew

    def current(self) -> Any:
        lease = self._store.current()
        return replace(lease, now=lease.now + self._skew)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_store_time_follows_the_stores_clock_not_this_hosts(store: Store) -> None:
    """Seizures, jobs and decisions are stamped with it: a node whose host clock was 13 h
    behind stamped a seizure that the other node found 12 hours old after 11 minutes."""
    skew = 13 * 3600.0
    gm1 = RoleManager(_SkewedStore(store, skew), "gm1", TTL, RENEW, start_as="active")  # type: ignore[arg-type]
    gm1.start()
    assert abs(gm1.store_time() - (time.time() + skew)) < 5


class _Busy:
    """A quiescer whose work never ends: it waits as long as it is let."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.waited: list[float] = []

    def pause(self, timeout: float) -> bool:
        self.waited.append(timeout)
        time.sleep(timeout)
        return False

    def resume(self) -> None:
        pass

    def acting(self) -> str:
        return self.what


def test_a_refused_step_down_answers_within_its_wait_whatever_is_in_flight(
    store: Store,
) -> None:
    """One deadline for every quiescer: a stuck job step and a mail under way waited one
    after the other, and the refusal came after twice `step_down_wait` (past wbemexec's
    20 s with the default 15)."""
    gm1 = manager(store, "gm1", start_as="active")
    gm1.start()
    gm1.step_down_wait = 0.4
    first, second = _Busy("job 1"), _Busy("mail")
    gm1.add_quiescer(first)
    gm1.add_quiescer(second)
    t0 = time.monotonic()
    with pytest.raises(Refused) as err:
        gm1.step_down()
    assert time.monotonic() - t0 < 0.7
    assert "after 0.4 s (job 1; mail)" in err.value.description
    assert second.waited[0] < 0.1
    assert gm1.role is Role.ACTIVE
