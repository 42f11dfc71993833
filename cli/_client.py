"""A small CIM-XML client for the classic command-line tools (icapmanage, vcemcli).

pywbem's WBEMConnection cannot talk over a Unix socket, and the tools must work without a
password on the local socket (SPEC §4.5: peer credentials authenticate), so this module
speaks DSP0200/DSP0201 itself, for the few operations the tools need:

    client = CimClient()                                   # local Unix socket
    client = CimClient("http://gm1:5988", "admin", "pw")   # or HTTP(S) with Basic auth
    rv, out = client.invoke("seizeRights", [Param("HostName", "string", "hostA1")])
    rows = client.enumerate_instances("GM_GroupMember")    # list of {property: value}

Values come back as plain Python: integers for the integer types, bool, str (datetimes stay
CIM datetime strings), lists for arrays, None for NULL. A CIM `<ERROR>` raises `CimError`
with its code and description; a transport or HTTP failure raises `ClientError`.
The XML is built from escaped strings and parsed with lxml without DTDs or entities.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from cli.wbemexec import encode_uri
from provider.paths import default_socket_path

__all__ = ["AuthenticationFailed", "CimClient", "CimError", "ClientError", "Param", "keys"]

_INT_TYPES = {"uint8", "uint16", "uint32", "uint64", "sint8", "sint16", "sint32", "sint64"}


class ClientError(Exception):
    """The request did not get a CIM-XML answer (connection, HTTP status, bad XML)."""


class AuthenticationFailed(ClientError):
    """HTTP 401: no credentials, or wrong ones."""


class CimError(Exception):
    """The server answered with a CIM error (DSP0201 `<ERROR CODE= DESCRIPTION=>`)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


@dataclass(frozen=True)
class Param:
    """A typed value to send: a method parameter, a key or a property."""

    name: str
    type: str  # CIM type: string, boolean, uint32, ...
    value: Any  # a list for an array


def _value_text(cimtype: str, value: Any) -> str:
    if cimtype == "boolean":
        return "TRUE" if value else "FALSE"
    return str(value)


def _value_xml(p: Param) -> str:
    if isinstance(p.value, list | tuple):
        items = "".join(f"<VALUE>{escape(_value_text(p.type, v))}</VALUE>" for v in p.value)
        return f"<VALUE.ARRAY>{items}</VALUE.ARRAY>"
    return f"<VALUE>{escape(_value_text(p.type, p.value))}</VALUE>"


def _namespace_xml(namespace: str) -> str:
    parts = "".join(f"<NAMESPACE NAME={quoteattr(n)}></NAMESPACE>" for n in namespace.split("/"))
    return f"<LOCALNAMESPACEPATH>{parts}</LOCALNAMESPACEPATH>"


def _instance_name_xml(classname: str, keys: Sequence[Param]) -> str:
    bindings = "".join(
        f"<KEYBINDING NAME={quoteattr(k.name)}>"
        f"<KEYVALUE VALUETYPE={quoteattr(_valuetype(k.type))}>"
        f"{escape(_value_text(k.type, k.value))}</KEYVALUE></KEYBINDING>"
        for k in keys
    )
    return f"<INSTANCENAME CLASSNAME={quoteattr(classname)}>{bindings}</INSTANCENAME>"


def _valuetype(cimtype: str) -> str:
    if cimtype == "boolean":
        return "boolean"
    return "numeric" if cimtype in _INT_TYPES or cimtype.startswith("real") else "string"


def _property_xml(p: Param) -> str:
    if isinstance(p.value, list | tuple):
        return (
            f"<PROPERTY.ARRAY NAME={quoteattr(p.name)} TYPE={quoteattr(p.type)}>"
            f"{_value_xml(p)}</PROPERTY.ARRAY>"
        )
    return f"<PROPERTY NAME={quoteattr(p.name)} TYPE={quoteattr(p.type)}>{_value_xml(p)}</PROPERTY>"


