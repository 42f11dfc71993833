"""The GiCAP arithmetic: seizure, restore, scavenged members, 12-hour rule, TiCAP, rebalance.

Pure: every function takes a `CapacityState`, what the probes saw, and the time `now`; it
returns an `Outcome` with a changed *copy* of the state and the `Action`s taken (what the
edges then notify or log). Nothing here reads a clock, a socket or the store. A rule that
refuses raises `Refused`/`NotFound`/`InvalidParameter` with a text a person can act on.

Citations are to reference/gicap-domain.md (§) and seed 003 (the 12-hour rule and the TiCAP
race).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from provider.errors import AlreadyExists, InvalidParameter, NotFound, Refused

from .model import (
    DEFERRED_SEIZURE_LIFETIME,
    TICAP_PERIOD,
    TWELVE_HOURS,
    UNASSIGNED,
    CapacityState,
    Complex,
    Group,
    Partition,
    Seizure,
    SeizureState,
    name_problem,
)

__all__ = [
    "EXPIRY_WARNING",
    "TICAP_WARNING_PERIOD",
    "Action",
    "Outcome",
    "activate",
    "add_group",
    "add_member",
    "check_scavenged",
    "compliance",
    "deactivate",
    "describe_group",
    "periodic",
    "remove_group",
    "remove_member",
    "restore",
    "seize",
    "seizure_counts",
    "set_inactive_cells",
    "update_member_hosts",
]

# Reference §4.2: the Temporary Capacity Warning Period defaults to 15 days; reminders are
# sent daily while the balance is projected to run out within it.
TICAP_WARNING_PERIOD = timedelta(days=15)
TICAP_REMINDER_INTERVAL = timedelta(days=1)
# [I] A deferred seizure's member is warned about once, a day before its rights revert.
EXPIRY_WARNING = timedelta(days=1)


@dataclass(frozen=True)
class Action:
    """One thing a rule did. `notify` marks what is e-mailed as well as logged (§6)."""

    kind: str
    group: str
    member: str = ""
    partition: str = ""
    cores: int = 0
    minutes: int = 0
    text: str = ""
    notify: bool = False

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"kind": self.kind, "group": self.group}
        for key in ("member", "partition", "cores", "minutes", "text"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.notify:
            out["notify"] = True
        return out


@dataclass
class Outcome:
    state: CapacityState
    actions: list[Action] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)  # method out-parameters


def _copy(state: CapacityState) -> CapacityState:
    # The explicit clone copies exactly the mutable objects (copy.deepcopy took ~40 ms at
    # 1,000 members: generic dispatch and its memo for ~75,000 objects).
    return state.clone()


def _locate(state: CapacityState, host: str) -> tuple[Complex, Partition, Group]:
    cx = state.complex_of(host)
    if cx is None or cx.group is None or cx.member is None:
        raise NotFound(f"Host {host} is not a host of any member of a capacity group.")
    part = cx.partition_of(host)
    assert part is not None
    return cx, part, state.groups[cx.group]


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------- seizure


@dataclass(frozen=True)
class SeizureCounts:
    partition: int  # rights taken from the nPar
    unassigned: int  # the complex's unassigned rights taken with it (§3.3)
    leave: int  # rights (and intended cores) left: one per active cell (§3.2)


def _seizure_id(state: CapacityState, base: str) -> str:
    """`member/partition/unix-seconds`, with `-2`, `-3`... when a seizure of the same
    partition in the same second exists already (seize, restore, seize within a second):
    a seizure's id is its identity in the store and in GM_Seizure, never shared."""
    taken = {s.id for s in state.seizures}
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def seizure_counts(cx: Complex, part: Partition) -> SeizureCounts:
    """How many rights a seizure of `part` takes (reference §3.2).

    "Intended Active := minimum (1 per configured cell); Actual Active := 0; seized = (new
    Intended Active) vs max(old Intended Active, old Actual Active) difference" — the example
    "2-cell partition consuming 6 rights → 4 seized". A seizure acts "as if icapmodify -d had
    been done before the partition died" (§3.3): if the complex was using temporary capacity
    (active cores above resident rights), the deactivation first ends that use and only the
    surplus rights are freed, so the count is capped by the rights the complex can spare.
    """
    leave = part.active_cells
    demand_before = cx.demand
    unassigned = max(0, cx.rights - demand_before)
    demand_after = demand_before - part.demand + leave
    spare = cx.rights - demand_after - unassigned
    return SeizureCounts(max(0, min(part.demand - leave, spare)), unassigned, leave)


