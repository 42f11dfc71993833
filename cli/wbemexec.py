"""wbemexec: post a CIM-XML request file to a CIM server, the OpenPegasus way.

Cron entries, HP scripts and people's muscle memory call `wbemexec file.xml` (seed 003: the
`GiCAP.checkScavengedMember.xml` cron job), so this client copies OpenPegasus wbemexec's
behaviour rather than inventing a nicer one. Everything here follows
`reference/cim-xml-protocol.md` §4 (called "ref §4.x" below):

* command line with getoopt semantics and Pegasus's exact error texts (ref §4.1, §4.3);
* the request is the input file wrapped in HTTP headers derived from a *minimal* reading of
  the XML: CIMMethod, CIMObject (URI-encoded, ref §1.4), CIMProtocolVersion; M-POST uses the
  RFC 2774 `Man:` header and `NN-` prefixed headers (ref §1.3, §4.2); input that already is an
  HTTP request is sent as is;
* no credentials on the first request; a 401 with a Basic challenge is answered once with
  Basic (ref §1.7, §4.2 step 5);
* on HTTP 200 the body is printed one XML token per line, as Pegasus `indentedPrint` does;
  anything else prints the response head as received and exits 1 (ref §4.3).

Project rules on top of Pegasus (SPEC §4.5):

* Without `-h` and `-p` the request goes over the local Unix socket at
  `provider.paths.default_socket_path()` (`GM_PROVIDER_SOCKET` overrides it); the server
  identifies the local user by peer credentials, so no password is asked for there.
* With only `-p`, Pegasus connects to the local host *name*; we connect to 127.0.0.1 instead,
  because on Debian the host name resolves to 127.0.1.1 and the server listens on 127.0.0.1.
* `-s` verifies the server certificate against the CA file named by `GM_CA_FILE`, else the
  system trust store (Pegasus reads a trust store under `$PEGASUS_HOME`). `GM_CLIENT_CERT`
  (PEM, optionally with `GM_CLIENT_KEY`) presents a client certificate.

Exit status: 0 success (a CIM `<ERROR>` inside HTTP 200 is success, as in Pegasus), 1 error.
"""

from __future__ import annotations

import base64
import os
import random
import re
import socket
import ssl
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import BinaryIO, NoReturn
from urllib.parse import quote

from cli._pipes import quiet_on_closed_stdout

__all__ = [
    "UsageError",
    "WbemExecError",
    "XmlError",
    "encode_uri",
    "indented_print",
    "main",
    "parse_command_line",
]

PROGRAM = "wbemexec"

# Pegasus defaults (ref §4.1): POST, HTTP/1.1, 20000 ms, ports from /etc/services.
DEFAULT_TIMEOUT_MS = 20000
DEFAULT_HTTP_PORT = 5988
DEFAULT_HTTPS_PORT = 5989
LOCAL_TCP_HOST = "127.0.0.1"
MAN_HEADER_VALUE = "http://www.dmtf.org/cim/mapping/http/v1.0;ns="

# Exact texts of WbemExecException.cpp / getoopt / CommandException.cpp (ref §4.3). The
# trailing spaces are Pegasus's and scripts compare them.
MSG_USE_HELP = "Use '--help' to obtain command syntax."
MSG_FILE_NONEXISTENT = "Unable to use requested input file: file does not exist "
MSG_FILE_NOT_READABLE = "Unable to use requested input file: file is not readable "
MSG_FILE_CANNOT_OPEN = "Unable to use requested input file: file cannot be opened "
MSG_NO_INPUT = "No input "
MSG_TIMED_OUT = "Timed out waiting for response "
MSG_MPOST_HTTP10 = "M-POST method invalid with HTTP version 1.0 "
MSG_INVALID_INPUT = "Invalid input: expected XML request"
MSG_CONNECT_FAIL = "Failed to connect to CIM server: "
MSG_INVALID_XML = "Invalid XML request: "
MSG_PASSWORD_PROMPT = "Please enter your password: "
MSG_PASSWORD_BLANK = "Password cannot be blank. Please re-enter your password."
MAX_PASSWORD_TRIES = 3

USAGE = (
    "Usage: wbemexec [ -h hostname ] [ -p portnumber ] [ -v httpversion ]\n"
    "                [ -m httpmethod ] [ -t timeout ] [ -u username ]\n"
    "                [ -w password ] [ -s ] [ --help ] [ --version ]\n"
    "                [ inputfilepath ]\n"
    "Options : \n"
    "    -h         - Connect to CIM Server on specified hostname\n"
    "    --help     - Display this help message\n"
    "    -m         - Use the specified HTTP method for the request\n"
    "    -p         - Connect to CIM Server on specified portnumber\n"
    "    -s         - Use SSL protocol between 'wbemexec' client and the CIM Server\n"
    "    -t         - Specify response timeout value in milliseconds\n"
    "    -u         - Authorize the operation using the specified username\n"
    "    -v         - Use the specified HTTP version for the request\n"
    "    --version  - Display CIM Server version number\n"
    "    -w         - Authorize the operation using the specified password\n"
    "\n"
    "Usage note: The wbemexec command requires that the CIM Server is running.\n"
)

# Response heads and chunk lines larger than this are not HTTP from a CIM server.
MAX_HEAD_BYTES = 1 << 20


class UsageError(Exception):
    """A command-line error: printed with the `--help` hint (ref §4.3)."""


class WbemExecError(Exception):
    """Any other failure: printed as `wbemexec: <message>`, exit 1 (ref §4.3)."""


class XmlError(Exception):
    """The XML could not be read; the message carries Pegasus's `... on line N: ...` form."""


# --------------------------------------------------------------------------------------
# Command line (ref §4.1): Pegasus's getoopt, not Python's getopt. The differences matter
# for the error texts: a value that starts with '-' is "missing", flags are processed before
# positional arguments, duplicates are reported by name.
# --------------------------------------------------------------------------------------

