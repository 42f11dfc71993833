"""Roles of the Group Manager pair: the pure role machine and the manager that drives it.

    manager = RoleManager(store, "gm1", ttl=15, renew_interval=5, start_as="active")
    task = asyncio.create_task(manager.run())       # start + lease loop
    manager.require_active("check to see if ...")   # NotActive on a standby (SPEC 3.3)
    with manager.fenced("move a server profile") as tx:
        tx.execute(...)                             # Fenced -> standby first, then raised

See `machine.py` (the transition table) and `manager.py` (the timing and takeover rules).
"""

from __future__ import annotations

from .machine import TRANSITIONS, Event, IllegalTransition, Role, RoleMachine, next_role
from .manager import RoleChange, RoleManager

__all__ = [
    "TRANSITIONS",
    "Event",
    "IllegalTransition",
    "Role",
    "RoleChange",
    "RoleMachine",
    "RoleManager",
    "next_role",
]
