"""wbemexec end to end: the real command against small recording servers started here.

Each server (TCP on 127.0.0.1 port 0, a Unix socket in a temp directory, or TLS with a
trustme CA) records the raw bytes of every request and answers canned responses, so the tests
can compare the exact request wbemexec sends with what OpenPegasus wbemexec sends
(`reference/cim-xml-protocol.md` §4.2) and its output with Pegasus's (§4.3).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = ROOT / "etc" / "requests"
USE_HELP = "wbemexec: Use '--help' to obtain command syntax.\n"

# The seed 003 answer of a standby Group Manager, as a server sends it (one line, the
# newlines of the description as character references).
SEED_003_DESCRIPTION = (
    "CIM_ERR_FAILED: This system is not an active Group Manager.&#10;Only an active Group "
    "Manager can check to see if it can reconnect to members&#10;from which usage rights "
    "were previously seized.&#10;"
)
SEED_003_RESPONSE = (
    '<?xml version="1.0" encoding="utf-8" ?>\n'
    '<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0">'
    '<SIMPLERSP><METHODRESPONSE NAME="checkScavengedMember">'
    f'<ERROR CODE="1" DESCRIPTION="{SEED_003_DESCRIPTION}"/>'
    "</METHODRESPONSE></SIMPLERSP></MESSAGE></CIM>\n"
).encode()
# What cron mailed in seed 003, with the PDF's line wrapping undone.
SEED_003_OUTPUT = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<CIM CIMVERSION="2.0" DTDVERSION="2.0">\n'
    '<MESSAGE ID="1001" PROTOCOLVERSION="1.0">\n'
    "<SIMPLERSP>\n"
    '<METHODRESPONSE NAME="checkScavengedMember">\n'
    f'<ERROR CODE="1" DESCRIPTION="{SEED_003_DESCRIPTION}"/>\n'
    "</METHODRESPONSE>\n"
    "</SIMPLERSP>\n"
    "</MESSAGE>\n"
    "</CIM>\n"
)

OK_BODY = (
    b'<?xml version="1.0" encoding="utf-8" ?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">'
    b'<MESSAGE ID="1001" PROTOCOLVERSION="1.0"><SIMPLERSP>'
    b'<METHODRESPONSE NAME="stepDown"><RETURNVALUE PARAMTYPE="uint32"><VALUE>0</VALUE>'
    b"</RETURNVALUE></METHODRESPONSE></SIMPLERSP></MESSAGE></CIM>\n"
)
OK_OUTPUT = (
    '<?xml version="1.0" encoding="utf-8"?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">\n'
    '<MESSAGE ID="1001" PROTOCOLVERSION="1.0">\n<SIMPLERSP>\n'
    '<METHODRESPONSE NAME="stepDown">\n<RETURNVALUE PARAMTYPE="uint32">\n<VALUE>\n0\n'
    "</VALUE>\n</RETURNVALUE>\n</METHODRESPONSE>\n</SIMPLERSP>\n</MESSAGE>\n</CIM>\n"
)


def response(status: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ok(body: bytes = OK_BODY, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    return response(
        "200 OK",
        [
            ("Content-Type", 'application/xml; charset="utf-8"'),
            ("Content-Length", str(len(body))),
            ("CIMOperation", "MethodResponse"),
            *extra,
        ],
        body,
    )


SILENT = b""  # a canned "response" that never comes


# --------------------------------------------------------------------------------------
# The recording server
# --------------------------------------------------------------------------------------


@dataclass
class Recorder:
    responses: list[bytes]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, raw: bytes) -> bytes:
        with self.lock:
            self.requests.append(raw)
            index = min(len(self.requests), len(self.responses)) - 1
            return self.responses[index]


def _read_request(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    """One request: head, Content-Length body, and whatever follows at once (the extra
    newline Pegasus sends). Returns (None, b"") when the client has gone."""
    buffer = buffer.lstrip(b"\r\n")
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        buffer = (buffer + chunk).lstrip(b"\r\n")
    end = buffer.index(b"\r\n\r\n") + 4
    head = buffer[:end]
    match = re.search(rb"(?im)^(?:\d\d-)?content-length:\s*(\d+)", head)
    size = int(match.group(1)) if match else 0
    while len(buffer) < end + size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    if len(buffer) == end + size:
        sock.settimeout(0.3)
        with contextlib.suppress(TimeoutError):
            buffer += sock.recv(65536)
        sock.settimeout(5)
    rest = buffer[end + size :]
    trailing = rest[: len(rest) - len(rest.lstrip(b"\r\n"))]
    return buffer[: end + size] + trailing, rest[len(trailing) :]


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, _TCPServer | _UnixServer)
        recorder = self.server.recorder
        sock: socket.socket = self.request
        with recorder.lock:
            recorder.connections += 1
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
            sock.settimeout(5)
            buffer = b""
            while True:
                raw, buffer = _read_request(sock, buffer)
                if raw is None:
                    return
                answer = recorder.record(raw)
                if answer is SILENT:
                    while sock.recv(65536):  # until the client gives up
                        pass
                    return
                sock.sendall(answer)
                if b"connection: close" in answer.lower():
                    return
        except (OSError, ssl.SSLError):
            return


class _TCPServer(socketserver.ThreadingTCPServer):
    recorder: Recorder
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    recorder: Recorder
    daemon_threads = True
    block_on_close = False


@contextlib.contextmanager
def serve(
    *responses: bytes, unix_path: Path | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[Recorder, int]]:
    """Run a recording server; yields (recorder, TCP port or 0 for the Unix socket)."""
    recorder = Recorder(list(responses) or [ok()])
    server: _TCPServer | _UnixServer
    if unix_path is not None:
        server = _UnixServer(str(unix_path), _Handler)
        port = 0
    else:
        tcp = _TCPServer(("127.0.0.1", 0), _Handler)
        tcp.tls = tls
        server = tcp
        port = tcp.server_address[1]
    server.recorder = recorder
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield recorder, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------------------
# Running the real command
# --------------------------------------------------------------------------------------


def _command() -> list[str]:
    script = ROOT / ".venv" / "bin" / "wbemexec"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cli.wbemexec"]


@dataclass
class Run:
    code: int
    out: bytes
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out.decode()


def wbemexec(
    *args: str | Path | int,
    stdin: bytes = b"",
    socket_path: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 20,
) -> Run:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GM_")}
    # Never reach a real local server by accident.
    environment["GM_PROVIDER_SOCKET"] = str(socket_path or "/nonexistent/gm-test.socket")
    environment.update(env or {})
    started = time.monotonic()
    done = subprocess.run(
        [*_command(), *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=environment,
        timeout=timeout,
        start_new_session=True,  # no controlling terminal: no password prompt
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr.decode(), time.monotonic() - started)


def split_request(raw: bytes) -> tuple[list[str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode().split("\r\n"), body


@pytest.fixture
def request_file() -> Path:
    return REQUESTS / "GiCAP.checkScavengedMember.xml"


INSTANCE_REQUEST = """<?xml version="1.0" encoding="utf-8"?>
<CIM CIMVERSION="2.0" DTDVERSION="2.0">
<MESSAGE ID="4711" PROTOCOLVERSION="1.0">
<SIMPLEREQ>
<METHODCALL NAME="failoverProfile">
<LOCALINSTANCEPATH>
<LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>
<INSTANCENAME CLASSNAME="GM_DeviceBay">
<KEYBINDING NAME="EnclosureName"><KEYVALUE VALUETYPE="string">enc 01 "é"</KEYVALUE></KEYBINDING>
<KEYBINDING NAME="BayName"><KEYVALUE VALUETYPE="string">3</KEYVALUE></KEYBINDING>
</INSTANCENAME>
</LOCALINSTANCEPATH>
</METHODCALL>
</SIMPLEREQ>
</MESSAGE>
</CIM>
"""


# --------------------------------------------------------------------------------------
# The request (ref §4.2)
# --------------------------------------------------------------------------------------


def test_file_request_has_pegasus_headers_in_order_and_one_extra_newline(
    request_file: Path,
) -> None:
    content = request_file.read_bytes()
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, request_file)
    assert run.code == 0, run.err
    expected_head = (
        "POST /cimom HTTP/1.1\r\n"
        "Host: \r\n"
        'Content-Type: application/xml; charset="utf-8"\r\n'
        f"Content-Length: {len(content)}\r\n"
        "CIMProtocolVersion: 1.0\r\n"
        "CIMOperation: MethodCall\r\n"
        "CIMMethod: checkScavengedMember\r\n"
        "CIMObject: root%2Fcimv2%3AGM_GroupManager\r\n"
        "\r\n"
    ).encode()
    assert recorder.requests == [expected_head + content + b"\n"]
    assert run.text == OK_OUTPUT


def test_host_header_names_host_and_port_as_given_with_glued_options(
    request_file: Path,
) -> None:
    with serve(ok()) as (recorder, port):
        run = wbemexec("-h127.0.0.1", f"-p{port}", "-v1.0", request_file)
    assert run.code == 0, run.err
    lines, _ = split_request(recorder.requests[0])
    assert lines[0] == "POST /cimom HTTP/1.0"
    assert lines[1] == f"Host: 127.0.0.1:{port}"


def test_stdin_is_read_line_by_line_and_newline_terminated(request_file: Path) -> None:
    content = request_file.read_bytes().rstrip(b"\n")  # no final newline on purpose
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, stdin=content)
    assert run.code == 0, run.err
    lines, body = split_request(recorder.requests[0])
    assert f"Content-Length: {len(content) + 1}" in lines
    assert body == content + b"\n" + b"\n"  # re-terminated line, then Pegasus's extra "\n"


def test_cimobject_of_an_instance_path_is_sorted_quoted_and_uri_encoded(tmp_path: Path) -> None:
    path = tmp_path / "instance.xml"
    path.write_text(INSTANCE_REQUEST, encoding="utf-8")
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, path)
    assert run.code == 0, run.err
    lines, _ = split_request(recorder.requests[0])
    # root/cimv2:GM_DeviceBay.BayName="3",EnclosureName="enc 01 \"é\"" (keys sorted, as
    # CIMObjectPath::toString), then UTF-8 and %-escaping of every unsafe octet (ref §1.4).
    assert lines[-1] == (
        "CIMObject: root%2Fcimv2%3AGM_DeviceBay.BayName%3D%223%22%2C"
        "EnclosureName%3D%22enc%2001%20%5C%22%C3%A9%5C%22%22"
    )
    assert lines[-2] == "CIMMethod: failoverProfile"


def test_mpost_sends_man_header_and_prefixed_extension_headers(request_file: Path) -> None:
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, "-m", "M-POST", request_file)
    assert run.code == 0, run.err
    lines, _ = split_request(recorder.requests[0])
    man = re.fullmatch(r"Man: http://www\.dmtf\.org/cim/mapping/http/v1\.0;ns=(\d\d)", lines[4])
    assert man is not None, lines
    nn = man.group(1)
    assert lines[0] == "M-POST /cimom HTTP/1.1"
    assert lines[1:4] == [
        "Host: ",
        'Content-Type: application/xml; charset="utf-8"',
        f"Content-Length: {request_file.stat().st_size}",
    ]
    assert lines[5:] == [
        f"{nn}-CIMProtocolVersion: 1.0",
        f"{nn}-CIMOperation: MethodCall",
        f"{nn}-CIMMethod: checkScavengedMember",
        f"{nn}-CIMObject: root%2Fcimv2%3AGM_GroupManager",
    ]


def test_intrinsic_request_names_the_namespace(tmp_path: Path) -> None:
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, REQUESTS / "EnumerateInstances.DeviceBay.xml")
    assert run.code == 0, run.err
    lines, _ = split_request(recorder.requests[0])
    assert lines[-2:] == ["CIMMethod: EnumerateInstances", "CIMObject: root%2Fcimv2"]


@pytest.mark.parametrize("method", ["M-POST", "POST", "BOGUS"])
def test_raw_http_input_is_sent_as_is(tmp_path: Path, method: str) -> None:
    body = b"<?xml version='1.0'?><CIM/>"
    raw = (
        f"{method} /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        "CIMOperation: MethodCall\r\nX-Hand-Made: yes\r\n\r\n"
    ).encode() + body
    path = tmp_path / "raw.http"
    path.write_bytes(raw)
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, "-m", "M-POST", path)
    assert run.code == 0, run.err
    assert recorder.requests == [raw + b"\n"]


# --------------------------------------------------------------------------------------
# Output (ref §4.3)
# --------------------------------------------------------------------------------------


def test_seed_003_standby_error_is_printed_as_cron_mailed_it(request_file: Path) -> None:
    with serve(ok(SEED_003_RESPONSE)) as (_, port):
        run = wbemexec("-p", port, request_file)
    assert run.code == 0  # a CIM ERROR inside HTTP 200 is not a wbemexec failure
    assert run.err == ""
    assert run.text == SEED_003_OUTPUT


def test_debug_1_prints_the_whole_request_before_the_response(request_file: Path) -> None:
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, "-d", "1", request_file)
    assert run.code == 0, run.err
    sent = recorder.requests[0]
    assert run.out == sent + OK_OUTPUT.encode()  # request + newline, then the answer


def test_debug_2_prints_the_response_head_as_received(request_file: Path) -> None:
    answer = ok()
    with serve(answer) as (_, port):
        run = wbemexec("-p", port, "-d2", request_file)
    assert run.code == 0, run.err
    head = answer[: answer.index(b"\r\n\r\n") + 4]
    assert run.out == head + OK_OUTPUT.encode()


def test_non_200_prints_raw_head_then_body_and_exits_1(request_file: Path) -> None:
    answer = response(
        "400 Bad Request",
        [
            ("CIMError", "header-mismatch"),
            ("PGErrorDetail", "Bad%20CIMObject."),
            ("Content-Length", "22"),
        ],
        b"<P>bad &amp; worse</P>",
    )
    with serve(answer) as (_, port):
        run = wbemexec("-p", port, request_file)
    assert run.code == 1
    assert run.out == (
        b"HTTP/1.1 400 Bad Request\r\nCIMError: header-mismatch\r\n"
        b"PGErrorDetail: Bad%20CIMObject.\r\nContent-Length: 22\r\n\r\n"
        b"<P>\nbad &amp; worse\n</P>\n"
    )


def test_chunked_200_response_is_reassembled(request_file: Path) -> None:
    half = len(OK_BODY) // 2
    chunks = b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (OK_BODY[:half], OK_BODY[half:])
    )
    answer = response(
        "200 OK",
        [("Content-Type", "application/xml"), ("Transfer-Encoding", "chunked")],
        chunks + b"0\r\n\r\n",
    )
    with serve(answer) as (_, port):
        run = wbemexec("-p", port, request_file)
    assert run.code == 0, run.err
    assert run.text == OK_OUTPUT


def test_malformed_200_body_prints_what_it_could_then_fails(request_file: Path) -> None:
    with serve(ok(b'<?xml version="1.0"?>\n<CIM>\n<MESSAGE>\n</CIM>')) as (_, port):
        run = wbemexec("-p", port, request_file)
    assert run.code == 1
    assert run.text == '<?xml version="1.0"?>\n<CIM>\n<MESSAGE>\n'
    assert run.err == (
        "wbemexec: Syntax error: on line 4: end tag </CIM> does not close <MESSAGE>\n"
    )


# --------------------------------------------------------------------------------------
# Authentication (ref §1.7)
# --------------------------------------------------------------------------------------

CHALLENGE = response(
    "401 Unauthorized",
    [("WWW-Authenticate", 'Basic realm="gm-provider"'), ("Content-Length", "0")],
)


@pytest.mark.parametrize("close", [False, True], ids=["keep-alive", "connection-close"])
def test_basic_challenge_is_answered_once_with_basic(request_file: Path, close: bool) -> None:
    challenge = CHALLENGE
    if close:
        challenge = challenge.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with serve(challenge, ok()) as (recorder, port):
        run = wbemexec("-p", port, "-u", "alice", "-w", "s3cret", request_file)
    assert run.code == 0, run.err
    first, second = recorder.requests
    assert b"Authorization" not in first
    token = base64.b64encode(b"alice:s3cret").decode()
    lines, _ = split_request(second)
    assert lines[1] == f"Authorization: Basic {token}"  # right after the start line
    assert second.replace(f"Authorization: Basic {token}\r\n".encode(), b"") == first
    assert recorder.connections == (2 if close else 1)
    assert run.text == OK_OUTPUT


def test_second_challenge_is_printed_not_retried(request_file: Path) -> None:
    with serve(CHALLENGE, CHALLENGE) as (recorder, port):
        run = wbemexec("-p", port, "-w", "wrong", request_file)
    assert run.code == 1
    assert len(recorder.requests) == 2
    assert run.out.startswith(b"HTTP/1.1 401 Unauthorized\r\n")


def test_challenge_without_password_or_terminal_fails_clearly(request_file: Path) -> None:
    with serve(CHALLENGE) as (recorder, port):
        run = wbemexec("-p", port, request_file)
    assert run.code == 1
    assert len(recorder.requests) == 1
    assert run.err.startswith("wbemexec: ")
    assert "-w password" in run.err and "no terminal" in run.err


# --------------------------------------------------------------------------------------
# The local Unix socket (SPEC §4.5)
# --------------------------------------------------------------------------------------


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # AF_UNIX paths are short; pytest's tmp_path can be too long.
    directory = Path(os.environ.get("TMPDIR", "/tmp"))
    path = directory / f"gm-wbemexec-{os.getpid()}-{threading.get_ident()}.sock"
    yield path
    path.unlink(missing_ok=True)


def test_without_host_and_port_the_local_socket_is_used(
    request_file: Path, socket_path: Path
) -> None:
    with serve(ok(SEED_003_RESPONSE), unix_path=socket_path) as (rec, _):
        run = wbemexec(request_file, socket_path=socket_path)
    assert run.code == 0, run.err
    lines, _ = split_request(rec.requests[0])
    assert lines[:2] == ["POST /cimom HTTP/1.1", "Host: "]
    assert run.text == SEED_003_OUTPUT


def test_local_socket_never_prompts_for_a_password(request_file: Path, socket_path: Path) -> None:
    with serve(CHALLENGE, unix_path=socket_path) as (recorder, _):
        run = wbemexec("-u", "alice", request_file, socket_path=socket_path)
    assert run.code == 1
    assert len(recorder.requests) == 1
    assert run.out.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert run.err == ""


def test_missing_local_socket_fails_to_connect(request_file: Path, tmp_path: Path) -> None:
    run = wbemexec(request_file, socket_path=tmp_path / "absent.sock")
    assert (run.code, run.out) == (1, b"")
    assert run.err == (
        "wbemexec: Failed to connect to CIM server: "
        f"Cannot connect to local CIM server. Connection failed. (socket {tmp_path}/absent.sock:"
        " No such file or directory; GM_PROVIDER_SOCKET names another)\n"
    )


# --------------------------------------------------------------------------------------
# TLS (-s)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def _server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


def test_https_verifies_the_server_against_gm_ca_file(
    request_file: Path, tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    ca_file = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca_file))
    with serve(ok(), tls=_server_tls(certificate_authority)) as (recorder, port):
        run = wbemexec(
            "-s", "-h", "localhost", "-p", port, request_file, env={"GM_CA_FILE": str(ca_file)}
        )
    assert run.code == 0, run.err
    assert run.text == OK_OUTPUT
    assert split_request(recorder.requests[0])[0][1] == f"Host: localhost:{port}"


def test_https_refuses_an_unknown_certificate_authority(
    request_file: Path, certificate_authority: trustme.CA
) -> None:
    with serve(ok(), tls=_server_tls(certificate_authority)) as (recorder, port):
        run = wbemexec("-s", "-h", "localhost", "-p", port, request_file)
    assert run.code == 1
    assert run.err.startswith(
        f"wbemexec: Failed to connect to CIM server: Cannot connect to localhost:{port}."
    )
    assert recorder.requests == []


# --------------------------------------------------------------------------------------
# Failures: texts and exit codes (ref §4.3)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-x"], "Unknown flag -x"),
        (["-xfoo"], "Unknown flag -x"),
        (["--bogus"], "Unknown flag bogus"),
        (["-h"], "Missing required value for flag h"),
        (["-p", "-1", "f.xml"], "Missing required value for flag p"),
        (["-d"], "Missing required value for flag d"),
        (["-"], "Missing required option for -"),
        (["-h", "a", "-h", "b", "f.xml"], 'duplicate "-h" option'),
        (["-w", "a", "-w", "b"], 'duplicate "-w" option'),
        (["-p", "xxx", "f.xml"], 'argument "xxx" is not valid for option "-p"'),
        (["-p", "1.1"], 'argument "1.1" is not valid for option "-p"'),
        (["-p", "65536"], 'argument "65536" is not valid for option "-p"'),
        (["-v", "0.9"], 'argument "0.9" is not valid for option "-v"'),
        (["-m", "GET"], 'argument "GET" is not valid for option "-m"'),
        (["-t", "0"], 'argument "0" is not valid for option "-t"'),
        (["-t", "4294967296"], 'argument "4294967296" is not valid for option "-t"'),
        (["-t", "1e-1"], 'argument "1e-1" is not valid for option "-t"'),
        (["-d", "3"], 'argument "3" is not valid for option "-d"'),
        (["-d", "11"], 'argument "11" is not valid for option "-d"'),
        (["a.xml", "b.xml"], 'argument "b.xml" was unexpected'),
        (["--help", "--version"], 'option "-version" was unexpected'),
    ],
)
def test_usage_errors_name_the_problem_and_point_to_help(args: list[str], message: str) -> None:
    run = wbemexec(*args)
    assert (run.code, run.out) == (1, b"")
    assert run.err == f"wbemexec: {message}\n{USE_HELP}"


def test_help_goes_to_stderr_with_exit_0() -> None:
    run = wbemexec("--help")
    assert (run.code, run.out) == (0, b"")
    assert run.err.startswith("Usage: wbemexec [ -h hostname ] [ -p portnumber ]")
    assert "    -w         - Authorize the operation using the specified password\n" in run.err


def test_version_goes_to_stderr_with_exit_0() -> None:
    run = wbemexec("--version")
    assert (run.code, run.out) == (0, b"")
    assert re.fullmatch(r"Version \d+\.\d+\.\d+\S*\n", run.err)


def test_mpost_with_http_10_is_refused_without_the_help_hint(request_file: Path) -> None:
    run = wbemexec("-v", "1.0", "-m", "M-POST", request_file)
    assert run.code == 1
    assert run.err == "wbemexec: M-POST method invalid with HTTP version 1.0 \n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.xml", None, "Unable to use requested input file: file does not exist "),
        ("empty.xml", b"", "No input "),
        ("", None, "Unable to use requested input file: file does not exist "),
    ],
)
def test_input_file_problems(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name if name else ""
    if content is not None:
        assert isinstance(path, Path)
        path.write_bytes(content)
    run = wbemexec(path)
    assert (run.code, run.out, run.err) == (1, b"", f"wbemexec: {message}\n")


def test_empty_stdin_is_no_input() -> None:
    run = wbemexec("-p", "5988")
    assert (run.code, run.err) == (1, "wbemexec: No input \n")


def test_connection_refused(request_file: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before wbemexec runs
    run = wbemexec("-h", "127.0.0.1", "-p", port, request_file)
    assert (run.code, run.out) == (1, b"")
    assert run.err == (
        "wbemexec: Failed to connect to CIM server: "
        f"Cannot connect to 127.0.0.1:{port}. Connection failed.\n"
    )


def test_unresolvable_host_is_an_invalid_locator(request_file: Path) -> None:
    run = wbemexec("-h", "no-such-host.invalid", "-p", "5988", request_file)
    assert run.code == 1
    assert run.err == (
        "wbemexec: Failed to connect to CIM server: Invalid locator: no-such-host.invalid:5988\n"
    )


def test_silent_server_times_out_within_the_timeout(request_file: Path) -> None:
    with serve(SILENT) as (recorder, port):
        run = wbemexec("-p", port, "-t", "300", request_file)
    assert (run.code, run.out) == (1, b"")
    assert run.err == "wbemexec: Timed out waiting for response \n"
    assert len(recorder.requests) == 1
    assert run.seconds < 5


def test_input_without_xml_declaration_or_http_method(tmp_path: Path) -> None:
    path = tmp_path / "get.http"
    path.write_bytes(b"GET / HTTP/1.1\r\n\r\n")
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, path)
    assert (run.code, run.err) == (1, "wbemexec: Invalid input: expected XML request\n")
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            '<?xml version="1.0"?>\n<MESSAGE/>\n',
            "Validation error: on line 2: Expected open of CIM element",
        ),
        (
            '<?xml version="1.0"?>\n<CIM DTDVERSION="2.0">\n',
            "Validation error: on line 2: missing CIM.CIMVERSION attribute",
        ),
        (
            '<?xml version="1.0"?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">\n<MESSAGE ID="1">\n',
            "Validation error: on line 3: Invalid or missing MESSAGE.PROTOCOLVERSION attribute",
        ),
        (
            '<?xml version="1.0"?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">\n'
            '<MESSAGE ID="1" PROTOCOLVERSION="1.0">\n<SIMPLEREQ>\n<METHODCALL NAME="x">\n'
            '<LOCALCLASSPATH>\n<LOCALNAMESPACEPATH>\n<CLASSNAME NAME="C"/>\n',
            "Validation error: on line 8: "
            "Expected one or more NAMESPACE elements within LOCALNAMESPACEPATH element",
        ),
        (
            '<?xml version="1.0"?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">\n'
            '<MESSAGE ID="1" PROTOCOLVERSION="1.0">\n<SIMPLEREQ>\n<IMETHODCALL>\n',
            "Validation error: on line 5: missing IMETHODCALL.NAME attribute",
        ),
    ],
)
def test_invalid_xml_requests_are_caught_before_sending(
    tmp_path: Path, xml: str, message: str
) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(xml, encoding="utf-8")
    with serve(ok()) as (recorder, port):
        run = wbemexec("-p", port, path)
    assert (run.code, run.err) == (1, f"wbemexec: Invalid XML request: {message}\n")
    assert recorder.requests == []


# --------------------------------------------------------------------------------------
# The request files of etc/requests
# --------------------------------------------------------------------------------------

METHOD_FILES = {
    "GiCAP.checkScavengedMember.xml": ("checkScavengedMember", {}),
    "failoverProfile.xml": (
        "failoverProfile",
        {"EnclosureName": ("string", "enc01"), "BayName": ("string", "3")},
    ),
    "failoverProfile.byHostName.xml": (
        "failoverProfile",
        {"HostName": ("string", "web01.example.com")},
    ),
    "moveProfile.xml": (
        "moveProfile",
        {
            "ProfileName": ("string", "web01-profile"),
            "TargetEnclosureName": ("string", "enc01"),
            "TargetBayName": ("string", "5"),
            "PowerOn": ("boolean", "TRUE"),
        },
    ),
    "seizeRights.xml": ("seizeRights", {"HostName": ("string", "hostA1.example.com")}),
    "restoreRights.xml": ("restoreRights", {"HostName": ("string", "hostA1.example.com")}),
    "activateCores.xml": (
        "activateCores",
        {
            "HostName": ("string", "hostB1.example.com"),
            "Count": ("uint32", "2"),
            "UseTemporaryCapacity": ("boolean", "TRUE"),
        },
    ),
    "deactivateCores.xml": (
        "deactivateCores",
        {
            "HostName": ("string", "hostB1.example.com"),
            "Count": ("uint32", "2"),
            "UseTemporaryCapacity": ("boolean", "FALSE"),
        },
    ),
    "takeControl.xml": ("takeControl", {"Force": ("boolean", "FALSE")}),
    "stepDown.xml": ("stepDown", {}),
}


def _mof_parameters(method: str) -> dict[str, str]:
    """Parameter name -> CIM type of a GM_GroupManager method, read from schemas/gm.mof."""
    mof = (ROOT / "schemas" / "gm.mof").read_text(encoding="utf-8")
    match = re.search(rf"\b{method}\s*\((.*?)\);", mof, re.S)
    assert match is not None, method
    signature = re.sub(r"\[[^\]]*\]", "", re.sub(r'"[^"]*"', '""', match.group(1)))
    return {
        name: kind
        for kind, name in re.findall(r"\b(\w+)(?:\s+REF)?\s+(\w+)\s*(?:\[\])?\s*(?:,|$)", signature)
    }


@pytest.mark.parametrize("name", sorted(METHOD_FILES))
def test_method_request_files_are_static_calls_matching_the_mof(name: str) -> None:
    method, params = METHOD_FILES[name]
    content = (REQUESTS / name).read_bytes()
    assert content.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n')
    root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
    assert (root.get("CIMVERSION"), root.get("DTDVERSION")) == ("2.0", "2.0")
    message = root.find("MESSAGE")
    assert message is not None and message.get("PROTOCOLVERSION") == "1.0"
    # Numeric IDs, except the cron file: seed 003's mail shows its response echoing ID="".
    expected_id = "" if name == "GiCAP.checkScavengedMember.xml" else None
    msg_id = message.get("ID")
    assert msg_id == expected_id if expected_id is not None else (msg_id or "").isdigit()
    call = message.find("SIMPLEREQ/METHODCALL")
    assert call is not None and call.get("NAME") == method
    assert [
        e.get("NAME") for e in call.iterfind("LOCALCLASSPATH/LOCALNAMESPACEPATH/NAMESPACE")
    ] == [
        "root",
        "cimv2",
    ]
    class_name = call.find("LOCALCLASSPATH/CLASSNAME")
    assert class_name is not None and class_name.get("NAME") == "GM_GroupManager"
    found = {
        p.get("NAME"): (p.get("PARAMTYPE"), p.findtext("VALUE"))
        for p in call.iterfind("PARAMVALUE")
    }
    assert found == params
    declared = _mof_parameters(method)
    for param, (kind, _) in params.items():
        assert declared.get(param) == kind, (param, declared)


@pytest.mark.parametrize("name", sorted(p.name for p in REQUESTS.glob("*.xml")))
def test_every_request_file_goes_through_wbemexec(name: str, socket_path: Path) -> None:
    with serve(ok(), unix_path=socket_path) as (recorder, _):
        run = wbemexec(REQUESTS / name, socket_path=socket_path)
    assert run.code == 0, run.err
    lines, body = split_request(recorder.requests[0])
    assert body == (REQUESTS / name).read_bytes() + b"\n"
    method = name.split(".")[0]
    if name == "ExportIndication.xml":  # an indication: the export headers (DSP0200)
        assert lines[-2:] == ["CIMExport: MethodRequest", "CIMExportMethod: ExportIndication"]
        return
    if name in METHOD_FILES:
        method = METHOD_FILES[name][0]
        assert lines[-1] == "CIMObject: root%2Fcimv2%3AGM_GroupManager"
    else:
        assert lines[-1] == "CIMObject: root%2Fcimv2"
    assert lines[-2] == f"CIMMethod: {method}"
