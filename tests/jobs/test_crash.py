"""kill -9 of the provider at every step boundary of a failover, and in the middle of a
simulated device delay; after restart every job ends Completed or Exception, no bay was
powered on (or off) twice, and no profile is on two bays (SPEC 4.1: "A crash at any point
neither loses the job nor repeats a device action")."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest
import pywbem

from provider.jobs.model import FAILOVER_STEPS, Step
from tests.harness import ProviderHandle, configure
from tests.vcem.cimtools import config, invoke, wait_job

JOB = pywbem.CIMInstanceName("GM_ConcreteJob", {"InstanceID": "GM:ConcreteJob:1"}, "root/cimv2")
BOUNDARIES = [
    f"{step.value}:{phase}"
    for step in FAILOVER_STEPS
    if step is not Step.UNLOCK
    for phase in ("intent", "act", "record")
]


# A node restarted after kill -9 takes its lease back once it lapses (another process under
# its name would be fenced mid-step otherwise): a short lease keeps these tests quick.
ROLES = {"lease_ttl": 2.0, "renew_interval": 0.4}


def _wait_dead(gm: ProviderHandle, timeout: float = 20.0) -> None:
    assert gm.proc is not None
    gm.proc.wait(timeout)
    assert gm.proc.returncode == -9, gm.log


def _submit(gm: ProviderHandle) -> None:
    # The crash may come before the reply leaves; the job was committed before it ran.
    with contextlib.suppress(pywbem.ConnectionError, pywbem.TimeoutError):
        invoke(gm.connection(timeout=5), "failoverProfile", HostName="web01.example.com")


def check_invariants(db: Path) -> None:
    with sqlite3.connect(db) as c:
        states = c.execute("SELECT id, state, error_description FROM gm_jobs").fetchall()
        assert all(s in ("completed", "exception") for _, s, _ in states), states
        sim = c.execute(
            "SELECT enclosure, bay, profile, power_ons, power_offs FROM sim_bays"
        ).fetchall()
        assert all(on <= 1 and off <= 1 for _, _, _, on, off in sim), sim
        holders = [(e, b) for e, b, p, _, _ in sim if p == "web01-profile"]
        assert len(holders) == 1, holders
        recorded = c.execute(
            "SELECT enclosure, bay FROM vcem_profiles WHERE name = 'web01-profile'"
        ).fetchone()
        assert tuple(recorded) == holders[0]
        locked = c.execute("SELECT name FROM vcem_groups WHERE locked_by_job IS NOT NULL")
        assert locked.fetchall() == []


def _crash_and_recover(tmp_path: Path, simulator: dict[str, object]) -> pywbem.CIMInstance:
    """Submit the failover to a node that dies at the simulator's crash point, start it again
    (the crash point fired once; recovery adopts the job) and return the job as it ended."""
    gm = configure(tmp_path, config=config(simulator=simulator, roles=ROLES))
    gm.start()
    try:
        _submit(gm)
        _wait_dead(gm)
        gm.start()
        return wait_job(gm.connection(), JOB)
    finally:
        gm.stop()


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", BOUNDARIES)
def test_kill_at_a_step_boundary_neither_loses_nor_repeats(tmp_path: Path, crash_at: str) -> None:
    job = _crash_and_recover(tmp_path, {"crash_at": crash_at})
    assert job["JobState"] == 7, job["ErrorDescription"]
    assert (job["TargetEnclosureName"], job["TargetBayName"]) == ("enc01", "12")
    check_invariants(tmp_path / "gm.db")


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["power_off", "assign", "power_on"])
def test_kill_in_the_middle_of_a_device_delay(tmp_path: Path, operation: str) -> None:
    sim = {"delay_ms": {operation: 400}, "crash_during": operation}
    assert _crash_and_recover(tmp_path, sim)["JobState"] == 7
    check_invariants(tmp_path / "gm.db")


@pytest.mark.slow
def test_external_kill_while_powering_on_then_recovery(tmp_path: Path) -> None:
    gm = configure(tmp_path, config=config(simulator={"delay_ms": {"power_on": 1500}}, roles=ROLES))
    gm.start()
    try:
        _submit(gm)
        conn = gm.connection()
        deadline = time.monotonic() + 10
        while conn.GetInstance(JOB)["CurrentStep"] != "power_on_target":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.3)
        gm.kill()
        gm.start()
        assert wait_job(gm.connection(), JOB)["JobState"] == 7
    finally:
        gm.stop()
    check_invariants(tmp_path / "gm.db")


@pytest.mark.slow
def test_a_step_found_done_on_resuming_says_so(tmp_path: Path) -> None:
    """After a crash between the power-off and its record, the journal said "enc01 bay 3:
    already off": read as if the server had been off before the failover."""
    assert _crash_and_recover(tmp_path, {"crash_at": "power_off_source:act"})["JobState"] == 7
    with sqlite3.connect(tmp_path / "gm.db") as c:
        outcome, detail = c.execute(
            "SELECT outcome, detail FROM gm_job_steps WHERE step = 'power_off_source'"
        ).fetchone()
    assert outcome == "already"
    assert detail == (
        "enc01 bay 3: already off (found so on resuming the job: done by its attempt before a "
        "restart or takeover, or so before the job)"
    )
