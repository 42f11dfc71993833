"""What a CIM-XML request's attribute values and typed texts may be (DSP0201 §5.2, DSP0004),
shared by the two readers of a request: the tree walker (`parse`) and the reader of the
canonical form (`canonical`), so that both accept and type a value alike."""

from __future__ import annotations

import re
from typing import Any

from pywbem import cimvalue

__all__ = [
    "CIM_TYPES",
    "CIM_VERSION",
    "INTEGER_TYPES",
    "PARAM_TYPES",
    "PROTOCOL_VERSION",
    "VALUE_TYPES",
    "BadText",
    "key_text",
    "typed_text",
]

# DSP0004 / DSP0201 §5.2 %CIMType (no "reference": references have their own elements).
CIM_TYPES = frozenset(
    {
        "boolean",
        "string",
        "char16",
        "uint8",
        "sint8",
        "uint16",
        "sint16",
        "uint32",
        "sint32",
        "uint64",
        "sint64",
        "datetime",
        "real32",
        "real64",
    }
)
# DSP0201 §5.2 %ParamType: the CIM types plus reference, object, instance.
PARAM_TYPES = CIM_TYPES | {"reference", "object", "instance"}
INTEGER_TYPES = frozenset(
    {"uint8", "sint8", "uint16", "sint16", "uint32", "sint32", "uint64", "sint64"}
)
# DSP0201 §5.2.9 KEYVALUE VALUETYPE.
VALUE_TYPES = frozenset({"string", "boolean", "numeric"})

# DSP0201 §5.2.1/§5.2.2: CIMVERSION and DTDVERSION "M.N" (DSP8044 allows "M.N.U"); only the
# major version is validated, "as all minor versions are backward compatible".
CIM_VERSION = re.compile(r"2\.\d+(?:\.\d+)?")
PROTOCOL_VERSION = re.compile(r"1\.\d+(?:\.\d+)?")
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")


class BadText(ValueError):
    """A text that is not a value of its type; the reader says in which element."""


def typed_text(text: str, cimtype: str) -> Any:
    """A VALUE's text as a pywbem value of `cimtype`; strings kept exactly as sent."""
    if cimtype == "string":
        return text
    if cimtype == "char16":
        if len(text) != 1:
            raise BadText(f"invalid char16 value {text[:40]!r}")
        return cimvalue(text, cimtype)
    text = text.strip()
    if cimtype == "boolean":
        # Not cimvalue(): it takes any non-empty string, "FALSE" included, as True.
        low = text.lower()
        if low == "true" or low == "false":
            return low == "true"
        raise BadText(f"invalid boolean value {text[:40]!r}")
    if cimtype in INTEGER_TYPES:
        if _DECIMAL.fullmatch(text):
            pass
        elif _HEX.fullmatch(text):
            text = str(int(text, 16))
        else:
            raise BadText(f"invalid {cimtype} value {text[:40]!r}")
    try:
        return cimvalue(text, cimtype)
    except (ValueError, TypeError) as exc:
        raise BadText(f"invalid {cimtype} value {text[:40]!r} ({exc})") from None


def key_text(text: str, cimtype: str | None, valuetype: str) -> Any:
    """DSP0201 §5.2.9 KEYVALUE text (already stripped): typed by TYPE when present (2.4),
    else by VALUETYPE (one of VALUE_TYPES)."""
    if cimtype is not None:
        return typed_text(text, cimtype)
    if valuetype == "string":
        return text
    if valuetype == "boolean":
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        raise BadText(f"invalid boolean key {text[:40]!r}")
    if _DECIMAL.fullmatch(text):
        return int(text)
    if _HEX.fullmatch(text):
        return int(text, 16)
    try:
        return float(text)
    except ValueError:
        raise BadText(f"invalid numeric key {text[:40]!r}") from None
