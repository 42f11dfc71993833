"""Configuration: defaults, and errors that name the file and the line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from cli.wbemexec import DEFAULT_TIMEOUT_MS
from provider.config import RolesConfig, load_config
from provider.errors import ConfigError
from provider.privileges import Role, authorizer_from_config
from provider.roles.manager import STEP_DOWN_WAIT
from provider.server import RepeatFilter, tune_interpreter

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, text: str) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    path = etc / "gm-provider.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_configuration_loads() -> None:
    config = load_config(ROOT / "etc" / "gm-provider.toml")
    assert config.node_name == "gm1"
    assert config.server.http_port == 5988 and config.server.require_auth
    assert config.store_url.startswith("sqlite:///") and config.store_url.endswith("/gm.db")
    assert config.roles.start_as == "active"


def test_the_switch_interval_is_read_and_applied_by_serve(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "")).server.switch_interval == 0.001
    config = load_config(_write(tmp_path, "[server]\nswitch_interval = 0.0005\n"))
    assert config.server.switch_interval == 0.0005
    before = sys.getswitchinterval()
    try:
        tune_interpreter(config)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)


def test_defaults_and_paths_relative_to_the_checkout(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, '[node]\nname = "n1"\nstate_dir = "var"\n'))
    assert config.state_dir == tmp_path / "var"
    assert config.store_url == f"sqlite:///{tmp_path}/var/gm.db"
    assert config.server.certificate is None
    assert config.roles.automatic_takeover is False


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[server]\nhttp_port = "x"\n', 2, "server.http_port must be a whole number"),
        ("[server]\n\nbogus = 1\n", 3, "unknown key 'bogus' in [server]"),
        ('[roles]\nstart_as = "leader"\n', 2, 'roles.start_as must be "active" or "standby"'),
        ('[store]\nurl = "mysql://x"\n', 2, "store.url must start with sqlite:/// or postgresql"),
        ('name = "x"\n', 1, "belongs in a [section]"),
        ("[server]\nhttp_port = 70000\n", 2, "port number"),
        ("[server]\nswitch_interval = 0\n", 2, "server.switch_interval must be between"),
        ("[server]\n\nswitch_interval = 1.5\n", 3, "server.switch_interval must be between"),
        ('[server]\nswitch_interval = "fast"\n', 2, "server.switch_interval must be"),
        ("[node]\n[securty]\nusers_file = 'u'\n", 2, "unknown section [securty]; the sections"),
        ("[bogus.sub]\nx = 1\n", 1, "unknown section [bogus]"),
        ("[roles]\nrenew_interval = 1\nlease_ttl = -5\n", 3, "roles.lease_ttl: ttl must be"),
        ("[roles]\nlease_ttl = 15\nrenew_interval = 6\n", 3, "roles.renew_interval: renew"),
        ("[roles]\nrenew_interval = 0\n", 2, "roles.renew_interval: renew_interval must be"),
        ("[roles]\n\nstep_down_wait = 0\n", 3, "roles.step_down_wait must be between 0 and"),
        ("[roles]\ndrain_timeout = 4000\n", 2, "roles.drain_timeout must be between 0 and"),
        ('[security]\n\nlocal_role = "operater"\n', 3, "unknown role 'operater'; roles are"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.description.startswith(f"{path}:{line}: ")
    assert words in err.value.description


def test_syntax_error_names_the_position(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in err.value.description and "line 1" in err.value.description


def test_domain_sections_get_line_precise_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "[simulator]\n\ndelay = -1\n")
    config = load_config(path)
    assert config.section("simulator") == {"delay": -1}
    assert config.error("simulator", "delay", "bad").description == f"{path}:3: bad"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[privileges]\nfailoverProfile = "superuser"\n', 2, "unknown role 'superuser'"),
        ('[privileges]\n\nfailoverprofil = "operator"\n', 3, "unknown action 'failoverprofil'"),
        ("[privileges]\nsetSpare = 3\n", 2, "must be a role name"),
        (
            '[privileges]\nsetSpare = "operator"\nSETSPARE = "administrator"\n',
            3,
            "setSpare is given twice",
        ),
    ],
)
def test_privileges_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    """A misspelt action once left its default in force without a word."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        authorizer_from_config(load_config(path))
    assert err.value.description.startswith(f"{path}:{line}: "), err.value.description
    assert words in err.value.description


