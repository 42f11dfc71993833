"""Who may do what: the roles and the one action → minimum-role table.

The five VCEM roles (reference vcem-domain.md §4.1) are ordered: each may do everything the
ones before it may. The capacity administrator (GiCAP, `icapmanage`/`icapmodify`) is a branch
of its own: it may run the capacity actions and read everything, nothing else. The VCEM
administrator may do everything, including the capacity actions.

Failover needs the administrator by default because seed 000 says "The highest level of VCEM
administrator privilege is needed to initiate failover"; later VCEM editions lowered that to
the limited operator (reference §4.1, WP-NEW-5), so the table is configurable
(`[privileges]` in the configuration: `failoverProfile = "limited-operator"`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

from provider.errors import AccessDenied
from provider.http.messages import Principal

__all__ = ["DEFAULT_ACTIONS", "Role", "TableAuthorizer", "parse_role"]


class Role(IntEnum):
    READ_ONLY = 0  # VCEM User: reads everything, changes nothing
    LIMITED_OPERATOR = 1  # moves profiles, powers servers, fails over (when configured so)
    OPERATOR = 2  # also manages profiles and spare designations
    GROUP_ADMINISTRATOR = 3  # also domain operations: maintenance
    ADMINISTRATOR = 4  # everything, the manager pair included
    CAPACITY_ADMINISTRATOR = 10  # capacity rights only (a branch, not above ADMINISTRATOR)


_NAMES = {
    "read-only": Role.READ_ONLY,
    "limited-operator": Role.LIMITED_OPERATOR,
    "operator": Role.OPERATOR,
    "group-administrator": Role.GROUP_ADMINISTRATOR,
    "administrator": Role.ADMINISTRATOR,
    "capacity-administrator": Role.CAPACITY_ADMINISTRATOR,
}


def parse_role(name: str) -> Role:
    try:
        return _NAMES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; roles are {', '.join(_NAMES)}") from None


def role_name(role: Role) -> str:
    return next(name for name, r in _NAMES.items() if r is role)


DEFAULT_ACTIONS: dict[str, Role] = {
    # VCEM
    "failoverProfile": Role.ADMINISTRATOR,
    "moveProfile": Role.LIMITED_OPERATOR,
    "cancelJob": Role.LIMITED_OPERATOR,
    "setSpare": Role.OPERATOR,
    "setMaintenance": Role.GROUP_ADMINISTRATOR,
    "manageEventRules": Role.ADMINISTRATOR,
    # GiCAP
    "seizeRights": Role.CAPACITY_ADMINISTRATOR,
    "restoreRights": Role.CAPACITY_ADMINISTRATOR,
    "checkScavengedMember": Role.CAPACITY_ADMINISTRATOR,
    "activateCores": Role.CAPACITY_ADMINISTRATOR,
    "deactivateCores": Role.CAPACITY_ADMINISTRATOR,
    "manageCapacityGroups": Role.CAPACITY_ADMINISTRATOR,
    # the manager pair
    "takeControl": Role.ADMINISTRATOR,
    "stepDown": Role.ADMINISTRATOR,
    "getRole": Role.READ_ONLY,
}


def allows(have: Role, need: Role) -> bool:
    if have is Role.ADMINISTRATOR:
        return True
    if need is Role.CAPACITY_ADMINISTRATOR or have is Role.CAPACITY_ADMINISTRATOR:
        return have is need or need is Role.READ_ONLY
    return have >= need


class TableAuthorizer:
    """The `Authorizer` of the CIM layer: checks a principal's role against the table.

    Unknown actions need the administrator (fail closed). A principal without a role (an
    anonymous reader where the configuration allows one) is read-only."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self.table = dict(DEFAULT_ACTIONS)
        for action, name in (overrides or {}).items():
            self.table[action] = parse_role(name)

    def required(self, action: str) -> Role:
        return self.table.get(action, Role.ADMINISTRATOR)

    def role_of(self, principal: Principal | None) -> Role:
        if principal is None or principal.role is None:
            return Role.READ_ONLY
        try:
            return parse_role(principal.role)
        except ValueError:
            return Role.READ_ONLY

    def check(self, principal: Principal | None, action: str, scope: str | None) -> None:
        need = self.required(action)
        have = self.role_of(principal)
        if not allows(have, need):
            who = principal.user if principal is not None else "an anonymous client"
            raise AccessDenied(
                f"{action} needs the {role_name(need)} role; {who} has {role_name(have)}. "
                "Ask an administrator to grant the role (gm-provider user add/role)."
            )