_FLAGS_WITH_VALUE = frozenset("hpvmtuwd")
_FLAGS_WITHOUT_VALUE = frozenset("s")
_LONG_FLAGS = frozenset({"help", "version"})
_DUPLICATE_CHECKED = frozenset("hpvmtuw")  # Pegasus lets -s and -d repeat


class Operation(Enum):
    EXECUTE = "execute"  # send the request
    HELP = "help"  # --help: usage on stderr, exit 0
    VERSION = "version"  # --version: version on stderr, exit 0


@dataclass(frozen=True, slots=True)
class Options:
    """The parsed command line, with Pegasus's defaults applied."""

    operation: Operation = Operation.EXECUTE
    host: str | None = None  # -h as given; None: not given
    port: int | None = None  # -p; None: not given
    port_text: str | None = None  # -p as typed: Pegasus puts it in the Host header verbatim
    http11: bool = True
    mpost: bool = False
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    user: str | None = None  # -u; None: the effective user name
    password: str | None = None  # -w
    use_ssl: bool = False
    debug_request: bool = False  # -d 1
    debug_response: bool = False  # -d 2
    input_path: str | None = None  # None: standard input

    @property
    def local(self) -> bool:
        """Pegasus `connectLocal()`: neither -h nor -p given (SPEC §4.5: the Unix socket)."""
        return self.host is None and self.port is None


def _uint32(text: str) -> int | None:
    """Pegasus `Optarg::Value(Uint32&)`: digits and blanks only, sscanf, at most 2**32-1."""
    if any(not (c.isdigit() or c.isspace()) for c in text) or not text.split():
        return None
    digits = text.split()[0]
    if not digits.isascii():
        return None
    value = int(digits)
    return value if value <= 0xFFFFFFFF else None


def parse_command_line(argv: Sequence[str]) -> Options:
    """Parse arguments as Pegasus getoopt + `WbemExecCommand::setCommand` do (ref §4.1).

    Raises UsageError with the first error Pegasus would report.
    """
    flags: list[tuple[str, str]] = []  # (name, value) in command-line order
    positionals: list[str] = []
    errors: list[str] = []
    pending: str | None = None  # a flag still waiting for its value
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if pending is not None:
            if arg.startswith("-"):
                errors.append(f"Missing required value for flag {pending}")
                index -= 1  # the argument is read again as a flag
            else:
                flags.append((pending, arg))
            pending = None
            continue
        if not arg.startswith("-"):
            positionals.append(arg)
        elif arg.startswith("--"):
            name = arg[2:].split("=", 1)[0]
            if name in _LONG_FLAGS:
                flags.append(("--" + name, ""))
            else:
                errors.append(f"Unknown flag {name}")
        elif len(arg) == 1:
            errors.append(f"Missing required option for {arg}")
        else:
            position = 1
            while position < len(arg):
                letter = arg[position]
                if letter in _FLAGS_WITH_VALUE:
                    value = arg[position + 1 :]
                    if value:
                        flags.append((letter, value))
                    else:
                        pending = letter
                    break
                if letter in _FLAGS_WITHOUT_VALUE:
                    flags.append((letter, ""))
                else:
                    errors.append(f"Unknown flag -{letter}")
                position += 1
    if pending is not None:
        errors.append(f"Missing required value for flag {pending}")
    if errors:
        raise UsageError(errors[0])
    return _options_from(flags, positionals)


def _options_from(flags: list[tuple[str, str]], positionals: list[str]) -> Options:
    """Validate in the order of `setCommand`: flags as given (duplicates, number formats,
    -d), then positional arguments, then ranges and the -v/-m/-t values."""
    counts: dict[str, int] = {}
    for name, _ in flags:
        counts[name] = counts.get(name, 0) + 1
    values: dict[str, str] = {}
    options = Options()
    for name, value in flags:
        if name in ("--help", "--version"):
            if options.operation is not Operation.EXECUTE:
                raise UsageError(f'option "-{name[2:]}" was unexpected')
            operation = Operation.HELP if name == "--help" else Operation.VERSION
            options = replace(options, operation=operation)
        elif name in _DUPLICATE_CHECKED and counts[name] > 1:
            raise UsageError(f'duplicate "-{name}" option')
        elif name in ("p", "t") and _uint32(value) is None:
            raise UsageError(f'argument "{value}" is not valid for option "-{name}"')
        elif name == "d":
            if value == "1":
                options = replace(options, debug_request=True)
            elif value == "2":
                options = replace(options, debug_response=True)
            else:
                raise UsageError(f'argument "{value}" is not valid for option "-d"')
        elif name == "s":
            options = replace(options, use_ssl=True)
        else:
            values[name] = value
    # Positional arguments come after all flags, as getoopt sorts them (ref §4.1).
    if len(positionals) > 1:
        raise UsageError(f'argument "{positionals[1]}" was unexpected')
    if positionals:
        options = replace(options, input_path=positionals[0])
    if "h" in values:
        options = replace(options, host=values["h"])
    if "p" in values:
        port = _uint32(values["p"])
        if port is None or port > 65535:
            raise UsageError(f'argument "{values["p"]}" is not valid for option "-p"')
        options = replace(options, port=port, port_text=values["p"])
    if "v" in values:
        if values["v"] not in ("1.0", "1.1"):
            raise UsageError(f'argument "{values["v"]}" is not valid for option "-v"')
        options = replace(options, http11=values["v"] == "1.1")
    if "m" in values:
        if values["m"] not in ("POST", "M-POST"):
            raise UsageError(f'argument "{values["m"]}" is not valid for option "-m"')
        options = replace(options, mpost=values["m"] == "M-POST")
    if "t" in values:
        timeout = _uint32(values["t"])
        if not timeout:
            raise UsageError(f'argument "{values["t"]}" is not valid for option "-t"')
        options = replace(options, timeout_ms=timeout)
    if "u" in values:
        options = replace(options, user=values["u"])
    if "w" in values:
        options = replace(options, password=values["w"])
    return options


