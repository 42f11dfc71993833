"""HTTPS on a live provider: `gm-provider init --tls` plus the configuration serve CIM-XML over
TLS 1.2+ only (RFC 8996: TLS 1.0 and 1.1 "MUST NOT be used"), and `server.client_ca` makes a
client certificate signed by that CA a condition of the handshake (the two-way trust between
Group Managers and members)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import pywbem
import trustme

from tests.harness import ROOT, USERS, ProviderHandle, configure
from tests.security.helpers import Reply, basic, parse_reply, read_all

GET_ROLE = (
    b'<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
    b'<MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><METHODCALL NAME="getRole">'
    b'<LOCALCLASSPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/>'
    b'</LOCALNAMESPACEPATH><CLASSNAME NAME="GM_GroupManager"/></LOCALCLASSPATH></METHODCALL>'
    b"</SIMPLEREQ></MESSAGE></CIM>"
)


def https_exchange(port: int, context: ssl.SSLContext) -> Reply:
    head = (
        "POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        'Content-Type: application/xml; charset="utf-8"\r\n'
        "CIMOperation: MethodCall\r\nCIMMethod: getRole\r\n"
        "CIMObject: root%2Fcimv2%3AGM_GroupManager\r\n"
        f"Authorization: {basic('reader')}\r\n"
        f"Content-Length: {len(GET_ROLE)}\r\nConnection: close\r\n\r\n"
    )
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(head.encode() + GET_ROLE)
        return parse_reply(read_all(tls))


def _client(cafile: Path, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafile))
    if maximum is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum
            # OpenSSL's default security level forbids TLS < 1.2 in the client as well; lower
            # it so that the refusal we observe is the server's.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override the CA file pywbem sets on its session
    # (`ca_certs`); the tests must not depend on the machine's environment.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderHandle]:
    workdir = tmp_path_factory.mktemp("gm-tls")
    state = workdir / "gm1-state"
    tls = {
        "certificate": "{state}/tls/server.pem",
        "private_key": "{state}/tls/server.key",
        "https_port": 0,
    }
    handle = configure(workdir, config={"server": tls})
    init = subprocess.run(
        [sys.executable, "-m", "provider", "init", "--tls", "--config", str(handle.config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    assert (state / "tls" / "server.pem").exists() and "self-signed" in init.stdout
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def test_init_tls_certificate_serves_https_with_tls_1_2(self_signed: ProviderHandle) -> None:
    port = self_signed.https_port
    assert port is not None
    cafile = self_signed.workdir / "gm1-state" / "tls" / "server.pem"
    reply = https_exchange(port, _client(cafile, maximum=ssl.TLSVersion.TLSv1_2))
    assert reply.status == 200 and b'NAME="Role"' in reply.body
    # A real client: pywbem over HTTPS, verifying the self-signed certificate.
    conn = pywbem.WBEMConnection(
        f"https://127.0.0.1:{port}",
        ("admin", USERS["admin"][1]),
        default_namespace="root/cimv2",
        ca_certs=str(cafile),
    )
    assert conn.EnumerateInstances("GM_GroupManager")[0]["Role"] == "active"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_1_0_and_1_1_handshakes_fail(
    self_signed: ProviderHandle, version: ssl.TLSVersion
) -> None:
    port = self_signed.https_port
    assert port is not None
    cafile = self_signed.workdir / "gm1-state" / "tls" / "server.pem"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_exchange(port, _client(cafile, maximum=version))
    # The server is unharmed.
    assert https_exchange(port, _client(cafile)).status == 200


def test_https_needs_credentials_too(self_signed: ProviderHandle) -> None:
    conn = pywbem.WBEMConnection(
        f"https://127.0.0.1:{self_signed.https_port}",
        ("admin", "wrong"),
        default_namespace="root/cimv2",
        ca_certs=str(self_signed.workdir / "gm1-state" / "tls" / "server.pem"),
    )
    with pytest.raises(pywbem.AuthError):
        conn.InvokeMethod("stepDown", "GM_GroupManager")


def test_client_certificate_required_when_client_ca_is_configured(tmp_path: Path) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    tls = {
        "certificate": str(cert),
        "private_key": str(key),
        "client_ca": str(ca_file),
        "https_port": 0,
    }
    handle = configure(tmp_path / "gm", config={"server": tls})
    handle.start()
    try:
        port = handle.https_port
        assert port is not None
        # TLS 1.3 reports a missing or refused client certificate after the handshake, on the
        # first read; either way no answer comes.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_exchange(port, _client(ca_file))
        foreign = _client(ca_file)
        stranger.issue_cert("gm2@example.org").configure_cert(foreign)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_exchange(port, foreign)
        trusted = _client(ca_file)
        ca.issue_cert("gm2@example.org").configure_cert(trusted)
        reply = https_exchange(port, trusted)
        assert reply.status == 200 and b'NAME="Role"' in reply.body
    finally:
        handle.stop()
