"""The canonical form of a CIM-XML request, read straight from the text, without a tree.

pywbem (so pywbemcli), wbemcli and our own request files write a request the same way every
time: the same elements in the same order, attributes in one order, double quotes, no
entities, no comments. `read_canonical` recognises that form with a few compiled patterns
and builds the request from what they capture. Anything else (a comment, an entity or
character reference, single quotes, another attribute order, CORRELATOR, a reference or an
embedded instance, a value in error) makes it answer None, and `parse_request` then reads
the document with the full parser, which accepts or refuses it with its precise message.

Why: on a live server, lxml's parse of a pywbem GetInstance and the walk over its tree cost
~40 µs of the ~65 µs the whole CIM layer spends on the call (bench/cim_vs_http.py,
2-core machine; the same code costs half that in a tight loop, its caches warm); reading the
canonical text costs a few µs and leaves no tree to free.

It is exact, not approximate, because of what the patterns refuse:
* the document is well-formed by construction: every element the patterns know is opened
  and closed in place, and text and attribute values exclude "<" and "&", so there is no
  markup and no reference to expand;
* attribute values exclude TAB, CR and LF, which XML's attribute-value normalisation would
  turn into spaces, and character data excludes CR (line-end normalisation) and ">" (so
  "]]>" cannot occur); both exclude the characters XML 1.0 forbids. What is captured is
  therefore exactly what lxml would report;
* between elements only XML white space is allowed, which the full parser ignores too;
* a document the limits would refuse (`max_elements`, a `max_depth` below the 8 levels of
  the deepest form read here) goes to the full parser, which refuses it, and so does one of
  more than `MAX_BYTES`;
* the patterns read in linear time: no run of white space can be split between two of them
  in several ways (the tests read 1 MB of it).
tests/cimxml/test_canonical.py checks that both readers return the same request, value
types included, for the shapes clients send and for mutations of them.
"""

from __future__ import annotations

import re
from typing import Any

from pywbem import CIMClassName, CIMInstanceName

from provider.cimxml.messages import ExtrinsicCall, IntrinsicCall, ParamValue, Request, Value
from provider.cimxml.values import (
    CIM_TYPES,
    CIM_VERSION,
    PARAM_TYPES,
    PROTOCOL_VERSION,
    VALUE_TYPES,
    BadText,
    key_text,
)

__all__ = ["DEPTH", "MAX_BYTES", "read_canonical"]

# The deepest form read here: CIM/MESSAGE/SIMPLEREQ/(I)METHODCALL/(IPARAMVALUE or
# LOCALINSTANCEPATH)/INSTANCENAME/KEYBINDING/KEYVALUE.
DEPTH = 8
# Larger documents go to the full parser, whose libxml2 has limits of its own (a text node of
# 10 MB is refused): the two readers then cannot disagree on them. A canonical request of a
# client is a few hundred bytes.
MAX_BYTES = 1 << 20

# Possessive: white space is never given back, so that no run of it can be split between two
# of these in several ways (1 MB of it is read in linear time; a backtracking split of 128 KB
# took seconds).
_WS = r"[ \t\r\n]*+"
# An attribute value XML passes on unchanged (see the module docstring); a NAME is not empty.
_ATTR = r'[^"<&\x00-\x1f\ufffe\uffff]*'
_NAME = r'[^"<&\x00-\x1f\ufffe\uffff]+'
# Character data XML passes on unchanged: TAB and LF stay as sent.
_TEXT = r"[^<>&\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]*"


def _empty(tag: str) -> str:
    """An EMPTY element's end: `/>` or an end tag after white space."""
    return f"(?:/>|>{_WS}</{tag}>)"


_NAMESPACE_PATH = (
    rf'<LOCALNAMESPACEPATH>((?:{_WS}<NAMESPACE NAME="{_NAME}"{_empty("NAMESPACE")})+){_WS}'
    rf"</LOCALNAMESPACEPATH>{_WS}"
)


def _keybinding(group: str) -> str:
    """A KEYBINDING with a KEYVALUE; `group` "(" captures name, VALUETYPE, TYPE and text,
    "(?:" does not. An empty VALUETYPE or TYPE is not canonical (the full parser refuses
    it), so that an absent attribute is the only empty capture."""
    return (
        rf'<KEYBINDING NAME="{group}{_NAME})">{_WS}<KEYVALUE(?: VALUETYPE="{group}{_NAME})")?'
        rf'(?: TYPE="{group}{_NAME})")?(?:/>|>{group}{_TEXT})</KEYVALUE>){_WS}</KEYBINDING>'
    )


