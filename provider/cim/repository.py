"""The class repository: the MOF in `schemas/`, compiled once at start.

pywbem's MOF compiler (through pywbem_mock's public `FakedWBEMConnection`, which resolves
inheritance, propagated properties and class origins) compiles the files; we keep the fully
resolved classes and answer GetClass/EnumerateClasses ourselves from them, because the
mock's own GetClass deep-copies and costs about 3 ms a call, which is far too slow for a
request path. Flags (LocalOnly, IncludeQualifiers, IncludeClassOrigin, PropertyList) are
applied to a copy of the resolved class (DSP0200 §5.3.2.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pywbem import CIMClass, CIMMethod, CIMParameter, CIMProperty
from pywbem_mock import FakedWBEMConnection

from provider.errors import ConfigError, InvalidClass, InvalidNamespace, NotFound

__all__ = ["NAMESPACES", "ClassRepository", "load_repository"]

# namespace -> MOF files compiled into it, in order. profiles.mof (profile registration) is
# in both: its association ties root/interop's profiles to root/cimv2's GM_GroupManager, and
# a client may follow it from either namespace.
NAMESPACES: dict[str, tuple[str, ...]] = {
    "root/cimv2": ("qualifiers.mof", "profiles.mof", "gm.mof"),
    "root/interop": ("qualifiers.mof", "profiles.mof", "interop.mof"),
}


@dataclass(frozen=True, slots=True)
class PropertyType:
    name: str  # as declared (case preserved)
    cimtype: str
    is_array: bool
    reference_class: str | None
    is_key: bool
    class_origin: str | None  # the class that declares it (CLASSORIGIN)


class ClassRepository:
    def __init__(self, classes: dict[str, dict[str, CIMClass]]) -> None:
        # namespace (lower) -> class name (lower) -> fully resolved class
        self._classes = classes
        self._namespaces = {ns.lower(): ns for ns in classes}
        self._types: dict[tuple[str, str], dict[str, PropertyType]] = {}
        self._keys: dict[tuple[str, str], tuple[str, ...]] = {}
        self._methods: dict[tuple[str, str], dict[str, CIMMethod]] = {}
        self._associations = {
            ns.lower(): [
                cls.classname
                for cls in by_name.values()
                if (q := cls.qualifiers.get("Association")) is not None and q.value
            ]
            for ns, by_name in classes.items()
        }
        for ns, by_name in classes.items():
            for lname, cls in by_name.items():
                types = {
                    p.name.lower(): PropertyType(
                        p.name,
                        p.type,
                        bool(p.is_array),
                        p.reference_class,
                        _is_key(p),
                        p.class_origin,
                    )
                    for p in cls.properties.values()
                }
                self._types[(ns.lower(), lname)] = types
                self._keys[(ns.lower(), lname)] = tuple(t.name for t in types.values() if t.is_key)

    # ---- namespaces and names ----

    @property
    def namespaces(self) -> list[str]:
        return list(self._classes)

    def namespace(self, namespace: str) -> str:
        """The canonical spelling of a namespace, or CIM_ERR_INVALID_NAMESPACE."""
        canonical = self._namespaces.get(namespace.strip("/").lower())
        if canonical is None:
            raise InvalidNamespace(
                f"Namespace {namespace} does not exist. This server has: "
                + ", ".join(sorted(self._classes))
                + "."
            )
        return canonical

    def _ns(self, namespace: str) -> dict[str, CIMClass]:
        return self._classes[self.namespace(namespace)]

    def resolved(self, namespace: str, classname: str, *, missing: type = NotFound) -> CIMClass:
        """The fully resolved class (do not modify it)."""
        cls = self._ns(namespace).get(classname.lower())
        if cls is None:
            raise missing(f"Class {classname} does not exist in namespace {namespace}.")
        return cls

    def has_class(self, namespace: str, classname: str) -> bool:
        return classname.lower() in self._ns(namespace)

    def class_names(self, namespace: str, classname: str | None, deep: bool) -> list[str]:
        """EnumerateClassNames (DSP0200 §5.3.2.4): subclasses of `classname` (or the roots)."""
        by_name = self._ns(namespace)
        if classname is not None and classname.lower() not in by_name:
            raise InvalidClass(f"Class {classname} does not exist in namespace {namespace}.")
        parent = classname.lower() if classname else None
        names: list[str] = []
        for cls in by_name.values():
            sup = cls.superclass.lower() if cls.superclass else None
            if sup == parent or (deep and self._descends(by_name, cls, parent)):
                names.append(cls.classname)
        return names

    def _descends(self, by_name: dict[str, CIMClass], cls: CIMClass, ancestor: str | None) -> bool:
        if ancestor is None:
            return True
        sup = cls.superclass
        while sup:
            if sup.lower() == ancestor:
                return True
            sup = by_name[sup.lower()].superclass
        return False

    def is_a(self, namespace: str, classname: str, ancestor: str) -> bool:
        """`classname` is `ancestor` or derives from it (False for an unknown class)."""
        by_name = self._ns(namespace)
        cls = by_name.get(classname.lower())
        if cls is None:
            return False
        return cls.classname.lower() == ancestor.lower() or self._descends(
            by_name, cls, ancestor.lower()
        )

    def association_classes(self, namespace: str) -> list[str]:
        """The classes with the Association qualifier (DSP0004), in the namespace."""
        return self._associations[self.namespace(namespace).lower()]

    def subclasses_and_self(self, namespace: str, classname: str) -> list[str]:
        """The class and every class derived from it, for EnumerateInstances."""
        cls = self.resolved(namespace, classname, missing=InvalidClass)
        return [cls.classname, *self.class_names(namespace, classname, deep=True)]

    # ---- declarations used to type values ----

    def property_types(self, namespace: str, classname: str) -> dict[str, PropertyType]:
        """Lower-case property name -> declared type."""
        canonical = self.namespace(namespace).lower()
        return self._types[(canonical, self.resolved(namespace, classname).classname.lower())]

    def key_names(self, namespace: str, classname: str) -> tuple[str, ...]:
        canonical = self.namespace(namespace).lower()
        return self._keys[(canonical, self.resolved(namespace, classname).classname.lower())]

    def method(self, namespace: str, classname: str, name: str) -> CIMMethod | None:
        cls = self.resolved(namespace, classname)
        # pywbem's case-insensitive dict costs ~15 µs to search per call: index once per class.
        key = (self.namespace(namespace).lower(), cls.classname.lower())
        methods = self._methods.get(key)
        if methods is None:
            methods = self._methods[key] = {m.name.lower(): m for m in cls.methods.values()}
        return methods.get(name.lower())

    # ---- GetClass / EnumerateClasses ----

    def get_class(
        self,
        namespace: str,
        classname: str,
        *,
        local_only: bool = True,
        include_qualifiers: bool = True,
        include_class_origin: bool = False,
        property_list: Sequence[str] | None = None,
    ) -> CIMClass:
        cls = self.resolved(namespace, classname)
        return _shape(cls, local_only, include_qualifiers, include_class_origin, property_list)

    def classes(
        self,
        namespace: str,
        classname: str | None,
        *,
        deep: bool,
        local_only: bool,
        include_qualifiers: bool,
        include_class_origin: bool,
    ) -> Iterable[CIMClass]:
        for name in self.class_names(namespace, classname, deep):
            yield self.get_class(
                namespace,
                name,
                local_only=local_only,
                include_qualifiers=include_qualifiers,
                include_class_origin=include_class_origin,
            )


def _is_key(prop: CIMProperty) -> bool:
    qual = prop.qualifiers.get("Key")
    return bool(qual is not None and qual.value)


def _shape(
    cls: CIMClass,
    local_only: bool,
    include_qualifiers: bool,
    include_class_origin: bool,
    property_list: Sequence[str] | None,
) -> CIMClass:
    wanted = {p.lower() for p in property_list} if property_list is not None else None
    out = CIMClass(
        cls.classname,
        superclass=cls.superclass,
        qualifiers=dict(cls.qualifiers) if include_qualifiers else {},
    )
    for prop in cls.properties.values():
        if local_only and prop.propagated:
            continue
        if wanted is not None and prop.name.lower() not in wanted:
            continue
        copy = prop.copy()
        if not include_qualifiers:
            copy.qualifiers = {}
        if not include_class_origin:
            copy.class_origin = None
            copy.propagated = None
        out.properties[copy.name] = copy
    for method in cls.methods.values():
        if local_only and method.propagated:
            continue
        mcopy = method.copy()
        if not include_qualifiers:
            mcopy.qualifiers = {}
            mcopy.parameters = {n: _bare_param(p) for n, p in method.parameters.items()}
        if not include_class_origin:
            mcopy.class_origin = None
            mcopy.propagated = None
        out.methods[mcopy.name] = mcopy
    return out


def _bare_param(param: CIMParameter) -> CIMParameter:
    copy = param.copy()
    copy.qualifiers = {}
    return copy


def load_repository(schema_dir: Path) -> ClassRepository:
    """Compile the MOF of every namespace; a MOF error names the file and line."""
    conn = FakedWBEMConnection()
    resolved: dict[str, dict[str, CIMClass]] = {}
    for namespace, files in NAMESPACES.items():
        if namespace not in conn.cimrepository.namespaces:
            conn.add_namespace(namespace)
        for name in files:
            path = schema_dir / name
            try:
                conn.compile_mof_string(path.read_text(encoding="utf-8"), namespace=namespace)
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read the schema: {exc}") from exc
            except Exception as exc:  # pywbem raises MOFCompileError subclasses and CIMError
                raise ConfigError(f"{path}: MOF does not compile: {exc}") from exc
        names = conn.EnumerateClassNames(namespace=namespace, DeepInheritance=True)
        resolved[namespace] = {
            n.lower(): conn.GetClass(
                n,
                namespace=namespace,
                LocalOnly=False,
                IncludeQualifiers=True,
                IncludeClassOrigin=True,
            )
            for n in names
        }
    return ClassRepository(resolved)
