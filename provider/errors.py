"""The one exception tree of gm-provider, and what each exception means on the wire.

Every failure is split by blame, as h11 splits LocalProtocolError from RemoteProtocolError:
either the client sent something wrong, or we (or a device, or the store) failed. Each
exception carries its wire-level hint, so the mapping to HTTP/CIM-XML lives in one place
(`provider.app`), never in the code that raises.

    GMError
    ├── ClientError                  the request was wrong; resending it unchanged fails again
    │   ├── ProtocolError            HTTP-level (DSP0200): status + optional CIMError header
    │   │   └── AuthenticationRequired   401 with WWW-Authenticate: Basic realm=...
    │   └── CIMClientError           a CIM error inside an HTTP 200 response (DSP0201 <ERROR>)
    │       ├── AccessDenied         CIM_ERR_ACCESS_DENIED (2): privilege too low
    │       ├── InvalidNamespace     CIM_ERR_INVALID_NAMESPACE (3)
    │       ├── InvalidParameter     CIM_ERR_INVALID_PARAMETER (4): bad value or combination
    │       ├── InvalidClass         CIM_ERR_INVALID_CLASS (5)
    │       ├── NotFound             CIM_ERR_NOT_FOUND (6): no such enclosure/bay/host/...
    │       ├── NotSupported         CIM_ERR_NOT_SUPPORTED (7)
    │       ├── AlreadyExists        CIM_ERR_ALREADY_EXISTS (11)
    │       ├── TypeMismatch         CIM_ERR_TYPE_MISMATCH (13)
    │       ├── MethodNotFound       CIM_ERR_METHOD_NOT_FOUND (17)
    │       ├── InvalidEnumerationContext  CIM_ERR_INVALID_ENUMERATION_CONTEXT (21)
    │       └── Refused              CIM_ERR_FAILED (1): a rule of the domain refuses;
    │           └── NotActive        ... because this node is not the active Group Manager
    └── ServerError                  we failed: CIM_ERR_FAILED (1) with what went wrong
        ├── StoreError               the state store failed (connection, constraint, ...)
        │   └── Fenced               a write carried a stale epoch: we were superseded
        ├── DeviceError              a hardware driver failed (power, profile assignment)
        └── ConfigError              configuration or inventory invalid (names file and line)

`Fenced` is a ServerError: the client did nothing wrong, this node lost its role. The role
machine turns it into a transition to standby before anything else happens (SPEC 4.2), and
the client then sees `NotActive`.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "AuthenticationRequired",
    "CIMClientError",
    "ClientError",
    "ConfigError",
    "DeviceError",
    "Fenced",
    "GMError",
    "InvalidClass",
    "InvalidEnumerationContext",
    "InvalidNamespace",
    "InvalidParameter",
    "MethodNotFound",
    "NotActive",
    "NotFound",
    "NotSupported",
    "ProtocolError",
    "Refused",
    "ServerError",
    "StoreError",
    "TypeMismatch",
]

# DSP0200 status codes (reference cim-xml-protocol.md 2.6).
CIM_ERR_FAILED = 1
CIM_ERR_ACCESS_DENIED = 2
CIM_ERR_INVALID_NAMESPACE = 3
CIM_ERR_INVALID_PARAMETER = 4
CIM_ERR_INVALID_CLASS = 5
CIM_ERR_NOT_FOUND = 6
CIM_ERR_NOT_SUPPORTED = 7
CIM_ERR_ALREADY_EXISTS = 11
CIM_ERR_TYPE_MISMATCH = 13
CIM_ERR_METHOD_NOT_FOUND = 17
CIM_ERR_INVALID_ENUMERATION_CONTEXT = 21

CIM_STATUS_NAMES = {
    1: "CIM_ERR_FAILED",
    2: "CIM_ERR_ACCESS_DENIED",
    3: "CIM_ERR_INVALID_NAMESPACE",
    4: "CIM_ERR_INVALID_PARAMETER",
    5: "CIM_ERR_INVALID_CLASS",
    6: "CIM_ERR_NOT_FOUND",
    7: "CIM_ERR_NOT_SUPPORTED",
    8: "CIM_ERR_CLASS_HAS_CHILDREN",
    9: "CIM_ERR_CLASS_HAS_INSTANCES",
    10: "CIM_ERR_INVALID_SUPERCLASS",
    11: "CIM_ERR_ALREADY_EXISTS",
    12: "CIM_ERR_NO_SUCH_PROPERTY",
    13: "CIM_ERR_TYPE_MISMATCH",
    14: "CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED",
    15: "CIM_ERR_INVALID_QUERY",
    16: "CIM_ERR_METHOD_NOT_AVAILABLE",
    17: "CIM_ERR_METHOD_NOT_FOUND",
    20: "CIM_ERR_NAMESPACE_NOT_EMPTY",
    21: "CIM_ERR_INVALID_ENUMERATION_CONTEXT",
    22: "CIM_ERR_INVALID_OPERATION_TIMEOUT",
    23: "CIM_ERR_PULL_HAS_BEEN_ABANDONED",
    24: "CIM_ERR_PULL_CANNOT_BE_ABANDONED",
    25: "CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED",
    26: "CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED",
    27: "CIM_ERR_SERVER_LIMITS_EXCEEDED",
    28: "CIM_ERR_SERVER_IS_SHUTTING_DOWN",
}


class GMError(Exception):
    """Base of every error gm-provider raises on purpose."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class ClientError(GMError):
    """The client sent something wrong; resending it unchanged fails again."""


