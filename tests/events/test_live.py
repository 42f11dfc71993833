"""Automatic event handling end to end (SPEC 4.4, seed 000's third way to initiate failover):
real export requests built from pywbem CIM objects, a real provider pair, a real SMTP
listener. Every test looks at three things: the decision recorded (GM_EventDecision), the
jobs (GM_ConcreteJob) and the mail."""

from __future__ import annotations

import json
import time
from typing import Any

import pywbem

from tests.events._wire import _wait, body_of, indication, send
from tests.events.conftest import World
from tests.harness import ProviderHandle

# The mail is sent after the export response; "no mail" is checked after this grace period.
MAIL_GRACE = 0.7


def _one(world: World, system: str, node: ProviderHandle | None = None) -> pywbem.CIMInstance:
    found = world.decisions_about(system, node)
    assert len(found) == 1, [(d["Decision"], d["Reason"]) for d in found]
    return found[0]


def _audited_failovers(node: ProviderHandle) -> list[dict[str, Any]]:
    """The audit records of failovers that events started (operation ExportIndication)."""
    path = node.workdir / f"{node.node}-state" / "audit.log"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    records = [json.loads(line) for line in lines]
    return [r for r in records if r["operation"] == "ExportIndication"]


def test_alert_mode_event_mails_and_starts_nothing(world: World) -> None:
    jobs = world.job_ids()
    send(world.active.port, indication(EventID="6015", SystemName="web02.example.com"))
    decision = _one(world, "web02.example.com")
    assert decision["Decision"] == "alerted"
    assert decision["Rule"] == "memory-alert" and decision["Mode"] == "alert"
    assert (decision["EnclosureName"], decision["BayName"]) == ("enc01", "4")
    assert decision["JobID"] is None and decision["Notified"] is True
    mail = world.inbox.wait_for("web02.example.com")
    assert "verify" in str(mail["Subject"])
    body = body_of(mail)
    assert "EventID 6015" in body and "vcemcli -failover -enclosurename enc01 -bayname 4" in body
    assert world.job_ids() == jobs


def test_failover_mode_event_starts_one_job_and_mails_its_number(world: World) -> None:
    jobs = world.job_ids()
    # AlertingManagedElement as a WBEM path of the system, as CIM_AlertIndication sends it.
    element = (
        'root/cimv2:CIM_ComputerSystem.CreationClassName="CIM_ComputerSystem",'
        'Name="web01.example.com"'
    )
    event = indication(
        EventID="1001",
        PerceivedSeverity=5,
        AlertType=5,
        Description="CPU error threshold passed",
        AlertingManagedElement=element,
    )
    send(world.active.port, event)
    new = world.job_ids() - jobs
    assert len(new) == 1
    job_id = new.pop()
    decision = _one(world, "web01.example.com")
    assert decision["Decision"] == "failover-started"
    assert decision["JobID"] == job_id and decision["Rule"] == "pre-failure-failover"
    job = world.active.connection().GetInstance(
        pywbem.CIMInstanceName("GM_ConcreteJob", {"InstanceID": f"GM:ConcreteJob:{job_id}"})
    )
    # The audit log has the failover as it has a failoverProfile call, started by the event.
    audited = [r for r in _audited_failovers(world.active) if r.get("job") == job_id]
    assert len(audited) == 1, _audited_failovers(world.active)
    assert audited[0]["method"] == "failoverProfile" and audited[0]["user"] == "admin"
    assert audited[0]["outcome"] == "success" and audited[0]["return_value"] == 4096
    assert audited[0]["params"] == {"HostName": "web01.example.com"}
    assert job["JobType"] == "failover" and job["SourceEnclosureName"] == "enc01"
    assert job["SourceBayName"] == "3" and job["Owner"] == "admin"
    mail = world.inbox.wait_for(f"job {job_id} started")
    assert "web01.example.com" in str(mail["Subject"])
    body = body_of(mail)
    assert f"Job:       {job_id}" in body and "CPU error threshold passed" in body

    # The same event again, and a different failover event for the same system, within the
    # cool-down: recorded, nothing started, nothing mailed (first occurrence). Wait for the
    # job first: the move drops the source's host name and IPs from discovery until the spare
    # is rediscovered (reference §1.6), and the cool-down must hold in that window too.
    world.wait_job(job_id)
    send(world.active.port, event)
    send(world.active.port, indication(EventID="2005", PerceivedSeverity=6, IPAddress="192.0.2.11"))
    assert world.job_ids() - jobs == {job_id}
    repeats = [d for d in world.decisions_about("web01") if d["Decision"] != "failover-started"]
    repeats += [
        d for d in world.decisions_about("192.0.2.11") if d["Decision"] != "failover-started"
    ]
    assert [d["Decision"] for d in repeats] == ["suppressed-duplicate"] * 2
    assert all(f"failover job {job_id} was started" in d["Reason"] for d in repeats)
    assert not any(d["Notified"] for d in repeats)
    # The job's end is mailed too (once): completed, and where the profile is now.
    ended = world.inbox.wait_for(f"job {job_id} completed")
    assert "enclosure enc01 bay 12" in body_of(ended), body_of(ended)
    time.sleep(MAIL_GRACE)
    assert len(world.inbox.about("web01.example.com")) == 2


