"""The GiCAP domain model: capacity groups, member complexes, partitions, cells, seizures.

Plain mutable dataclasses; the rules in `provider.gicap.rules` copy a `CapacityState` (its
`clone()`), change the copy and return it with the actions taken, so the model itself does no
I/O and keeps no clock. Vocabulary (reference gicap-domain.md §2):

* a **complex** is a partitionable server; it is a **member** when it belongs to a capacity
  group (a complex can be in one group at a time, §2.1). Its nPars (hard partitions) each have
  OS hosts (the nPar's own, plus those of its vPars) and cells with cores;
* **usage rights** (core RTUs): `owned_rights` were bought for the complex, `rights` are the
  ones resident on it now; resident above owned is borrowed, below owned is loaned (§2.5);
* the Group Manager holds free rights for each group (`Group.free_rights`: released or seized,
  not yet claimed, §2.5) and a pool of temporary capacity minutes (`Group.ticap_minutes`);
* **TiCAP** is charged only while the active cores of a complex exceed its resident rights
  (§4.1), from the member's balance first and then from the group (§4.3);
* a **seizure** takes rights from a down nPar (§3); a *deferred* one (complete outage) is a
  loan that expires, and its member is *scavenged* while the seizure is pending.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = [
    "DEFERRED_SEIZURE_LIFETIME",
    "TICAP_PERIOD",
    "TWELVE_HOURS",
    "UNASSIGNED",
    "CapacityState",
    "Cell",
    "Complex",
    "Group",
    "Partition",
    "Seizure",
    "SeizureState",
    "name_problem",
]

# Reference §3.3: a deferred seizure "expires 10 days after the first icapmanage -x on that
# member" (legacy cellular servers; Superdome 2's 30 days is out of scope).
DEFERRED_SEIZURE_LIFETIME = timedelta(days=10)
# Reference §3.5 / seed 003: cells of a seized partition "should be rebooted or made inactive
# within 12 hours".
TWELVE_HOURS = timedelta(hours=12)
# Reference §4.1/§4.3: usage is measured in 30-minute increments, and 30 minutes of TiCAP are
# transferred per core activated with TiCAP.
TICAP_PERIOD = timedelta(minutes=30)
# The partition name recorded for a complex's unassigned rights seized with its first
# seizure (reference §3.3, "Unassigned core usage rights seized").
UNASSIGNED = "(unassigned)"

# Reference §2.2: "max 127 characters, only letters/digits plus hyphen, underscore, dot and
# space" [V for Superdome 2; we apply it to every group and member name, I].
_NAME = re.compile(r"^[A-Za-z0-9_. -]+$")
MAX_NAME = 127


def name_problem(kind: str, name: str) -> str | None:
    """Why `name` is not a valid group or member name, or None when it is."""
    if not name or not name.strip():
        return f"a {kind} name must not be empty"
    if len(name) > MAX_NAME:
        return f"the {kind} name {name[:20]!r}... is {len(name)} characters long; at most 127"
    if name != name.strip():
        # Key values are read without the white space around them (wbemcli and OpenPegasus
        # request files put some there), so such a name could never be addressed again.
        return (
            f"the {kind} name {name!r} begins or ends with a space; a key value is read "
            f"without the spaces around it, so use {name.strip()!r}"
        )
    if not _NAME.match(name):
        bad = sorted({c for c in name if not _NAME.match(c)})
        return (
            f"the {kind} name {name!r} contains {''.join(bad)!r}; only letters, digits, "
            "hyphen, underscore, dot and space are allowed"
        )
    return None


class SeizureState(enum.Enum):
    """Where one seizure stands (GM_RightsSeizure.State)."""

    # Deferred seizure of a completely unreachable member: a loan that expires (§3.3).
    PENDING = "pending"
    # A pending seizure whose member reconnected before expiry: an ordinary loan now (§3.3).
    LOAN = "loan"
    # Seized while another partition of the member answered: no expiry (§3.3).
    PERMANENT = "permanent"
    # Expired before the member reconnected: the rights went back to the partition (§3.3).
    REVERTED = "reverted"
    # Given back with restoreRights (icapmanage -z, §3.4).
    RESTORED = "restored"

    @property
    def holds_rights(self) -> bool:
        """The group still holds these rights (the seizure is in force)."""
        return self in (SeizureState.PENDING, SeizureState.LOAN, SeizureState.PERMANENT)


@dataclass
class Cell:
    name: str
    cores: int
    active: bool = True  # configured use-on-next-boot and powered; inactive cells count 0

    def clone(self) -> Cell:
        return Cell(self.name, self.cores, self.active)


@dataclass
class Partition:
    """An nPar and its OS instances. Core accounting is per nPar (vPars only add hosts)."""

    name: str
    hosts: list[str]  # the nPar's own OS hosts
    cells: list[Cell]
    intended: int  # cores intended to be active
    actual: int  # cores actually active (last known for a down partition)
    vpars: dict[str, list[str]] = field(default_factory=dict)  # vPar name -> its hosts

    def clone(self) -> Partition:
        return Partition(
            self.name,
            self.hosts.copy(),
            [c.clone() for c in self.cells],
            self.intended,
            self.actual,
            {v: hosts.copy() for v, hosts in self.vpars.items()},
        )

    @property
    def all_hosts(self) -> list[str]:
        hosts = list(self.hosts)
        for vpar_hosts in self.vpars.values():
            hosts.extend(vpar_hosts)
        return hosts

    @property
    def active_cells(self) -> int:
        return sum(1 for c in self.cells if c.active)

    @property
    def cores_on_active_cells(self) -> int:
        return sum(c.cores for c in self.cells if c.active)

    @property
    def total_cores(self) -> int:
        return sum(c.cores for c in self.cells)

    @property
    def demand(self) -> int:
        """Rights this partition consumes: max(intended, actual), reference §3.2."""
        return max(self.intended, self.actual)


@dataclass
class Complex:
    """A partitionable server; a member of `group` under the name `member` when grouped."""

    name: str  # the complex's own name in the inventory
    partitions: list[Partition]
    owned_rights: int
    rights: int
    ticap_minutes: int = 0  # may be negative: a debit without TiCAP (reference §3.5, §4.2)
    ticap_charged_until: datetime | None = None
    member: str | None = None
    group: str | None = None
    member_hosts: list[str] = field(default_factory=list)  # hosts given when added (-a -m)
    reachable: bool | None = None  # last probe: any host answered

    def clone(self) -> Complex:
        return Complex(
            self.name,
            [p.clone() for p in self.partitions],
            self.owned_rights,
            self.rights,
            self.ticap_minutes,
            self.ticap_charged_until,
            self.member,
            self.group,
            self.member_hosts.copy(),
            self.reachable,
        )

    @property
    def total_cores(self) -> int:
        return sum(p.total_cores for p in self.partitions)

    @property
    def active_cores(self) -> int:
        return sum(p.actual for p in self.partitions)

    @property
    def demand(self) -> int:
        return sum(p.demand for p in self.partitions)

    @property
    def ticap_cores(self) -> int:
        """Cores consuming temporary capacity: active cores above resident rights (§4.1)."""
        return max(0, self.active_cores - self.rights)

    @property
    def unassigned_rights(self) -> int:
        return max(0, self.rights - self.demand)

    @property
    def borrowed(self) -> int:
        return max(0, self.rights - self.owned_rights)

    @property
    def loaned(self) -> int:
        return max(0, self.owned_rights - self.rights)

    @property
    def cores_without_rights(self) -> int:
        """What the member consumes of the GM's sharing rights (reference §2.1)."""
        return max(0, self.total_cores - self.owned_rights)

    def partition(self, name: str) -> Partition:
        return next(p for p in self.partitions if p.name == name)

    def partition_of(self, host: str) -> Partition | None:
        wanted = host.lower()
        for p in self.partitions:
            if any(h.lower() == wanted for h in p.all_hosts):
                return p
        return None

    @property
    def all_hosts(self) -> list[str]:
        return [h for p in self.partitions for h in p.all_hosts]


