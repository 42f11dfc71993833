"""The steps of a failover or move job: intent → act → record, each "read, then act".

`run_step` journals the intent (fenced), runs the step's act, which reads the device and acts
only if needed (decisions in `provider.jobs.model` and `provider.vcem.spares`, both pure),
then records the outcome together with its effects on the store (fenced, one transaction).
A crash anywhere in between leaves an intent without an outcome; the next active runs the
same step again, and because the act reads the device first, nothing is done twice
(reference ha-jobs-style.md A.7.4, B.2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provider.drivers.base import BayRef, DeviceState, HardwareDriver, PowerState
from provider.store import FencedTx
from provider.vcem import repository as repo
from provider.vcem.inventory import PRODUCTS
from provider.vcem.spares import Candidate, NoSpare, SourceServer, choose_spare

from .journal import Job, JobJournal
from .model import (
    JobType,
    MoveAction,
    Step,
    StepFailed,
    move_actions,
    needs_power_off,
    needs_power_on,
)

__all__ = ["StepContext", "StepResult", "run_step"]


@dataclass(frozen=True)
class StepResult:
    outcome: str  # done | already | skipped
    detail: str
    effects: Callable[[FencedTx], None] | None = None
    job_changes: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    store: Any
    journal: JobJournal
    driver: HardwareDriver
    rediscovery_delay: float  # seconds; HP SIM discovery "in ten minutes" (reference §1.6)
    clock: Callable[[], float]
    crash: Callable[[Step, str], None] = lambda step, phase: None  # crash-test hook


def run_step(ctx: StepContext, job: Job, step: Step) -> None:
    ctx.journal.intent(job, step)
    ctx.crash(step, "intent")
    result = _ACTS[step](ctx, job)
    ctx.crash(step, "act")
    ctx.journal.record(job, step, result.outcome, result.detail, result.effects, result.job_changes)
    ctx.crash(step, "record")


def _source(job: Job) -> BayRef | None:
    if job.source_enclosure is None or job.source_bay is None:
        return None
    return BayRef(job.source_enclosure, job.source_bay)


def _target(job: Job) -> BayRef:
    if job.target_enclosure is None or job.target_bay is None:
        raise StepFailed("the job has no target bay recorded; it cannot move the profile.")
    return BayRef(job.target_enclosure, job.target_bay)


def _read_one(ctx: StepContext, bay: BayRef) -> DeviceState:
    return ctx.driver.read([bay])[bay]


def _power_effect(bay: BayRef, power: PowerState) -> Callable[[FencedTx], None]:
    def effect(tx: FencedTx) -> None:
        repo.set_power(tx, bay.enclosure, bay.bay, power.value)

    return effect


# -- the steps -------------------------------------------------------------------------------


def _check_domains(ctx: StepContext, job: Job) -> StepResult:
    """Later VCEM: "Evaluates VC Domain status for any abnormal conditions such as an
    unmanaged or unlicensed domains or a domain that has a status of 'incompatible'"
    (reference §3.2 step 0); maintenance blocks failovers and moves too (§6, SPEC 4.1)."""
    with ctx.store.read() as tx:
        group = repo.group(tx, job.domain_group)
        if group is None:
            raise StepFailed(f"domain group {job.domain_group} no longer exists.")
        domains = repo.domains_of_group(tx, job.domain_group)
        involved = [b for b in (_source(job), _bay_of_target(job)) if b is not None]
        rows = [repo.bay(tx, b.enclosure, b.bay) for b in involved]
    if group.maintenance:
        raise StepFailed(
            f"domain group {group.name} is in maintenance (started by "
            f"{group.maintenance_owner or 'an administrator'}); failovers and moves are refused "
            "until it is completed or cancelled (setMaintenance)."
        )
    for row in rows:
        if row is not None and row.domain_state != "managed":
            raise StepFailed(
                f"domain {row.domain} of {row.label} is {row.domain_state}; a failover or move "
                "needs managed domains (not unmanaged, unlicensed, incompatible or in "
                "maintenance). Bring the domain back under management and submit again."
            )
    summary = ", ".join(f"{d.name} {d.state}" for d in domains)
    return StepResult("done", f"domains of {group.name}: {summary}")


def _bay_of_target(job: Job) -> BayRef | None:
    if job.target_enclosure is None or job.target_bay is None:
        return None
    return BayRef(job.target_enclosure, job.target_bay)


def _lock_group(ctx: StepContext, job: Job) -> StepResult:
    """ "Locks the VC Domain Group of the source server to other operations in VCEM for the
    remainder of the job" (WP-OLD-6). The running job's row already holds the group in the
    store (gm_jobs_one_running); this makes the lock visible (GM_DomainGroup.Locked)."""

    def effect(tx: FencedTx) -> None:
        repo.set_lock(tx, job.domain_group, job.id)

    return StepResult("done", f"locked domain group {job.domain_group}", effect)


def _check_product(ctx: StepContext, job: Job) -> StepResult:
    """ "Checks source server product name (different treatment for ProLiant and Integrity
    products). If the product is not identified then the job will exit." (WP-NEW-6); failover
    "requires configuring the source and target servers to boot-from-SAN" (UVCEM-10)."""
    with ctx.store.read() as tx:
        profile = repo.profile(tx, job.profile)
    if profile is None:
        raise StepFailed(f"server profile {job.profile} no longer exists.")
    source = _source(job)
    if job.job_type is JobType.FAILOVER:
        if source is None or (profile.enclosure, profile.bay) != (source.enclosure, source.bay):
            raise StepFailed(
                f"profile {profile.name} is no longer assigned to the source bay; another job or "
                "an administrator moved it. Nothing was done."
            )
        if not profile.boot_from_san:
            raise StepFailed(
                f"profile {profile.name} does not boot from SAN; failover needs the source and "
                "the spare configured to boot from SAN with no dependency on a local drive "
                "(reference §1.3). Nothing was done: the source is still powered as it was."
            )
    if source is None:
        return StepResult("skipped", f"profile {profile.name} is not assigned to a bay")
    state = _read_one(ctx, source)
    if not state.present:
        if job.job_type is JobType.FAILOVER:
            raise StepFailed(
                f"no server is present in {source}, so its product cannot be identified; the job "
                "exits as VCEM does. Nothing was done."
            )
        return StepResult("skipped", f"no server in {source}; profile moves without it")
    if state.product not in PRODUCTS:
        raise StepFailed(
            f"the product of the server in {source} is not identified ({state.product or 'empty'});"
            f" supported are {' and '.join(PRODUCTS)}. Nothing was done."
        )
    san = "boots from SAN" if profile.boot_from_san else "does not boot from SAN"
    return StepResult(
        "done", f"{state.product} {state.model} {state.generation}; profile {san}".strip()
    )


def _power_off_source(ctx: StepContext, job: Job) -> StepResult:
    """ "Powers off the source server using press and hold (hard power off)" (seed 002 / WP-6)."""
    source = _source(job)
    if source is None:
        return StepResult("skipped", "the profile had no bay")
    state = _read_one(ctx, source)
    if not needs_power_off(state):
        what = "already off" if state.present else "no server present"
        return StepResult("already", f"{source}: {what}", _power_effect(source, state.power))
    ctx.driver.hard_power_off(source, f"job {job.id} {Step.POWER_OFF_SOURCE.value}")
    after = _read_one(ctx, source)
    if after.power is not PowerState.OFF:
        raise StepFailed(f"{source} is still {after.power.value} after a hard power-off.")
    return StepResult(
        "done", f"{source}: hard power-off (press and hold)", _power_effect(source, PowerState.OFF)
    )


def _pick_spare(ctx: StepContext, job: Job) -> StepResult:
    """The first qualified spare of the group (provider.vcem.spares), read from the devices."""
    source = _source(job)
    if source is None:
        raise StepFailed("a failover job needs a source bay.")
    with ctx.store.read() as tx:
        group = repo.group(tx, job.domain_group)
        bays = repo.bays_of_group(tx, job.domain_group)
    spares = [b for b in bays if b.is_spare]
    states = ctx.driver.read([BayRef(b.enclosure, b.bay) for b in spares] + [source])
    src = states[source]
    candidates = [_candidate(b, states[BayRef(b.enclosure, b.bay)]) for b in spares]
    same_generation = group is not None and group.same_generation
    choice = choose_spare(
        SourceServer(source.enclosure, source.bay, src.model, src.generation),
        candidates,
        same_generation,
    )

    def refresh(tx: FencedTx) -> None:
        for b in spares:
            repo.set_power(tx, b.enclosure, b.bay, states[BayRef(b.enclosure, b.bay)].power.value)

    if isinstance(choice, NoSpare):
        generation = f" {src.generation}" if same_generation else ""
        raise StepFailed(
            f"no qualified spare in domain group {job.domain_group} for {source} "
            f"(model {src.model}{generation}): {choice.describe()}. The source server {source} "
            f"stays powered off (step power_off_source) with profile {job.profile} still "
            "assigned; nothing was rolled back. Designate a qualified spare (setSpare) and fail "
            "over again, or move the profile to a chosen bay (moveProfile)."
        )
    passed = "; ".join(f"{label}: {why}" for label, why in choice.passed_over)
    detail = f"chose {choice.enclosure} bay {choice.bay}" + (
        f" (passed over {passed})" if passed else ""
    )
    return StepResult(
        "done",
        detail,
        refresh,
        {"target_enclosure": choice.enclosure, "target_bay": choice.bay},
    )


def _candidate(row: repo.BayRow, state: DeviceState) -> Candidate:
    return Candidate(
        domain=row.domain,
        domain_state=row.domain_state,
        enclosure=row.enclosure,
        enclosure_position=row.enclosure_position,
        bay=row.bay,
        is_spare=row.is_spare,
        profile=state.profile or row.profile,
        present=state.present and row.covered_by is None,
        model=state.model,
        generation=state.generation,
        powered_on=None if state.power is PowerState.UNKNOWN else state.power is PowerState.ON,
    )


def _check_target(ctx: StepContext, job: Job) -> StepResult:
    """A move's chosen bay must be free of other profiles and powered off (reference §2.4 [I]:
    "check target bay empty of profile, require source and target powered off")."""
    target = _target(job)
    with ctx.store.read() as tx:
        row = repo.bay(tx, target.enclosure, target.bay)
    if row is None or row.group != job.domain_group:
        raise StepFailed(f"{target} is not a bay of domain group {job.domain_group}.")
    if row.covered_by is not None:
        raise StepFailed(f"{target} is covered by the full-height blade in bay {row.covered_by}.")
    if row.profile not in (None, job.profile):
        raise StepFailed(f"{target} has profile {row.profile} assigned; choose a free bay.")
    state = _read_one(ctx, target)
    if state.profile not in (None, job.profile):
        raise StepFailed(f"{target} has profile {state.profile} applied; choose a free bay.")
    if state.present and state.power is PowerState.ON and state.profile != job.profile:
        raise StepFailed(
            f"the server in {target} is powered on; power it off first (a profile is applied "
            "to a powered-off server only). Nothing was changed on the target."
        )
    what = f"{state.model} {state.generation}".strip() if state.present else "no server present"
    return StepResult("done", f"{target}: free ({what})", _power_effect(target, state.power))


def _move_profile(ctx: StepContext, job: Job) -> StepResult:
    """Unassign from the source, assign to the target: MACs, WWNs, serial and UUID travel
    unchanged (reference §1.4); the target loses its spare flag; the source's host name and IPs
    are removed until rediscovery (§1.6)."""
    source = _source(job)
    target = _target(job)
    bays = [target] if source is None else [source, target]
    states = ctx.driver.read(bays)
    actions = move_actions(job.profile, states.get(source) if source else None, states[target])
    key = f"job {job.id} {Step.MOVE_PROFILE.value}"
    for action in actions:
        if action is MoveAction.UNASSIGN_SOURCE and source is not None:
            ctx.driver.unassign_profile(source, job.profile, key)
        elif action is MoveAction.ASSIGN_TARGET:
            ctx.driver.assign_profile(target, job.profile, key)
    after = ctx.driver.read(bays)
    if after[target].profile != job.profile or (
        source is not None and after[source].profile == job.profile
    ):
        raise StepFailed(f"profile {job.profile} did not arrive on {target}.")

    def effect(tx: FencedTx) -> None:
        host, ips = repo.move_profile(
            tx,
            job.profile,
            None if source is None else (source.enclosure, source.bay),
            (target.enclosure, target.bay),
        )
        tx.execute(
            "UPDATE gm_jobs SET rediscover_host = %(h)s, rediscover_ips = %(ips)s"
            " WHERE id = %(id)s",
            {"h": host, "ips": json.dumps(list(ips)), "id": job.id},
        )

    origin = f" from {source}" if source is not None else ""
    done = ", ".join(a.value for a in actions) or "already in place"
    outcome = "done" if actions else "already"
    return StepResult(outcome, f"profile {job.profile}{origin} to {target}: {done}", effect)


def _power_on_target(ctx: StepContext, job: Job) -> StepResult:
    """ "Power is applied to the spare server. It boots the system drive image that had been
    running on the production server" (seed 000)."""
    target = _target(job)
    if not job.power_on:
        return StepResult("skipped", "PowerOn was false: the target stays off")
    state = _read_one(ctx, target)
    if not state.present:
        return StepResult("skipped", f"no server in {target} to power on")
    if not needs_power_on(state):
        return StepResult("already", f"{target}: already on", _power_effect(target, PowerState.ON))
    ctx.driver.power_on(target, f"job {job.id} {Step.POWER_ON_TARGET.value}")
    after = _read_one(ctx, target)
    if after.power is not PowerState.ON:
        raise StepFailed(f"{target} is still {after.power.value} after power-on.")
    return StepResult("done", f"{target}: powered on", _power_effect(target, PowerState.ON))


def _schedule_rediscovery(ctx: StepContext, job: Job) -> StepResult:
    """ "HP Systems Insight Manager discovery is scheduled to be run on the spare server in ten
    minutes" (WP-NEW-6); `[vcem] rediscovery_delay_s` (default 600)."""
    target = _target(job)
    due = ctx.clock() + ctx.rediscovery_delay
    when = datetime.fromtimestamp(due, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return StepResult("done", f"discovery of {target} at {when}", None, {"rediscover_at": due})


_ACTS: dict[Step, Callable[[StepContext, Job], StepResult]] = {
    Step.CHECK_DOMAINS: _check_domains,
    Step.LOCK_GROUP: _lock_group,
    Step.CHECK_PRODUCT: _check_product,
    Step.POWER_OFF_SOURCE: _power_off_source,
    Step.PICK_SPARE: _pick_spare,
    Step.CHECK_TARGET: _check_target,
    Step.MOVE_PROFILE: _move_profile,
    Step.POWER_ON_TARGET: _power_on_target,
    Step.SCHEDULE_REDISCOVERY: _schedule_rediscovery,
}