# --------------------------------------------------------------------------------------
# XML tokens. One small tokenizer serves both directions: the minimal reading of the
# request (ref §4.2 step 2) and the one-token-per-line output (ref §4.3). lxml cannot do the
# latter: it does not tell `<X/>` from `<X></X>`, and Pegasus prints them differently. No
# DTD, no entity other than the five predefined ones and character references.
# --------------------------------------------------------------------------------------


class TokenKind(Enum):
    DECLARATION = "declaration"  # <?xml ...?> (any processing instruction)
    START_TAG = "start"  # <X a="1">
    EMPTY_TAG = "empty"  # <X a="1"/>
    END_TAG = "end"  # </X>
    CONTENT = "content"  # text, whitespace-trimmed, references decoded
    COMMENT = "comment"  # <!-- ... -->
    CDATA = "cdata"  # <![CDATA[ ... ]]>
    DOCTYPE = "doctype"  # <!DOCTYPE ...>


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # element or PI name, or the content
    line: int  # line on which the token ends (Pegasus reports errors there)
    attributes: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return None


_NAME = r"[^\s<>/=\"'!?]+"
_NAME_RE = re.compile(_NAME)
_ATTRIBUTE_RE = re.compile(r"\s*(" + _NAME + r")\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_REFERENCE_RE = re.compile(r"&([^;&\s]*);?")
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


def _decode_references(text: str, line: int) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if not match.group(0).endswith(";"):
            raise XmlError(f"Syntax error: on line {line}: malformed reference &{name}")
        if name in _PREDEFINED:
            return _PREDEFINED[name]
        try:
            if name.startswith("#x"):
                return chr(int(name[2:], 16))
            if name.startswith("#"):
                return chr(int(name[1:], 10))
        except (ValueError, OverflowError):
            pass
        raise XmlError(f"Syntax error: on line {line}: malformed reference &{name};")

    return _REFERENCE_RE.sub(replace, text) if "&" in text else text


def _attributes(text: str, line: int) -> tuple[tuple[str, str], ...]:
    result: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _ATTRIBUTE_RE.match(text, position)
        if match is None:
            raise XmlError(f"Syntax error: on line {line}: bad attribute list")
        raw = match.group(2) if match.group(2) is not None else match.group(3)
        result.append((match.group(1), _decode_references(raw, line)))
        position = match.end()
    return tuple(result)


def tokenize(text: str) -> Iterator[Token]:
    """Yield the XML tokens of `text` lazily, checking that tags nest.

    Lazy on purpose: like Pegasus's XmlParser, the request reader stops as soon as it has the
    header values, so a mistake further down is left for the server to report (ref §4.2).
    Whitespace between tokens is skipped and content is trimmed, as Pegasus does.
    """
    line = 1
    position = 0
    open_tags: list[str] = []
    length = len(text)

    def advance(end: int) -> None:
        nonlocal line, position
        line += text.count("\n", position, end)
        position = end

    def find(marker: str, what: str) -> int:
        end = text.find(marker, position)
        if end < 0:
            raise XmlError(f"Syntax error: on line {line}: unterminated {what}")
        return end

    while True:
        while position < length and text[position].isspace():
            if text[position] == "\n":
                line += 1
            position += 1
        if position >= length:
            break
        if text[position] != "<":
            end = text.find("<", position)
            end = length if end < 0 else end
            raw = text[position:end].rstrip()
            advance(position + len(raw))
            yield Token(TokenKind.CONTENT, _decode_references(raw, line), line)
            continue
        if text.startswith("<?", position):
            end = find("?>", "processing instruction")
            body = text[position + 2 : end]
            advance(end + 2)
            name_match = _NAME_RE.match(body)
            name = name_match.group(0) if name_match else ""
            yield Token(TokenKind.DECLARATION, name, line, _attributes(body[len(name) :], line))
        elif text.startswith("<!--", position):
            end = find("-->", "comment")
            body = text[position + 4 : end]
            advance(end + 3)
            yield Token(TokenKind.COMMENT, body, line)
        elif text.startswith("<![CDATA[", position):
            end = find("]]>", "CDATA section")
            body = text[position + 9 : end]
            advance(end + 3)
            yield Token(TokenKind.CDATA, body, line)
        elif text.startswith("<!DOCTYPE", position):
            bracket = text.find("[", position)
            close = find(">", "DOCTYPE")
            if 0 <= bracket < close:
                close = text.find("]", bracket)
                close = text.find(">", close) if close >= 0 else -1
                if close < 0:
                    raise XmlError(f"Syntax error: on line {line}: unterminated DOCTYPE")
            advance(close + 1)
            yield Token(TokenKind.DOCTYPE, "DOCTYPE", line)
        elif text.startswith("</", position):
            end = find(">", "end tag")
            name = text[position + 2 : end].strip()
            advance(end + 1)
            if not open_tags or open_tags[-1] != name:
                expected = open_tags[-1] if open_tags else "(none)"
                raise XmlError(
                    f"Syntax error: on line {line}: end tag </{name}> does not close <{expected}>"
                )
            open_tags.pop()
            yield Token(TokenKind.END_TAG, name, line)
        else:
            end = _tag_end(text, position + 1, line)
            empty = text[end - 1] == "/"
            body = text[position + 1 : end - 1 if empty else end]
            advance(end + 1)
            name_match = _NAME_RE.match(body)
            if name_match is None:
                raise XmlError(f"Syntax error: on line {line}: bad tag name")
            name = name_match.group(0)
            attributes = _attributes(body[len(name) :], line)
            if empty:
                yield Token(TokenKind.EMPTY_TAG, name, line, attributes)
            else:
                open_tags.append(name)
                yield Token(TokenKind.START_TAG, name, line, attributes)
    if open_tags:
        raise XmlError(f"Syntax error: on line {line}: unclosed tag <{open_tags[-1]}>")


def _tag_end(text: str, position: int, line: int) -> int:
    """Index of the '>' closing a start tag, skipping '>' inside quoted attribute values."""
    quote_char = ""
    for index in range(position, len(text)):
        char = text[index]
        if quote_char:
            if char == quote_char:
                quote_char = ""
        elif char in "\"'":
            quote_char = char
        elif char == ">":
            return index
        elif char == "<":
            break
    raise XmlError(f"Syntax error: on line {line}: unterminated start tag")


# --------------------------------------------------------------------------------------
# Output (ref §4.3): Pegasus `XmlGenerator::indentedPrint(os, content, 0)`.
# --------------------------------------------------------------------------------------

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}


