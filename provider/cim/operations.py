"""The CIM object layer: intrinsic operations and method dispatch (DSP0200 §5.3, SPEC 3.1).

Input is a decoded `IntrinsicCall`/`ExtrinsicCall` (provider.cimxml.messages); output is an
`IntrinsicResult` or a `MethodResponse` for the encoder. Everything between — typing the
lightly-decoded parameters, finding the provider, the privilege check, the role gate, turning
provider rows into typed CIM instances, pull enumeration contexts — happens here.

Parameter typing follows OpenPegasus: intrinsic parameters are typed from the DSP0200
signature (`_SIGNATURES`), extrinsic ones from the class's METHOD declaration, because wbemcli
sends no PARAMTYPE and Pegasus-style request files put whitespace around values.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pywbem import (
    CIMClass,
    CIMClassName,
    CIMDateTime,
    CIMInstance,
    CIMInstanceName,
    CIMMethod,
    cimvalue,
)

from provider.audit import AuditLog
from provider.cim.provider import (
    Authorizer,
    InstanceProvider,
    MethodSpec,
    OperationContext,
    ProviderRegistry,
    RoleGate,
    Row,
    authorize_call,
    same_path,
)
from provider.cim.repository import ClassRepository, PropertyType
from provider.cimxml.encode import InstanceTemplate
from provider.cimxml.messages import (
    ClassesResult,
    ClassNamesResult,
    CreatedResult,
    ExtrinsicCall,
    InstanceNamesResult,
    InstanceResult,
    IntrinsicCall,
    IntrinsicResult,
    NamedInstancesResult,
    ObjectPathsResult,
    ObjectsWithPathResult,
    OutParam,
    PullInstancesResult,
    PullPathsResult,
    RenderedInstance,
    RenderedName,
    VoidResult,
)
from provider.errors import (
    CIMClientError,
    Fenced,
    InvalidClass,
    InvalidEnumerationContext,
    InvalidParameter,
    MethodNotFound,
    NotActive,
    NotFound,
    NotSupported,
    TypeMismatch,
)

__all__ = ["CimOperations", "EnumerationContexts", "MethodResponse"]


@dataclass(frozen=True, slots=True)
class MethodResponse:
    return_type: str
    return_value: Any
    out: tuple[OutParam, ...]


class _FilteredEnumerationNotSupported(CIMClientError):
    status_code = 25  # CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED


class _ContinueOnErrorNotSupported(CIMClientError):
    status_code = 26  # CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED


class _InvalidOperationTimeout(CIMClientError):
    status_code = 22  # CIM_ERR_INVALID_OPERATION_TIMEOUT


# ---- DSP0200 intrinsic signatures: parameter -> (kind, default) ----
# kinds: bool, uint32, classname, instancename, objectname, instance, strings, string
_B, _U, _CN, _IN, _ON, _I, _SL, _S = (
    "bool",
    "uint32",
    "classname",
    "instancename",
    "objectname",
    "instance",
    "strings",
    "string",
)
_OPEN_COMMON: dict[str, tuple[str, Any]] = {
    "FilterQueryLanguage": (_S, None),
    "FilterQuery": (_S, None),
    "OperationTimeout": (_U, None),
    "ContinueOnError": (_B, False),
    "MaxObjectCount": (_U, 0),
}
_REFERENCE_NAMES: dict[str, tuple[str, Any]] = {
    "ObjectName": (_ON, None),
    "ResultClass": (_CN, None),
    "Role": (_S, None),
}
_ASSOCIATOR_NAMES = {**_REFERENCE_NAMES, "AssocClass": (_CN, None), "ResultRole": (_S, None)}
_INSTANCE_DETAIL: dict[str, tuple[str, Any]] = {
    "IncludeQualifiers": (_B, False),
    "IncludeClassOrigin": (_B, False),
    "PropertyList": (_SL, None),
}
_SIGNATURES: dict[str, dict[str, tuple[str, Any]]] = {
    "GetClass": {
        "ClassName": (_CN, None),
        "LocalOnly": (_B, True),
        "IncludeQualifiers": (_B, True),
        "IncludeClassOrigin": (_B, False),
        "PropertyList": (_SL, None),
    },
    "EnumerateClassNames": {"ClassName": (_CN, None), "DeepInheritance": (_B, False)},
    "EnumerateClasses": {
        "ClassName": (_CN, None),
        "DeepInheritance": (_B, False),
        "LocalOnly": (_B, True),
        "IncludeQualifiers": (_B, True),
        "IncludeClassOrigin": (_B, False),
    },
    "GetInstance": {
        "InstanceName": (_IN, None),
        "LocalOnly": (_B, False),
        "IncludeQualifiers": (_B, False),
        "IncludeClassOrigin": (_B, False),
        "PropertyList": (_SL, None),
    },
    "EnumerateInstances": {
        "ClassName": (_CN, None),
        "LocalOnly": (_B, False),
        "DeepInheritance": (_B, True),
        "IncludeQualifiers": (_B, False),
        "IncludeClassOrigin": (_B, False),
        "PropertyList": (_SL, None),
    },
    "EnumerateInstanceNames": {"ClassName": (_CN, None)},
    "CreateInstance": {"NewInstance": (_I, None)},
    "ModifyInstance": {
        "ModifiedInstance": (_I, None),
        "IncludeQualifiers": (_B, True),
        "PropertyList": (_SL, None),
    },
    "DeleteInstance": {"InstanceName": (_IN, None)},
    "Associators": {**_ASSOCIATOR_NAMES, **_INSTANCE_DETAIL},
    "AssociatorNames": _ASSOCIATOR_NAMES,
    "References": {**_REFERENCE_NAMES, **_INSTANCE_DETAIL},
    "ReferenceNames": _REFERENCE_NAMES,
    "OpenEnumerateInstances": {
        "ClassName": (_CN, None),
        "DeepInheritance": (_B, True),
        "IncludeClassOrigin": (_B, False),
        "PropertyList": (_SL, None),
        **_OPEN_COMMON,
    },
    "OpenEnumerateInstancePaths": {"ClassName": (_CN, None), **_OPEN_COMMON},
    "PullInstancesWithPath": {"EnumerationContext": (_S, None), "MaxObjectCount": (_U, None)},
    "PullInstancePaths": {"EnumerationContext": (_S, None), "MaxObjectCount": (_U, None)},
    "CloseEnumeration": {"EnumerationContext": (_S, None)},
}
_SIGNATURE_BY_LOWER = {k.lower(): (k, v) for k, v in _SIGNATURES.items()}
# Per operation: lower-case parameter name -> its declared spelling; and the defaults.
_PARAMETER_BY_LOWER = {op: {k.lower(): k for k in sig} for op, sig in _SIGNATURES.items()}
_DEFAULTS = {op: {name: d for name, (_, d) in sig.items()} for op, sig in _SIGNATURES.items()}

DEFAULT_OPERATION_TIMEOUT = 60  # seconds an idle enumeration context lives (DSP0200 §5.3.2.29)
MAX_OPERATION_TIMEOUT = 3600
MAX_CONTEXTS = 1000
# One user's share: a user who leaves enumerations open (a script that never pulls to the
# end) runs out of its own, not everyone's; pywbemcli holds one at a time.
MAX_CONTEXTS_PER_USER = 100


_MISSING = object()  # a key the path does not bind


def _text(value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    raise InvalidParameter(f"Parameter {name} must be a single value.")


def _typed_intrinsic(op: str, params: Mapping[str, Any], duplicate: str | None) -> dict[str, Any]:
    if duplicate is not None:
        raise InvalidParameter(f"Parameter {duplicate} is given twice.")
    signature = _SIGNATURES[op]
    lower = _PARAMETER_BY_LOWER[op]
    typed = dict(_DEFAULTS[op])
    for raw_name, value in params.items():
        name = lower.get(raw_name.lower())
        if name is None:
            raise InvalidParameter(f"{op} has no parameter {raw_name}.")
        kind = signature[name][0]
        if value is None:
            # An empty IPARAMVALUE is NULL: the parameter's default, as if it were absent
            # (an empty MaxObjectCount of an Open* operation is 0, not "no limit").
            typed[name] = signature[name][1]
            continue
        typed[name] = _convert_intrinsic(kind, value, name)
    return typed


def _convert_intrinsic(kind: str, value: Any, name: str) -> Any:
    if kind == _B:
        text = _text(value, name).strip().upper()
        if text not in ("TRUE", "FALSE"):
            raise InvalidParameter(f"Parameter {name} must be TRUE or FALSE, not {value!r}.")
        return text == "TRUE"
    if kind == _U:
        text = _text(value, name).strip()
        if not (text.isascii() and text.isdigit()) or int(text) > 0xFFFFFFFF:
            raise InvalidParameter(f"Parameter {name} must be a uint32, not {value!r}.")
        return int(text)
    if kind == _CN:
        if isinstance(value, CIMClassName):
            return value.classname
        raise InvalidParameter(f"Parameter {name} must be a CLASSNAME.")
    if kind == _IN:
        if isinstance(value, CIMInstanceName):
            return value
        raise InvalidParameter(f"Parameter {name} must be an INSTANCENAME.")
    if kind == _ON:
        if isinstance(value, CIMInstanceName | CIMClassName):
            return value
        raise InvalidParameter(f"Parameter {name} must be a CLASSNAME or INSTANCENAME.")
    if kind == _I:
        if isinstance(value, CIMInstance):
            return value
        raise InvalidParameter(f"Parameter {name} must be an INSTANCE.")
    if kind == _SL:
        if isinstance(value, list):
            return [str(v).strip() for v in value]
        raise InvalidParameter(f"Parameter {name} must be a VALUE.ARRAY of property names.")
    return _text(value, name)


def _as_declared(shaper: _Shaper, name: str, value: Any) -> Any:
    """A provider row's value as the declared CIM type (a datetime as CIMDateTime), so it
    compares with what a client sent; the value unchanged if it does not convert."""
    ptype = shaper.types.get(name.lower())
    if ptype is None:
        return value
    try:
        return typed_value(value, ptype.cimtype, ptype.is_array, name)
    except (CIMClientError, ValueError, TypeError):
        return value


def _same(have: Any, want: Any) -> bool:
    """A provider row's value and a typed value sent by a client: the same CIM value?"""
    if isinstance(have, list | tuple) and isinstance(want, list | tuple):
        return len(have) == len(want) and all(_same(a, b) for a, b in zip(have, want, strict=True))
    if isinstance(have, bool) or isinstance(want, bool):
        return isinstance(have, bool) and isinstance(want, bool) and have is want
    return bool(have == want)