def seize(state: CapacityState, host: str, answered: Mapping[str, bool], now: datetime) -> Outcome:
    """seizeRights / `icapmanage -x host` (§3.1-3.3).

    `answered` maps every host of the member to whether it answered the probe.
    """
    state = _copy(state)
    cx, part, group = _locate(state, host)
    member = cx.member or cx.name
    already = state.in_force(cx.name, part.name)
    if already:
        raise Refused(
            f"Usage rights were already seized from nPar {part.name} of member {member} on "
            f"{_stamp(already[0].seized_at)}. Rights can be seized once per hard partition; "
            f"restore them first (icapmanage -z {host})."
        )
    # §3.1: the host must be "not running" and "all other (vPar) hosts on the same hard
    # partition must also be down"; seizing from a live partition would starve its workload.
    up = [h for h in part.all_hosts if answered.get(h, False)]
    if up:
        raise Refused(
            f"Cannot seize usage rights from nPar {part.name} of member {member}: "
            f"{', '.join(up)} answered the down check. Rights can be seized only when every "
            "host of the partition is down."
        )
    others_up = any(
        answered.get(h, False) for p in cx.partitions if p is not part for h in p.all_hosts
    )
    counts = seizure_counts(cx, part)
    if counts.partition + counts.unassigned == 0:
        # Nothing to take: recording it would spend the partition's one seizure, scavenge the
        # member and start the 12-hour rule for no rights at all.
        if part.demand > counts.leave and cx.ticap_cores > 0:
            # Above the minimum, but the complex uses temporary capacity: as a deactivation,
            # freeing the nPar's cores only ends that use (§3.3) and frees no right.
            why = (
                f"it uses {part.demand} cores, above the minimum of one per active cell "
                f"({counts.leave}), but member {member} runs {cx.ticap_cores} cores on "
                "temporary capacity: freeing them only ends that use"
            )
        elif part.demand > counts.leave:
            why = (
                f"it uses {part.demand} cores, above the minimum of one per active cell "
                f"({counts.leave}), but member {member} intends {cx.demand} cores on "
                f"{cx.rights} usage rights: freeing them frees none"
            )
        else:
            why = (
                f"it intends {part.intended} active cores, the minimum of one per active cell "
                f"({counts.leave})"
            )
        raise Refused(
            f"No usage rights can be seized from nPar {part.name} of member {member}: {why}, "
            "and the member has no unassigned rights. Nothing was seized."
        )
    deferred = not others_up
    expires: datetime | None = None
    actions: list[Action] = []
    if deferred:
        # §3.3: the loan "expires 10 days after the first icapmanage -x on that member".
        pending = [s for s in state.pending() if s.member == cx.name]
        first = min((s.seized_at for s in pending), default=now)
        expires = first + DEFERRED_SEIZURE_LIFETIME
    else:
        actions.extend(_reconnect(state, cx, now))
    kind = SeizureState.PENDING if deferred else SeizureState.PERMANENT
    stamp = int(now.timestamp())
    state.seizures.append(
        Seizure(
            id=_seizure_id(state, f"{cx.name}/{part.name}/{stamp}"),
            member=cx.name,
            partition=part.name,
            host=host,
            cores=counts.partition,
            deferred=deferred,
            seized_at=now,
            expires_at=expires,
            state=kind,
            intended_before=part.intended,
        )
    )
    if counts.unassigned:
        state.seizures.append(
            Seizure(
                id=_seizure_id(state, f"{cx.name}/{UNASSIGNED}/{stamp}"),
                member=cx.name,
                partition=UNASSIGNED,
                host=host,
                cores=counts.unassigned,
                deferred=deferred,
                seized_at=now,
                expires_at=expires,
                state=kind,
                rebooted=True,  # no cells: the 12-hour rule does not apply
            )
        )
    total = counts.partition + counts.unassigned
    part.intended = counts.leave
    part.actual = 0
    cx.rights -= total
    group.free_rights += total
    cx.reachable = others_up
    unassigned = (
        f"{counts.unassigned} of them were the complex's unassigned rights, which -z does not "
        "restore. "
        if counts.unassigned
        else ""
    )
    guidance = (
        f"{counts.leave} left, one per active cell. Reboot the partition or make its cells "
        f"inactive (GM_GroupMember.InactiveCells) by {_stamp(now + TWELVE_HOURS)}, or it is "
        "assumed to use all its cores. The group holds the rights now: activate cores on the "
        "partition taking over the workload (activateCores) before a rebalance gives them to "
        "a member using temporary capacity."
    )
    text = (
        f"{total} core usage rights were acquired from nPar {part.name} of member {member}"
        + (
            f" (no partition of the member answers: a loan that expires {_stamp(expires)})"
            if expires is not None
            else " (another partition of the member answers: permanent)"
        )
        + f". {unassigned}{guidance}"
    )
    # What icapmanage -x adds to its own lines (the count, and the loan's expiry).
    detail = (
        "" if expires is not None else "Permanent: another partition of the member answers. "
    ) + f"{unassigned}{guidance}"
    # Mailed, loan or permanent: "core usage rights have been acquired from an inactive
    # group member" (reference §3.3), and the 12-hour instruction is for whoever is on call,
    # not only for the administrator who ran -x.
    actions.append(Action("seize", group.name, member, part.name, total, text=text, notify=True))
    return Outcome(
        state,
        actions,
        {"SeizedCores": total, "Deferred": deferred, "Expiration": expires, "Detail": detail},
    )


