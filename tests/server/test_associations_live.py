"""Association operations against a live server: profile registration (DMTF DSP1033).

Each CIM_RegisteredProfile of root/interop is tied by CIM_ElementConformsToProfile to its
central instance, the node's GM_GroupManager in root/cimv2. pywbem's central class
methodology and `pywbemcli profile centralinsts` find it; Associators, AssociatorNames,
References and ReferenceNames follow it from either side, with their filters; a class
ObjectName is answered from the schema.
"""

from __future__ import annotations

import subprocess

import pytest
import pywbem

from tests.harness import ProviderHandle
from tests.server.test_real_clients import _pywbemcli, _wbemcli, needs_wbemcli

PROFILES = {
    "gm-provider:ProfileFailover:1.0",
    "gm-provider:CapacityRights:1.0",
    "gm-provider:ManagerPair:1.0",
}
ECTP = "CIM_ElementConformsToProfile"


def _node(gm: ProviderHandle) -> pywbem.CIMInstanceName:
    return pywbem.CIMInstanceName("GM_GroupManager", {"Name": gm.node}, namespace="root/cimv2")


def _profile_ids(paths: list[pywbem.CIMInstanceName]) -> set[str]:
    assert all(p.classname == "CIM_RegisteredProfile" for p in paths)
    assert all(p.namespace == "root/interop" for p in paths)
    return {p.keybindings["InstanceID"] for p in paths}


def test_pywbem_finds_each_profiles_central_instance(gm: ProviderHandle) -> None:
    server = pywbem.WBEMServer(gm.connection())
    assert {p.path.keybindings["InstanceID"] for p in server.profiles} == PROFILES
    for profile in server.profiles:
        central = server.get_central_instances(profile.path)
        assert [(c.classname, c.keybindings["Name"], c.namespace) for c in central] == [
            ("GM_GroupManager", gm.node, "root/cimv2")
        ]


def test_pywbemcli_profile_centralinsts(gm: ProviderHandle) -> None:
    out = _pywbemcli(gm, "profile", "centralinsts")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Exception" not in out.stdout
    for name in ("Server Profile Failover", "Capacity Rights Management", "Group Manager Pair"):
        row = next(line for line in out.stdout.splitlines() if name in line)
        assert "GM_GroupManager" in row


def test_from_the_node_to_its_profiles(gm: ProviderHandle) -> None:
    conn = gm.connection()
    node = _node(gm)
    assert _profile_ids(conn.AssociatorNames(node)) == PROFILES
    assert _profile_ids(conn.AssociatorNames(node, AssocClass=ECTP)) == PROFILES
    assert _profile_ids(conn.AssociatorNames(node, ResultClass="CIM_ManagedElement")) == PROFILES
    assert _profile_ids(conn.AssociatorNames(node, Role="ManagedElement")) == PROFILES
    assert _profile_ids(conn.AssociatorNames(node, ResultRole="ConformantStandard")) == PROFILES
    # Filters that name the other end, or a class it is not.
    assert conn.AssociatorNames(node, Role="ConformantStandard") == []
    assert conn.AssociatorNames(node, ResultRole="ManagedElement") == []
    assert conn.AssociatorNames(node, ResultClass="GM_DeviceBay") == []
    profiles = conn.Associators(node, PropertyList=["RegisteredName"])
    assert {p["RegisteredName"] for p in profiles} == {
        "Server Profile Failover",
        "Capacity Rights Management",
        "Group Manager Pair",
    }
    assert all(list(p.properties) == ["RegisteredName"] for p in profiles)
    assert all(p.path.host and p.path.namespace == "root/interop" for p in profiles)


def test_from_a_profile_to_the_node_across_namespaces(gm: ProviderHandle) -> None:
    conn = gm.connection(namespace="root/interop")
    profile = next(
        p
        for p in conn.EnumerateInstanceNames("CIM_RegisteredProfile")
        if p.keybindings["InstanceID"] == "gm-provider:ManagerPair:1.0"
    )
    (node,) = conn.Associators(profile, AssocClass=ECTP, ResultRole="ManagedElement")
    assert node.path.namespace == "root/cimv2"
    assert node["Name"] == gm.node
    assert node["Role"] == "active"  # read from its provider, not made up
    assert conn.Associators(profile, Role="ManagedElement") == []


