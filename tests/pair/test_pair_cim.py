"""The active/standby pair through CIM-XML: two real `gm-provider serve` processes sharing
one store, on SQLite (one host) and on a real PostgreSQL (two hosts) — SPEC 3.3, 4.2."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pywbem

from tests.harness import ProviderHandle, configure

NOT_ACTIVE = (
    "CIM_ERR_FAILED: This system is not an active Group Manager.\nOnly an active Group Manager can "
)
SEED_003 = (
    "CIM_ERR_FAILED: This system is not an active Group Manager.\nOnly an active Group Manager "
    "can check to see if it can reconnect to members\nfrom which usage rights were previously "
    "seized.\n"
)
# Methods any role may run: reads, and takeControl (what a standby is for).
NOT_GATED = {"getRole", "takeControl"}


def _pair(tmp_path: Path, store_url: str, **roles: Any) -> tuple[ProviderHandle, ProviderHandle]:
    settings = {"lease_ttl": 6.0, "renew_interval": 1.0, **roles}
    a = configure(
        tmp_path,
        node="gm-a",
        store_url=store_url,
        config={"roles": {**settings, "start_as": "active"}},
    )
    b = configure(
        tmp_path,
        node="gm-b",
        store_url=store_url,
        config={"roles": {**settings, "start_as": "standby"}},
    )
    return a, b


@pytest.fixture
def pair(tmp_path: Path, store_url: str) -> Iterator[tuple[ProviderHandle, ProviderHandle]]:
    a, b = _pair(tmp_path, store_url)
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()


def _role(gm: ProviderHandle) -> str:
    inst = gm.connection().EnumerateInstances("GM_GroupManager")[0]
    return str(inst["Role"])


def _wait_role(gm: ProviderHandle, role: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _role(gm) == role:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{gm.node} did not become {role} within {timeout}s:\n{gm.log[-3000:]}")


def _dummy(param: pywbem.CIMParameter) -> Any:
    values = {"string": "enc01", "boolean": False, "uint32": 1, "uint64": 1}
    value = pywbem.cimvalue(values[param.type], param.type)
    return [value] if param.is_array else value


def _inputs(method: pywbem.CIMMethod) -> dict[str, Any]:
    params = {}
    for name, param in method.parameters.items():
        q_in = param.qualifiers.get("In")
        if q_in is not None and q_in.value is False:
            continue
        if name == "Action":
            params[name] = "start"
        elif method.name == "failoverProfile" and name in ("HostName", "IPAddress"):
            continue  # failoverProfile takes one way of naming the source
        else:
            params[name] = _dummy(param)
    return params


def test_standby_refuses_every_state_changing_method(
    pair: tuple[ProviderHandle, ProviderHandle],
) -> None:
    active, standby = pair
    assert _role(active) == "active" and _role(standby) == "standby"
    cls = standby.connection().GetClass("GM_GroupManager", LocalOnly=False)
    gated = [m for m in cls.methods.values() if m.name not in NOT_GATED]
    assert {"failoverProfile", "checkScavengedMember", "seizeRights", "stepDown"} <= {
        m.name for m in gated
    }
    for method in gated:
        with pytest.raises(pywbem.CIMError) as err:
            standby.connection().InvokeMethod(method.name, "GM_GroupManager", **_inputs(method))
        assert err.value.status_code == pywbem.CIM_ERR_FAILED, method.name
        assert err.value.status_description.startswith(NOT_ACTIVE), (
            method.name,
            err.value.status_description,
        )
        # The active does not refuse it for its role (it may refuse the dummy values).
        try:
            active.connection().InvokeMethod(method.name, "GM_GroupManager", **_inputs(method))
        except pywbem.CIMError as exc:
            assert "not an active Group Manager" not in exc.status_description, method.name
        if method.name == "stepDown":
            break  # the active just stepped down: nothing more to compare
    assert _role(standby) == "standby"


def test_standby_refuses_check_scavenged_member_with_seed_text(
    pair: tuple[ProviderHandle, ProviderHandle],
) -> None:
    _, standby = pair
    with pytest.raises(pywbem.CIMError) as err:
        standby.connection().InvokeMethod("checkScavengedMember", "GM_GroupManager")
    assert err.value.status_description == SEED_003


def test_take_control_swaps_roles_and_fences_the_old_active(
    pair: tuple[ProviderHandle, ProviderHandle],
) -> None:
    active, standby = pair
    old_epoch = int(active.connection().EnumerateInstances("GM_GroupManager")[0]["Epoch"])
    with pytest.raises(pywbem.CIMError) as err:
        standby.connection().InvokeMethod("takeControl", "GM_GroupManager", Force=False)
    assert "is the active Group Manager" in err.value.status_description
    rv, out = standby.connection().InvokeMethod("takeControl", "GM_GroupManager", Force=True)
    assert rv == 0 and int(out["Epoch"]) > old_epoch
    # The old active still believes it is active until its next write or renewal: its next
    # write is rejected (fenced) and it answers as a standby.
    with pytest.raises(pywbem.CIMError) as err:
        active.connection().InvokeMethod(
            "setSpare", "GM_GroupManager", EnclosureName="enc01", BayName="12", IsSpare=False
        )
    assert err.value.status_description.startswith(NOT_ACTIVE)
    assert _wait_role(active, "standby", 3.0) < 3.0
    inst = standby.connection().EnumerateInstances("GM_GroupManager")[0]
    assert inst["Role"] == "active" and inst["ActiveManager"] == "gm-b"
    assert int(inst["Epoch"]) == int(out["Epoch"])


def test_step_down_then_the_standby_takes_control_without_force(
    pair: tuple[ProviderHandle, ProviderHandle],
) -> None:
    active, standby = pair
    rv, _ = active.connection().InvokeMethod("stepDown", "GM_GroupManager")
    assert rv == 0 and _role(active) == "standby"
    rv, _ = standby.connection().InvokeMethod("takeControl", "GM_GroupManager", Force=False)
    assert rv == 0 and _role(standby) == "active"


@pytest.mark.slow
def test_kill_9_of_the_active_with_automatic_takeover(tmp_path: Path, store_url: str) -> None:
    ttl, renew = 3.0, 0.5
    a, b = _pair(tmp_path, store_url, lease_ttl=ttl, renew_interval=renew, automatic_takeover=True)
    a.start()
    b.start()
    try:
        assert _role(a) == "active"
        _wait_role(b, "standby", 5)
        conn = a.connection()
        rv, _ = conn.InvokeMethod(
            "setSpare", "GM_GroupManager", EnclosureName="enc01", BayName="12", IsSpare=False
        )
        assert rv == 0
        a.kill()
        killed = time.monotonic()
        while _role(b) != "active":
            assert time.monotonic() - killed < ttl + renew + 2.0, b.log[-3000:]
            time.sleep(0.05)
        took = time.monotonic() - killed
        assert took <= ttl + renew + 0.5, f"takeover took {took:.2f}s"
        bay = b.connection().GetInstance(
            pywbem.CIMInstanceName("GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "12"})
        )
        assert bay["IsSpare"] is False  # the committed write survived the crash
    finally:
        b.stop()
        a.stop()
