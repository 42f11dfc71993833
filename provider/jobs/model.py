"""Jobs as data: states, steps, and the pure decisions each step makes. No I/O.

The failover job's steps are VCEM's (reference vcem-domain.md §3.2; seed 002 "Profile
Failover internal operations"; SPEC 4.1): check domains → lock the domain group → check the
product type and boot-from-SAN → hard power-off the source → pick the first qualified spare →
move the profile (addresses unchanged) and clear the spare flag → power on the spare →
schedule rediscovery → unlock. A move is the same minus spare selection, with a check of the
chosen target instead (reference §2.4, §9 "Move").

Every device step is "read the device, then act only if it is not yet as wanted" (reference
ha-jobs-style.md B.2 item 4): the functions below take what was read and say what to do, so
a replay after a crash repeats no power action.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provider.drivers.base import DeviceState, PowerState

__all__ = [
    "DEVICE_STEPS",
    "FAILOVER_STEPS",
    "MOVE_STEPS",
    "JobState",
    "JobType",
    "MoveAction",
    "Step",
    "StepFailed",
    "move_actions",
    "needs_power_off",
    "needs_power_on",
    "next_step",
    "percent_complete",
    "runs_nowhere",
    "steps_for",
]


class JobState(enum.Enum):
    """Stored names, with CIM_ConcreteJob.JobState values (SPEC 3.4) as `.cim`."""

    QUEUED = "queued"  # 2 New: waiting behind the group's running job (FIFO)
    STARTING = "starting"  # 3 Starting: claimed, no step journaled yet
    RUNNING = "running"  # 4 Running: steps under way; holds the group
    COMPLETED = "completed"  # 7 Completed
    TERMINATED = "terminated"  # 8 Terminated: cancelled while queued
    EXCEPTION = "exception"  # 10 Exception: a step failed; ErrorDescription says why

    @property
    def cim(self) -> int:
        return _CIM[self]

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.TERMINATED, JobState.EXCEPTION)


_CIM = {
    JobState.QUEUED: 2,
    JobState.STARTING: 3,
    JobState.RUNNING: 4,
    JobState.COMPLETED: 7,
    JobState.TERMINATED: 8,
    JobState.EXCEPTION: 10,
}


class JobType(enum.Enum):
    FAILOVER = "failover"
    MOVE = "move"


class Step(enum.Enum):
    CHECK_DOMAINS = "check_domains"  # no unmanaged/unlicensed/incompatible domain, no maintenance
    LOCK_GROUP = "lock_group"  # mark the domain group locked by this job
    CHECK_PRODUCT = "check_product"  # ProLiant or Integrity; failover: profile boots from SAN
    POWER_OFF_SOURCE = "power_off_source"  # press and hold (hard power-off)
    PICK_SPARE = "pick_spare"  # failover: first qualified spare of the group
    CHECK_TARGET = "check_target"  # move: the chosen bay can take the profile
    MOVE_PROFILE = "move_profile"  # unassign source, assign target, clear the spare flag
    POWER_ON_TARGET = "power_on_target"  # boots the SAN image with the profile's identity
    SCHEDULE_REDISCOVERY = "schedule_rediscovery"  # host name/IPs follow in ~10 minutes
    UNLOCK = "unlock"  # always, also after a failure


FAILOVER_STEPS = (
    Step.CHECK_DOMAINS,
    Step.LOCK_GROUP,
    Step.CHECK_PRODUCT,
    Step.POWER_OFF_SOURCE,
    Step.PICK_SPARE,
    Step.MOVE_PROFILE,
    Step.POWER_ON_TARGET,
    Step.SCHEDULE_REDISCOVERY,
    Step.UNLOCK,
)

# The target is checked before the source is powered off (reference §2.4 [I]: validate the
# target, empty of profile and powered off, before touching anything): a move to a bay that
# cannot take the profile once hard-powered-off a running server and then refused.
MOVE_STEPS = (
    Step.CHECK_DOMAINS,
    Step.LOCK_GROUP,
    Step.CHECK_PRODUCT,
    Step.CHECK_TARGET,
    Step.POWER_OFF_SOURCE,
    Step.MOVE_PROFILE,
    Step.POWER_ON_TARGET,
    Step.SCHEDULE_REDISCOVERY,
    Step.UNLOCK,
)


# The steps that change a device. Only these need an intent journaled (and committed) before
# they act, and a record after: a crash between the two is the one case where the journal
# cannot say what happened, so the next attempt must read the device first (ha-jobs-style.md
# A.7.4). Every other step only reads (the store, or a device) and writes the store, so its
# record and its effects commit in one transaction or not at all, and replaying it after a
# crash does nothing twice: it needs no intent of its own (provider.jobs.steps).
DEVICE_STEPS = frozenset({Step.POWER_OFF_SOURCE, Step.MOVE_PROFILE, Step.POWER_ON_TARGET})


def steps_for(job_type: JobType) -> tuple[Step, ...]:
    return FAILOVER_STEPS if job_type is JobType.FAILOVER else MOVE_STEPS


def next_step(job_type: JobType, recorded: set[Step]) -> Step | None:
    """The first step without a recorded outcome: where a job (re)starts. UNLOCK last."""
    for step in steps_for(job_type):
        if step not in recorded:
            return step
    return None


def percent_complete(job_type: JobType, done: int) -> int:
    return min(100, round(100 * done / len(steps_for(job_type))))


class StepFailed(Exception):
    """A step cannot complete; the job ends in Exception with this reason (exit on error,
    seed 002 / reference §3.2). The reason is written for the person who reads the job."""

    def __init__(self, reason: str, effect: Callable[[Any], None] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        # What the step did before it failed, written to the store with the job's end (a
        # FencedTx -> None), so the store says where things are: nothing is rolled back.
        self.effect = effect


def needs_power_off(state: DeviceState) -> bool:
    """Press-and-hold only a server that is present and not already off."""
    return state.present and state.power is not PowerState.OFF


def needs_power_on(state: DeviceState) -> bool:
    return state.present and state.power is not PowerState.ON


def runs_nowhere(profile: str, target: str, source: str) -> str:
    """Why a move with power-on to a bay without a server is refused. A profile may wait in
    an empty bay, applied when a server is inserted (reference OV-EMPTYBAY): that is a move
    without power-on. With it, the move powered the running source off, applied the
    profile to no server, skipped the power-on and ended "Completed" (a mistyped bay)."""
    return (
        f"there is no server in {target}: moved there, profile {profile} would run nowhere, "
        f"and the server in {source} would be powered off for it. Nothing was changed. Choose "
        "a bay with a server, or move without power-on (vcemcli -nopoweron, PowerOn=false) "
        "to leave the profile in the empty bay: it is applied when a server is inserted."
    )


class MoveAction(enum.Enum):
    UNASSIGN_SOURCE = "unassign_source"
    ASSIGN_TARGET = "assign_target"


@dataclass(frozen=True)
class _MoveView:
    on_source: bool
    on_target: bool
    target_other: str | None


def move_actions(
    profile: str, source: DeviceState | None, target: DeviceState
) -> tuple[MoveAction, ...]:
    """What is left to do to move `profile` from source to target, given both bays' state.

    Unassign first, then assign: the profile is never applied to two bays at once, so a
    crash between the two leaves it on neither (and the replay assigns it), never on both.
    Raises StepFailed if the target holds another profile (someone else used the bay)."""
    view = _MoveView(
        on_source=source is not None and source.profile == profile,
        on_target=target.profile == profile,
        target_other=target.profile if target.profile not in (None, profile) else None,
    )
    if view.target_other is not None:
        raise StepFailed(
            f"the target bay holds profile {view.target_other} now; "
            f"profile {profile} was not moved there."
        )
    actions: list[MoveAction] = []
    if view.on_source:
        actions.append(MoveAction.UNASSIGN_SOURCE)
    if not view.on_target:
        actions.append(MoveAction.ASSIGN_TARGET)
    return tuple(actions)