def _reconnect(
    state: CapacityState, cx: Complex, now: datetime, pending: list[Seizure] | None = None
) -> list[Action]:
    """§3.3: if any partition reconnects before expiry, all its seizures become a loan.
    `pending`: the member's pending seizures when the caller has them already."""
    if pending is None:
        pending = [s for s in state.pending() if s.member == cx.name]
    if not pending:
        return []
    for s in pending:
        s.state = SeizureState.LOAN
    cx.reachable = True
    cores = sum(s.cores for s in pending)
    member = cx.member or cx.name
    return [
        Action(
            "reconnect",
            cx.group or "",
            member,
            cores=cores,
            text=f"Member {member} answers again: the {cores} core usage rights seized from it "
            "are now a loan to the group.",
            notify=True,
        )
    ]


def restore(state: CapacityState, host: str, now: datetime) -> Outcome:
    """restoreRights / `icapmanage -z host` (§3.4): "rights must be available in the group or
    the command fails". Unassigned rights are not restored by -z (§3.3)."""
    state = _copy(state)
    cx, part, group = _locate(state, host)
    member = cx.member or cx.name
    seized = state.in_force(cx.name, part.name)
    if not seized:
        raise Refused(
            f"No usage rights seized from nPar {part.name} of member {member} are held by the "
            "group; there is nothing to restore."
        )
    seized_cores = sum(s.cores for s in seized)
    # The nPar gets back the intended cores it had before the seizure, never more cores than
    # its active cells hold (§3.4 "restores previously seized core usage rights"). If it
    # intends as many already (cores activated, borrowing, after its reboot), nothing needs to
    # move: the seizure is closed and the rights stay with the group, where any member can
    # borrow them.
    before = max(s.intended_before for s in seized)
    if part.intended < before and part.cores_on_active_cells <= part.intended:
        # Its cells are inactive (the 12-hour rule's way out): restored now, nothing could
        # come back and the seizure would be closed for good. It stays open for -z later.
        raise Refused(
            f"nPar {part.name} of member {member} intends {part.intended} active cores and its "
            f"active cells hold {part.cores_on_active_cells}: none of the {seized_cores} seized "
            f"can come back now. Make its cells active again (GM_GroupMember.InactiveCells of "
            f"{member}), then retry; the seizure stays open until then."
        )
    need = min(seized_cores, _back_to(part, before) - part.intended)
    # Rights the complex holds unassigned serve first (the rebalance may have given the
    # seized rights back to it while the 12-hour rule assumed all its cores busy: they sat
    # idle there while -z asked the group for them), then the group's free rights.
    own = min(need, cx.unassigned_rights)
    if group.free_rights < need - own:
        held = f" and member {member} holds {own} unassigned" if own else ""
        borrowers = [
            f"{other.member or other.name} borrows {other.borrowed}"
            for other in state.members(group.name)
            if other is not cx and other.borrowed > 0
        ]
        where = f" ({', '.join(borrowers)})" if borrowers else ""
        raise Refused(
            f"Cannot restore {need} core usage rights to nPar {part.name} of member {member}: "
            f"group {group.name} holds {group.free_rights} free{held}. Deactivate cores on "
            f"another member{where} to free usage rights, then retry."
        )
    group.free_rights -= need - own
    cx.rights += need - own
    part.intended += need
    for s in seized:
        s.state = SeizureState.RESTORED
    text = f"{need} core usage rights were restored to nPar {part.name} of member {member}."
    detail = ""  # why fewer came back, if they did (icapmanage -z prints it)
    if need < seized_cores:
        detail = (
            f"The other {seized_cores - need} of the {seized_cores} seized stay with group "
            f"{group.name}: the nPar intends {part.intended} active cores"
            + (
                f", as many as before the seizure ({before})."
                if part.intended >= before
                else f", all its active cells hold ({part.cores_on_active_cells})."
            )
        )
    text += f" {detail}" if detail else ""
    return Outcome(
        state,
        [Action("restore", group.name, member, part.name, need, text=text)],
        {"RestoredCores": need, "Detail": detail},
    )


def _back_to(part: Partition, intended_before: int) -> int:
    """The intended cores a partition goes back to when seized rights return to it (restore,
    revert): what it intended before the seizure, within what its active cells hold now, and
    never fewer than it intends now."""
    return max(part.intended, min(intended_before, part.cores_on_active_cells))


# --------------------------------------------------------------------------- scavenged


def check_scavenged(state: CapacityState, reachable: Mapping[str, bool], now: datetime) -> Outcome:
    """checkScavengedMember (§3.8 [I]): for each member with a pending deferred seizure,
    `reachable[complex name]` says whether any of its hosts answered. Reconnected → loan;
    expired → the rights revert to the partitions they came from (§3.3), notified."""
    state = _copy(state)
    actions: list[Action] = []
    reconnected: list[str] = []
    reverted: list[str] = []
    # Each member's pending seizures, found once: handling one member changes only its own
    # seizures, so the lists stay what a fresh look would find when its turn comes.
    by_member: dict[str, list[Seizure]] = {}
    for s in state.pending():
        by_member.setdefault(s.member, []).append(s)
    for name in sorted(by_member):
        cx = state.complexes[name]
        member = cx.member or cx.name
        pending = by_member[name]
        if reachable.get(name, False):
            actions.extend(_reconnect(state, cx, now, pending))
            reconnected.append(member)
            continue
        cx.reachable = False
        expires = min(s.expires_at for s in pending if s.expires_at is not None)
        if now >= expires:
            actions.extend(_revert(state, cx, pending))
            reverted.append(member)
    remaining = len({s.member for s in state.pending()})
    return Outcome(
        state,
        actions,
        {"Reconnected": reconnected, "Reverted": reverted, "Remaining": remaining},
    )


