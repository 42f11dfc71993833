"""`gm-provider serve`: assemble the parts and run them until SIGTERM/SIGINT.

Start-up order matters for safety: the store is migrated before anything reads it; the role
manager joins the pair (acquiring a free lease only if configured to start active) before the
listeners open, so the first request already sees the right role; domains install their
providers and background tasks; only then is `ready.json` written (tests and service
managers wait for it). On SIGTERM an active node steps down so its standby can take over at
once instead of waiting for the lease to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import pwd
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provider import __version__
from provider.app import CimApplication, ExportHandler
from provider.audit import AuditLog
from provider.cim.interop import install_interop
from provider.cim.operations import CimOperations
from provider.cim.provider import ProviderRegistry
from provider.cim.repository import load_repository
from provider.config import Config
from provider.drivers.notify import drain_told
from provider.errors import AccessDenied, ConfigError, ProtocolError
from provider.http.auth import FileAuthenticator, load_users_file, principal_for_peer
from provider.http.limits import TransportLimits
from provider.http.messages import HttpRequest, HttpResponse, Principal
from provider.http.server import (
    HttpServer,
    Listener,
    TCPListener,
    TLSListener,
    UnixListener,
    serve,
)
from provider.http.tls import make_server_ssl_context
from provider.manager import install_manager
from provider.paths import builtin_socket_path, checkout_root
from provider.privileges import TableAuthorizer, authorizer_from_config
from provider.roles import RoleManager
from provider.services import Services
from provider.store import Store, apply_migrations, discover_migrations, open_store

__all__ = ["DOMAINS", "prepare_store", "run"]

log = logging.getLogger("gm.server")

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# Domain packages, installed in this order. Each has `install(registry, services)`.
DOMAINS = ("provider.vcem", "provider.gicap", "provider.events")


def schema_dir() -> Path:
    return SCHEMA_DIR


def etc_dir(config: Config) -> Path:
    """The product's etc/: the configuration's folder when it has request files (an
    installation), else the checkout's etc/ (a test configuration in a temporary folder)."""
    if (config.etc_dir / "requests").is_dir():
        return config.etc_dir
    root = checkout_root()
    return root / "etc" if root is not None else config.etc_dir


def inventory_path(config: Config) -> Path:
    value = config.section("inventory").get("path")
    if value is None:
        return etc_dir(config) / "inventory.example.toml"
    if not isinstance(value, str):
        raise config.error("inventory", "path", "inventory.path must be a string.")
    path = Path(value)
    return path if path.is_absolute() else config.etc_dir.parent / path


def _open_store(config: Config) -> Store:
    store = open_store(config.store_url)
    _load_domains()
    apply_migrations(store, discover_migrations())
    return store


def _load_domains() -> list[Any]:
    """Import the domain packages (their migrations register on import)."""
    modules = []
    for name in DOMAINS:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return modules


def prepare_store(config: Config) -> list[str]:
    store = _open_store(config)
    try:
        return [f"store ready: {_redacted(config.store_url)}"]
    finally:
        store.close()


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class _Authenticator:
    """Users file for Basic; local peers: root and admin groups are administrators."""

    def __init__(self, config: Config, users_file: Path) -> None:
        self._file = FileAuthenticator(users_file)
        self._admin_groups = set(config.security.admin_groups)
        self._local_role = config.security.local_role

    def verify_basic(self, user: str, password: str) -> Principal | None:
        return self._file.verify_basic(user, password)

    def recall_basic(self, user: str, password: str) -> tuple[bool, Principal | None]:
        return self._file.recall_basic(user, password)

    def identify_peer(self, uid: int, gid: int) -> Principal | None:
        principal = self._file.identify_peer(uid, gid)
        if principal is None or principal.role is not None:
            return principal
        admin = uid == 0 or bool(self._admin_groups.intersection(principal.groups))
        return principal_for_peer(uid, gid, role="administrator" if admin else self._local_role)


def _listeners(config: Config) -> list[Listener]:
    srv = config.server
    listeners: list[Listener] = []
    if srv.http_enabled:
        listeners.append(TCPListener(srv.http_host, srv.http_port))
    if srv.certificate is not None and srv.private_key is not None:
        context = make_server_ssl_context(
            srv.certificate,
            srv.private_key,
            client_ca=srv.client_ca,
            require_client_cert=srv.client_ca is not None,
        )
        listeners.append(TLSListener(context, srv.https_host, srv.https_port))
    if srv.unix_socket is not None:
        listeners.append(UnixListener(srv.unix_socket))
    return listeners


def _write_ready(config: Config, server: HttpServer, role: str) -> Path:
    info: dict[str, Any] = {"node": config.node_name, "pid": os.getpid(), "role": role}
    for bound in server.listeners:
        if bound.path is not None:
            info["unix_socket"] = str(bound.path)
        elif bound.via.value == "https":
            info["https_port"] = bound.port
        else:
            info["http_port"] = bound.port
    path = config.state_dir / "ready.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    tmp.replace(path)
    return path