_INSTANCENAME = (
    rf'<INSTANCENAME CLASSNAME="(?P<instance>{_NAME})"'
    rf"(?:/>|>(?P<keys>(?:{_WS}{_keybinding('(?:')})*){_WS}</INSTANCENAME>)"
)
_VALUE = rf"(?P<value><VALUE)(?:/>|>(?P<text>{_TEXT})</VALUE>)"


def _item(group: str) -> str:
    """A VALUE.ARRAY item: a VALUE, an empty one, or VALUE.NULL; `group` "(" captures the
    text and the empty VALUE's "/", "(?:" does not."""
    return rf"<VALUE>{group}{_TEXT})</VALUE>|<VALUE{group}/)>|<VALUE\.NULL/>"


_ARRAY = (
    rf"(?P<array><VALUE\.ARRAY)(?:/>|>(?P<items>(?:{_WS}(?:{_item('(?:')}))*){_WS}"
    rf"</VALUE\.ARRAY>)"
)
_CLASSNAME = rf'<CLASSNAME NAME="(?P<classname>{_NAME})"{_empty("CLASSNAME")}'

_HEAD = re.compile(
    r'(?:<\?xml version="1\.0"(?: encoding="(?i:utf-8)")?(?: standalone="(?:yes|no)")? ?\?>)?'
    rf'{_WS}<CIM CIMVERSION="({_ATTR})" DTDVERSION="({_ATTR})">{_WS}'
    rf'<MESSAGE ID="({_ATTR})" PROTOCOLVERSION="({_ATTR})">{_WS}<SIMPLEREQ>{_WS}'
)
_IMETHODCALL = re.compile(rf'<IMETHODCALL NAME="({_NAME})">{_WS}{_NAMESPACE_PATH}')
# The values of an (I)PARAMVALUE read here (DSP0201 §5.3.2.1-2 allow more).
# (And the white space after one belongs to it: an empty element's is matched once.)
_PARAM_VALUE = f"(?:(?:{_INSTANCENAME}|{_CLASSNAME}|{_VALUE}|{_ARRAY}){_WS})?"
_IPARAMVALUE = re.compile(
    rf'<IPARAMVALUE NAME="(?P<name>{_NAME})"(?:/>|>{_WS}{_PARAM_VALUE}</IPARAMVALUE>){_WS}'
)
_METHODCALL = re.compile(rf'<METHODCALL NAME="({_NAME})">{_WS}')
_LOCALCLASSPATH = re.compile(
    rf"<LOCALCLASSPATH>{_WS}{_NAMESPACE_PATH}{_CLASSNAME}{_WS}</LOCALCLASSPATH>{_WS}"
)
_LOCALINSTANCEPATH = re.compile(
    rf"<LOCALINSTANCEPATH>{_WS}{_NAMESPACE_PATH}{_INSTANCENAME}{_WS}</LOCALINSTANCEPATH>{_WS}"
)
_PARAMVALUE = re.compile(
    rf'<PARAMVALUE NAME="(?P<name>{_NAME})"(?: PARAMTYPE="(?P<paramtype>{_ATTR})")?'
    rf"(?:/>|>{_WS}{_PARAM_VALUE}</PARAMVALUE>){_WS}"
)
_END = rf"{_WS}</SIMPLEREQ>{_WS}</MESSAGE>{_WS}</CIM>{_WS}\Z"
_IMETHOD_END = re.compile(rf"</IMETHODCALL>{_END}")
_METHOD_END = re.compile(rf"</METHODCALL>{_END}")
_NAMESPACES = re.compile(r'<NAMESPACE NAME="([^"]*)"')
_KEYBINDINGS = re.compile(_keybinding("("))
_ITEMS = re.compile(_item("("))


class _NotCanonical(Exception):
    """Something the full parser must judge."""


def read_canonical(body: bytes, max_elements: int) -> Request | None:
    """The request in `body` if it is in the canonical form, else None (read it fully)."""
    if len(body) > MAX_BYTES:
        return None
    # Every element starts with "<": at most this many elements, as the full parser bounds
    # (counted only when the body could hold more).
    if len(body) > max_elements and body.count(b"<") > max_elements:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = _HEAD.match(text)
    if head is None:
        return None
    cim_version, dtd_version, message_id, protocol_version = head.groups()
    if (cim_version, dtd_version, protocol_version) != ("2.0", "2.0", "1.0") and not (
        CIM_VERSION.fullmatch(cim_version)
        and CIM_VERSION.fullmatch(dtd_version)
        and PROTOCOL_VERSION.fullmatch(protocol_version)
    ):
        return None
    try:
        if text.startswith("<I", head.end()):
            return _intrinsic(text, head.end(), message_id, protocol_version)
        return _extrinsic(text, head.end(), message_id, protocol_version)
    except (_NotCanonical, BadText, ValueError, TypeError):
        # A value the full parser refuses with its message, or one pywbem's constructors
        # refuse (which the full parser reports as a 400 too).
        return None