def test_outside_the_time_window_nothing_happens(world: World) -> None:
    jobs = world.job_ids()
    send(world.active.port, indication(EventID="1001", SystemName="lab01.example.com"))
    decision = _one(world, "lab01.example.com")
    assert decision["Decision"] == "outside-window"
    assert decision["Rule"] == "lab-weekend-failover" and decision["Notified"] is False
    assert "UTC time" in decision["Reason"]
    time.sleep(MAIL_GRACE)
    assert world.inbox.about("lab01.example.com") == []
    assert world.job_ids() == jobs


def test_kill_switch_holds_until_switched_back(world: World) -> None:
    conn = world.active.connection()
    jobs = world.job_ids()
    rv, _ = conn.InvokeMethod(
        "setAutomaticFailover", "GM_GroupManager", DomainGroup="dg-db", Enabled=False
    )
    assert rv == 0
    group = conn.GetInstance(pywbem.CIMInstanceName("GM_DomainGroup", {"Name": "dg-db"}))
    assert group["AutomaticFailoverDisabled"] is True
    # db01 by one of its IP addresses.
    send(world.active.port, indication(EventID="2005", PerceivedSeverity=5, IPAddress="10.0.4.31"))
    decision = _one(world, "10.0.4.31")
    assert decision["Decision"] == "kill-switch" and decision["DomainGroup"] == "dg-db"
    assert world.job_ids() == jobs
    mail = world.inbox.wait_for("Automatic failover is disabled")
    assert "10.0.4.31" in str(mail["Subject"]) and "enc04 bay 1" in str(mail["Subject"])
    # As an alert: the line to fail over by hand once the problem is verified.
    assert "vcemcli -failover -enclosurename enc04 -bayname 1" in body_of(mail)
    # Switching it needs manageEventRules (administrator by default).
    try:
        world.active.connection("operator").InvokeMethod(
            "setAutomaticFailover", "GM_GroupManager", DomainGroup="dg-db", Enabled=True
        )
        raise AssertionError("an operator switched the kill switch")
    except pywbem.CIMError as exc:
        assert exc.status_code == pywbem.CIM_ERR_ACCESS_DENIED
    conn.InvokeMethod("setAutomaticFailover", "GM_GroupManager", DomainGroup="dg-db", Enabled=True)
    group = conn.GetInstance(pywbem.CIMInstanceName("GM_DomainGroup", {"Name": "dg-db"}))
    assert group["AutomaticFailoverDisabled"] is False


def test_event_for_an_unknown_system_is_recorded_and_mailed_never_guessed(world: World) -> None:
    jobs = world.job_ids()
    # "db02" is the short name of db02.example.com: close, but not what discovery knows.
    send(world.active.port, indication(EventID="1001", PerceivedSeverity=6, SystemName="db02"))
    decision = _one(world, "db02")
    assert decision["Decision"] == "unknown-system"
    assert decision["EnclosureName"] is None and decision["BayName"] is None
    assert "never guessed" in decision["Reason"]
    mail = world.inbox.wait_for("unknown system: db02")
    assert "No failover was started" in body_of(mail)
    assert world.job_ids() == jobs
    assert all(d["SystemName"] != "db02.example.com" for d in world.decisions())