def _instance_xml(classname: str, props: Sequence[Param]) -> str:
    body = "".join(_property_xml(p) for p in props if p.value is not None)
    return f"<INSTANCE CLASSNAME={quoteattr(classname)}>{body}</INSTANCE>"


def _envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0">'
        f"<SIMPLEREQ>{body}</SIMPLEREQ></MESSAGE></CIM>"
    ).encode()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _typed(cimtype: str | None, text: str | None) -> Any:
    if text is None:
        return None
    if cimtype in _INT_TYPES:
        return int(text)
    if cimtype == "boolean":
        return text.strip().upper() == "TRUE"
    if cimtype in ("real32", "real64"):
        return float(text)
    return text


def _element_value(element: Any, cimtype: str | None) -> Any:
    array = element.find("VALUE.ARRAY")
    if array is not None:
        return [_typed(cimtype, v.text or "") for v in array.findall("VALUE")]
    value = element.find("VALUE")
    if value is not None:
        return _typed(cimtype, value.text or "")
    ref = element.find("VALUE.REFERENCE")
    if ref is not None:
        return etree.tostring(ref, encoding="unicode")
    return None


def _instance_dict(instance: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prop in instance:
        if prop.tag in ("PROPERTY", "PROPERTY.ARRAY", "PROPERTY.REFERENCE"):
            out[prop.get("NAME")] = _element_value(prop, prop.get("TYPE"))
    return out


class CimClient:
    def __init__(
        self,
        url: str | None = None,
        user: str | None = None,
        password: str | None = None,
        namespace: str = "root/cimv2",
        timeout: float = 60.0,
        cafile: str | None = None,
    ) -> None:
        self.url = url
        self.user = user
        self.password = password
        self.namespace = namespace
        self.timeout = timeout
        self.cafile = cafile or os.environ.get("GM_CA_FILE") or None  # HTTPS trust

    def _connection(self) -> http.client.HTTPConnection:
        if self.url is None:
            return _UnixConnection(str(default_socket_path()), self.timeout)
        parts = urllib.parse.urlsplit(self.url if "://" in self.url else f"http://{self.url}")
        host = parts.hostname or "127.0.0.1"
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=self.cafile)
            return http.client.HTTPSConnection(
                host, parts.port or 5989, timeout=self.timeout, context=context
            )
        return http.client.HTTPConnection(host, parts.port or 5988, timeout=self.timeout)

    def _where(self) -> str:
        return self.url or f"the local socket {default_socket_path()}"

    def _post(self, method: str, cim_object: str, body: bytes) -> Any:
        headers = {
            "Content-Type": 'application/xml; charset="utf-8"',
            "CIMOperation": "MethodCall",
            "CIMMethod": encode_uri(method),
            "CIMObject": encode_uri(cim_object),
            "CIMProtocolVersion": "1.0",
        }
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        conn = self._connection()
        try:
            conn.request("POST", "/cimom", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            raise ClientError(f"cannot reach the Group Manager at {self._where()}: {exc}") from exc
        finally:
            conn.close()
        if response.status == 401:
            # The server says why (no credentials, or wrong ones); pass its words on.
            said = urllib.parse.unquote(response.getheader("PGErrorDetail") or "").strip()
            hint = (
                "check the user name and password"
                if self.user is not None
                else "give a user and password"
            )
            raise AuthenticationFailed(
                f"{self._where()} refused the credentials (HTTP 401"
                + (f": {said}" if said else "")
                + f"): {hint}"
            )
        if response.status != 200:
            detail = urllib.parse.unquote(response.getheader("PGErrorDetail") or "")
            error = response.getheader("CIMError") or ""
            raise ClientError(f"HTTP {response.status} {response.reason} {error} {detail}".strip())
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as exc:
            raise ClientError(f"the answer is not CIM-XML: {exc}") from exc
        response_element = root.find("MESSAGE/SIMPLERSP/*")
        if response_element is None:
            raise ClientError("the answer has no SIMPLERSP")
        failure = response_element.find("ERROR")
        if failure is not None:
            raise CimError(int(failure.get("CODE", "1")), failure.get("DESCRIPTION", ""))
        return response_element

    # -- extrinsic ------------------------------------------------------------------------

    def invoke(
        self, method: str, params: Sequence[Param] = (), classname: str = "GM_GroupManager"
    ) -> tuple[int | None, dict[str, Any]]:
        """Invoke a static method on `classname`; returns (return value, out parameters)."""
        values = "".join(
            f"<PARAMVALUE NAME={quoteattr(p.name)} PARAMTYPE={quoteattr(p.type)}>"
            f"{_value_xml(p)}</PARAMVALUE>"
            for p in params
            if p.value is not None
        )
        body = (
            f"<METHODCALL NAME={quoteattr(method)}><LOCALCLASSPATH>"
            f"{_namespace_xml(self.namespace)}<CLASSNAME NAME={quoteattr(classname)}></CLASSNAME>"
            f"</LOCALCLASSPATH>{values}</METHODCALL>"
        )
        answer = self._post(method, f"{self.namespace}:{classname}", _envelope(body))
        rv_element = answer.find("RETURNVALUE")
        rv = (
            _element_value(rv_element, rv_element.get("PARAMTYPE"))
            if rv_element is not None
            else None
        )
        out = {
            p.get("NAME"): _element_value(p, p.get("PARAMTYPE"))
            for p in answer.findall("PARAMVALUE")
        }
        return rv, out

    # -- intrinsic ------------------------------------------------------------------------

    def _intrinsic(self, method: str, params: str) -> Any:
        body = (
            f"<IMETHODCALL NAME={quoteattr(method)}>{_namespace_xml(self.namespace)}"
            f"{params}</IMETHODCALL>"
        )
        answer = self._post(method, self.namespace, _envelope(body))
        return answer.find("IRETURNVALUE")

    def enumerate_instances(self, classname: str) -> list[dict[str, Any]]:
        result = self._intrinsic(
            "EnumerateInstances",
            f'<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME={quoteattr(classname)}>'
            "</CLASSNAME></IPARAMVALUE>",
        )
        if result is None:
            return []
        return [_instance_dict(i) for i in result.iter("INSTANCE")]

    def get_instance(self, classname: str, keys: Sequence[Param]) -> dict[str, Any]:
        result = self._intrinsic(
            "GetInstance",
            f'<IPARAMVALUE NAME="InstanceName">{_instance_name_xml(classname, keys)}</IPARAMVALUE>',
        )
        instance = result.find("INSTANCE") if result is not None else None
        if instance is None:
            raise ClientError("GetInstance returned no instance")
        return _instance_dict(instance)

    def create_instance(self, classname: str, props: Sequence[Param]) -> None:
        self._intrinsic(
            "CreateInstance",
            f'<IPARAMVALUE NAME="NewInstance">{_instance_xml(classname, props)}</IPARAMVALUE>',
        )

    def modify_instance(
        self, classname: str, keys: Sequence[Param], props: Sequence[Param]
    ) -> None:
        names = "".join(f"<VALUE>{escape(p.name)}</VALUE>" for p in props)
        self._intrinsic(
            "ModifyInstance",
            '<IPARAMVALUE NAME="ModifiedInstance"><VALUE.NAMEDINSTANCE>'
            f"{_instance_name_xml(classname, keys)}{_instance_xml(classname, [*keys, *props])}"
            "</VALUE.NAMEDINSTANCE></IPARAMVALUE>"
            f'<IPARAMVALUE NAME="PropertyList"><VALUE.ARRAY>{names}</VALUE.ARRAY></IPARAMVALUE>',
        )

    def delete_instance(self, classname: str, keys: Sequence[Param]) -> None:
        self._intrinsic(
            "DeleteInstance",
            f'<IPARAMVALUE NAME="InstanceName">{_instance_name_xml(classname, keys)}</IPARAMVALUE>',
        )


def keys(**values: str) -> list[Param]:
    """String keys, the common case: keys(Name="Group1")."""
    return [Param(k, "string", v) for k, v in values.items()]
