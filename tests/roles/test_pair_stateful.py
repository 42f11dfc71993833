"""Two RoleManagers on one store, driven by hypothesis (ha-jobs-style.md A.8, model test).

Rules: takeControl (forced or not) and stepDown by either node, ticks of the lease loop (with
auto takeover), writes through the manager, "zombie" writes that go straight to the store with
the last epoch a node ever held (a process that paused and woke up believing it is active),
the lease lapsing in the store while the nodes sleep, and a node's local clock jumping past
its deadline.

Invariant: a write commits only under the current epoch, by that epoch's holder. Checked at
each write (sequential steps: the store's lease right after the commit is the lease at commit
time), and against the whole write log (gm_audit) after every step: exactly the writes that
reported success are there, epochs never go down, and each epoch had a single holder.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from provider.errors import Fenced, NotActive, Refused
from provider.roles import Role, RoleManager
from provider.store import Store
from tests.store._helpers import audit_rows, lapse_lease

from ._helpers import FakeClock

TTL = 30.0
NODES = st.sampled_from(["gm1", "gm2"])
SETTINGS = settings(
    max_examples=int(os.environ.get("GM_PAIR_EXAMPLES", "40")),
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def reset(store: Store) -> None:
    free = {"sqlite": "-1e999", "postgresql": "'-infinity'"}[store.dialect]
    with store._write() as tx:
        tx.execute("DELETE FROM gm_audit")
        tx.execute("DELETE FROM gm_nodes")
        tx.execute(f"UPDATE gm_leadership SET epoch = 0, holder = '', lease_until = {free}")


def pair_machine(store: Store) -> type[RuleBasedStateMachine]:
    class PairOfManagers(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            reset(store)
            self.clocks = {name: FakeClock() for name in ("gm1", "gm2")}
            self.managers = {
                name: RoleManager(
                    store, name, TTL, TTL / 3, auto_takeover=True, clock=self.clocks[name]
                )
                for name in ("gm1", "gm2")
            }
            self.holder_of: dict[int, str] = {}
            self.last_epoch: dict[str, int] = {}
            self.committed: list[tuple[int, str, str]] = []

        @rule(node=NODES, force=st.booleans())
        def take_control(self, node: str, force: bool) -> None:
            before = store.current()
            manager = self.managers[node]
            try:
                epoch = manager.take_control(force)
            except Refused:
                assert not force and before.valid and before.holder != node
                return
            after = store.current()
            assert (after.epoch, after.holder, after.valid) == (epoch, node, True)
            assert manager.role is Role.ACTIVE

        @rule(node=NODES)
        def step_down(self, node: str) -> None:
            manager = self.managers[node]
            try:
                manager.step_down()
            except NotActive:
                assert manager.role is Role.STANDBY
                return
            assert manager.role is Role.STANDBY

        @rule(node=NODES)
        def tick(self, node: str) -> None:
            self.managers[node].tick()

        @rule(node=NODES)
        def write(self, node: str) -> None:
            manager = self.managers[node]
            try:
                with manager.fenced("write") as tx:
                    tx.audit("write")
                    epoch = tx.epoch
            except (NotActive, Fenced):
                assert manager.role is Role.STANDBY  # demoted before the exception arrived
                return
            self._committed(epoch, node, "write")

        @rule(node=NODES)
        def zombie_write(self, node: str) -> None:
            epoch = self.last_epoch.get(node)
            if epoch is None:
                return
            before = store.current()
            current_and_ours = (before.epoch, before.holder, before.valid) == (epoch, node, True)
            try:
                with store.fenced(node, epoch) as tx:
                    tx.audit("zombie")
            except Fenced:
                assert not current_and_ours
                return
            assert current_and_ours
            self._committed(epoch, node, "zombie")

        @rule()
        def lease_lapses_while_everyone_sleeps(self) -> None:
            lapse_lease(store)

        @rule(node=NODES)
        def local_clock_passes_the_deadline(self, node: str) -> None:
            self.clocks[node].advance(TTL)

        def _committed(self, epoch: int, node: str, what: str) -> None:
            lease = store.current()
            assert (lease.epoch, lease.holder) == (epoch, node), "a stale epoch committed"
            self.committed.append((epoch, node, what))

        @invariant()
        def one_holder_per_epoch(self) -> None:
            lease = store.current()
            if lease.epoch:
                assert self.holder_of.setdefault(lease.epoch, lease.holder) == lease.holder
            for name, manager in self.managers.items():
                if manager.role is Role.ACTIVE:
                    self.last_epoch[name] = manager.epoch
                    assert self.holder_of[manager.epoch] == name

        @invariant()
        def the_write_log_holds_exactly_the_fenced_writes(self) -> None:
            rows = audit_rows(store)
            assert rows == self.committed
            epochs = [epoch for epoch, _, _ in rows]
            assert epochs == sorted(epochs)
            assert all(self.holder_of[epoch] == node for epoch, node, _ in rows)

        def teardown(self) -> None:
            for manager in self.managers.values():
                manager.close()

    return PairOfManagers


def test_a_stale_epoch_never_commits(store: Store) -> None:
    run_state_machine_as_test(pair_machine(store), settings=SETTINGS)
