"""What the transport hands to the application, and what it gets back.

The transport (`provider.http.server`) knows HTTP framing, authentication and limits; it
knows nothing about CIM. The application (`provider.app`) knows CIM; it never touches a
socket. These frozen types are the whole contract between the two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Application", "Body", "HttpRequest", "HttpResponse", "Principal", "Via"]


class Via(Enum):
    UNIX = "unix"  # the local Unix socket; identified by peer credentials (SO_PEERCRED)
    HTTP = "http"  # TCP without TLS; identified by HTTP Basic
    HTTPS = "https"  # TLS; HTTP Basic and/or a verified client certificate


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request, as established by the transport."""

    user: str  # user name (Basic), or the local account name (Unix socket)
    via: Via
    peer: str  # "127.0.0.1:41234", "uid=0", ...
    uid: int | None = None  # Unix socket only
    groups: tuple[str, ...] = ()  # Unix socket only: the peer's group names
    role: str | None = None  # the role the users file grants this user; None: not listed
    # The VC Domain Groups the role is held for (the users file's `groups=`); None: all of
    # them, as for a user without a group binding (reference vcem-domain.md §4.3).
    domain_groups: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One complete HTTP request.

    `headers` keys are lower-case. For M-POST (RFC 2774) the transport has already removed the
    `NN-` prefix of the extension headers declared by `Man:` (and any `DD-` prefix, as
    OpenPegasus accepts), so the application reads `cimoperation` either way; `is_mpost` says
    which method was used so the response can carry the `Ext:`/prefixed headers.
    """

    method: str  # "POST" or "M-POST"
    target: str  # request-target, e.g. "/cimom"
    http_version: str  # "1.1" or "1.0"
    headers: Mapping[str, str]
    body: bytes
    principal: Principal | None  # None: unauthenticated (only possible where config allows)
    is_mpost: bool = False
    mpost_ns: str | None = None  # the two digits of `Man: ...;ns=NN`


Body = bytes | Iterator[bytes] | AsyncIterator[bytes]


@dataclass(slots=True)
class HttpResponse:
    """A response. A bytes body is sent with Content-Length; an iterator is sent chunked
    (HTTP/1.1) so large enumerations stream with bounded memory."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Body = b""
    # A streamed body that fails after the status line went out can still say why, to a
    # client that accepts trailers (`TE: trailers`, RFC 9110 §6.5): `trailer_names` are
    # announced in `Trailer:`, and `failure_trailers(exc)` gives their values. Without
    # them, or for a client that did not ask, the unfinished chunked body says "broken".
    trailer_names: tuple[str, ...] = ()
    failure_trailers: Callable[[Exception], list[tuple[str, str]]] | None = None


Application = Callable[[HttpRequest], Awaitable[HttpResponse]]
