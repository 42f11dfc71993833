"""Helpers for VCEM tests through real CIM-XML calls (tests.harness)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pywbem

# The example inventory's probes would need `ping`; VCEM tests do not probe anything.
BASE_CONFIG: dict[str, dict[str, Any]] = {
    "vcem": {"rediscovery_delay_s": 0},
    "probe": {"method": "tcp"},
}

TERMINAL = (7, 8, 10)


def config(**sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    merged = {k: dict(v) for k, v in BASE_CONFIG.items()}
    for name, table in sections.items():
        merged.setdefault(name, {}).update(table)
    return merged


def invoke(conn: pywbem.WBEMConnection, method: str, **params: Any) -> tuple[int, Any]:
    rv, out = conn.InvokeMethod(method, "GM_GroupManager", **params)
    return int(rv), out


def failover(conn: pywbem.WBEMConnection, **source: Any) -> pywbem.CIMInstanceName:
    rv, out = invoke(conn, "failoverProfile", **source)
    assert rv == 4096
    assert out["Job"]["InstanceID"] == f"GM:ConcreteJob:{out['JobID']}"
    return out["Job"]


def wait_job(
    conn: pywbem.WBEMConnection, ref: pywbem.CIMInstanceName, timeout: float = 20.0
) -> pywbem.CIMInstance:
    deadline = time.monotonic() + timeout
    while True:
        job = conn.GetInstance(ref)
        if job["JobState"] in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job still in state {job['JobState']}: {job.items()}")
        time.sleep(0.02)


def bay(conn: pywbem.WBEMConnection, enclosure: str, name: str) -> pywbem.CIMInstance:
    path = pywbem.CIMInstanceName(
        "GM_DeviceBay", {"EnclosureName": enclosure, "BayName": name}, namespace="root/cimv2"
    )
    return conn.GetInstance(path)


def sim_counts(db: Path) -> dict[tuple[str, str], tuple[str, str | None, int, int]]:
    """(enclosure, bay) -> (power, profile, power_ons, power_offs) from the simulator."""
    import sqlite3

    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT enclosure, bay, power, profile, power_ons, power_offs FROM sim_bays"
        ).fetchall()
    return {(e, b): (p, prof, on, off) for e, b, p, prof, on, off in rows}