@dataclass
class Group:
    name: str
    description: str = ""
    free_rights: int = 0  # core usage rights held by the Group Manager for this group
    ticap_minutes: int = 0  # TiCAP minutes held by the Group Manager (group pool)
    ticap_reminder_at: datetime | None = None  # last "Temporary Capacity Expiration Reminder"
    out_of_compliance_since: datetime | None = None

    def clone(self) -> Group:
        return Group(
            self.name,
            self.description,
            self.free_rights,
            self.ticap_minutes,
            self.ticap_reminder_at,
            self.out_of_compliance_since,
        )


@dataclass
class Seizure:
    id: str
    member: str  # the complex's name (stable across member renames)
    partition: str  # nPar name, or UNASSIGNED
    host: str  # the host named in seizeRights
    cores: int
    deferred: bool
    seized_at: datetime
    expires_at: datetime | None
    state: SeizureState
    intended_before: int = 0  # the partition's intended count before the seizure
    rebooted: bool = False  # a host of the partition answered after the seizure (§3.5)
    all_cores_assumed: bool = False  # the 12-hour rule was applied (§3.5)
    expiry_warned: bool = False

    def clone(self) -> Seizure:
        return Seizure(
            self.id,
            self.member,
            self.partition,
            self.host,
            self.cores,
            self.deferred,
            self.seized_at,
            self.expires_at,
            self.state,
            self.intended_before,
            self.rebooted,
            self.all_cores_assumed,
            self.expiry_warned,
        )


