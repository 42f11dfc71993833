"""`gm-provider`: initialise, serve, and manage users.

    gm-provider init [--config F] [--tls]     state directory, admin user, store, (certificate)
    gm-provider serve [--config F]            serve CIM-XML until SIGTERM/SIGINT
    gm-provider user add NAME --role ROLE [--groups DG1,DG2] [--local]
                                              add a user (password from --password or a prompt);
                                              --groups: the role holds in those domain groups only;
                                              --local: also for the local account NAME on the
                                              Unix socket (no password there; without one given,
                                              the account is for the socket only)
    gm-provider user passwd NAME              change a password
    gm-provider user role NAME ROLE [--groups DG1,DG2 | --all-groups] [--local | --no-local]
                                              change a role (its groups and `local` are kept
                                              unless given)
    gm-provider user del NAME                 remove a user
    gm-provider user list                     names, roles, groups, and "local"

Exit codes: 0 success, 1 a runtime failure (the message says what), 2 a usage or
configuration error (the message names the file and line).
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from pathlib import Path

from provider.config import Config, load_config
from provider.errors import ConfigError, GMError
from provider.http.auth import (
    UserRecord,
    check_user_name,
    format_users_line,
    hash_password,
    load_users_file,
    parse_domain_groups,
)
from provider.paths import default_config_path
from provider.privileges import GROUP_SCOPED_ROLES, parse_role

__all__ = ["main"]

ADMIN_PASSWORD_FILE = "admin.password"


def users_path(config: Config) -> Path:
    return config.security.users_file or (config.state_dir / "users")


def _write_users(path: Path, users: dict[str, UserRecord]) -> None:
    header = (
        "# gm-provider users: name:role:scrypt-hash[:groups=dg1,dg2][:local] "
        "(managed by `gm-provider user`)\n"
    )
    body = "".join(format_users_line(u) + "\n" for u in users.values())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + body, encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def init(config: Config, tls: bool) -> list[str]:
    """Idempotent first-run set-up; returns what it did, for the operator to read. The
    configuration is checked as `serve` checks it ([privileges] too), so the systemd unit's
    ExecStartPre fails where the service would."""
    from provider.privileges import authorizer_from_config

    authorizer_from_config(config)
    done: list[str] = []
    config.state_dir.mkdir(parents=True, exist_ok=True)
    if config.server.unix_socket is not None:
        config.server.unix_socket.parent.mkdir(parents=True, exist_ok=True)
    users = users_path(config)
    if not users.exists():
        users.parent.mkdir(parents=True, exist_ok=True)
        password = generated_password()
        _write_users(
            users, {"admin": UserRecord("admin", "administrator", hash_password(password))}
        )
        pw_file = config.state_dir / ADMIN_PASSWORD_FILE
        pw_file.write_text(password + "\n", encoding="utf-8")
        os.chmod(pw_file, 0o600)
        done.append(f"created user admin (administrator); its password is in {pw_file}")
    if tls:
        from provider.tlscert import make_self_signed

        cert = config.server.certificate or (config.state_dir / "tls" / "server.pem")
        key = config.server.private_key or (config.state_dir / "tls" / "server.key")
        if not cert.exists():
            make_self_signed(cert, key, config.node_name)
            port = config.server.https_port
            if config.server.certificate and config.server.private_key:
                done.append(f"created a self-signed certificate {cert} (key {key})")
            else:
                done.append(
                    f"created a self-signed certificate {cert} (key {key}); set "
                    f"server.certificate and server.private_key to serve HTTPS on {port}"
                )
    from provider.server import prepare_store

    done.extend(prepare_store(config))
    return done


def _user_command(config: Config, args: argparse.Namespace) -> int:
    path = users_path(config)
    users = load_users_file(path) if path.exists() else {}
    if args.action == "list":
        for record in users.values():
            scope = "all groups" if record.domain_groups is None else ",".join(record.domain_groups)
            tag = "\tlocal" if record.local else ""
            print(f"{record.name}\t{record.role}\t{scope}{tag}")
        return 0
    name = args.name
    if args.action == "del":
        if users.pop(name, None) is None:
            print(f"gm-provider: no user {name!r} in {path}", file=sys.stderr)
            return 1
        _write_users(path, users)
        return 0
    if args.action == "role":
        if name not in users:
            print(f"gm-provider: no user {name!r} in {path}", file=sys.stderr)
            return 1
        if args.groups is not None and args.all_groups:
            raise ValueError("give --groups or --all-groups, not both")
        groups = _role_groups(args.role, args.groups)
        keep = args.groups is None and not args.all_groups
        if keep and parse_role(args.role) in GROUP_SCOPED_ROLES:
            # A new role keeps the user's domain groups: a role change silently made a
            # limited-operator of dg-web an operator of every group.
            groups = users[name].domain_groups
        _warn_unknown_groups(config, groups)
        local = users[name].local if args.local is None else args.local
        users[name] = UserRecord(name, args.role, users[name].password_hash, groups, local)
        _write_users(path, users)
        scope = ", ".join(groups) if groups else "every domain group"
        print(f"gm-provider: {name} is now {args.role} for {scope}")
        return 0
    if args.action == "add":
        check_user_name(name)  # ValueError: a usage error, before anything is written
    if args.action == "add" and name in users:
        print(
            f"gm-provider: user {name!r} exists; use `user passwd` or `user role`", file=sys.stderr
        )
        return 1
    if args.action == "passwd" and name not in users:
        print(f"gm-provider: no user {name!r} in {path}", file=sys.stderr)
        return 1
    password = args.password or os.environ.get("GM_PASSWORD")
    if password is None and args.action == "add" and args.local:
        # A local account (a cron job's, say) needs no password on the socket: one nobody
        # knows keeps it off HTTP.
        password = secrets.token_urlsafe(24)
    password = password or _prompt_password()
    if args.action == "add":
        role, groups = args.role, _role_groups(args.role, args.groups)
        _warn_unknown_groups(config, groups)
        local = bool(args.local)
    else:
        role, groups, local = users[name].role, users[name].domain_groups, users[name].local
    users[name] = UserRecord(name, role, hash_password(password), groups, local)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_users(path, users)
    return 0


def _warn_unknown_groups(config: Config, groups: tuple[str, ...] | None) -> None:
    """Say so when a bound group is not in the inventory (a typo, or a wrong case): the role
    would hold nowhere. A warning only: the inventory may gain the group later."""
    if not groups:
        return
    from provider.server import inventory_path
    from provider.vcem.inventory import load_inventory

    try:
        where = inventory_path(config)
        known = [g.name for g in load_inventory(where).groups]
    except (GMError, OSError):
        return  # no readable inventory: nothing to compare with
    unknown = [g for g in groups if g not in known]
    if unknown:
        print(
            f"gm-provider: warning: domain group {', '.join(unknown)} is not in the inventory "
            f"{where} (its groups: {', '.join(known) or 'none'}); the role holds there only "
            "once such a group exists.",
            file=sys.stderr,
        )


def _role_groups(role: str, groups: str | None) -> tuple[str, ...] | None:
    """Check a role name and its optional `--groups` list (ValueError: a usage error)."""
    parsed = parse_role(role)
    if groups is None:
        return None
    if parsed not in GROUP_SCOPED_ROLES:
        raise ValueError(
            f"the {role} role holds for every domain group; --groups applies to "
            "limited-operator, operator and group-administrator"
        )
    return parse_domain_groups(groups)


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise ConfigError("no password given: use --password, GM_PASSWORD, or a terminal")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Again: "):
        raise ConfigError("the passwords differ")
    if not first:
        raise ConfigError("the password is empty")
    return first


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gm-provider", description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="configuration file")
    sub = parser.add_subparsers(dest="command", required=True)
    p_init = sub.add_parser("init", help="first-run set-up (idempotent)")
    p_init.add_argument("--tls", action="store_true", help="also make a self-signed certificate")
    p_init.add_argument("--config", type=Path, default=None, dest="sub_config")
    p_serve = sub.add_parser("serve", help="serve CIM-XML")
    p_serve.add_argument("--config", type=Path, default=None, dest="sub_config")
    p_user = sub.add_parser("user", help="manage users")
    p_user.add_argument("--config", type=Path, default=None, dest="sub_config")
    users = p_user.add_subparsers(dest="action", required=True)
    add = users.add_parser("add")
    add.add_argument("name")
    add.add_argument("--role", required=True)
    add.add_argument("--groups", help="domain groups the role is held for (default: all)")
    add.add_argument("--password")
    add.add_argument(
        "--local",
        action="store_true",
        help="the role also holds for the local account NAME on the Unix socket",
    )
    pw = users.add_parser("passwd")
    pw.add_argument("name")
    pw.add_argument("--password")
    role = users.add_parser("role")
    role.add_argument("name")
    role.add_argument("role")
    role.add_argument(
        "--groups", help="domain groups the role is held for (default: the user's groups now)"
    )
    role.add_argument(
        "--all-groups", action="store_true", help="the role holds for every domain group"
    )
    role.add_argument(
        "--local",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the role also holds (or no longer) for the local account NAME on the socket",
    )
    delete = users.add_parser("del")
    delete.add_argument("name")
    users.add_parser("list")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = getattr(args, "sub_config", None) or args.config or default_config_path()
    try:
        config = load_config(path)
        if args.command == "init":
            for line in init(config, args.tls):
                print(f"gm-provider: {line}")
            return 0
        if args.command == "user":
            return _user_command(config, args)
        from provider.server import run

        return run(config)
    except ConfigError as exc:
        print(f"gm-provider: {exc.description}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"gm-provider: {exc}", file=sys.stderr)
        return 2
    except GMError as exc:
        print(f"gm-provider: {exc.description}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def generated_password() -> str:
    """16 characters of letters, digits, "-" and "_" (96 bits), never starting with "-": the
    README's `wbemexec -w "$(cat var/admin.password)"` would read one as an option."""
    while True:
        password = secrets.token_urlsafe(12)
        if not password.startswith("-"):
            return password


if __name__ == "__main__":
    sys.exit(main())