def _revert(state: CapacityState, cx: Complex, pending: list[Seizure]) -> list[Action]:
    group = state.groups[cx.group or ""]
    member = cx.member or cx.name
    total = sum(s.cores for s in pending)
    for s in pending:
        s.state = SeizureState.REVERTED
        if s.partition != UNASSIGNED:
            # All the rights go back to the complex; the partition intends again what it did
            # before (within its active cells and what was seized), the rest is the complex's
            # unassigned rights.
            part = cx.partition(s.partition)
            part.intended = min(_back_to(part, s.intended_before), part.intended + s.cores)
    actions = [
        Action(
            "revert",
            group.name,
            member,
            cores=total,
            text=f"The {total} core usage rights seized from inactive member {member} have "
            "expired and have been reverted to it.",
            notify=True,
        )
    ]
    # Rights are conserved: those not free in the group were redeployed. They go back all
    # the same, so the borrowers may now consume TiCAP or be out of compliance (§3.3, WP1).
    # Any the rebalance already gave back to this member itself stay where they are.
    take = min(group.free_rights, total)
    group.free_rights -= take
    cx.rights += take
    short = total - take
    if short == 0:
        return actions
    borrowers = sorted(
        (c for c in state.members(group.name) if c is not cx and c.borrowed > 0),
        key=lambda c: (-c.borrowed, c.member or c.name),
    )
    for other in borrowers:
        if short == 0:
            break
        n = min(short, other.borrowed)
        other.rights -= n
        cx.rights += n
        short -= n
        actions.append(
            Action(
                "reclaim",
                group.name,
                other.member or other.name,
                cores=n,
                text=f"{n} core usage rights borrowed by {other.member} went back to {member} "
                "with the expired seizure; cores above its rights now use temporary capacity.",
                notify=True,
            )
        )
    return actions


# --------------------------------------------------------------------------- activation


def _insufficient(part: Partition, count: int) -> Refused:
    # Reference §4.2 [V: UG10e p104], the text icapmodify prints.
    return Refused(
        f"iCAP authorization denied for partition {part.name}.\n"
        f"Error: Insufficient usage rights or temporary capacity for {count} additional "
        "cores."
    )


def _must_run(
    state: CapacityState, cx: Complex, part: Partition, host: str, silent: bool, what: str
) -> None:
    """`icapmodify` runs on the partition itself, so a change of its cores says it runs and
    reconnects it (§3.3). Asked for through CIM on its behalf while its rights are seized
    and none of its hosts answers, it would record a reconnection that did not happen, hand
    it the rights just seized and drop the 12-hour watch: refused."""
    if not silent or not state.in_force(cx.name, part.name):
        return
    raise Refused(
        f"nPar {part.name} of member {cx.member or cx.name} has its usage rights seized and "
        f"none of its hosts ({', '.join(part.all_hosts)}) answers: cores are {what} on a "
        "partition that runs. Activate cores on the partition that took over its workload; "
        f"once this one runs again, icapmanage -z {host} gives its rights back."
    )


def activate(
    state: CapacityState,
    host: str,
    count: int,
    use_ticap: bool,
    now: datetime,
    silent: bool = False,
) -> Outcome:
    """activateCores / `icapmodify -a count [-t]` on the member partition of `host`;
    `silent`: none of the partition's hosts answered the probe (see `_must_run`).

    Rights come from the complex's unassigned rights, then from the rights the Group Manager
    holds (a borrow, §2.5). The rest needs TiCAP: with UseTemporaryCapacity it always succeeds
    while the group has TiCAP (SPEC 4.3, seed 003), else it is refused.
    """
    if count < 1:
        raise InvalidParameter("Count must be at least 1.")
    state = _copy(state)
    cx, part, group = _locate(state, host)
    _must_run(state, cx, part, host, silent, "activated")
    room = part.cores_on_active_cells - part.intended
    if count > room:
        raise InvalidParameter(
            f"nPar {part.name} has {part.cores_on_active_cells} cores on active cells and "
            f"{part.intended} are intended to be active: at most {max(0, room)} more can be "
            "activated."
        )
    actions = _account(state, now)
    demand_after = cx.demand - part.demand + max(part.intended + count, part.actual)
    need = max(0, demand_after - cx.rights)
    borrow = min(need, group.free_rights)
    short = need - borrow
    if short and (not use_ticap or state.group_ticap(group.name) <= 0):
        raise _insufficient(part, count)
    group.free_rights -= borrow
    cx.rights += borrow
    part.intended += count
    part.actual = part.intended  # the member applies it at once: the partition is up
    actions.extend(_partition_seen_up(state, cx, part, now))
    actions.extend(_account(state, now))
    member = cx.member or cx.name
    actions.insert(
        0,
        Action(
            "activate",
            group.name,
            member,
            part.name,
            count,
            text=f"{part.intended} cores are intended to be active and are currently active "
            f"on nPar {part.name} of member {member}; {borrow} usage rights borrowed from the "
            f"group; cores using temporary capacity: {cx.ticap_cores}.",
        ),
    )
    return Outcome(state, actions, _counts(state, cx, part))