# ---- typing values from declarations ----


def typed_value(value: Any, cimtype: str, is_array: bool, what: str) -> Any:
    """A Python/text value as the declared CIM type (pywbem's typed values)."""
    if value is None:
        return None
    if is_array:
        if not isinstance(value, list | tuple):
            value = [value]
        return [typed_value(v, cimtype, False, what) for v in value]
    if isinstance(value, list | tuple):
        raise TypeMismatch(f"{what} is not an array; send a single value.")
    try:
        if cimtype == "reference":
            if isinstance(value, CIMInstanceName | CIMClassName):
                return value
            raise TypeMismatch(f"{what} must be a reference.")
        if isinstance(value, CIMInstanceName | CIMClassName | CIMInstance | CIMClass):
            # A reference or an object where a value is declared: never read as its text.
            kind = "an object" if isinstance(value, CIMInstance | CIMClass) else "a reference"
            raise TypeMismatch(
                f"{what} is a {cimtype}; {kind} was sent: send "
                f"{_TYPE_FORMS.get(cimtype, 'a ' + cimtype + ' value')}."
            )
        if isinstance(value, str) and cimtype != "string":
            value = value.strip()
            if cimtype == "boolean":
                # pywbem's cimvalue() turns any non-empty text into True ("FALSE" too).
                if value.lower() not in ("true", "false"):
                    raise InvalidParameter(f"{what} must be TRUE or FALSE, not {value!r}.")
                return value.lower() == "true"
        if cimtype == "datetime" and not isinstance(value, CIMDateTime):
            return CIMDateTime(value)
        return cimvalue(value, cimtype)
    except (ValueError, TypeError):
        raise InvalidParameter(
            f"{what} must be a {cimtype} ({_TYPE_FORMS.get(cimtype, 'a ' + cimtype + ' value')}),"
            f" not {value!r}."
        ) from None


# What a value of each type looks like, for an error that says what to send instead.
_TYPE_FORMS = {
    **{
        f"{sign}int{bits}": (
            f"a whole number from {-(2 ** (bits - 1)) if sign == 's' else 0}"
            f" to {2 ** (bits - 1) - 1 if sign == 's' else 2**bits - 1}"
        )
        for sign in ("u", "s")
        for bits in (8, 16, 32, 64)
    },
    "real32": "a number",
    "real64": "a number",
    "char16": "one character",
    "datetime": "such as 20261206043000.000000+000, or an interval such as"
    " 00000001000000.000000:000",
    "string": "text",
}


