"""A hardware call that does not answer: the job ends, its group unlocks, the process stops.

A management processor that hung on a power-off held its domain group locked (every
failover behind it queued, cancelJob and stepDown refused) and kept the process from exiting
at SIGTERM until kill -9 (reference ha-jobs-style.md A.7.4 step 2: a hard timeout)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import pywbem

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
