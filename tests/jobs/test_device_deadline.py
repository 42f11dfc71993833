"""A hardware call that does not answer: the job ends, its group unlocks, the process stops.

A management processor that hung on a power-off held its domain group locked (every
failover behind it queued, cancelJob and stepDown refused) and kept the process from exiting
at SIGTERM until kill -9 (reference ha-jobs-style.md A.7.4 step 2: a hard timeout)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import pywbem

from provider.drivers.base import BayRef, DeviceState, Discovery, HardwareDriver, PowerState
from provider.drivers.deadline import Deadline, TracedDriver
from provider.errors import DeviceError
from tests.harness import configure
from tests.vcem.cimtools import config, failover, invoke, wait_job

pytestmark = pytest.mark.timeout(120)


def test_a_device_call_past_its_deadline_ends_the_job_and_frees_the_group(
    tmp_path: Path,
) -> None:
    gm = configure(
        tmp_path,
        config=config(
            vcem={"device_timeout_s": 0.5},
            simulator={"delay_ms": {"power_off": 4000}},  # web01's bay hangs on power-off
        ),
    )
    gm.start()
    try:
        conn = gm.connection()
        job = wait_job(conn, failover(conn, HostName="web01.example.com"), timeout=10)
        assert job["JobState"] == 10  # Exception
        assert job["ErrorDescription"].startswith(
            "Step power_off_source failed: Hard power-off of enc01 bay 3 did not answer within "
            "0.5 s ([vcem] device_timeout_s); its outcome is unknown"
        ), job["ErrorDescription"]
        group = conn.GetInstance(pywbem.CIMInstanceName("GM_DomainGroup", {"Name": "dg-web"}))
        assert group["Locked"] is False
        # The group takes changes again at once, not after the hung call.
        rv, _ = invoke(conn, "setSpare", EnclosureName="enc01", BayName="12", IsSpare=False)
        assert rv == 0
    finally:
        started = time.monotonic()
        gm.stop(timeout=30)
        assert time.monotonic() - started < 25  # SIGTERM is enough, no kill -9


def test_steps_reuse_a_worker_and_a_hung_one_holds_only_its_own() -> None:
    """A new thread per call opened a new store connection per device call (the simulator
    keeps its state in the store): workers are reused, one that hangs is left to it, and the
    message names the hardware call under way."""
    deadline = Deadline(0.2)
    driver = TracedDriver(_Hardware())
    bay = BayRef("enc01", "1")

    def model() -> str:
        return driver.read([bay])[bay].model

    first = {deadline.run("Step check_product", model) for _ in range(5)}
    assert len(first) == 1  # five steps, one worker thread
    release = threading.Event()
    _Hardware.hang = release

    def power_off_then_on() -> None:
        driver.read([bay])
        driver.power_on(bay, "job 1 power_on_target")

    with pytest.raises(DeviceError, match=r"^Power on of enc01 bay 1 did not answer within 0\.2 s"):
        deadline.run("Step power_on_target", power_off_then_on)
    _Hardware.hang = None
    assert deadline.run("Step check_product", model) not in first  # the first still waits
    release.set()


class _Hardware(HardwareDriver):
    """Answers with the worker thread's identity as the model; power_on waits while `hang`."""

    name = "test"
    hang: threading.Event | None = None

    def read(self, bays: Sequence[BayRef]) -> dict[BayRef, DeviceState]:
        model = str(threading.get_ident())
        return {b: DeviceState(True, model, "G9", "ProLiant", PowerState.OFF, None) for b in bays}

    def power_on(self, bay: BayRef, job_key: str) -> None:
        if _Hardware.hang is not None:
            _Hardware.hang.wait(5)

    def hard_power_off(self, bay: BayRef, job_key: str) -> None: ...
    def assign_profile(self, bay: BayRef, profile: str, job_key: str) -> None: ...
    def unassign_profile(self, bay: BayRef, profile: str, job_key: str) -> None: ...
    def discover(self, bay: BayRef) -> Discovery:
        return Discovery(None, ())
