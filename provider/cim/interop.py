"""root/interop: the classes WBEM clients use to discover this server.

pywbem's `WBEMServer` (and so `pywbemcli server brand`, `namespace list`, `profile list`)
looks for an interop namespace, enumerates `CIM_Namespace` there, and wants exactly one
`CIM_ObjectManager` whose `ElementName` is set (reference cim-xml-protocol.md §8.3).

Profile registration (DMTF DSP1033): each `CIM_RegisteredProfile` is tied by
`CIM_ElementConformsToProfile` to its central instance, this node's `GM_GroupManager` in
root/cimv2 (the class whose methods carry every one of our profiles' operations), so
pywbem's central class methodology (`pywbemcli profile centralinsts`) finds it, and a client
can go back from the GM_GroupManager to the profiles it implements. The association's
instances are served in both namespaces, as the class is declared in both.
"""

from __future__ import annotations

from collections.abc import Iterable

from pywbem import CIMInstanceName

from provider.cim.provider import InstanceProvider, OperationContext, ProviderRegistry, Row

__all__ = ["INTEROP", "PRODUCT", "install_interop"]

INTEROP = "root/interop"
CIMV2 = "root/cimv2"
PRODUCT = "gm-provider"
_SYSTEM_CLASS = "CIM_ComputerSystem"
_OM_CLASS = "CIM_ObjectManager"


class _Namespaces(InstanceProvider):
    def __init__(self, namespaces: list[str], system: str) -> None:
        self.namespaces = namespaces
        self.system = system

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        for name in self.namespaces:
            yield {
                "SystemCreationClassName": _SYSTEM_CLASS,
                "SystemName": self.system,
                "ObjectManagerCreationClassName": _OM_CLASS,
                "ObjectManagerName": PRODUCT,
                "CreationClassName": "CIM_Namespace",
                "Name": name,
                "ClassInfo": 2,
                "ElementName": name,
            }


class _ObjectManager(InstanceProvider):
    def __init__(self, system: str, version: str) -> None:
        self.system = system
        self.version = version

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        yield {
            "SystemCreationClassName": _SYSTEM_CLASS,
            "SystemName": self.system,
            "CreationClassName": _OM_CLASS,
            "Name": PRODUCT,
            "ElementName": PRODUCT,
            "Description": f"{PRODUCT} Group Manager {self.version}",
            "Caption": "Group Manager CIM server",
            "Started": True,
        }


# Our own profiles, registered under "Other" organisation: these are product contracts,
# not DMTF profiles, so claiming a DMTF RegisteredName would mislead a client.
_PROFILES = (
    ("gm-provider:ProfileFailover:1.0", "Server Profile Failover", "1.0"),
    ("gm-provider:CapacityRights:1.0", "Capacity Rights Management", "1.0"),
    ("gm-provider:ManagerPair:1.0", "Group Manager Pair", "1.0"),
)


class _Profiles(InstanceProvider):
    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        for instance_id, name, version in _PROFILES:
            yield {
                "InstanceID": instance_id,
                "RegisteredOrganization": 1,
                "OtherRegisteredOrganization": PRODUCT,
                "RegisteredName": name,
                "RegisteredVersion": version,
                "AdvertiseTypes": [2],
                "ElementName": name,
            }


class _Conformance(InstanceProvider):
    """CIM_ElementConformsToProfile: every profile, implemented by this node."""

    def __init__(self, node: str) -> None:
        self.node = node

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        node = CIMInstanceName("GM_GroupManager", {"Name": self.node}, namespace=CIMV2)
        for instance_id, _, _ in _PROFILES:
            yield {
                "ConformantStandard": CIMInstanceName(
                    "CIM_RegisteredProfile", {"InstanceID": instance_id}, namespace=INTEROP
                ),
                "ManagedElement": node,
            }


def install_interop(
    registry: ProviderRegistry, namespaces: list[str], system: str, version: str, node: str
) -> None:
    """`system`: the host name (scoping CIM_Namespace and CIM_ObjectManager); `node`: this
    Group Manager's node name (its GM_GroupManager is the profiles' central instance)."""
    registry.add_instances(INTEROP, "CIM_Namespace", _Namespaces(namespaces, system))
    registry.add_instances(INTEROP, _OM_CLASS, _ObjectManager(system, version))
    registry.add_instances(INTEROP, "CIM_RegisteredProfile", _Profiles())
    conformance = _Conformance(node)
    for namespace in (INTEROP, CIMV2):
        registry.add_instances(namespace, "CIM_ElementConformsToProfile", conformance)
