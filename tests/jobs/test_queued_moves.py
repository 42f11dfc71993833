"""A job queued behind another of its group finds the world the other left: a move asked
while a failover of the same profile was queued or running recorded the profile's bay at
submission and, when its turn came, assigned the profile to its target without taking it off
the spare the failover had moved it to: one server identity (MACs, WWNs, boot LUN) applied
in two bays, both powered on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from provider.errors import NotFound
from provider.jobs import JobState, Step
from provider.vcem import repository as repo
from provider.vcem.service import FailoverSource
from tests.vcem.direct import vcem_stack

pytestmark = pytest.mark.timeout(60)


def test_a_move_queued_behind_a_failover_of_its_profile_does_nothing(
    tmp_path: Path, store_url: str
) -> None:
    async def main() -> None:
        async with vcem_stack(tmp_path, store_url=store_url, start_runner=False) as stack:
            with stack.store.read() as tx:
                source = repo.bay_by_host(tx, "web01.example.com")
            assert source is not None and source.profile is not None
            profile = source.profile
            failover = stack.service.submit_failover(FailoverSource(host=source.host), "t")
            move = stack.service.submit_move(profile, "enc01", "5", True, "t")
            runner = asyncio.create_task(stack.runner.run())
            try:
                done = await stack.wait(failover)
                moved = await stack.wait(move)
            finally:
                runner.cancel()
            assert done.state is JobState.COMPLETED
            spare = (done.target_enclosure, done.target_bay)
            assert moved.state is JobState.EXCEPTION, moved
            assert moved.error_step == Step.CHECK_PRODUCT.value
            assert "no longer assigned to the source bay" in moved.error_description
            assert f"{spare[0]} bay {spare[1]}" in moved.error_description
            # The identity is in one bay only, and the move's target was never touched.
            with stack.store.read() as tx:
                rows = tx.fetchall(
                    "SELECT enclosure, bay FROM sim_bays WHERE profile = %(p)s", {"p": profile}
                )
            assert [tuple(r) for r in rows] == [spare]
            target = stack.sim("enc01", "5")
            assert target["profile"] is None and target["power_ons"] == 0

    asyncio.run(main())


def test_a_move_that_fails_half_way_says_where_the_profile_is(
    tmp_path: Path, store_url: str
) -> None:
    """The spare refused the profile after it had been taken off the source: the job said only
    "assignment failed", and the store still showed the profile on the source bay."""

    async def main() -> None:
        with_fault = {"fail": {"assign": ["enc01/12"]}}  # the spare web01 gets
        # Rediscovery far off: the hint after the move is what a failover by name meets
        # until then (with no delay the runner could rediscover the bay first).
        async with vcem_stack(
            tmp_path, simulator=with_fault, store_url=store_url, rediscovery_delay=3600
        ) as stack:
            with stack.store.read() as tx:
                source = repo.bay_by_host(tx, "web01.example.com")
            assert source is not None and source.profile is not None
            job_id = stack.service.submit_failover(FailoverSource(host=source.host), "t")
            job = await stack.wait(job_id)
            assert job.state is JobState.EXCEPTION and job.error_step == Step.MOVE_PROFILE.value
            why = job.error_description
            assert f"was taken off {source.enclosure} bay {source.bay}" in why, why
            assert "is now assigned to no bay" in why and "vcemcli -move profile" in why
            with stack.store.read() as tx:
                profile = repo.profile(tx, source.profile)
                group = repo.group(tx, source.group)
            assert profile is not None and (profile.enclosure, profile.bay) == (None, None)
            with stack.store.read() as tx:
                # Its names left with it: nothing resolves to the empty source bay.
                assert repo.bay_by_host(tx, "web01.example.com") is None
            assert group is not None and group.locked_by_job is None
            assert stack.sim(source.enclosure, source.bay)["profile"] is None
            assert stack.sim("enc01", "12")["profile"] is None
            # A failover by name says where the profile is and how to place it (it said
            # only "no server is known by host web01.example.com").
            with pytest.raises(NotFound) as err:
                stack.service.submit_failover(FailoverSource(host="web01.example.com"), "t")
            hint = err.value.description
            assert f"Job {job_id} took its profile {source.profile} off its bay" in hint, hint
            assert "assigned to no bay" in hint
            assert f"vcemcli -move profile -profilename {source.profile} " in hint
            # Placed by a move, the profile takes its names along: the hint follows it.
            move = await stack.wait(
                stack.service.submit_move(source.profile, "enc01", "5", True, "t")
            )
            assert move.state is JobState.COMPLETED, move.error_description
            with pytest.raises(NotFound) as err:
                stack.service.submit_failover(FailoverSource(host="web01.example.com"), "t")
            assert f"Job {move.id} moved its profile to enc01 bay 5" in err.value.description

    asyncio.run(main())


def test_a_move_whose_unassign_fails_says_the_source_stays_off(tmp_path: Path) -> None:
    async def main() -> None:
        with_fault = {"fail": {"unassign": ["enc01/4"]}}
        async with vcem_stack(tmp_path, simulator=with_fault) as stack:
            job_id = stack.service.submit_move("web02-profile", "enc01", "5", True, "t")
            job = await stack.wait(job_id)
            assert job.state is JobState.EXCEPTION and job.error_step == Step.MOVE_PROFILE.value
            why = job.error_description
            assert "still assigned to enc01 bay 4" in why and "stays powered off" in why, why
            assert stack.sim("enc01", "4")["power"] == "off"

    asyncio.run(main())


def test_a_move_to_a_bay_that_cannot_take_it_leaves_the_source_running(tmp_path: Path) -> None:
    """The target is checked before the source is powered off: a move to a powered-on spare
    once hard-powered-off the running server and then refused."""

    async def main() -> None:
        async with vcem_stack(tmp_path) as stack:
            assert stack.sim("enc01", "4")["power"] == "on"
            job_id = stack.service.submit_move("web02-profile", "enc03", "2", True, "t")
            job = await stack.wait(job_id)
            assert job.state is JobState.EXCEPTION and job.error_step == Step.CHECK_TARGET.value
            assert "enc03 bay 2 is powered on" in job.error_description
            source = stack.sim("enc01", "4")
            assert (source["power"], source["power_offs"]) == ("on", 0)
            assert source["profile"] == "web02-profile"

    asyncio.run(main())


def test_a_move_with_power_on_to_a_bay_without_a_server_is_refused(tmp_path: Path) -> None:
    """A mistyped bay: the move powered the running server off, applied its profile to an
    empty bay, skipped the power-on and ended "Completed". check_target, which reads the
    devices before the source is powered off, refuses it now. Without power-on the profile
    may wait in the empty bay; a failover by name says so, and nothing is discovered there
    until a server is inserted."""

    async def main() -> None:
        async with vcem_stack(tmp_path) as stack:
            job = await stack.wait(
                stack.service.submit_move("web02-profile", "enc01", "7", True, "t")
            )
            assert job.state is JobState.EXCEPTION and job.error_step == Step.CHECK_TARGET.value
            why = job.error_description
            assert "there is no server in enc01 bay 7" in why, why
            assert "the server in enc01 bay 4 would be powered off" in why
            assert "vcemcli -nopoweron" in why
            source = stack.sim("enc01", "4")
            assert (source["power"], source["power_offs"], source["profile"]) == (
                "on",
                0,
                "web02-profile",
            )

            # The inventory said bay 7 was empty when it was seeded; a server is inserted
            # since: the device is what counts.
            with stack.roles.fenced("insert a server") as tx:
                tx.execute(
                    "UPDATE sim_bays SET present = TRUE, model = 'BL460c', generation = 'G7',"
                    " product = 'ProLiant'"
                    " WHERE enclosure = 'enc01' AND bay = '7'"
                )
            placed = await stack.wait(
                stack.service.submit_move("web02-profile", "enc01", "7", True, "t")
            )
            assert placed.state is JobState.COMPLETED, placed.error_description
            assert stack.sim("enc01", "7")["power"] == "on"

            # Without power-on, to a bay the device shows empty: allowed, nothing discovered.
            moved = await stack.wait(
                stack.service.submit_move("web02-profile", "enc01", "8", False, "t")
            )
            assert moved.state is JobState.COMPLETED, moved.error_description
            assert moved.rediscover_at is None
            assert stack.sim("enc01", "8")["profile"] == "web02-profile"
            with pytest.raises(NotFound) as err:
                stack.service.submit_failover(FailoverSource(host="web02.example.com"), "t")
            assert "enc01 bay 8, which has no server: it runs nowhere" in err.value.description

            # Waiting there, it may go on to another empty bay with power-on: nothing runs
            # and nothing is powered off, so nothing is refused.
            on = await stack.wait(
                stack.service.submit_move("web02-profile", "enc01", "10", True, "t")
            )
            assert on.state is JobState.COMPLETED, on.error_description

    asyncio.run(main())


def test_a_spare_whose_state_cannot_be_read_is_passed_over(tmp_path: Path) -> None:
    """One faulty bay among the spares once failed every failover of the group (after the
    source was powered off); it is passed over with the reason instead."""

    async def main() -> None:
        with_fault = {"fail": {"read": ["enc01/12"]}}  # the spare web01 would get
        async with vcem_stack(tmp_path, simulator=with_fault) as stack:
            job_id = stack.service.submit_failover(FailoverSource(host="web01.example.com"), "t")
            job = await stack.wait(job_id)
            assert job.state is JobState.COMPLETED, job.error_description
            assert (job.target_enclosure, job.target_bay) != ("enc01", "12")
            _, journal = stack.journal.load(job_id)
            detail = journal[Step.PICK_SPARE].detail
            assert "enc01 bay 12: its state cannot be read" in detail, detail

    asyncio.run(main())


def test_a_failover_whose_power_on_fails_says_where_everything_is(tmp_path: Path) -> None:
    async def main() -> None:
        with_fault = {"fail": {"power_on": ["enc01/12"]}}
        async with vcem_stack(tmp_path, simulator=with_fault) as stack:
            job_id = stack.service.submit_failover(FailoverSource(host="web01.example.com"), "t")
            job = await stack.wait(job_id)
            assert job.state is JobState.EXCEPTION
            why = job.error_description
            assert (
                "Profile web01-profile is assigned to enc01 bay 12, which stays powered off" in why
            )
            assert "enc01 bay 3 is off and holds no profile" in why
            assert "Onboard Administrator or iLO" in why

    asyncio.run(main())
