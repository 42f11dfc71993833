"""icapmanage: the GiCAP Group Manager command, as a thin CIM client of gm-provider.

The verbs of HP's icapmanage(1M) that apply here (reference gicap-domain.md §2.3-2.4), each
one CIM operation (SPEC §4.5: "One way in"):

    icapmanage -s [-g group] [-b] [-v]        status (EnumerateInstances)
    icapmanage -x host                        seize rights (seizeRights)
    icapmanage -z host                        restore rights (restoreRights)
    icapmanage -Q [-n]                        take control (takeControl, Force)
    icapmanage -a -g group | -r -g group      add / remove a group (Create/DeleteInstance)
    icapmanage -a -m member:host[,host]... -g group
    icapmanage -r -m member
    icapmanage -u -m member -h [hostlist][!hostlist]

Texts verified in the reference are printed as HP printed them ("Member IT removed.",
"Group one removed.", "Member complex_abc added to group sd2."); the others are ours (§6
lists them as unknown). Errors go to stderr as "ERROR: <description>" (HP's prefix, §6).

Connection: by default the local Unix socket (no password: the server knows the local user);
`--url http://host:5988 --user U --password P` (or GM_PASSWORD) reaches a remote manager.
`-h` is the host list of `-u`, as in HP's synopsis, so the connection options are long ones.

Exit status [I, §6: undocumented by HP]: 0 success, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from cli._client import CimClient, CimError, ClientError, Param, keys
from cli._pipes import quiet_on_closed_stdout

__all__ = ["main"]

PROGRAM = "icapmanage"
_NOT_HERE = {
    "C": "applying GiCAP codewords",
    "i": "installing grouping rules",
    "R": "reporting hardware grouping rules",
    "T": "testing hardware compatibility",
    "t": "transferring the database (the store is shared by both managers)",
    "S": "designating a standby (configure the second gm-provider node instead)",
    "I": "-I",
    "P": "-P",
}


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    not_here = ", ".join(f"-{flag}" for flag in _NOT_HERE)
    p = argparse.ArgumentParser(
        prog=PROGRAM,
        add_help=False,
        description=__doc__,
        epilog=f"HP's {not_here} are recognised and refused (exit 2) with the reason.",
    )
    p.add_argument("-s", action="store_true", help="show group status")
    p.add_argument("-b", action="store_true", help="brief status: no member section")
    p.add_argument("-v", action="store_true", help="verbose status")
    p.add_argument("-x", metavar="host", help="seize usage rights from the nPar of host")
    p.add_argument("-z", metavar="host", help="restore seized usage rights to the nPar of host")
    p.add_argument("-Q", action="store_true", help="make this Group Manager the active one")
    p.add_argument("-n", action="store_true", help="with -Q: do not prompt (always true here)")
    p.add_argument("-a", action="store_true", help="add a group or member")
    p.add_argument("-r", action="store_true", help="remove a group or member")
    p.add_argument("-u", action="store_true", help="update a member's host list")
    p.add_argument("-g", metavar="group")
    p.add_argument("-m", metavar="member[:hostlist]")
    p.add_argument("-h", metavar="hostlist", dest="hostlist")
    for flag in _NOT_HERE:
        p.add_argument(
            f"-{flag}", nargs="?", const="", dest=f"unsupported_{flag}", help=argparse.SUPPRESS
        )
    p.add_argument("--url", help="http(s)://host:port of a remote Group Manager")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--help", action="help", help="show this help")
    return p


def _duration(minutes: int) -> str:
    days, rest = divmod(max(0, minutes), 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days} days, {hours} hours, {mins} minutes"


def _when(value: Any) -> str:
    """A CIM datetime (yyyymmddhhmmss.mmmmmmsutc) as 'yyyy-mm-dd hh:mm:ss UTC'."""
    text = str(value)
    m = re.match(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})", text)
    if m is None:
        return text
    y, mo, d, h, mi, s = m.groups()
    return f"{y}-{mo}-{d} {h}:{mi}:{s} UTC"


def _status(client: CimClient, group: str | None, brief: bool, verbose: bool) -> list[str]:
    groups = client.enumerate_instances("GM_CapacityGroup")
    if group is not None:
        groups = [g for g in groups if g["Name"] == group]
        if not groups:
            raise CimError(6, f"Group {group} does not exist.")
    if not groups:
        return ["No groups are defined."]
    members = {m["Name"]: m for m in client.enumerate_instances("GM_GroupMember")}
    seizures = client.enumerate_instances("GM_RightsSeizure") if verbose else []
    lines: list[str] = []
    unreachable: list[str] = []
    for g in groups:
        lines += _group_lines(g)
        if verbose:
            lines += [
                "",
                "  Information Displayed for the Group Manager",
                f"    Core usage rights held by the Group Manager: {g['AvailableCoreRights']}",
            ]
        for name in g.get("Members") or []:
            m = members.get(name)
            if m is None:
                continue
            if m.get("Reachable") is False:
                unreachable += m.get("Hosts") or []
            if not brief:
                lines += _member_lines(m, [s for s in seizures if s["Member"] == name], verbose)
        lines.append("")
    if unreachable:
        lines.append("Note: the following hosts could not be contacted at the last check:")
        lines += [f"  {h}" for h in unreachable]
    return lines


def _group_lines(g: dict[str, Any]) -> list[str]:
    compliance = (
        "in compliance" if g["InCompliance"] else f"OUT OF COMPLIANCE: {g['ComplianceDetail']}"
    )
    lines = [
        f"Group {g['Name']}",
        "-" * (6 + len(g["Name"])),
        f"  Description: {g.get('Description') or ''}",
        f"  Compliance: {compliance}",
        f"  Sharing rights in use: {g['SharingRightsInUse']} of {g['SharingRights']}",
        f"  Cores without usage rights (this group): {g['SharedCoreRights']}",
        f"  Free core usage rights: {g['AvailableCoreRights']}",
        f"  Temporary capacity available: {_duration(g['TemporaryCapacityBalance'])}",
        f"  Number of cores using temporary capacity: {g['CoresUsingTemporaryCapacity']}",
    ]
    if g.get("TemporaryCapacityOverdraft"):
        lines.append(
            f"  Temporary capacity overdraft: {_duration(g['TemporaryCapacityOverdraft'])}"
        )
    if g.get("SeizedCoreRights"):
        lines.append(f"  Seized core usage rights: {g['SeizedCoreRights']}")
    if g.get("SeizedRightsExpiration"):
        lines.append(
            f"  Expiration of seized core usage rights: {_when(g['SeizedRightsExpiration'])}"
        )
    return lines


def _member_lines(m: dict[str, Any], seizures: list[dict[str, Any]], verbose: bool) -> list[str]:
    state = "scavenged (no partition answers)" if m.get("Scavenged") else ""
    lines = [
        "",
        f"  Member {m['Name']} (complex {m.get('Complex')}) {state}".rstrip(),
        f"    Hosts: {', '.join(m.get('Hosts') or [])}",
        "    Resource summary:",
        f"      Cores: {m['TotalCores']}, active {m['ActiveCores']}, intended {m['IntendedCores']}",
        f"      Core usage rights: {m['UsageRights']}",
        f"      Cores without usage rights: {m['TotalCores'] - m['PurchasedRights']}",
        f"      Temporary capacity balance: {_duration(m['TemporaryCapacityBalance'])}",
        f"      Number of cores using temporary capacity: {m['CoresUsingTemporaryCapacity']}",
    ]
    if m.get("SeizedCores"):
        lines.append(f"      Seized core usage rights: {m['SeizedCores']}")
    if verbose:
        lines += [
            f"      Borrowed core usage rights: {m['BorrowedRights']}",
            f"      Loaned core usage rights: {m['LoanedRights']}",
        ]
        lines += [f"      Partition {p}" for p in m.get("Partitions") or []]
        for s in seizures:
            if s["State"] not in ("pending", "loan", "permanent"):
                continue
            if s["Partition"] == "(unassigned)":
                lines.append(f"      Unassigned core usage rights seized: {s['SeizedCores']}")
            else:
                lines.append(
                    f"      Core usage rights seized from npar {s['Partition']}: "
                    f"{s['SeizedCores']} ({s['State']})"
                )
            if s.get("Expiration") and s["State"] == "pending":
                lines.append(f"      Expiration: {_when(s['Expiration'])}")
    return lines


def _split_member(value: str) -> tuple[str, list[str]]:
    name, _, hosts = value.partition(":")
    return name, [h for h in hosts.split(",") if h]


def _run(args: argparse.Namespace, client: CimClient) -> list[str]:
    chosen = [
        f for f in ("s", "x", "z", "Q", "a", "r", "u") if getattr(args, f) not in (None, False)
    ]
    if len(chosen) != 1:
        raise UsageError("give exactly one of -s, -x, -z, -Q, -a, -r, -u")
    for verb in ("x", "z"):
        if getattr(args, verb) is not None and not getattr(args, verb).strip():
            raise UsageError(f"-{verb} needs a host name (the host of the hard partition)")
    verb = chosen[0]
    if verb == "s":
        return _status(client, args.g, args.b, args.v and not args.b)
    if verb == "x":
        _, out = client.invoke("seizeRights", [Param("HostName", "string", args.x)])
        lines = [
            f"{out.get('SeizedCores', 0)} core usage rights were seized from the hard "
            f"partition of {args.x}."
        ]
        if out.get("Deferred"):
            lines.append(
                "No partition of the member answers: the seized rights are a loan that "
                f"expires {_when(out.get('Expiration'))} unless the member reconnects."
            )
        if out.get("Detail"):  # permanent or not, what is left, the 12-hour rule
            lines.append(str(out["Detail"]))
        return lines
    if verb == "z":
        _, out = client.invoke("restoreRights", [Param("HostName", "string", args.z)])
        lines = [
            f"{out.get('RestoredCores', 0)} core usage rights were restored to the hard "
            f"partition of {args.z}."
        ]
        if out.get("Detail"):  # fewer came back than were seized: why
            lines.append(str(out["Detail"]))
        return lines
    if verb == "Q":
        # HP's -Q makes the standby active whatever the old active thinks (§1.4): Force. On
        # the active it stays active (its lease renewed) and succeeds: cluster start scripts
        # run `icapmanage -Q -n` on whichever node they start.
        _, role = client.invoke("getRole", [])
        _, out = client.invoke("takeControl", [Param("Force", "boolean", True)])
        if role.get("Role") == "active" and role.get("Epoch") == out.get("Epoch"):
            return [
                f"This system is already the active Group Manager (epoch {out.get('Epoch')}); "
                "it stays active."
            ]
        return [f"This system is now the active Group Manager (epoch {out.get('Epoch')})."]
    return _group_or_member(verb, args, client)


def _group_or_member(verb: str, args: argparse.Namespace, client: CimClient) -> list[str]:
    if args.m is not None:
        name, hosts = _split_member(args.m)
        if verb == "a":
            if not hosts or args.g is None:
                raise UsageError("-a -m needs member:host[,host]... and -g group")
            client.create_instance(
                "GM_GroupMember",
                [
                    Param("Name", "string", name),
                    Param("CapacityGroup", "string", args.g),
                    Param("Hosts", "string", hosts),
                ],
            )
            return [f"Member {name} added to group {args.g}."]
        if verb == "r":
            client.delete_instance("GM_GroupMember", keys(Name=name))
            return [f"Member {name} removed."]
        if args.hostlist is None:
            raise UsageError("-u -m member needs -h [hostlist][!hostlist]")
        add_text, _, remove_text = args.hostlist.partition("!")
        add = [h for h in add_text.split(",") if h]
        remove = {h.lower() for h in remove_text.split(",") if h}
        current = client.get_instance("GM_GroupMember", keys(Name=name)).get("Hosts") or []
        # §2.4: "removals processed before additions, so host!host removes and re-adds".
        wanted = [h for h in current if h.lower() not in remove]
        wanted += [h for h in add if h.lower() not in {w.lower() for w in wanted}]
        client.modify_instance(
            "GM_GroupMember", keys(Name=name), [Param("Hosts", "string", wanted)]
        )
        return [f"Member {name} updated."]
    if args.g is None or verb == "u":
        raise UsageError("-a/-r need -g group or -m member")
    if verb == "a":
        client.create_instance("GM_CapacityGroup", [Param("Name", "string", args.g)])
        return [f"Group {args.g} created."]
    client.delete_instance("GM_CapacityGroup", keys(Name=args.g))
    return [f"Group {args.g} removed."]


def _description(exc: CimError) -> str:
    # The server prefixes the status name as OpenPegasus does; the command shows the text.
    return re.sub(r"^CIM_ERR_[A-Z_]+: ?", "", exc.description)


@quiet_on_closed_stdout
def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    for flag, what in _NOT_HERE.items():
        if getattr(args, f"unsupported_{flag}") is not None:
            print(f"ERROR: -{flag} ({what}) is not supported by gm-provider.", file=sys.stderr)
            return 2
    password = args.password or os.environ.get("GM_PASSWORD")
    client = CimClient(args.url, args.user, password)
    try:
        lines = _run(args, client)
    except UsageError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        parser.print_usage(sys.stderr)
        return 2
    except CimError as exc:
        print("icapmanage command failed.", file=sys.stderr)
        print(f"ERROR: {_description(exc)}".rstrip("\n"), file=sys.stderr)
        return 1
    except ClientError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
