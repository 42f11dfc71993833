"""An automatic failover's decision is written in the transaction that submits its job: both
are committed, or neither (a crash between two transactions lost the decision and both its
mails while the job ran)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from provider.events.decide import Outcome
from provider.events.journal import Decision, DecisionLog
from provider.vcem.service import FailoverSource
from tests.events.test_end_mails import Clock, decision
from tests.pg import postgres_cluster, postgres_url, store_url  # noqa: F401  (fixtures)
from tests.vcem.direct import vcem_stack

HOST = "web01.example.com"


def test_the_decision_and_its_job_are_committed_together(
    tmp_path: Path,
    store_url: str,  # noqa: F811
) -> None:
    async def main() -> None:
        async with vcem_stack(tmp_path, store_url=store_url, start_runner=False) as stack:
            log = DecisionLog(stack.store, stack.roles, "gm1", retention=100)
            stored: list[Decision] = []

            def with_job(tx: Any, job_id: int) -> None:
                started = decision(Clock(), Outcome.FAILOVER_STARTED, job_id)
                stored.append(log.record_in(tx, started, lambda d: ("s", "b")))

            job_id = stack.service.submit_failover(FailoverSource(host=HOST), "admin", with_job)
            (recorded,) = stored
            assert recorded.job_id == job_id and recorded.stored
            assert recorded.mail == "owed" and recorded.end_mail == "owed"
            assert [d.job_id for d in log.recent()] == [job_id]

            def failing(tx: Any, job_id: int) -> None:
                raise RuntimeError("the decision could not be written")

            before = [j.id for j in stack.journal.iterate()]
            with pytest.raises(RuntimeError):
                stack.service.submit_failover(
                    FailoverSource(host="web02.example.com"), "a", failing
                )
            assert [j.id for j in stack.journal.iterate()] == before  # no job without it

    asyncio.run(main())