@dataclass
class CapacityState:
    """Everything the Group Manager knows about capacity (the GiCAP database, §1.1)."""

    sharing_rights: int = 0  # GiCAP sharing rights applied to this Group Manager (§2.1)
    groups: dict[str, Group] = field(default_factory=dict)
    complexes: dict[str, Complex] = field(default_factory=dict)
    seizures: list[Seizure] = field(default_factory=list)

    def clone(self) -> CapacityState:
        """A copy that shares no mutable object with this state (what a rule changes).

        Every dataclass and container is new; only immutable values (str, int, bool, None,
        datetime, SeizureState) are shared. Each class copies its own fields explicitly, field
        for field in declaration order: a new field must be added to its `clone()` too
        (tests/gicap/test_clone.py fails until it is).
        """
        return CapacityState(
            self.sharing_rights,
            {name: g.clone() for name, g in self.groups.items()},
            {name: c.clone() for name, c in self.complexes.items()},
            [s.clone() for s in self.seizures],
        )

    def members(self, group: str) -> list[Complex]:
        return sorted(
            (c for c in self.complexes.values() if c.group == group),
            key=lambda c: c.member or c.name,
        )

    def member(self, name: str) -> Complex | None:
        return next((c for c in self.complexes.values() if c.member == name), None)

    def complex_of(self, host: str) -> Complex | None:
        for c in self.complexes.values():
            if c.partition_of(host) is not None:
                return c
        return None

    def sharing_in_use(self) -> int:
        return sum(c.cores_without_rights for c in self.complexes.values() if c.group)

    def pending(self) -> list[Seizure]:
        return [s for s in self.seizures if s.state is SeizureState.PENDING]

    def in_force(self, member: str, partition: str | None = None) -> list[Seizure]:
        return [
            s
            for s in self.seizures
            if s.member == member
            and s.state.holds_rights
            and (partition is None or s.partition == partition)
        ]

    def group_ticap(self, group: str) -> int:
        """The group's TiCAP: the GM-held pool plus every member's balance (§4.3)."""
        return self.groups[group].ticap_minutes + sum(c.ticap_minutes for c in self.members(group))
