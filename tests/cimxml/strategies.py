"""Hypothesis strategies for CIM values, properties, instances and paths (typed as pywbem
types them, so what a pywbem client parses back compares equal)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import strategies as st
from pywbem import (
    CIMDateTime,
    CIMInstance,
    CIMInstanceName,
    CIMProperty,
    MinutesFromUTC,
    Real32,
    Real64,
    Sint8,
    Sint16,
    Sint32,
    Sint64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
)

# Characters XML 1.0 can carry, including the ones that need escaping (& < > " CR LF TAB).
xml_text = st.text(
    st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="".join(chr(c) for c in range(0x20) if c not in (9, 10, 13))
        + "\ufffe\uffff",
    ),
    max_size=30,
)

# What pywbem can send: it writes CR into request bodies unescaped (XML turns it into LF), and
# its HTTP library cannot put non-Latin-1 text into the CIMObject header.
request_text = xml_text.map(lambda s: s.replace("\r", ""))
header_safe_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)

cim_name = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,12}", fullmatch=True)

_INTS: dict[str, tuple[Any, int, int]] = {
    "uint8": (Uint8, 0, 2**8 - 1),
    "sint8": (Sint8, -(2**7), 2**7 - 1),
    "uint16": (Uint16, 0, 2**16 - 1),
    "sint16": (Sint16, -(2**15), 2**15 - 1),
    "uint32": (Uint32, 0, 2**32 - 1),
    "sint32": (Sint32, -(2**31), 2**31 - 1),
    "uint64": (Uint64, 0, 2**64 - 1),
    "sint64": (Sint64, -(2**63), 2**63 - 1),
}


def _datetimes() -> st.SearchStrategy[CIMDateTime]:
    stamps = st.builds(
        lambda dt, offset: CIMDateTime(dt.replace(tzinfo=MinutesFromUTC(offset))),
        st.datetimes(),
        st.integers(-999, 999),
    )
    intervals = st.builds(
        lambda s: CIMDateTime(timedelta(microseconds=s)),
        st.integers(0, 99_999_999 * 86_400 * 10**6),
    )
    return stamps | intervals


def values_of(cimtype: str) -> st.SearchStrategy[Any]:
    if cimtype == "string":
        return xml_text
    if cimtype == "boolean":
        return st.booleans()
    if cimtype == "char16":
        # UCS-2 (DSP0004 char16): the Basic Multilingual Plane only.
        return st.characters(max_codepoint=0xFFFD, blacklist_categories=("Cs", "Cc"))
    if cimtype == "datetime":
        return _datetimes()
    if cimtype == "real32":
        return st.floats(width=32, allow_nan=False).map(Real32)
    if cimtype == "real64":
        return st.floats(allow_nan=False).map(Real64)
    kind, low, high = _INTS[cimtype]
    return st.integers(low, high).map(kind)


SCALAR_TYPES = ["string", "boolean", "char16", "datetime", "real32", "real64", *_INTS]


@st.composite
def properties(draw: st.DrawFn, name: str) -> CIMProperty:
    cimtype = draw(st.sampled_from(SCALAR_TYPES))
    if draw(st.booleans()):
        value = draw(st.lists(values_of(cimtype), max_size=4))
        return CIMProperty(name, value, type=cimtype, is_array=True)
    value = draw(st.none() | values_of(cimtype))
    return CIMProperty(name, value, type=cimtype)


_KEY_TYPES = ["string", "boolean", "uint32", "sint64", "uint8"]


@st.composite
def instance_names(
    draw: st.DrawFn,
    namespace: str | None = "root/cimv2",
    strings: st.SearchStrategy[str] = request_text,
) -> CIMInstanceName:
    """Keys as the parser returns them: typed, and strings stripped (messages.py)."""
    classname = draw(cim_name)
    names = draw(st.lists(cim_name, min_size=1, max_size=3, unique_by=str.lower))
    keys = {}
    for name in names:
        cimtype = draw(st.sampled_from(_KEY_TYPES))
        if cimtype == "string":
            keys[name] = draw(strings).strip()
        else:
            keys[name] = draw(values_of(cimtype))
    return CIMInstanceName(classname, keys, namespace=namespace)


@st.composite
def instances(draw: st.DrawFn, path: CIMInstanceName | None = None) -> CIMInstance:
    classname = path.classname if path is not None else draw(cim_name)
    names = draw(st.lists(cim_name, max_size=8, unique_by=str.lower))
    props = [draw(properties(name)) for name in names]
    if draw(st.booleans()):
        ref = draw(instance_names())
        props.append(CIMProperty("RefProp", ref, type="reference", reference_class=ref.classname))
    unique = {p.name.lower(): p for p in props}
    instance = CIMInstance(classname, properties=list(unique.values()))
    instance.path = path  # set afterwards: pywbem copies key-named properties into a given path
    return instance


@st.composite
def instances_with_paths(draw: st.DrawFn) -> CIMInstance:
    return draw(instances(draw(instance_names())))
