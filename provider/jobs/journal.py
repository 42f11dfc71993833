"""The job tables: submit, claim, adopt, journal (intent → record), end, cancel, read.

Blocking store calls, made from worker threads. Every write is a fenced transaction of the
active (`RoleManager.fenced(what)`): a superseded node can neither claim nor record.
The SQL follows reference ha-jobs-style.md B.2: FIFO claim per domain group, the partial
unique index `gm_jobs_one_running` as the last word, `ON CONFLICT` for replayed intents.

`advance` is the one write of a running job: it claims, records, journals the next intent
and ends, in whatever combination the step driver (`provider.jobs.steps.drive`) needs, in a
single transaction. A failover thus commits four times instead of about eighteen; each commit
is a disk sync (SQLite synchronous=FULL) under the store's single write lock, so that count
is what bounds orchestration latency and throughput.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from provider.errors import NotFound, Refused
from provider.store import ConstraintViolation, FencedTx, Tx

from .model import JobState, JobType, Step, percent_complete, steps_for

__all__ = [
    "ClaimRefused",
    "Ending",
    "Job",
    "JobJournal",
    "JobRequest",
    "StepOutcome",
    "StepRecord",
]

Fenced = Callable[[str], AbstractContextManager[FencedTx]]

_COLUMNS = (
    "id, job_type, domain_group, state, requested_as, source_enclosure, source_bay,"
    " target_enclosure, target_bay, profile, power_on, current_step, steps_done, error_step,"
    " error_code, error_description, owner, epoch, submitted_at, started_at, changed_at,"
    " finished_at, rediscover_at, rediscovered"
)


class ClaimRefused(Exception):
    """Raised by a step's effect in the claiming transaction when the job may not start after
    all, because what its act read before the transaction has changed since (its domain group
    entered maintenance). The transaction rolls back, the job stays queued, as if it had
    never been claimed, and the next claim checks again."""


@dataclass(frozen=True)
class JobRequest:
    job_type: JobType
    domain_group: str
    requested_as: str
    source_enclosure: str | None
    source_bay: str | None
    profile: str
    owner: str
    target_enclosure: str | None = None
    target_bay: str | None = None
    power_on: bool = True


@dataclass(frozen=True)
class Job:
    id: int
    job_type: JobType
    domain_group: str
    state: JobState
    requested_as: str
    source_enclosure: str | None
    source_bay: str | None
    target_enclosure: str | None
    target_bay: str | None
    profile: str
    power_on: bool
    current_step: str
    steps_done: tuple[str, ...]
    error_step: str | None
    error_code: int
    error_description: str
    owner: str
    epoch: int | None
    submitted_at: float
    started_at: float | None
    changed_at: float
    finished_at: float | None
    rediscover_at: float | None
    rediscovered: bool

    @property
    def percent(self) -> int:
        if self.state is JobState.COMPLETED:
            return 100
        return percent_complete(self.job_type, len(self.steps_done))


@dataclass(frozen=True)
class StepOutcome:
    """A step's outcome to journal, and its effects on the store (same transaction)."""

    step: Step
    outcome: str  # done | already | skipped
    detail: str
    effects: Callable[[FencedTx], None] | None = None
    job_changes: Mapping[str, Any] = field(default_factory=dict)  # gm_jobs column -> value


@dataclass(frozen=True)
class Ending:
    """How a job ends: Completed, or Exception at `failed_step` because of `reason`."""

    state: JobState
    unlock: Callable[[FencedTx], None]  # the group's lock goes in the same transaction
    failed_step: Step | None = None
    reason: str = ""


@dataclass(frozen=True)
class StepRecord:
    step: Step
    outcome: str | None  # None: intent written, no outcome yet (a crash or takeover)
    detail: str
    attempts: int


