"""CIM-XML request parser: bytes -> `Request` (DSP0201 2.x request messages), or ProtocolError.

Pure: no I/O, no globals that change. Everything the transport receives in a CIM operation or
export request body goes through `parse_request`, which either returns an `IntrinsicCall`,
`ExtrinsicCall` or `ExportCall`, or raises `ProtocolError` with the HTTP status and `CIMError`
value DSP0200 §1.6 (reference cim-xml-protocol.md 1.6, 5.1) prescribes:

    bad UTF-8, DOCTYPE/entity declaration, limits exceeded,
    wrong element or attribute                      -> 400 request-not-valid
    not well-formed XML                             -> 400 request-not-well-formed
    CIMVERSION / DTDVERSION not 2.x                 -> 501 unsupported-cim-version / -dtd-version
    PROTOCOLVERSION not 1.x                         -> 501 unsupported-protocol-version
    MULTIREQ / MULTIEXPREQ (no batch header: the
    header check answered 501 to one with it)       -> 400 header-mismatch

Safety. lxml runs with resolve_entities=False, no_network=True, no DTD loading and
huge_tree=False; in addition any body containing `<!DOCTYPE` or `<!ENTITY` is refused before
lxml sees it (so an entity bomb costs one `bytes.find`, and external entities cannot exist).
Element depth and element count are limited (`max_depth`, `max_elements`); libxml2's own
depth cap (256) is reported the same way. The body size itself is bounded by the transport.

Liberal where real clients differ (DSP0201 §5.3, reference 2.2): the XML declaration may be
missing; KEYVALUE TYPE is optional (wbemcli and OpenPegasus omit it) and key text is stripped
(OpenPegasus request files put whitespace around it); unknown attributes are ignored (the XSD in
schemas/cim-xml.xsd is strict and is used for our own request files and in tests); VALUE.NULL is
accepted in arrays. Strict where it matters: element names, element order and nesting, required
attributes, enumerated attribute values and typed values are checked, and the error detail names
the element, the attribute and the line.

Two readers. A request in the canonical form pywbem, wbemcli and our request files write
(no entities, comments, CORRELATORs, references or embedded objects; attributes in their usual
order) is read from its text by `canonical.read_canonical`, without lxml; any other document,
and every document that reader declines, goes through lxml and the walker below (`parse_tree`),
which gives the precise error. Both give the same request (tests/cimxml/test_canonical.py).
Measured with bench/codec.py (best of 5, 2-core development machine, Python 3.11, lxml 6.1,
pywbem 1.9.1): a pywbem GetInstance request (~700 bytes) takes ~21 µs through the tree, of
which lxml's parse is ~5 µs and pywbem's `CIMInstanceName` constructor ~2.4 µs, and ~10 µs
through the canonical reader; on a loaded server the tree costs twice that (~40 µs), the
canonical reader ~19 µs.

Structure is validated by hand, and the XSD (schemas/cim-xml.xsd) is not used. lxml's
XMLSchema validation of the same document costs only ~3-5 µs, so speed is not the reason it
stays out: the walker has to visit every element anyway to build the pywbem objects,
and it must run the version checks first (a CIMVERSION="3.0" body is a 501, where the schema
would only say "invalid"); the schema is strict about attributes, where we accept what
wbemcli and OpenPegasus add; and its messages do not name the element path. The XSD validates
the request files in etc/requests and our encoded responses in tests/cimxml/test_xsd.py, which
also checks that the schema and this parser both reject the same structurally bad requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from lxml import etree
from pywbem import (
    CIMClass,
    CIMClassName,
    CIMInstance,
    CIMInstanceName,
    CIMMethod,
    CIMParameter,
    CIMProperty,
    CIMQualifier,
    CIMQualifierDeclaration,
)

from provider.cimxml import canonical
from provider.cimxml.messages import (
    ExportCall,
    ExtrinsicCall,
    IntrinsicCall,
    ParamValue,
    Request,
    Value,
)
from provider.cimxml.values import (
    CIM_TYPES,
    CIM_VERSION,
    PARAM_TYPES,
    PROTOCOL_VERSION,
    VALUE_TYPES,
    BadText,
    key_text,
    typed_text,
)
from provider.errors import ProtocolError

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_ELEMENTS", "parse_request"]

# The deepest legitimate request is an ExportIndication or CreateInstance carrying a reference
# key that is itself a reference: about 16 levels. 48 leaves room for nested references.
DEFAULT_MAX_DEPTH = 48
# A CreateInstance of a GM class has ~100 elements; an indication a few hundred.
DEFAULT_MAX_ELEMENTS = 20_000

_Element = etree._Element

_EMBEDDED = frozenset({"object", "instance"})

_tls = threading.local()


def _parser() -> etree.XMLParser:
    """One parser per thread: lxml parser objects must not be shared between threads."""
    parser: etree.XMLParser | None = getattr(_tls, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            encoding="utf-8",  # DSP0200 §4.1: utf-8 only; overrides a lying declaration
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
        _tls.parser = parser
    return parser


# ---- errors -----------------------------------------------------------------------------


def _invalid(detail: str) -> ProtocolError:
    return ProtocolError(400, "request-not-valid", detail)


def _where(el: _Element) -> str:
    """`CIM/MESSAGE/.../KEYBINDING[NAME="x"] (line 3)`: where in the document `el` is."""
    parts: list[str] = []
    node: _Element | None = el
    while node is not None:
        tag = node.tag if isinstance(node.tag, str) else "?"
        name = node.get("NAME")
        parts.append(f'{tag}[NAME="{name}"]' if name is not None else tag)
        node = node.getparent()
    return "/".join(reversed(parts)) + f" (line {el.sourceline})"


def _bad(el: _Element, what: str) -> ProtocolError:
    return _invalid(f"{what} in {_where(el)}")


# ---- small structural helpers -----------------------------------------------------------


def _kids(el: _Element) -> list[_Element]:
    """Child elements of an element-only content model; text between them must be blank."""
    # Comments and processing instructions are dropped by the parser, and without a DTD there
    # are no entity nodes, so every child is an element.
    text = el.text
    if text and not text.isspace():
        raise _bad(el, f"unexpected text {text.strip()[:40]!r}")
    kids = list(el)
    for kid in kids:
        tail = kid.tail
        if tail and not tail.isspace():
            raise _bad(el, f"unexpected text {tail.strip()[:40]!r}")
    return kids


def _leaf_text(el: _Element) -> str:
    """Text of an element with #PCDATA content (VALUE, KEYVALUE, HOST)."""
    if len(el):
        raise _bad(el, f"unexpected child element <{el[0].tag}>")
    return el.text or ""


