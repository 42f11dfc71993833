"""Who may do what: the roles and the one action → minimum-role table.

The five VCEM roles (reference vcem-domain.md §4.1) are ordered: each may do everything the
ones before it may. The capacity administrator (GiCAP, `icapmanage`/`icapmodify`) is a branch
of its own: it may run the capacity actions and read everything, nothing else. The VCEM
administrator may do everything, including the capacity actions.

Failover needs the administrator by default because seed 000 says "The highest level of VCEM
administrator privilege is needed to initiate failover"; later VCEM editions lowered that to
the limited operator (reference §4.1, WP-NEW-5), so the table is configurable
(`[privileges]` in the configuration: `failoverProfile = "limited-operator"`). An action
name there is matched without regard to case, as CIM method names are; a name that is no
action, or a role that is no role, stops the start with the file and line, because a
misspelt line would otherwise leave the default in force without a word.

Per-domain-group scope (reference §4.1 "Scope: Group", §4.3 "bind it to a VCEM role for a
specific VC Domain Group"): a principal with `domain_groups` holds its role only inside those
groups. Reads stay global (the read-only role's scope is the whole CMS). An action that changes
state is allowed to a scoped principal only when the entry point names the domain group it
acts on (`scope`) and that group is one of the principal's; an action with no group (taking
control of the pair, capacity rights) is refused to it, failing closed rather than letting a
group-bound operator act everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from provider.errors import AccessDenied
from provider.http.messages import Principal

if TYPE_CHECKING:
    from provider.config import Config

__all__ = [
    "DEFAULT_ACTIONS",
    "GROUP_SCOPED_ROLES",
    "PrivilegeError",
    "Role",
    "TableAuthorizer",
    "authorizer_from_config",
    "parse_role",
]


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


# The roles VCEM grants per VC Domain Group (reference §4.1, the "Group" rows); the others
# hold for the whole installation, so the users file may bind only these to groups.
GROUP_SCOPED_ROLES = frozenset(
    {Role.LIMITED_OPERATOR, Role.OPERATOR, Role.GROUP_ADMINISTRATOR},
)


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


class PrivilegeError(ValueError):
    """A bad entry of the privileges table; `key` is the entry's name as written."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def authorizer_from_config(config: Config) -> TableAuthorizer:
    """The authorizer of `[privileges]`; ConfigError naming the file and line of a bad entry."""
    try:
        return TableAuthorizer(config.section("privileges"))
    except PrivilegeError as exc:
        raise config.error("privileges", exc.key, f"{exc}.") from None


class TableAuthorizer:
    """The `Authorizer` of the CIM layer: checks a principal's role against the table.

    Unknown actions need the administrator (fail closed). A principal without a role (an
    anonymous reader where the configuration allows one) is read-only."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self.table = dict(DEFAULT_ACTIONS)
        canonical = {action.lower(): action for action in DEFAULT_ACTIONS}
        given: dict[str, str] = {}
        for key, name in (overrides or {}).items():
            action = canonical.get(key.strip().lower())
            if action is None:
                raise PrivilegeError(
                    key, f"unknown action {key!r}; the actions are {', '.join(DEFAULT_ACTIONS)}"
                )
            if action in given:
                raise PrivilegeError(key, f"{action} is given twice ({given[action]!r}, {key!r})")
            given[action] = key
            if not isinstance(name, str):
                raise PrivilegeError(key, f"privileges.{key} must be a role name (a string)")
            try:
                self.table[action] = parse_role(name)
            except ValueError as exc:
                raise PrivilegeError(key, f"privileges.{key}: {exc}") from None

    def required(self, action: str) -> Role:
        return self.table.get(action, Role.ADMINISTRATOR)

    def is_read(self, action: str) -> bool:
        """May a read-only user run it? Then it changes nothing (the audit log skips it)."""
        return self.required(action) is Role.READ_ONLY

    def role_of(self, principal: Principal | None) -> Role:
        if principal is None or principal.role is None:
            return Role.READ_ONLY
        try:
            return parse_role(principal.role)
        except ValueError:
            return Role.READ_ONLY

    def check_role(self, principal: Principal | None, action: str) -> None:
        """Raise AccessDenied unless `principal`'s role allows `action` somewhere (the domain
        groups it is bound to are `check`'s part, which may need the store)."""
        need = self.required(action)
        have = self.role_of(principal)
        if not allows(have, need):
            who = principal.user if principal is not None else "an anonymous client"
            raise AccessDenied(
                f"{action} needs the {role_name(need)} role; {who} has {role_name(have)}. "
                "Ask an administrator to grant the role (gm-provider user add/role)."
            )

    def check(self, principal: Principal | None, action: str, scope: str | None) -> None:
        """Raise AccessDenied unless `principal` may run `action` on domain group `scope`
        (None: the entry point acts on no particular group)."""
        self.check_role(principal, action)
        need = self.required(action)
        have = self.role_of(principal)
        who = principal.user if principal is not None else "an anonymous client"
        groups = principal.domain_groups if principal is not None else None
        if groups is None or need is Role.READ_ONLY:
            return
        held = f"{who} has {role_name(have)} only for domain group(s) {', '.join(groups)}"
        if scope is None:
            raise AccessDenied(
                f"{action} needs the {role_name(need)} role for every domain group; {held}."
            )
        if scope not in groups:
            raise AccessDenied(
                f"{action} on domain group {scope} needs the {role_name(need)} role there; {held}."
            )
