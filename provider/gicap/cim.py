"""The CIM face of the capacity domain: rows for GM_CapacityGroup, GM_GroupMember and
GM_RightsSeizure, their Create/Modify/Delete (the icapmanage group and member verbs), and
the static methods of GM_GroupManager that SPEC 3.3 gives to GiCAP.

Domain objects become plain rows here and nowhere else; the CIM layer types the values from
schemas/gm.mof.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from provider.cim.provider import (
    InstanceProvider,
    MethodOutcome,
    MethodSpec,
    OperationContext,
    ProviderRegistry,
    Row,
    WriteSpec,
)
from provider.errors import InvalidParameter, NotFound

from . import rules
from .model import CapacityState, Complex, Seizure, SeizureState
from .service import (
    WHAT_ACTIVATE,
    WHAT_CHECK,
    WHAT_DEACTIVATE,
    WHAT_GROUPS,
    WHAT_RESTORE,
    WHAT_SEIZE,
    CapacityService,
)

__all__ = ["register"]

NS = "root/cimv2"
_GROUP_WRITES = WriteSpec(
    what=WHAT_GROUPS, action="manageCapacityGroups", creatable=frozenset({"Name", "Description"})
)
_MEMBER_WRITES = WriteSpec(
    what=WHAT_GROUPS,
    action="manageCapacityGroups",
    creatable=frozenset({"Name", "CapacityGroup", "Hosts"}),
)


def group_row(state: CapacityState, name: str) -> Row:
    group = state.groups[name]
    members = state.members(name)
    ok, detail = rules.compliance(state, name)
    # One pass over the seizures, not one per member (in force: holds_rights).
    names = {c.name for c in members}
    seized = [s for s in state.seizures if s.member in names and s.state.holds_rights]
    # The MOF: "Earliest expiration of pending (deferred) seizures". A deferred seizure whose
    # member reconnected is a loan now, and a loan does not expire (reference §3.3).
    expiries = [
        s.expires_at for s in seized if s.expires_at is not None and s.state is SeizureState.PENDING
    ]
    total = state.group_ticap(name)
    return {
        "Name": name,
        "Description": group.description,
        "Members": [c.member or c.name for c in members],
        "SharedCoreRights": sum(c.cores_without_rights for c in members),
        "AvailableCoreRights": group.free_rights,
        "TemporaryCapacityBalance": max(0, total),
        "InCompliance": ok,
        "ComplianceDetail": detail,
        "SharingRights": state.sharing_rights,
        "SharingRightsInUse": state.sharing_in_use(),
        "SeizedCoreRights": sum(s.cores for s in seized),
        "SeizedRightsExpiration": min(expiries) if expiries else None,
        "CoresUsingTemporaryCapacity": sum(c.ticap_cores for c in members),
        "TemporaryCapacityOverdraft": sum(max(0, -c.ticap_minutes) for c in members),
    }


def _partition_text(cx: Complex) -> list[str]:
    out = []
    for p in cx.partitions:
        cells = ",".join(f"{c.name}:{c.cores}{'' if c.active else ':inactive'}" for c in p.cells)
        vpars = "".join(f" vpar {v}={','.join(h)}" for v, h in sorted(p.vpars.items()))
        out.append(
            f"{p.name} hosts={','.join(p.hosts)}{vpars} cells={cells} "
            f"intended={p.intended} actual={p.actual}"
        )
    return out


def member_row(state: CapacityState, cx: Complex, in_force: list[Seizure] | None = None) -> Row:
    """`in_force`: `state.in_force(cx.name)` when the caller has it (an enumeration)."""
    if in_force is None:
        in_force = state.in_force(cx.name)
    return {
        "Name": cx.member,
        "CapacityGroup": cx.group,
        "Hosts": list(cx.member_hosts),
        "Partitions": _partition_text(cx),
        "TotalCores": cx.total_cores,
        "ActiveCores": cx.active_cores,
        "UsageRights": cx.rights,
        "SeizedCores": sum(s.cores for s in in_force),
        "TemporaryCapacityBalance": max(0, cx.ticap_minutes),
        "Scavenged": any(s.state.value == "pending" for s in in_force),
        "Reachable": cx.reachable,
        "Complex": cx.name,
        "PurchasedRights": cx.owned_rights,
        "BorrowedRights": cx.borrowed,
        "LoanedRights": cx.loaned,
        "IntendedCores": sum(p.intended for p in cx.partitions),
        "CoresUsingTemporaryCapacity": cx.ticap_cores,
        "TemporaryCapacityOverdraft": max(0, -cx.ticap_minutes),
        "InactiveCells": [
            f"{p.name}/{c.name}" for p in cx.partitions for c in p.cells if not c.active
        ],
    }


def seizure_row(state: CapacityState, s: Seizure) -> Row:
    cx = state.complexes[s.member]
    return {
        "InstanceID": s.id,
        "Member": cx.member or cx.name,
        "Partition": s.partition,
        "HostName": s.host,
        "SeizedCores": s.cores,
        "Deferred": s.deferred,
        "SeizedAt": s.seized_at,
        "Expiration": s.expires_at,
        "State": s.state.value,
        "CapacityGroup": cx.group or "",
        "AllCoresAssumed": s.all_cores_assumed,
    }


def _text(props: Mapping[str, Any], name: str, required: bool = True) -> str:
    value = props.get(name)
    if value is None:
        if required:
            raise InvalidParameter(f"The {name} property is required.")
        return ""
    return str(value)


def _strings(props: Mapping[str, Any], name: str) -> list[str]:
    value = props.get(name)
    if value is None:
        return []
    return [str(v) for v in value]


class GroupInstances(InstanceProvider):
    writes = _GROUP_WRITES

    def __init__(self, service: CapacityService) -> None:
        self.service = service

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        state = self.service.snapshot()
        return [group_row(state, name) for name in sorted(state.groups)]

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        state = self.service.snapshot()
        name = str(next(iter(keys.values())))
        if name not in state.groups:
            raise NotFound(f"Group {name} does not exist.")
        return group_row(state, name)

    def create(self, ctx: OperationContext, classname: str, props: Row) -> Row:
        name = _text(props, "Name")
        description = _text(props, "Description", required=False)
        out = self.service.change_sync(WHAT_GROUPS, lambda s: rules.add_group(s, name, description))
        return group_row(out.state, name)

    def modify(self, ctx: OperationContext, classname: str, keys: Row, changes: Row) -> None:
        name = str(next(iter(keys.values())))
        unknown = set(changes) - {"Description"}
        if unknown:
            # As a bay's read-only properties, and as CreateInstance says of SharedCoreRights:
            # a property of the request that cannot be applied is an invalid parameter.
            raise InvalidParameter(
                "Only Description of a capacity group can be modified, not "
                f"{', '.join(sorted(unknown))}: the others follow from the group's members "
                "(GM_GroupMember)."
            )

        description = _text(changes, "Description", required=False)
        self.service.change_sync(WHAT_GROUPS, lambda s: rules.describe_group(s, name, description))

    def delete(self, ctx: OperationContext, classname: str, keys: Row) -> None:
        name = str(next(iter(keys.values())))
        self.service.change_sync(WHAT_GROUPS, lambda s: rules.remove_group(s, name))


class MemberInstances(InstanceProvider):
    writes = _MEMBER_WRITES

    def __init__(self, service: CapacityService) -> None:
        self.service = service

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        state = self.service.snapshot()
        members = sorted(
            (c for c in state.complexes.values() if c.member is not None),
            key=lambda c: c.member or "",
        )
        in_force: dict[str, list[Seizure]] = {}
        for s in state.seizures:
            if s.state.holds_rights:
                in_force.setdefault(s.member, []).append(s)
        return [member_row(state, c, in_force.get(c.name, [])) for c in members]

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        state = self.service.snapshot()
        name = str(next(iter(keys.values())))
        cx = state.member(name)
        if cx is None:
            raise NotFound(f"Member {name} cannot be found in any group.")
        return member_row(state, cx)

    def create(self, ctx: OperationContext, classname: str, props: Row) -> Row:
        name = _text(props, "Name")
        group = _text(props, "CapacityGroup")
        hosts = _strings(props, "Hosts")
        out = self.service.change_sync(
            WHAT_GROUPS, lambda s: rules.add_member(s, name, hosts, group)
        )
        cx = out.state.member(name)
        assert cx is not None
        return member_row(out.state, cx)

    def modify(self, ctx: OperationContext, classname: str, keys: Row, changes: Row) -> None:
        name = str(next(iter(keys.values())))
        unknown = set(changes) - {"Hosts", "InactiveCells"}
        if unknown:
            # As for a capacity group (and a bay): an invalid parameter, not "not supported".
            raise InvalidParameter(
                "Only Hosts and InactiveCells of a member can be modified, not "
                f"{', '.join(sorted(unknown))}: the others follow from the complex and the "
                "capacity rules (icapmodify, seizeRights, restoreRights)."
            )
        now = self.service.now()

        def rule(state: CapacityState) -> rules.Outcome:
            out = rules.Outcome(state)
            if "Hosts" in changes:
                cx = state.member(name)
                current = cx.member_hosts if cx is not None else []
                wanted = _strings(changes, "Hosts")
                low = {h.lower() for h in wanted}
                remove = [h for h in current if h.lower() not in low]
                out = rules.update_member_hosts(state, name, wanted, remove)
            if "InactiveCells" in changes:
                cells = _strings(changes, "InactiveCells")
                more = rules.set_inactive_cells(out.state, name, cells, now)
                out = rules.Outcome(more.state, out.actions + more.actions)
            return out

        self.service.change_sync(WHAT_GROUPS, rule)

    def delete(self, ctx: OperationContext, classname: str, keys: Row) -> None:
        name = str(next(iter(keys.values())))
        self.service.change_sync(WHAT_GROUPS, lambda s: rules.remove_member(s, name))


class SeizureInstances(InstanceProvider):
    def __init__(self, service: CapacityService) -> None:
        self.service = service

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        state = self.service.snapshot()
        return [seizure_row(state, s) for s in state.seizures]


def _host(params: Mapping[str, Any]) -> str:
    host = params.get("HostName")
    if not host:
        raise InvalidParameter("HostName is required.")
    return str(host)


def _count(params: Mapping[str, Any]) -> int:
    count = params.get("Count")
    if count is None:
        raise InvalidParameter("Count is required.")
    return int(count)


def register(registry: ProviderRegistry, service: CapacityService) -> None:
    registry.add_instances(NS, "GM_CapacityGroup", GroupInstances(service))
    registry.add_instances(NS, "GM_GroupMember", MemberInstances(service))
    registry.add_instances(NS, "GM_RightsSeizure", SeizureInstances(service))

    async def seize(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        out = await service.seize(_host(params))
        return MethodOutcome(0, out.values)

    async def restore(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        out = await service.restore(_host(params))
        return MethodOutcome(0, out.values)

    async def check(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        out = await service.check_scavenged()
        return MethodOutcome(0, out.values)

    async def activate(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        use_ticap = bool(params.get("UseTemporaryCapacity", False))
        out = await service.activate(_host(params), _count(params), use_ticap)
        return MethodOutcome(0, out.values)

    async def deactivate(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        if params.get("UseTemporaryCapacity"):
            # Reference §4.1: "never use -t with -d".
            raise InvalidParameter("UseTemporaryCapacity cannot be used to deactivate cores.")
        out = await service.deactivate(_host(params), _count(params))
        return MethodOutcome(0, out.values)

    cls = "GM_GroupManager"
    for spec in (
        MethodSpec("seizeRights", seize, True, WHAT_SEIZE),
        MethodSpec("restoreRights", restore, True, WHAT_RESTORE),
        MethodSpec("checkScavengedMember", check, True, WHAT_CHECK),
        MethodSpec("activateCores", activate, True, WHAT_ACTIVATE),
        MethodSpec("deactivateCores", deactivate, True, WHAT_DEACTIVATE),
    ):
        registry.add_method(NS, cls, spec)
