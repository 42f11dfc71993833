"""A domain group's changes and a job's start take turns, on both backends.

A job checks its group (check_domains: not in maintenance) before its claiming transaction,
and on PostgreSQL writes run READ COMMITTED: without a lock, maintenance could begin between
the check and the claim, or a setMaintenance could read "no running job" while a claim is
committing, and a failover would run in a group under maintenance."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from provider.errors import Refused
from provider.jobs import JobState, Step
from provider.vcem import repository as repo
from provider.vcem.service import FailoverSource
from tests.vcem.direct import vcem_stack

pytestmark = pytest.mark.timeout(60)

HOST = "web01.example.com"


def test_maintenance_begun_after_a_jobs_check_stops_its_start(
    tmp_path: Path, store_url: str
) -> None:
    """Maintenance starts after check_domains read the group, before the claim commits: the
    claim is refused, and the job ends in Exception for the maintenance without touching the
    source server."""

    async def main() -> None:
        async with vcem_stack(tmp_path, store_url=store_url) as stack:
            with stack.store.read() as tx:
                bay = repo.bay_by_host(tx, HOST)
            assert bay is not None
            fired = threading.Event()

            def maintenance_meanwhile(step: Step, phase: str) -> None:
                if (step, phase) == (Step.CHECK_DOMAINS, "act") and not fired.is_set():
                    fired.set()
                    stack.service.set_maintenance(bay.group, "start", "admin")

            stack.runner.context.crash = maintenance_meanwhile
            job_id = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host=HOST), "t"
            )
            job = await stack.wait(job_id)
            assert fired.is_set()
            assert job.state is JobState.EXCEPTION
            assert job.error_step == Step.CHECK_DOMAINS.value
            assert "maintenance" in (job.error_description or "")
            assert stack.sim(bay.enclosure, bay.bay)["power_offs"] == 0
            with stack.store.read() as tx:
                group = repo.group(tx, bay.group)
            assert group is not None and group.maintenance and group.locked_by_job is None

    asyncio.run(main())


@pytest.mark.postgres
@pytest.mark.parametrize("change", ["setMaintenance", "setSpare"])
def test_a_group_change_waits_for_a_claim_and_then_refuses(
    tmp_path: Path, postgres_url: str, change: str
) -> None:
    """PostgreSQL: setMaintenance or setSpare asked while a job's claiming transaction holds
    the group waits for it to commit, then sees the running job and refuses."""

    async def main() -> None:
        async with vcem_stack(tmp_path, store_url=postgres_url, start_runner=False) as stack:
            with stack.store.read() as tx:
                bay = repo.bay_by_host(tx, HOST)
            assert bay is not None
            job_id = stack.service.submit_failover(FailoverSource(host=HOST), "t")
            claimed = threading.Event()
            outcome: list[BaseException | None] = []
            order: list[str] = []

            def claim_slowly() -> None:
                with stack.roles.fenced("claim in a test") as tx:
                    tx.execute(
                        "UPDATE gm_jobs SET state = 'starting' WHERE id = %(id)s", {"id": job_id}
                    )
                    assert repo.take_lock(tx, bay.group, job_id)
                    claimed.set()
                    time.sleep(0.5)  # the change is asked meanwhile
                order.append("claim committed")

            with stack.store.read() as tx:
                spare = next(b for b in repo.bays_of_group(tx, bay.group) if b.is_spare)

            def set_maintenance() -> None:
                try:
                    if change == "setMaintenance":
                        stack.service.set_maintenance(bay.group, "start", "admin")
                    else:
                        stack.service.set_spare(spare.enclosure, spare.bay, False, "admin")
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)
                order.append("change answered")

            claimer = threading.Thread(target=claim_slowly)
            claimer.start()
            assert claimed.wait(10)
            setter = threading.Thread(target=set_maintenance)
            setter.start()
            setter.join(20)
            claimer.join(20)
            assert order == ["claim committed", "change answered"]  # it waited for the claim
            assert len(outcome) == 1 and isinstance(outcome[0], Refused), outcome
            assert f"locked by job {job_id}" in str(outcome[0])
            with stack.store.read() as tx:
                group = repo.group(tx, bay.group)
                still = repo.bay(tx, spare.enclosure, spare.bay)
            assert group is not None and not group.maintenance
            assert still is not None and still.is_spare

    asyncio.run(main())


@pytest.mark.postgres
def test_a_cancel_that_meets_a_claim_is_refused(tmp_path: Path, postgres_url: str) -> None:
    """PostgreSQL: cancelJob read 'queued', a claim committed meanwhile, and its UPDATE (which
    waited for the claim's row lock) changed nothing; it still answered "cancelled", and the
    job ran. Now the cancel is refused as for a running job."""

    async def main() -> None:
        async with vcem_stack(tmp_path, store_url=postgres_url, start_runner=False) as stack:
            job_id = stack.service.submit_failover(FailoverSource(host=HOST), "t")
            claiming = threading.Event()
            release = threading.Event()
            outcome: list[BaseException | object] = []

            def claim_slowly() -> None:
                with stack.roles.fenced("claim in a test") as tx:
                    tx.execute(
                        "UPDATE gm_jobs SET state = 'starting' WHERE id = %(id)s", {"id": job_id}
                    )
                    claiming.set()
                    release.wait(10)

            def cancel() -> None:
                try:
                    outcome.append(stack.service.cancel(job_id, "admin"))
                except BaseException as exc:
                    outcome.append(exc)

            claimer = threading.Thread(target=claim_slowly)
            claimer.start()
            assert claiming.wait(10)
            canceller = threading.Thread(target=cancel)
            canceller.start()
            time.sleep(0.5)  # the cancel has read 'queued' and waits for the claim's row lock
            release.set()
            claimer.join(20)
            canceller.join(20)
            assert len(outcome) == 1 and isinstance(outcome[0], Refused), outcome
            assert "cannot be cancelled" in str(outcome[0])
            with stack.store.read() as tx:
                state = tx.scalar("SELECT state FROM gm_jobs WHERE id = %(id)s", {"id": job_id})
            assert state == "starting"  # the claim's, not the cancel's

    asyncio.run(main())
