"""vcemcli: the classic VCEM command line as a thin CIM-XML client of the Group Manager.

    vcemcli -failover -enclosurename enc01 -bayname 3 [--wait]
    vcemcli -failover -hostname web01.example.com | -ipaddress 192.0.2.11
    vcemcli -move profile -profilename web01-profile -targetenclosurename enc01
            -targetbayname 5 [-nopoweron] [--wait]
    vcemcli -show job [-jobid N]
    vcemcli -cancel job -jobid N
    vcemcli -add spare -enclosurename enc01 -bayname 12      (-remove spare: undesignate)
    vcemcli -startvcdmaint | -completevcdmaint | -cancelvcdmaint -domaingroupname dg-web

Options: `-s URL` (http://host:5988 or https://host:5989; default: the local Unix socket,
`GM_PROVIDER_SOCKET` overrides, where the server knows the caller by its peer credentials),
`-u user -p password` (HTTP Basic over TCP), `--wait` (show progress until the job ends),
`--timeout S` (for --wait, default 600), `--cafile F` (HTTPS trust).

VCEM's verb/object style is kept so that old scripts port (reference vcem-domain.md §2.1,
§2.5). VCEM's own flag names for host name and IP failover were never published (§2.2): ours
are `-hostname` and `-ipaddress`. Exit codes (VCEM's are unknown; §2.5 proposal):

    0  done (job submitted; with --wait: the job completed)
    1  could not reach the Group Manager, or an unexpected reply
    2  usage error, or the server found a parameter invalid (CIM_ERR_INVALID_PARAMETER)
    3  authentication or privilege failure (HTTP 401, CIM_ERR_ACCESS_DENIED)
    4  not found: enclosure, bay, host, IP, profile or job (CIM_ERR_NOT_FOUND)
    5  refused by a rule: maintenance, a locked group, a standby Group Manager, ...
    6  --wait: the job ended in Exception or was cancelled
    7  --wait: the job did not end within --timeout

The client speaks CIM-XML (DSP0200/DSP0201) itself, over http.client, because pywbem's
WBEMConnection cannot use a Unix socket; the reply is parsed with lxml.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from provider.paths import default_socket_path

__all__ = ["CimClient", "CimError", "UsageError", "main"]

NAMESPACE = "root/cimv2"
MANAGER = "GM_GroupManager"
JOB_CLASS = "GM_ConcreteJob"
JOB_PREFIX = "GM:ConcreteJob:"

EXIT_OK, EXIT_CONNECT, EXIT_USAGE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_REFUSED = 0, 1, 2, 3, 4, 5
EXIT_JOB_FAILED, EXIT_TIMEOUT = 6, 7

_EXIT_BY_CIM_STATUS = {1: EXIT_REFUSED, 2: EXIT_AUTH, 4: EXIT_USAGE, 6: EXIT_NOT_FOUND}
_STATE_NAMES = {2: "New", 3: "Starting", 4: "Running", 7: "Completed", 8: "Terminated",
                10: "Exception"}  # fmt: skip
_TERMINAL = (7, 8, 10)


class UsageError(Exception):
    pass


class CimError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


class ClientError(Exception):
    """Could not talk to the server (connection, HTTP status, malformed reply)."""

    def __init__(self, message: str, exit_code: int = EXIT_CONNECT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- transport -----------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


@dataclass
class CimClient:
    """One CIM-XML client: a URL (http/https) or the local Unix socket."""

    url: str | None = None
    user: str | None = None
    password: str | None = None
    cafile: str | None = None
    timeout: float = 30.0
    _message_id: int = field(default=1000, init=False)

    def _connection(self) -> http.client.HTTPConnection:
        if self.url is None:
            return _UnixConnection(str(default_socket_path()), self.timeout)
        parsed = urllib.parse.urlsplit(self.url)
        host = parsed.hostname or "127.0.0.1"
        if parsed.scheme == "https":
            context = ssl.create_default_context(cafile=self.cafile)
            return http.client.HTTPSConnection(
                host, parsed.port or 5989, timeout=self.timeout, context=context
            )
        if parsed.scheme != "http":
            raise UsageError(f"-s needs an http:// or https:// URL, not {self.url!r}")
        return http.client.HTTPConnection(host, parsed.port or 5988, timeout=self.timeout)

    def _post(self, method: str, cim_object: str, body: bytes) -> etree._Element:
        headers = {
            "Content-Type": 'application/xml; charset="utf-8"',
            "CIMProtocolVersion": "1.0",
            "CIMOperation": "MethodCall",
            "CIMMethod": urllib.parse.quote(method),
            "CIMObject": urllib.parse.quote(cim_object, safe=""),
        }
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        conn = self._connection()
        where = self.url or str(default_socket_path())
        try:
            conn.request("POST", "/cimom", body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            raise ClientError(f"cannot reach the Group Manager at {where}: {exc}") from exc
        finally:
            conn.close()
        if response.status == 401:
            raise ClientError("authentication failed: give -u user -p password", EXIT_AUTH)
        if response.status != 200:
            detail = urllib.parse.unquote(response.getheader("PGErrorDetail") or "")
            raise ClientError(f"HTTP {response.status} {response.reason}: {detail}".rstrip(": "))
        try:
            root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:
            raise ClientError(f"the reply is not CIM-XML: {exc}") from exc
        error = root.find(".//ERROR")
        if error is not None:
            raise CimError(int(error.get("CODE", "1")), error.get("DESCRIPTION", ""))
        return root

    def _envelope(self, call: etree._Element) -> bytes:
        self._message_id += 1
        cim = etree.Element("CIM", CIMVERSION="2.0", DTDVERSION="2.0")
        message = etree.SubElement(cim, "MESSAGE", ID=str(self._message_id), PROTOCOLVERSION="1.0")
        etree.SubElement(message, "SIMPLEREQ").append(call)
        return bytes(etree.tostring(cim, xml_declaration=True, encoding="utf-8"))

    def invoke(self, method: str, params: dict[str, tuple[str, Any]]) -> tuple[int, dict[str, Any]]:
        """A static GM_GroupManager method; params: name -> (CIM type, value)."""
        call = etree.Element("METHODCALL", NAME=method)
        path = etree.SubElement(call, "LOCALCLASSPATH")
        path.append(_local_namespace())
        etree.SubElement(path, "CLASSNAME", NAME=MANAGER)
        for name, (cimtype, value) in params.items():
            param = etree.SubElement(call, "PARAMVALUE", NAME=name, PARAMTYPE=cimtype)
            etree.SubElement(param, "VALUE").text = _text(value)
        root = self._post(method, f"{NAMESPACE}:{MANAGER}", self._envelope(call))
        response = root.find(".//METHODRESPONSE")
        if response is None:
            raise ClientError("the reply has no METHODRESPONSE")
        out: dict[str, Any] = {}
        for param in response.findall("PARAMVALUE"):
            value = param.find("VALUE")
            key = param.find(".//KEYVALUE")
            out[param.get("NAME", "")] = (
                value.text if value is not None else key.text if key is not None else None
            )
        returned = response.find("RETURNVALUE/VALUE")
        return int(returned.text or "0") if returned is not None else 0, out

    def get_job(self, job_id: int) -> dict[str, Any]:
        call = etree.Element("IMETHODCALL", NAME="GetInstance")
        call.append(_local_namespace())
        param = etree.SubElement(call, "IPARAMVALUE", NAME="InstanceName")
        name = etree.SubElement(param, "INSTANCENAME", CLASSNAME=JOB_CLASS)
        binding = etree.SubElement(name, "KEYBINDING", NAME="InstanceID")
        etree.SubElement(binding, "KEYVALUE", VALUETYPE="string").text = f"{JOB_PREFIX}{job_id}"
        root = self._post("GetInstance", NAMESPACE, self._envelope(call))
        instance = root.find(".//INSTANCE")
        if instance is None:
            raise ClientError("the reply has no INSTANCE")
        return _properties(instance)

    def jobs(self) -> list[dict[str, Any]]:
        call = etree.Element("IMETHODCALL", NAME="EnumerateInstances")
        call.append(_local_namespace())
        param = etree.SubElement(call, "IPARAMVALUE", NAME="ClassName")
        etree.SubElement(param, "CLASSNAME", NAME=JOB_CLASS)
        root = self._post("EnumerateInstances", NAMESPACE, self._envelope(call))
        return [_properties(i) for i in root.iter("INSTANCE")]


def _local_namespace() -> etree._Element:
    path = etree.Element("LOCALNAMESPACEPATH")
    for part in NAMESPACE.split("/"):
        etree.SubElement(path, "NAMESPACE", NAME=part)
    return path


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def _properties(instance: etree._Element) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for prop in instance:
        name = prop.get("NAME", "")
        if prop.tag == "PROPERTY":
            value = prop.find("VALUE")
            props[name] = None if value is None else (value.text or "")
        elif prop.tag == "PROPERTY.ARRAY":
            array = prop.find("VALUE.ARRAY")
            props[name] = None if array is None else [v.text or "" for v in array]
    return props


# -- command line ----------------------------------------------------------------------------

_VALUE_FLAGS = {
    "-enclosurename", "-bayname", "-hostname", "-ipaddress", "-profilename",
    "-targetenclosurename", "-targetbayname", "-jobid", "-domaingroupname", "-s", "-u", "-p",
    "--timeout", "--cafile",
}  # fmt: skip
_VERBS_WITH_OBJECT = {"-move": "profile", "-show": "job", "-cancel": "job", "-add": "spare",
                      "-remove": "spare"}  # fmt: skip
_PLAIN_VERBS = {"-failover", "-startvcdmaint", "-completevcdmaint", "-cancelvcdmaint"}
_SWITCHES = {"-nopoweron", "--wait", "-h", "--help"}


@dataclass
class Command:
    verb: str
    values: dict[str, str]
    switches: set[str]

    def need(self, *flags: str) -> list[str]:
        missing = [f for f in flags if f not in self.values]
        if missing:
            raise UsageError(f"{self.verb} needs {' '.join(missing)}")
        return [self.values[f] for f in flags]


def parse(argv: Sequence[str]) -> Command:
    verb: str | None = None
    values: dict[str, str] = {}
    switches: set[str] = set()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        low = arg.lower()
        if low in _VERBS_WITH_OBJECT or low in _PLAIN_VERBS:
            if verb is not None:
                raise UsageError(f"one command at a time: {verb} and {arg}")
            verb = low
            if low in _VERBS_WITH_OBJECT:
                wanted = _VERBS_WITH_OBJECT[low]
                if i + 1 >= len(args) or args[i + 1].lower() != wanted:
                    raise UsageError(f"{arg} needs the object {wanted!r} ({arg} {wanted})")
                verb = f"{low} {wanted}"
                i += 1
        elif low in _VALUE_FLAGS:
            if i + 1 >= len(args):
                raise UsageError(f"{arg} needs a value")
            values[low] = args[i + 1]
            i += 1
        elif low in _SWITCHES:
            switches.add(low)
        else:
            raise UsageError(f"unknown argument {arg!r}")
        i += 1
    if "-h" in switches or "--help" in switches:
        return Command("help", values, switches)
    if verb is None:
        raise UsageError("no command given (-failover, -move profile, -show job, ...)")
    return Command(verb, values, switches)


def _job_id(text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"-jobid needs a job number, not {text!r}")
    return int(text)


def _state(job: dict[str, Any]) -> str:
    value = int(job.get("JobState") or 0)
    return _STATE_NAMES.get(value, str(value))


def describe_job(job: dict[str, Any]) -> str:
    def where(enc: str, bay: str) -> str:
        return f"{job.get(enc)} bay {job.get(bay)}" if job.get(enc) else "-"

    lines = [
        f"Job ID: {job.get('JobID')}",
        f"Job Type: {job.get('JobType')}",
        f"Job State: {_state(job)}",
        f"Name: {job.get('Name')}",
        f"Domain Group: {job.get('DomainGroup')}",
        f"Source: {where('SourceEnclosureName', 'SourceBayName')}",
        f"Target: {where('TargetEnclosureName', 'TargetBayName')}",
        f"Profile: {job.get('Profile')}",
        f"Current Step: {job.get('CurrentStep') or '-'}",
        f"Steps Done: {', '.join(job.get('StepsDone') or []) or '-'}",
        f"Percent Complete: {job.get('PercentComplete')}",
        f"Submitted: {job.get('TimeSubmitted')}",
        f"Owner: {job.get('Owner')}",
    ]
    if job.get("ErrorDescription"):
        lines.append(f"Error: {job.get('ErrorDescription')}")
    return "\n".join(lines)


def wait_for(
    client: CimClient, job_id: int, timeout: float, out: Callable[[str], None], poll: float = 0.2
) -> int:
    """Show progress until the job ends; the exit code for its outcome."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        job = client.get_job(job_id)
        line = f"Job {job_id}: {_state(job)}"
        if job.get("CurrentStep") and int(job.get("JobState") or 0) not in _TERMINAL:
            line += f", step {job['CurrentStep']} ({job.get('PercentComplete')}%)"
        if line != last:
            out(line)
            last = line
        state = int(job.get("JobState") or 0)
        if state in _TERMINAL:
            if job.get("ErrorDescription"):
                out(f"Job {job_id}: {job['ErrorDescription']}")
            return EXIT_OK if state == 7 else EXIT_JOB_FAILED
        if time.monotonic() > deadline:
            out(f"Job {job_id} has not ended after {timeout:g} s; it keeps running.")
            return EXIT_TIMEOUT
        time.sleep(poll)


