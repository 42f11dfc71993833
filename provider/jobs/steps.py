"""The steps of a failover or move job, and `drive`, which runs them: intent → act → record.

Each step's act reads what it needs (the store, the device) and acts on a device only if the
device is not yet as wanted (decisions in `provider.jobs.model` and `provider.vcem.spares`,
both pure); it returns an outcome and the outcome's effects on the store.

Which steps need an intent. Three steps act on a device (`DEVICE_STEPS`: hard power-off,
profile move, power-on). For those, the order is the one of reference ha-jobs-style.md A.7.4:
the intent is committed (fenced, so we know we are active) before the device is touched, and
the outcome is recorded after. A crash in between leaves an intent without an outcome; the
next attempt journals the intent again (attempts + 1), reads the device, and does only what
is left: nothing is done twice. The other steps (check domains, lock group, check product,
pick spare, check target, schedule rediscovery, unlock) change nothing but the store, and
their outcome and effects commit in one transaction, so a crash either kept all of it or
none of it; replaying such a step is harmless. An intent row of their own would say nothing
the record does not, and would cost a disk sync.

So `drive` runs a job as a chain of transactions (`JobJournal.advance`), each of which
records the device step just done, the no-device steps after it, and the intent of the next
device step (or ends the job and unlocks the group):

    T1  claim, check_domains, lock_group, check_product, (a move: check_target),
        intent power_off_source
        → act: hard power-off
    T2  record power_off_source, (a failover: pick_spare), intent move_profile
        → act: unassign source, assign target
    T3  record move_profile, intent power_on_target
        → act: power on
    T4  record power_on_target, schedule_rediscovery, unlock, Completed

Claiming the job in T1 also means a queued job is only read from (never written to) until
it is claimed; a crash before T1 commits leaves it queued, as submitted.

The acts of no-device steps run just before their transaction, outside it (a device is
never waited for inside a write transaction, and the simulator's reads are transactions of
their own): they see the store as it was before the steps of the same transaction are
recorded. That is correct because none of them reads what an earlier step of its
transaction writes: check_product and pick_spare read the profile's bay, the group's
spares and the devices, not the group's lock or the source's recorded power; check_target
reads the target's row, not the source's; schedule_rediscovery reads only the clock and the
job, whose changes (the target chosen by pick_spare) are passed on in memory.

The device is kept apart from the journal even though the simulator stores both in one
database: the simulator stands for real hardware, whose action can never share our
transaction, so its state change stays a commit of its own and the crash tests exercise the
path real drivers depend on (a crash after the device acted, before the record).

Crash-test points (`[simulator] crash_at`, see `provider.jobs.runner`): for a device step,
"intent" is after the transaction with its intent committed, "act" after the device acted,
"record" after the transaction with its outcome committed; for a no-device step, "intent"
is before its act, "act" after it (nothing of it committed yet), "record" after the
transaction with its outcome committed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from provider.drivers.base import BayRef, DeviceState, HardwareDriver, PowerState
from provider.drivers.deadline import inline
from provider.errors import DeviceError, Fenced, NotActive, StoreError
from provider.store import FencedTx
from provider.vcem import repository as repo
from provider.vcem.inventory import PRODUCTS
from provider.vcem.spares import Candidate, NoSpare, SourceServer, choose_spare

from .journal import ClaimRefused, Ending, Job, JobJournal, StepOutcome
from .model import (
    DEVICE_STEPS,
    JobState,
    JobType,
    MoveAction,
    Step,
    StepFailed,
    move_actions,
    needs_power_off,
    needs_power_on,
    next_step,
    runs_nowhere,
    steps_for,
)

__all__ = ["StepContext", "StepResult", "drive", "spare_candidate"]

log = logging.getLogger("gm.jobs")


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
    # Runs a step that calls the hardware with its deadline (provider.drivers.deadline;
    # `[vcem] device_timeout_s`); the default runs it here, without one.
    deadline: Callable[[str, Callable[[], Any]], Any] = inline


# The steps that call the hardware: each runs under the deadline as a whole.
_HARDWARE_STEPS = frozenset(
    {
        Step.CHECK_PRODUCT,
        Step.POWER_OFF_SOURCE,
        Step.PICK_SPARE,
        Step.CHECK_TARGET,
        Step.MOVE_PROFILE,
        Step.POWER_ON_TARGET,
    }
)


def _act(ctx: StepContext, step: Step, job: Job) -> StepResult:
    act = _ACTS[step]
    if step not in _HARDWARE_STEPS:
        return act(ctx, job)
    result: StepResult = ctx.deadline(f"Step {step.value}", lambda: act(ctx, job))
    return result


def drive(ctx: StepContext, job_id: int, stopping: Callable[[], bool] = lambda: False) -> None:
    """Run job `job_id` from where its journal says it is to its end, in this thread.

    Raises NotActive / Fenced when this node is no longer active (the new active adopts the
    job) and StoreError when the store failed (the caller retries: the journal says where
    to go on). Every other failure ends the job in Exception with the step and the reason.
    `stopping()` is asked between transactions (the process is shutting down)."""
    job, journal = ctx.journal.load(job_id)
    if job.state.finished:
        return
    order = steps_for(job.job_type)
    recorded = {s for s, r in journal.items() if r.outcome is not None}
    first = next_step(job.job_type, recorded)
    at = len(order) - 1 if first is None else order.index(first)
    claim = job.state is JobState.QUEUED
    intent_journaled = False  # by our own last transaction, for order[at]
    while not stopping():
        outcomes: list[StepOutcome] = []
        step = order[at]
        if step in DEVICE_STEPS:
            resumed = not intent_journaled
            if resumed:
                # Resuming (restart, takeover, store error): journal the intent under our
                # epoch before touching the device; the fence proves we are still active.
                job = _advanced(ctx.journal.advance(job, intent=step))
                ctx.crash(step, "intent")
            try:
                result = _act(ctx, step, job)
                if resumed and result.outcome == "already":
                    # Not "already off before the failover": most likely this job's own act
                    # before the restart, whose record the crash kept from being written.
                    result = replace(
                        result,
                        detail=f"{result.detail} (found so on resuming the job: done by its "
                        "attempt before a restart or takeover, or so before the job)",
                    )
            except (NotActive, Fenced, StoreError):
                raise
            except Exception as exc:
                _end_in_exception(ctx, job, step, exc)
                return
            ctx.crash(step, "act")
            outcomes.append(_outcome(step, result))
            at += 1
        # The steps that touch no device, up to the next device step or the end, go into the
        # transaction that records the device step before them (or claims the job).
        failure: tuple[Step, Exception] | None = None
        while order[at] is not Step.UNLOCK and order[at] not in DEVICE_STEPS:
            step = order[at]
            ctx.crash(step, "intent")
            try:
                result = _act(ctx, step, job)
            except (NotActive, Fenced, StoreError):
                raise  # the device outcome in `outcomes` is found again by the next attempt
            except Exception as exc:
                failure = (step, exc)
                break
            ctx.crash(step, "act")
            outcomes.append(_outcome(step, result))
            # A later step of this transaction may use what this one decided (the target).
            job = replace(job, **result.job_changes)
            at += 1
        if failure is not None:
            ending: Ending | None = _exception(job, *failure)
            intent: Step | None = None
        elif order[at] is Step.UNLOCK:
            ending, intent = Ending(JobState.COMPLETED, _unlock(job)), None
        else:
            ending, intent = None, order[at]
        advanced = ctx.journal.advance(job, outcomes, claim=claim, intent=intent, ending=ending)
        if advanced is None:
            return  # not claimable after all (cancelled, or its group is busy): nothing done
        job, claim, intent_journaled = advanced, False, True
        for outcome in outcomes:
            ctx.crash(outcome.step, "record")
        if ending is not None or job.state.finished:
            _log_end(job)
            return
        ctx.crash(order[at], "intent")


def _advanced(job: Job | None) -> Job:
    if job is None:  # only a claim can be refused, and this was not one
        raise StoreError("the job disappeared from the journal")
    return job


def _outcome(step: Step, result: StepResult) -> StepOutcome:
    return StepOutcome(step, result.outcome, result.detail, result.effects, result.job_changes)


def _unlock(job: Job) -> Callable[[FencedTx], None]:
    def unlock(tx: FencedTx) -> None:
        repo.set_lock(tx, job.domain_group, None)

    return unlock


def _exception(job: Job, step: Step, exc: Exception) -> Ending:
    """Exit on error (seed 002): the job ends in Exception with the step and the reason,
    the group unlocks in the same transaction, and nothing is rolled back."""
    unlock = _unlock(job)
    if isinstance(exc, StepFailed):
        reason = exc.reason
        if exc.effect is not None:
            done, unlock_only = exc.effect, unlock

            def unlock(tx: FencedTx) -> None:
                done(tx)
                unlock_only(tx)

    elif isinstance(exc, DeviceError):
        reason = exc.description
    else:
        log.error("job %d failed unexpectedly in %s", job.id, step.value, exc_info=exc)
        reason = f"internal error in gm-provider: {exc!r}"
    return Ending(JobState.EXCEPTION, unlock, step, f"Step {step.value} failed: {reason}")


def _end_in_exception(ctx: StepContext, job: Job, step: Step, exc: Exception) -> None:
    ended = _advanced(ctx.journal.advance(job, ending=_exception(job, step, exc)))
    _log_end(ended)


def _log_end(job: Job) -> None:
    where = f" at {job.error_step}: {job.error_description}" if job.error_step else ""
    log.info("job %d %s%s", job.id, job.state.value, where)


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
        if not repo.take_lock(tx, job.domain_group, job.id):
            # Maintenance began (or the group went) after check_domains read it: not claimed;
            # the next claim's check_domains ends the job with the reason.
            raise ClaimRefused(f"domain group {job.domain_group} changed before job {job.id}")

    return StepResult("done", f"locked domain group {job.domain_group}", effect)


def _check_product(ctx: StepContext, job: Job) -> StepResult:
    """ "Checks source server product name (different treatment for ProLiant and Integrity
    products). If the product is not identified then the job will exit." (WP-NEW-6); failover
    "requires configuring the source and target servers to boot-from-SAN" (UVCEM-10)."""
    with ctx.store.read_one() as tx:
        profile = repo.profile(tx, job.profile)
    if profile is None:
        raise StepFailed(f"server profile {job.profile} no longer exists.")
    source = _source(job)
    # The profile must still be where it was when the job was asked for: a job queued behind
    # another of its group (a move behind a failover of the same profile) would otherwise
    # assign it to its target while it stays applied where the other job put it.
    was = (None, None) if source is None else (source.enclosure, source.bay)
    moved = (profile.enclosure, profile.bay) != was
    if moved or (job.job_type is JobType.FAILOVER and source is None):
        now = (
            f"it is now in {profile.enclosure} bay {profile.bay}"
            if profile.enclosure is not None
            else "it is now assigned to no bay"
        )
        was_text = (
            f"is no longer assigned to the source bay ({source})"
            if source is not None
            else f"was assigned to no bay when job {job.id} was asked for"
        )
        raise StepFailed(
            f"profile {profile.name} {was_text}: {now}; another job or an administrator "
            f"moved it after job {job.id} was asked for. Nothing was done; ask again from "
            "where the profile is now."
        )
    if job.job_type is JobType.FAILOVER and not profile.boot_from_san:
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
        spares = repo.bays_of_group(tx, job.domain_group, spares_only=True)
    stays_off = (
        f"The source server {source} stays powered off (step power_off_source) with profile "
        f"{job.profile} still assigned; nothing was rolled back."
    )
    states, unreadable = _read_spares(ctx, source, spares, stays_off)
    readable = [b for b in spares if BayRef(b.enclosure, b.bay) in states]
    src = states[source]
    candidates = [spare_candidate(b, states[BayRef(b.enclosure, b.bay)]) for b in readable]
    same_generation = group is not None and group.same_generation
    choice = choose_spare(
        SourceServer(source.enclosure, source.bay, src.model, src.generation),
        candidates,
        same_generation,
    )

    def refresh(tx: FencedTx) -> None:
        # The spares' power as just read, written where the inventory says otherwise.
        for b in readable:
            power = states[BayRef(b.enclosure, b.bay)].power.value
            if power != b.power_state:
                repo.set_power(tx, b.enclosure, b.bay, power)

    if isinstance(choice, NoSpare):
        generation = f" {src.generation}" if same_generation else ""
        why = NoSpare(choice.rejected + unreadable).describe()
        raise StepFailed(
            f"no qualified spare in domain group {job.domain_group} for {source} "
            f"(model {src.model}{generation}): {why}. {stays_off} Designate a qualified spare "
            "(setSpare) and fail over again, or move the profile to a chosen bay (moveProfile)."
        )
    passed = "; ".join(f"{label}: {why}" for label, why in choice.passed_over + unreadable)
    detail = f"chose {choice.enclosure} bay {choice.bay}" + (
        f" (passed over {passed})" if passed else ""
    )
    return StepResult(
        "done",
        detail,
        refresh,
        {"target_enclosure": choice.enclosure, "target_bay": choice.bay},
    )


def _read_spares(
    ctx: StepContext, source: BayRef, spares: list[repo.BayRow], stays_off: str
) -> tuple[dict[BayRef, DeviceState], tuple[tuple[str, str], ...]]:
    """The source and the spares as the hardware reports them, in one read. A spare whose
    state cannot be read is passed over with the reason (one faulty management processor
    once failed every failover of its group); the source must be read."""
    bays = [BayRef(b.enclosure, b.bay) for b in spares]
    try:
        return ctx.driver.read([*bays, source]), ()
    except DeviceError:
        pass  # which bay failed is found one bay at a time
    try:
        states = {source: _read_one(ctx, source)}
    except DeviceError as exc:
        raise StepFailed(f"{exc.description} {stays_off}") from exc
    unreadable: list[tuple[str, str]] = []
    for bay in bays:
        try:
            states[bay] = _read_one(ctx, bay)
        except DeviceError as exc:
            unreadable.append((str(bay), f"its state cannot be read ({exc.description})"))
    return states, tuple(unreadable)


def spare_candidate(row: repo.BayRow, state: DeviceState) -> Candidate:
    """A bay of the group as `choose_spare` weighs it: the inventory's row and the device's
    state (read now by a job; the row's last known state for an event's spare check)."""
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
    with ctx.store.read_one() as tx:
        row = repo.bay(tx, target.enclosure, target.bay)
    if row is None or row.group != job.domain_group:
        raise StepFailed(f"{target} is not a bay of domain group {job.domain_group}.")
    if row.covered_by is not None:
        raise StepFailed(f"{target} is covered by the full-height blade in bay {row.covered_by}.")
    if row.profile not in (None, job.profile):
        raise StepFailed(f"{target} has profile {row.profile} assigned; choose a free bay.")
    source = _source(job)
    states = ctx.driver.read([target] if source is None else [source, target])
    state = states[target]
    source_has_server = source is not None and states[source].present
    if state.profile not in (None, job.profile):
        raise StepFailed(f"{target} has profile {state.profile} applied; choose a free bay.")
    if state.present and state.power is PowerState.ON and state.profile != job.profile:
        raise StepFailed(
            f"the server in {target} is powered on; power it off first (a profile is applied "
            "to a powered-off server only). Nothing was changed on the target."
        )
    if not state.present and job.power_on and source_has_server:
        # (A profile waiting in an empty bay, moved on to another: nothing runs or stops.)
        raise StepFailed(runs_nowhere(job.profile, str(target), str(source)))
    what = f"{state.model} {state.generation}".strip() if state.present else "no server present"

    def seen(tx: FencedTx) -> None:
        # The store learns what the device says (the inventory's view of the bay was as
        # old as its seeding): the later steps and a failover by name read it.
        repo.set_seen(tx, target.enclosure, target.bay, state.present, state.power.value)

    return StepResult("done", f"{target}: free ({what})", seen)


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
        try:
            if action is MoveAction.UNASSIGN_SOURCE and source is not None:
                ctx.driver.unassign_profile(source, job.profile, key)
            elif action is MoveAction.ASSIGN_TARGET:
                ctx.driver.assign_profile(target, job.profile, key)
        except DeviceError as exc:
            _stranded(ctx, job, source, target, exc.description)
            if action is MoveAction.UNASSIGN_SOURCE and source is not None:
                raise StepFailed(
                    f"{exc.description} Profile {job.profile} is still assigned to {source}, "
                    f"whose server stays powered off (step {Step.POWER_OFF_SOURCE.value}); "
                    "nothing was rolled back. Fix the cause, then ask again, or power the "
                    "source on by hand if it should run there."
                ) from exc
            raise
    after = ctx.driver.read(bays)
    if after[target].profile != job.profile or (
        source is not None and after[source].profile == job.profile
    ):
        _stranded(ctx, job, source, target, f"profile {job.profile} did not arrive on {target}.")
        raise StepFailed(f"profile {job.profile} did not arrive on {target}.")

    def effect(tx: FencedTx) -> None:
        host, ips = repo.move_profile(
            tx,
            job.profile,
            None if source is None else (source.enclosure, source.bay),
            (target.enclosure, target.bay),
        )
        _keep_names(tx, job, host, ips)

    origin = f" from {source}" if source is not None else ""
    done = ", ".join(a.value for a in actions) or "already in place"
    outcome = "done" if actions else "already"
    return StepResult(outcome, f"profile {job.profile}{origin} to {target}: {done}", effect)


def _keep_names(tx: FencedTx, job: Job, host: str | None, ips: tuple[str, ...]) -> None:
    """Record on the job the host name and IPs its profile took from the source bay: where
    a failover by name finds the profile meanwhile (`vcem.service.moved_hint`), and what
    discovery looks for on the target.

    The source had no names when an earlier job moved the profile there and discovery has
    not found it yet (a failover of a failover, or a move of a profile a failed move left
    on no bay): the names follow the profile from that job, whose own discovery (of a bay
    the profile left) would find nothing. Otherwise failover by host name pointed at the
    old bay."""
    if host is None and not ips:
        earlier = tx.fetchone(
            "SELECT id, rediscover_host, rediscover_ips FROM gm_jobs"
            " WHERE profile = %(p)s AND id <> %(id)s AND rediscovered = FALSE"
            " AND (rediscover_host IS NOT NULL OR rediscover_ips <> '[]')"
            " ORDER BY id DESC LIMIT 1",
            {"p": job.profile, "id": job.id},
        )
        if earlier is not None:
            host, ips = earlier[1], tuple(json.loads(earlier[2] or "[]"))
            tx.execute(
                "UPDATE gm_jobs SET rediscovered = TRUE WHERE id = %(id)s",
                {"id": int(earlier[0])},
            )
    tx.execute(
        "UPDATE gm_jobs SET rediscover_host = %(h)s, rediscover_ips = %(ips)s WHERE id = %(id)s",
        {"h": host, "ips": json.dumps(list(ips)), "id": job.id},
    )


def _stranded(ctx: StepContext, job: Job, source: BayRef | None, target: BayRef, why: str) -> None:
    """A move that failed half-way: when the profile is now on neither bay (taken off the
    source, not assigned to the target), say so, and have the store say so (it still named
    the source, and the administrator would look for the identity there)."""
    try:
        now = ctx.driver.read([target] if source is None else [source, target])
    except DeviceError:
        return  # where it is cannot be read: the reason of the failure is what we know
    if any(state.profile == job.profile for state in now.values()):
        return  # still where the store says, or arrived after all: the reason says enough

    def unassigned(tx: FencedTx) -> None:
        repo.unassign_profile(tx, job.profile)
        host: str | None = None
        ips: tuple[str, ...] = ()
        if source is not None:
            # Its names went with the profile, as a completed move's do (discovery finds
            # them again where the profile is placed): no event or by-name failover may
            # resolve to the empty source bay meanwhile. The job keeps them: a failover by
            # name says where the profile is, and the move that places it takes them on.
            host, ips = repo.clear_discovery(tx, source.enclosure, source.bay)
        _keep_names(tx, job, host, ips)

    origin = f"was taken off {source} and " if source is not None else ""
    raise StepFailed(
        f"{why} Profile {job.profile} {origin}is now assigned to no bay (the inventory says so "
        f"too). Nothing was rolled back. Fix the cause, then assign it where it should run: "
        f"vcemcli -move profile -profilename {job.profile} -targetenclosurename "
        f"{target.enclosure} -targetbayname {target.bay}",
        unassigned,
    )


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
    source = _source(job)
    left = (
        f"Profile {job.profile} is assigned to {target}, which stays powered off"
        + (f"; {source} is off and holds no profile" if source is not None else "")
        + f". Power {target} on from its Onboard Administrator or iLO to run the server there, "
        "or fail it over again to another spare."
    )
    try:
        ctx.driver.power_on(target, f"job {job.id} {Step.POWER_ON_TARGET.value}")
    except DeviceError as exc:
        raise StepFailed(f"{exc.description} {left}") from exc
    after = _read_one(ctx, target)
    if after.power is not PowerState.ON:
        raise StepFailed(f"{target} is still {after.power.value} after power-on. {left}")
    return StepResult("done", f"{target}: powered on", _power_effect(target, PowerState.ON))


def _schedule_rediscovery(ctx: StepContext, job: Job) -> StepResult:
    """ "HP Systems Insight Manager discovery is scheduled to be run on the spare server in ten
    minutes" (WP-NEW-6); `[vcem] rediscovery_delay_s` (default 600)."""
    target = _target(job)
    with ctx.store.read_one() as tx:
        row = repo.bay(tx, target.enclosure, target.bay)
    if row is not None and not row.server_present:
        # A profile left waiting in an empty bay (a move without power-on): no server to
        # discover. The job keeps the names (`_keep_names`) for the move that places it.
        return StepResult("skipped", f"no server in {target} to discover")
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