class _Shaper:
    """Turns provider rows of one class into rendered CIM-XML (see `InstanceTemplate`)."""

    def __init__(self, types: dict[str, PropertyType], keys: tuple[str, ...], classname: str):
        self.types = types
        self.keys = keys
        self.classname = classname
        self.declared = frozenset(t.name for t in types.values())
        # (name, lower-case name, CIM type) of each key, in declaration order.
        self.key_specs = tuple((k, k.lower(), types[k.lower()].cimtype) for k in keys)
        self._templates: dict[tuple[frozenset[str] | None, bool], InstanceTemplate] = {}

    def keybindings(self, row: Row) -> dict[str, Any]:
        bindings: dict[str, Any] = {}
        lowered = {k.lower(): v for k, v in row.items()}
        for key in self.keys:
            ptype = self.types[key.lower()]
            bindings[key] = typed_value(lowered.get(key.lower()), ptype.cimtype, False, key)
        return bindings

    def template(self, wanted: frozenset[str] | None, origin: bool = False) -> InstanceTemplate:
        """`origin`: IncludeClassOrigin, each property with the class that declares it."""
        template = self._templates.get((wanted, origin))
        if template is None:
            props = [
                (t.name, t.cimtype, t.is_array, t.reference_class)
                for lname, t in self.types.items()
                if wanted is None or lname in wanted
            ]
            keys = [(k, self.types[k.lower()].cimtype) for k in self.keys]
            origins = (
                {t.name: t.class_origin for t in self.types.values() if t.class_origin}
                if origin
                else None
            )
            template = InstanceTemplate(self.classname, props, keys, origins)
            if len(self._templates) < 64:  # PropertyLists vary; keep the cache bounded
                self._templates[(wanted, origin)] = template
        return template

    def checked(self, row: Row) -> Row:
        # Providers key rows by the MOF's names; anything else would silently show as NULL.
        if row.keys() <= self.declared:
            return row
        undeclared = sorted(set(row) - self.declared)
        raise ValueError(f"{self.classname} row has undeclared properties {undeclared}")

    def instance(
        self,
        row: Row,
        namespace: str,
        host: str | None,
        wanted: frozenset[str] | None,
        origin: bool = False,
    ) -> RenderedInstance:
        return self.template(wanted, origin).instance(self.checked(row), namespace, host)

    def name(self, row: Row, namespace: str, host: str | None) -> RenderedName:
        return self.template(None).name(self.checked(row), namespace, host)


@dataclass
class _Context:
    items: Iterator[Any]
    kind: str  # "instances" | "paths"
    namespace: str
    owner: str
    timeout: int
    expires: float
    pending: Any = None  # one item read ahead of the next batch (None: nothing)