_NEEDS_ESCAPE = re.compile("[\x00-\x1f\x7f&<>\"']")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    return _ESCAPES.get(char) or f"&#{ord(char)};"


def _escape(text: str) -> str:
    """Pegasus's stream escaping: the five markup characters as entities, control characters
    (and DEL) as decimal references, everything else (UTF-8 included) unchanged. This is why
    the newlines of the seed 003 DESCRIPTION come out as `&#10;`."""
    return _NEEDS_ESCAPE.sub(_escape_char, text)


def _format_attributes(attributes: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f'{name}="{_escape(value)}"' for name, value in attributes)


def indented_print(text: str) -> Iterator[str]:
    """Yield the output lines (without newline) for a response body: one token per line, no
    indentation, text trimmed and re-escaped, attributes in document order.

    As in Pegasus, an empty tag always gets a space before `/>` and a declaration is printed
    from its parsed attributes, so `<?xml version="1.0" encoding="utf-8" ?>` comes out as
    `<?xml version="1.0" encoding="utf-8"?>`. Lines already yielded stay printed when a later
    syntax error raises XmlError, which is what the streaming original does too.
    """
    for token in tokenize(text):
        attributes = _format_attributes(token.attributes)
        if token.kind is TokenKind.DECLARATION:
            yield f"<?{token.text} {attributes}?>"
        elif token.kind is TokenKind.START_TAG:
            yield f"<{token.text} {attributes}>" if attributes else f"<{token.text}>"
        elif token.kind is TokenKind.EMPTY_TAG:
            yield f"<{token.text} {attributes}/>"
        elif token.kind is TokenKind.END_TAG:
            yield f"</{token.text}>"
        elif token.kind is TokenKind.COMMENT:
            yield f"<!--{_escape(token.text)}-->"
        elif token.kind is TokenKind.CDATA:
            yield f"<![CDATA[{token.text}]]>"
        elif token.kind is TokenKind.DOCTYPE:
            yield "<!DOCTYPE...>"
        else:
            yield _escape(token.text)


# --------------------------------------------------------------------------------------
# Request (ref §4.2): `XMLProcess::encapsulate`.
# --------------------------------------------------------------------------------------


def encode_uri(value: str) -> str:
    """DSP0200 two-step encoding of a header value, as Pegasus `encodeURICharacters`: UTF-8
    first, then %-escape every octet that is not HTTP-safe (ref §1.4)."""
    return quote(value.encode("utf-8"), safe="!'()*-._~")


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """What the headers need from the XML (ref §4.2 step 2)."""

    protocol_version: str
    method: str | None  # None for MULTIREQ (CIMBatch)
    object_path: str | None
    export: bool = False  # SIMPLEEXPREQ: an export request (an indication) for a listener


class _Reader:
    """Pegasus XmlReader-style access to the token stream: test, expect, put back."""

    def __init__(self, text: str) -> None:
        self._tokens = tokenize(text)
        self._back: list[Token] = []
        self.line = 1

    def next(self) -> Token | None:
        token = self._back.pop() if self._back else next(self._tokens, None)
        if token is not None:
            self.line = token.line
        return token

    def put_back(self, token: Token | None) -> None:
        if token is not None:
            self._back.append(token)

    def fail(self, message: str) -> NoReturn:
        raise XmlError(f"Validation error: on line {self.line}: {message}")

    def test_start(self, name: str, allow_empty: bool = False) -> Token | None:
        token = self.next()
        kinds = (
            (TokenKind.START_TAG, TokenKind.EMPTY_TAG) if allow_empty else (TokenKind.START_TAG,)
        )
        if token is not None and token.kind in kinds and token.text == name:
            return token
        self.put_back(token)
        return None

    def expect_end(self, name: str) -> None:
        token = self.next()
        if token is None or token.kind is not TokenKind.END_TAG or token.text != name:
            got = token.text if token is not None else "end of input"
            self.fail(f"Expected close of {name} element, got {got} instead")

    def content(self) -> str:
        token = self.next()
        if token is not None and token.kind is TokenKind.CONTENT:
            return token.text
        self.put_back(token)
        return ""

    def required(self, token: Token, element: str, attribute: str) -> str:
        value = token.attribute(attribute)
        if value is None:
            self.fail(f"missing {element}.{attribute} attribute")
        return value