def test_references_and_the_association_instances(gm: ProviderHandle) -> None:
    conn = gm.connection()
    node = _node(gm)
    refs = conn.ReferenceNames(node)
    assert len(refs) == 3
    assert {r.classname for r in refs} == {ECTP}
    assert _profile_ids([r.keybindings["ConformantStandard"] for r in refs]) == PROFILES
    assert conn.ReferenceNames(node, ResultClass=ECTP, Role="ManagedElement") == refs
    assert conn.ReferenceNames(node, Role="ConformantStandard") == []
    objects = conn.References(node)
    assert {o["ConformantStandard"].keybindings["InstanceID"] for o in objects} == PROFILES
    assert all(o["ManagedElement"].keybindings["Name"] == gm.node for o in objects)
    # The association's instances in both namespaces, and each found by its path, also
    # with references sent without their namespace (as clients often do).
    for namespace in ("root/interop", "root/cimv2"):
        names = conn.EnumerateInstanceNames(ECTP, namespace=namespace)
        assert len(names) == 3
        path = names[0].copy()
        path.keybindings["ConformantStandard"].namespace = None
        assert conn.GetInstance(path)["ManagedElement"].keybindings["Name"] == gm.node
    missing = names[0].copy()
    missing.keybindings["ConformantStandard"] = pywbem.CIMInstanceName(
        "CIM_RegisteredProfile", {"InstanceID": "no-such-profile"}
    )
    with pytest.raises(pywbem.CIMError) as err:
        conn.GetInstance(missing)
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND


def test_objects_without_associations_and_bad_filters(gm: ProviderHandle) -> None:
    conn = gm.connection()
    bay = conn.EnumerateInstanceNames("GM_DeviceBay")[0]
    assert conn.AssociatorNames(bay) == []
    assert conn.References(bay) == []
    gone = pywbem.CIMInstanceName("GM_GroupManager", {"Name": "no-such-node"})
    with pytest.raises(pywbem.CIMError) as err:
        conn.AssociatorNames(gone)
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
    with pytest.raises(pywbem.CIMError) as err:
        conn.Associators(_node(gm), AssocClass="GM_NoSuchAssociation")
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "GM_NoSuchAssociation" in err.value.status_description


def test_a_class_object_name_is_answered_from_the_schema(gm: ProviderHandle) -> None:
    conn = gm.connection()
    names = conn.AssociatorNames(pywbem.CIMClassName("GM_GroupManager"))
    assert [(n.classname, n.namespace) for n in names] == [("CIM_RegisteredProfile", "root/cimv2")]
    assert all(isinstance(n, pywbem.CIMClassName) and n.host for n in names)
    (ref_class,) = conn.References(pywbem.CIMClassName("GM_GroupManager"))
    assert ref_class[0].classname == ECTP
    assert {p for p in ref_class[1].properties} == {"ConformantStandard", "ManagedElement"}
    assert conn.ReferenceNames(pywbem.CIMClassName("GM_DeviceBay")) == []
    interop = gm.connection(namespace="root/interop")
    refs = interop.ReferenceNames(pywbem.CIMClassName("CIM_RegisteredProfile"))
    assert [(r.classname, r.namespace) for r in refs] == [(ECTP, "root/interop")]


@needs_wbemcli
def test_wbemcli_ain_and_rin(gm: ProviderHandle) -> None:
    target = f'GM_GroupManager.Name="{gm.node}"'
    out: subprocess.CompletedProcess[str] = _wbemcli(gm, "ain", target)
    assert out.returncode == 0, out.stderr
    for instance_id in PROFILES:
        assert f'root/interop:CIM_RegisteredProfile.InstanceID="{instance_id}"' in out.stdout
    out = _wbemcli(gm, "rin", target)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(f"{ECTP}.") == 3
