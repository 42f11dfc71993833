"""The job runner below the CIM layer (tests.vcem.direct): a group's queue, the journal read."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from provider.jobs import JobState
from provider.vcem import repository as repo
from provider.vcem.service import FailoverSource
from tests.vcem.direct import vcem_stack

pytestmark = pytest.mark.timeout(60)


def test_a_groups_queued_failovers_run_one_after_another_to_the_end(tmp_path: Path) -> None:
    """Submitted back to back in one group: the second waits for the first and then runs
    (in the thread that ran the first, no new hand-off); both complete, in order."""

    async def main() -> None:
        async with vcem_stack(tmp_path, simulator={"delay_ms": {"power_on": 200}}) as stack:
            first = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web01.example.com"), "t"
            )
            second = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web02.example.com"), "t"
            )
            one, two = await stack.wait(first), await stack.wait(second)
            assert (one.state, two.state) == (JobState.COMPLETED, JobState.COMPLETED)
            assert one.finished_at is not None and two.started_at is not None
            assert two.started_at >= one.finished_at
            assert {one.target_bay, two.target_bay} == {"12", "6"}
            assert not stack.runner._running  # every started job was let go of

    asyncio.run(main())


def test_load_reads_the_job_and_its_journal_together(tmp_path: Path) -> None:
    async def main() -> None:
        async with vcem_stack(tmp_path) as stack:
            job_id = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web01.example.com"), "t"
            )
            await stack.wait(job_id)
            job, journal = stack.journal.load(job_id)
            assert job == stack.journal.get(job_id)
            assert journal == stack.journal.journal(job_id)
            assert job.state is JobState.COMPLETED and journal

    asyncio.run(main())


def test_a_failover_records_the_spares_power_it_read(tmp_path: Path) -> None:
    """pick_spare reads every spare of the group from the hardware; where the inventory's
    recorded power differs, the job's transaction corrects it."""

    async def main() -> None:
        async with vcem_stack(tmp_path) as stack:
            with stack.store.read() as rtx:
                source = repo.bay_by_host(rtx, "web01.example.com")
                assert source is not None
                spares = repo.bays_of_group(rtx, source.group, spares_only=True)
            assert len(spares) >= 2
            devices = [stack.sim(b.enclosure, b.bay)["power"] for b in spares]
            with stack.roles.fenced("test: a stale recorded power") as tx:
                for b, device in zip(spares, devices, strict=True):
                    # every spare's record says the opposite of its hardware
                    repo.set_power(tx, b.enclosure, b.bay, "off" if device == "on" else "on")
            job_id = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web01.example.com"), "t"
            )
            job = await stack.wait(job_id)
            assert job.state is JobState.COMPLETED
            with stack.store.read() as tx:
                after = {(b.enclosure, b.bay): b for b in repo.bays_of_group(tx, source.group)}
            for b in spares:
                device = stack.sim(b.enclosure, b.bay)["power"]
                assert after[(b.enclosure, b.bay)].power_state == device, b

    asyncio.run(main())


def test_time_of_last_state_change_moves_with_the_state_not_each_step(tmp_path: Path) -> None:
    """CIM_ConcreteJob.TimeOfLastStateChange: it changed at every step of a running job."""

    async def main() -> None:
        delays = {"delay_ms": {"power_off": 300, "assign": 300, "power_on": 300}}
        async with vcem_stack(tmp_path, simulator=delays) as stack:
            job_id = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web01.example.com"), "t"
            )
            seen: dict[str, float] = {}
            while True:
                job = await asyncio.to_thread(stack.journal.get, job_id)
                if job.state.finished:
                    break
                if job.state is JobState.RUNNING:
                    seen[job.current_step] = job.changed_at
                await asyncio.sleep(0.02)
            assert len(seen) >= 2, seen  # watched the job at more than one step
            assert len(set(seen.values())) == 1, seen
            assert job.changed_at >= max(seen.values())  # the end is a change of state

    asyncio.run(main())


def test_a_discovery_that_finds_nothing_is_tried_again(tmp_path: Path) -> None:
    """It was marked done after one failed try: the server's names were gone for good."""

    async def main() -> None:
        with_fault = {"fail": {"discover": ["enc01/12"]}}  # the spare web01 gets
        async with vcem_stack(tmp_path, simulator=with_fault) as stack:
            job_id = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web01.example.com"), "t"
            )
            job = await stack.wait(job_id)
            assert job.state is JobState.COMPLETED and job.target_bay == "12"
            for _ in range(200):  # the runner's rediscovery pass has looked at it
                job = await asyncio.to_thread(stack.journal.get, job_id)
                at, finished = job.rediscover_at, job.finished_at
                if at is not None and finished is not None and at > finished + 30:
                    break
                await asyncio.sleep(0.05)
            assert not job.rediscovered
            assert job.rediscover_at is not None and job.finished_at is not None
            assert job.rediscover_at > job.finished_at + 30  # again in a minute

    asyncio.run(main())