def test_privileges_actions_match_without_regard_to_case(tmp_path: Path) -> None:
    path = _write(tmp_path, '[privileges]\nfailoverprofile = "limited-operator"\n')
    authorizer = authorizer_from_config(load_config(path))
    assert authorizer.required("failoverProfile") is Role.LIMITED_OPERATOR


def test_a_repeated_warning_is_said_once_a_minute_with_its_count() -> None:
    """A store outage once wrote the same warnings several times a second."""
    now = [0.0]
    repeats = RepeatFilter(window=60.0, clock=lambda: now[0])

    def passes(msg: str, level: int = logging.WARNING) -> str | None:
        record = logging.LogRecord("gm.jobs", level, __file__, 1, msg, None, None)
        return record.getMessage() if repeats.filter(record) else None

    assert passes("store down") == "store down"
    for second in range(1, 40):
        now[0] = second
        assert passes("store down") is None
    assert passes("another thing") == "another thing"
    assert passes("chatty", logging.INFO) == "chatty" and passes("chatty", logging.INFO)
    now[0] = 61.0
    assert passes("store down") == "store down (and 39 times more in the last 61 s)"
    now[0] = 62.0
    assert passes("store down") is None


def test_a_different_exception_under_the_same_message_is_logged() -> None:
    """Clients told "the server log has the details" found only the first traceback: every
    other internal error of the same operation within the minute was counted, not logged."""
    repeats = RepeatFilter(window=60.0, clock=lambda: 0.0)

    def logged(exc: Exception) -> bool:
        try:
            raise exc
        except Exception:
            info = sys.exc_info()
        record = logging.LogRecord(
            "gm.app", logging.ERROR, __file__, 1, "GetInstance failed unexpectedly", None, info
        )
        return repeats.filter(record)

    assert logged(ValueError("invalid literal for int() with base 10: '2'"))
    assert logged(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert not logged(OverflowError("Python int too large to convert to SQLite INTEGER"))


def test_the_section_of_the_configured_hardware_driver_is_known(tmp_path: Path) -> None:
    text = '[vcem]\ndriver = "redfish"\n[redfish]\nurl = "https://oa.example"\n'
    assert load_config(_write(tmp_path, text)).section("redfish") == {"url": "https://oa.example"}


def test_init_checks_the_privileges_as_serve_does(tmp_path: Path) -> None:
    """`init` (the systemd unit's ExecStartPre) said "store ready" for an unknown action in
    [privileges]; only `serve` refused it."""
    from provider.__main__ import main

    state = tmp_path / "state"
    path = _write(
        tmp_path,
        f'[node]\nstate_dir = "{state}"\n[store]\nurl = "sqlite:///{state}/gm.db"\n'
        '[privileges]\nfrobnicate = "operator"\n',
    )
    assert main(["--config", str(path), "init"]) == 2
    assert not (state / "users").exists()


def test_a_generated_password_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wbemexec -w "$(cat var/admin.password)"` read "-B3r4..." as an option."""
    import provider.__main__ as main

    drawn = iter(["-B3r4JqHjjOUDfiz", "-x", "B3r4JqHjjOUDfiz"])
    monkeypatch.setattr(main.secrets, "token_urlsafe", lambda n: next(drawn))
    assert main.generated_password() == "B3r4JqHjjOUDfiz"


def test_step_down_answers_within_a_cim_clients_default_wait() -> None:
    """stepDown waits for a device step at most `step_down_wait`, and then answers: by
    default before wbemexec (as OpenPegasus' wbemexec) gives up waiting for the answer, so
    that the administrator learns whether the node stepped down or was refused."""
    assert RolesConfig().step_down_wait == STEP_DOWN_WAIT
    # The answer needs time after the wait too: the lease write and the response.
    assert STEP_DOWN_WAIT + 2 < DEFAULT_TIMEOUT_MS / 1000
