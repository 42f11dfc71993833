"""GiCAP through real CIM-XML calls: a `gm-provider serve` subprocess per test (tests/harness).

The prober is `static` with a JSON state file the tests rewrite to bring hosts down and back;
the crontab is a real file (python-crontab's `tabfile=` mode); the clock is moved with the
test-only `[gicap] test_clock_offset_file`; notifications go to a real SMTP listener
(aiosmtpd on 127.0.0.1). Inventory: tests/gicap/inventory.toml (the same [gicap] part as
etc/inventory.example.toml).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import pywbem
from aiosmtpd.controller import Controller

from cli._client import CimClient, CimError, Param
from tests.harness import USERS, ProviderHandle, configure

INVENTORY = Path(__file__).parent / "inventory.toml"
ROOT = Path(__file__).resolve().parents[2]
A_HOSTS = ["hostA1.example.com", "hostA2.example.com", "hostA3.example.com"]
B_HOSTS = ["hostB1.example.com", "hostB2.example.com"]
SEED_003 = (
    'DESCRIPTION="CIM_ERR_FAILED: This system is not an active Group Manager.&#10;Only an '
    "active Group Manager can check to see if it can reconnect to members&#10;from which "
    'usage rights were previously seized.&#10;"'
)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[tuple[_Inbox, int]]:
    handler = _Inbox()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@dataclass
class World:
    tmp: Path
    hosts_file: Path
    clock_file: Path
    crontab: Path
    nodes: list[ProviderHandle] = field(default_factory=list)

    def hosts(self, **states: str) -> None:
        """hosts(down=[...]) / hosts(up=[...]): the static prober's view, re-read per probe."""
        current = json.loads(self.hosts_file.read_text()) if self.hosts_file.exists() else {}
        for state, names in states.items():
            current.update(dict.fromkeys(names, state))
        self.hosts_file.write_text(json.dumps(current))

    def advance(self, delta: timedelta) -> None:
        now = float(self.clock_file.read_text() or 0) if self.clock_file.exists() else 0.0
        self.clock_file.write_text(str(now + delta.total_seconds()))

    def config(self, smtp_port: int | None = None, **roles: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "probe": {"method": "static", "state_file": str(self.hosts_file), "timeout": 0.5},
            "gicap": {
                "crontab": str(self.crontab),
                "tick": 0.2,
                "rebalance_minutes": 0.005,
                "test_clock_offset_file": str(self.clock_file),
            },
        }
        if smtp_port is not None:
            cfg["notify"] = {
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
                "to": ["root@localhost"],
            }
        if roles:
            cfg["roles"] = roles
        return cfg

    def start(self, node: str = "gm1", **kwargs: Any) -> ProviderHandle:
        handle = configure(
            self.tmp,
            node=node,
            config=self.config(**kwargs),
            inventory=INVENTORY,
            store_url=f"sqlite:///{self.tmp}/gm.db",
        )
        handle.start()
        self.nodes.append(handle)
        return handle

    def cron_lines(self) -> list[str]:
        if not self.crontab.exists():
            return []
        return [x for x in self.crontab.read_text().splitlines() if x.strip()]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, tmp_path / "hosts.json", tmp_path / "clock", tmp_path / "crontab")
    w.hosts(up=[])
    try:
        yield w
    finally:
        for node in reversed(w.nodes):
            node.stop()


