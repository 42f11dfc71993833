"""Failover, move, spares and maintenance through real CIM-XML calls (pywbem → the server)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import pywbem

from tests.harness import configure, provider_process
from tests.vcem.cimtools import bay, config, failover, invoke, sim_counts, wait_job

STANDBY_TEXT = (
    "This system is not an active Group Manager.\n"
    "Only an active Group Manager can fail over a server profile.\n"
)


def test_failover_by_bay_moves_the_profile_unchanged_to_the_first_qualified_spare(
    tmp_path: Path,
) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        conn = gm.connection()
        before = conn.GetInstance(
            pywbem.CIMInstanceName("GM_ServerProfile", {"Name": "web01-profile"}, "root/cimv2")
        )
        job = wait_job(conn, failover(conn, EnclosureName="enc01", BayName="3"))
        assert job["JobState"] == 7, job["ErrorDescription"]
        assert job["PercentComplete"] == 100
        # dg-web ignores generations: enc01 bay 12 (BL460c G1) is the first qualified spare.
        assert (job["TargetEnclosureName"], job["TargetBayName"]) == ("enc01", "12")
        assert list(job["StepsDone"]) == [
            "check_domains",
            "lock_group",
            "check_product",
            "power_off_source",
            "pick_spare",
            "move_profile",
            "power_on_target",
            "schedule_rediscovery",
            "unlock",
        ]
        after = conn.GetInstance(before.path)
        assert (after["EnclosureName"], after["BayName"]) == ("enc01", "12")
        for prop in ("MACAddresses", "WWNs", "VirtualSerialNumber", "VirtualUUID"):
            assert after[prop] == before[prop]
        target = bay(conn, "enc01", "12")
        assert target["IsSpare"] is False and target["PowerState"] == "on"
        assert bay(conn, "enc01", "3")["PowerState"] == "off"
        group = conn.GetInstance(
            pywbem.CIMInstanceName("GM_DomainGroup", {"Name": "dg-web"}, "root/cimv2")
        )
        assert group["Locked"] is False
        # Rediscovery (delay 0 here, ten minutes by default) moves host name and IPs along.
        deadline = time.monotonic() + 5
        while bay(conn, "enc01", "12")["HostName"] != "web01.example.com":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert bay(conn, "enc01", "3")["HostName"] is None
    sim = sim_counts(tmp_path / "gm.db")
    assert sim[("enc01", "3")] == ("off", None, 0, 1)
    assert sim[("enc01", "12")] == ("on", "web01-profile", 1, 0)


def test_failover_by_host_name_and_by_any_ip_address(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        conn = gm.connection()
        by_host = wait_job(conn, failover(conn, HostName="WEB02.example.com"))
        assert by_host["JobState"] == 7
        assert (by_host["SourceEnclosureName"], by_host["SourceBayName"]) == ("enc01", "4")
        # An IPv6 address written out in full resolves like its compressed form.
        by_ip = wait_job(conn, failover(conn, IPAddress="2001:DB8:0:1:0:0:0:11"))
        assert by_ip["JobState"] == 7
        assert (by_ip["SourceEnclosureName"], by_ip["SourceBayName"]) == ("enc01", "3")
        targets = {
            (by_host["TargetEnclosureName"], by_host["TargetBayName"]),
            (by_ip["TargetEnclosureName"], by_ip["TargetBayName"]),
        }
        assert targets == {("enc01", "12"), ("enc02", "6")}


def test_unknown_source_is_not_found_and_a_bad_combination_is_invalid(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        conn = gm.connection()
        for params in (
            {"HostName": "nosuch.example.com"},
            {"IPAddress": "203.0.113.9"},
            {"EnclosureName": "enc99", "BayName": "1"},
            {"EnclosureName": "enc01", "BayName": "77"},
        ):
            with pytest.raises(pywbem.CIMError) as err:
                invoke(conn, "failoverProfile", **params)
            assert err.value.status_code == 6, params
        for params in (
            {},
            {"EnclosureName": "enc01"},
            {"HostName": "web01.example.com", "IPAddress": "192.0.2.11"},
            {"IPAddress": "not-an-ip"},
            {"IPAddress": "192.0.2.300"},
        ):
            with pytest.raises(pywbem.CIMError) as err:
                invoke(conn, "failoverProfile", **params)
            assert err.value.status_code == 4, params
            if "IPAddress" in params and len(params) == 1:
                # a malformed address is a bad value, not an unknown server
                assert "is not an IP address" in err.value.status_description


def test_strict_group_passes_over_a_spare_of_another_generation(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        conn = gm.connection()
        job = wait_job(conn, failover(conn, HostName="db01.example.com"))
        assert job["JobState"] == 7
        assert (job["TargetEnclosureName"], job["TargetBayName"]) == ("enc04", "8")


def test_empty_spare_pool_ends_in_exception_and_says_the_source_stays_off(
    tmp_path: Path,
) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        conn = gm.connection()
        job = wait_job(conn, failover(conn, HostName="lab01.example.com"))
        assert job["JobState"] == 10
        assert job["CurrentStep"] == "pick_spare"
        assert "no qualified spare" in job["ErrorDescription"]
        assert "stays powered off" in job["ErrorDescription"]
        assert bay(conn, "enc05", "1")["PowerState"] == "off"
        assert bay(conn, "enc05", "1")["ProfileName"] == "lab01-profile"
        group = conn.GetInstance(
            pywbem.CIMInstanceName("GM_DomainGroup", {"Name": "dg-lab"}, "root/cimv2")
        )
        assert group["Locked"] is False


def test_maintenance_refuses_failovers_and_moves_until_completed(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        conn = gm.connection()
        assert invoke(conn, "setMaintenance", DomainGroup="dg-web", Action="start")[0] == 0
        with pytest.raises(pywbem.CIMError) as err:
            invoke(conn, "failoverProfile", HostName="web01.example.com")
        assert err.value.status_code == 1 and "maintenance" in err.value.status_description
        with pytest.raises(pywbem.CIMError) as err:
            invoke(
                conn,
                "moveProfile",
                ProfileName="web01-profile",
                TargetEnclosureName="enc01",
                TargetBayName="5",
                PowerOn=True,
            )
        assert err.value.status_code == 1 and "maintenance" in err.value.status_description
        assert invoke(conn, "setMaintenance", DomainGroup="dg-web", Action="complete")[0] == 0
        assert wait_job(conn, failover(conn, HostName="web01.example.com"))["JobState"] == 7


def test_a_second_failover_in_the_same_group_queues_then_runs(tmp_path: Path) -> None:
    cfg = config(simulator={"delay_ms": {"power_on": 400}})
    with provider_process(tmp_path, config=cfg) as gm:
        conn = gm.connection()
        first = failover(conn, HostName="web01.example.com")
        second = failover(conn, HostName="web02.example.com")
        assert conn.GetInstance(second)["JobState"] == 2  # New: queued behind the first
        one, two = wait_job(conn, first), wait_job(conn, second)
        assert one["JobState"] == 7 and two["JobState"] == 7
        assert two["StartTime"].datetime >= one["TimeOfLastStateChange"].datetime
        assert (one["TargetBayName"], two["TargetBayName"]) == ("12", "6")


def test_failovers_in_different_groups_run_concurrently(tmp_path: Path) -> None:
    cfg = config(simulator={"delay_ms": {"power_off": 600}})
    with provider_process(tmp_path, config=cfg) as gm:
        conn = gm.connection()
        web = failover(conn, HostName="web01.example.com")
        db = failover(conn, HostName="db01.example.com")
        a, b = wait_job(conn, web), wait_job(conn, db)
        assert a["JobState"] == 7 and b["JobState"] == 7
        # Each job spends 0.6 s powering off; run one after the other they could not overlap.
        assert b["StartTime"].datetime < a["TimeOfLastStateChange"].datetime
        assert a["StartTime"].datetime < b["TimeOfLastStateChange"].datetime


def test_move_profile_to_a_chosen_bay_and_cancel_a_queued_job(tmp_path: Path) -> None:
    cfg = config(simulator={"delay_ms": {"power_on": 500}})
    with provider_process(tmp_path, config=cfg) as gm:
        conn = gm.connection()
        rv, out = invoke(
            conn,
            "moveProfile",
            ProfileName="web01-profile",
            TargetEnclosureName="enc01",
            TargetBayName="5",
            PowerOn=True,
        )
        assert rv == 4096
        queued = failover(conn, HostName="web02.example.com")
        assert invoke(conn, "cancelJob", JobID=queued["InstanceID"].rsplit(":", 1)[1])[0] == 0
        deadline = time.monotonic() + 10  # the move holds the group (power_on takes 0.5 s)
        while conn.GetInstance(out["Job"])["JobState"] not in (3, 4):
            assert time.monotonic() < deadline, "the move job never started"
            time.sleep(0.02)
        with pytest.raises(pywbem.CIMError) as err:  # a running job cannot be cancelled
            invoke(conn, "cancelJob", JobID=out["JobID"])
        assert err.value.status_code == 1
        moved = wait_job(conn, out["Job"])
        assert moved["JobState"] == 7 and moved["JobType"] == "move"
        assert "pick_spare" not in moved["StepsDone"] and "check_target" in moved["StepsDone"]
        assert conn.GetInstance(queued)["JobState"] == 8
        assert bay(conn, "enc01", "5")["ProfileName"] == "web01-profile"
        assert bay(conn, "enc01", "5")["PowerState"] == "on"
        with pytest.raises(pywbem.CIMError) as err:
            invoke(
                conn,
                "moveProfile",
                ProfileName="web02-profile",
                TargetEnclosureName="enc04",
                TargetBayName="5",
                PowerOn=False,
            )
        assert err.value.status_code == 1 and "domain group" in err.value.status_description


def test_set_spare_designates_and_refuses_a_bay_with_a_profile(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        conn = gm.connection()
        assert invoke(conn, "setSpare", EnclosureName="enc05", BayName="3", IsSpare=True)[0] == 0
        assert bay(conn, "enc05", "3")["IsSpare"] is True
        with pytest.raises(pywbem.CIMError) as err:
            invoke(conn, "setSpare", EnclosureName="enc01", BayName="3", IsSpare=True)
        assert err.value.status_code == 1 and "web01-profile" in err.value.status_description
        with pytest.raises(pywbem.CIMError) as err:
            invoke(conn, "setSpare", EnclosureName="enc01", BayName="99", IsSpare=True)
        assert err.value.status_code == 6


def test_failover_needs_the_administrator_by_default(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        with pytest.raises(pywbem.CIMError) as err:
            invoke(gm.connection("operator"), "failoverProfile", HostName="web01.example.com")
        assert err.value.status_code == 2


def test_a_standby_refuses_failover_with_the_spec_text(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/gm.db"
    with provider_process(tmp_path, config=config(), store_url=store):
        standby = configure(
            tmp_path, node="gm2", config=config(roles={"start_as": "standby"}), store_url=store
        )
        standby.start()
        try:
            conn = standby.connection()
            with pytest.raises(pywbem.CIMError) as err:
                invoke(conn, "failoverProfile", HostName="web01.example.com")
            assert err.value.status_code == 1
            assert err.value.status_description == "CIM_ERR_FAILED: " + STANDBY_TEXT
            # Reads work on the standby.
            assert len(conn.EnumerateInstances("GM_DeviceBay")) == 72
        finally:
            standby.stop()


def test_a_name_awaiting_rediscovery_says_where_the_server_went(tmp_path: Path) -> None:
    """After a failover the host name and IPs are dropped until discovery finds the server on
    the spare (10 minutes by default); a failover by name meanwhile answered only "No server
    is known by host ...", and the request file example failed with no hint."""
    settings = config(vcem={"rediscovery_delay_s": 600})
    with provider_process(tmp_path, config=settings) as gm:
        conn = gm.connection()
        job = wait_job(conn, failover(conn, HostName="web01.example.com"))
        assert job["JobState"] == 7
        target = (job["TargetEnclosureName"], job["TargetBayName"])
        for source in ({"HostName": "web01.example.com"}, {"IPAddress": "192.0.2.11"}):
            with pytest.raises(pywbem.CIMError) as err:
                invoke(conn, "failoverProfile", **source)
            text = err.value.status_description
            assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
            assert f"moved its profile to {target[0]} bay {target[1]}" in text, text
            assert f"-enclosurename {target[0]} -bayname {target[1]}" in text