def _banner(config: Config, server: HttpServer, role: str) -> str:
    lines = [f"gm-provider {__version__}: node {config.node_name} is {role}."]
    for bound in server.listeners:
        if bound.path is not None and Path(bound.path) == builtin_socket_path():
            lines.append(f"  local socket  {bound.path}   (wbemexec with no -h/-p; no password)")
        elif bound.path is not None:
            # Not the socket clients find on their own (a second node on this host): they
            # would reach the other node's, and a stepDown typed from this banner act there.
            lines.append(
                f"  local socket  {bound.path}   (no password; local clients need "
                f"GM_PROVIDER_SOCKET={bound.path})"
            )
        else:
            lines.append(
                f"  {bound.via.value:<5} on     {bound.via.value}://{bound.host}:{bound.port}/cimom"
            )
    pw = config.state_dir / "admin.password"
    if pw.exists():
        lines.append(f"  user admin, password: {pw.read_text().strip()}   (from {pw})")
    http = next((b for b in server.listeners if b.via.value == "http"), None)
    if http is not None and pw.exists():
        lines.append(
            "  try: .venv/bin/pywbemcli -s http://127.0.0.1:"
            f'{http.port} -u admin -p "$(cat {pw})" instance enumerate GM_GroupManager'
        )
    return "\n".join(lines)


async def _serve(config: Config) -> int:
    users = config.security.users_file or (config.state_dir / "users")
    if not users.exists():
        raise ConfigError(f"{users}: no users file; run `gm-provider init` first.")
    # Listen first: a node that cannot (its port or socket taken: often a second copy of a
    # running node, started by hand) stops here, before it takes the lease, which would fence
    # the running active. Requests before the application is ready get 503.

    async def starting(request: HttpRequest) -> HttpResponse:
        raise ProtocolError(503, None, "The Group Manager is starting; try again shortly.")

    limits = TransportLimits(
        max_body_bytes=config.server.max_body_bytes,
        max_header_bytes=config.server.max_header_bytes,
        max_connections=config.server.max_connections,
        header_timeout=config.server.request_timeout,
        body_timeout=config.server.request_timeout,
        keepalive_timeout=config.server.idle_timeout,
    )
    try:
        server = await serve(
            starting,
            _listeners(config),
            authenticator=_Authenticator(config, users),
            require_auth=config.server.require_auth,
            limits=limits,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen: {exc}. Another gm-provider (or another program) uses that port or "
            "socket: give each node its own [server] http_port, https_port and unix_socket."
        ) from exc
    try:
        return await _run_node(config, server)
    finally:
        await server.close()