def _intrinsic(text: str, pos: int, message_id: str, protocol_version: str) -> IntrinsicCall:
    call = _IMETHODCALL.match(text, pos)
    if call is None:
        raise _NotCanonical
    method, namespaces = call.groups()
    params: dict[str, Value] = {}
    seen: set[str] = set()
    duplicate: str | None = None
    pos = call.end()
    while (param := _IPARAMVALUE.match(text, pos)) is not None:
        pos = param.end()
        name = param["name"]
        value = _value(param)
        lower = name.lower()
        if lower in seen:
            # Kept for the operation layer to refuse, as the full parser does.
            duplicate = duplicate or name
            continue
        seen.add(lower)
        params[name] = value
    if _IMETHOD_END.match(text, pos) is None:
        raise _NotCanonical
    return IntrinsicCall(
        message_id, protocol_version, method, _namespace(namespaces), params, duplicate
    )


def _extrinsic(text: str, pos: int, message_id: str, protocol_version: str) -> ExtrinsicCall:
    call = _METHODCALL.match(text, pos)
    if call is None:
        raise _NotCanonical
    target: CIMClassName | CIMInstanceName
    if (path := _LOCALCLASSPATH.match(text, call.end())) is not None:
        target = CIMClassName(path["classname"], namespace=_namespace(path[1]))
    elif (path := _LOCALINSTANCEPATH.match(text, call.end())) is not None:
        target = _instancename(path, _namespace(path[1]))
    else:
        raise _NotCanonical
    params: list[ParamValue] = []
    pos = path.end()
    while (param := _PARAMVALUE.match(text, pos)) is not None:
        pos = param.end()
        paramtype = param["paramtype"]
        if paramtype is not None and paramtype not in PARAM_TYPES:
            raise _NotCanonical
        params.append(ParamValue(param["name"], paramtype, _value(param)))
    if _METHOD_END.match(text, pos) is None:
        raise _NotCanonical
    return ExtrinsicCall(message_id, protocol_version, call[1], target, tuple(params))


def _namespace(names: str) -> str:
    """The LOCALNAMESPACEPATH's NAMESPACE elements, joined; remembered, as a server has few
    namespaces and clients repeat them."""
    namespace = _namespaces.get(names)
    if namespace is None:
        namespace = "/".join(_NAMESPACES.findall(names))
        if len(_namespaces) < 64:
            _namespaces[names] = namespace
    return namespace


_namespaces: dict[str, str] = {}


def _value(param: re.Match[str]) -> Value:
    """The value of an (I)PARAMVALUE, as the full parser decodes it (messages.Value)."""
    if param["instance"] is not None:
        return _instancename(param, None)
    if (classname := param["classname"]) is not None:
        return CIMClassName(classname)
    if param["value"] is not None:
        return param["text"] or ""
    if param["array"] is not None:
        items: list[str | None] = []
        for item in _ITEMS.finditer(param["items"] or ""):
            text, empty = item.groups()
            items.append(text if text is not None else "" if empty else None)
        return items
    return None


def _instancename(found: re.Match[str], namespace: str | None) -> CIMInstanceName:
    keys: dict[str, Any] = {}
    seen: set[str] = set()
    for name, valuetype, cimtype, text in _KEYBINDINGS.findall(found["keys"] or ""):
        lower = name.lower()
        if lower in seen:
            raise _NotCanonical  # the full parser names the duplicate key
        seen.add(lower)
        # findall reports an absent attribute as "" (a present one is never empty here).
        if valuetype == "":
            valuetype = "string"
        elif valuetype not in VALUE_TYPES:
            raise _NotCanonical
        if cimtype == "":
            keys[name] = key_text(text.strip(), None, valuetype)
        elif cimtype in CIM_TYPES:
            keys[name] = key_text(text.strip(), cimtype, valuetype)
        else:
            raise _NotCanonical
    return CIMInstanceName(found["instance"], keys, namespace=namespace)