def test_a_name_follows_a_failover_of_a_failover_and_a_failed_one(tmp_path: Path) -> None:
    """The server failed over again by bay before discovery found it: the hint named the
    first spare, which no longer held the profile; and after a failed power-on the names were
    lost with no hint at all."""
    settings = config(
        vcem={"rediscovery_delay_s": 600},
        simulator={"fail": {"power_on": ["enc02/6"]}},  # the second spare web01 gets
    )
    with provider_process(tmp_path, config=settings) as gm:
        conn = gm.connection()
        first = wait_job(conn, failover(conn, HostName="web01.example.com"))
        assert first["JobState"] == 7
        second = wait_job(
            conn,
            failover(
                conn,
                EnclosureName=first["TargetEnclosureName"],
                BayName=first["TargetBayName"],
            ),
        )
        assert second["JobState"] == 10, second["ErrorDescription"]
        where = (second["TargetEnclosureName"], second["TargetBayName"])
        assert where == ("enc02", "6")
        for source in ({"HostName": "web01.example.com"}, {"IPAddress": "192.0.2.11"}):
            with pytest.raises(pywbem.CIMError) as err:
                invoke(conn, "failoverProfile", **source)
            text = err.value.status_description
            assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
            assert f"Job {second['JobID']} moved its profile to enc02 bay 6 and ended in " in text
            assert "-enclosurename enc02 -bayname 6" in text, text