def _job(row: Any) -> Job:
    return Job(
        id=int(row[0]),
        job_type=JobType(row[1]),
        domain_group=str(row[2]),
        state=JobState(row[3]),
        requested_as=str(row[4]),
        source_enclosure=row[5],
        source_bay=row[6],
        target_enclosure=row[7],
        target_bay=row[8],
        profile=str(row[9] or ""),
        power_on=bool(row[10]),
        current_step=str(row[11]),
        steps_done=tuple(json.loads(row[12])),
        error_step=row[13],
        error_code=int(row[14]),
        error_description=str(row[15]),
        owner=str(row[16]),
        epoch=None if row[17] is None else int(row[17]),
        submitted_at=float(row[18]),
        started_at=None if row[19] is None else float(row[19]),
        changed_at=float(row[20]),
        finished_at=None if row[21] is None else float(row[21]),
        rediscover_at=None if row[22] is None else float(row[22]),
        rediscovered=bool(row[23]),
    )


class JobJournal:
    def __init__(self, store: Any, fenced: Fenced, clock: Callable[[], float] = time.time):
        self.store = store
        self.fenced = fenced
        self.clock = clock

    # -- reads ---------------------------------------------------------------------------

    def get(self, job_id: int, tx: Tx | None = None) -> Job:
        if tx is None:
            with self.store.read_one() as rtx:  # one statement: no BEGIN/COMMIT
                return self.get(job_id, rtx)
        row = tx.fetchone(f"SELECT {_COLUMNS} FROM gm_jobs WHERE id = %(id)s", {"id": job_id})
        if row is None:
            raise NotFound(f"No job {job_id}.")
        return _job(row)

    def page(self, after: int = 0, limit: int = 500) -> list[Job]:
        with self.store.read_one() as tx:
            rows = tx.fetchall(
                f"SELECT {_COLUMNS} FROM gm_jobs WHERE id > %(after)s ORDER BY id LIMIT %(n)s",
                {"after": after, "n": limit},
            )
        return [_job(r) for r in rows]

    def iterate(self, size: int = 500) -> Iterator[Job]:
        """All jobs in order, a page per read transaction (never one open across yields)."""
        after = 0
        while True:
            jobs = self.page(after, size)
            yield from jobs
            if len(jobs) < size:
                return
            after = jobs[-1].id

    def journal(self, job_id: int, tx: Tx | None = None) -> dict[Step, StepRecord]:
        if tx is None:
            with self.store.read_one() as rtx:
                return self.journal(job_id, rtx)
        rows = tx.fetchall(
            "SELECT step, outcome, detail, attempts FROM gm_job_steps WHERE job_id = %(id)s",
            {"id": job_id},
        )
        return {Step(s): StepRecord(Step(s), o, str(d), int(a)) for s, o, d, a in rows}

    def load(self, job_id: int) -> tuple[Job, dict[Step, StepRecord]]:
        """The job and its journal, read in one transaction."""
        with self.store.read() as tx:
            return self.get(job_id, tx), self.journal(job_id, tx)

    def active_job_ids(self) -> list[int]:
        with self.store.read_one() as tx:
            rows = tx.fetchall(
                "SELECT id FROM gm_jobs WHERE state IN ('starting', 'running') ORDER BY id"
            )
        return [int(r[0]) for r in rows]

    # -- writes --------------------------------------------------------------------------

    def submit(self, request: JobRequest, tx: FencedTx) -> int:
        now = self.clock()
        job_id = tx.scalar(
            "INSERT INTO gm_jobs (job_type, domain_group, state, requested_as, source_enclosure,"
            " source_bay, target_enclosure, target_bay, profile, power_on, owner, submitted_at,"
            " changed_at) VALUES (%(type)s, %(group)s, 'queued', %(req)s, %(senc)s, %(sbay)s,"
            " %(tenc)s, %(tbay)s, %(profile)s, %(power_on)s, %(owner)s, %(now)s, %(now)s)"
            " RETURNING id",
            {
                "type": request.job_type.value,
                "group": request.domain_group,
                "req": request.requested_as,
                "senc": request.source_enclosure,
                "sbay": request.source_bay,
                "tenc": request.target_enclosure,
                "tbay": request.target_bay,
                "profile": request.profile,
                "power_on": request.power_on,
                "owner": request.owner,
                "now": now,
            },
        )
        tx.audit(f"submitted {request.job_type.value} job {job_id} ({request.requested_as})")
        return int(job_id)

    def claimable(self) -> list[int]:
        """The oldest queued job of every domain group that has none running (FIFO per group;
        groups run concurrently). A read: `advance(..., claim=True)` claims each one in the
        transaction that also records its first steps, and checks these rules again there."""
        with self.store.read_one() as tx:
            rows = tx.fetchall(
                "SELECT MIN(j.id) FROM gm_jobs j WHERE j.state = 'queued'"
                " AND NOT EXISTS (SELECT 1 FROM gm_jobs r WHERE r.domain_group ="
                " j.domain_group AND r.state IN ('starting', 'running'))"
                " GROUP BY j.domain_group"
            )
        return sorted(int(r[0]) for r in rows)

    def adopt(self) -> list[int]:
        """Recovery after a restart or takeover: make every unfinished job ours (B.2 item 5)."""
        with self.fenced("recover failover and move jobs") as tx:
            rows = tx.fetchall(
                "SELECT id FROM gm_jobs WHERE state IN ('starting', 'running') ORDER BY id"
            )
            ids = [int(r[0]) for r in rows]
            if ids:
                tx.execute(
                    "UPDATE gm_jobs SET epoch = %(epoch)s WHERE state IN ('starting', 'running')",
                    {"epoch": tx.epoch},
                )
                tx.audit(f"adopted jobs {', '.join(map(str, ids))}")
        return ids

    def advance(
        self,
        job: Job,
        outcomes: Sequence[StepOutcome] = (),
        *,
        claim: bool = False,
        intent: Step | None = None,
        ending: Ending | None = None,
    ) -> Job | None:
        """Move a job on in one fenced transaction: claim it (if `claim`), record `outcomes`
        in order, each with its effects on the store, then journal the `intent` of the next
        device step or apply the `ending` (which unlocks the group). All of it commits
        together or not at all, so the journal never says more or less than the store did.

        Returns the job as committed; None when `claim` was asked and the job may not start
        (cancelled meanwhile, its group has a running or an older queued job, or an effect
        refused the claim: `ClaimRefused`). A job that has ended already is returned
        unchanged (a replay after a lost reply)."""
        try:
            with self.fenced("run failover and move jobs") as tx:
                now = self.clock()
                current = self._claim(tx, job, now) if claim else self.get(job.id, tx)
                if current is None:
                    return None
                if current.state.finished:
                    return current
                steps_done = list(current.steps_done)
                changes: dict[str, Any] = {}
                for outcome in outcomes:
                    if self._record(tx, job, outcome, now):
                        if outcome.effects is not None:
                            outcome.effects(tx)
                        steps_done.append(outcome.step.value)
                        changes.update(outcome.job_changes)
                    # else: recorded before this attempt, with its effects, by an earlier one
                if ending is not None:
                    return self._end(tx, job, ending, steps_done, changes, now)
                if intent is not None:
                    self._intent(tx, job, intent, now)
                last = intent or (outcomes[-1].step if outcomes else None)
                sets = {
                    "state": JobState.RUNNING.value,
                    "steps_done": json.dumps(steps_done),
                    # TimeOfLastStateChange (CIM_ConcreteJob): when JobState last changed,
                    # not every step of a running job.
                    **({} if current.state is JobState.RUNNING else {"changed_at": now}),
                    **({"current_step": last.value} if last is not None else {}),
                    **changes,
                }
                # The job as committed comes back from the UPDATE itself (RETURNING).
                return _update_job(tx, job.id, sets)
        except (ConstraintViolation, ClaimRefused):
            if claim:
                # gm_jobs_one_running refused it (the group is busy after all), or the
                # group changed under the checks made before this transaction.
                return None
            raise

    def _claim(self, tx: FencedTx, job: Job, now: float) -> Job | None:
        """Make a queued job ours if the rules of `claimable` still hold (ha-jobs-style.md
        B.2 item 2), returning it as claimed; None if it may not start. The partial unique
        index refuses a second running job of the group even if this statement were wrong
        (DESIGN)."""
        row = tx.fetchone(
            "UPDATE gm_jobs SET state = 'starting', epoch = %(epoch)s, started_at = %(now)s,"
            " changed_at = %(now)s WHERE id = %(id)s AND state = 'queued'"
            " AND NOT EXISTS (SELECT 1 FROM gm_jobs r WHERE r.domain_group = %(group)s"
            " AND r.state IN ('starting', 'running'))"
            " AND NOT EXISTS (SELECT 1 FROM gm_jobs o WHERE o.domain_group = %(group)s"
            " AND o.state = 'queued' AND o.id < %(id)s)"
            f" RETURNING {_COLUMNS}",
            {"epoch": tx.epoch, "now": now, "id": job.id, "group": job.domain_group},
        )
        return None if row is None else _job(row)

    def _intent(self, tx: FencedTx, job: Job, step: Step, now: float) -> None:
        """Journal the intent to run `step` (again, after a crash: attempts + 1)."""
        tx.execute(
            "INSERT INTO gm_job_steps (job_id, step, seq, epoch, intent_at)"
            " VALUES (%(id)s, %(step)s, %(seq)s, %(epoch)s, %(now)s)"
            " ON CONFLICT (job_id, step) DO UPDATE SET attempts = gm_job_steps.attempts + 1,"
            " epoch = excluded.epoch, intent_at = excluded.intent_at",
            {
                "id": job.id,
                "step": step.value,
                "seq": steps_for(job.job_type).index(step),
                "epoch": tx.epoch,
                "now": now,
            },
        )

    def _record(self, tx: FencedTx, job: Job, outcome: StepOutcome, now: float) -> bool:
        """Journal a step's outcome: completes the intent row of a device step, or writes
        intent and outcome at once for a step that touches no device. False if the step had
        an outcome already (a replay), in which case its effects were applied with it."""
        written = tx.execute(
            "INSERT INTO gm_job_steps (job_id, step, seq, epoch, intent_at, outcome, detail,"
            " recorded_at) VALUES (%(id)s, %(step)s, %(seq)s, %(epoch)s, %(now)s, %(outcome)s,"
            " %(detail)s, %(now)s) ON CONFLICT (job_id, step) DO UPDATE SET"
            " outcome = excluded.outcome, detail = excluded.detail,"
            " recorded_at = excluded.recorded_at WHERE gm_job_steps.outcome IS NULL",
            {
                "id": job.id,
                "step": outcome.step.value,
                "seq": steps_for(job.job_type).index(outcome.step),
                "epoch": tx.epoch,
                "now": now,
                "outcome": outcome.outcome,
                "detail": outcome.detail,
            },
        )
        return written == 1

    def _end(
        self,
        tx: FencedTx,
        job: Job,
        ending: Ending,
        steps_done: list[str],
        changes: Mapping[str, Any],
        now: float,
    ) -> Job:
        """End the job and unlock its group in the same transaction: the group always
        unlocks (exit on error, seed 002). Returns the job as ended."""
        ending.unlock(tx)
        failed = ending.failed_step
        if failed is not None:
            tx.execute(
                "INSERT INTO gm_job_steps (job_id, step, seq, epoch, intent_at, outcome,"
                " detail, recorded_at) VALUES (%(id)s, %(step)s, %(seq)s, %(epoch)s, %(now)s,"
                " 'failed', %(reason)s, %(now)s) ON CONFLICT (job_id, step) DO UPDATE SET"
                " outcome = 'failed', detail = excluded.detail,"
                " recorded_at = excluded.recorded_at",
                {
                    "id": job.id,
                    "step": failed.value,
                    "seq": steps_for(job.job_type).index(failed),
                    "epoch": tx.epoch,
                    "now": now,
                    "reason": ending.reason,
                },
            )
        if ending.state is JobState.COMPLETED:
            steps_done = [*steps_done, Step.UNLOCK.value]
            tx.execute(
                "INSERT INTO gm_job_steps (job_id, step, seq, epoch, intent_at, outcome,"
                " recorded_at) VALUES (%(id)s, 'unlock', %(seq)s, %(epoch)s, %(now)s, 'done',"
                " %(now)s) ON CONFLICT (job_id, step) DO NOTHING",
                {
                    "id": job.id,
                    "seq": len(steps_for(job.job_type)) - 1,
                    "epoch": tx.epoch,
                    "now": now,
                },
            )
        ended = _update_job(
            tx,
            job.id,
            {
                **changes,
                "state": ending.state.value,
                "error_step": None if failed is None else failed.value,
                "error_code": 0 if failed is None else 1,
                "error_description": ending.reason,
                "steps_done": json.dumps(steps_done),
                "current_step": "" if failed is None else failed.value,
                "changed_at": now,
                "finished_at": now,
            },
        )
        reason = f": {ending.reason}" if ending.reason else ""
        tx.audit(f"job {job.id} ended {ending.state.value}{reason}")
        return ended

    def cancel(self, job_id: int, user: str) -> Job:
        """Terminate a queued job; running and finished jobs cannot be cancelled."""
        with self.fenced("cancel a job") as tx:
            job = self.get(job_id, tx)
            if job.state is not JobState.QUEUED:
                raise Refused(_not_cancellable(job))
            now = self.clock()
            # The state is checked again by the UPDATE itself: on PostgreSQL (READ COMMITTED) a
            # claim can commit between the read above and this write, which then waits for the
            # claim's row lock and changes nothing. Only a row changed here is a cancellation.
            row = tx.fetchone(
                "UPDATE gm_jobs SET state = 'terminated', changed_at = %(now)s,"
                " finished_at = %(now)s, error_description = %(why)s WHERE id = %(id)s"
                f" AND state = 'queued' RETURNING {_COLUMNS}",
                {"now": now, "why": f"Cancelled by {user} while queued.", "id": job_id},
            )
            if row is None:
                raise Refused(_not_cancellable(self.get(job_id, tx)))
            tx.audit(f"cancelled job {job_id} for {user}")
            return _job(row)

    def due_rediscoveries(self, now: float) -> list[Job]:
        with self.store.read_one() as tx:
            rows = tx.fetchall(
                f"SELECT {_COLUMNS} FROM gm_jobs WHERE rediscover_at IS NOT NULL"
                " AND rediscover_at <= %(now)s AND rediscovered = FALSE"
                " AND state = 'completed' ORDER BY id",
                {"now": now},
            )
        return [_job(r) for r in rows]


def _update_job(tx: FencedTx, job_id: int, sets: Mapping[str, Any]) -> Job:
    """Change the job's columns and return it as changed (RETURNING: no second read)."""
    # Column names come from this module and from StepOutcome.job_changes (code, never input).
    assignments = ", ".join(f"{column} = %(c_{column})s" for column in sets)
    params = {f"c_{column}": value for column, value in sets.items()}
    row = tx.fetchone(
        f"UPDATE gm_jobs SET {assignments} WHERE id = %(id)s RETURNING {_COLUMNS}",
        {**params, "id": job_id},
    )
    if row is None:
        raise NotFound(f"No job {job_id}.")
    return _job(row)


def _not_cancellable(job: Job) -> str:
    if job.state in (JobState.STARTING, JobState.RUNNING):
        return (
            f"Job {job.id} is running (step {job.current_step or 'starting'}) and cannot be "
            "cancelled: its steps act on hardware and are never rolled back silently. "
            "Wait for it to end (vcemcli -show job -jobid "
            f"{job.id})."
        )
    return f"Job {job.id} has already ended ({job.state.value}); there is nothing to cancel."