def test_an_event_about_a_server_a_job_moved_says_where_it_is(world: World) -> None:
    """Until discovery finds a moved server, its names resolve to no bay: the decision told
    the person on call to fix the inventory, where a failover by name says where the job
    put the profile."""
    conn = world.active.connection()
    rv, out = conn.InvokeMethod(
        "moveProfile",
        "GM_GroupManager",
        ProfileName="lab02-profile",
        TargetEnclosureName="enc05",
        TargetBayName="3",
        PowerOn=False,
    )
    assert rv == 4096
    job = int(out["JobID"])
    world.wait_job(job)
    send(world.active.port, indication(EventID="6015", SystemName="lab02.example.com"))
    decision = _one(world, "lab02.example.com")
    assert decision["Decision"] == "unknown-system"
    assert f"Job {job} moved its profile lab02-profile to enc05 bay 3" in decision["Reason"]
    mail = world.inbox.wait_for("unknown system: lab02.example.com")
    assert "The decision says where a job moved it" in body_of(mail)
    assert "Check the host name" not in body_of(mail)


def test_a_standby_never_starts_a_job(world: World) -> None:
    jobs = world.job_ids()
    send(
        world.standby.port,
        indication(EventID="1001", PerceivedSeverity=5, SystemName="web03.example.com"),
    )
    decision = _one(world, "web03.example.com", node=world.standby)
    assert decision["Decision"] == "not-active" and decision["Node"] == "gm2"
    assert decision["JobID"] is None
    assert world.job_ids() == jobs
    mail = world.inbox.wait_for("Standby Group Manager gm2")
    assert "web03.example.com" in str(mail["Subject"])
    # The standby wrote nothing to the shared store: the active does not list it.
    assert world.decisions_about("web03.example.com") == []


def test_failover_needs_the_senders_failover_privilege(world: World) -> None:
    jobs = world.job_ids()
    send(
        world.active.port,
        indication(EventID="1001", PerceivedSeverity=7, SystemName="app01.example.com"),
        user="reader",
    )
    decision = _one(world, "app01.example.com")
    assert decision["Decision"] == "failover-refused" and decision["Sender"] == "reader"
    assert "failoverProfile needs the administrator role" in decision["Reason"]
    assert world.job_ids() == jobs
    refused = [r for r in _audited_failovers(world.active) if r["user"] == "reader"]
    assert [(r["outcome"], r["error"]) for r in refused] == [("error", "CIM_ERR_ACCESS_DENIED")]
    assert refused[0]["params"] == {"HostName": "app01.example.com"}
    world.inbox.wait_for("Automatic failover refused for app01.example.com")


def test_rules_are_visible_through_cim(world: World) -> None:
    rules = {r["Name"]: r for r in world.active.connection().EnumerateInstances("GM_EventRule")}
    assert list(rules) == ["lab-weekend-failover", "pre-failure-failover", "memory-alert"]
    rule = rules["pre-failure-failover"]
    assert rule["Mode"] == "failover" and rule["Position"] == 2
    assert rule["PropertyMatches"] == ["EventID=1001|2005", "PerceivedSeverity=5|6|7"]
    assert rule["DomainGroups"] == ["dg-web", "dg-db"] and rule["CooldownMinutes"] == 30
    assert rule["Source"] == f"{world.rules}:12"
    assert rules["lab-weekend-failover"]["TimeWindows"][0].endswith("00:00-24:00")


def test_an_indication_cannot_add_lines_to_the_log_or_the_mail(world: World) -> None:
    """Line breaks in an indication's texts are written as escapes: a Description carrying a
    made-up log record and a made-up "Decision:" line appeared as lines of their own."""
    forged_log = "2026-12-07 00:41:00,000 WARNING provider.auth: login refused: user 'admin'"
    forged_mail = "Decision:  failover-started: failover job 99 started"
    send(
        world.active.port,
        indication(
            EventID="6015",
            SystemName="web02.example.com",
            Description=f"memory error\n{forged_log}\n{forged_mail}\u2028x",
        ),
        user="operator",  # its own first occurrence (another sender alerted about web02)
    )
    mails = _wait(lambda: [m for m in world.inbox.messages if forged_mail in body_of(m)], 10)
    assert len(mails) == 1, [m["Subject"] for m in world.inbox.messages]
    body = body_of(mails[0])
    assert "memory error\\x0a2026-12-07" in body
    assert not any(line.startswith((forged_mail, forged_log)) for line in body.splitlines())
    assert "\u2028" not in body and "\\u2028x" in body
    assert not any(line.startswith(forged_log) for line in world.active.log.splitlines())
