"""Configuration: one TOML file (`etc/gm-provider.toml`), validated at start.

Every error names the file and the line of the offending key, so an administrator can fix it
without guessing (tomllib reports positions only for syntax errors; for type and value errors
we find the key's line in the text ourselves). Core sections are typed here; domain sections
(`[simulator]`, `[gicap]`, `[notify]`, `[events]`, ...) are handed to their domain, which
validates them with `Config.error(section, key, message)` for the same line-precise errors.
Relative paths are relative to the directory of the configuration file's parent (the
checkout root in the `make run` case), except `store.url` and sockets which may use
`{state}` for the state directory.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provider.errors import ConfigError
from provider.paths import default_socket_path, default_state_dir
from provider.privileges import parse_role
from provider.tomlfile import TomlReader, load_toml, locate

__all__ = ["Config", "RolesConfig", "SecurityConfig", "ServerConfig", "load_config"]


@dataclass(frozen=True)
class ServerConfig:
    http_host: str = "127.0.0.1"
    http_port: int = 5988  # 0: any free port (tests)
    http_enabled: bool = True
    https_host: str = "127.0.0.1"
    https_port: int = 5989
    certificate: Path | None = None  # HTTPS is served when a certificate is configured
    private_key: Path | None = None
    client_ca: Path | None = None  # when set, clients must present a certificate it signed
    unix_socket: Path | None = None  # None: no Unix socket listener
    require_auth: bool = True  # TCP requests need credentials (the Unix socket never does)
    max_body_bytes: int = 4 * 1024 * 1024  # a larger request body: 413
    max_header_bytes: int = 16 * 1024  # a larger request line + header block: 431
    max_xml_depth: int = 48  # deeper CIM-XML element nesting: 400 request-not-valid
    max_xml_elements: int = 20_000  # more CIM-XML elements in one request: likewise
    max_connections: int = 512  # one more open connection: 503
    request_timeout: float = 30.0  # a request's head and body must arrive within this
    idle_timeout: float = 60.0  # an idle keep-alive connection is closed after this
    # The interpreter's thread switch interval (seconds; Python's own default is 0.005).
    # The event loop rendering large enumerations holds the interpreter while job threads
    # wait for it after every store statement; 1 ms instead of 5 keeps a failover's
    # submit -> Completed p99 under 50 ms while 8 readers enumerate 16,000 bays
    # (bench/failover.py; README, Performance).
    switch_interval: float = 0.001


@dataclass(frozen=True)
class RolesConfig:
    start_as: str = "active"  # "active": take a free lease at start; "standby": wait
    automatic_takeover: bool = False
    lease_ttl: float = 15.0
    renew_interval: float = 3.0
    # A shutdown lets a job step acting on a device end first, this long at most.
    drain_timeout: float = 30.0
    # stepDown waits so long for it, then is refused: within a CIM client's wait for the
    # answer (wbemexec's default is 20 s), so the caller learns which it was.
    step_down_wait: float = 15.0


@dataclass(frozen=True)
class SecurityConfig:
    users_file: Path | None = None
    # Unix-socket peers: uid 0 and these local groups are administrators; other local users
    # get `local_role`.
    admin_groups: tuple[str, ...] = ("root",)
    local_role: str = "read-only"
    audit_log: Path | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    text: str
    node_name: str
    state_dir: Path
    etc_dir: Path
    store_url: str
    server: ServerConfig
    roles: RolesConfig
    security: SecurityConfig
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        """A domain section (empty when absent)."""
        return self.sections.get(name, {})

    def error(self, section: str, key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{locate(self.text, [section], key)}: {message}")


_CORE_ORDER = ("node", "server", "store", "roles", "security")
_CORE = frozenset(_CORE_ORDER)
# The sections the domain packages and drivers read (`Config.section`); any other is a typo.
DOMAIN_SECTIONS = frozenset(
    {"privileges", "inventory", "events", "gicap", "probe", "notify", "vcem", "simulator"}
)


class _Reader(TomlReader):
    """Sections of the configuration: `where` is always one section name."""

    def __init__(self, path: Path, text: str, data: dict[str, Any]) -> None:
        super().__init__(path, text)
        self.data = data

    def section(self, name: str, known: set[str]) -> dict[str, Any]:
        return self.table([name], self.data.get(name, {}), known)


def _role(r: _Reader, table: dict[str, Any], key: str, default: str) -> str:
    """A role name of `[security]`; a misspelt one would read as no role at all."""
    value: str = r.get(["security"], table, key, str, default)
    try:
        parse_role(value)
    except ValueError as exc:
        raise r.fail(["security"], key, f"security.{key}: {exc}.") from None
    return value


def load_config(path: Path) -> Config:
    text, data = load_toml(path, "the configuration")
    r = _Reader(path, text, data)
    base = path.resolve().parent.parent

    def rel(value: str | None, state: Path) -> Path | None:
        if not value:
            return None
        p = Path(value.replace("{state}", str(state)))
        return p if p.is_absolute() else base / p

    node = r.section("node", {"name", "state_dir"})
    node_name = r.get(["node"], node, "name", str, "") or socket.gethostname()
    state_value = r.get(["node"], node, "state_dir", str, "")
    state_dir = rel(state_value, default_state_dir()) or default_state_dir()

    srv = r.section(
        "server",
        {f.name for f in ServerConfig.__dataclass_fields__.values()},
    )
    d = ServerConfig()
    http_port = r.get(["server"], srv, "http_port", int, d.http_port)
    for key, port in (("http_port", http_port), ("https_port", srv.get("https_port"))):
        if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
            raise r.fail(["server"], key, f"server.{key} must be a port number 0-65535.")
    socket_value = r.get(["server"], srv, "unix_socket", str, None)
    server = ServerConfig(
        http_host=r.get(["server"], srv, "http_host", str, d.http_host),
        http_port=http_port,
        http_enabled=r.get(["server"], srv, "http_enabled", bool, d.http_enabled),
        https_host=r.get(["server"], srv, "https_host", str, d.https_host),
        https_port=r.get(["server"], srv, "https_port", int, d.https_port),
        certificate=rel(r.get(["server"], srv, "certificate", str, ""), state_dir),
        private_key=rel(r.get(["server"], srv, "private_key", str, ""), state_dir),
        client_ca=rel(r.get(["server"], srv, "client_ca", str, ""), state_dir),
        unix_socket=(
            default_socket_path() if socket_value is None else rel(socket_value, state_dir)
        ),
        require_auth=r.get(["server"], srv, "require_auth", bool, d.require_auth),
        max_body_bytes=r.get(["server"], srv, "max_body_bytes", int, d.max_body_bytes),
        max_header_bytes=r.get(["server"], srv, "max_header_bytes", int, d.max_header_bytes),
        max_xml_depth=r.get(["server"], srv, "max_xml_depth", int, d.max_xml_depth),
        max_xml_elements=r.get(["server"], srv, "max_xml_elements", int, d.max_xml_elements),
        max_connections=r.get(["server"], srv, "max_connections", int, d.max_connections),
        request_timeout=r.get(["server"], srv, "request_timeout", float, d.request_timeout),
        idle_timeout=r.get(["server"], srv, "idle_timeout", float, d.idle_timeout),
        switch_interval=r.get(["server"], srv, "switch_interval", float, d.switch_interval),
    )
    for key in (
        "max_body_bytes",
        "max_header_bytes",
        "max_xml_depth",
        "max_xml_elements",
        "max_connections",
        "request_timeout",
        "idle_timeout",
    ):
        if getattr(server, key) <= 0:
            raise r.fail(["server"], key, f"server.{key} must be positive.")
    if not 0.0001 <= server.switch_interval <= 0.1:
        raise r.fail(
            ["server"],
            "switch_interval",
            "server.switch_interval must be between 0.0001 and 0.1 seconds (default 0.001).",
        )
    if server.certificate is not None and server.private_key is None:
        raise r.fail(["server"], "certificate", "server.certificate needs server.private_key.")

    store = r.section("store", {"url"})
    url = r.get(["store"], store, "url", str, "sqlite:///{state}/gm.db")
    url = url.replace("{state}", str(state_dir))
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise r.fail(["store"], "url", "store.url must start with sqlite:/// or postgresql://.")

    ro = r.section(
        "roles",
        {
            "start_as",
            "automatic_takeover",
            "lease_ttl",
            "renew_interval",
            "drain_timeout",
            "step_down_wait",
        },
    )
    rd = RolesConfig()
    roles = RolesConfig(
        start_as=r.get(["roles"], ro, "start_as", str, rd.start_as),
        automatic_takeover=r.get(["roles"], ro, "automatic_takeover", bool, rd.automatic_takeover),
        lease_ttl=r.get(["roles"], ro, "lease_ttl", float, rd.lease_ttl),
        renew_interval=r.get(["roles"], ro, "renew_interval", float, rd.renew_interval),
        drain_timeout=r.get(["roles"], ro, "drain_timeout", float, rd.drain_timeout),
        step_down_wait=r.get(["roles"], ro, "step_down_wait", float, rd.step_down_wait),
    )
    for key in ("drain_timeout", "step_down_wait"):
        if not 0 < getattr(roles, key) <= 3600:
            raise r.fail(["roles"], key, f"roles.{key} must be between 0 and 3600 seconds.")
    if roles.start_as not in ("active", "standby"):
        raise r.fail(["roles"], "start_as", 'roles.start_as must be "active" or "standby".')
    from provider.roles.manager import TimingError, check_timing  # the rule RoleManager applies

    try:
        check_timing(roles.lease_ttl, roles.renew_interval)
    except TimingError as exc:
        key = "renew_interval" if exc.setting == "renew_interval" else "lease_ttl"
        raise r.fail(["roles"], key, f"roles.{key}: {exc.description}.") from None

    se = r.section("security", {"users_file", "admin_groups", "local_role", "audit_log"})
    sd = SecurityConfig()
    groups = r.get(["security"], se, "admin_groups", list, list(sd.admin_groups))
    security = SecurityConfig(
        users_file=rel(r.get(["security"], se, "users_file", str, ""), state_dir),
        admin_groups=tuple(str(g) for g in groups),
        local_role=_role(r, se, "local_role", sd.local_role),
        audit_log=rel(r.get(["security"], se, "audit_log", str, ""), state_dir),
    )
    sections = {k: v for k, v in data.items() if k not in _CORE and isinstance(v, dict)}
    # A hardware driver other than the simulator reads the section named after it.
    vcem = data.get("vcem")
    driver_section = vcem.get("driver") if isinstance(vcem, dict) else None
    for key, value in data.items():
        if key not in _CORE and not isinstance(value, dict | list):
            raise r.fail([], key, f"top-level setting {key} belongs in a [section].")
        if key not in _CORE and key not in DOMAIN_SECTIONS and key != driver_section:
            # A misspelt [securty] would otherwise leave every setting at its default.
            raise r.fail(
                [key],
                None,
                f"unknown section [{key}]; the sections are "
                + ", ".join(f"[{name}]" for name in [*_CORE_ORDER, *sorted(DOMAIN_SECTIONS)])
                + ".",
            )
    return Config(
        path=path,
        text=text,
        node_name=node_name,
        state_dir=state_dir,
        etc_dir=path.resolve().parent,
        store_url=url,
        server=server,
        roles=roles,
        security=security,
        sections=sections,
    )
