"""Who sent an indication decides what it may start, and silences only its own repeats.

Any authenticated user may deliver an indication. One whose failover was refused for its
own privilege (or who forged one) came first and the genuine sender's failover was recorded
as a repeat for the cool-down; and a failover an event starts was refused to a user bound to
the failed server's domain group, who may call failoverProfile for it directly.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import pywbem

from provider.http.auth import UserRecord, format_users_line, hash_password
from tests.events._wire import export_body, indication, post
from tests.events.conftest import rules_text
from tests.harness import ProviderHandle, configure, write_users

WEBOPS = ("webops", "webops-pw")  # limited-operator of dg-web only


@pytest.fixture(scope="module")
def gm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderHandle]:
    tmp: Path = tmp_path_factory.mktemp("senders")
    users = tmp / "users"
    write_users(users)
    record = UserRecord(
        WEBOPS[0], "limited-operator", hash_password(WEBOPS[1], n=2**4, r=1), ("dg-web",)
    )
    with users.open("a", encoding="utf-8") as f:
        f.write(format_users_line(record) + "\n")
    rules = tmp / "events.toml"
    rules.write_text(rules_text(), encoding="utf-8")
    node = configure(
        tmp,
        config={
            "events": {"rules": str(rules)},
            "privileges": {"failoverProfile": "limited-operator", "setSpare": "limited-operator"},
        },
    )
    node.start()
    try:
        yield node
    finally:
        node.stop()


def _send(gm: ProviderHandle, system: str, user: str, password: str | None = None) -> None:
    event = indication(EventID="1001", PerceivedSeverity=5, SystemName=system)
    if password is None:
        reply = post(gm.port, export_body(event), user=user)
    else:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        reply = post(gm.port, export_body(event), {"Authorization": f"Basic {token}"}, None)
    assert reply.status == 200 and reply.error() is None, reply.body


def _decisions(gm: ProviderHandle, system: str) -> list[tuple[str, str, str]]:
    found = gm.connection().EnumerateInstances("GM_EventDecision")
    mine = [d for d in found if system in (d["SystemName"] or "")]
    mine.sort(key=lambda d: d["Time"].datetime)
    return [(d["Sender"], d["Decision"], d["Reason"]) for d in mine]


def test_a_refused_sender_does_not_silence_the_group_s_own_operator(gm: ProviderHandle) -> None:
    _send(gm, "web01.example.com", "reader")
    _send(gm, "web01.example.com", *WEBOPS)
    (reader, reader_says, _), (webops, webops_says, why) = _decisions(gm, "web01.example.com")
    assert (reader, reader_says) == ("reader", "failover-refused")
    assert (webops, webops_says) == ("webops", "failover-started"), why
    # Its own repeat within the cool-down is a repeat.
    _send(gm, "web01.example.com", *WEBOPS)
    assert _decisions(gm, "web01.example.com")[-1][1] == "suppressed-duplicate"
    jobs = gm.connection().EnumerateInstances("GM_ConcreteJob")
    assert [j["Owner"] for j in jobs if j["Owner"] == "webops"] == ["webops"]


def test_a_group_bound_sender_may_not_fail_over_another_group(gm: ProviderHandle) -> None:
    _send(gm, "db01.example.com", *WEBOPS)
    [(sender, says, why)] = _decisions(gm, "db01.example.com")
    assert (sender, says) == ("webops", "failover-refused")
    assert "dg-db" in why and "dg-web" in why, why
    with pytest.raises(pywbem.CIMError):  # as the method answers it
        pywbem.WBEMConnection(gm.url, WEBOPS, default_namespace="root/cimv2").InvokeMethod(
            "failoverProfile", "GM_GroupManager", HostName="db01.example.com"
        )


def test_a_group_bound_user_hears_not_found_for_what_does_not_exist(gm: ProviderHandle) -> None:
    """A job or profile that does not exist was, to a user bound to some domain groups,
    "cancelJob needs the limited-operator role for every domain group"."""
    conn = pywbem.WBEMConnection(gm.url, WEBOPS, default_namespace="root/cimv2")
    for method, params, words in (
        ("cancelJob", {"JobID": pywbem.Uint32(99999)}, "No job 99999."),
        (
            "moveProfile",
            {"ProfileName": "no-such", "TargetEnclosureName": "enc01", "TargetBayName": "5"},
            "No server profile named no-such.",
        ),
        (
            "failoverProfile",
            {"HostName": "no-such-host"},
            "No server is known by host no-such-host",
        ),
        ("failoverProfile", {"IPAddress": "10.99.99.99"}, "No server is known by IP"),
        ("failoverProfile", {"EnclosureName": "enc99", "BayName": "1"}, "No enclosure named"),
        (
            "setSpare",
            {"EnclosureName": "enc01", "BayName": "99", "IsSpare": True},
            "No bay 99 in enclosure enc01.",
        ),
    ):
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod(method, "GM_GroupManager", **params)
        assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND, err.value
        assert words in err.value.status_description
