"""The job runner below the CIM layer (tests.vcem.direct): a group's queue, the journal read."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from provider.jobs import JobState
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
