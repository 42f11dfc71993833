"""Sans-I/O pieces: the head parser, chunked decoding, password hashes, the users file, and
fuzzing — the invariant, as in h11: "we either parse it or raise our error, never anything
else", and the server survives any byte sequence."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider.errors import ConfigError
from provider.http.auth import (
    FileAuthenticator,
    UserRecord,
    _Answers,
    format_users_line,
    hash_password,
    load_users_file,
    parse_basic_authorization,
    verify_password,
)
from provider.http.limits import TransportLimits
from provider.http.parser import (
    ChunkedDecoder,
    HeadError,
    body_framing,
    find_head_end,
    parse_head,
    strip_extension_prefixes,
)
from tests.http.helpers import Recorder, post, server_in_thread

pytestmark = pytest.mark.timeout(20)


def head_of(raw: bytes) -> bytes:
    end, _ = find_head_end(raw, 0, 65536)
    return raw[:end]


def test_parse_head_accepts_crlf_and_bare_lf_lines() -> None:
    for raw in (
        b"POST /cimom HTTP/1.1\r\nHost: \r\nCIMOperation:  MethodCall \r\n\r\nbody",
        b"POST /cimom HTTP/1.1\nHost: \nCIMOperation: MethodCall\n\nbody",
        b"POST /cimom HTTP/1.1\nHost: \nCIMOperation: MethodCall\n\r\nbody",
    ):
        head = parse_head(head_of(raw))
        assert head.method == "POST" and head.target == "/cimom" and head.http_version == "1.1"
        assert head.headers == {"host": "", "cimoperation": "MethodCall"}


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /cimom HTTP/2.0\r\n\r\n", 505),
        (b"POST  /cimom HTTP/1.1\r\n\r\n", 400),
        (b"POST /cimom HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
        (b"POST /cimom HTTP/1.1\r\nName : x\r\n\r\n", 400),  # RFC 9112 §5.1
        (b"POST /cimom HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"POST /cimom HTTP/1.1\r\nA: \x00\r\n\r\n", 400),
        (b"POST /cimom HTTP/1.1\r\nA: x\ry\r\n\r\n", 400),
        (b"POST /cimom HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # RFC 9112 §3.2
    ],
)
def test_parse_head_rejects(raw: bytes, status: int) -> None:
    with pytest.raises(HeadError) as info:
        parse_head(head_of(raw))
    assert info.value.status == status


def test_repeated_fields_are_combined() -> None:
    head = parse_head(head_of(b"POST / HTTP/1.1\r\nAccept: a\r\naccept: b\r\n\r\n"))
    assert head.headers["accept"] == "a, b"


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        (b"Content-Length: 5, 5\r\n", ("length", 5)),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        (b"Content-Length: -1\r\n", 400),
        (b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding: gzip, chunked\r\n", 501),
        (b"Transfer-Encoding: chunked\r\n", ("chunked", 0)),
        (b"", ("none", 0)),
    ],
)
def test_body_framing(fields: bytes, outcome: object) -> None:
    head = parse_head(b"POST / HTTP/1.1\r\n" + fields)
    if isinstance(outcome, int):
        with pytest.raises(HeadError) as info:
            body_framing(head)
        assert info.value.status == outcome
    else:
        framing, length = body_framing(head)
        assert (framing.value, length) == outcome


def test_mpost_prefix_stripping() -> None:
    headers = {"man": 'http://www.dmtf.org/cim/mapping/http/v1.0;ns="105"', "105-cimmethod": "A"}
    headers["42-cimobject"] = "root"
    assert strip_extension_prefixes(headers) == "105"
    assert headers == {
        "man": 'http://www.dmtf.org/cim/mapping/http/v1.0;ns="105"',
        "cimmethod": "A",
        "cimobject": "root",
    }


def test_chunked_decoder_byte_by_byte() -> None:
    data = b"3\r\nabc\r\nA;x=y\r\n0123456789\r\n0\r\nT: 1\r\n\r\nNEXT"
    decoder = ChunkedDecoder(1000, 100)
    pos = 0
    for end in range(1, len(data) + 1):
        pos = decoder.feed(data[:end], pos)
        if decoder.done:
            break
    assert decoder.done and bytes(decoder.body) == b"abc0123456789"
    assert data[pos:] == b"NEXT"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_parser_parses_or_raises_head_error(data: bytes) -> None:
    try:
        end, _ = find_head_end(data, 0, 1000)
        head = parse_head(data[:end] if end >= 0 else data)
        body_framing(head)
    except HeadError:
        pass
    decoder = ChunkedDecoder(100, 50)
    with contextlib.suppress(HeadError):
        decoder.feed(data)


def test_password_hash_round_trip_and_salting() -> None:
    first = hash_password("s3cret", n=2**10)
    second = hash_password("s3cret", n=2**10)
    assert first != second  # salted
    assert verify_password("s3cret", first)
    assert not verify_password("s3cre", first)
    assert not verify_password("s3cret", "scrypt$1$2$3$@@$@@")
    assert not verify_password("s3cret", "plain")


def test_parse_basic_authorization() -> None:
    assert parse_basic_authorization("Basic YWRtaW46cDpx") == ("admin", "p:q")
    assert parse_basic_authorization("basic YWRtaW46") == ("admin", "")
    assert parse_basic_authorization("Bearer abc") is None
    assert parse_basic_authorization("Basic !!!") is None
    assert parse_basic_authorization("Basic bm9jb2xvbg==") is None  # "nocolon"


def test_users_file_load_verify_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "users"
    admin = UserRecord("admin", "administrator", hash_password("pw1", n=2**10))
    path.write_text(f"# name:role:hash\n\n{format_users_line(admin)}\n")
    authenticator = FileAuthenticator(path)
    principal = authenticator.verify_basic("admin", "pw1")
    assert principal is not None and principal.role == "administrator"
    assert authenticator.verify_basic("admin", "wrong") is None
    assert authenticator.verify_basic("nobody", "pw1") is None

    operator = UserRecord("operator", "operator", hash_password("pw2", n=2**10))
    path.write_text(f"{format_users_line(admin)}\n{format_users_line(operator)}\n# longer\n")
    principal = authenticator.verify_basic("operator", "pw2")
    assert principal is not None and principal.role == "operator"


def test_verified_answers_are_recalled_until_the_users_file_changes(tmp_path: Path) -> None:
    """A script that opens a connection per call pays scrypt once, not every call; a changed
    password, role or user list voids every answer given before."""
    path = tmp_path / "users"
    admin = UserRecord("admin", "administrator", hash_password("pw1", n=2**10))
    path.write_text(f"{format_users_line(admin)}\n")
    authenticator = FileAuthenticator(path)
    assert authenticator.recall_basic("admin", "pw1") == (False, None)  # never verified
    assert authenticator.verify_basic("admin", "pw1") is not None
    assert authenticator.verify_basic("admin", "stale") is None
    known, principal = authenticator.recall_basic("admin", "pw1")
    assert known and principal is not None and principal.role == "administrator"
    assert authenticator.recall_basic("admin", "stale") == (True, None)  # a wrong one, too
    assert authenticator.recall_basic("admin", "pw2") == (False, None)
    # Pairs that share their bytes are told apart.
    assert authenticator.recall_basic("admin:", "pw1") == (False, None)
    assert authenticator.recall_basic("admi", "npw1") == (False, None)

    # The password changes, written as `gm-provider user` writes (same length, same tick).
    changed = tmp_path / "users.tmp"
    admin2 = UserRecord("admin", "administrator", hash_password("pw2", n=2**10))
    changed.write_text(f"{format_users_line(admin2)}\n")
    changed.replace(path)
    assert authenticator.recall_basic("admin", "pw1") == (False, None)
    assert authenticator.recall_basic("admin", "stale") == (False, None)
    assert authenticator.verify_basic("admin", "pw1") is None
    assert authenticator.verify_basic("admin", "pw2") is not None
    assert authenticator.recall_basic("admin", "pw2")[0]


def test_checks_queued_behind_the_same_pair_find_its_answer(tmp_path: Path) -> None:
    """A storm of one stale password: the checks queued behind the first one do not each
    pay a scrypt."""
    path = tmp_path / "users"
    admin = UserRecord("admin", "administrator", hash_password("pw1", n=2**10))
    path.write_text(f"{format_users_line(admin)}\n")
    checked: list[str] = []

    class Counting(FileAuthenticator):
        def _check(self, users: Any, user: str, password: str) -> Any:
            checked.append(password)
            return super()._check(users, user, password)

    authenticator = Counting(path)
    assert [authenticator.verify_basic("admin", "stale") for _ in range(3)] == [None] * 3
    assert authenticator.verify_basic("admin", "pw1") is not None
    assert authenticator.verify_basic("admin", "pw1") is not None
    assert checked == ["stale", "pw1"]


def test_recalled_answers_expire_and_are_bounded() -> None:
    now = [0.0]
    answers = _Answers(entries=3, seconds=10.0, clock=lambda: now[0])
    for n in range(5):
        answers.remember("u", f"p{n}", "v1", None)
    assert len(answers) == 3
    assert answers.recall("u", "p0", "v1") == (False, None)  # the oldest went first
    assert answers.recall("u", "p4", "v1") == (True, None)
    assert answers.recall("u", "p4", "v2") == (False, None)  # another file version
    assert answers.recall("u", "p3", "v1") == (True, None)
    now[0] = 10.0
    assert answers.recall("u", "p3", "v1") == (False, None)  # expired, and dropped
    assert len(answers) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("admin:administrator\n", ":1: expected name:role:scrypt-hash"),
        ("\nadmin:administrator:plain\n", ":2: the password of 'admin' is not a scrypt hash"),
        ("admin:admin:scrypt$1$1$1$AA==$AA==\n", ":1: unknown role 'admin'; roles are"),
    ],
)
def test_users_file_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "users"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_users_file(path)


@pytest.fixture(scope="module")
def background_server() -> Iterator[int]:
    """One server in a thread for the byte-level fuzz, with short timeouts."""
    limits = TransportLimits(
        header_timeout=0.5, body_timeout=0.5, keepalive_timeout=0.5, linger_timeout=0.2
    )
    with server_in_thread(Recorder(), limits=limits) as port:
        yield port


def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda prefix, junk: prefix + junk,
            st.sampled_from([b"POST / HTTP/1.1\r\n", b"M-POST / HTTP/1.1\r\nMan: x;ns=", b""]),
            st.binary(max_size=200),
        ),
    )
)
def test_fuzz_server_survives_any_bytes(background_server: int, data: bytes) -> None:
    port = background_server
    received = exchange(port, data)
    assert received == b"" or received.startswith(b"HTTP/1.1 ")
    assert b"500 Internal" not in received
    # ... and the server still answers a proper request.
    assert exchange(port, post(headers=[("Connection", "close")])).startswith(b"HTTP/1.1 200 ")


def test_a_broken_users_file_keeps_the_last_table_in_force(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A hand edit that breaks the file must not lock every user out of a running server:
    the users read last stay in force, the error is logged once, a fixed file is read."""
    path = tmp_path / "users"
    admin = UserRecord("admin", "administrator", hash_password("pw1", n=2**10))
    path.write_text(f"{format_users_line(admin)}\n")
    authenticator = FileAuthenticator(path)
    assert authenticator.verify_basic("admin", "pw1") is not None

    path.write_text(f"{format_users_line(admin)}\nbad:name:read-only:scrypt$1$2$3$4$5\n")
    with caplog.at_level("ERROR", logger="provider.auth"):
        for _ in range(3):
            principal = authenticator.verify_basic("admin", "pw1")
            assert principal is not None and principal.role == "administrator"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"{path}:2:" in errors[0] and "stay in force" in errors[0]

    path.unlink()  # gone: the last table still holds
    assert authenticator.verify_basic("admin", "pw1") is not None

    operator = UserRecord("operator", "operator", hash_password("pw2", n=2**10))
    path.write_text(f"{format_users_line(operator)}\n")  # corrected: read again
    assert authenticator.verify_basic("operator", "pw2") is not None
    assert authenticator.verify_basic("admin", "pw1") is None


def test_a_users_file_broken_at_start_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(":read-only:scrypt$1$2$3$4$5\n")
    with pytest.raises(ConfigError, match=":1: expected name:role"):
        FileAuthenticator(path)


@pytest.mark.parametrize("name", ["a:b", "", "x y", "#c", "line\nbreak"])
def test_format_users_line_refuses_names_it_could_not_read_back(name: str) -> None:
    with pytest.raises(ValueError):
        format_users_line(UserRecord(name, "read-only", "scrypt$1$2$3$4$5"))


def test_a_users_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "users"
    admin = UserRecord("admin", "administrator", hash_password("pw1", n=2**10))
    path.write_bytes(f"{format_users_line(admin)}\n".encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=":2: not UTF-8 text"):
        load_users_file(path)
