"""Roles with per-domain-group scope: the users file's `groups=` field, the authorizer's
rule (a group-bound role acts only on its groups; reads stay global; no group fails closed)
and `gm-provider user --groups`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provider.errors import AccessDenied, ConfigError
from provider.http.auth import (
    FileAuthenticator,
    UserRecord,
    format_users_line,
    hash_password,
    load_users_file,
)
from provider.http.messages import Principal, Via
from provider.privileges import TableAuthorizer
from tests.harness import ROOT


def _principal(role: str, groups: tuple[str, ...] | None = None) -> Principal:
    return Principal(
        user="webops", via=Via.HTTP, peer="127.0.0.1:1", role=role, domain_groups=groups
    )


def test_scoped_operator_acts_in_its_groups_only() -> None:
    authorizer = TableAuthorizer({"manageEventRules": "operator"})
    webops = _principal("operator", ("dg-web", "dg-db"))
    authorizer.check(webops, "manageEventRules", "dg-web")
    authorizer.check(webops, "manageEventRules", "dg-db")
    with pytest.raises(AccessDenied) as err:
        authorizer.check(webops, "manageEventRules", "dg-app")
    text = err.value.description
    assert "dg-app" in text and "operator role" in text and "dg-web, dg-db" in text


def test_scoped_role_without_a_group_fails_closed_but_reads_stay_global() -> None:
    authorizer = TableAuthorizer({"moveProfile": "limited-operator"})
    webops = _principal("group-administrator", ("dg-web",))
    with pytest.raises(AccessDenied, match="for every domain group"):
        authorizer.check(webops, "moveProfile", None)
    authorizer.check(webops, "getRole", None)  # read-only actions: no scope needed
    authorizer.check(webops, "getRole", "dg-other")


def test_scope_never_raises_a_role() -> None:
    authorizer = TableAuthorizer()
    limited = _principal("limited-operator", ("dg-web",))
    with pytest.raises(AccessDenied, match="needs the group-administrator role"):
        authorizer.check(limited, "setMaintenance", "dg-web")


def test_unscoped_principal_is_unchanged_by_scope() -> None:
    authorizer = TableAuthorizer()
    operator = _principal("operator")
    authorizer.check(operator, "setSpare", "dg-anything")
    authorizer.check(operator, "setSpare", None)


def test_users_file_groups_field_round_trips_and_old_lines_still_load(tmp_path: Path) -> None:
    hashed = hash_password("pw", n=2**4, r=1)
    scoped = UserRecord("webops", "operator", hashed, ("dg-web", "dg-db"))
    line = format_users_line(scoped)
    assert line.endswith(":groups=dg-web,dg-db")
    path = tmp_path / "users"
    path.write_text(f"admin:administrator:{hashed}\n{line}\n", encoding="utf-8")
    users = load_users_file(path)
    assert users["admin"].domain_groups is None
    assert users["webops"] == scoped
    principal = FileAuthenticator(path).verify_basic("webops", "pw")
    assert principal is not None and principal.domain_groups == ("dg-web", "dg-db")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (":scope=dg-web", "come groups=dg1,dg2 and then local, each at most once"),
        (":groups=", "none empty"),
        (":groups=dg-web,,dg-db", "none empty"),
        (":groups=dg-web,dg-web", "listed twice"),
        (":groups=a:b", "not 'b'"),
        (":local:local", "not 'local'"),
        (":local:groups=dg-web", "not 'groups=dg-web'"),
        (":groups=a:local:x", "expected name:role:scrypt-hash[:groups=...][:local]"),
    ],
)
def test_users_file_bad_groups_name_the_line(tmp_path: Path, extra: str, message: str) -> None:
    hashed = hash_password("pw", n=2**4, r=1)
    path = tmp_path / "users"
    path.write_text(f"# users\nwebops:operator:{hashed}{extra}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_users_file(path)
    assert f"{path}:2:" in err.value.description and message in err.value.description


def _gm(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provider", "--config", str(config), "user", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _user_config(tmp_path: Path) -> tuple[Path, Path]:
    """A configuration whose users file is `tmp_path/users`: (config path, users path)."""
    config = tmp_path / "etc" / "gm-provider.toml"
    config.parent.mkdir()
    users = tmp_path / "users"
    config.write_text(
        f'[node]\nstate_dir = "{tmp_path / "state"}"\n[security]\nusers_file = "{users}"\n',
        encoding="utf-8",
    )
    return config, users


def test_user_cli_binds_group_roles_and_refuses_groups_for_global_roles(tmp_path: Path) -> None:
    config, users = _user_config(tmp_path)
    added = _gm(
        config,
        "add",
        "webops",
        "--role",
        "operator",
        "--groups",
        "dg-web,dg-db",
        "--password",
        "pw",
    )
    assert added.returncode == 0 and "warning" not in added.stderr, added.stderr
    # A group the inventory does not have: added, with a warning naming the known groups.
    typo = _gm(config, "add", "dbops", "--role", "operator", "--groups", "DG-DB", "--password", "p")
    assert typo.returncode == 0
    assert "warning: domain group DG-DB is not in the inventory" in typo.stderr
    assert "dg-db" in typo.stderr
    assert _gm(config, "del", "dbops").returncode == 0
    refused = _gm(
        config, "add", "boss", "--role", "administrator", "--groups", "dg-web", "--password", "pw"
    )
    assert refused.returncode == 2 and "holds for every domain group" in refused.stderr
    assert _gm(config, "passwd", "webops", "--password", "pw2").returncode == 0
    assert load_users_file(users)["webops"].domain_groups == ("dg-web", "dg-db")
    assert _gm(config, "role", "webops", "limited-operator", "--groups", "dg-db").returncode == 0
    assert load_users_file(users)["webops"].domain_groups == ("dg-db",)
    listed = _gm(config, "list")
    assert listed.stdout.splitlines() == ["webops\tlimited-operator\tdg-db"]
    # A new role keeps the user's groups (it widened them to every group without a word);
    # widening is said with --all-groups, and each change says the scope it left.
    kept = _gm(config, "role", "webops", "operator")
    assert kept.returncode == 0 and kept.stdout == "gm-provider: webops is now operator for dg-db\n"
    assert load_users_file(users)["webops"].domain_groups == ("dg-db",)
    widened = _gm(config, "role", "webops", "operator", "--all-groups")
    assert widened.stdout == "gm-provider: webops is now operator for every domain group\n"
    assert load_users_file(users)["webops"].domain_groups is None
    assert _gm(config, "list").stdout.splitlines() == ["webops\toperator\tall groups"]
    both = _gm(config, "role", "webops", "operator", "--groups", "dg-db", "--all-groups")
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad:name", "contains ':'"),
        ("", "cannot be empty"),
        ("two words", "white space"),
        ("tab\tname", "white space"),
        ("#admin", "marks a comment"),
    ],
)
def test_user_add_refuses_a_name_the_file_cannot_hold(
    tmp_path: Path, name: str, message: str
) -> None:
    """A name with ':' once wrote a line no later command could read, and the running
    server then refused every client."""
    config, users = _user_config(tmp_path)
    assert (
        _gm(config, "add", "admin", "--role", "administrator", "--password", "pw").returncode == 0
    )
    before = users.read_text(encoding="utf-8")
    refused = _gm(config, "add", name, "--role", "read-only", "--password", "pw")
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert users.read_text(encoding="utf-8") == before
    assert _gm(config, "list").stdout.splitlines() == ["admin\tadministrator\tall groups"]


def test_user_cli_local_accounts(tmp_path: Path) -> None:
    """`user add --local`: the role holds for the local account of that name on the socket;
    without a password given it is for the socket only (no prompt: cron's installer has no
    terminal). passwd and role keep the flag; list shows it."""
    config, users = _user_config(tmp_path)
    added = _gm(config, "add", "gicap", "--role", "capacity-administrator", "--local")
    assert added.returncode == 0, added.stderr
    assert _gm(config, "add", "ops", "--role", "operator", "--password", "pw").returncode == 0
    lines = {line.split(":")[0]: line for line in users.read_text().splitlines()}
    assert lines["gicap"].endswith(":local") and not lines["ops"].endswith(":local")
    assert _gm(config, "passwd", "gicap", "--password", "new").returncode == 0
    assert _gm(config, "role", "gicap", "administrator").returncode == 0
    record = load_users_file(users)["gicap"]
    assert (record.role, record.local) == ("administrator", True)
    listed = _gm(config, "list").stdout.splitlines()
    assert "gicap\tadministrator\tall groups\tlocal" in listed
    assert "ops\toperator\tall groups" in listed
    # An existing account is given (or loses) the local role without losing its password.
    before = load_users_file(users)["ops"].password_hash
    assert _gm(config, "role", "ops", "operator", "--local").returncode == 0
    assert load_users_file(users)["ops"].local is True
    assert load_users_file(users)["ops"].password_hash == before
    assert _gm(config, "role", "ops", "operator", "--no-local").returncode == 0
    assert load_users_file(users)["ops"].local is False
    # Without --local a password is still asked for (none given, no terminal: refused).
    refused = _gm(config, "add", "nopw", "--role", "operator")
    assert refused.returncode != 0 and "no password given" in refused.stderr
