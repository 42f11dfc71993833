"""The server's TLS context: TLS 1.2 or later, optional verified client certificates.

DSP0200 runs CIM-XML over HTTPS on port 5989 (reference §1.1). TLS 1.0 and 1.1 are
deprecated by RFC 8996 ("MUST NOT be used"), so the context refuses them.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["make_server_ssl_context"]


def make_server_ssl_context(
    certfile: Path | str,
    keyfile: Path | str | None = None,
    *,
    client_ca: Path | str | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A server context from PEM files.

    With `client_ca`, clients may present a certificate, which must verify against it; with
    `require_client_cert` as well, a client without one fails the handshake.
    """
    if require_client_cert and client_ca is None:
        raise ValueError("require_client_cert needs client_ca to verify the certificates against")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context
