"""The role machine of a Group Manager: a transition table, and nothing else.

Rule 1: everything that decides which role follows which event lives here, as data in
`TRANSITIONS`. Code elsewhere never sets a role; it reports an event and gets the new role.

Rule 2: this module knows nothing of stores, clocks, epochs or threads. It is pure: the
manager (`manager.py`) observes the store and the clock and turns what it sees into events.

Rule 3: a (role, event) pair missing from the table raises `IllegalTransition`, naming both.
It is never a silent no-op (h11's `_state.py`, ha-jobs-style.md D.2).

Rule 4: fail closed. Every event that means "we may no longer be the active" (SUPERSEDED,
RENEW_FAILED, LEASE_EXPIRED) leads to STANDBY from every role, and leaves STANDBY and
STOPPED unchanged: learning twice that we were superseded (a fenced write and a renewal can
both find out) is not an error, and a demotion must never fail. STANDBY is sticky: only
LEASE_ACQUIRED or TAKE_CONTROL, each backed by a new epoch in the store, leave it (Patroni's
"demote immediately", ha-jobs-style.md A.4, A.7.3, D.3 item 3). No separate FENCED role is
needed: a fenced node *is* a standby (SPEC 4.2), and reports "standby".
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "Event", "IllegalTransition", "Role", "RoleMachine", "next_role"]


class Role(enum.Enum):
    """The roles; the values are what GM_GroupManager.Role shows (SPEC 3.2)."""

    # Refuses every change and answers reads. The role at start, and after any doubt.
    STANDBY = "standby"
    # Holds the lease with a current epoch; the only role that may write (fenced).
    ACTIVE = "active"
    # Shut down; terminal. Nothing but a demotion notice is accepted any more.
    STOPPED = "stopped"


class Event(enum.Enum):
    """What the manager observed. Each comes with the source that produces it."""

    # A standby's ACQUIRE won: the lease had lapsed, was free, or was our own (A.7.2).
    LEASE_ACQUIRED = "lease_acquired"
    # takeControl succeeded (icapmanage -Q, gicap-domain.md 1.4): a new epoch is ours; on an
    # active it re-asserts control and it stays active.
    TAKE_CONTROL = "take_control"
    # The active's RENEW extended its lease.
    LEASE_RENEWED = "lease_renewed"
    # The store refused the active's RENEW: another epoch exists or our lease lapsed there.
    RENEW_FAILED = "renew_failed"
    # A fenced write of the active found another epoch or holder (SPEC 4.2).
    SUPERSEDED = "superseded"
    # The local monotonic deadline (t0 + ttl - margin) passed without a successful renewal.
    LEASE_EXPIRED = "lease_expired"
    # stepDown: the active ends its lease so the other node can take it.
    STEP_DOWN = "step_down"
    # The process is shutting down.
    SHUTDOWN = "shutdown"


class IllegalTransition(Exception):
    """An event that the role machine does not allow in the current role (a bug, not I/O)."""

    def __init__(self, role: Role, event: Event) -> None:
        super().__init__(f"illegal role transition: event {event.name} in role {role.name}")
        self.role = role
        self.event = event


_DEMOTIONS = (Event.SUPERSEDED, Event.RENEW_FAILED, Event.LEASE_EXPIRED)

TRANSITIONS: dict[tuple[Role, Event], Role] = {
    # Becoming active: only with a new epoch from the store.
    (Role.STANDBY, Event.LEASE_ACQUIRED): Role.ACTIVE,
    (Role.STANDBY, Event.TAKE_CONTROL): Role.ACTIVE,
    # Staying active.
    (Role.ACTIVE, Event.LEASE_RENEWED): Role.ACTIVE,
    (Role.ACTIVE, Event.TAKE_CONTROL): Role.ACTIVE,
    # Leaving the active role, gracefully or not.
    (Role.ACTIVE, Event.STEP_DOWN): Role.STANDBY,
    **{(role, event): Role.STANDBY for role in (Role.ACTIVE, Role.STANDBY) for event in _DEMOTIONS},
    # Shutting down (the manager steps down first when it can; it may not reach the store).
    (Role.ACTIVE, Event.SHUTDOWN): Role.STOPPED,
    (Role.STANDBY, Event.SHUTDOWN): Role.STOPPED,
    # A stopped node hears of its demotion from a write that was still in flight: no change.
    **{(Role.STOPPED, event): Role.STOPPED for event in _DEMOTIONS},
}


def next_role(role: Role, event: Event) -> Role:
    """The role after `event`, or IllegalTransition."""
    try:
        return TRANSITIONS[(role, event)]
    except KeyError:
        raise IllegalTransition(role, event) from None


class RoleMachine:
    """The current role, moved only by `process()`. Not thread-safe: the manager locks."""

    def __init__(self, role: Role = Role.STANDBY) -> None:
        self.role = role

    def process(self, event: Event) -> Role:
        self.role = next_role(self.role, event)
        return self.role
