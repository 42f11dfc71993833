"""The durable job runner: asyncio tasks over blocking steps, one running job per group.

While this node is active, a loop finds the oldest queued job of every domain group that has
none running (FIFO per group; groups run concurrently) and drives each whole job in one
worker thread (`provider.jobs.steps.drive`, which claims the job in its first transaction).
A submit starts its job at once in a worker thread, and a job's thread runs its group's next
job itself when it ends: neither waits for the asyncio loop, which may be busy rendering a
large enumeration, nor hands the job on from thread to thread. The loop itself does
recovery, a fallback poll, and rediscovery. Each time the node becomes active under a new
epoch (start, takeover), it first *adopts* every job left running by any earlier epoch and
resumes it at the first step without a recorded outcome; that step reads the device before
acting, so a crash never repeats a power action (SPEC 4.1).

Exit on error (seed 002 "Exit on error"): a step that fails ends the job in Exception with the
step and the reason, and the same transaction unlocks the group; nothing is rolled back. If
this node loses its role mid-job (NotActive / Fenced), the task stops without recording: the
new active adopts the job.

Crash-test hook: `[simulator] crash_at = "<step>[:intent|act|record]"` kills this process
with SIGKILL at that point of the first job that reaches it (once per state directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from provider.drivers.base import BayRef
from provider.drivers.simulator import crash_once
from provider.errors import DeviceError, Fenced, NotActive, StoreError
from provider.roles import Role, RoleChange
from provider.store import FencedTx
from provider.vcem import repository as repo

from .journal import Ending, Job, JobJournal
from .model import JobState, Step
from .steps import StepContext, drive

__all__ = ["JobRunner", "crash_hook"]

# Discovery that finds nothing is tried again every minute, for an hour after the job.
REDISCOVERY_RETRY = 60.0
REDISCOVERY_PATIENCE = 3600.0

log = logging.getLogger("gm.jobs")

T = TypeVar("T")

_RETRY_DELAY = 1.0  # after a store error (busy, connection lost), retry the same step


def crash_hook(spec: str | None, state_dir: Path) -> Callable[[Step, str], None]:
    """The `crash_at` hook: "<step>" means after its record, "<step>:<phase>" at that phase."""
    if not spec:
        return lambda step, phase: None
    step_name, _, phase_name = spec.partition(":")
    if phase_name not in ("", "intent", "act", "record"):
        raise ValueError(f"unknown phase {phase_name!r}")
    wanted = (Step(step_name), phase_name or "record")

    def hook(step: Step, phase: str) -> None:
        if (step, phase) == wanted:
            crash_once(state_dir, spec)

    return hook


class JobRunner:
    def __init__(
        self,
        journal: JobJournal,
        context: StepContext,
        roles: Any,  # provider.roles.RoleManager
        workers: int = 16,
        poll_interval: float = 0.5,
        on_active: Callable[[], object] | None = None,
    ) -> None:
        self.journal = journal
        self.context = context
        self.roles = roles
        self.poll_interval = poll_interval
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="gm-jobs")
        self._running: set[int] = set()  # started jobs, queued in the pool or running
        self._lock = threading.Lock()  # guards _running
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recovered_epoch: int | None = None
        self._on_active = on_active  # e.g. seed the inventory, before any job runs
        self._stopping = threading.Event()  # asked by job threads between transactions
        # stepDown / shutdown: start no step, let the ones acting end (pause, resume).
        self._paused = threading.Event()
        self._executing: set[int] = set()  # jobs whose thread is inside drive() now
        self._readopt = False  # after a pause: start the running jobs that have no thread
        self._idle = threading.Condition(self._lock)  # notified when _executing shrinks
        self._rediscover_after = 0.0  # monotonic; rediscovery is looked for on the poll only

    # -- wiring --------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for work now (after a submit); callable from any thread.

        Once this epoch's recovery is done, the claimable jobs are started straight from a
        worker thread: the event loop may be busy for a long while (it renders whole
        enumerations between two awaits), and a job need not wait for it."""
        if self._recovered_epoch is not None and self._recovered_epoch == self._epoch():
            self._submit(self._run_claimable)
        elif self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _epoch(self) -> int | None:
        role, epoch, _ = self.roles.state()  # read together: no mix of two states
        return epoch if role is Role.ACTIVE else None

    def _on_role_change(self, change: RoleChange) -> None:
        if change.new is Role.ACTIVE and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)  # recovery first, on the loop

    def _held(self) -> bool:
        """Asked by job threads between transactions: stop here (shutdown, or a pause)."""
        return self._stopping.is_set() or self._paused.is_set()

    # -- pausing for a step-down or a shutdown (provider.roles.Quiescer) -------------------

    def pause(self, timeout: float) -> bool:
        """Start no job and no step; wait up to `timeout` s for the steps under way to be
        recorded. True once no job thread is inside a job, False if one still is (its
        device action has not returned). The jobs stay running in the store: the node that
        holds the lease next adopts them at their first unrecorded step."""
        self._paused.set()
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._executing:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning(
                        "jobs %s still acting after %g s",
                        ", ".join(map(str, sorted(self._executing))),
                        timeout,
                    )
                    return False
                self._idle.wait(left)
        return True

    def acting(self) -> str:
        """The jobs whose device action has not returned: where to look (`pause`)."""
        with self._idle:
            jobs = sorted(self._executing)
        return ", ".join(f"job {j}: vcemcli -show job -jobid {j}" for j in jobs)

    def resume(self) -> None:
        """Run again. The jobs a pause stopped between two steps are still running in the
        store with no thread: the next round starts them again (`_readopt`)."""
        self._paused.clear()  # first: a round that sees the flag must be able to start jobs
        self._readopt = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
                self._loop.call_soon_threadsafe(self._wake.set)

    def _submit(self, fn: Callable[..., object], *args: Any) -> None:
        if self._stopping.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the pool has shut down: we are stopping
            self._executor.submit(fn, *args)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # -- the loop: recovery, polling, rediscovery ------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.roles.add_listener(self._on_role_change)
        self.roles.add_quiescer(self)
        try:
            while True:
                if self.roles.role is Role.ACTIVE:
                    await self._round()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                self._wake.clear()
        finally:
            self._stopping.set()
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _round(self) -> None:
        try:
            epoch = self.roles.epoch
            if self._recovered_epoch != epoch:
                if self._on_active is not None:
                    await self._in_thread(self._on_active)
                # Start or takeover: adopt what earlier epochs left running (B.2 item 5).
                adopted = await self._in_thread(self.journal.adopt)
                wait = self.roles.preempted_for()
                if adopted and wait > 0:
                    # Control was taken by force from a live active: a device step of its
                    # may still be acting. Its jobs go on once that node's lease would have
                    # lapsed; then the step reads the device before acting (no repeat).
                    log.warning(
                        "took control from a running active: jobs %s resume in %.0f s, when "
                        "its lease would have lapsed",
                        ", ".join(map(str, adopted)),
                        wait,
                    )
                    assert self._loop is not None
                    self._loop.call_later(wait, self._start_adopted, adopted, epoch)
                else:
                    self._start_adopted(adopted, epoch)
                self._recovered_epoch = epoch
                self._readopt = False
            elif self._readopt and not self._held():
                running = await self._in_thread(self.journal.active_job_ids)
                self._readopt = False  # only once read: a store error retries next round
                for job_id in running:
                    self._start(job_id)  # those still in a thread of ours are skipped
            # The fallback: submits and job ends start the next jobs themselves (wake).
            await self._in_thread(self._start_claimable)
            # Rediscovery is due minutes after a job: looked for at the poll interval.
            if time.monotonic() >= self._rediscover_after:
                self._rediscover_after = time.monotonic() + self.poll_interval
                await self._rediscover()
        except (NotActive, Fenced):
            pass  # demoted meanwhile; the role manager has switched to standby
        except StoreError as exc:
            log.warning("job runner: store error, retrying: %s", exc.description)

    # -- starting jobs (any thread) --------------------------------------------------------

    def _start_claimable(self) -> None:
        """Start the oldest queued job of every group that has none running, each in a
        worker thread. Each job claims itself in its first transaction
        (provider.jobs.steps.drive)."""
        for job_id in self._take_claimable():
            self._submit(self._run_jobs, job_id)

    def _take_claimable(self) -> list[int]:
        """The claimable jobs not started yet, now marked as started (the caller runs them)."""
        if self.roles.role is not Role.ACTIVE or self._held():
            return []
        try:
            claimable = self.journal.claimable()
        except StoreError as exc:
            log.warning("job runner: store error, the next poll retries: %s", exc.description)
            return []
        with self._lock:
            fresh = [job_id for job_id in claimable if job_id not in self._running]
            self._running.update(fresh)
        return fresh

    def _start_adopted(self, job_ids: list[int], epoch: int) -> None:
        if self._epoch() != epoch:
            return  # no longer active under that epoch: the next holder adopts them
        for job_id in job_ids:
            log.info("recovering job %d under epoch %d", job_id, epoch)
            self._start(job_id)

    def _start(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._running:
                return
            self._running.add(job_id)
        self._submit(self._run_jobs, job_id)

    # -- jobs (a worker thread) ------------------------------------------------------------

    def _run_claimable(self) -> None:
        """After a submit, in a worker thread: run a claimable job in this thread (others
        in threads of their own), so that a submitted job starts after one thread hop, not
        two; every hop is a thread that must wake and win the interpreter back from an
        event loop busy rendering enumerations."""
        first = self._hand_out(self._take_claimable())
        if first is not None:
            self._run_jobs(first)

    def _run_jobs(self, job_id: int) -> None:
        """Job `job_id`, then, in the same thread, a job its end made claimable (the next
        queued job of its group), and so on; other claimable jobs go to threads of their own."""
        next_id: int | None = job_id
        while next_id is not None:
            self._run_job(next_id)
            if self._held():
                return
            next_id = self._hand_out(self._take_claimable())

    def _hand_out(self, fresh: list[int]) -> int | None:
        """Start all but the first of these jobs in threads of their own; the first is the
        caller's to run in its own thread."""
        for job_id in fresh[1:]:
            self._submit(self._run_jobs, job_id)
        return fresh[0] if fresh else None

    def _run_job(self, job_id: int) -> None:
        """The whole job in this worker thread (started: in `_running` until it ends)."""
        with self._lock:
            if self._held():  # paused or stopping since it was handed out: not started
                self._running.discard(job_id)
                return
            self._executing.add(job_id)
        try:
            while not self._held():
                try:
                    drive(self.context, job_id, self._held)
                    break
                except (NotActive, Fenced):
                    log.warning("job %d stops: this node is no longer active", job_id)
                    return
                except StoreError as exc:
                    log.warning("job %d: store error, retrying: %s", job_id, exc.description)
                    self._stopping.wait(_RETRY_DELAY)
                    if self.roles.role is not Role.ACTIVE:
                        return
                except Exception as exc:
                    # drive() ends the job itself when a step fails; this is a fault of ours.
                    log.exception("job %d failed unexpectedly", job_id)
                    self._fail(job_id, f"internal error in gm-provider: {exc!r}")
                    break
        finally:
            with self._lock:
                self._running.discard(job_id)
                self._executing.discard(job_id)
                self._idle.notify_all()

    def _fail(self, job_id: int, reason: str) -> None:
        try:
            job = self.journal.get(job_id)
            step = Step(job.current_step) if job.current_step else Step.CHECK_DOMAINS

            def unlock(tx: FencedTx) -> None:
                repo.set_lock(tx, job.domain_group, None)

            text = f"Step {step.value} failed: {reason}"
            self.journal.advance(job, ending=Ending(JobState.EXCEPTION, unlock, step, text))
        except (NotActive, Fenced, StoreError) as exc:
            log.warning("job %d: could not record its failure (%s); recovery will", job_id, exc)

    # -- rediscovery ---------------------------------------------------------------------

    async def _rediscover(self) -> None:
        """Discovery of the target some minutes after the job (reference §1.6)."""
        due = await self._in_thread(self.journal.due_rediscoveries, self.journal.clock())
        for job in due:
            await self._in_thread(self._rediscover_one, job)

    def _rediscover_one(self, job: Job) -> None:
        if job.target_enclosure is None or job.target_bay is None:
            return
        target = BayRef(job.target_enclosure, job.target_bay)
        try:
            driver = self.context.driver
            found = self.context.deadline(f"Discovery of {target}", lambda: driver.discover(target))
        except DeviceError as exc:
            log.warning("rediscovery of %s for job %d failed: %s", target, job.id, exc)
            found = None
        now = self.journal.clock()
        with self.roles.fenced("rediscover servers") as tx:
            if found is not None and (found.host or found.ips):
                repo.set_discovery(tx, target.enclosure, target.bay, found.host, found.ips)
            elif job.finished_at is not None and now - job.finished_at < REDISCOVERY_PATIENCE:
                # Not found yet (the OS still booting, or discovery failed): again in a
                # minute. Marked done, the server's names were lost for good, and failover
                # by host name answered a bare "not found".
                tx.execute(
                    "UPDATE gm_jobs SET rediscover_at = %(at)s WHERE id = %(id)s",
                    {"at": now + REDISCOVERY_RETRY, "id": job.id},
                )
                return
            else:
                log.warning(
                    "rediscovery of %s for job %d found no host name or address in %.0f "
                    "minutes; fail the server over by enclosure and bay",
                    target,
                    job.id,
                    REDISCOVERY_PATIENCE / 60,
                )
            tx.execute("UPDATE gm_jobs SET rediscovered = TRUE WHERE id = %(id)s", {"id": job.id})