def _submitted(client: CimClient, cmd: Command, method: str, params: dict[str, Any],
               what: str, out: Callable[[str], None]) -> int:  # fmt: skip
    _, result = client.invoke(method, params)
    job_id = int(result.get("JobID") or 0)
    # "its job number is returned so you can check the job status" (WP-NEW-6).
    out(f"Job {job_id} submitted: {what}.")
    if "--wait" in cmd.switches:
        timeout = float(cmd.values.get("--timeout", "600"))
        return wait_for(client, job_id, timeout, out)
    return EXIT_OK


def run(cmd: Command, client: CimClient, out: Callable[[str], None]) -> int:
    params: dict[str, tuple[str, Any]]
    if cmd.verb == "-failover":
        if "-hostname" in cmd.values:
            params = {"HostName": ("string", cmd.values["-hostname"])}
            what = f"failover of host {cmd.values['-hostname']}"
        elif "-ipaddress" in cmd.values:
            params = {"IPAddress": ("string", cmd.values["-ipaddress"])}
            what = f"failover of IP address {cmd.values['-ipaddress']}"
        else:
            enclosure, bay = cmd.need("-enclosurename", "-bayname")
            params = {"EnclosureName": ("string", enclosure), "BayName": ("string", bay)}
            what = f"failover of enclosure {enclosure} bay {bay}"
        return _submitted(client, cmd, "failoverProfile", params, what, out)
    if cmd.verb == "-move profile":
        profile, enclosure, bay = cmd.need("-profilename", "-targetenclosurename", "-targetbayname")
        params = {
            "ProfileName": ("string", profile),
            "TargetEnclosureName": ("string", enclosure),
            "TargetBayName": ("string", bay),
            "PowerOn": ("boolean", "-nopoweron" not in cmd.switches),
        }
        what = f"move of profile {profile} to enclosure {enclosure} bay {bay}"
        return _submitted(client, cmd, "moveProfile", params, what, out)
    if cmd.verb == "-show job":
        if "-jobid" in cmd.values:
            out(describe_job(client.get_job(_job_id(cmd.values["-jobid"]))))
        else:
            for job in client.jobs():
                out(f"{job.get('JobID'):>6}  {_state(job):<10}  {job.get('PercentComplete'):>3}%  "
                    f"{job.get('DomainGroup')}  {job.get('Name')}")  # fmt: skip
        return EXIT_OK
    if cmd.verb == "-cancel job":
        (job_id,) = cmd.need("-jobid")
        client.invoke("cancelJob", {"JobID": ("uint32", _job_id(job_id))})
        out(f"Job {job_id} cancelled.")
        return EXIT_OK
    if cmd.verb in ("-add spare", "-remove spare"):
        enclosure, bay = cmd.need("-enclosurename", "-bayname")
        spare = cmd.verb == "-add spare"
        client.invoke(
            "setSpare",
            {"EnclosureName": ("string", enclosure), "BayName": ("string", bay),
             "IsSpare": ("boolean", spare)},
        )  # fmt: skip
        out(f"Enclosure {enclosure} bay {bay} is {'now' if spare else 'no longer'} a spare.")
        return EXIT_OK
    action = {"-startvcdmaint": "start", "-completevcdmaint": "complete",
              "-cancelvcdmaint": "cancel"}[cmd.verb]  # fmt: skip
    (group,) = cmd.need("-domaingroupname")
    client.invoke(
        "setMaintenance", {"DomainGroup": ("string", group), "Action": ("string", action)}
    )
    out(f"Maintenance of domain group {group}: {action}.")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        cmd = parse(args)
        if cmd.verb == "help":
            print(__doc__)
            return EXIT_OK
        client = CimClient(
            url=cmd.values.get("-s"),
            user=cmd.values.get("-u"),
            password=cmd.values.get("-p"),
            cafile=cmd.values.get("--cafile"),
        )
        return run(cmd, client, out)
    except UsageError as exc:
        print(f"vcemcli: {exc}\nUse 'vcemcli --help' to see the commands.", file=sys.stderr)
        return EXIT_USAGE
    except CimError as exc:
        print(f"vcemcli: {exc.description}", file=sys.stderr)
        return _EXIT_BY_CIM_STATUS.get(exc.status, EXIT_REFUSED)
    except ClientError as exc:
        print(f"vcemcli: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
