"""The transport's limits: every resource a client can make us spend has a bound here.

Each limit maps to one HTTP status (RFC 9110 §15.5) so a client learns what it did wrong:
413 body too large, 431 header block too large, 411 body without a length, 503 too many
connections, 408 too slow. The defaults suit a Group Manager on a management LAN: requests are
small CIM-XML documents, and clients are scripts and a handful of consoles.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TransportLimits"]


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds applied per connection (and `max_connections` per server)."""

    max_body_bytes: int = 4 * 1024 * 1024
    """A request body above this (Content-Length, or the chunked total so far) gets 413 at once."""

    max_header_bytes: int = 16 * 1024
    """Request line plus header block (and a chunked trailer block); above it: 431."""

    max_connections: int = 1000
    """Open connections over all listeners; one more is answered 503 and closed."""

    header_timeout: float = 10.0
    """Seconds from the first byte of a request (or the connection's start) to its blank line."""

    body_timeout: float = 60.0
    """Seconds from the end of the header block to the last byte of the body."""

    keepalive_timeout: float = 30.0
    """Seconds an idle keep-alive connection may wait for its next request."""

    send_timeout: float = 60.0
    """Seconds a response may wait for a client that does not read; then the connection is cut."""

    max_pipelined: int = 16
    """Complete requests queued behind the one being served before we stop reading."""

    linger_timeout: float = 2.0
    """After an error that ends a connection, how long unread input is discarded before close,
    so the client reads our answer instead of a TCP reset (the "lingering close" of
    RFC 9112 §9.6)."""

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_header_bytes", "max_connections", "max_pipelined"):
            if getattr(self, name) < 1:
                raise ValueError(f"TransportLimits.{name} must be at least 1")
        for name in (
            "header_timeout",
            "body_timeout",
            "keepalive_timeout",
            "send_timeout",
            "linger_timeout",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransportLimits.{name} must be positive")