def deactivate(
    state: CapacityState, host: str, count: int, now: datetime, silent: bool = False
) -> Outcome:
    """deactivateCores / `icapmodify -d count`: TiCAP use ends first; rights that become
    surplus are loaned to the group (§2.5). One core per active cell stays (§3.2).
    `silent`: as for `activate`."""
    if count < 1:
        raise InvalidParameter("Count must be at least 1.")
    state = _copy(state)
    cx, part, group = _locate(state, host)
    _must_run(state, cx, part, host, silent, "deactivated")
    floor = part.active_cells
    if part.intended - count < floor:
        raise InvalidParameter(
            f"nPar {part.name} must keep one active core per active cell ({floor}); "
            f"{part.intended} are intended to be active: at most "
            f"{max(0, part.intended - floor)} can be deactivated."
        )
    actions = _account(state, now)
    unassigned_before = cx.unassigned_rights
    part.intended -= count
    part.actual = part.intended
    actions.extend(_partition_seen_up(state, cx, part, now))
    released = cx.unassigned_rights - unassigned_before
    cx.rights -= released
    group.free_rights += released
    actions.extend(_account(state, now))
    member = cx.member or cx.name
    actions.insert(
        0,
        Action(
            "deactivate",
            group.name,
            member,
            part.name,
            count,
            text=f"{part.intended} cores are intended to be active on nPar {part.name} of "
            f"member {member}; {released} usage rights loaned to the group.",
        ),
    )
    return Outcome(state, actions, _counts(state, cx, part))


def _counts(state: CapacityState, cx: Complex, part: Partition) -> dict[str, object]:
    return {
        "ActiveCores": part.actual,
        "UsageRights": cx.rights,
        "TemporaryCapacityBalance": max(0, state.group_ticap(cx.group or "")),
    }


def _partition_seen_up(
    state: CapacityState, cx: Complex, part: Partition, now: datetime
) -> list[Action]:
    """A partition that runs again (the iCAP daemon reports, or cores are activated or
    deactivated on it) no longer needs the 12-hour assumption (§3.5), and any answer from a
    member reconnects it: its pending seizures become a loan (§3.3)."""
    for s in state.in_force(cx.name, part.name):
        s.rebooted = True
        s.all_cores_assumed = False
    return _reconnect(state, cx, now)


# --------------------------------------------------------------------------- TiCAP


