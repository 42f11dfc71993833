"""vcemcli: the classic VCEM command line as a thin CIM-XML client of the Group Manager.

    vcemcli -failover -enclosurename enc01 -bayname 3 [--wait]
    vcemcli -failover -hostname web01.example.com | -ipaddress 192.0.2.11
    vcemcli -move profile -profilename web01-profile -targetenclosurename enc01
            -targetbayname 5 [-nopoweron] [--wait]
    vcemcli -show job [-jobid N [--wait]]
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

The client is `cli._client.CimClient` (shared with icapmanage): it speaks CIM-XML itself,
because pywbem's WBEMConnection cannot use a Unix socket.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cli._client import AuthenticationFailed, CimClient, CimError, ClientError, Param, keys
from cli._pipes import quiet_on_closed_stdout

__all__ = ["UsageError", "main"]

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
    if "--timeout" in values:
        _seconds(values["--timeout"])  # checked before anything is sent, not after a submit
    if verb is None:
        raise UsageError("no command given (-failover, -move profile, -show job, ...)")
    if verb == "-show job" and "--wait" in switches and "-jobid" not in values:
        raise UsageError("-show job --wait needs -jobid: it waits for one job")
    return Command(verb, values, switches)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (0 < seconds < float("inf")):
        raise UsageError(f"--timeout needs a number of seconds greater than 0, not {text!r}")
    return seconds


def _wait_seconds(cmd: Command) -> float:
    """How long --wait waits: --timeout, 600 s by default."""
    return _seconds(cmd.values.get("--timeout", "600"))


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


def get_job(client: CimClient, job_id: int) -> dict[str, Any]:
    return client.get_instance(JOB_CLASS, keys(InstanceID=f"{JOB_PREFIX}{job_id}"))


def wait_for(
    client: CimClient, job_id: int, timeout: float, out: Callable[[str], None], poll: float = 0.2
) -> int:
    """Show progress until the job ends; the exit code for its outcome."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        job = get_job(client, job_id)
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
            elif state == 7 and job.get("TargetEnclosureName"):
                # Where the server runs now is what the caller waited to learn.
                out(
                    f"Job {job_id}: profile {job.get('Profile') or '?'} moved to "
                    f"{job['TargetEnclosureName']} bay {job.get('TargetBayName')}"
                    + _source_text(job)
                )
            return EXIT_OK if state == 7 else EXIT_JOB_FAILED
        if time.monotonic() > deadline:
            out(f"Job {job_id} has not ended after {timeout:g} s; it keeps running.")
            return EXIT_TIMEOUT
        time.sleep(poll)


def _source_text(job: dict[str, Any]) -> str:
    if not job.get("SourceEnclosureName"):
        return ""
    return f" (from {job['SourceEnclosureName']} bay {job.get('SourceBayName')})"


def _params(params: dict[str, tuple[str, Any]]) -> list[Param]:
    return [Param(name, cimtype, value) for name, (cimtype, value) in params.items()]


def _submitted(client: CimClient, cmd: Command, method: str, params: dict[str, Any],
               what: str, out: Callable[[str], None]) -> int:  # fmt: skip
    _, result = client.invoke(method, _params(params))
    job_id = int(result.get("JobID") or 0)
    # "its job number is returned so you can check the job status" (WP-NEW-6).
    out(f"Job {job_id} submitted: {what}.")
    if "--wait" in cmd.switches:
        return wait_for(client, job_id, _wait_seconds(cmd), out)
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
            if "-enclosurename" not in cmd.values and "-bayname" not in cmd.values:
                raise UsageError(
                    "-failover needs the failed server: -enclosurename E -bayname B, "
                    "or -hostname H, or -ipaddress A"
                )
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
            number = _job_id(cmd.values["-jobid"])
            out(describe_job(get_job(client, number)))
            if "--wait" in cmd.switches:
                # Exit 0 / 6 / 7 as for a submitted job, so `vcemcli -show job -jobid N
                # --wait && ...` goes on only when the job completed.
                return wait_for(client, number, _wait_seconds(cmd), out)
        else:
            for job in client.enumerate_instances(JOB_CLASS):
                out(f"{job.get('JobID'):>6}  {_state(job):<10}  {job.get('PercentComplete'):>3}%  "
                    f"{job.get('DomainGroup')}  {job.get('Name')}")  # fmt: skip
        return EXIT_OK
    if cmd.verb == "-cancel job":
        (job_id,) = cmd.need("-jobid")
        client.invoke("cancelJob", [Param("JobID", "uint32", _job_id(job_id))])
        out(f"Job {job_id} cancelled.")
        return EXIT_OK
    if cmd.verb in ("-add spare", "-remove spare"):
        enclosure, bay = cmd.need("-enclosurename", "-bayname")
        spare = cmd.verb == "-add spare"
        client.invoke(
            "setSpare",
            _params({"EnclosureName": ("string", enclosure), "BayName": ("string", bay),
                     "IsSpare": ("boolean", spare)}),
        )  # fmt: skip
        out(f"Enclosure {enclosure} bay {bay} is {'now' if spare else 'no longer'} a spare.")
        return EXIT_OK
    action = {"-startvcdmaint": "start", "-completevcdmaint": "complete",
              "-cancelvcdmaint": "cancel"}[cmd.verb]  # fmt: skip
    (group,) = cmd.need("-domaingroupname")
    client.invoke(
        "setMaintenance", _params({"DomainGroup": ("string", group), "Action": ("string", action)})
    )
    out(f"Maintenance of domain group {group}: {action}.")
    return EXIT_OK


@quiet_on_closed_stdout
def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        cmd = parse(args)
        if cmd.verb == "help":
            print(__doc__)
            return EXIT_OK
        url = cmd.values.get("-s")
        if url is not None and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise UsageError(f"-s needs an http:// or https:// URL, not {url!r}")
        client = CimClient(
            url=url,
            user=cmd.values.get("-u"),
            password=cmd.values.get("-p"),
            cafile=cmd.values.get("--cafile"),
            timeout=30.0,
        )
        return run(cmd, client, out)
    except UsageError as exc:
        print(f"vcemcli: {exc}\nUse 'vcemcli --help' to see the commands.", file=sys.stderr)
        return EXIT_USAGE
    except CimError as exc:
        print(f"vcemcli: {exc.description}", file=sys.stderr)
        return _EXIT_BY_CIM_STATUS.get(exc.code, EXIT_REFUSED)
    except AuthenticationFailed as exc:
        print(f"vcemcli: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except ClientError as exc:
        print(f"vcemcli: {exc}", file=sys.stderr)
        return EXIT_CONNECT


if __name__ == "__main__":
    sys.exit(main())
