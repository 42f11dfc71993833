"""What a job's transactions return and how many statements a failover costs.

Under readers every store statement of a job waits for the interpreter again (README,
Performance), so the count of statements is the failover's cost there. These tests count
statements, they do not time anything."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from provider.jobs import JobState
from provider.jobs.journal import Ending, StepOutcome
from provider.jobs.model import Step
from provider.store._backends import SqliteConnection
from provider.vcem.service import FailoverSource
from tests.vcem.direct import vcem_stack

pytestmark = pytest.mark.timeout(60)

# A zero-delay failover of web01 in the example inventory runs 85 statements (BEGIN and
# COMMIT included) in the job's thread; it ran 116 before its single-query reads went
# without BEGIN/COMMIT (read_one) and its journal writes returned the job from the UPDATE
# itself (RETURNING) instead of reading it again.
STATEMENT_BUDGET = 90


def test_advance_returns_the_job_as_committed(tmp_path: Path) -> None:
    """The job `advance` returns comes from its own UPDATE (RETURNING): it must equal what a
    read after the commit finds, after a claim, an intent, an outcome and the ending."""

    async def main() -> None:
        async with vcem_stack(tmp_path, start_runner=False) as stack:
            job_id = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web01.example.com"), "t"
            )
            journal = stack.journal
            queued = journal.get(job_id)
            claimed = journal.advance(queued, claim=True, intent=Step.CHECK_DOMAINS)
            assert claimed is not None and claimed == journal.get(job_id)
            assert claimed.state is JobState.RUNNING and claimed.epoch is not None
            assert claimed.current_step == Step.CHECK_DOMAINS.value

            done = StepOutcome(Step.CHECK_DOMAINS, "done", "ok", job_changes={"profile": "p9"})
            stepped = journal.advance(claimed, [done])
            assert stepped is not None and stepped == journal.get(job_id)
            assert stepped.steps_done == (Step.CHECK_DOMAINS.value,)
            assert stepped.profile == "p9"

            ended = journal.advance(
                stepped,
                ending=Ending(JobState.EXCEPTION, lambda tx: None, Step.LOCK_GROUP, "test end"),
            )
            assert ended is not None and ended == journal.get(job_id)
            assert ended.state is JobState.EXCEPTION and ended.finished_at is not None
            assert ended.error_description == "test end"
            # A replay of the ending returns the job unchanged.
            assert journal.advance(ended, ending=Ending(JobState.COMPLETED, lambda tx: None)) == (
                ended
            )

    asyncio.run(main())


def test_a_claim_that_may_not_start_returns_none(tmp_path: Path) -> None:
    async def main() -> None:
        async with vcem_stack(tmp_path, start_runner=False) as stack:
            first = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web01.example.com"), "t"
            )
            second = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web02.example.com"), "t"
            )
            journal = stack.journal
            # The younger job of the group may not start before the older one.
            assert journal.advance(journal.get(second), claim=True) is None
            assert journal.get(second).state is JobState.QUEUED
            assert journal.advance(journal.get(first), claim=True) is not None

    asyncio.run(main())


class _Counter:
    """Statements run on SQLite connections by threads whose name starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.statements: list[str] = []

    def note(self, what: str) -> None:
        if threading.current_thread().name.startswith(self.prefix):
            self.statements.append(what)

    def single_statement_reads(self) -> list[str]:
        """BEGIN, one SELECT, COMMIT: reads that read_one() does in one statement."""
        s = self.statements
        return [
            s[i + 1][:100]
            for i in range(len(s) - 2)
            if s[i] == "BEGIN" and s[i + 1].startswith("SELECT") and s[i + 2] == "COMMIT"
        ]


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Counter]:
    c = _Counter("gm-jobs")
    run, begin, commit = SqliteConnection.run, SqliteConnection.begin, SqliteConnection.commit

    def counted_run(self: SqliteConnection, sql: str, params: Mapping[str, Any]) -> Any:
        c.note(" ".join(sql.split()))
        return run(self, sql, params)

    def counted_begin(self: SqliteConnection, write: bool) -> None:
        c.note("BEGIN")
        begin(self, write)

    def counted_commit(self: SqliteConnection) -> None:
        c.note("COMMIT")
        commit(self)

    monkeypatch.setattr(SqliteConnection, "run", counted_run)
    monkeypatch.setattr(SqliteConnection, "begin", counted_begin)
    monkeypatch.setattr(SqliteConnection, "commit", counted_commit)
    yield c


def test_a_failover_stays_within_its_statement_budget(tmp_path: Path, counter: _Counter) -> None:
    async def main() -> None:
        async with vcem_stack(tmp_path) as stack:
            await asyncio.sleep(0.2)  # the runner's start-up reads are not the job's
            counter.statements.clear()
            job_id = await asyncio.to_thread(
                stack.service.submit_failover, FailoverSource(host="web01.example.com"), "t"
            )
            job = await stack.wait(job_id)
            assert job.state is JobState.COMPLETED, job.error_description

    asyncio.run(main())
    statements = counter.statements
    assert any("UPDATE sim_bays SET power = 'on'" in s for s in statements)  # it was counted
    assert counter.single_statement_reads() == []
    assert len(statements) <= STATEMENT_BUDGET, "\n".join(statements)