def _account(state: CapacityState, now: datetime) -> list[Action]:
    """Charge TiCAP up to `now` (§4.1, §4.3).

    Granularity: 30-minute periods, paid at their start (the first 30 minutes per core are
    taken when a complex starts using TiCAP, as "30 minutes of TiCAP are transferred per core
    activated with TiCAP"). A change of the number of cores counts from the next period.
    """
    actions: list[Action] = []
    for name in sorted(state.groups):
        members = state.members(name)
        for cx in members:
            cores = cx.ticap_cores
            if cores == 0:
                cx.ticap_charged_until = None
                continue
            start = cx.ticap_charged_until or now
            if now < start:
                continue
            periods = (now - start) // TICAP_PERIOD + 1
            minutes = periods * cores * int(TICAP_PERIOD.total_seconds() // 60)
            cx.ticap_charged_until = start + periods * TICAP_PERIOD
            _debit(state, cx, minutes, members)
            actions.append(
                Action(
                    "ticap_debit",
                    name,
                    cx.member or cx.name,
                    cores=cores,
                    minutes=minutes,
                    text=f"{cores} cores of member {cx.member} use temporary capacity: "
                    f"{minutes} minutes debited.",
                )
            )
    return actions


def _debit(state: CapacityState, cx: Complex, minutes: int, members: list[Complex]) -> None:
    """Take `minutes` from the member's balance, then the group pool, then other members'
    balances (TiCAP is pooled, §4.3); what is left drives the member's balance negative —
    the non-compliance tracking of §3.5/§4.3. `members`: `state.members(cx.group)`."""
    group = state.groups[cx.group or ""]
    own = min(max(0, cx.ticap_minutes), minutes)
    cx.ticap_minutes -= own
    left = minutes - own
    take = min(group.ticap_minutes, left)
    group.ticap_minutes -= take
    left -= take
    for other in members:
        if left == 0:
            break
        if other is cx or other.ticap_minutes <= 0:
            continue
        take = min(other.ticap_minutes, left)
        other.ticap_minutes -= take
        left -= take
    cx.ticap_minutes -= left


def _rebalance(state: CapacityState) -> list[Action]:
    """Move the rights the Group Manager holds to members burning TiCAP (§4.3 "Temporary
    capacity and freed usage rights"). This is how seized rights can be gone before the
    failover activation (seed 003): largest consumer first, then by member name."""
    actions: list[Action] = []
    for name in sorted(state.groups):
        group = state.groups[name]
        burning = sorted(
            (c for c in state.members(name) if c.ticap_cores > 0),
            key=lambda c: (-c.ticap_cores, c.member or c.name),
        )
        for cx in burning:
            n = min(group.free_rights, cx.ticap_cores)
            if n == 0:
                break
            group.free_rights -= n
            cx.rights += n
            actions.append(
                Action(
                    "transfer",
                    name,
                    cx.member or cx.name,
                    cores=n,
                    text=f"{n} free core usage rights moved to member {cx.member} to stop "
                    "temporary capacity use.",
                )
            )
    return actions


def _twelve_hour(state: CapacityState, now: datetime) -> list[Action]:
    """Seed 003 / §3.5: "cells in partitions from which usage rights have been seized should
    be rebooted or made inactive within 12 hours. If this is not done, the partition may begin
    to consume temporary capacity. If temporary capacity is not available, the complex may no
    longer be in compliance." The assumption is avoided when all its cells are inactive."""
    actions: list[Action] = []
    # This pass changes no TiCAP balance: each group's TiCAP is looked up once.
    ticap: dict[str, int] = {}
    for s in state.seizures:
        if not s.state.holds_rights or s.rebooted or s.all_cores_assumed:
            continue
        if s.partition == UNASSIGNED or now < s.seized_at + TWELVE_HOURS:
            continue
        cx = state.complexes[s.member]
        part = cx.partition(s.partition)
        if part.active_cells == 0:
            continue
        s.all_cores_assumed = True
        part.actual = part.cores_on_active_cells
        group = cx.group or ""
        if group not in ticap:
            ticap[group] = state.group_ticap(group)
        has_ticap = ticap[group] > 0
        consequence = (
            "temporary capacity is debited for the cores above its rights"
            if has_ticap
            else "the group has no temporary capacity left and is out of compliance"
        )
        actions.append(
            Action(
                "twelve_hour",
                group,
                cx.member or cx.name,
                part.name,
                part.actual,
                text=f"The cells of nPar {part.name} of member {cx.member} were not rebooted or "
                f"made inactive within 12 hours of the rights seizure on {_stamp(s.seized_at)}: "
                f"it is assumed to use all {part.actual} cores; {consequence}.",
                notify=True,
            )
        )
    return actions


def _warnings(state: CapacityState, now: datetime) -> list[Action]:
    actions: list[Action] = []
    for s in state.pending():
        if s.expiry_warned or s.expires_at is None or s.expires_at - now > EXPIRY_WARNING:
            continue
        s.expiry_warned = True
        cx = state.complexes[s.member]
        actions.append(
            Action(
                "expiry_warning",
                cx.group or "",
                cx.member or cx.name,
                s.partition,
                s.cores,
                text=f"The {s.cores} core usage rights seized from nPar {s.partition} of "
                f"inactive member {cx.member} revert to it on {_stamp(s.expires_at)} unless "
                "the member reconnects.",
                notify=True,
            )
        )
    for name in sorted(state.groups):
        group = state.groups[name]
        cores = sum(c.ticap_cores for c in state.members(name))
        if cores == 0:
            continue
        left = timedelta(minutes=max(0, state.group_ticap(name)) / cores)
        recent = (
            group.ticap_reminder_at is not None
            and now - group.ticap_reminder_at < TICAP_REMINDER_INTERVAL
        )
        if left >= TICAP_WARNING_PERIOD or recent:
            continue
        group.ticap_reminder_at = now
        actions.append(
            Action(
                "ticap_reminder",
                name,
                cores=cores,
                minutes=max(0, state.group_ticap(name)),
                text=f"{cores} cores of group {name} consume temporary capacity; the balance is "
                f"projected to expire on or around {_stamp(now + left)}. Buy temporary "
                "capacity, deactivate cores, or buy usage rights.",
                notify=True,
            )
        )
    return actions


def compliance(state: CapacityState, group: str) -> tuple[bool, str]:
    """§2.5: in compliance when sharing rights cover every member's cores without usage
    rights, and no member has a negative TiCAP balance (§4.2: always an exception)."""
    problems: list[str] = []
    in_use = state.sharing_in_use()
    if in_use > state.sharing_rights:
        problems.append(
            f"sharing rights exceeded: {in_use} cores without usage rights, "
            f"{state.sharing_rights} sharing rights"
        )
    for cx in state.members(group):
        if cx.ticap_minutes < 0:
            problems.append(
                f"member {cx.member} has a negative temporary capacity balance "
                f"({cx.ticap_minutes} minutes)"
            )
    return (not problems, "; ".join(problems))


def _compliance_changes(state: CapacityState, now: datetime) -> list[Action]:
    actions: list[Action] = []
    for name in sorted(state.groups):
        group = state.groups[name]
        ok, detail = compliance(state, name)
        if not ok and group.out_of_compliance_since is None:
            group.out_of_compliance_since = now
            actions.append(
                Action(
                    "out_of_compliance",
                    name,
                    text=f"Group {name} is out of compliance with the iCAP contract: {detail}.",
                    notify=True,
                )
            )
        elif ok and group.out_of_compliance_since is not None:
            group.out_of_compliance_since = None
            actions.append(Action("in_compliance", name, text=f"Group {name} is compliant."))
    return actions


def periodic(state: CapacityState, now: datetime, seen_up: Mapping[str, bool]) -> Outcome:
    """The background pass (every 30 minutes in iCAP, §4.3): seized partitions seen running
    again, the 12-hour rule, TiCAP charged up to now, the rebalance, warnings, compliance.

    `seen_up[seizure id]` says whether a host of that seizure's partition answered."""
    state = _copy(state)
    actions: list[Action] = []
    for s in state.seizures:
        if s.state.holds_rights and not s.rebooted and seen_up.get(s.id, False):
            cx = state.complexes[s.member]
            part = cx.partition(s.partition)
            # The partition booted with the minimum rights left after the seizure (seed 003).
            unassigned_before = cx.unassigned_rights
            part.actual = part.intended
            actions.extend(_partition_seen_up(state, cx, part, now))
            # Cores the 12-hour rule assumed busy are not: the rights the complex was given
            # for them (the rebalance hands free rights to a member burning TiCAP) go back to
            # the group, as a deactivation's surplus does (§2.5), instead of sitting idle.
            released = cx.unassigned_rights - unassigned_before
            if released > 0 and cx.group is not None:
                cx.rights -= released
                state.groups[cx.group].free_rights += released
    actions.extend(_twelve_hour(state, now))
    actions.extend(_account(state, now))
    actions.extend(_rebalance(state))
    actions.extend(_account(state, now))
    actions.extend(_warnings(state, now))
    actions.extend(_compliance_changes(state, now))
    return Outcome(state, actions)


def set_inactive_cells(
    state: CapacityState, member: str, inactive: list[str], now: datetime
) -> Outcome:
    """Make cells inactive or active again (`nPar/cell` names): the other way out of the
    12-hour rule (§3.5: "Cells can be made inactive by removing them from the partition,
    shutting down the partition ... or with the MP RR command")."""
    state = _copy(state)
    cx = _member(state, member)
    known = {f"{p.name}/{c.name}" for p in cx.partitions for c in p.cells}
    unknown = [n for n in inactive if n not in known]
    if unknown:
        raise InvalidParameter(
            f"Member {member} has no cell {', '.join(unknown)}; "
            f"cells are {', '.join(sorted(known))}."
        )
    wanted = set(inactive)
    for p in cx.partitions:
        for c in p.cells:
            c.active = f"{p.name}/{c.name}" not in wanted
        # Within the cores of the active cells, and at least one core per active cell (§3.2):
        # cells made active again come back with their one core each, so the minimum holds
        # and a later restore or revert starts from it. More cores: activateCores.
        p.intended = max(min(p.intended, p.cores_on_active_cells), p.active_cells)
        p.actual = min(p.actual, p.cores_on_active_cells)
    for s in state.in_force(cx.name):
        if s.all_cores_assumed:
            p = cx.partition(s.partition)
            p.actual = p.cores_on_active_cells
    actions = _account(state, now)
    return Outcome(state, actions)


# --------------------------------------------------------------------------- membership


def _member(state: CapacityState, name: str) -> Complex:
    cx = state.member(name)
    if cx is None:
        raise NotFound(f"Member {name} cannot be found in any group.")
    return cx


def _check_name(kind: str, name: str) -> None:
    problem = name_problem(kind, name)
    if problem is not None:
        raise InvalidParameter(problem[0].upper() + problem[1:] + ".")


def add_group(state: CapacityState, name: str, description: str) -> Outcome:
    """`icapmanage -a -g group` (§2.4)."""
    _check_name("group", name)
    state = _copy(state)
    if name in state.groups:
        raise AlreadyExists(f"Group {name} already exists.")
    state.groups[name] = Group(name=name, description=description)
    return Outcome(state, [Action("add_group", name, text=f"Group {name} created.")])


def describe_group(state: CapacityState, name: str, description: str) -> Outcome:
    """ModifyInstance of GM_CapacityGroup: only the description changes."""
    state = _copy(state)
    if name not in state.groups:
        raise NotFound(f"Group {name} does not exist.")
    state.groups[name].description = description
    return Outcome(state, [Action("describe_group", name, text=f"Group {name} described.")])


def remove_group(state: CapacityState, name: str) -> Outcome:
    """`icapmanage -r -g group`: "only when it has no members" (§2.4)."""
    state = _copy(state)
    if name not in state.groups:
        raise NotFound(f"Group {name} does not exist.")
    members = [c.member or c.name for c in state.members(name)]
    if members:
        raise Refused(
            f"Group {name} has members ({', '.join(members)}); remove them first "
            "(icapmanage -r -m <member>)."
        )
    del state.groups[name]
    return Outcome(state, [Action("remove_group", name, text=f"Group {name} removed.")])


def _coverage_gaps(cx: Complex, hosts: list[str]) -> list[str]:
    """OS instances (nPars without vPars, and each vPar) none of whose hosts is listed:
    the hostlist "must cover every nPar and vPar OS instance" (§2.1)."""
    given = {h.lower() for h in hosts}
    gaps: list[str] = []
    for p in cx.partitions:
        instances = dict(p.vpars)
        if p.hosts or not p.vpars:
            instances[p.name] = p.hosts
        for label, inst_hosts in instances.items():
            if not any(h.lower() in given for h in inst_hosts):
                name = label if label == p.name else f"{p.name}/{label}"
                gaps.append(f"{name} ({', '.join(inst_hosts)})")
    return gaps


def _complex_of_hosts(state: CapacityState, hosts: list[str]) -> Complex:
    if not hosts:
        raise InvalidParameter("Give at least one host of every partition of the member.")
    found: dict[str, Complex] = {}
    for host in hosts:
        cx = state.complex_of(host)
        if cx is None:
            raise NotFound(f"Host {host} is not an OS instance of any known complex.")
        found[cx.name] = cx
    if len(found) > 1:
        raise InvalidParameter(
            f"The hosts belong to different complexes ({', '.join(sorted(found))}); a member "
            "is one partitionable complex."
        )
    return next(iter(found.values()))


def add_member(state: CapacityState, name: str, hosts: list[str], group: str) -> Outcome:
    """`icapmanage -a -m name:hostlist -g group` (§2.4). Allowed only when the sharing rights
    suffice (§2.1); a complex can be in one group at a time (§2.1)."""
    _check_name("member", name)
    state = _copy(state)
    if group not in state.groups:
        raise NotFound(f"Group {group} does not exist.")
    if state.member(name) is not None:
        raise AlreadyExists(f"Member {name} already exists.")
    cx = _complex_of_hosts(state, hosts)
    if cx.group is not None:
        raise Refused(
            f"The complex of {hosts[0]} is already member {cx.member} of group {cx.group}; a "
            "complex can be in only one group at a time."
        )
    gaps = _coverage_gaps(cx, hosts)
    if gaps:
        raise InvalidParameter(
            "The host list must name every nPar and vPar of the complex; missing: "
            + "; ".join(gaps)
            + "."
        )
    need = state.sharing_in_use() + cx.cores_without_rights
    if need > state.sharing_rights:
        raise Refused(
            f"Not enough sharing rights to add member {name}: it has "
            f"{cx.cores_without_rights} cores without usage rights, {state.sharing_in_use()} "
            f"of {state.sharing_rights} sharing rights are in use. Apply a sharing rights "
            "codeword or buy usage rights for the complex."
        )
    cx.member, cx.group, cx.member_hosts = name, group, list(hosts)
    return Outcome(
        state, [Action("add_member", group, name, text=f"Member {name} added to group {group}.")]
    )


def remove_member(state: CapacityState, name: str) -> Outcome:
    """`icapmanage -r -m name` (§2.4): borrowed rights must have been returned; the removal
    itself reclaims loans, which must be free in the group; TiCAP is never returned."""
    state = _copy(state)
    cx = _member(state, name)
    group = state.groups[cx.group or ""]
    in_force = state.in_force(cx.name)
    restorable = sorted({s.partition for s in in_force if s.partition != UNASSIGNED})
    if restorable:
        commands = "; ".join(f"icapmanage -z {cx.partition(p).all_hosts[0]}" for p in restorable)
        raise Refused(
            f"Usage rights seized from nPar {', '.join(restorable)} of member {name} are held "
            f"by group {group.name}; restore them ({commands}) before removing the member."
        )
    if cx.borrowed:
        raise Refused(
            f"Member {name} has {cx.borrowed} borrowed core usage rights; deactivate cores on "
            "it to return them before removing it."
        )
    if cx.loaned > group.free_rights:
        raise Refused(
            f"Member {name} has loaned {cx.loaned} core usage rights and only "
            f"{group.free_rights} are free in group {group.name}; deactivate cores on the "
            "borrowing members first."
        )
    # The removal reclaims the member's loans (§2.4), the unassigned rights seized from it
    # among them: -z cannot restore those (§3.3), so they are closed here.
    for s in in_force:
        s.state = SeizureState.RESTORED
    group.free_rights -= cx.loaned
    cx.rights += cx.loaned
    cx.member, cx.group, cx.member_hosts = None, None, []
    cx.ticap_charged_until = None
    return Outcome(
        state, [Action("remove_member", group.name, name, text=f"Member {name} removed.")]
    )


def update_member_hosts(
    state: CapacityState, name: str, add: list[str], remove: list[str]
) -> Outcome:
    """`icapmanage -u -m name -h add!remove` (§2.4): removals first, then additions; the
    result must keep at least one host per nPar and vPar."""
    state = _copy(state)
    cx = _member(state, name)
    lowered = {h.lower() for h in remove}
    hosts = [h for h in cx.member_hosts if h.lower() not in lowered]
    for host in add:
        owner = state.complex_of(host)
        if owner is not cx:
            raise InvalidParameter(f"Host {host} is not an OS instance of member {name}.")
        if host.lower() not in {h.lower() for h in hosts}:
            hosts.append(host)
    gaps = _coverage_gaps(cx, hosts)
    if gaps:
        raise InvalidParameter(f"Member {name} would have no host for: " + "; ".join(gaps) + ".")
    cx.member_hosts = hosts
    group = cx.group or ""
    return Outcome(state, [Action("update_member", group, name, text=f"Member {name} updated.")])
