"""TLS and Unix-socket listeners: handshakes, client certificates, peer credentials."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import socket
import ssl
import stat
from pathlib import Path

import pytest
import trustme

from provider.http.auth import (
    FileAuthenticator,
    InMemoryAuthenticator,
    UserRecord,
    format_users_line,
    hash_password,
)
from provider.http.limits import TransportLimits
from provider.http.messages import Via
from provider.http.server import TCPListener, TLSListener, UnixListener, serve
from provider.http.tls import make_server_ssl_context
from tests.http.helpers import RawClient, Recorder, post

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(
    ca: trustme.CA, tmp_path: Path, *, require_client_cert: bool = False
) -> ssl.SSLContext:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file = tmp_path / "server.pem"
    key_file = tmp_path / "server.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return make_server_ssl_context(
        cert_file,
        key_file,
        client_ca=ca_file if require_client_cert else None,
        require_client_cert=require_client_cert,
    )


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_serves_requests_and_refuses_tls_1_1(ca: trustme.CA, tmp_path: Path) -> None:
    recorder = Recorder()

    async def main() -> None:
        server = await serve(
            recorder, [TLSListener(server_context(ca, tmp_path))], require_auth=False
        )
        try:
            client = await RawClient.tcp(server.ports[0], context=client_context(ca))
            await client.send(post())
            assert (await client.response()).status == 200
            await client.close()

            old = client_context(ca)
            old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await RawClient.tcp(server.ports[0], context=old)
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())
    [request] = recorder.requests
    assert request.principal is None  # require_auth=False and no credentials


def test_tls_client_certificate_required_when_configured(ca: trustme.CA, tmp_path: Path) -> None:
    recorder = Recorder()

    async def main() -> None:
        context = server_context(ca, tmp_path, require_client_cert=True)
        server = await serve(
            recorder,
            [TLSListener(context)],
            authenticator=InMemoryAuthenticator({"admin": "secret"}),
            require_auth=False,
        )
        try:
            without = await RawClient.tcp(server.ports[0], context=client_context(ca))
            # TLS 1.3 reports a refused client certificate after the handshake, on first read.
            await without.send(post())
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await without.response()

            with_cert = client_context(ca)
            ca.issue_cert("client@example.org").configure_cert(with_cert)
            client = await RawClient.tcp(server.ports[0], context=with_cert)
            await client.send(post())
            assert (await client.response()).status == 200
            await client.send(post(headers=[("Authorization", "Basic YWRtaW46c2VjcmV0")]))
            assert (await client.response()).headers["x-user"] == "admin"
            await client.close()
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())
    assert recorder.requests[0].principal is None
    principal = recorder.requests[1].principal
    assert principal is not None and principal.via is Via.HTTPS


def test_unix_socket_identifies_the_peer_by_its_credentials(tmp_path: Path) -> None:
    recorder = Recorder()
    path = tmp_path / "run" / "cimxml.socket"  # the parent directory does not exist yet

    async def main() -> None:
        server = await serve(recorder, [UnixListener(path)], require_auth=True)
        try:
            assert stat.S_IMODE(path.stat().st_mode) == 0o666
            client = await RawClient.unix(path)
            await client.send(post())
            response = await client.response()
            assert response.status == 200
            assert response.headers["x-user"] == pwd.getpwuid(os.getuid()).pw_name
            await client.close()
        finally:
            await server.close(grace=1.0)
        assert not path.exists()

    asyncio.run(main())
    principal = recorder.requests[0].principal
    assert principal is not None
    assert principal.via is Via.UNIX
    assert principal.uid == os.getuid()
    assert grp.getgrgid(os.getgid()).gr_name in principal.groups


def test_a_unix_peer_s_role_is_looked_at_again_on_a_keep_alive_connection(
    tmp_path: Path,
) -> None:
    """A local account demoted, then deleted, in the users file while its connection stays
    open: its next request a second later has the new role, then none (it kept the role it
    had when it connected for the life of the connection)."""
    recorder = Recorder()
    path = tmp_path / "cimxml.socket"
    users = tmp_path / "users"
    me = pwd.getpwuid(os.getuid()).pw_name

    def write(*records: UserRecord) -> None:
        tmp = tmp_path / "users.tmp"
        tmp.write_text("".join(format_users_line(r) + "\n" for r in records))
        tmp.replace(users)

    secret = hash_password("unused", n=2**10)
    write(UserRecord(me, "operator", secret, local=True))

    async def main() -> None:
        authenticator = FileAuthenticator(users)
        server = await serve(recorder, [UnixListener(path)], authenticator=authenticator)
        try:
            client = await RawClient.unix(path)
            for change in (
                lambda: write(UserRecord(me, "read-only", secret, local=True)),
                lambda: write(),
                None,
            ):
                await client.send(post())
                assert (await client.response()).status == 200
                if change is not None:
                    change()
                    await asyncio.sleep(1.1)
            await client.close()
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())
    roles = [r.principal.role for r in recorder.requests if r.principal is not None]
    assert roles == ["operator", "read-only", None]


def test_an_http_account_gives_the_local_account_of_its_name_nothing(tmp_path: Path) -> None:
    """A users-file account holds for the local login of the same name only when it says
    `local`: `init` creates an HTTP account `admin`, and a local login `admin` (many images
    have one) got administrator on the socket without a password."""
    recorder = Recorder()
    path = tmp_path / "cimxml.socket"
    users = tmp_path / "users"
    me = pwd.getpwuid(os.getuid()).pw_name
    users.write_text(
        format_users_line(UserRecord(me, "administrator", hash_password("x", n=2**10))) + "\n"
    )

    async def main() -> None:
        server = await serve(recorder, [UnixListener(path)], authenticator=FileAuthenticator(users))
        try:
            client = await RawClient.unix(path)
            await client.send(post())
            assert (await client.response()).status == 200
            await client.close()
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())
    principal = recorder.requests[0].principal
    assert principal is not None and principal.user == me and principal.role is None


def test_unix_socket_replaces_a_stale_socket_but_not_a_live_one(tmp_path: Path) -> None:
    path = tmp_path / "cimxml.socket"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed server leaves

    async def main() -> None:
        server = await serve(Recorder(), [UnixListener(path)], require_auth=False)
        try:
            with pytest.raises(OSError, match="another server"):
                await serve(Recorder(), [UnixListener(path)], require_auth=False)
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())


def test_unix_peer_refused_by_the_authenticator_must_use_basic(tmp_path: Path) -> None:
    path = tmp_path / "cimxml.socket"
    authenticator = InMemoryAuthenticator({"admin": "secret"}, peer_uids=frozenset())

    async def main() -> None:
        server = await serve(Recorder(), [UnixListener(path)], authenticator=authenticator)
        try:
            client = await RawClient.unix(path)
            await client.send(post())
            response = await client.response()
            assert response.status == 401
            assert response.headers["www-authenticate"] == 'Basic realm="gm-provider"'
            await client.close()
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())


def test_network_clients_cannot_take_the_unix_sockets_connections(tmp_path: Path) -> None:
    """515 idle TCP connections (no login needed) made the Unix socket answer 503: cron's
    checkScavengedMember and an administrator on the Group Manager were locked out. Each kind
    of listener now has its own `max_connections`."""
    path = tmp_path / "cimxml.socket"

    async def main() -> None:
        server = await serve(
            Recorder(),
            [TCPListener(), UnixListener(path)],
            require_auth=False,
            limits=TransportLimits(max_connections=2),
        )
        try:
            network = [await RawClient.tcp(server.ports[0]) for _ in range(2)]
            for client in network:
                await client.send(post())
                assert (await client.response()).status == 200
            refused = await RawClient.tcp(server.ports[0])
            assert (await refused.response()).status == 503
            local = await RawClient.unix(path)
            await local.send(post())
            assert (await local.response()).status == 200
            for client in [*network, local, refused]:
                await client.close()
            # A closed connection gives its slot back.
            for _ in range(100):
                if server.connection_count == 0:
                    break
                await asyncio.sleep(0.05)
            assert server.connection_count == 0
            again = await RawClient.tcp(server.ports[0])
            await again.send(post())
            assert (await again.response()).status == 200
            await again.close()
        finally:
            await server.close(grace=1.0)

    asyncio.run(main())


def test_a_peer_s_account_is_looked_up_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """The role is looked at again every second on a keep-alive connection; the password and
    group databases (perhaps a directory service) are asked at most once a minute."""
    import provider.http.auth as auth

    asked: list[int] = []
    real = pwd.getpwuid

    def counting(uid: int) -> pwd.struct_passwd:
        asked.append(uid)
        return real(uid)

    monkeypatch.setattr(auth.pwd, "getpwuid", counting)
    uid, gid = 4_242_424, 4_242_424  # no such account: named uid=N
    first = auth.principal_for_peer(uid, gid, role="operator")
    again = auth.principal_for_peer(uid, gid)
    assert (first.user, again.user, again.role) == (f"uid={uid}", f"uid={uid}", None)
    assert asked == [uid]
    monkeypatch.setattr(auth, "_ACCOUNT_SECONDS", -1.0)
    auth._accounts.clear()
    auth.principal_for_peer(uid, gid)
    auth.principal_for_peer(uid, gid)
    assert asked == [uid, uid, uid]