def summarize_request(text: str) -> RequestSummary:
    """Read the XML up to the method's target, with Pegasus's validation messages."""
    reader = _Reader(text)
    token = reader.next()
    if token is None or token.kind is not TokenKind.DECLARATION or token.text != "xml":
        raise WbemExecError(MSG_INVALID_INPUT)
    cim = reader.test_start("CIM")
    if cim is None:
        reader.fail("Expected open of CIM element")
    reader.required(cim, "CIM", "CIMVERSION")
    reader.required(cim, "CIM", "DTDVERSION")
    message = reader.test_start("MESSAGE")
    if message is None:
        reader.fail("expected MESSAGE element")
    if message.attribute("ID") is None:
        reader.fail("Invalid or missing MESSAGE.ID attribute")
    protocol_version = message.attribute("PROTOCOLVERSION")
    if protocol_version is None:
        reader.fail("Invalid or missing MESSAGE.PROTOCOLVERSION attribute")
    if reader.test_start("MULTIREQ") is not None:
        return RequestSummary(protocol_version, None, None)
    if reader.test_start("SIMPLEEXPREQ") is not None:
        # Ours, beyond OpenPegasus' wbemexec: post an indication (DSP0200 export request),
        # as a test of the Group Manager's automatic event handling.
        call = reader.test_start("EXPMETHODCALL")
        if call is None:
            reader.fail("expected EXPMETHODCALL element")
        method = reader.required(call, "EXPMETHODCALL", "NAME")
        return RequestSummary(protocol_version, method, None, export=True)
    if reader.test_start("SIMPLEREQ") is None:
        reader.fail("expected SIMPLEREQ, MULTIREQ or SIMPLEEXPREQ element")
    call = reader.test_start("IMETHODCALL")
    if call is not None:
        method = reader.required(call, "IMETHODCALL", "NAME")
        namespace = _local_namespace_path(reader)
        if namespace is None:
            reader.fail("expected LOCALNAMESPACEPATH element")
        return RequestSummary(protocol_version, method, namespace)
    call = reader.test_start("METHODCALL")
    if call is None:
        reader.fail("expected IMETHODCALL or METHODCALL element")
    method = reader.required(call, "METHODCALL", "NAME")
    path = _local_class_path(reader)
    if path is None:
        path = _local_instance_path(reader)
    if path is None:
        reader.fail("expected LOCALCLASSPATH or LOCALINSTANCEPATH element")
    return RequestSummary(protocol_version, method, path)


def _local_namespace_path(reader: _Reader) -> str | None:
    if reader.test_start("LOCALNAMESPACEPATH") is None:
        return None
    names: list[str] = []
    while (namespace := reader.test_start("NAMESPACE", allow_empty=True)) is not None:
        names.append(reader.required(namespace, "NAMESPACE", "NAME"))
        if namespace.kind is TokenKind.START_TAG:
            reader.expect_end("NAMESPACE")
    if not names:
        reader.fail("Expected one or more NAMESPACE elements within LOCALNAMESPACEPATH element")
    reader.expect_end("LOCALNAMESPACEPATH")
    return "/".join(names)


def _namespace_path(reader: _Reader) -> tuple[str, str] | None:
    """NAMESPACEPATH: (host, namespace)."""
    if reader.test_start("NAMESPACEPATH") is None:
        return None
    host_token = reader.test_start("HOST")
    if host_token is None:
        reader.fail("expected HOST element")
    host = reader.content()
    reader.expect_end("HOST")
    namespace = _local_namespace_path(reader)
    if namespace is None:
        reader.fail("expected LOCALNAMESPACEPATH element")
    reader.expect_end("NAMESPACEPATH")
    return host, namespace


def _class_name(reader: _Reader) -> str | None:
    token = reader.test_start("CLASSNAME", allow_empty=True)
    if token is None:
        return None
    name = reader.required(token, "CLASSNAME", "NAME")
    if token.kind is TokenKind.START_TAG:
        reader.expect_end("CLASSNAME")
    return name


def _local_class_path(reader: _Reader) -> str | None:
    if reader.test_start("LOCALCLASSPATH") is None:
        return None
    namespace = _local_namespace_path(reader)
    if namespace is None:
        reader.fail("expected LOCALNAMESPACEPATH element")
    name = _class_name(reader)
    if name is None:
        reader.fail("expected CLASSNAME element")
    reader.expect_end("LOCALCLASSPATH")
    return f"{namespace}:{name}"


def _local_instance_path(reader: _Reader) -> str | None:
    if reader.test_start("LOCALINSTANCEPATH") is None:
        return None
    namespace = _local_namespace_path(reader)
    if namespace is None:
        reader.fail("expected LOCALNAMESPACEPATH element")
    name = _instance_name(reader)
    if name is None:
        reader.fail("expected INSTANCENAME element")
    reader.expect_end("LOCALINSTANCEPATH")
    return f"{namespace}:{name}"


