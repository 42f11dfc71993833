"""How domain code plugs into the CIM object layer: the provider registry.

A domain (VCEM, GiCAP, events, the manager pair) never sees CIM-XML or HTTP. It registers:

* an **instance provider** per class: it yields *rows* — plain mappings from property name to
  a Python value (str, bool, int, datetime, list of those, None, or a `CIMInstanceName` for a
  reference). The CIM layer types each value from the class's MOF declaration (so a provider
  writes `3`, not `Uint32(3)`), adds the key path, and applies PropertyList, LocalOnly,
  IncludeQualifiers and the namespace/host of the reply;
* **methods** per class: an async handler taking the typed input parameters (a mapping keyed
  by the MOF parameter name; absent parameters are missing from it) and returning a
  `MethodOutcome` whose out-values are typed the same way from the declaration.

Each state-changing entry point (a method with `changes_state=True`, or Create/Modify/Delete of
an instance provider) passes the **role gate** before its handler runs: on a standby it fails
with `NotActive(what)`, whose text is SPEC 3.3's `This system is not an active Group
Manager.\\nOnly an active Group Manager can <what>.\\n`. Privileges are checked first, by the
`Authorizer`, with the entry point's `action` name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from pywbem import CIMInstanceName

from provider.errors import NotFound, NotSupported
from provider.http.messages import Principal

__all__ = [
    "Authorizer",
    "InstanceProvider",
    "MethodHandler",
    "MethodOutcome",
    "MethodSpec",
    "OperationContext",
    "ProviderRegistry",
    "RoleGate",
    "Row",
    "WriteSpec",
    "authorize_call",
    "numbered",
    "same_path",
]

Row = Mapping[str, Any]


def numbered(instance_id: str, prefix: str) -> int | None:
    """The number of an InstanceID `prefix` + number as we write them (ASCII digits, no
    leading zero, at most 18 of them), or None: "GM:ConcreteJob:01", ":²" and a number
    past the store's integers name no instance, and must not become an internal error."""
    if not instance_id.startswith(prefix):
        return None
    text = instance_id[len(prefix) :]
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or str(int(text)) != text:
        return None
    return int(text)


class RoleGate(Protocol):
    """Implemented by the role manager: refuses state changes on a standby."""

    def require_active(self, what: str) -> None:
        """Raise `NotActive(what)` unless this node is the active Group Manager."""


class Authorizer(Protocol):
    """Implemented by the security layer: refuses principals without the privilege."""

    def check_role(self, principal: Principal | None, action: str) -> None:
        """Raise `AccessDenied` when the principal's role cannot run `action` anywhere."""

    def check(self, principal: Principal | None, action: str, scope: str | None) -> None:
        """Raise `AccessDenied` naming the action and the privilege it needs."""


class OperationContext(NamedTuple):
    """What a provider knows about the request it serves (a tuple: one is built per
    request, at a quarter of a frozen dataclass's cost)."""

    principal: Principal | None
    namespace: str
    host: str  # this server's host name, for paths that carry one
    # Work of the caller to be done in the transaction that submits a job, with the job's
    # number (FencedTx, job id): an event's decision is recorded with the failover it started,
    # so a crash can lose neither without the other.
    with_submission: Callable[[Any, int], None] | None = None

    @property
    def user(self) -> str:
        return self.principal.user if self.principal is not None else "anonymous"


@dataclass(frozen=True, slots=True)
class MethodOutcome:
    return_value: int  # 0 success, 4096 job started (the CIM convention)
    out: Mapping[str, Any] = field(default_factory=dict)


MethodHandler = Callable[[OperationContext, Mapping[str, Any]], Awaitable[MethodOutcome]]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """An extrinsic method of a class.

    `what` completes "Only an active Group Manager can <what>." for a standby's refusal;
    `action` is the name the Authorizer knows (default: the method name); `scope_param`
    names the input parameter whose value scopes the privilege (e.g. a domain group), and
    `scope` derives that group when no parameter names it directly."""

    name: str
    handler: MethodHandler
    changes_state: bool
    what: str = ""
    action: str = ""
    scope_param: str | None = None
    # Finds the domain group the call acts on from its parameters (a bay, host, profile or
    # job), for principals whose role is bound to groups; None when it names nothing known.
    # Blocking (reads the store): the CIM layer runs it in a worker thread.
    scope: Callable[[Mapping[str, Any]], str | None] | None = None

    @property
    def action_name(self) -> str:
        return self.action or self.name


@dataclass(frozen=True, slots=True)
class WriteSpec:
    """Role/privilege metadata for Create/Modify/DeleteInstance on one class."""

    what: str  # e.g. "change capacity groups"
    action: str  # e.g. "manageCapacityGroups"
    # The properties a CreateInstance may give (others with a value are refused, not dropped);
    # None: the provider checks for itself.
    creatable: frozenset[str] | None = None
    # The domain group an instance (its keys) belongs to, for users whose role is bound to
    # groups, as a method's `MethodSpec.scope`; None: the class acts on no one group.
    scope: Callable[[Mapping[str, Any]], str | None] | None = None