def _empty(el: _Element) -> None:
    """An EMPTY element (NAMESPACE, CLASSNAME): no children, no text."""
    if len(el) or (el.text is not None and not el.text.isspace()):
        raise _bad(el, f"<{el.tag}> must be empty")


def _one(el: _Element, allowed: frozenset[str]) -> _Element:
    kids = _kids(el)
    if len(kids) != 1:
        raise _bad(el, f"expected exactly one of {_names(allowed)}, found {len(kids)} elements")
    kid = kids[0]
    if kid.tag not in allowed:
        raise _bad(el, f"unexpected element <{kid.tag}>, expected one of {_names(allowed)}")
    return kid


def _names(tags: frozenset[str]) -> str:
    return ", ".join(f"<{t}>" for t in sorted(tags))


def _attr(el: _Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise _bad(el, f"missing attribute {name}")
    return value


def _cimname(el: _Element, name: str = "NAME") -> str:
    value = el.get(name)
    if not value:
        raise _bad(el, f"missing or empty attribute {name}")
    return value


def _cimtype(el: _Element, name: str = "TYPE", *, required: bool = True) -> str | None:
    value = el.get(name)
    if value is None:
        if required:
            raise _bad(el, f"missing attribute {name}")
        return None
    if value not in CIM_TYPES:
        raise _bad(el, f"invalid {name}={value!r}")
    return value


def _flag(el: _Element, name: str) -> bool | None:
    """A boolean attribute (DSP0201 §5.2: "true" | "false")."""
    value = el.get(name)
    if value is None:
        return None
    low = value.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    raise _bad(el, f"invalid {name}={value!r} (expected true or false)")


def _array_size(el: _Element) -> int | None:
    value = el.get("ARRAYSIZE")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise _bad(el, f"invalid ARRAYSIZE={value!r}")
    return int(value)


def _embedded_attr(el: _Element) -> str | None:
    # DSP0201 §5.2.5 spells it EmbeddedObject; OpenPegasus has sent EMBEDDEDOBJECT.
    value = el.get("EmbeddedObject") or el.get("EMBEDDEDOBJECT")
    if value is None:
        return None
    if value not in _EMBEDDED:
        raise _bad(el, f"invalid EmbeddedObject={value!r}")
    return value


def _typed(el: _Element, text: str, cimtype: str) -> Any:
    """A VALUE's text as a pywbem value of `cimtype`; strings kept exactly as sent."""
    try:
        return typed_text(text, cimtype)
    except BadText as exc:
        raise _bad(el, str(exc)) from None


# ---- the decoder ------------------------------------------------------------------------


class _Decoder:
    """Walks one document top-down; each method checks one element's content model."""

    def __init__(self, max_depth: int, max_elements: int) -> None:
        self.max_depth = max_depth
        self.max_elements = max_elements

    # -- names and paths (DSP0201 §5.3.3 - §5.3.4) --

    def localnamespacepath(self, el: _Element) -> str:
        kids = _kids(el)
        if not kids:
            raise _bad(el, "expected at least one <NAMESPACE>")
        parts = []
        for kid in kids:
            if kid.tag != "NAMESPACE":
                raise _bad(el, f"unexpected element <{kid.tag}>, expected <NAMESPACE>")
            _empty(kid)
            parts.append(_cimname(kid))
        return "/".join(parts)

    def namespacepath(self, el: _Element) -> tuple[str, str]:
        kids = _kids(el)
        if len(kids) != 2 or kids[0].tag != "HOST" or kids[1].tag != "LOCALNAMESPACEPATH":
            raise _bad(el, "expected <HOST> then <LOCALNAMESPACEPATH>")
        host = _leaf_text(kids[0]).strip()
        if not host:
            raise _bad(kids[0], "empty host")
        return host, self.localnamespacepath(kids[1])

    def classname(self, el: _Element) -> CIMClassName:
        _empty(el)
        return CIMClassName(_cimname(el))

    def _path_pair(self, el: _Element, first: str, second: str) -> tuple[_Element, _Element]:
        kids = _kids(el)
        if len(kids) != 2 or kids[0].tag != first or kids[1].tag != second:
            raise _bad(el, f"expected <{first}> then <{second}>")
        return kids[0], kids[1]

    def classpath(self, el: _Element) -> CIMClassName:
        nsp, cn = self._path_pair(el, "NAMESPACEPATH", "CLASSNAME")
        host, namespace = self.namespacepath(nsp)
        name = self.classname(cn)
        return CIMClassName(name.classname, host=host, namespace=namespace)

    def localclasspath(self, el: _Element) -> CIMClassName:
        nsp, cn = self._path_pair(el, "LOCALNAMESPACEPATH", "CLASSNAME")
        namespace = self.localnamespacepath(nsp)
        return CIMClassName(self.classname(cn).classname, namespace=namespace)

    def instancepath(self, el: _Element) -> CIMInstanceName:
        nsp, iname = self._path_pair(el, "NAMESPACEPATH", "INSTANCENAME")
        host, namespace = self.namespacepath(nsp)
        return self.instancename(iname, namespace=namespace, host=host)

    def localinstancepath(self, el: _Element) -> CIMInstanceName:
        nsp, iname = self._path_pair(el, "LOCALNAMESPACEPATH", "INSTANCENAME")
        return self.instancename(iname, namespace=self.localnamespacepath(nsp))

    def instancename(
        self, el: _Element, namespace: str | None = None, host: str | None = None
    ) -> CIMInstanceName:
        """DSP0201 §5.3.4.6 INSTANCENAME (KEYBINDING* | KEYVALUE? | VALUE.REFERENCE?)."""
        classname = _cimname(el, "CLASSNAME")
        keys: dict[str, Any] = {}
        seen: set[str] = set()
        for kb in _kids(el):
            if kb.tag != "KEYBINDING":
                # A bare KEYVALUE / VALUE.REFERENCE names a key without naming the property;
                # pywbem's CIMInstanceName cannot hold that, and no client sends it.
                raise _bad(el, f"unexpected element <{kb.tag}>, expected <KEYBINDING>")
            name = _cimname(kb)
            lower = name.lower()
            if lower in seen:
                raise _bad(kb, f"duplicate key {name}")
            seen.add(lower)
            value_el = _one(kb, _KEYBINDING_KIDS)
            if value_el.tag == "KEYVALUE":
                keys[name] = self.keyvalue(value_el)
            else:
                ref = self.value_reference(value_el)
                if not isinstance(ref, CIMInstanceName):
                    # DSP0004: a reference key refers to an instance; pywbem cannot hold a
                    # class path there either.
                    raise _bad(kb, "a key's VALUE.REFERENCE must name an instance, not a class")
                keys[name] = ref
        return CIMInstanceName(classname, keys, namespace=namespace, host=host)

    def keyvalue(self, el: _Element) -> Any:
        """DSP0201 §5.2.9 KEYVALUE: typed by TYPE when present (2.4), else by VALUETYPE."""
        text = _leaf_text(el).strip()
        cimtype = _cimtype(el, required=False)
        valuetype = el.get("VALUETYPE", "string")
        if valuetype not in VALUE_TYPES:
            raise _bad(el, f"invalid VALUETYPE={valuetype!r}")
        try:
            return key_text(text, cimtype, valuetype)
        except BadText as exc:
            raise _bad(el, str(exc)) from None

    def value_reference(self, el: _Element) -> CIMInstanceName | CIMClassName:
        kid = _one(el, _REFERENCE_KIDS)
        result: CIMInstanceName | CIMClassName = self._reference_readers[kid.tag](self, kid)
        return result

    _reference_readers: ClassVar[dict[str, Callable[[_Decoder, _Element], Any]]] = {
        "CLASSPATH": classpath,
        "LOCALCLASSPATH": localclasspath,
        "CLASSNAME": classname,
        "INSTANCEPATH": instancepath,
        "LOCALINSTANCEPATH": localinstancepath,
        "INSTANCENAME": instancename,
    }

    # -- untyped parameter values (messages.Value) --

    def value(self, el: _Element) -> str:
        return _leaf_text(el)

    def value_array(self, el: _Element) -> list[str | None]:
        items: list[str | None] = []
        for kid in _kids(el):
            if kid.tag == "VALUE":
                items.append(_leaf_text(kid))
            elif kid.tag == "VALUE.NULL":
                _empty(kid)
                items.append(None)
            else:
                raise _bad(el, f"unexpected element <{kid.tag}>, expected <VALUE>")
        return items

    def value_refarray(self, el: _Element) -> list[CIMInstanceName | CIMClassName | None]:
        items: list[CIMInstanceName | CIMClassName | None] = []
        for kid in _kids(el):
            if kid.tag == "VALUE.REFERENCE":
                items.append(self.value_reference(kid))
            elif kid.tag == "VALUE.NULL":
                _empty(kid)
                items.append(None)
            else:
                raise _bad(el, f"unexpected element <{kid.tag}>, expected <VALUE.REFERENCE>")
        return items

    def value_namedinstance(self, el: _Element) -> CIMInstance:
        iname, inst = self._path_pair(el, "INSTANCENAME", "INSTANCE")
        instance = self.instance(inst)
        instance.path = self.instancename(iname)
        return instance

    # -- typed objects: qualifiers, properties, instances, classes (DSP0201 §5.3.5 - §5.3.6) --

    def _typed_value(self, el: _Element, cimtype: str) -> Any:
        """The optional VALUE / VALUE.ARRAY child of QUALIFIER or QUALIFIER.DECLARATION."""
        kids = _kids(el)
        if not kids:
            return None
        if len(kids) > 1:
            raise _bad(el, "more than one value")
        kid = kids[0]
        if kid.tag == "VALUE":
            return _typed(kid, _leaf_text(kid), cimtype)
        if kid.tag == "VALUE.ARRAY":
            return [None if v is None else _typed(kid, v, cimtype) for v in self.value_array(kid)]
        raise _bad(el, f"unexpected element <{kid.tag}>, expected <VALUE> or <VALUE.ARRAY>")

    def qualifier(self, el: _Element) -> CIMQualifier:
        cimtype = _cimtype(el)
        assert cimtype is not None
        return CIMQualifier(
            _cimname(el),
            self._typed_value(el, cimtype),
            type=cimtype,
            propagated=_flag(el, "PROPAGATED"),
            overridable=_flag(el, "OVERRIDABLE"),
            tosubclass=_flag(el, "TOSUBCLASS"),
            toinstance=_flag(el, "TOINSTANCE"),
            translatable=_flag(el, "TRANSLATABLE"),
        )

    def qualifier_declaration(self, el: _Element) -> CIMQualifierDeclaration:
        cimtype = _cimtype(el)
        assert cimtype is not None
        kids = _kids(el)
        scopes: dict[str, bool] | None = None
        if kids and kids[0].tag == "SCOPE":
            scope = kids.pop(0)
            _empty(scope)
            scopes = {}
            for name in _SCOPES:
                flag = _flag(scope, name)
                if flag is not None:
                    scopes[name] = flag
        value: Any = None
        if len(kids) > 1:
            raise _bad(el, "more than one value")
        if kids:
            kid = kids[0]
            if kid.tag == "VALUE":
                value = _typed(kid, _leaf_text(kid), cimtype)
            elif kid.tag == "VALUE.ARRAY":
                value = [
                    None if v is None else _typed(kid, v, cimtype) for v in self.value_array(kid)
                ]
            else:
                raise _bad(el, f"unexpected element <{kid.tag}>")
        is_array = _flag(el, "ISARRAY")
        return CIMQualifierDeclaration(
            _cimname(el),
            cimtype,
            value=value,
            is_array=bool(is_array) or isinstance(value, list),
            array_size=_array_size(el),
            scopes=scopes,
            overridable=_flag(el, "OVERRIDABLE"),
            tosubclass=_flag(el, "TOSUBCLASS"),
            toinstance=_flag(el, "TOINSTANCE"),
            translatable=_flag(el, "TRANSLATABLE"),
        )

    def _split_qualifiers(
        self, el: _Element, allowed: frozenset[str]
    ) -> tuple[list[CIMQualifier], list[_Element]]:
        """QUALIFIER* followed by elements of `allowed` (DSP0201 puts qualifiers first)."""
        qualifiers: list[CIMQualifier] = []
        rest: list[_Element] = []
        for kid in _kids(el):
            if kid.tag == "QUALIFIER":
                if rest:
                    raise _bad(kid, "<QUALIFIER> after other content")
                qualifiers.append(self.qualifier(kid))
            elif kid.tag in allowed:
                rest.append(kid)
            else:
                raise _bad(el, f"unexpected element <{kid.tag}>")
        return qualifiers, rest

    def scalar_property(self, el: _Element) -> CIMProperty:
        cimtype = _cimtype(el)
        assert cimtype is not None
        embedded = _embedded_attr(el)
        qualifiers, rest = self._split_qualifiers(el, _VALUE_ONLY)
        if len(rest) > 1:
            raise _bad(el, "more than one <VALUE>")
        value: Any = None
        if rest:
            text = _leaf_text(rest[0])
            value = self.embedded(rest[0], text) if embedded else _typed(rest[0], text, cimtype)
        return CIMProperty(
            _cimname(el),
            value,
            type=cimtype,
            class_origin=el.get("CLASSORIGIN"),
            propagated=_flag(el, "PROPAGATED"),
            qualifiers=qualifiers,
            embedded_object=embedded,
        )

    def property_array(self, el: _Element) -> CIMProperty:
        cimtype = _cimtype(el)
        assert cimtype is not None
        embedded = _embedded_attr(el)
        qualifiers, rest = self._split_qualifiers(el, _VALUE_ARRAY_ONLY)
        if len(rest) > 1:
            raise _bad(el, "more than one <VALUE.ARRAY>")
        value: list[Any] | None = None
        if rest:
            value = []
            for text in self.value_array(rest[0]):
                if text is None:
                    value.append(None)
                elif embedded:
                    value.append(self.embedded(rest[0], text))
                else:
                    value.append(_typed(rest[0], text, cimtype))
        return CIMProperty(
            _cimname(el),
            value,
            type=cimtype,
            is_array=True,
            array_size=_array_size(el),
            class_origin=el.get("CLASSORIGIN"),
            propagated=_flag(el, "PROPAGATED"),
            qualifiers=qualifiers,
            embedded_object=embedded,
        )

    def property_reference(self, el: _Element) -> CIMProperty:
        qualifiers, rest = self._split_qualifiers(el, _REFERENCE_ONLY)
        if len(rest) > 1:
            raise _bad(el, "more than one <VALUE.REFERENCE>")
        value = self.value_reference(rest[0]) if rest else None
        return CIMProperty(
            _cimname(el),
            value,
            type="reference",
            reference_class=el.get("REFERENCECLASS"),
            class_origin=el.get("CLASSORIGIN"),
            propagated=_flag(el, "PROPAGATED"),
            qualifiers=qualifiers,
        )

    _property_readers: ClassVar[dict[str, Callable[[_Decoder, _Element], CIMProperty]]] = {
        "PROPERTY": scalar_property,
        "PROPERTY.ARRAY": property_array,
        "PROPERTY.REFERENCE": property_reference,
    }

    def _properties(self, elements: list[_Element]) -> list[CIMProperty]:
        props: list[CIMProperty] = []
        seen: set[str] = set()
        for kid in elements:
            prop = self._property_readers[kid.tag](self, kid)
            key = prop.name.lower()
            if key in seen:
                raise _bad(kid, f"duplicate property {prop.name}")
            seen.add(key)
            props.append(prop)
        return props

    def instance(self, el: _Element) -> CIMInstance:
        classname = _cimname(el, "CLASSNAME")
        qualifiers, rest = self._split_qualifiers(el, _PROPERTY_TAGS)
        return CIMInstance(classname, properties=self._properties(rest), qualifiers=qualifiers)

    def parameter(self, el: _Element) -> CIMParameter:
        tag = el.tag
        qualifiers, _ = self._split_qualifiers(el, frozenset())  # QUALIFIER* only
        name = _cimname(el)
        if tag == "PARAMETER" or tag == "PARAMETER.ARRAY":
            cimtype = _cimtype(el)
            return CIMParameter(
                name,
                cimtype,
                is_array=tag == "PARAMETER.ARRAY",
                array_size=_array_size(el),
                qualifiers=qualifiers,
            )
        return CIMParameter(
            name,
            "reference",
            reference_class=el.get("REFERENCECLASS"),
            is_array=tag == "PARAMETER.REFARRAY",
            array_size=_array_size(el),
            qualifiers=qualifiers,
        )

    def method(self, el: _Element) -> CIMMethod:
        qualifiers, rest = self._split_qualifiers(el, _PARAMETER_TAGS)
        return CIMMethod(
            _cimname(el),
            # DSP0201 leaves TYPE #IMPLIED, but a method without a return type cannot be
            # declared (DSP0004; pywbem's CIMMethod refuses it too).
            return_type=_cimtype(el),
            parameters=[self.parameter(p) for p in rest],
            class_origin=el.get("CLASSORIGIN"),
            propagated=_flag(el, "PROPAGATED"),
            qualifiers=qualifiers,
        )

    def cim_class(self, el: _Element) -> CIMClass:
        name = _cimname(el)
        qualifiers, rest = self._split_qualifiers(el, _PROPERTY_TAGS | {"METHOD"})
        props = [k for k in rest if k.tag != "METHOD"]
        methods = [k for k in rest if k.tag == "METHOD"]
        if props and methods and rest.index(methods[0]) < rest.index(props[-1]):
            raise _bad(el, "property after <METHOD>")
        return CIMClass(
            name,
            properties=self._properties(props),
            methods=[self.method(m) for m in methods],
            superclass=el.get("SUPERCLASS"),
            qualifiers=qualifiers,
        )

    def embedded(self, el: _Element, text: str) -> CIMInstance | CIMClass:
        """DSP0201 §5.2.5: an EmbeddedObject value is the escaped CIM-XML of an INSTANCE/CLASS."""
        if self.max_depth <= 1:
            raise _bad(el, "embedded objects nested too deeply")
        body = text.strip().encode("utf-8")
        root = _parse_xml(body, self.max_depth - 1, self.max_elements)
        inner = _Decoder(self.max_depth - 1, self.max_elements)
        if root.tag == "INSTANCE":
            return inner.instance(root)
        if root.tag == "CLASS":
            return inner.cim_class(root)
        raise _bad(el, f"embedded object is <{root.tag}>, expected <INSTANCE> or <CLASS>")

    # -- parameters --

    def param_value(self, el: _Element, allowed: frozenset[str]) -> Value:
        kids = _kids(el)
        if not kids:
            return None
        if len(kids) > 1:
            raise _bad(el, "more than one value")
        kid = kids[0]
        if kid.tag not in allowed:
            raise _bad(el, f"unexpected element <{kid.tag}>")
        return self._param_readers[kid.tag](self, kid)

    _param_readers: ClassVar[dict[str, Callable[[_Decoder, _Element], Value]]] = {
        "VALUE": value,
        "VALUE.ARRAY": value_array,
        "VALUE.REFERENCE": value_reference,
        "VALUE.REFARRAY": value_refarray,
        "CLASSNAME": classname,
        "INSTANCENAME": instancename,
        "QUALIFIER.DECLARATION": qualifier_declaration,
        "CLASS": cim_class,
        "INSTANCE": instance,
        "VALUE.NAMEDINSTANCE": value_namedinstance,
    }

    # -- messages (DSP0201 §5.3.1 - §5.3.2) --

    def cim(self, root: _Element) -> Request:
        if root.tag != "CIM":
            raise _invalid(f"root element is <{root.tag}>, expected <CIM> (line {root.sourceline})")
        cim_version = _attr(root, "CIMVERSION")
        if not CIM_VERSION.fullmatch(cim_version):
            raise ProtocolError(
                501, "unsupported-cim-version", f'CIM version "{cim_version}" is not supported.'
            )
        dtd_version = _attr(root, "DTDVERSION")
        if not CIM_VERSION.fullmatch(dtd_version):
            raise ProtocolError(
                501, "unsupported-dtd-version", f'DTD version "{dtd_version}" is not supported.'
            )
        message = _one(root, _CIM_KIDS)
        if message.tag != "MESSAGE":
            raise _bad(message, "a <DECLARATION> is not a request")
        return self.message(message)

    def message(self, el: _Element) -> Request:
        message_id = _attr(el, "ID")
        protocol_version = _attr(el, "PROTOCOLVERSION")
        if not PROTOCOL_VERSION.fullmatch(protocol_version):
            raise ProtocolError(
                501,
                "unsupported-protocol-version",
                f'CIM protocol version "{protocol_version}" is not supported.',
            )
        body = _one(el, _MESSAGE_KIDS)
        tag = body.tag
        if tag == "MULTIREQ" or tag == "MULTIEXPREQ":
            # The header check answered 501 to a batch that says so (CIMBatch,
            # CIMExportBatch); one that does not has headers that do not match its body:
            # 400 header-mismatch, as OpenPegasus answers (DSP0200 §3.3.9).
            header = "CIMBatch" if tag == "MULTIREQ" else "CIMExportBatch"
            raise ProtocolError(
                400,
                "header-mismatch",
                f"<{tag}> without the {header} header. This server does not support "
                "multiple operations in one request (DSP0200 §3.3.9): send each on its own.",
            )
        if tag not in ("SIMPLEREQ", "SIMPLEEXPREQ"):
            raise _bad(body, f"<{tag}> is not a request")
        call = self._call(body, "EXPMETHODCALL" if tag == "SIMPLEEXPREQ" else None)
        if call.tag == "IMETHODCALL":
            return self.imethodcall(call, message_id, protocol_version)
        if call.tag == "METHODCALL":
            return self.methodcall(call, message_id, protocol_version)
        return self.expmethodcall(call, message_id, protocol_version)

    def _call(self, el: _Element, only: str | None) -> _Element:
        """SIMPLEREQ (CORRELATOR*, (METHODCALL | IMETHODCALL)); SIMPLEEXPREQ likewise."""
        allowed = frozenset({only}) if only else _SIMPLEREQ_CALLS
        kids = _kids(el)
        while kids and kids[0].tag == "CORRELATOR":
            corr = kids.pop(0)
            _cimname(corr)
            _cimtype(corr)
            value = _one(corr, _VALUE_ONLY)
            _leaf_text(value)
        if len(kids) != 1 or kids[0].tag not in allowed:
            found = f"<{kids[0].tag}>" if kids else "nothing"
            raise _bad(el, f"expected one of {_names(allowed)}, found {found}")
        return kids[0]

    def imethodcall(self, el: _Element, message_id: str, protocol_version: str) -> IntrinsicCall:
        method = _cimname(el)
        kids = _kids(el)
        if not kids or kids[0].tag != "LOCALNAMESPACEPATH":
            raise _bad(el, "expected <LOCALNAMESPACEPATH> first")
        namespace = self.localnamespacepath(kids[0])
        params: dict[str, Value] = {}
        seen: set[str] = set()
        duplicate: str | None = None
        for kid in kids[1:]:
            if kid.tag != "IPARAMVALUE":
                raise _bad(el, f"unexpected element <{kid.tag}>, expected <IPARAMVALUE>")
            name = _cimname(kid)
            value = self.param_value(kid, _IPARAMVALUE_KIDS)
            if name.lower() in seen:
                duplicate = duplicate or name
                continue
            seen.add(name.lower())
            params[name] = value
        return IntrinsicCall(message_id, protocol_version, method, namespace, params, duplicate)

    def methodcall(self, el: _Element, message_id: str, protocol_version: str) -> ExtrinsicCall:
        method = _cimname(el)
        kids = _kids(el)
        if not kids or kids[0].tag not in ("LOCALCLASSPATH", "LOCALINSTANCEPATH"):
            raise _bad(el, "expected <LOCALCLASSPATH> or <LOCALINSTANCEPATH> first")
        target: CIMClassName | CIMInstanceName
        if kids[0].tag == "LOCALCLASSPATH":
            target = self.localclasspath(kids[0])
        else:
            target = self.localinstancepath(kids[0])
        params: list[ParamValue] = []
        for kid in kids[1:]:
            if kid.tag != "PARAMVALUE":
                raise _bad(el, f"unexpected element <{kid.tag}>, expected <PARAMVALUE>")
            # A parameter given twice is kept twice: the operation layer answers
            # CIM_ERR_INVALID_PARAMETER (DSP0200), as for any other incorrect parameter.
            name = _cimname(kid)
            paramtype = kid.get("PARAMTYPE")
            if paramtype is not None and paramtype not in PARAM_TYPES:
                raise _bad(kid, f"invalid PARAMTYPE={paramtype!r}")
            embedded = _embedded_attr(kid)
            value = self.param_value(kid, _PARAMVALUE_KIDS)
            params.append(ParamValue(name, paramtype, value, embedded))
        return ExtrinsicCall(message_id, protocol_version, method, target, tuple(params))

    def expmethodcall(self, el: _Element, message_id: str, protocol_version: str) -> ExportCall:
        method = _cimname(el)
        params: dict[str, Value] = {}
        for kid in _kids(el):
            if kid.tag != "EXPPARAMVALUE":
                raise _bad(el, f"unexpected element <{kid.tag}>, expected <EXPPARAMVALUE>")
            name = _cimname(kid)
            if name in params:
                raise _bad(kid, f"duplicate parameter {name}")
            inner = _kids(kid)
            if len(inner) > 1 or (inner and inner[0].tag != "INSTANCE"):
                raise _bad(kid, "expected at most one <INSTANCE>")
            params[name] = self.instance(inner[0]) if inner else None
        return ExportCall(message_id, protocol_version, method, params)


_KEYBINDING_KIDS = frozenset({"KEYVALUE", "VALUE.REFERENCE"})
_REFERENCE_KIDS = frozenset(_Decoder._reference_readers)
_VALUE_ONLY = frozenset({"VALUE"})
_VALUE_ARRAY_ONLY = frozenset({"VALUE.ARRAY"})
_REFERENCE_ONLY = frozenset({"VALUE.REFERENCE"})
_PROPERTY_TAGS = frozenset(_Decoder._property_readers)
_PARAMETER_TAGS = frozenset(
    {"PARAMETER", "PARAMETER.REFERENCE", "PARAMETER.ARRAY", "PARAMETER.REFARRAY"}
)
_SCOPES = ("CLASS", "ASSOCIATION", "REFERENCE", "PROPERTY", "METHOD", "PARAMETER", "INDICATION")
_CIM_KIDS = frozenset({"MESSAGE", "DECLARATION"})
_MESSAGE_KIDS = frozenset(
    {
        "SIMPLEREQ",
        "MULTIREQ",
        "SIMPLERSP",
        "MULTIRSP",
        "SIMPLEEXPREQ",
        "MULTIEXPREQ",
        "SIMPLEEXPRSP",
        "MULTIEXPRSP",
    }
)
_SIMPLEREQ_CALLS = frozenset({"METHODCALL", "IMETHODCALL"})
# DSP0201 §5.3.2.2 IPARAMVALUE and §5.3.2.1 PARAMVALUE content models (2.4).
_IPARAMVALUE_KIDS = frozenset(
    {
        "VALUE",
        "VALUE.ARRAY",
        "VALUE.REFERENCE",
        "CLASSNAME",
        "INSTANCENAME",
        "QUALIFIER.DECLARATION",
        "CLASS",
        "INSTANCE",
        "VALUE.NAMEDINSTANCE",
    }
)
_PARAMVALUE_KIDS = frozenset(
    {
        "VALUE",
        "VALUE.REFERENCE",
        "VALUE.ARRAY",
        "VALUE.REFARRAY",
        "CLASSNAME",
        "INSTANCENAME",
        "CLASS",
        "INSTANCE",
        "VALUE.NAMEDINSTANCE",
    }
)


# ---- entry point ------------------------------------------------------------------------


def _parse_xml(body: bytes, max_depth: int, max_elements: int) -> _Element:
    """Bytes -> lxml root, refusing DTDs, bad UTF-8, ill-formed XML and oversized trees."""
    # No DTD, no entity declarations (DSP0201 request messages never carry one): checked on the
    # raw bytes so an entity bomb is refused before any parsing.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise _invalid("DOCTYPE and ENTITY declarations are not accepted.")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"Request body is not valid UTF-8 (byte offset {exc.start}).") from None
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        if "depth" in str(exc):
            raise _invalid(f"Element nesting exceeds the limit of {max_depth}.") from None
        raise ProtocolError(400, "request-not-well-formed", str(exc)) from None
    # Depth and element count are checked in C: an XPath probe for any element one level below
    # the limit (~2 µs), and `bytes.count` as an upper bound of the element count.
    # Every element starts with "<", so a body with at most `max_depth` of them cannot nest
    # deeper than that: small requests (a GetInstance has ~15) skip the probe.
    tags = body.count(b"<")
    if tags > max_depth and _too_deep(max_depth)(root):
        raise _invalid(f"Element nesting exceeds the limit of {max_depth}.")
    if tags > max_elements and _count_elements(root) > max_elements:
        raise _invalid(f"Request has more than {max_elements} elements.")
    return root


def _too_deep(max_depth: int) -> etree.XPath:
    """A compiled probe per thread and limit (XPath objects, like parsers, stay in one thread)."""
    probes: dict[int, etree.XPath] | None = getattr(_tls, "depth_probes", None)
    if probes is None:
        probes = _tls.depth_probes = {}
    probe = probes.get(max_depth)
    if probe is None:
        probe = probes[max_depth] = etree.XPath(
            "boolean(/" + "/".join(["*"] * (max_depth + 1)) + ")"
        )
    return probe


def _count_elements(root: _Element) -> int:
    return sum(1 for _ in root.iter())


def parse_request(
    body: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Request:
    """Decode one CIM-XML request body (operation or export) or raise ProtocolError."""
    if max_depth >= canonical.DEPTH:
        request = canonical.read_canonical(body, max_elements)
        if request is not None:
            return request
    return parse_tree(body, max_depth=max_depth, max_elements=max_elements)


def parse_tree(
    body: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Request:
    """`parse_request` without the canonical-form reader: every document through lxml and
    the walker (what the canonical reader is tested against)."""
    root = _parse_xml(body, max_depth, max_elements)
    try:
        return _Decoder(max_depth, max_elements).cim(root)
    except (ValueError, TypeError) as exc:
        # pywbem's constructors check what the walker did not (a combination of attributes):
        # still the client's request, so a 400 that says why, never an internal error.
        raise _invalid(f"Request is not valid: {exc}") from None
