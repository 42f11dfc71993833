"""The decoded forms of CIM-XML messages (DSP0201): what `parse_request` returns and what the
encoders take. Pure data; the codec builds them from bytes and the CIM layer consumes them.

Values are pywbem's public CIM objects (`CIMInstance`, `CIMInstanceName`, `CIMClassName`,
`CIMClass`) or plain text. The codec does not know operation signatures, so parameter values
stay lightly decoded (see `IParam`); `provider.cim` types them from DSP0200 (intrinsic) or the
class's METHOD declaration (extrinsic), as OpenPegasus does in
`_fixInvokeMethodParameterTypes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from pywbem import CIMClass, CIMClassName, CIMInstance, CIMInstanceName

__all__ = [
    "ClassNamesResult",
    "ClassesResult",
    "CreatedResult",
    "ExportCall",
    "ExtrinsicCall",
    "Instance",
    "InstanceName",
    "InstanceNamesResult",
    "InstanceResult",
    "IntrinsicCall",
    "IntrinsicResult",
    "NamedInstancesResult",
    "ObjectPathsResult",
    "ObjectsWithPathResult",
    "OutParam",
    "ParamValue",
    "PullInstancesResult",
    "PullPathsResult",
    "RenderedInstance",
    "RenderedName",
    "Request",
    "VoidResult",
]

# An IPARAMVALUE/PARAMVALUE value as the codec decodes it, before typing:
#   <VALUE>text</VALUE>            -> str, exactly as sent (the CIM layer strips non-strings)
#   <VALUE.ARRAY>                  -> list[str]
#   <CLASSNAME NAME=>              -> CIMClassName (namespace left None)
#   <INSTANCENAME>                 -> CIMInstanceName (keys typed from KEYVALUE VALUETYPE/TYPE,
#                                     key text stripped; namespace left None)
#   <VALUE.REFERENCE>              -> CIMInstanceName or CIMClassName
#   <VALUE.REFARRAY>               -> list[CIMInstanceName]
#   <INSTANCE>                     -> CIMInstance (property values typed from TYPE)
#   <VALUE.NAMEDINSTANCE>          -> CIMInstance with .path set
#   no child element               -> None (a NULL value)
Value = Any


class IntrinsicCall(NamedTuple):
    """<IMETHODCALL NAME=...> in a SIMPLEREQ (DSP0201 §5.3.2.2)."""

    message_id: str
    protocol_version: str  # MESSAGE PROTOCOLVERSION, checked against the header
    method: str  # NAME exactly as sent; responses echo it, case included
    namespace: str  # LOCALNAMESPACEPATH joined with "/"
    params: Mapping[str, Value]  # IPARAMVALUE NAME -> value (the first, if given twice)
    # A parameter given twice: DSP0200 answers CIM_ERR_INVALID_PARAMETER ("missing,
    # duplicate, unrecognized or otherwise incorrect parameters"), which the operation
    # layer raises, not the codec (an HTTP 400 is for a request that is not CIM-XML).
    duplicate: str | None = None


class ParamValue(NamedTuple):
    name: str
    paramtype: str | None  # PARAMTYPE attribute; None when absent (wbemcli sends none)
    value: Value
    embedded_object: str | None = None  # EmbeddedObject="instance"|"object"


class ExtrinsicCall(NamedTuple):
    """<METHODCALL NAME=...> on a LOCALCLASSPATH or LOCALINSTANCEPATH (DSP0201 §5.3.2.1)."""

    message_id: str
    protocol_version: str
    method: str
    target: CIMClassName | CIMInstanceName  # namespace set from the LOCAL*PATH
    params: tuple[ParamValue, ...]


class ExportCall(NamedTuple):
    """<EXPMETHODCALL NAME=...> in a SIMPLEEXPREQ (DSP0201 §5.3.2.3), e.g. ExportIndication."""

    message_id: str
    protocol_version: str
    method: str
    params: Mapping[str, Value]  # EXPPARAMVALUE NAME -> CIMInstance (or None)


Request = IntrinsicCall | ExtrinsicCall | ExportCall
# The requests are immutable tuples, as the rendered names below: one is built per request,
# and a frozen dataclass costs four times as much to build (~1.4 µs for IntrinsicCall).


# ---- results of intrinsic operations: what goes in IRETURNVALUE (reference 2.3) ----


class RenderedName(NamedTuple):
    """An instance path already serialised (by `encode.InstanceTemplate`): the INSTANCENAME
    element, plus what an INSTANCEPATH adds around it. The hot read paths hand these to the
    encoder instead of pywbem objects, which cost ~100 µs an instance to build. Immutable
    tuples, not frozen dataclasses: an enumeration builds 16,000 of each, and a frozen
    dataclass costs twice as much to build."""

    classname: str
    xml: str  # <INSTANCENAME ...>...</INSTANCENAME>
    namespace: str
    host: str | None = None


class RenderedInstance(NamedTuple):
    """An instance already serialised: its path and the INSTANCE element."""

    name: RenderedName
    xml: str  # <INSTANCE ...>...</INSTANCE>


Instance: TypeAlias = CIMInstance | RenderedInstance
InstanceName: TypeAlias = CIMInstanceName | RenderedName


@dataclass(frozen=True, slots=True)
class ClassesResult:  # EnumerateClasses -> CLASS*, GetClass -> one CLASS
    classes: Iterable[CIMClass]


@dataclass(frozen=True, slots=True)
class ClassNamesResult:  # EnumerateClassNames -> CLASSNAME*
    names: Iterable[str]


@dataclass(frozen=True, slots=True)
class InstanceResult:  # GetInstance -> INSTANCE
    instance: Instance


@dataclass(frozen=True, slots=True)
class NamedInstancesResult:  # EnumerateInstances -> VALUE.NAMEDINSTANCE* (each .path set)
    instances: Iterable[Instance]


@dataclass(frozen=True, slots=True)
class InstanceNamesResult:  # EnumerateInstanceNames -> INSTANCENAME*
    names: Iterable[InstanceName]


@dataclass(frozen=True, slots=True)
class CreatedResult:  # CreateInstance -> INSTANCENAME
    name: CIMInstanceName


@dataclass(frozen=True, slots=True)
class ObjectsWithPathResult:  # Associators/References -> VALUE.OBJECTWITHPATH*
    # Instances (INSTANCEPATH + INSTANCE) or, for a class ObjectName, classes (CLASSPATH +
    # CLASS); every path has host and namespace set.
    objects: Iterable[Instance | CIMClass]


@dataclass(frozen=True, slots=True)
class ObjectPathsResult:  # AssociatorNames/ReferenceNames -> OBJECTPATH*
    # INSTANCEPATH or, for a class ObjectName, CLASSPATH; host and namespace set.
    paths: Iterable[InstanceName | CIMClassName]


@dataclass(frozen=True, slots=True)
class PullInstancesResult:
    """OpenEnumerateInstances/PullInstancesWithPath (DSP0200 §5.3.2.29-): IRETURNVALUE with
    VALUE.INSTANCEWITHPATH*, then out PARAMVALUEs EndOfSequence (boolean) and
    EnumerationContext (string)."""

    instances: Sequence[Instance]  # .path has host and namespace set
    end_of_sequence: bool
    context: str  # "" once the sequence has ended


@dataclass(frozen=True, slots=True)
class PullPathsResult:  # OpenEnumerateInstancePaths/PullInstancePaths -> INSTANCEPATH*
    paths: Sequence[InstanceName]
    end_of_sequence: bool
    context: str


@dataclass(frozen=True, slots=True)
class VoidResult:  # ModifyInstance, DeleteInstance, CloseEnumeration: no IRETURNVALUE
    pass


IntrinsicResult = (
    ClassesResult
    | ClassNamesResult
    | InstanceResult
    | NamedInstancesResult
    | InstanceNamesResult
    | CreatedResult
    | ObjectsWithPathResult
    | ObjectPathsResult
    | PullInstancesResult
    | PullPathsResult
    | VoidResult
)


@dataclass(frozen=True, slots=True)
class OutParam:
    """An output PARAMVALUE of an extrinsic method; PARAMTYPE is always sent (pywbem needs it)."""

    name: str
    cimtype: str  # "uint32", "string", "reference", "datetime", ...
    value: Value
