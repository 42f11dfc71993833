"""The rules file is read again when it changes, without a restart (which would hand the
active role to the standby); an edit that does not parse leaves the rules in force."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from provider.errors import ConfigError
from provider.events.rules import RulesFile
from tests.harness import configure

ONE = '[rule.first]\nmode = "alert"\nclasses = ["*AlertIndication"]\n'
TWO = ONE + '\n[rule.second]\nmode = "alert"\nclasses = ["HP_*"]\n'
BROKEN = ONE + '\n[rule.second]\nmode = "automatic"\n'


def _write(path: Path, text: str) -> None:
    """Write and move the modification time on, as a later edit would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def _names(rules: RulesFile) -> list[str]:
    return [r.name for r in rules.current().rules]


def test_an_edit_takes_effect_at_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "events.toml"
    _write(path, ONE)
    rules = RulesFile(path)
    first = rules.current()
    assert _names(rules) == ["first"]
    assert rules.current() is first  # unchanged: not parsed again
    _write(path, TWO)
    assert _names(rules) == ["first", "second"]


def test_a_broken_edit_keeps_the_rules_in_force_and_says_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.toml"
    _write(path, ONE)
    rules = RulesFile(path)
    _write(path, BROKEN)
    with caplog.at_level(logging.ERROR, logger="gm.events"):
        assert _names(rules) == ["first"]
        assert _names(rules) == ["first"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    assert f'{path}:6: rule second: mode must be "alert" or "failover".' in errors[0]
    assert "the 1 event rules read before stay in force" in errors[0]
    assert rules.refusal is not None and "mode must be" in rules.refusal
    _write(path, TWO)  # fixed
    assert _names(rules) == ["first", "second"] and rules.refusal is None


def test_a_configured_file_that_disappears_keeps_its_rules(tmp_path: Path) -> None:
    path = tmp_path / "events.toml"
    _write(path, TWO)
    rules = RulesFile(path)
    path.unlink()
    assert _names(rules) == ["first", "second"]
    assert rules.refusal is not None and "is gone" in rules.refusal
    _write(path, ONE)
    assert _names(rules) == ["first"]


def test_an_optional_file_may_appear_later(tmp_path: Path) -> None:
    path = tmp_path / "events.toml"
    rules = RulesFile(path, optional=True)
    assert _names(rules) == []
    _write(path, ONE)
    assert _names(rules) == ["first"]


def test_a_broken_file_at_start_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.toml"
    _write(path, BROKEN)
    with pytest.raises(ConfigError, match="mode must be"):
        RulesFile(path)


def test_a_running_server_reads_the_edited_file(tmp_path: Path) -> None:
    """Through CIM: GM_EventRule shows the edit; a broken edit leaves it as it was and the
    server log says which line is wrong."""
    path = tmp_path / "events.toml"
    _write(path, ONE)
    gm = configure(tmp_path, config={"events": {"rules": str(path)}})
    gm.start()
    try:
        conn = gm.connection()

        def names() -> list[str]:
            return [r["Name"] for r in conn.EnumerateInstances("GM_EventRule")]

        assert names() == ["first"]
        _write(path, TWO)
        assert names() == ["first", "second"]
        _write(path, BROKEN)
        assert names() == ["first", "second"]
        deadline = time.monotonic() + 10
        while "mode must be" not in gm.log and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"{path}:6: rule second: mode must be" in gm.log
    finally:
        gm.stop()
