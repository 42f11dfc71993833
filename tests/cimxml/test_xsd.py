"""schemas/cim-xml.xsd: it validates the good requests (captures, etc/requests) and our encoded
responses, and rejects the bad ones, which the hand-validating parser rejects too."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from provider.cimxml.parse import parse_request
from provider.errors import ProtocolError
from tests.cimxml.test_encode import all_responses
from tests.cimxml.test_parse import CHECK_SCAVENGED, GET_INSTANCE_PEGASUS_KEYS, NS, PYWBEM_CM, wrap

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "schemas" / "cim-xml.xsd"
SCHEMA = etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
DATA = Path(__file__).parent / "data"

GOOD_FILES = sorted(DATA.glob("*.xml")) + sorted((ROOT / "etc" / "requests").glob("*.xml"))


def _valid(body: bytes) -> bool:
    return SCHEMA.validate(etree.fromstring(body))


@pytest.mark.parametrize("path", GOOD_FILES, ids=lambda p: p.name)
def test_request_files_are_valid_and_parse(path: Path) -> None:
    body = path.read_bytes()
    assert _valid(body), SCHEMA.error_log.last_error
    parse_request(body)


@pytest.mark.parametrize("body", [PYWBEM_CM, CHECK_SCAVENGED, GET_INSTANCE_PEGASUS_KEYS])
def test_other_good_requests_are_valid(body: bytes) -> None:
    assert _valid(body), SCHEMA.error_log.last_error


@pytest.mark.parametrize("body", all_responses())
def test_encoded_responses_are_valid(body: bytes) -> None:
    assert _valid(body), SCHEMA.error_log.last_error


def test_xmlschema_package_agrees() -> None:
    schema = xmlschema.XMLSchema(str(SCHEMA_PATH))
    for path in GOOD_FILES:
        schema.validate(str(path))


GETCLASS = b'<IMETHODCALL NAME="GetClass">' + NS + b"</IMETHODCALL>"

BAD = {
    "missing CIMVERSION": wrap(GETCLASS, cim=b'DTDVERSION="2.0"'),
    "wrong root": b'<NOTCIM CIMVERSION="2.0" DTDVERSION="2.0"/>',
    "no namespace path": wrap(b'<IMETHODCALL NAME="GetClass"></IMETHODCALL>'),
    "no method name": wrap(b"<IMETHODCALL>" + NS + b"</IMETHODCALL>"),
    "unknown element": wrap(b'<IMETHODCALL NAME="G">' + NS + b"<BOGUS/></IMETHODCALL>"),
    "text in element content": wrap(b'<IMETHODCALL NAME="G">junk' + NS + b"</IMETHODCALL>"),
    "namespace path after params": wrap(
        b'<IMETHODCALL NAME="G"><IPARAMVALUE NAME="A"/>' + NS + b"</IMETHODCALL>"
    ),
    "bad property type": wrap(
        b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="I"><INSTANCE CLASSNAME="X">'
        b'<PROPERTY NAME="p" TYPE="int"></PROPERTY></INSTANCE></IPARAMVALUE></IMETHODCALL>'
    ),
    "bad valuetype": wrap(
        b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="I"><INSTANCENAME CLASSNAME="X">'
        b'<KEYBINDING NAME="k"><KEYVALUE VALUETYPE="number">1</KEYVALUE></KEYBINDING>'
        b"</INSTANCENAME></IPARAMVALUE></IMETHODCALL>"
    ),
    "two values": wrap(
        b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="A"><VALUE>1</VALUE><VALUE>2</VALUE>'
        b"</IPARAMVALUE></IMETHODCALL>"
    ),
    "value with child": wrap(
        b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="A"><VALUE><VALUE/></VALUE>'
        b"</IPARAMVALUE></IMETHODCALL>"
    ),
    "bad paramtype": wrap(
        b'<METHODCALL NAME="m"><LOCALCLASSPATH>' + NS + b'<CLASSNAME NAME="X"/></LOCALCLASSPATH>'
        b'<PARAMVALUE NAME="p" PARAMTYPE="text"></PARAMVALUE></METHODCALL>'
    ),
    "qualifier after property": wrap(
        b'<IMETHODCALL NAME="G">' + NS + b'<IPARAMVALUE NAME="I"><INSTANCE CLASSNAME="X">'
        b'<PROPERTY NAME="p" TYPE="string"></PROPERTY><QUALIFIER NAME="q" TYPE="string">'
        b"</QUALIFIER></INSTANCE></IPARAMVALUE></IMETHODCALL>"
    ),
    "response as request": wrap(GETCLASS).replace(b"SIMPLEREQ", b"SIMPLERSP"),
    "CIM version 3": wrap(GETCLASS, cim=b'CIMVERSION="3.0" DTDVERSION="2.0"'),
    "protocol version 2": wrap(GETCLASS, pv=b"2.0"),
}


@pytest.mark.parametrize("body", BAD.values(), ids=BAD.keys())
def test_bad_requests_rejected_by_schema_and_parser(body: bytes) -> None:
    assert not _valid(body)
    with pytest.raises(ProtocolError):
        parse_request(body)


def test_schema_is_stricter_about_unknown_attributes_than_the_parser() -> None:
    body = wrap(GETCLASS.replace(b'NAME="GetClass"', b'NAME="GetClass" FOO="1"'))
    assert not _valid(body)
    parse_request(body)  # liberal: ignored