def _escape_key(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _instance_name(reader: _Reader) -> str | None:
    """INSTANCENAME as Pegasus `CIMObjectPath::toString()` writes it: keys sorted by name,
    string and reference values quoted with `\\` and `"` escaped, others verbatim."""
    token = reader.test_start("INSTANCENAME", allow_empty=True)
    if token is None:
        return None
    class_name = reader.required(token, "INSTANCENAME", "CLASSNAME")
    if token.kind is TokenKind.EMPTY_TAG:
        return class_name
    keys: list[tuple[str, str]] = []
    while (binding := reader.test_start("KEYBINDING")) is not None:
        name = reader.required(binding, "KEYBINDING", "NAME")
        keys.append((name, _key_value(reader)))
        reader.expect_end("KEYBINDING")
    if not keys:
        # A single unnamed key (DSP0201 allows KEYVALUE or VALUE.REFERENCE directly).
        peek = reader.next()
        reader.put_back(peek)
        if peek is not None and peek.kind is not TokenKind.END_TAG:
            keys.append(("", _key_value(reader)))
    reader.expect_end("INSTANCENAME")
    if not keys:
        return class_name
    keys.sort(key=lambda item: item[0].casefold())
    rendered = ",".join(f"{name}={value}" if name else value for name, value in keys)
    return f"{class_name}.{rendered}"


def _key_value(reader: _Reader) -> str:
    token = reader.test_start("KEYVALUE", allow_empty=True)
    if token is not None:
        value = ""
        if token.kind is TokenKind.START_TAG:
            value = reader.content()
            reader.expect_end("KEYVALUE")
        if (token.attribute("VALUETYPE") or "string") == "string":
            return f'"{_escape_key(value)}"'
        return value
    if reader.test_start("VALUE.REFERENCE") is not None:
        path = _reference_path(reader)
        reader.expect_end("VALUE.REFERENCE")
        return f'"{_escape_key(path)}"'
    reader.fail("expected KEYVALUE or VALUE.REFERENCE element")


def _reference_path(reader: _Reader) -> str:
    for element, inner in (("INSTANCEPATH", "INSTANCENAME"), ("CLASSPATH", "CLASSNAME")):
        if reader.test_start(element) is not None:
            location = _namespace_path(reader)
            if location is None:
                reader.fail("expected NAMESPACEPATH element")
            name = _instance_name(reader) if element == "INSTANCEPATH" else _class_name(reader)
            if name is None:
                reader.fail(f"expected {inner} element")
            reader.expect_end(element)
            host, namespace = location
            prefix = f"//{host}/" if host else ""
            return f"{prefix}{namespace}:{name}"
    path = _local_instance_path(reader) or _local_class_path(reader)
    if path is None:
        path = _instance_name(reader) or _class_name(reader)
    if path is None:
        reader.fail("expected a path element inside VALUE.REFERENCE")
    return path


def is_raw_http(content: bytes) -> bool:
    """Pegasus's test for input that already is an HTTP request (ref §4.2 step 1): no XML
    declaration, and the first blank-separated token of the first 7 characters is M-POST,
    POST or BOGUS (BOGUS lets tests send a deliberately unknown method)."""
    head = content.lstrip()
    if head.startswith(b"<?xml"):
        return False
    first = head[:7].split(b" ")[0]
    return first in (b"M-POST", b"POST", b"BOGUS")


def build_request(
    content: bytes, host_header: str, mpost: bool, http11: bool, prefix: str
) -> bytes:
    """The HTTP request for `content`, headers in Pegasus's order (ref §4.2 step 3).

    `prefix` is the two-digit RFC 2774 namespace of the M-POST extension headers.
    Content-Length is the size of the input as read; the one extra "\\n" that Pegasus sends
    after the body is added by the caller at send time, as `issueRequest` does.
    """
    if is_raw_http(content):
        return content
    text = content.decode("utf-8", errors="surrogateescape")
    summary = summarize_request(text)
    if mpost:
        lines = [
            "M-POST /cimom HTTP/1.1",
            f"Host: {host_header}",
            'Content-Type: application/xml; charset="utf-8"',
            f"Content-Length: {len(content)}",
            f"Man: {MAN_HEADER_VALUE}{prefix}",
        ]
        header_prefix = f"{prefix}-"
    else:
        version = "1.1" if http11 else "1.0"
        lines = [
            f"POST /cimom HTTP/{version}",
            f"Host: {host_header}",
            'Content-Type: application/xml; charset="utf-8"',
            f"Content-Length: {len(content)}",
        ]
        header_prefix = ""
    lines.append(f"{header_prefix}CIMProtocolVersion: {summary.protocol_version}")
    if summary.export:
        lines.append(f"{header_prefix}CIMExport: MethodRequest")
        lines.append(f"{header_prefix}CIMExportMethod: {encode_uri(summary.method or '')}")
        head = "".join(line + "\r\n" for line in lines) + "\r\n"
        return head.encode("utf-8", errors="surrogateescape") + content
    lines.append(f"{header_prefix}CIMOperation: MethodCall")
    if summary.method is None:
        lines.append(f"{header_prefix}CIMBatch:")
    else:
        lines.append(f"{header_prefix}CIMMethod: {encode_uri(summary.method)}")
        lines.append(f"{header_prefix}CIMObject: {encode_uri(summary.object_path or '')}")
    head = "".join(line + "\r\n" for line in lines) + "\r\n"
    return head.encode("utf-8", errors="surrogateescape") + content


def add_authorization(request: bytes, header: str) -> bytes:
    """Insert `header` right after the start line, as Pegasus `_addAuthHeader` does, so the
    same works for generated requests and for raw HTTP input."""
    newline = request.find(b"\n")
    if newline < 0:
        return request
    start_end = newline - 1 if newline > 0 and request[newline - 1 : newline] == b"\r" else newline
    return (
        request[:start_end] + b"\r\n" + header.encode("latin-1") + b"\r\n" + request[newline + 1 :]
    )


# --------------------------------------------------------------------------------------
# Transport: raw bytes over a Unix socket, TCP or TLS, with one deadline per attempt
# (Pegasus `_doRequest`: the timeout covers the wait for the whole response).
# --------------------------------------------------------------------------------------


class _TimedOut(Exception):
    pass


@dataclass(slots=True)
class Response:
    head: bytes  # status line, headers and the empty line, exactly as received
    status: int | None  # None when the status line cannot be parsed
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            # Accept an RFC 2774 `NN-` prefix, as Pegasus looks headers up (ref §1.3).
            bare = key.lower()
            if len(bare) > 3 and bare[:2].isdigit() and bare[2] == "-":
                bare = bare[3:]
            if bare == wanted:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect. `unix_path` set: the local socket; else host/port (TLS if ssl)."""

    unix_path: str | None
    host: str
    port: int
    tls: ssl.SSLContext | None = None

    @property
    def locator(self) -> str:
        return f"{self.host}:{self.port}"


class Connection:
    """One client connection with a receive buffer; reconnects on request."""

    def __init__(self, target: Target, timeout_ms: int) -> None:
        self._target = target
        self._timeout = timeout_ms / 1000.0
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._closed_by_peer = False

    @property
    def reusable(self) -> bool:
        return self._sock is not None and not self._closed_by_peer

    def open(self) -> None:
        self.close()
        self._buffer = bytearray()
        self._closed_by_peer = False
        target = self._target
        try:
            if target.unix_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self._timeout)
                try:
                    sock.connect(target.unix_path)
                except BaseException:
                    sock.close()
                    raise
                self._sock = sock
                return
            raw = socket.create_connection((target.host, target.port), timeout=self._timeout)
        except socket.gaierror as exc:
            raise WbemExecError(f"{MSG_CONNECT_FAIL}Invalid locator: {target.locator}") from exc
        except OSError as exc:
            where = "local CIM server" if target.unix_path is not None else target.locator
            # OpenPegasus' text, then which socket was tried and why (read in a cron mail,
            # "local" does not say which node's socket, nor that GM_PROVIDER_SOCKET picks it).
            why = (
                f" (socket {target.unix_path}: {exc.strerror or exc}; GM_PROVIDER_SOCKET "
                "names another)"
                if target.unix_path is not None
                else ""
            )
            raise WbemExecError(
                f"{MSG_CONNECT_FAIL}Cannot connect to {where}. Connection failed.{why}"
            ) from exc
        if target.tls is None:
            self._sock = raw
            return
        try:
            self._sock = target.tls.wrap_socket(raw, server_hostname=target.host)
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            reason = getattr(exc, "reason", None) or str(exc)
            raise WbemExecError(
                f"{MSG_CONNECT_FAIL}Cannot connect to {target.locator}. Connection failed. "
                f"(TLS: {reason})"
            ) from exc

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def exchange(self, request: bytes) -> Response:
        """Send one request and read its response; raises _TimedOut or WbemExecError."""
        if self._sock is None:
            self.open()
        sock = self._sock
        assert sock is not None
        deadline = time.monotonic() + self._timeout
        try:
            sock.settimeout(self._timeout)
            sock.sendall(request)
            while True:
                response = self._read_response(sock, deadline)
                if response.status is None or response.status >= 200:
                    return response
                # 1xx interim responses (100 Continue) are not the answer.
        except TimeoutError as exc:
            raise _TimedOut() from exc
        except OSError as exc:
            raise WbemExecError(f"{MSG_CONNECT_FAIL}{exc.strerror or exc}") from exc

    def _recv(self, sock: socket.socket, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _TimedOut()
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            self._closed_by_peer = True
        return chunk

    def _read_until(self, sock: socket.socket, deadline: float, markers: tuple[bytes, ...]) -> int:
        """Index just past the first marker in the buffer, reading more as needed."""
        while True:
            found = [(i, m) for m in markers if (i := self._buffer.find(m)) >= 0]
            if found:
                index, marker = min(found)
                return index + len(marker)
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise WbemExecError(f"{MSG_CONNECT_FAIL}Response header too large")
            chunk = self._recv(sock, deadline)
            if not chunk:
                if self._buffer:
                    raise WbemExecError(
                        f"{MSG_CONNECT_FAIL}Incomplete response from the CIM server"
                    )
                raise WbemExecError(
                    f"{MSG_CONNECT_FAIL}The CIM server closed the connection without a response"
                )
            self._buffer += chunk

    def _pop(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _take(self, sock: socket.socket, deadline: float, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._recv(sock, deadline)
            if not chunk:
                raise WbemExecError(f"{MSG_CONNECT_FAIL}Incomplete response from the CIM server")
            self._buffer += chunk
        return self._pop(size)

    def _read_response(self, sock: socket.socket, deadline: float) -> Response:
        end = self._read_until(sock, deadline, (b"\r\n\r\n", b"\n\n"))
        head = self._pop(end)
        response = _parse_head(head)
        if response.status is not None and (response.status < 200 or response.status in (204, 304)):
            return response
        if (response.header("Transfer-Encoding") or "").lower().strip() == "chunked":
            response.body = self._read_chunked(sock, deadline)
        elif (length := response.header("Content-Length")) is not None:
            try:
                size = int(length.strip())
            except ValueError as exc:
                raise WbemExecError(f"{MSG_CONNECT_FAIL}Bad Content-Length: {length}") from exc
            response.body = self._take(sock, deadline, size)
        else:
            while chunk := self._recv(sock, deadline):
                self._buffer += chunk
            response.body = self._pop(len(self._buffer))
        connection = (response.header("Connection") or "").strip().lower()
        if connection == "close" or (head.startswith(b"HTTP/1.0") and connection != "keep-alive"):
            self._closed_by_peer = True
        return response

    def _read_chunked(self, sock: socket.socket, deadline: float) -> bytes:
        body = bytearray()
        while True:
            end = self._read_until(sock, deadline, (b"\r\n", b"\n"))
            line = self._pop(end)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise WbemExecError(f"{MSG_CONNECT_FAIL}Bad chunk in response") from exc
            if size == 0:
                break
            body += self._take(sock, deadline, size)
            self._read_until(sock, deadline, (b"\r\n", b"\n"))
            self._pop(self._buffer.find(b"\n") + 1)
        while True:  # trailers, up to the empty line
            end = self._read_until(sock, deadline, (b"\r\n", b"\n"))
            line = self._pop(end)
            if not line.strip():
                return bytes(body)


_STATUS_RE = re.compile(rb"HTTP/\d+\.\d+ +(\d{3})(?: .*)?$")


def _parse_head(head: bytes) -> Response:
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    match = _STATUS_RE.match(lines[0].rstrip(b"\r"))
    status = int(match.group(1)) if match else None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers.append((name.decode("latin-1").strip(), value.decode("latin-1").strip()))
    return Response(head=head, status=status, headers=headers)


# --------------------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------------------


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("gm-provider")
    except metadata.PackageNotFoundError:
        import tomllib

        from provider.paths import checkout_root

        root = checkout_root()
        if root is None:
            raise
        with (root / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])


def _effective_user() -> str:
    """Pegasus `System::getEffectiveUserName()`."""
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        import getpass

        return getpass.getuser()


def read_input(path: str | None, stdin: BinaryIO) -> bytes:
    """The request as Pegasus reads it (ref §4.2 step 4): a file as is; standard input line
    by line, each line re-terminated with "\\n"."""
    if path is None:
        data = stdin.read()
        if not data:
            raise WbemExecError(MSG_NO_INPUT)
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()
        return b"".join(line + b"\n" for line in lines)
    if not os.path.exists(path):
        raise WbemExecError(MSG_FILE_NONEXISTENT)
    if not os.access(path, os.R_OK):
        raise WbemExecError(MSG_FILE_NOT_READABLE)
    try:
        if os.path.getsize(path) == 0 and os.path.isfile(path):
            raise WbemExecError(MSG_NO_INPUT)
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise WbemExecError(MSG_FILE_CANNOT_OPEN) from exc
    if not data:
        raise WbemExecError(MSG_NO_INPUT)
    return data


def _tls_context() -> ssl.SSLContext:
    """Verify the server (GM_CA_FILE, else the system store); optional client certificate."""
    ca_file = os.environ.get("GM_CA_FILE") or None
    try:
        context = ssl.create_default_context(cafile=ca_file)
        client_cert = os.environ.get("GM_CLIENT_CERT")
        if client_cert:
            context.load_cert_chain(client_cert, os.environ.get("GM_CLIENT_KEY") or None)
    except (OSError, ssl.SSLError) as exc:
        raise WbemExecError(f"{MSG_CONNECT_FAIL}Cannot load TLS certificates: {exc}") from exc
    return context


def _target(options: Options) -> Target:
    if options.local:
        from provider.paths import default_socket_path

        return Target(unix_path=str(default_socket_path()), host="", port=0)
    host = options.host if options.host else LOCAL_TCP_HOST
    if options.port is not None:
        port = options.port
    else:
        service, default = (
            ("wbem-https", DEFAULT_HTTPS_PORT)
            if options.use_ssl
            else ("wbem-http", DEFAULT_HTTP_PORT)
        )
        try:
            port = socket.getservbyname(service, "tcp")
        except OSError:
            port = default
    return Target(
        unix_path=None, host=host, port=port, tls=_tls_context() if options.use_ssl else None
    )


def _host_header(options: Options, target: Target) -> str:
    """`host:port` only when -h was given (with -p as typed), else empty (ref §4.1)."""
    if not options.host:
        return ""
    port = options.port_text if options.port_text is not None else str(target.port)
    host = f"[{options.host}]" if ":" in options.host else options.host
    return f"{host}:{port}"


def _basic_challenge(response: Response) -> bool:
    challenge = response.header("WWW-Authenticate")
    return challenge is not None and challenge.strip().lower().startswith("basic")


def _have_terminal() -> bool:
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _prompt_password() -> str:
    """Pegasus `_promptForPassword`: up to three tries while the answer is blank."""
    import getpass

    if not _have_terminal():
        raise WbemExecError(
            "The CIM server asks for a password and there is no terminal to ask on; "
            "give it with -w password."
        )
    password = ""
    for attempt in range(1, MAX_PASSWORD_TRIES + 1):
        password = getpass.getpass(MSG_PASSWORD_PROMPT)
        if password or attempt == MAX_PASSWORD_TRIES:
            break
        print(MSG_PASSWORD_BLANK, file=sys.stderr)
    return password


def _issue(options: Options, connection: Connection, request: bytes) -> Response:
    """Pegasus `issueRequest`: first without credentials; after a Basic challenge, once
    more with Basic (ref §1.7, §4.2 step 5). The extra "\\n" goes after the body both times."""
    response = connection.exchange(request + b"\n")
    if response.status != 401 or not _basic_challenge(response):
        return response
    password = options.password
    if password is None:
        if options.local:
            return response  # peer credentials were refused: nothing better to send
        password = _prompt_password()
    user = options.user if options.user is not None else _effective_user()
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    if not connection.reusable or request.split(b"\n", 1)[0].rstrip().endswith(b"HTTP/1.0"):
        connection.open()  # HTTP/1.0 servers close after each answer
    return connection.exchange(add_authorization(request, f"Authorization: Basic {token}") + b"\n")


def _write_body(out: BinaryIO, body: bytes) -> None:
    text = body.decode("utf-8", errors="surrogateescape")
    try:
        for line in indented_print(text):
            out.write(line.encode("utf-8", errors="surrogateescape") + b"\n")
    finally:
        out.flush()


def execute(options: Options, stdin: BinaryIO, out: BinaryIO) -> int:
    """`WbemExecCommand::_executeHttp` in Pegasus's order: option combination, input,
    connection, request, response (ref §4.2, §4.3)."""
    if options.mpost and not options.http11:
        raise WbemExecError(MSG_MPOST_HTTP10)
    content = read_input(options.input_path, stdin)
    target = _target(options)
    connection = Connection(target, options.timeout_ms)
    try:
        connection.open()
        prefix = f"{random.randrange(100):02d}"
        try:
            request = build_request(
                content, _host_header(options, target), options.mpost, options.http11, prefix
            )
        except XmlError as exc:
            raise WbemExecError(f"{MSG_INVALID_XML}{exc}") from exc
        if options.debug_request:
            out.write(request + b"\n")
            out.flush()
        try:
            response = _issue(options, connection, request)
        except _TimedOut as exc:
            raise WbemExecError(MSG_TIMED_OUT) from exc
    finally:
        connection.close()
    if response.status != 200:
        out.write(response.head)
        out.flush()
        if response.body:
            _write_body(out, response.body)
        return 1
    if options.debug_response:
        out.write(response.head)
    _write_body(out, response.body)
    return 0


@quiet_on_closed_stdout
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `wbemexec`. Returns the exit status (0 success, 1 error)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        options = parse_command_line(arguments)
    except UsageError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        print(f"{PROGRAM}: {MSG_USE_HELP}", file=sys.stderr)
        return 1
    if options.operation is Operation.HELP:
        print(USAGE, file=sys.stderr)
        return 0
    if options.operation is Operation.VERSION:
        print(f"Version {_version()}", file=sys.stderr)
        return 0
    try:
        return execute(options, sys.stdin.buffer, sys.stdout.buffer)
    except (WbemExecError, XmlError) as exc:
        sys.stdout.flush()
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, BrokenPipeError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
