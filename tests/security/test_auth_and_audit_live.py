"""Authentication and the audit log against a live provider.

No state-changing request succeeds over TCP without valid credentials: each is answered 401
with a Basic challenge (reference cim-xml-protocol.md §1.7: wbemexec authenticates only after
one), changes nothing and never reaches the CIM layer (no audit line). Every authenticated
state-changing request, refused or not, leaves exactly one audit line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pywbem

from provider.privileges import TableAuthorizer
from tests.harness import ROOT, ProviderHandle, configure, provider_process
from tests.security.helpers import basic, dummy_inputs, exchange, method_call, method_headers

BAY = pywbem.CIMInstanceName("GM_DeviceBay", {"EnclosureName": "enc01", "BayName": "12"})


@pytest.fixture(scope="module")
def gm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderHandle]:
    with provider_process(tmp_path_factory.mktemp("gm-auth")) as handle:
        yield handle


def _audit(gm: ProviderHandle) -> list[dict[str, Any]]:
    path = gm.workdir / f"{gm.node}-state" / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _methods(gm: ProviderHandle) -> list[pywbem.CIMMethod]:
    cls = gm.connection().GetClass("GM_GroupManager", LocalOnly=False)
    reads = TableAuthorizer()
    return [m for m in cls.methods.values() if not reads.is_read(m.name)]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic("admin", "wrong-password"),
        basic("admin", ""),
        "Basic " + "bm9ib2R5OnB3",  # nobody:pw, an unknown user
        "Basic !!!not-base64!!!",
        "Bearer abc",
    ],
    ids=["none", "wrong", "empty", "unknown-user", "malformed", "other-scheme"],
)
def test_no_state_change_without_valid_credentials(
    gm: ProviderHandle, authorization: str | None
) -> None:
    before = len(_audit(gm))
    spare = gm.connection().GetInstance(BAY)["IsSpare"]
    for method in _methods(gm):
        params = dummy_inputs(method)
        if method.name == "setSpare":
            params = {"EnclosureName": "enc01", "BayName": "12", "IsSpare": not spare}
        reply = exchange(
            gm.port, method_call(method.name, params), method_headers(method.name, authorization)
        )
        assert reply.status == 401, (method.name, reply)
        assert reply.headers["www-authenticate"].startswith('Basic realm="'), reply.headers
        assert b"MethodResponse" not in reply.body
    assert gm.connection().GetInstance(BAY)["IsSpare"] == spare
    assert len(_audit(gm)) == before  # refused by the transport: the CIM layer never saw them


def test_wrong_password_is_401_for_pywbem_too(gm: ProviderHandle) -> None:
    conn = pywbem.WBEMConnection(gm.url, ("admin", "nope"), default_namespace="root/cimv2")
    with pytest.raises(pywbem.AuthError):
        conn.InvokeMethod("stepDown", "GM_GroupManager")
    assert gm.connection().EnumerateInstances("GM_GroupManager")[0]["Role"] == "active"
    # Not a CIM request, so no audit line: the server log says who tried, from where.
    deadline = time.monotonic() + 5
    while "login refused: user 'admin' from 127.0.0.1 gave a wrong password" not in gm.log:
        assert time.monotonic() < deadline, gm.log[-2000:]
        time.sleep(0.05)


def test_audit_lines_for_success_job_refusal_and_instance_write(gm: ProviderHandle) -> None:
    before = len(_audit(gm))
    conn = gm.connection("admin")
    # The write first: the failover job then locks the bay's domain group.
    inst = conn.GetInstance(BAY, PropertyList=["IsSpare"])
    inst["IsSpare"] = not inst["IsSpare"]
    conn.ModifyInstance(inst, PropertyList=["IsSpare"])
    rv, out = conn.InvokeMethod(
        "failoverProfile", "GM_GroupManager", EnclosureName="enc01", BayName="3"
    )
    assert rv == 4096
    with pytest.raises(pywbem.CIMError):
        gm.connection("reader").InvokeMethod(
            "setSpare", "GM_GroupManager", EnclosureName="enc01", BayName="12", IsSpare=True
        )
    conn.InvokeMethod("getRole", "GM_GroupManager")  # a read: not audited
    conn.EnumerateInstances("GM_GroupManager")
    lines = _audit(gm)[before:]
    assert [line["method"] for line in lines] == ["ModifyInstance", "failoverProfile", "setSpare"]
    modify, failover, refused = lines
    assert failover["user"] == "admin" and failover["via"] == "http"
    assert failover["peer"].startswith("127.0.0.1:")
    assert failover["operation"] == "InvokeMethod" and failover["target"] == "GM_GroupManager"
    assert failover["params"] == {"EnclosureName": "enc01", "BayName": "3"}
    assert failover["outcome"] == "success" and failover["return_value"] == 4096
    assert failover["job"] == int(out["JobID"])
    assert refused["user"] == "reader" and refused["outcome"] == "error"
    assert refused["code"] == 2 and refused["error"] == "CIM_ERR_ACCESS_DENIED"
    assert "operator role" in refused["description"]
    assert modify["operation"] == "ModifyInstance" and modify["outcome"] == "success"
    assert modify["target"] == 'GM_DeviceBay.EnclosureName="enc01",BayName="12"'
    assert modify["params"]["ModifiedInstance"]["properties"]["IsSpare"] == inst["IsSpare"]


def test_audit_records_unix_socket_callers(gm: ProviderHandle) -> None:
    before = len(_audit(gm))
    request = ROOT / "etc" / "requests" / "GiCAP.checkScavengedMember.xml"
    subprocess.run(
        [sys.executable, "-m", "cli.wbemexec", str(request)],
        env=gm.env(),
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    [line] = _audit(gm)[before:]
    assert line["via"] == "unix" and line["peer"] == f"uid={os.getuid()}"
    assert line["method"] == "checkScavengedMember"


def test_audit_records_a_standby_refusal(tmp_path: Path) -> None:
    node = configure(tmp_path, config={"roles": {"start_as": "standby"}})
    node.start()
    try:
        with pytest.raises(pywbem.CIMError) as err:
            node.connection().InvokeMethod("stepDown", "GM_GroupManager")
        assert "not an active Group Manager" in err.value.status_description
    finally:
        node.stop()
    [line] = _audit(node)
    assert line["method"] == "stepDown" and line["outcome"] == "error" and line["code"] == 1
    assert line["description"].startswith("This system is not an active Group Manager.")
    assert oct((node.workdir / "gm1-state" / "audit.log").stat().st_mode & 0o777) == "0o600"


def test_unwritable_audit_log_stops_the_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    node = configure(tmp_path, config={"security": {"audit_log": str(blocker / "audit.log")}})
    with pytest.raises(RuntimeError, match="cannot open the audit log"):
        node.start(timeout=30)


def test_a_request_cannot_grow_the_audit_log_by_megabytes(gm: ProviderHandle) -> None:
    """A reader's refused setSpare: a 1 MiB parameter name and 2,000 parameters; then 30
    arrays of 64 texts of 512 four-byte characters. Each is one parseable line of bounded
    size (the first was 6 MB, the name written twice; the second 12 MB)."""
    path = gm.workdir / f"{gm.node}-state" / "audit.log"
    many: dict[str, object] = {"N" * (1 << 20): "x"}
    many.update({f"P{i}": "v" for i in range(2000)})
    many["Sep"] = "a\u2028b\x85c\x9bd"
    arrays: dict[str, object] = {f"A{i}": ["\U0001f600" * 512] * 64 for i in range(30)}
    for params in (many, arrays):
        before = path.stat().st_size if path.exists() else 0
        lines_before = len(_audit(gm))
        reply = exchange(
            gm.port, method_call("setSpare", params), method_headers("setSpare", basic("reader"))
        )
        assert reply.status == 200 and b"<ERROR CODE=" in reply.body
        grown = path.stat().st_size - before
        assert 0 < grown < 65_536, grown
        [line] = _audit(gm)[lines_before:]
        assert line["user"] == "reader" and line["outcome"] == "error"
        assert line["params"]["..."].endswith(" more")
    raw = path.read_text(encoding="utf-8")
    assert len(raw.splitlines()) == len(raw.split("\n")) - 1  # no separator but "\n"
    assert "\U0001f600" in raw  # kept as sent, not six-character escapes