class ProtocolError(ClientError):
    """An HTTP-level failure (DSP0200 §1.6): no CIM-XML body, a status and a CIMError header.

    `detail` goes out URI-encoded in `PGErrorDetail`, which pywbem and pywbemcli display.
    """

    def __init__(self, status: int, cim_error: str | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.cim_error = cim_error
        self.detail = detail


class AuthenticationRequired(ProtocolError):
    """401: the request carried no credentials, or wrong ones."""

    def __init__(self, detail: str = "Authentication required.") -> None:
        super().__init__(401, None, detail)


class CIMClientError(ClientError):
    """A CIM error returned inside an HTTP 200 response as `<ERROR CODE= DESCRIPTION=>`."""

    status_code: int = CIM_ERR_FAILED

    @property
    def code_name(self) -> str:
        return CIM_STATUS_NAMES.get(self.status_code, "CIM_ERR_FAILED")


class AccessDenied(CIMClientError):
    status_code = CIM_ERR_ACCESS_DENIED


class InvalidNamespace(CIMClientError):
    status_code = CIM_ERR_INVALID_NAMESPACE


class InvalidParameter(CIMClientError):
    status_code = CIM_ERR_INVALID_PARAMETER


class InvalidClass(CIMClientError):
    status_code = CIM_ERR_INVALID_CLASS


class NotFound(CIMClientError):
    status_code = CIM_ERR_NOT_FOUND


class NotSupported(CIMClientError):
    status_code = CIM_ERR_NOT_SUPPORTED


class AlreadyExists(CIMClientError):
    status_code = CIM_ERR_ALREADY_EXISTS


class TypeMismatch(CIMClientError):
    status_code = CIM_ERR_TYPE_MISMATCH


class MethodNotFound(CIMClientError):
    status_code = CIM_ERR_METHOD_NOT_FOUND


class InvalidEnumerationContext(CIMClientError):
    status_code = CIM_ERR_INVALID_ENUMERATION_CONTEXT


class Refused(CIMClientError):
    """A rule of the domain refuses the request; the description says what to do."""

    status_code = CIM_ERR_FAILED


class NotActive(Refused):
    """This node is not the active Group Manager (SPEC 3.3, seed 003)."""

    def __init__(self, what: str) -> None:
        super().__init__(
            "This system is not an active Group Manager.\n"
            f"Only an active Group Manager can {what}.\n"
        )
        self.what = what


class ServerError(GMError):
    """We failed: the store, a device, or our configuration."""

    status_code: int = CIM_ERR_FAILED


class StoreError(ServerError):
    """The state store failed."""


class Fenced(StoreError):
    """A write carried a stale epoch: another node took control. Demote before anything else."""


class DeviceError(ServerError):
    """A hardware driver failed."""


class ConfigError(ServerError):
    """Configuration or inventory is invalid; the description names the file and line."""
