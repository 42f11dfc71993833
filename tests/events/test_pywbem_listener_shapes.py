"""The same export requests to pywbem's WBEMListener (a real, independent CIM-XML listener)
and to ours: what it accepts we accept, what it refuses we refuse the same way.

This keeps the request shapes of the other event tests honest — the bodies built here from
pywbem CIM objects are what a listener receives from a real indication sender — and checks
our replies to the body-level errors against a second implementation. (pywbem's listener
does not check the CIMExport headers; those errors are tested in test_export_errors.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import pywbem

from tests.events._wire import Reply, export_body, free_port, indication, post
from tests.events.conftest import World

RICH = pywbem.CIMInstance(
    "HP_AlertIndication",
    properties={
        "EventID": "2005",
        "PerceivedSeverity": pywbem.Uint16(5),
        "AlertType": pywbem.Uint16(5),
        "ProbableCause": pywbem.Uint16(1),
        "SystemName": "shapes.example.com",
        "IndicationTime": pywbem.CIMDateTime("20240106120000.000000+000"),
        "RecommendedActions": ["replace DIMM 3", "fail over"],
        "Trending": pywbem.Uint16(4),
        "Counts": [pywbem.Uint32(1), pywbem.Uint32(2)],
        "Correctable": True,
    },
)

CASES = {
    "alert": export_body(indication(EventID="1", SystemName="shapes.example.com")),
    "rich": export_body(RICH),
    "no-parameter": export_body(None),
    "wrong-parameter": export_body(RICH, param="Indication"),
    "unknown-method": export_body(RICH, method="ExportSomething"),
    "not-xml": b"<CIM><MESSAGE ID=",
}


@pytest.fixture(scope="module")
def pywbem_listener() -> Iterator[tuple[int, list[pywbem.CIMInstance]]]:
    port = free_port()
    received: list[pywbem.CIMInstance] = []
    listener = pywbem.WBEMListener("127.0.0.1", http_port=port)
    listener.add_callback(lambda ind, host: received.append(ind))
    listener.start()
    try:
        yield port, received
    finally:
        listener.stop()


def _verdict(reply: Reply) -> tuple[int, str | int | None]:
    """(HTTP status, CIMError header) for an HTTP error; (200, CIM status code or None)."""
    if reply.status != 200:
        return reply.status, reply.headers.get("cimerror")
    error = reply.error()
    return 200, None if error is None else error[0]


@pytest.mark.parametrize("case", list(CASES))
def test_same_verdict_as_pywbems_listener(
    world: World, pywbem_listener: tuple[int, list[pywbem.CIMInstance]], case: str
) -> None:
    port, _ = pywbem_listener
    body = CASES[case]
    method = "ExportSomething" if case == "unknown-method" else "ExportIndication"
    headers: dict[str, str | None] = {"CIMExportMethod": method}
    theirs = _verdict(post(port, body, headers, user=None))
    ours = _verdict(post(world.active.port, body, headers))
    assert ours == theirs, (case, ours, theirs)


def test_the_indication_arrives_as_pywbem_would_deliver_it(
    world: World, pywbem_listener: tuple[int, list[pywbem.CIMInstance]]
) -> None:
    port, received = pywbem_listener
    inst = RICH.copy()
    inst["SystemName"] = "delivered.example.com"
    body = export_body(inst)
    assert post(port, body, user=None).status == 200
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.02)
    delivered = received[-1]
    assert delivered.classname == "HP_AlertIndication"
    assert delivered["RecommendedActions"] == ["replace DIMM 3", "fail over"]
    assert post(world.active.port, body).status == 200
    [decision] = world.decisions_about("delivered.example.com")
    # What we recorded is what pywbem decoded.
    assert decision["IndicationClass"] == delivered.classname
    assert decision["EventID"] == delivered["EventID"]
    assert decision["PerceivedSeverity"] == str(delivered["PerceivedSeverity"])
    assert decision["Decision"] == "unknown-system"