def _wait(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _member(gm: ProviderHandle, name: str) -> Any:
    return gm.connection().GetInstance(
        pywbem.CIMInstanceName("GM_GroupMember", keybindings={"Name": name})
    )


_TYPES = {bool: "boolean", int: "uint32", str: "string"}


def _invoke(gm: ProviderHandle, method: str, **params: Any) -> tuple[Any, Any]:
    """Through cli._client over HTTP as the capacity administrator. (pywbem 1.9 turns every
    boolean OUT parameter into True: it applies cimvalue() to the text "FALSE".)"""
    client = CimClient(gm.url, "capacity", USERS["capacity"][1])
    args = [Param(k, _TYPES[type(v)], v) for k, v in params.items()]
    return client.invoke(method, args)


def _when(cim: str) -> datetime:
    return datetime.strptime(cim[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _cron_run(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a crontab line's command as cron does: `sh -c` on the text after the 5 fields."""
    command = line.split(None, 5)[5].split(" # ")[0]
    return subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, text=True, env=env, timeout=60
    )


def test_seizing_from_a_reachable_partition_is_refused(world: World) -> None:
    gm = world.start()
    with pytest.raises(CimError) as err:
        _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    assert err.value.code == 1
    assert "answered the down check" in err.value.description
    assert "every host of the partition is down" in err.value.description
    with pytest.raises(CimError) as err:
        _invoke(gm, "seizeRights", HostName="nosuch.example.com")
    assert err.value.code == 6
    assert world.cron_lines() == []


def test_partial_outage_seizes_the_reference_count_permanently(
    world: World, inbox: tuple[_Inbox, int]
) -> None:
    """Reference §3.2: "2-cell partition consuming 6 rights → 4 seized"; another partition
    answers, so the seizure is permanent (§3.3) and no cron entry is needed."""
    mails, port = inbox
    gm = world.start(smtp_port=port)
    world.hosts(down=["hostA1.example.com"])
    rv, out = _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    assert rv == 0 and out["SeizedCores"] == 4 and out["Deferred"] is False
    assert out.get("Expiration") is None
    seizures = gm.connection().EnumerateInstances("GM_RightsSeizure")
    assert [(s["Partition"], s["SeizedCores"], s["State"]) for s in seizures] == [
        ("npar0", 4, "permanent")
    ]
    with pytest.raises(CimError) as err:  # once per hard partition (§3.1)
        _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    assert "once per hard partition" in err.value.description
    assert world.cron_lines() == []
    # Mailed as a loan is: whoever is on call gets the 12-hour instruction too.
    _wait("seizure e-mail", lambda: any("inactive group member" in s for s in mails.subjects()))


class _HeldInbox(_Inbox):
    """A mail server that takes the message only once `release` is set (a slow one)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.set()
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        return await super().handle_DATA(server, session, envelope)


def test_a_seizure_is_answered_and_audited_without_waiting_for_the_mail_server(
    world: World,
) -> None:
    """The seizure's mail went out before the method answered: a mail server that took 10 s
    (the notify timeout) held icapmanage, and the audit line, as long."""
    held = _HeldInbox()
    controller = Controller(held, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        gm = world.start(smtp_port=controller.port)
        world.hosts(down=["hostA1.example.com"])
        rv, out = _invoke(gm, "seizeRights", HostName="hostA1.example.com")
        assert rv == 0 and out["SeizedCores"] == 4
        audit = gm.workdir / f"{gm.node}-state" / "audit.log"
        lines = [json.loads(x) for x in audit.read_text(encoding="utf-8").splitlines()]
        assert [x["method"] for x in lines if x["method"] == "seizeRights"] == ["seizeRights"]
        assert held.arrived.wait(10), "the seizure's mail was never sent"
        assert held.messages == []  # the mail server still holds it: the call did not wait
        held.release.set()
        _wait("seizure e-mail", lambda: any("inactive group member" in s for s in held.subjects()))
    finally:
        held.release.set()
        controller.stop()


def test_complete_outage_scavenges_the_member_and_installs_the_cron_entry(
    world: World, inbox: tuple[_Inbox, int]
) -> None:
    mails, port = inbox
    gm = world.start(smtp_port=port)
    world.hosts(down=A_HOSTS)
    before = datetime.now(UTC)
    _, out = _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    assert out["Deferred"] is True and out["SeizedCores"] == 4
    expiry = _when(out["Expiration"])
    assert (
        before.replace(microsecond=0) + timedelta(days=10)
        <= expiry
        <= datetime.now(UTC) + timedelta(days=10)
    )
    assert _member(gm, "memberA")["Scavenged"] is True
    lines = world.cron_lines()
    assert len(lines) == 1 and "node=gm1" in lines[0]
    assert f"{ROOT}/etc/requests/GiCAP.checkScavengedMember.xml" in lines[0]
    # cron runs it: wbemexec over the local socket, the member still down.
    run = _cron_run(lines[0], {"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert '<METHODRESPONSE NAME="checkScavengedMember">' in run.stdout
    assert "<VALUE>\n1\n</VALUE>" in run.stdout  # Remaining: one scavenged member
    # the seizure e-mail (reference §3.3: rights "acquired from an inactive group member")
    _wait("seizure e-mail", lambda: any("inactive group member" in s for s in mails.subjects()))
    # idempotent: a second deferred seizure keeps one entry
    _invoke(gm, "seizeRights", HostName="hostA2.example.com")
    assert len(world.cron_lines()) == 1


def test_reconnection_turns_the_seizure_into_a_loan_and_removes_the_entry(world: World) -> None:
    gm = world.start()
    world.hosts(down=A_HOSTS)
    _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    assert len(world.cron_lines()) == 1
    world.hosts(up=["hostA3.example.com"])  # a vPar of the other nPar boots
    _, out = _invoke(gm, "checkScavengedMember")
    assert list(out["Reconnected"]) == ["memberA"] and out["Remaining"] == 0
    [seizure] = gm.connection().EnumerateInstances("GM_RightsSeizure")
    assert seizure["State"] == "loan"
    assert world.cron_lines() == []
    assert _member(gm, "memberA")["Scavenged"] is False


def test_expiry_reverts_and_the_entry_goes_only_after_the_last_member(
    world: World, inbox: tuple[_Inbox, int]
) -> None:
    mails, port = inbox
    gm = world.start(smtp_port=port)
    world.hosts(down=A_HOSTS + B_HOSTS)
    _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    world.advance(timedelta(days=5))
    _invoke(gm, "seizeRights", HostName="hostB1.example.com")
    assert len(world.cron_lines()) == 1
    world.advance(timedelta(days=5, hours=1))  # A's loan expired, B's has 4 days left
    _, out = _invoke(gm, "checkScavengedMember")
    assert list(out["Reverted"]) == ["memberA"] and out["Remaining"] == 1
    assert len(world.cron_lines()) == 1  # memberB still has rights seized pending
    states = {
        s["Member"]: s["State"] for s in gm.connection().EnumerateInstances("GM_RightsSeizure")
    }
    assert states == {"memberA": "reverted", "memberB": "pending"}
    world.advance(timedelta(days=5))
    _, out = _invoke(gm, "checkScavengedMember")
    assert list(out["Reverted"]) == ["memberB"] and out["Remaining"] == 0
    assert world.cron_lines() == []
    _, out = _invoke(gm, "checkScavengedMember")  # idempotent
    assert out["Remaining"] == 0 and world.cron_lines() == []
    _wait("revert e-mails", lambda: sum("expired and reverted" in s for s in mails.subjects()) == 2)


def test_seed003_ticap_race_activation_needs_temporary_capacity(world: World) -> None:
    """Seed 003: the rebalance takes the seized rights for memberC (burning TiCAP) before the
    failover activation; without TiCAP it fails, with TiCAP it succeeds, and the group's
    TiCAP consumption stays the same (2 cores)."""
    gm = world.start()
    group = lambda: gm.connection().EnumerateInstances("GM_CapacityGroup")[0]  # noqa: E731
    assert group()["CoresUsingTemporaryCapacity"] == 2
    world.hosts(down=["hostA1.example.com"])
    _invoke(gm, "seizeRights", HostName="hostA1.example.com")  # 4 seized, permanent
    _wait("rebalance", lambda: _member(gm, "memberC")["CoresUsingTemporaryCapacity"] == 0)
    assert group()["AvailableCoreRights"] == 2
    with pytest.raises(CimError) as err:
        _invoke(gm, "activateCores", HostName="hostB1.example.com", Count=4)
    assert err.value.description.endswith(
        "iCAP authorization denied for partition npar0.\nError: Insufficient usage rights or "
        "temporary capacity for 4 additional cores."
    )
    rv, out = _invoke(
        gm,
        "activateCores",
        HostName="hostB1.example.com",
        Count=4,
        UseTemporaryCapacity=True,
    )
    assert rv == 0 and out["ActiveCores"] == 8 and out["UsageRights"] == 10
    assert group()["CoresUsingTemporaryCapacity"] == 2
    assert _member(gm, "memberB")["CoresUsingTemporaryCapacity"] == 2


def test_standby_refuses_check_scavenged_member_as_cron_sees_it(world: World) -> None:
    """Seed 003, byte for byte: the cron mail of `wbemexec GiCAP.checkScavengedMember.xml`
    run against a standby Group Manager."""
    world.start("gm1")
    standby = world.start("gm2", start_as="standby", lease_ttl=6.0, renew_interval=1.0)
    run = subprocess.run(
        [
            str(ROOT / ".venv/bin/wbemexec"),
            str(ROOT / "etc/requests/GiCAP.checkScavengedMember.xml"),
        ],
        capture_output=True,
        text=True,
        env=standby.env(),
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    # The whole cron mail body of seed 003 (its PDF wraps the ERROR line; it is one line).
    assert run.stdout.splitlines() == [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<CIM CIMVERSION="2.0" DTDVERSION="2.0">',
        '<MESSAGE ID="" PROTOCOLVERSION="1.0">',
        "<SIMPLERSP>",
        '<METHODRESPONSE NAME="checkScavengedMember">',
        f'<ERROR CODE="1" {SEED_003}/>',
        "</METHODRESPONSE>",
        "</SIMPLERSP>",
        "</MESSAGE>",
        "</CIM>",
    ]


def test_new_active_reinstalls_the_entry_after_takeover(world: World) -> None:
    gm1 = world.start("gm1", lease_ttl=6.0, renew_interval=1.0)
    gm2 = world.start("gm2", start_as="standby", lease_ttl=6.0, renew_interval=1.0)
    world.hosts(down=A_HOSTS)
    _invoke(gm1, "seizeRights", HostName="hostA1.example.com")
    assert [("node=gm1" in x) for x in world.cron_lines()] == [True]
    gm2.connection().InvokeMethod("takeControl", "GM_GroupManager", Force=True)
    _wait("gm2's entry", lambda: any("node=gm2" in x for x in world.cron_lines()))
    _wait("gm1 drops its entry", lambda: not any("node=gm1" in x for x in world.cron_lines()))
    assert len(world.cron_lines()) == 1


def test_a_crontab_that_could_not_be_written_is_written_once_it_can_be(
    tmp_path: Path,
) -> None:
    """The entry is retried by the background pass, not only by the next capacity method."""
    blocked = tmp_path / "cron"
    blocked.write_text("a file where the crontab's directory should be\n")
    world = World(tmp_path, tmp_path / "hosts.json", tmp_path / "clock", blocked / "crontab")
    world.hosts(down=A_HOSTS)
    gm = world.start()
    try:
        _, out = _invoke(gm, "seizeRights", HostName="hostA1.example.com")
        assert out["Deferred"] is True  # committed, whatever the crontab
        _wait("the failure logged", lambda: "Cannot update the checkScavengedMember" in gm.log)
        assert "retries every 0.2 s" in gm.log
        blocked.unlink()
        blocked.mkdir()  # the administrator mends it; nothing else happens
        _wait("the entry", lambda: len(world.cron_lines()) == 1)
        assert "node=gm1" in world.cron_lines()[0]
        _wait("the log says so", lambda: "can be written again" in gm.log)
        assert gm.log.count("Cannot update the checkScavengedMember") == 1  # said once
    finally:
        gm.stop()


def test_the_entry_names_the_socket_even_when_the_server_had_it_from_its_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Started as an administrator does after `export GM_PROVIDER_SOCKET=...`: cron has no
    # such variable, so the entry must carry it (it once compared with the variable and left
    # it out: the entry could never reach the server).
    socket_path = world.tmp / "gm1-state" / "cimxml.socket"
    monkeypatch.setenv("GM_PROVIDER_SOCKET", str(socket_path))
    gm = world.start()
    world.hosts(down=A_HOSTS)
    _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    [line] = world.cron_lines()
    assert f"GM_PROVIDER_SOCKET={socket_path} " in line
    run = _cron_run(line, {"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert '<METHODRESPONSE NAME="checkScavengedMember">' in run.stdout


def test_cores_activated_on_a_scavenged_member_reconnect_it_and_end_the_entry(
    world: World,
) -> None:
    gm = world.start()
    world.hosts(down=A_HOSTS)
    _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    assert len(world.cron_lines()) == 1
    _invoke(gm, "activateCores", HostName="hostA2.example.com", Count=1)
    [seizure] = gm.connection().EnumerateInstances("GM_RightsSeizure")
    assert seizure["State"] == "loan"
    assert world.cron_lines() == []
    assert _member(gm, "memberA")["Scavenged"] is False


def test_cores_for_a_seized_partition_that_does_not_answer_are_refused(world: World) -> None:
    gm = world.start()
    world.hosts(down=A_HOSTS)
    _invoke(gm, "seizeRights", HostName="hostA1.example.com")
    with pytest.raises(CimError) as err:
        _invoke(gm, "activateCores", HostName="hostA1.example.com", Count=2)
    assert err.value.code == 1
    assert "none of its hosts (hostA1.example.com) answers" in err.value.description
    [seizure] = gm.connection().EnumerateInstances("GM_RightsSeizure")
    assert seizure["State"] == "pending"
    assert len(world.cron_lines()) == 1


def test_icapmanage_take_control_on_the_active_keeps_it_active(world: World) -> None:
    gm = world.start()
    _, role = gm.connection().InvokeMethod("getRole", "GM_GroupManager")
    run = _icapmanage(gm, "-Q", "-n")
    assert run.returncode == 0, run.stderr
    assert run.stdout == (
        f"This system is already the active Group Manager (epoch {role['Epoch']}); "
        "it stays active.\n"
    )


def _icapmanage(gm: ProviderHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv/bin/icapmanage"), *args],
        capture_output=True,
        text=True,
        env=gm.env(),
        timeout=60,
    )


def test_icapmanage_verbs_over_the_local_socket(world: World) -> None:
    gm = world.start()
    world.hosts(down=["hostA1.example.com"])
    run = _icapmanage(gm, "-x", "hostA1.example.com")
    assert run.returncode == 0, run.stderr
    first, detail = run.stdout.splitlines()
    assert first == "4 core usage rights were seized from the hard partition of hostA1.example.com."
    # What the notice says, for whoever typed -x at 3 a.m.: permanent, what is left, the
    # 12-hour deadline, and the race with the rebalance.
    assert detail.startswith("Permanent: another partition of the member answers. 2 left")
    assert "make its cells inactive (GM_GroupMember.InactiveCells) by 20" in detail
    assert "activate cores on the partition taking over the workload" in detail
    run = _icapmanage(gm, "-x", "hostB1.example.com")
    assert run.returncode == 1
    assert run.stderr.startswith("icapmanage command failed.\nERROR: Cannot seize usage rights")
    assert _icapmanage(gm, "-a", "-g", "two").stdout == "Group two created.\n"
    run = _icapmanage(gm, "-a", "-m", "memberD:hostD1.example.com", "-g", "two")
    assert run.stdout == "Member memberD added to group two.\n"  # ref §2.6's text
    run = _icapmanage(gm, "-s", "-g", "two", "-v")
    assert "Member memberD (complex complexD)" in run.stdout
    assert _icapmanage(gm, "-r", "-g", "two").returncode == 1  # not empty
    assert _icapmanage(gm, "-r", "-m", "memberD").stdout == "Member memberD removed.\n"
    assert _icapmanage(gm, "-r", "-g", "two").stdout == "Group two removed.\n"
    # the rebalance gave 2 of the 4 seized rights to memberC: -z cannot restore all 4 (§3.4)
    _wait("rebalance", lambda: _member(gm, "memberC")["CoresUsingTemporaryCapacity"] == 0)
    run = _icapmanage(gm, "-z", "hostA1.example.com")
    assert run.returncode == 1 and "group Group1 holds 2 free" in run.stderr
    assert _icapmanage(gm, "-C", "codeword").returncode == 2
    run = _icapmanage(gm, "-x", "")  # said "give exactly one of -s, -x, ..." with -x given
    assert run.returncode == 2 and "-x needs a host name" in run.stderr, run.stderr


def test_create_instance_refuses_wrong_types_and_values_it_would_drop(world: World) -> None:
    """A uint32 Name was stored as the text "5", and SharedCoreRights=5 was dropped without
    a word: the administrator believed the group had 5 rights."""
    gm = world.start()
    conn = gm.connection()
    before = {str(g["Name"]) for g in conn.EnumerateInstances("GM_CapacityGroup")}
    bad = [
        ({"Name": pywbem.Uint32(5)}, pywbem.CIM_ERR_TYPE_MISMATCH, "is a string"),
        (
            {"Name": "g-new", "SharedCoreRights": pywbem.Uint32(5)},
            pywbem.CIM_ERR_INVALID_PARAMETER,
            "SharedCoreRights cannot be set",
        ),
        # Key values are read stripped: "trail " could be created and never addressed again.
        ({"Name": "trail "}, pywbem.CIM_ERR_INVALID_PARAMETER, "begins or ends with a space"),
    ]
    for props, code, words in bad:
        with pytest.raises(pywbem.CIMError) as err:
            conn.CreateInstance(pywbem.CIMInstance("GM_CapacityGroup", props))
        assert err.value.status_code == code, err.value
        assert words in err.value.status_description
    assert {str(g["Name"]) for g in conn.EnumerateInstances("GM_CapacityGroup")} == before
    made = conn.CreateInstance(
        pywbem.CIMInstance("GM_CapacityGroup", {"Name": "g-new", "Description": "spare pool"})
    )
    assert made.keybindings["Name"] == "g-new"
    # Modifying what cannot be set is refused with the same code as a bay's read-only
    # properties (it was CIM_ERR_NOT_SUPPORTED here, CIM_ERR_INVALID_PARAMETER there).
    group = conn.GetInstance(made)
    group["SharedCoreRights"] = pywbem.Uint32(int(group["SharedCoreRights"] or 0) + 5)
    with pytest.raises(pywbem.CIMError) as err:
        conn.ModifyInstance(group)
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "not SharedCoreRights" in err.value.status_description
    member = conn.GetInstance(pywbem.CIMInstanceName("GM_GroupMember", {"Name": "memberB"}))
    member["UsageRights"] = pywbem.Uint32(99)  # was CIM_ERR_NOT_SUPPORTED for a member
    with pytest.raises(pywbem.CIMError) as err:
        conn.ModifyInstance(member, PropertyList=["UsageRights"])
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "not UsageRights" in err.value.status_description


@pytest.mark.skipif(
    shutil.which("wbemcli") is None,
    reason="Debian's sblim-wbemcli is not installed (make test installs it as root)",
)
def test_wbemcli_reads_a_permanent_seizure(world: World) -> None:
    """The README sends wbemcli users here for boolean out parameters; it crashed (SIGSEGV)
    on the empty PARAMVALUE of a permanent seizure's NULL Expiration."""
    gm = world.start()
    world.hosts(down=["hostA1.example.com"], up=["hostA2.example.com", "hostA3.example.com"])
    url = f"http://admin:{USERS['admin'][1]}@127.0.0.1:{gm.port}/root/cimv2:GM_GroupManager"
    done = subprocess.run(
        ["wbemcli", "cm", url, "seizeRights.HostName=hostA1.example.com"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    assert "SeizedCores (uint32): 4" in done.stdout, done.stdout
    assert "Deferred (boolean): FALSE" in done.stdout
    assert "Expiration" not in done.stdout


def test_icapmanage_z_says_why_fewer_came_back(world: World) -> None:
    """-z printed only "2 core usage rights were restored"; why the other 2 of the 4 seized
    stayed with the group was in the server log only."""
    gm = world.start()
    world.hosts(down=["hostA1.example.com"])
    assert _icapmanage(gm, "-x", "hostA1.example.com").returncode == 0
    world.hosts(up=["hostA1.example.com"])  # it runs again, and takes 2 cores by itself
    _invoke(gm, "activateCores", HostName="hostA1.example.com", Count=2)
    run = _icapmanage(gm, "-z", "hostA1.example.com")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "2 core usage rights were restored to the hard partition of hostA1.example.com.",
        "The other 2 of the 4 seized stay with group Group1: the nPar intends 6 active "
        "cores, as many as before the seizure (6).",
    ]