async def _run_node(config: Config, server: HttpServer) -> int:
    store = _open_store(config)
    roles = RoleManager(
        store,
        config.node_name,
        ttl=config.roles.lease_ttl,
        renew_interval=config.roles.renew_interval,
        auto_takeover=config.roles.automatic_takeover,
        start_as=config.roles.start_as,
    )
    roles.drain_timeout = config.roles.drain_timeout
    roles.step_down_wait = config.roles.step_down_wait
    await asyncio.to_thread(roles.start)
    authorizer = authorizer_from_config(config)
    audit = AuditLog(
        config.security.audit_log or (config.state_dir / "audit.log"),
        is_read=authorizer.is_read,
    )
    services = Services(
        node_name=config.node_name,
        config=config,
        store=store,
        roles=roles,
        etc_dir=etc_dir(config),
        state_dir=config.state_dir,
        inventory_path=inventory_path(config),
        audit=audit,
        # Seizures, jobs, decisions are stamped and compared on the store's clock, which
        # both nodes of a pair share (ha-jobs-style A.7.2: never compare host clocks).
        clock=lambda: datetime.fromtimestamp(roles.store_time(), UTC),
    )
    registry = ProviderRegistry()
    repository = load_repository(schema_dir())
    install_interop(
        registry, repository.namespaces, socket.gethostname(), __version__, config.node_name
    )
    install_manager(registry, services)
    # The lease loop runs while the domains install: seeding a data-centre inventory takes
    # seconds, longer than a short lease, and installing must not cost us the lease.
    lease_task = asyncio.create_task(roles.run(), name="lease")
    export_handler: ExportHandler | None = None
    domains = _load_domains()
    for module in domains:
        install = getattr(module, "install", None)
        if install is None:  # a domain package that provides no CIM classes yet
            continue
        handler = await asyncio.to_thread(install, registry, services)
        if handler is not None:
            export_handler = handler
    if any(m.__name__.endswith(".gicap") for m in domains):
        refused = _cron_user_refused(config, authorizer)
        if refused is not None:
            log.warning("%s", refused)
    operations = CimOperations(
        repository, registry, roles, authorizer, socket.gethostname(), audit=audit
    )
    app = CimApplication(
        operations,
        export_handler,
        max_xml_depth=config.server.max_xml_depth,
        max_xml_elements=config.server.max_xml_elements,
    )
    server.set_application(app)
    tasks = [lease_task]
    tasks += [asyncio.create_task(job(), name=job.__name__) for job in services.background]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    role = roles.role.value
    _write_ready(config, server, role)
    print(_banner(config, server, role), flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        with contextlib.suppress(FileNotFoundError):
            (config.state_dir / "ready.json").unlink()
        await server.close()
        # The lease loop keeps renewing while close() lets a job step in flight end (and a
        # mail being sent be marked): the other node must not take over, and repeat it,
        # before it is done. Only then are the background tasks stopped: cancelled first,
        # a mail under way went unmarked and was sent again by the next active.
        await asyncio.to_thread(roles.close)
        others = [task for task in tasks if task is not lease_task]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        # Notices told in the background (capacity): sent before the process ends.
        await drain_told(config.roles.drain_timeout)
        lease_task.cancel()
        await asyncio.gather(lease_task, return_exceptions=True)
        store.close()
        audit.close()
    return 0


def _cron_user_refused(config: Config, authorizer: TableAuthorizer) -> str | None:
    """What to say at start when the checkScavengedMember cron entry would be refused: it
    runs `wbemexec` on the local socket as the crontab's user (`[gicap] crontab_user`, or the
    user running the server), and wbemexec exits 0 on a CIM error, as OpenPegasus' does, so
    cron would run it every half hour and no scavenged member would ever be checked."""
    section = config.section("gicap")
    configured = section.get("crontab_user")
    user = str(configured) if configured else pwd.getpwuid(os.geteuid()).pw_name
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return (
            f"[gicap] crontab_user {user!r} is no local account: cron cannot run the "
            "checkScavengedMember entry as it. Name an existing user (e.g. root)."
        )
    users = config.security.users_file or (config.state_dir / "users")
    try:
        principal = _Authenticator(config, users).identify_peer(account.pw_uid, account.pw_gid)
        # As the call will be checked: a role bound to domain groups is refused too.
        authorizer.check(principal, "checkScavengedMember", None)
    except AccessDenied as exc:
        listed = users.exists() and user in load_users_file(users)
        grant = (
            f"gm-provider user role {user} capacity-administrator --all-groups --local"
            if listed
            else f"gm-provider user add {user} --role capacity-administrator --local"
        )
        return (
            f"The checkScavengedMember cron entry runs as {user}, whom the local socket would "
            f"refuse: {exc.description} Give {user} the role ({grant}), add it to [security] "
            "admin_groups, or set [gicap] crontab_user to a user who has it."
        )
    except ConfigError:
        return None  # the users file's own error is reported where it is read
    return None


class RepeatFilter(logging.Filter):
    """Say a warning once a minute, not at every retry: while the store is down, the lease
    loop, the job runner and the capacity pass each retry every few seconds with the same
    text, and a one-hour outage wrote tens of thousands of lines. A repeat within `window`
    seconds is counted instead, and the next time the message passes it says how many
    there were. INFO and DEBUG lines pass unchanged; so does a record whose message cannot
    be formatted (the handler reports that, as without this filter). A record with a
    traceback is a repeat only of the same exception raised at the same place: a client
    told "the server log has the details" must find them, and the same message ("GetInstance
    failed unexpectedly") covers different bugs."""

    _LIMIT = 1000  # distinct warnings remembered

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()  # filters run outside the handler's lock

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            text = record.getMessage()
        except Exception:
            return True
        key = (record.name, record.levelno, text + _exception_key(record))
        with self._lock:
            now = self.clock()
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.window:
                self._seen[key] = (last[0], last[1] + 1)
                return False
            self._seen[key] = (now, 0)
            self._seen.move_to_end(key)
            while len(self._seen) > self._LIMIT:
                self._seen.popitem(last=False)  # the least recently said
        if last is not None and last[1]:
            record.msg = f"{text} (and {last[1]} times more in the last {now - last[0]:.0f} s)"
            record.args = None
        return True


def _exception_key(record: logging.LogRecord) -> str:
    """What tells one logged exception from another: its type, text and where it was raised."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None:
        return ""
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    where = f"{last.tb_frame.f_code.co_filename}:{last.tb_lineno}" if last is not None else ""
    return f"\n{type(exc).__qualname__}: {exc} at {where}"


def _logging() -> None:
    level = os.environ.get("GM_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())


def tune_interpreter(config: Config) -> None:
    """Process-wide interpreter settings of `serve` (`[server] switch_interval`)."""
    sys.setswitchinterval(config.server.switch_interval)


def run(config: Config, runner: Callable[..., Any] | None = None) -> int:
    from provider.http.server import run as run_loop

    _logging()
    tune_interpreter(config)
    result: int = run_loop(lambda: _serve(config))
    return result