class EnumerationContexts:
    """Open pull enumerations (DSP0200 §5.3.2.29-33): an iterator per context id, expired
    when idle longer than its OperationTimeout. Iterators are lazy, so an enumeration of
    16,000 bays never sits in memory whole."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open: dict[str, _Context] = {}

    def _expire(self) -> None:
        now = self._clock()
        for cid in [c for c, ctx in self._open.items() if ctx.expires < now]:
            self._close(cid)

    def _close(self, cid: str) -> None:
        ctx = self._open.pop(cid, None)
        if ctx is not None:
            close = getattr(ctx.items, "close", None)
            if close is not None:
                close()

    def open(
        self, items: Iterator[Any], kind: str, namespace: str, owner: str, timeout: int
    ) -> str:
        self._expire()
        mine = sum(1 for ctx in self._open.values() if ctx.owner == owner)
        if mine >= MAX_CONTEXTS_PER_USER:
            raise _ServerLimits(
                f"{owner} has {mine} open enumerations, the most one user may hold; pull "
                "them to the end or close them with CloseEnumeration (idle ones end after "
                "their OperationTimeout)."
            )
        if len(self._open) >= MAX_CONTEXTS:
            raise _ServerLimits(
                f"Too many open enumerations ({MAX_CONTEXTS}) on this server; they end "
                "after their OperationTimeout, or when their users close them."
            )
        cid = secrets.token_hex(12)
        self._open[cid] = _Context(items, kind, namespace, owner, timeout, self._clock() + timeout)
        return cid

    def take(self, cid: str, kind: str, namespace: str, owner: str) -> _Context:
        self._expire()
        ctx = self._open.get(cid)
        if ctx is None or ctx.namespace.lower() != namespace.lower() or ctx.owner != owner:
            raise InvalidEnumerationContext(
                f"Enumeration context {cid!r} is not open (closed, expired or never opened)."
            )
        if ctx.kind != kind:
            self._close(cid)
            raise InvalidEnumerationContext(
                f"Enumeration context {cid!r} enumerates {ctx.kind}, not {kind}; it is closed now."
            )
        ctx.expires = self._clock() + ctx.timeout
        return ctx

    def batch(self, cid: str, ctx: _Context, max_count: int) -> tuple[list[Any], bool]:
        """Up to `max_count` items; True when the sequence ended (and the context closed)."""
        out: list[Any] = []
        pending = ctx.pending  # the item looked ahead at by the last batch
        if pending is not None and max_count > 0:
            out.append(pending)
            pending = None
        if len(out) < max_count:
            out.extend(itertools.islice(ctx.items, max_count - len(out)))
        if len(out) < max_count:
            self._close(cid)
            return out, True
        if pending is None:
            # Look one ahead so the last batch reports EndOfSequence instead of an empty
            # pull. Kept aside, not chained back onto the iterator: 16 pages of a large
            # enumeration would otherwise stack 16 chains that every later item passes.
            pending = next(ctx.items, None)  # items are rendered objects, never None
            if pending is None:
                self._close(cid)
                return out, True
        ctx.pending = pending
        return out, False

    def close(self, cid: str, namespace: str, owner: str) -> None:
        ctx = self._open.get(cid)
        if ctx is None or ctx.namespace.lower() != namespace.lower() or ctx.owner != owner:
            raise InvalidEnumerationContext(f"Enumeration context {cid!r} is not open.")
        self._close(cid)

    def __len__(self) -> int:
        return len(self._open)


class _NoProvider(Exception):
    """A class exists but no provider serves its instances (`CimOperations._target`)."""

    def __init__(self, classname: str) -> None:
        super().__init__(classname)
        self.classname = classname


class _ServerLimits(CIMClientError):
    status_code = 27  # CIM_ERR_SERVER_LIMITS_EXCEEDED


class CimOperations:
    """Executes decoded CIM operations against the class repository and the providers."""

    def __init__(
        self,
        repository: ClassRepository,
        registry: ProviderRegistry,
        gate: RoleGate,
        authorizer: Authorizer,
        host: str,
        contexts: EnumerationContexts | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.repository = repository
        self.audit = audit
        self.registry = registry
        self.gate = gate
        self.authorizer = authorizer
        self.host = host
        self.contexts = contexts or EnumerationContexts()
        self._shapers: dict[tuple[str, str], _Shaper] = {}
        # (namespace, class) as a request spells them, lower-cased -> the class's own name,
        # its instance provider and shaper: one lookup per GetInstance instead of three.
        self._targets: dict[tuple[str, str], tuple[str, InstanceProvider, _Shaper]] = {}
        # Lower-case intrinsic method name -> its declared name and its handler.
        self._handlers: dict[str, tuple[str, Callable[..., IntrinsicResult]]] = {
            lower: (op, getattr(self, "_op_" + op))
            for lower, (op, _) in _SIGNATURE_BY_LOWER.items()
        }

    # ---- helpers ----

    def shaper(self, namespace: str, classname: str) -> _Shaper:
        key = (namespace.lower(), classname.lower())
        shaper = self._shapers.get(key)
        if shaper is None:
            cls = self.repository.resolved(namespace, classname)
            shaper = _Shaper(
                self.repository.property_types(namespace, classname),
                self.repository.key_names(namespace, classname),
                cls.classname,
            )
            self._shapers[key] = shaper
        return shaper

    def _provider(self, namespace: str, classname: str) -> InstanceProvider | None:
        return self.registry.instances(namespace, classname)

    def _instances(
        self,
        ctx: OperationContext,
        classname: str,
        deep: bool,
        property_list: Sequence[str] | None,
        host: str | None,
        origin: bool = False,
    ) -> Iterator[RenderedInstance]:
        """Instances of `classname` and of its subclasses (DSP0200: always). `deep` false
        (DeepInheritance=FALSE): a subclass's instances carry only the properties the named
        class declares, within `property_list`. `origin`: IncludeClassOrigin."""
        ns = ctx.namespace
        requested = self.repository.resolved(ns, classname, missing=InvalidClass)
        wanted = _wanted(property_list)
        own = frozenset(name.lower() for name in requested.properties)
        for name in self.repository.subclasses_and_self(ns, classname):
            provider = self._provider(ns, name)
            if provider is None:
                continue
            shaper = self.shaper(ns, name)
            names = wanted
            if not deep and name.lower() != requested.classname.lower():
                names = own if wanted is None else wanted & own
            # Per row only the check and the template: 16,000 rows make every call count.
            render = shaper.template(names, origin).instance
            checked = shaper.checked
            for row in provider.enumerate(ctx, name):
                yield render(checked(row), ns, host)

    def _paths(
        self, ctx: OperationContext, classname: str, host: str | None
    ) -> Iterator[RenderedName]:
        ns = ctx.namespace
        for name in self.repository.subclasses_and_self(ns, classname):
            provider = self._provider(ns, name)
            if provider is None:
                continue
            shaper = self.shaper(ns, name)
            render = shaper.template(None).name
            checked = shaper.checked
            for row in provider.enumerate(ctx, name):
                yield render(checked(row), ns, host)

    def _target(self, namespace: str, classname: str) -> tuple[str, InstanceProvider, _Shaper]:
        """The class a path names (its own spelling), its provider and shaper; NotFound-style
        errors for a class without instances. Only found targets are remembered: providers
        are all registered before the server answers its first request."""
        key = (namespace.lower(), classname.lower())
        hit = self._targets.get(key)
        if hit is not None:
            return hit
        cls = self.repository.resolved(namespace, classname, missing=InvalidClass)
        provider = self._provider(namespace, cls.classname)
        if provider is None:
            raise _NoProvider(cls.classname)
        hit = self._targets[key] = (cls.classname, provider, self.shaper(namespace, cls.classname))
        return hit

    def _get_row(self, ctx: OperationContext, path: CIMInstanceName) -> tuple[_Shaper, Row]:
        try:
            classname, provider, shaper = self._target(ctx.namespace, path.classname)
        except _NoProvider as missing:
            raise NotFound(
                f"No {missing.classname} instance {_describe_path(path)} exists."
            ) from None
        keys = self._check_keys(shaper, path)
        return shaper, provider.get(ctx, classname, keys)

    def _check_keys(self, shaper: _Shaper, path: CIMInstanceName) -> dict[str, Any]:
        bindings = path.keybindings  # looked up without regard to case
        keys: dict[str, Any] = {}
        for key, _, cimtype in shaper.key_specs:
            value = bindings.get(key, _MISSING)
            if value is _MISSING:
                raise InvalidParameter(
                    f"The path of {shaper.classname} needs key {key}; got {_describe_path(path)}."
                )
            # A string key sent as a string is already what typed_value would return.
            if cimtype != "string" or type(value) is not str:
                value = typed_value(value, cimtype, False, key)
            keys[key] = value
        if len(bindings) > len(keys):
            # Matched as the path matches them (case folded), not merely lower-cased.
            declared = {key.casefold() for key, _, _ in shaper.key_specs}
            extra = sorted(sent for sent in bindings if sent.casefold() not in declared)
            raise InvalidParameter(
                f"{shaper.classname} has no key named {', '.join(extra)}; "
                f"its keys are {', '.join(shaper.keys)}."
            )
        return keys

    # ---- intrinsic ----

    def intrinsic(self, call: IntrinsicCall, ctx: OperationContext) -> IntrinsicResult:
        entry = self._handlers.get(call.method.lower())
        if entry is None:
            raise NotSupported(f"Unrecognized or unsupported intrinsic method: {call.method}.")
        op, handler = entry
        self.repository.namespace(call.namespace)
        if self.audit is None or op not in _WRITE_OPERATIONS:
            result: IntrinsicResult = handler(
                ctx, _typed_intrinsic(op, call.params, call.duplicate)
            )
            return result
        params = list(call.params.items())
        target = _write_target(call.params)
        try:
            result = handler(ctx, _typed_intrinsic(op, call.params, call.duplicate))
        except Exception as exc:
            self.audit.record(
                ctx.principal,
                op,
                op,
                namespace=ctx.namespace,
                target=target,
                params=params,
                error=exc,
            )
            raise
        created = result.name if isinstance(result, CreatedResult) else None
        self.audit.record(
            ctx.principal,
            op,
            op,
            namespace=ctx.namespace,
            target=target,
            params=params,
            return_value=None if created is None else _describe_target(created),
        )
        return result

    def _require(self, p: Mapping[str, Any], name: str, op: str) -> Any:
        value = p.get(name)
        if value is None:
            raise InvalidParameter(f"{op} needs the {name} parameter.")
        return value

    def _op_GetClass(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        name = self._require(p, "ClassName", "GetClass")
        cls = self.repository.get_class(
            ctx.namespace,
            name,
            local_only=p["LocalOnly"],
            include_qualifiers=p["IncludeQualifiers"],
            include_class_origin=p["IncludeClassOrigin"],
            property_list=p["PropertyList"],
        )
        return ClassesResult([cls])

    def _op_EnumerateClassNames(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        return ClassNamesResult(
            self.repository.class_names(ctx.namespace, p["ClassName"], p["DeepInheritance"])
        )

    def _op_EnumerateClasses(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        return ClassesResult(
            list(
                self.repository.classes(
                    ctx.namespace,
                    p["ClassName"],
                    deep=p["DeepInheritance"],
                    local_only=p["LocalOnly"],
                    include_qualifiers=p["IncludeQualifiers"],
                    include_class_origin=p["IncludeClassOrigin"],
                )
            )
        )

    def _op_GetInstance(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        path = self._require(p, "InstanceName", "GetInstance")
        shaper, row = self._get_row(ctx, path)
        wanted = _wanted(p["PropertyList"])
        origin = bool(p["IncludeClassOrigin"])
        return InstanceResult(shaper.instance(row, ctx.namespace, None, wanted, origin))

    def _op_EnumerateInstances(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        name = self._require(p, "ClassName", "EnumerateInstances")
        self.repository.resolved(ctx.namespace, name, missing=InvalidClass)
        return NamedInstancesResult(
            self._instances(
                ctx, name, p["DeepInheritance"], p["PropertyList"], None, p["IncludeClassOrigin"]
            )
        )

    def _op_EnumerateInstanceNames(
        self, ctx: OperationContext, p: dict[str, Any]
    ) -> IntrinsicResult:
        name = self._require(p, "ClassName", "EnumerateInstanceNames")
        self.repository.resolved(ctx.namespace, name, missing=InvalidClass)
        return InstanceNamesResult(self._paths(ctx, name, None))

    # -- writes: privilege, then the role gate, then the provider --

    def _fenced_write(self, provider: InstanceProvider, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Fenced as exc:
            what = provider.writes.what if provider.writes is not None else "change it"
            raise NotActive(what) from exc

    def _writable(
        self,
        ctx: OperationContext,
        classname: str,
        op: str,
        path: CIMInstanceName | None = None,
    ) -> InstanceProvider:
        """The class's provider, once the privilege and the role gate allow `op`; `path`: the
        instance it changes, whose domain group a user bound to groups must hold (as the
        method that does the same, setSpare for a bay's IsSpare)."""
        cls = self.repository.resolved(ctx.namespace, classname, missing=InvalidClass)
        provider = self._provider(ctx.namespace, cls.classname)
        if provider is None or provider.writes is None:
            raise NotSupported(f"{op} is not supported for class {cls.classname}.")
        writes = provider.writes
        self.authorizer.check_role(ctx.principal, writes.action)
        self.gate.require_active(writes.what)
        scope = None
        bound = ctx.principal is not None and ctx.principal.domain_groups is not None
        if bound and path is not None and writes.scope is not None:
            keys = self._check_keys(self.shaper(ctx.namespace, cls.classname), path)
            scope = writes.scope(keys)
        self.authorizer.check(ctx.principal, writes.action, scope)
        return provider

    def _props(self, ctx: OperationContext, inst: CIMInstance) -> dict[str, Any]:
        shaper = self.shaper(ctx.namespace, inst.classname)
        props: dict[str, Any] = {}
        for prop in inst.properties.values():
            ptype = shaper.types.get(prop.name.lower())
            if ptype is None:
                raise InvalidParameter(f"{shaper.classname} has no property {prop.name}.")
            sent = prop.type
            if sent is not None and sent not in ("string", ptype.cimtype):
                # A value typed as another CIM type (a uint32 for a string): a client error.
                # Text ("string") is read in the declared type, as request files write it.
                raise TypeMismatch(
                    f"{shaper.classname}.{ptype.name} is a {ptype.cimtype}; the instance gives "
                    f"it as a {sent}. Send it as a {ptype.cimtype}."
                )
            props[ptype.name] = typed_value(prop.value, ptype.cimtype, ptype.is_array, ptype.name)
        return props

    def _op_CreateInstance(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        inst: CIMInstance = self._require(p, "NewInstance", "CreateInstance")
        provider = self._writable(ctx, inst.classname, "CreateInstance")
        shaper = self.shaper(ctx.namespace, inst.classname)
        props = self._props(ctx, inst)
        creatable = provider.writes.creatable if provider.writes is not None else None
        if creatable is not None:
            # A value the class computes (SharedCoreRights of a group) would be dropped
            # without a word, and the client would believe it set: refuse it instead.
            ignored = sorted(k for k, v in props.items() if v is not None and k not in creatable)
            if ignored:
                raise InvalidParameter(
                    f"A new {shaper.classname} takes {', '.join(sorted(creatable))}; "
                    f"{', '.join(ignored)} cannot be set when creating one (the Group Manager "
                    "keeps them). Leave them out."
                )
        row = self._fenced_write(provider, lambda: provider.create(ctx, shaper.classname, props))
        return CreatedResult(
            CIMInstanceName(
                shaper.classname, keybindings=shaper.keybindings(row), namespace=ctx.namespace
            )
        )

    def _op_ModifyInstance(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        inst: CIMInstance = self._require(p, "ModifiedInstance", "ModifyInstance")
        if inst.path is None:
            raise InvalidParameter(
                "ModifyInstance needs a VALUE.NAMEDINSTANCE (path and instance)."
            )
        provider = self._writable(ctx, inst.path.classname, "ModifyInstance", inst.path)
        shaper = self.shaper(ctx.namespace, inst.path.classname)
        keys = self._check_keys(shaper, inst.path)
        changes = self._props(ctx, inst)
        if p["PropertyList"] is not None:
            wanted = {x.lower() for x in p["PropertyList"]}
            unknown = sorted(x for x in p["PropertyList"] if x.lower() not in shaper.types)
            if unknown:
                raise InvalidParameter(
                    f"PropertyList names {', '.join(unknown)}, which {shaper.classname} does "
                    "not have."
                )
            changes = {k: v for k, v in changes.items() if k.lower() in wanted}
        for key, value in keys.items():
            # A key in the instance may repeat the path's, never differ from it: keys name
            # the instance (DSP0004), and a different one was dropped without a word.
            if key in changes and not _same(_as_declared(shaper, key, value), changes[key]):
                raise InvalidParameter(
                    f"ModifyInstance cannot change the key {key} of {shaper.classname} (the "
                    f"path says {value!r}, the instance {changes[key]!r}): keys name the "
                    "instance. Create the instance under the new name and delete this one."
                )
        changes = {k: v for k, v in changes.items() if k not in keys}
        if p["PropertyList"] is not None and not changes:
            # Nothing to change (an empty PropertyList): done, once the instance exists.
            provider.get(ctx, shaper.classname, keys)
            return VoidResult()
        if p["PropertyList"] is None and changes:
            # Get-modify-put (pywbem's own example) sends every property back: the ones
            # equal to the instance's current values are not changes, so a read-only
            # property that came back untouched is not refused. The read also answers
            # CIM_ERR_NOT_FOUND for an instance that does not exist.
            current = provider.get(ctx, shaper.classname, keys)
            changes = {
                k: v
                for k, v in changes.items()
                if not (k in current and _same(_as_declared(shaper, k, current[k]), v))
            }
            if not changes:
                return VoidResult()
        self._fenced_write(provider, lambda: provider.modify(ctx, shaper.classname, keys, changes))
        return VoidResult()

    def _op_DeleteInstance(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        path: CIMInstanceName = self._require(p, "InstanceName", "DeleteInstance")
        provider = self._writable(ctx, path.classname, "DeleteInstance", path)
        shaper = self.shaper(ctx.namespace, path.classname)
        keys = self._check_keys(shaper, path)
        self._fenced_write(provider, lambda: provider.delete(ctx, shaper.classname, keys))
        return VoidResult()

    # -- associations (DSP0200 §5.3.2.8-11). The association classes of the operation's
    #    namespace that have a provider are followed. A reference may name an object of
    #    another namespace (CIM_ElementConformsToProfile ties root/interop's profiles to
    #    root/cimv2's GM_GroupManager), which is read from its own namespace. A class
    #    ObjectName is answered from the schema: the association classes whose references
    #    declare that class (or a superclass of it), and the classes at their other ends.

    def _association_target(
        self, ctx: OperationContext, p: dict[str, Any], op: str
    ) -> CIMInstanceName | CIMClassName:
        target: CIMInstanceName | CIMClassName = self._require(p, "ObjectName", op)
        if isinstance(target, CIMInstanceName):
            self._get_row(ctx, target)
        else:
            self.repository.resolved(ctx.namespace, target.classname)
        for name in ("AssocClass", "ResultClass"):
            if p.get(name) is not None:
                self.repository.resolved(ctx.namespace, p[name], missing=InvalidParameter)
        return target

    def _roles(
        self, namespace: str, assoc_filter: str | None, role: str | None
    ) -> Iterator[tuple[str, PropertyType]]:
        """(association class, one of its references), by AssocClass and Role."""
        for name in self.repository.association_classes(namespace):
            if assoc_filter is not None and not self.repository.is_a(namespace, name, assoc_filter):
                continue
            for ptype in self.repository.property_types(namespace, name).values():
                if ptype.cimtype == "reference" and (
                    role is None or ptype.name.lower() == role.lower()
                ):
                    yield name, ptype

    def _links(
        self, ctx: OperationContext, target: CIMInstanceName, assoc: str | None, role: str | None
    ) -> Iterator[tuple[_Shaper, Row, list[str]]]:
        """Each association row that refers to `target` in a role (`Role`, when given),
        once: its shaper, the row, and the roles in which it does."""
        ns = ctx.namespace
        source = target.copy()
        source.namespace = target.namespace or ns
        by_class: dict[str, list[str]] = {}
        for name, ptype in self._roles(ns, assoc, role):
            by_class.setdefault(name, []).append(ptype.name)
        for name, roles in by_class.items():
            provider = self._provider(ns, name)
            if provider is None:
                continue
            shaper = self.shaper(ns, name)
            for row in provider.enumerate(ctx, name):
                matched = [r for r in roles if _refers(row.get(r), ns, source)]
                if matched:
                    yield shaper, row, matched

    def _associated(
        self, ctx: OperationContext, target: CIMInstanceName, p: dict[str, Any]
    ) -> Iterator[tuple[OperationContext, _Shaper, Row]]:
        """The objects at the other ends of `target`'s associations, each once, read from
        their own namespaces (with the caller's principal: a user sees what it may)."""
        seen: set[str] = set()
        result_class, result_role = p["ResultClass"], p["ResultRole"]
        links = self._links(ctx, target, p["AssocClass"], p["Role"])
        for shaper, row, matched in links:
            for ptype in shaper.types.values():
                if ptype.cimtype != "reference" or matched == [ptype.name]:
                    continue
                if result_role is not None and ptype.name.lower() != result_role.lower():
                    continue
                ref = row.get(ptype.name)
                if not isinstance(ref, CIMInstanceName):
                    continue
                other = _in_namespace(ref, ctx.namespace)
                other.host = None
                key = str(other).lower()
                if key in seen:
                    continue
                seen.add(key)
                octx = ctx._replace(namespace=self.repository.namespace(other.namespace))
                if result_class is not None and not self.repository.is_a(
                    octx.namespace, other.classname, result_class
                ):
                    continue
                try:
                    oshaper, orow = self._get_row(octx, other)
                except NotFound:
                    continue  # an end that is gone: nothing to return for it
                yield octx, oshaper, orow

    def _class_ends(
        self, ctx: OperationContext, target: CIMClassName, p: dict[str, Any], associators: bool
    ) -> list[str]:
        """Class ObjectName: the association classes (References) or the classes at their
        other ends (Associators) of `target`, each once."""
        ns = ctx.namespace
        assoc = p.get("AssocClass") if associators else p["ResultClass"]
        out: list[str] = []
        for name, ptype in self._roles(ns, assoc, p["Role"]):
            if ptype.reference_class is None or not self.repository.is_a(
                ns, target.classname, ptype.reference_class
            ):
                continue
            if not associators:
                out.append(name)
                continue
            for other in self.repository.property_types(ns, name).values():
                if other.cimtype != "reference" or other.name == ptype.name:
                    continue
                if p["ResultRole"] is not None and other.name.lower() != p["ResultRole"].lower():
                    continue
                end = other.reference_class
                if end is None or (
                    p["ResultClass"] is not None
                    and not self.repository.is_a(ns, end, p["ResultClass"])
                ):
                    continue
                out.append(self.repository.resolved(ns, end).classname)
        return list(dict.fromkeys(out))

    def _class_objects(
        self, ctx: OperationContext, names: list[str], p: dict[str, Any]
    ) -> list[CIMClass]:
        classes = []
        for name in names:
            cls = self.repository.get_class(
                ctx.namespace,
                name,
                local_only=False,
                include_qualifiers=bool(p["IncludeQualifiers"]),
                include_class_origin=bool(p["IncludeClassOrigin"]),
                property_list=p["PropertyList"],
            )
            cls.path = CIMClassName(cls.classname, namespace=ctx.namespace, host=self.host)
            classes.append(cls)
        return classes

    def _class_paths(self, ctx: OperationContext, names: list[str]) -> list[CIMClassName]:
        return [CIMClassName(n, namespace=ctx.namespace, host=self.host) for n in names]

    def _ends(
        self, ctx: OperationContext, target: CIMInstanceName, p: dict[str, Any], associators: bool
    ) -> Iterator[tuple[str, _Shaper, Row]]:
        """(namespace, shaper, row) of each object answered for an instance ObjectName: the
        objects at the other ends (Associators), or the association instances (References)."""
        if associators:
            for octx, shaper, row in self._associated(ctx, target, p):
                yield octx.namespace, shaper, row
        else:
            for shaper, row, _ in self._links(ctx, target, p["ResultClass"], p["Role"]):
                yield ctx.namespace, shaper, row

    def _association(
        self, ctx: OperationContext, p: dict[str, Any], op: str, associators: bool, names: bool
    ) -> IntrinsicResult:
        """Associators (`associators`), References (not), or their *Names forms (`names`)."""
        target = self._association_target(ctx, p, op)
        if isinstance(target, CIMClassName):
            classes = self._class_ends(ctx, target, p, associators)
            if names:
                return ObjectPathsResult(self._class_paths(ctx, classes))
            return ObjectsWithPathResult(self._class_objects(ctx, classes, p))
        ends = self._ends(ctx, target, p, associators)
        if names:
            return ObjectPathsResult([s.name(row, ns, self.host) for ns, s, row in ends])
        wanted, origin = _wanted(p["PropertyList"]), bool(p["IncludeClassOrigin"])
        return ObjectsWithPathResult(
            [s.instance(row, ns, self.host, wanted, origin) for ns, s, row in ends]
        )

    def _op_Associators(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        return self._association(ctx, p, "Associators", associators=True, names=False)

    def _op_AssociatorNames(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        return self._association(ctx, p, "AssociatorNames", associators=True, names=True)

    def _op_References(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        return self._association(ctx, p, "References", associators=False, names=False)

    def _op_ReferenceNames(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        return self._association(ctx, p, "ReferenceNames", associators=False, names=True)

    # -- pull operations (DSP0200 §5.3.2.29-33) --

    def _open_checks(self, p: dict[str, Any]) -> int:
        if p["FilterQueryLanguage"] is not None or p["FilterQuery"] is not None:
            raise _FilteredEnumerationNotSupported(
                "Filtered enumerations are not supported; omit FilterQuery and "
                "FilterQueryLanguage and filter on the client."
            )
        if p["ContinueOnError"]:
            raise _ContinueOnErrorNotSupported(
                "ContinueOnError is not supported; send it FALSE or omit it."
            )
        timeout = p["OperationTimeout"]
        if timeout is None:
            return DEFAULT_OPERATION_TIMEOUT
        if timeout == 0:
            # DSP0200: 0 asks the server never to time the enumeration out, which it may
            # refuse with this status; one left open would hold its slot and memory forever.
            raise _InvalidOperationTimeout(
                "OperationTimeout 0 (never time out) is not supported; ask for 1 to "
                f"{MAX_OPERATION_TIMEOUT} seconds, or omit it for {DEFAULT_OPERATION_TIMEOUT}."
            )
        if timeout > MAX_OPERATION_TIMEOUT:
            raise _InvalidOperationTimeout(
                f"OperationTimeout {timeout} is above this server's maximum of "
                f"{MAX_OPERATION_TIMEOUT} seconds."
            )
        return int(timeout)

    def _open(
        self, ctx: OperationContext, items: Iterator[Any], kind: str, p: dict[str, Any]
    ) -> tuple[list[Any], bool, str]:
        timeout = self._open_checks(p)
        cid = self.contexts.open(items, kind, ctx.namespace, ctx.user, timeout)
        state = self.contexts.take(cid, kind, ctx.namespace, ctx.user)
        batch, ended = self.contexts.batch(cid, state, p["MaxObjectCount"])
        return batch, ended, "" if ended else cid

    def _op_OpenEnumerateInstances(
        self, ctx: OperationContext, p: dict[str, Any]
    ) -> IntrinsicResult:
        name = self._require(p, "ClassName", "OpenEnumerateInstances")
        self.repository.resolved(ctx.namespace, name, missing=InvalidClass)
        items = self._instances(
            ctx, name, p["DeepInheritance"], p["PropertyList"], self.host, p["IncludeClassOrigin"]
        )
        batch, ended, cid = self._open(ctx, items, "instances", p)
        return PullInstancesResult(batch, ended, cid)

    def _op_OpenEnumerateInstancePaths(
        self, ctx: OperationContext, p: dict[str, Any]
    ) -> IntrinsicResult:
        name = self._require(p, "ClassName", "OpenEnumerateInstancePaths")
        self.repository.resolved(ctx.namespace, name, missing=InvalidClass)
        batch, ended, cid = self._open(ctx, self._paths(ctx, name, self.host), "paths", p)
        return PullPathsResult(batch, ended, cid)

    def _pull(self, ctx: OperationContext, p: dict[str, Any], kind: str, op: str) -> Any:
        cid = self._require(p, "EnumerationContext", op)
        count = self._require(p, "MaxObjectCount", op)
        state = self.contexts.take(cid, kind, ctx.namespace, ctx.user)
        batch, ended = self.contexts.batch(cid, state, count)
        return batch, ended, "" if ended else cid

    def _op_PullInstancesWithPath(
        self, ctx: OperationContext, p: dict[str, Any]
    ) -> IntrinsicResult:
        return PullInstancesResult(*self._pull(ctx, p, "instances", "PullInstancesWithPath"))

    def _op_PullInstancePaths(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        return PullPathsResult(*self._pull(ctx, p, "paths", "PullInstancePaths"))

    def _op_CloseEnumeration(self, ctx: OperationContext, p: dict[str, Any]) -> IntrinsicResult:
        cid = self._require(p, "EnumerationContext", "CloseEnumeration")
        self.contexts.close(cid, ctx.namespace, ctx.user)
        return VoidResult()

    # ---- extrinsic ----

    async def extrinsic(self, call: ExtrinsicCall, ctx: OperationContext) -> MethodResponse:
        target = call.target
        cls = self.repository.resolved(ctx.namespace, target.classname)
        decl = self.repository.method(ctx.namespace, cls.classname, call.method)
        if decl is None:
            raise MethodNotFound(f"Class {cls.classname} has no method {call.method}.")
        spec = self.registry.method(ctx.namespace, cls.classname, decl.name)
        if spec is None:
            raise NotSupported(f"Method {cls.classname}.{decl.name} has no provider here.")
        if self.audit is None or not self.audit.wants(spec.action_name, spec.changes_state):
            return await self._invoke(call, ctx, cls.classname, decl, spec)
        # Audited from here on: whatever happens next (refused, failed, done) is written.
        params = [(pv.name, pv.value) for pv in call.params]
        where = dict(namespace=ctx.namespace, target=_describe_target(target), params=params)
        try:
            response = await self._invoke(call, ctx, cls.classname, decl, spec)
        except Exception as exc:
            self.audit.record(ctx.principal, "InvokeMethod", decl.name, error=exc, **where)
            raise
        job = next((o.value for o in response.out if o.name == "JobID"), None)
        self.audit.record(
            ctx.principal,
            "InvokeMethod",
            decl.name,
            return_value=response.return_value,
            job=job,
            **where,
        )
        return response

    async def _invoke(
        self,
        call: ExtrinsicCall,
        ctx: OperationContext,
        classname: str,
        decl: CIMMethod,
        spec: MethodSpec,
    ) -> MethodResponse:
        target = call.target
        static = decl.qualifiers.get("Static")
        if isinstance(target, CIMInstanceName):
            self._get_row(ctx, target)
        elif not (static is not None and static.value):
            raise InvalidParameter(
                f"{classname}.{decl.name} is not static: invoke it on an instance path."
            )
        params = _typed_method_params(decl, call)
        await authorize_call(self.authorizer, self.gate, spec, ctx.principal, params)
        try:
            outcome = await spec.handler(ctx, params)
        except Fenced as exc:
            # Superseded between the gate and the write: the role manager has demoted us
            # already; the client hears what a standby says (SPEC 4.2).
            raise NotActive(spec.what or spec.name) from exc
        return _method_response(decl, spec, outcome.return_value, outcome.out)


_WRITE_OPERATIONS = frozenset({"CreateInstance", "ModifyInstance", "DeleteInstance"})


def _in_namespace(ref: CIMInstanceName, namespace: str) -> CIMInstanceName:
    """A copy of `ref` with its namespace, or `namespace` (where the reference was found)."""
    copy = ref.copy()
    copy.namespace = ref.namespace or namespace
    return copy


def _refers(ref: Any, namespace: str, target: CIMInstanceName) -> bool:
    return isinstance(ref, CIMInstanceName) and same_path(_in_namespace(ref, namespace), target)


def _write_target(params: Mapping[str, Any]) -> str:
    """What a Create/Modify/DeleteInstance names, for the audit log: the class or the path."""
    lowered = {k.lower(): v for k, v in params.items()}
    value = lowered.get("newinstance", lowered.get("modifiedinstance", lowered.get("instancename")))
    if isinstance(value, CIMInstance):
        return value.classname if value.path is None else _describe_target(value.path)
    if isinstance(value, CIMInstanceName):
        return _describe_target(value)
    return ""


def _describe_target(target: CIMClassName | CIMInstanceName) -> str:
    if isinstance(target, CIMClassName):
        return str(target.classname)
    return f"{target.classname}.{_describe_path(target)}"


def _wanted(property_list: Sequence[str] | None) -> frozenset[str] | None:
    return frozenset(p.lower() for p in property_list) if property_list is not None else None


def _describe_path(path: CIMInstanceName) -> str:
    return ",".join(f'{k}="{v}"' for k, v in path.keybindings.items()) or "(no keys)"


def _is_out_only(param: Any) -> bool:
    q_in = param.qualifiers.get("In")
    return q_in is not None and q_in.value is False


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    cimtype: str
    is_array: bool
    out_only: bool
    embedded: bool  # declared EmbeddedObject or EmbeddedInstance


@dataclass(frozen=True, slots=True)
class _Declaration:
    """A METHOD's parameters in plain dicts, read on every call of it."""

    by_lower: dict[str, _Parameter]
    inputs: tuple[str, ...]
    required: tuple[str, ...]


# pywbem's case-insensitive dicts and qualifier lookups cost ~40 µs per call of a method;
# the repository's declarations live as long as the process, so each is read once.
_DECLARATIONS: dict[int, tuple[CIMMethod, _Declaration]] = {}


def _declaration(decl: CIMMethod) -> _Declaration:
    entry = _DECLARATIONS.get(id(decl))
    if entry is not None and entry[0] is decl:
        return entry[1]
    params = [
        _Parameter(
            p.name,
            p.type,
            bool(p.is_array),
            _is_out_only(p),
            any(q in p.qualifiers for q in ("EmbeddedObject", "EmbeddedInstance")),
        )
        for p in decl.parameters.values()
    ]
    declaration = _Declaration(
        {p.name.lower(): p for p in params},
        tuple(p.name for p in params if not p.out_only),
        tuple(
            p.name
            for p in decl.parameters.values()
            if (q := p.qualifiers.get("Required")) is not None and q.value
        ),
    )
    if len(_DECLARATIONS) < 1024:
        _DECLARATIONS[id(decl)] = (decl, declaration)
    return declaration


def _typed_method_params(decl: CIMMethod, call: ExtrinsicCall) -> dict[str, Any]:
    declaration = _declaration(decl)
    params: dict[str, Any] = {}
    for pv in call.params:
        param = declaration.by_lower.get(pv.name.lower())
        if param is None or param.out_only:
            raise InvalidParameter(
                f"{decl.name} has no input parameter {pv.name}; its inputs are "
                f"{', '.join(declaration.inputs) or 'none'}."
            )
        if param.name in params:
            raise InvalidParameter(f"Parameter {param.name} is given twice.")
        if pv.embedded_object is not None and not param.embedded:
            # Read as text, an embedded instance became a host name ("<NOTXML" not found).
            raise InvalidParameter(
                f"{decl.name}: parameter {param.name} is a {param.cimtype}, not an embedded "
                "object; send it without EmbeddedObject."
            )
        sent = pv.paramtype
        if sent is not None and sent not in ("string", param.cimtype):
            # Typed as another CIM type (a boolean for a host name, a uint32 for a bay): a
            # client error, as for an instance's properties. Untyped values (wbemcli) and
            # text ("string", as request files write it) are read in the declared type.
            raise TypeMismatch(
                f"{decl.name}: parameter {param.name} is a {param.cimtype}; the call gives "
                f"it as a {sent}. Send it as a {param.cimtype}."
            )
        params[param.name] = typed_value(
            pv.value, param.cimtype, param.is_array, f"Parameter {param.name}"
        )
    for name in declaration.required:
        if params.get(name) is None:
            raise InvalidParameter(f"{decl.name} needs the {name} parameter.")
    return params


def _method_response(
    decl: CIMMethod, spec: MethodSpec, return_value: int, out: Mapping[str, Any]
) -> MethodResponse:
    declared = _declaration(decl).by_lower
    params: list[OutParam] = []
    for name, value in out.items():
        param = declared.get(name.lower())
        if param is None:
            raise ValueError(f"{spec.name} returned undeclared out parameter {name}")
        typed = typed_value(value, param.cimtype, param.is_array, name)
        params.append(OutParam(param.name, param.cimtype, typed))
    return MethodResponse(
        decl.return_type,
        typed_value(return_value, decl.return_type, False, "ReturnValue"),
        tuple(params),
    )
