"""Privileges against a live provider: every state-changing method of GM_GroupManager (as the
server itself declares them, GetClass) and every class that accepts Create/Modify/Delete
refuses each under-privileged role with CIM_ERR_ACCESS_DENIED naming the role needed, and does
not refuse the roles that hold it (they may fail for other reasons: dummy values)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import pywbem

from provider.http.auth import UserRecord, format_users_line, hash_password
from provider.privileges import DEFAULT_ACTIONS, TableAuthorizer, allows, parse_role
from tests.harness import USERS, ProviderHandle, provider_process, write_users
from tests.security.helpers import dummy_inputs

ACCESS_DENIED = pywbem.CIM_ERR_ACCESS_DENIED
NEEDS = re.compile(r"needs the ([a-z-]+) role")
# Last: they change the pair itself (the node steps down, then takes control again).
PAIR_METHODS = ("stepDown", "takeControl")


@pytest.fixture(scope="module")
def gm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderHandle]:
    workdir: Path = tmp_path_factory.mktemp("gm-priv")
    users = workdir / "users"
    write_users(users)
    # A group-bound operator: operator rights in dg-web only.
    webops = UserRecord("webops", "operator", hash_password("webops-pw", n=2**4, r=1), ("dg-web",))
    with users.open("a", encoding="utf-8") as f:
        f.write(format_users_line(webops) + "\n")
    # setAutomaticFailover names its domain group (scope); let operators run it so the
    # group-bound operator can be tested on it.
    config = {"privileges": {"manageEventRules": "operator"}}
    with provider_process(workdir, config=config) as handle:
        yield handle


def _code(gm: ProviderHandle, user: str, method: pywbem.CIMMethod) -> tuple[int, str]:
    try:
        gm.connection(user).InvokeMethod(method.name, "GM_GroupManager", **dummy_inputs(method))
    except pywbem.CIMError as exc:
        return exc.status_code, exc.status_description
    return 0, ""


def _state_changing(gm: ProviderHandle) -> list[pywbem.CIMMethod]:
    cls = gm.connection().GetClass("GM_GroupManager", LocalOnly=False)
    reads = TableAuthorizer()
    methods = [m for m in cls.methods.values() if not reads.is_read(m.name)]
    return sorted(
        methods,
        key=lambda m: (
            m.name in PAIR_METHODS,
            PAIR_METHODS.index(m.name) if m.name in PAIR_METHODS else 0,
        ),
    )


def test_every_state_changing_method_refuses_under_privileged_roles(gm: ProviderHandle) -> None:
    methods = _state_changing(gm)
    names = {m.name for m in methods}
    assert {
        "failoverProfile",
        "moveProfile",
        "setSpare",
        "seizeRights",
        "checkScavengedMember",
        "activateCores",
        "takeControl",
        "stepDown",
    } <= names
    assert "getRole" not in names
    for method in methods:
        # The read-only user is under-privileged for all of them; the refusal names the role.
        code, text = _code(gm, "reader", method)
        assert code == ACCESS_DENIED, (method.name, code, text)
        match = NEEDS.search(text)
        assert match is not None, text
        need = parse_role(match.group(1))
        if method.name in DEFAULT_ACTIONS:
            assert need is DEFAULT_ACTIONS[method.name], method.name
        for user, (role, _) in USERS.items():
            code, text = _code(gm, user, method)
            if allows(parse_role(role), need):
                assert code != ACCESS_DENIED, (method.name, user, text)
            else:
                assert code == ACCESS_DENIED, (method.name, user, code, text)
                assert f"needs the {match.group(1)} role" in text and user in text


def _writable_classes(gm: ProviderHandle) -> dict[str, str]:
    """Classes that accept instance writes, with the role they need (from the refusal)."""
    conn = gm.connection("reader")
    writable: dict[str, str] = {}
    for name in conn.EnumerateClassNames(DeepInheritance=True):
        try:
            conn.DeleteInstance(pywbem.CIMInstanceName(name, {"Name": "no-such"}))
        except pywbem.CIMError as exc:
            if exc.status_code == ACCESS_DENIED:
                match = NEEDS.search(exc.status_description)
                assert match is not None, exc.status_description
                writable[name] = match.group(1)
            else:
                assert exc.status_code == pywbem.CIM_ERR_NOT_SUPPORTED, (name, exc)
    return writable


def _writes(classname: str) -> list[tuple[str, object]]:
    path = pywbem.CIMInstanceName(classname, {"Name": "no-such"}, namespace="root/cimv2")
    modified = pywbem.CIMInstance(classname, {"Name": "no-such"}, path=path)
    return [
        ("CreateInstance", pywbem.CIMInstance(classname, {"Name": "no-such"})),
        ("ModifyInstance", modified),
        ("DeleteInstance", path),
    ]


def test_create_modify_delete_refuse_under_privileged_roles(gm: ProviderHandle) -> None:
    writable = _writable_classes(gm)
    assert "GM_DeviceBay" in writable and "GM_CapacityGroup" in writable
    for classname, needed in writable.items():
        need = parse_role(needed)
        for user, (role, _) in USERS.items():
            for operation, arg in _writes(classname):
                try:
                    getattr(gm.connection(user), operation)(arg)
                    code, text = 0, ""
                except pywbem.CIMError as exc:
                    code, text = exc.status_code, exc.status_description
                if allows(parse_role(role), need):
                    assert code != ACCESS_DENIED, (classname, operation, user, text)
                else:
                    assert code == ACCESS_DENIED, (classname, operation, user, code)
                    assert f"needs the {needed} role" in text


def test_group_bound_operator_acts_only_in_its_group(gm: ProviderHandle) -> None:
    conn = pywbem.WBEMConnection(gm.url, ("webops", "webops-pw"), default_namespace="root/cimv2")
    rv, _ = conn.InvokeMethod(
        "setAutomaticFailover", "GM_GroupManager", DomainGroup="dg-web", Enabled=False
    )
    assert rv == 0
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod(
            "setAutomaticFailover", "GM_GroupManager", DomainGroup="dg-db", Enabled=False
        )
    assert err.value.status_code == ACCESS_DENIED
    assert "dg-db" in err.value.status_description and "dg-web" in err.value.status_description
    # A method naming a bay (or host, profile, job) is scoped to the bay's group.
    rv, _ = conn.InvokeMethod(
        "setSpare", "GM_GroupManager", EnclosureName="enc01", BayName="12", IsSpare=True
    )
    assert rv == 0
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod(
            "setSpare", "GM_GroupManager", EnclosureName="enc04", BayName="8", IsSpare=True
        )
    assert err.value.status_code == ACCESS_DENIED and "dg-db" in err.value.status_description
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod(
            "moveProfile",
            "GM_GroupManager",
            ProfileName="db01-profile",
            TargetEnclosureName="enc04",
            TargetBayName="8",
            PowerOn=False,
        )
    assert err.value.status_code == ACCESS_DENIED and "dg-db" in err.value.status_description
    # ModifyInstance of a bay's IsSpare is setSpare: allowed in its group, refused elsewhere
    # (it was refused everywhere: the instance's group was never looked at).
    bay = pywbem.CIMInstanceName(
        "GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "12"}, namespace="root/cimv2"
    )
    conn.ModifyInstance(
        pywbem.CIMInstance("GM_DeviceBay", {"IsSpare": False}, path=bay),
        PropertyList=["IsSpare"],
    )
    assert conn.GetInstance(bay)["IsSpare"] is False
    other = pywbem.CIMInstanceName(
        "GM_DeviceBay", {"EnclosureName": "enc04", "BayName": "8"}, namespace="root/cimv2"
    )
    with pytest.raises(pywbem.CIMError) as err:
        conn.ModifyInstance(
            pywbem.CIMInstance("GM_DeviceBay", {"IsSpare": False}, path=other),
            PropertyList=["IsSpare"],
        )
    assert err.value.status_code == ACCESS_DENIED
    assert "setSpare on domain group dg-db" in err.value.status_description
    # A call naming a bay that does not exist: not found, as for any user (reads are global,
    # so that is no secret), and nothing is done.
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod(
            "setSpare", "GM_GroupManager", EnclosureName="enc99", BayName="1", IsSpare=False
        )
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
    assert "No bay 1 in enclosure enc99." in err.value.status_description
    # Reads stay global.
    assert conn.EnumerateInstances("GM_DomainGroup")
