"""A planned hand-over (SIGTERM, stepDown) while a job step acts on a device: the step ends and
is recorded before the lease goes, so the node that takes over does not act on that device
again (SPEC 4.1). The other node used to adopt the job while the first one's power-on was
still under way, and ran the step a second time."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import pywbem

from tests.harness import ProviderHandle, configure
from tests.vcem.cimtools import config, invoke, wait_job

JOB = pywbem.CIMInstanceName("GM_ConcreteJob", {"InstanceID": "GM:ConcreteJob:1"}, "root/cimv2")

pytestmark = pytest.mark.timeout(120)


def _powering_on(gm: ProviderHandle) -> None:
    """Submit web01's failover and return once its power-on is under way."""
    assert invoke(gm.connection(), "failoverProfile", HostName="web01.example.com")[0] == 4096
    conn = gm.connection()
    deadline = time.monotonic() + 20
    while conn.GetInstance(JOB)["CurrentStep"] != "power_on_target":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)  # inside the simulated device's delay


def _power_on_record(db: Path) -> tuple[Any, ...]:
    with sqlite3.connect(db) as c:
        step = c.execute(
            "SELECT outcome, attempts FROM gm_job_steps WHERE job_id = 1"
            " AND step = 'power_on_target'"
        ).fetchone()
        state = c.execute("SELECT state FROM gm_jobs WHERE id = 1").fetchone()[0]
        ons = c.execute("SELECT SUM(power_ons) FROM sim_bays").fetchone()[0]
    return state, tuple(step), ons


def _pair(tmp_path: Path, **roles: Any) -> tuple[ProviderHandle, ProviderHandle]:
    sim = {"simulator": {"delay_ms": {"power_on": 1500}}}
    gm1 = configure(tmp_path, node="gm1", config=config(**sim, roles=dict(roles)))
    gm2 = configure(
        tmp_path,
        node="gm2",
        config=config(**sim, roles={"start_as": "standby", "automatic_takeover": True}),
    )
    return gm1, gm2


def test_sigterm_lets_the_step_under_way_end_and_be_recorded(tmp_path: Path) -> None:
    gm1, gm2 = _pair(tmp_path)
    gm1.start()
    gm2.start()
    try:
        _powering_on(gm1)
        assert gm1.stop(timeout=20) == 0, gm1.log
        # gm1 recorded the power-on (and the job's end) before it let the lease go.
        assert _power_on_record(tmp_path / "gm.db") == ("completed", ("done", 1), 1)
        assert wait_job(gm2.connection(), JOB)["JobState"] == 7
    finally:
        gm2.stop()
        gm1.stop()
    assert _power_on_record(tmp_path / "gm.db") == ("completed", ("done", 1), 1)


def test_step_down_waits_for_the_step_under_way(tmp_path: Path) -> None:
    gm1, gm2 = _pair(tmp_path)
    gm1.start()
    gm2.start()
    try:
        _powering_on(gm1)
        assert invoke(gm1.connection(), "stepDown")[0] == 0
        # The step had ended and was recorded when stepDown returned.
        assert _power_on_record(tmp_path / "gm.db") == ("completed", ("done", 1), 1)
        assert wait_job(gm2.connection(), JOB)["JobState"] == 7
    finally:
        gm2.stop()
        gm1.stop()


def test_step_down_is_refused_while_a_step_acts_longer_than_its_wait(
    tmp_path: Path,
) -> None:
    # `step_down_wait`, not `drain_timeout` (a shutdown's, which stays 30 s here): stepDown
    # answers within the client's wait.
    gm1, gm2 = _pair(tmp_path, step_down_wait=0.2)
    gm1.start()
    gm2.start()
    try:
        _powering_on(gm1)
        with pytest.raises(pywbem.CIMError) as err:
            invoke(gm1.connection(), "stepDown")
        assert "still acting on a device after 0.2 s" in err.value.status_description
        # It names the job, and where to look at it.
        assert "(job 1: vcemcli -show job -jobid 1)" in err.value.status_description
        # gm1 stays active and its job goes on to the end, run once.
        job = wait_job(gm1.connection(), JOB)
        assert job["JobState"] == 7, job["ErrorDescription"]
        assert invoke(gm1.connection(), "getRole")[1]["Role"] in ("active", "Active")
    finally:
        gm2.stop()
        gm1.stop()
    assert _power_on_record(tmp_path / "gm.db") == ("completed", ("done", 1), 1)


def test_a_forced_takeover_waits_for_the_replaced_actives_lease(tmp_path: Path) -> None:
    """takeControl with Force (icapmanage -Q) replaces a live active at once; a device step
    it has under way still runs to its end on real hardware. The new active resumes that job
    only when the old lease would have lapsed, as after a crash, and then reads the device."""
    gm1, gm2 = _pair(tmp_path)
    gm1.start()
    gm2.start()
    try:
        _powering_on(gm1)
        taken_at = time.time()
        assert invoke(gm2.connection(), "takeControl", Force=True)[0] == 0
        job = wait_job(gm2.connection(), JOB, timeout=40)
        assert job["JobState"] == 7, job["ErrorDescription"]
    finally:
        gm2.stop()
        gm1.stop()
    with sqlite3.connect(tmp_path / "gm.db") as c:
        resumed_at, attempts = c.execute(
            "SELECT intent_at, attempts FROM gm_job_steps WHERE job_id = 1"
            " AND step = 'power_on_target'"
        ).fetchone()
        ons = c.execute("SELECT SUM(power_ons) FROM sim_bays").fetchone()[0]
    assert attempts == 2 and ons == 1
    ttl = 6.0  # tests.harness: lease_ttl
    assert resumed_at >= taken_at + ttl - 0.5, (resumed_at - taken_at, ttl)