async def authorize_call(
    authorizer: Authorizer,
    gate: RoleGate,
    spec: MethodSpec,
    principal: Principal | None,
    params: Mapping[str, Any],
) -> None:
    """The checks before a method's handler runs, in their order, wherever the call comes
    from (InvokeMethod, or an indication that starts a failover): the role; then the role
    gate, so a standby refuses with the SPEC's text before the store is read (during a store
    outage the group lookup answered a database error instead); then the domain group the
    call acts on (`scope_param`, else `scope`, which reads the store and raises NotFound for
    what the call names and does not exist)."""
    authorizer.check_role(principal, spec.action_name)
    if spec.changes_state:
        gate.require_active(spec.what)
    scope = params.get(spec.scope_param) if spec.scope_param else None
    if scope is None and spec.scope is not None:
        scope = await asyncio.to_thread(spec.scope, params)
    authorizer.check(principal, spec.action_name, scope)


class InstanceProvider:
    """Base for instance providers. Reads are required; writes default to NotSupported."""

    writes: WriteSpec | None = None  # set when Create/Modify/Delete are supported

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        raise NotImplementedError

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        """Return the row whose keys match, or raise NotFound naming what was looked for.

        The default scans `enumerate`; providers with an index override it."""
        wanted = {k.lower(): v for k, v in keys.items()}
        for row in self.enumerate(ctx, classname):
            if all(_same_key(row.get(_find(row, k)), v) for k, v in wanted.items()):
                return row
        raise NotFound(f"No {classname} instance with {_describe(keys)}.")

    def create(self, ctx: OperationContext, classname: str, props: Row) -> Row:
        """Create; return the new instance's row (keys included)."""
        raise NotSupported(f"CreateInstance is not supported for class {classname}.")

    def modify(self, ctx: OperationContext, classname: str, keys: Row, changes: Row) -> None:
        raise NotSupported(f"ModifyInstance is not supported for class {classname}.")

    def delete(self, ctx: OperationContext, classname: str, keys: Row) -> None:
        raise NotSupported(f"DeleteInstance is not supported for class {classname}.")


def _find(row: Row, lower_name: str) -> str:
    for name in row:
        if name.lower() == lower_name:
            return name
    return lower_name


def _same_key(have: Any, want: Any) -> bool:
    if isinstance(have, str) and isinstance(want, str):
        return have == want
    if isinstance(have, CIMInstanceName) and isinstance(want, CIMInstanceName):
        return same_path(have, want)
    return bool(have == want) or str(have) == str(want)


def same_path(have: CIMInstanceName, want: CIMInstanceName) -> bool:
    """The same instance? Class and key names without regard to case, key values as keys
    compare (a key sent as text finds a number); the host is not compared (a server has
    several names), nor a namespace that one of the two leaves out (a reference in a key,
    such as an association's, is often sent without one)."""
    if have.classname.lower() != want.classname.lower():
        return False
    if (
        have.namespace
        and want.namespace
        and have.namespace.strip("/").lower() != want.namespace.strip("/").lower()
    ):
        return False
    mine = {k.lower(): v for k, v in have.keybindings.items()}
    theirs = {k.lower(): v for k, v in want.keybindings.items()}
    return mine.keys() == theirs.keys() and all(_same_key(v, theirs[k]) for k, v in mine.items())


def _describe(keys: Mapping[str, Any]) -> str:
    return ", ".join(f'{k}="{v}"' for k, v in keys.items())


@dataclass
class _ClassEntry:
    instances: InstanceProvider | None = None
    methods: dict[str, MethodSpec] = field(default_factory=dict)


class ProviderRegistry:
    """(namespace, class) -> instance provider and methods. Names are case-insensitive."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _ClassEntry] = {}

    def _entry(self, namespace: str, classname: str) -> _ClassEntry:
        key = (namespace.lower(), classname.lower())
        return self._entries.setdefault(key, _ClassEntry())

    def add_instances(self, namespace: str, classname: str, provider: InstanceProvider) -> None:
        entry = self._entry(namespace, classname)
        if entry.instances is not None:
            raise ValueError(f"{namespace}:{classname} already has an instance provider")
        entry.instances = provider

    def add_method(self, namespace: str, classname: str, spec: MethodSpec) -> None:
        methods = self._entry(namespace, classname).methods
        if spec.name.lower() in methods:
            raise ValueError(f"{namespace}:{classname}.{spec.name} is already registered")
        methods[spec.name.lower()] = spec

    def instances(self, namespace: str, classname: str) -> InstanceProvider | None:
        entry = self._entries.get((namespace.lower(), classname.lower()))
        return entry.instances if entry is not None else None

    def method(self, namespace: str, classname: str, name: str) -> MethodSpec | None:
        entry = self._entries.get((namespace.lower(), classname.lower()))
        return entry.methods.get(name.lower()) if entry is not None else None
