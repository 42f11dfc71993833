"""Real WBEM clients against a real gm-provider on 127.0.0.1 (issue: CIM-XML server).

pywbem's WBEMConnection, pywbemcli, Debian's sblim wbemcli and our wbemexec all work against
the same server, as SPEC 5 requires.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pywbem

from tests.harness import ROOT, USERS, ProviderHandle

REQUESTS = ROOT / "etc" / "requests"
ADMIN_PW = USERS["admin"][1]


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def _run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None):
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env=env, input=stdin, cwd=ROOT
    )


# ---- pywbem ----


def test_pywbem_getclass_has_methods_parameters_and_keys(gm: ProviderHandle) -> None:
    conn = gm.connection()
    cls = conn.GetClass("GM_GroupManager", LocalOnly=False, IncludeQualifiers=True)
    assert cls.properties["Name"].qualifiers["Key"].value is True
    method = cls.methods["failoverProfile"]
    assert method.qualifiers["Static"].value is True
    assert method.parameters["Job"].reference_class == "GM_ConcreteJob"
    assert method.return_type == "uint32"


def test_pywbem_enumerate_and_get_instance(gm: ProviderHandle) -> None:
    conn = gm.connection()
    insts = conn.EnumerateInstances("GM_GroupManager")
    assert [i["Name"] for i in insts] == [gm.node]
    inst = conn.GetInstance(insts[0].path)
    assert inst["Role"] == "active"
    assert inst["Epoch"] >= 1
    assert inst["StoreBackend"] == "sqlite"


def test_pywbem_get_unknown_instance_is_not_found(gm: ProviderHandle) -> None:
    conn = gm.connection()
    path = pywbem.CIMInstanceName("GM_GroupManager", {"Name": "no-such-node"})
    with pytest.raises(pywbem.CIMError) as err:
        conn.GetInstance(path)
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
    assert "no-such-node" in err.value.status_description
    assert f"this node is {gm.node!r}" in err.value.status_description


def test_pywbem_unknown_class_and_namespace(gm: ProviderHandle) -> None:
    conn = gm.connection()
    with pytest.raises(pywbem.CIMError) as err:
        conn.EnumerateInstances("GM_NoSuchClass")
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_CLASS
    with pytest.raises(pywbem.CIMError) as err:
        conn.EnumerateInstances("GM_GroupManager", namespace="root/nowhere")
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_NAMESPACE


def test_pywbem_invoke_static_method_on_class(gm: ProviderHandle) -> None:
    conn = gm.connection()
    _, role = conn.InvokeMethod("getRole", "GM_GroupManager")
    # takeControl on the active: it stays active, same epoch (icapmanage -Q on the active).
    rv, out = conn.InvokeMethod("takeControl", "GM_GroupManager", Force=False)
    assert rv == 0 and out["Epoch"] == role["Epoch"]
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod("restoreRights", "GM_GroupManager", HostName="hostA1.example.com")
    assert err.value.status_code == pywbem.CIM_ERR_FAILED
    assert "there is nothing to restore" in err.value.status_description


def test_pywbem_invoke_unknown_method_and_parameter(gm: ProviderHandle) -> None:
    conn = gm.connection()
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod("noSuchMethod", "GM_GroupManager")
    assert err.value.status_code == pywbem.CIM_ERR_METHOD_NOT_FOUND
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod("takeControl", "GM_GroupManager", Bogus=True)
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "Force" in err.value.status_description


def test_pywbem_pull_operations(gm: ProviderHandle) -> None:
    conn = gm.connection()
    result = conn.OpenEnumerateInstances(
        "CIM_Namespace", namespace="root/interop", MaxObjectCount=1
    )
    got = list(result.instances)
    while not result.eos:
        result = conn.PullInstancesWithPath(result.context, MaxObjectCount=1)
        got.extend(result.instances)
    assert sorted(i["Name"] for i in got) == ["root/cimv2", "root/interop"]
    paths = conn.OpenEnumerateInstancePaths(
        "CIM_Namespace", namespace="root/interop", MaxObjectCount=1
    )
    assert not paths.eos
    conn.CloseEnumeration(paths.context)
    with pytest.raises(pywbem.CIMError) as err:
        conn.PullInstancePaths(paths.context, MaxObjectCount=1)
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_ENUMERATION_CONTEXT


def test_pywbem_iter_enumerate_uses_pull(gm: ProviderHandle) -> None:
    conn = gm.connection(namespace="root/interop")
    names = [i["Name"] for i in conn.IterEnumerateInstances("CIM_Namespace", MaxObjectCount=1)]
    assert sorted(names) == ["root/cimv2", "root/interop"]


def test_pywbem_wbemserver_brand_namespaces_profiles(gm: ProviderHandle) -> None:
    server = pywbem.WBEMServer(gm.connection())
    assert server.interop_ns == "root/interop"
    assert server.brand == "gm-provider"
    assert set(server.namespaces) == {"root/cimv2", "root/interop"}
    assert len(server.profiles) >= 1


def test_wrong_password_is_refused(gm: ProviderHandle) -> None:
    conn = pywbem.WBEMConnection(gm.url, ("admin", "wrong"), default_namespace="root/cimv2")
    with pytest.raises(pywbem.AuthError):
        conn.EnumerateInstances("GM_GroupManager")


# ---- pywbemcli ----


def _pywbemcli(gm: ProviderHandle, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(gm.workdir))
    return _run(
        [_bin("pywbemcli"), "-s", gm.url, "-u", "admin", "-p", ADMIN_PW, "-d", "root/cimv2", *args],
        env=env,
    )


def test_pywbemcli_class_get(gm: ProviderHandle) -> None:
    out = _pywbemcli(gm, "class", "get", "GM_GroupManager")
    assert out.returncode == 0, out.stderr
    assert "class GM_GroupManager" in out.stdout
    assert "uint32 failoverProfile(" in out.stdout


def test_pywbemcli_instance_enumerate(gm: ProviderHandle) -> None:
    out = _pywbemcli(gm, "instance", "enumerate", "GM_GroupManager")
    assert out.returncode == 0, out.stderr
    assert f'Name = "{gm.node}";' in out.stdout


def test_pywbemcli_class_invokemethod(gm: ProviderHandle) -> None:
    out = _pywbemcli(
        gm, "class", "invokemethod", "GM_GroupManager", "takeControl", "-p", "Force=false"
    )
    assert out.returncode == 0, out.stderr
    assert "Epoch=" in out.stdout
    out = _pywbemcli(
        gm,
        "class",
        "invokemethod",
        "GM_GroupManager",
        "restoreRights",
        "-p",
        "HostName=hostA1.example.com",
    )
    assert out.returncode == 1
    assert "there is nothing to restore" in out.stderr


def test_pywbemcli_server_brand(gm: ProviderHandle) -> None:
    out = _pywbemcli(gm, "server", "brand")
    assert out.returncode == 0, out.stderr
    assert "gm-provider" in out.stdout


# ---- Debian's sblim wbemcli ----

needs_wbemcli = pytest.mark.skipif(
    shutil.which("wbemcli") is None,
    reason="Debian's sblim-wbemcli is not installed (make test installs it as root)",
)


def _wbemcli(
    gm: ProviderHandle, op: str, target: str, *args: str
) -> subprocess.CompletedProcess[str]:
    url = f"http://admin:{ADMIN_PW}@127.0.0.1:{gm.port}/root/cimv2:{target}"
    return _run(["wbemcli", op, url, *args])


@needs_wbemcli
def test_wbemcli_ei_gi(gm: ProviderHandle) -> None:
    out = _wbemcli(gm, "ei", "GM_GroupManager")
    assert out.returncode == 0, out.stderr
    assert f'GM_GroupManager.Name="{gm.node}"' in out.stdout
    assert 'Role="active"' in out.stdout
    out = _wbemcli(gm, "gi", f'GM_GroupManager.Name="{gm.node}"')
    assert out.returncode == 0, out.stderr
    assert "Epoch=" in out.stdout


@needs_wbemcli
def test_wbemcli_cm_static_method(gm: ProviderHandle) -> None:
    out = _wbemcli(gm, "cm", "GM_GroupManager", "takeControl.Force=false")
    assert out.returncode == 0, out.stderr
    assert "takeControl: 0, Epoch (uint64): " in out.stdout
    out = _wbemcli(gm, "cm", "GM_GroupManager", "restoreRights.HostName=hostA1.example.com")
    assert "there is nothing to restore" in out.stderr
    assert out.returncode != 0


# ---- our wbemexec ----


def _wbemexec(gm: ProviderHandle, *args: str, stdin: str | None = None, local: bool = False):
    base = [sys.executable, "-m", "cli.wbemexec"]
    if not local:
        base += ["-h", "127.0.0.1", "-p", str(gm.port), "-u", "admin", "-w", ADMIN_PW]
    return _run([*base, *args], env=gm.env(), stdin=stdin)


def test_wbemexec_file_over_tcp_with_auth_challenge(gm: ProviderHandle) -> None:
    out = _wbemexec(gm, str(REQUESTS / "GetInstance.GroupManager.xml"))
    assert out.returncode == 0, out.stderr
    assert '<IMETHODRESPONSE NAME="GetInstance">' in out.stdout


def test_wbemexec_stdin_mpost_and_debug(gm: ProviderHandle) -> None:
    body = (REQUESTS / "GetInstance.GroupManager.xml").read_text()
    out = _wbemexec(gm, "-m", "M-POST", "-d", "1", stdin=body)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("M-POST /cimom HTTP/1.1")
    assert "-CIMOperation: MethodCall" in out.stdout
    assert '<IMETHODRESPONSE NAME="GetInstance">' in out.stdout


def test_wbemexec_unix_socket_needs_no_password(gm: ProviderHandle) -> None:
    out = _wbemexec(gm, str(REQUESTS / "GetInstance.GroupManager.xml"), local=True)
    assert out.returncode == 0, out.stderr
    assert '<INSTANCE CLASSNAME="GM_GroupManager">' in out.stdout


def test_wbemexec_non_200_prints_status_and_exits_1(gm: ProviderHandle) -> None:
    raw = (
        "POST /cimom HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    out = _wbemexec(gm, stdin=raw)
    assert out.returncode == 1
    assert out.stdout.startswith("HTTP/1.1 40")


def test_the_banner_says_how_local_clients_reach_a_socket_they_would_not_find(
    gm: ProviderHandle,
) -> None:
    """A second node's banner offered its socket for "wbemexec with no -h/-p", which finds
    the built-in socket (the other node's): a stepDown typed from it acted there."""
    socket_path = gm.workdir / f"{gm.node}-state" / "cimxml.socket"
    assert f"local socket  {socket_path}   (no password; local clients need " in gm.log
    assert f"GM_PROVIDER_SOCKET={socket_path})" in gm.log
    assert "wbemexec with no -h/-p" not in gm.log
