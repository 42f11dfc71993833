"""Probes, the cron entry and the inventory's error lines, without a server."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from provider.config import load_config
from provider.drivers.cron import CronSettings, ScavengerCron
from provider.drivers.probe import StaticProber, TcpProber, probe_hosts
from provider.errors import ConfigError
from provider.gicap.inventory import parse_capacity_inventory
from provider.gicap.service import gicap_settings


def test_probes_run_concurrently_under_one_timeout() -> None:
    prober = StaticProber(default_up=False, table={"up.example.com": True}, simulate_timeout=True)
    hosts = ["up.example.com"] + [f"dead{i}.example.com" for i in range(500)]
    started = time.monotonic()
    answered = asyncio.run(probe_hosts(prober, hosts, 0.3))
    elapsed = time.monotonic() - started
    assert answered["up.example.com"] is True
    assert sum(answered.values()) == 1
    assert elapsed < 1.5, elapsed  # about one timeout, not 500 of them


def test_tcp_probe_answers_only_when_a_connection_is_accepted() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        answered = asyncio.run(
            probe_hosts(TcpProber(5989), [f"127.0.0.1:{port}", f"127.0.0.1:{closed_port}"], 1.0)
        )
    finally:
        listener.close()
    assert answered == {f"127.0.0.1:{port}": True, f"127.0.0.1:{closed_port}": False}


def _cron_settings(tab: Path, user: str | None = None) -> CronSettings:
    return CronSettings(
        target=str(tab),
        wbemexec=Path("/venv/bin/wbemexec"),
        request_file=Path("/etc/requests/GiCAP.checkScavengedMember.xml"),
        user=user,
    )


def test_cron_entry_is_idempotent_and_keeps_other_lines(tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("0 3 * * * /usr/bin/backup # someone else's\n")
    settings = _cron_settings(tab)
    cron = ScavengerCron(settings, "gm1")
    assert cron.sync(True) == "installed"
    assert cron.sync(True) == "unchanged"
    lines = tab.read_text().splitlines()
    assert lines[0] == "0 3 * * * /usr/bin/backup # someone else's"
    assert lines[1] == (
        "*/30 * * * * /venv/bin/wbemexec /etc/requests/GiCAP.checkScavengedMember.xml"
        " # gm-provider checkScavengedMember node=gm1"
    )
    other = ScavengerCron(settings, "gm2")
    assert other.sync(False) == "unchanged" and cron.installed()
    assert cron.sync(False) == "removed"
    assert cron.sync(False) == "unchanged"
    assert tab.read_text().splitlines() == ["0 3 * * * /usr/bin/backup # someone else's"]


def test_no_entry_wanted_creates_no_crontab_file(tmp_path: Path) -> None:
    """A standby, or an active with nothing pending, makes no file (nor its directory) only
    to say there is no entry: a path that cannot be made is then no alarm at every start."""
    tab = tmp_path / "cron.d" / "crontab"
    assert ScavengerCron(_cron_settings(tab), "gm1").sync(False) == "unchanged"
    assert not tab.parent.exists()


def test_a_system_crontab_file_gets_the_user_field(tmp_path: Path) -> None:
    """/etc/cron.d files name the user a command runs as; a line without it never runs."""
    tab = tmp_path / "gm-provider"
    tab.write_text("SHELL=/bin/sh\n0 3 * * * root /usr/bin/backup\n")
    settings = _cron_settings(tab, user="root")
    cron = ScavengerCron(settings, "gm1")
    assert cron.sync(True) == "installed"
    assert cron.sync(True) == "unchanged"
    lines = tab.read_text().splitlines()
    assert lines[:2] == ["SHELL=/bin/sh", "0 3 * * * root /usr/bin/backup"]
    assert lines[2] == (
        "*/30 * * * * root /venv/bin/wbemexec /etc/requests/GiCAP.checkScavengedMember.xml"
        " # gm-provider checkScavengedMember node=gm1"
    )
    assert cron.sync(False) == "removed"
    assert tab.read_text().splitlines() == ["SHELL=/bin/sh", "0 3 * * * root /usr/bin/backup"]


@pytest.mark.parametrize(
    ("gicap", "key", "words"),
    [
        ('crontab = "/etc/cron.d/gm-provider"', "crontab", "Set gicap.crontab_user"),
        ('crontab = "user"\ncrontab_user = "root"', "crontab_user", "needs gicap.crontab ="),
        ('crontab = "/tmp/x"\ncrontab_user = "a b"', "crontab_user", "must be a user name"),
    ],
)
def test_crontab_settings_that_cron_could_not_run_are_refused(
    tmp_path: Path, gicap: str, key: str, words: str
) -> None:
    path = tmp_path / "etc" / "gm-provider.toml"
    path.parent.mkdir()
    path.write_text(f"[gicap]\n{gicap}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        gicap_settings(load_config(path), tmp_path, tmp_path, None)
    assert words in err.value.description and str(path) in err.value.description
    lines = path.read_text().splitlines()
    line = int(err.value.description.split(":")[1])
    assert lines[line - 1].startswith(key), (lines, line)


def test_a_cron_d_file_with_its_user_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "gm-provider.toml"
    path.parent.mkdir()
    path.write_text(
        '[gicap]\ncrontab = "/etc/cron.d/gm-provider"\ncrontab_user = "root"\n', encoding="utf-8"
    )
    settings = gicap_settings(load_config(path), tmp_path, tmp_path, None)
    assert settings.cron.user == "root" and settings.cron.target == "/etc/cron.d/gm-provider"


GOOD = """\
[gicap]
sharing_rights = 64

[gicap.groups.g1]

[gicap.complexes.a]
usage_rights = 4
group = "g1"

[gicap.complexes.a.npars.npar0]
hosts = ["a0.example.com"]
cells = [{ name = "c0", cores = 4 }]
intended_active = 2
"""


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (GOOD.replace("= 2", "= 9"), 13, "intended_active must be between"),
        (GOOD.replace('group = "g1"', 'group = "nope"'), 8, "no group 'nope'"),
        (GOOD.replace("[gicap.groups.g1]", '[gicap.groups."bad/name"]'), 4, "contains '/'"),
        (GOOD.replace("usage_rights = 4", "usage_rights = -1"), 7, "whole number >= 0"),
        (GOOD.replace("sharing_rights = 64", "sharing_rights = 64\nbogus = 1"), 3, "unknown key"),
    ],
)
def test_inventory_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_capacity_inventory(text, Path("inv.toml"))
    assert err.value.description.startswith(f"inv.toml:{line}: ")
    assert words in err.value.description


def test_names_longer_than_127_characters_are_refused() -> None:
    text = (
        GOOD.replace("intended_active = 9", "intended_active = 2")
        .replace("[gicap.groups.g1]", f"[gicap.groups.{'g' * 128}]")
        .replace('group = "g1"', f'group = "{"g" * 128}"')
    )
    with pytest.raises(ConfigError) as err:
        parse_capacity_inventory(text, Path("inv.toml"))
    assert "at most 127" in err.value.description
