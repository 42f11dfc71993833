"""An automatic failover's decision is written in the transaction that submits its job: both
are committed, or neither (a crash between two transactions lost the decision and both its
mails while the job ran)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provider.events.decide import Outcome
from provider.events.journal import Decision, DecisionLog
from provider.vcem.service import FailoverSource
from tests.pg import postgres_cluster, postgres_url, store_url  # noqa: F401  (fixtures)
from tests.vcem.direct import vcem_stack

HOST = "web01.example.com"


def _decision(job_id: int) -> Decision:
    return Decision(
        at=datetime.now(UTC),
        node="gm1",
        sender="admin",
        indication_class="CIM_AlertIndication",
        indication_id="",
        event_id="1001",
        severity="5",
        system_named=HOST,
        system_key="bay:enc01/3",
        enclosure="enc01",
        bay="3",
        domain_group="dg-web",
        rule="r",
        mode="failover",
        outcome=Outcome.FAILOVER_STARTED,
        job_id=job_id,
        reason=f"failover job {job_id} started",
        notified=True,
    )


def test_the_decision_and_its_job_are_committed_together(
    tmp_path: Path,
    store_url: str,  # noqa: F811
) -> None:
    async def main() -> None:
        async with vcem_stack(tmp_path, store_url=store_url, start_runner=False) as stack:
            log = DecisionLog(stack.store, stack.roles, "gm1", retention=100)
            stored: list[Decision] = []

            def with_job(tx: Any, job_id: int) -> None:
                stored.append(log.record_in(tx, _decision(job_id), lambda d: ("s", "b")))

            job_id = stack.service.submit_failover(FailoverSource(host=HOST), "admin", with_job)
            (decision,) = stored
            assert decision.job_id == job_id and decision.stored
            assert decision.mail == "owed" and decision.end_mail == "owed"
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
