"""Real provider processes for tests: `gm-provider serve` on 127.0.0.1 with port 0.

    with provider_process(tmp_path) as gm:
        conn = gm.connection()              # pywbem WBEMConnection as the admin user
        conn.EnumerateInstances("GM_DeviceBay")
        gm.kill()                           # kill -9, for crash tests

The harness writes a configuration (`config=` merges extra sections/keys into it), a users
file with one user per role (passwords in `USERS`), runs `gm-provider init` and `serve` as a
subprocess, and waits for the server's `ready.json` (ports, socket, node). Two processes can
share one store (`store_url=`) to form the manager pair.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pywbem

from provider.http.auth import UserRecord, format_users_line, hash_password

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_INVENTORY = ROOT / "etc" / "inventory.example.toml"

# user -> (role, password); cheap scrypt cost so tests stay fast
USERS: dict[str, tuple[str, str]] = {
    "admin": ("administrator", "admin-pw"),
    "groupadmin": ("group-administrator", "groupadmin-pw"),
    "operator": ("operator", "operator-pw"),
    "limited": ("limited-operator", "limited-pw"),
    "reader": ("read-only", "reader-pw"),
    "capacity": ("capacity-administrator", "capacity-pw"),
}


def write_users(path: Path) -> None:
    lines = [
        format_users_line(UserRecord(name, role, hash_password(pw, n=2**4, r=1)))
        for name, (role, pw) in USERS.items()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    out: list[str] = []
    for name, table in sections.items():
        out.append(f"[{name}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
        out.append("")
    return "\n".join(out)


def merge(base: dict[str, dict[str, Any]], extra: Mapping[str, Mapping[str, Any]]) -> None:
    for section, table in extra.items():
        base.setdefault(section, {}).update(table)


@dataclass
class ProviderHandle:
    workdir: Path
    config_path: Path
    node: str
    proc: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.ready["http_port"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_port(self) -> int | None:
        value = self.ready.get("https_port")
        return int(value) if value else None

    @property
    def socket_path(self) -> str:
        return str(self.ready["unix_socket"])

    @property
    def log(self) -> str:
        path = self.workdir / f"{self.node}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def connection(
        self, user: str = "admin", namespace: str = "root/cimv2", timeout: float = 30
    ) -> pywbem.WBEMConnection:
        password = USERS[user][1]
        return pywbem.WBEMConnection(
            self.url, (user, password), default_namespace=namespace, timeout=timeout
        )

    def env(self) -> dict[str, str]:
        """Environment for CLI subprocesses aimed at this provider's Unix socket."""
        env = dict(os.environ)
        env["GM_PROVIDER_SOCKET"] = self.socket_path
        env["GM_PROVIDER_CONFIG"] = str(self.config_path)
        return env

    def start(self, timeout: float = 30.0) -> None:
        ready_file = self.workdir / f"{self.node}-state" / "ready.json"
        with contextlib.suppress(FileNotFoundError):
            ready_file.unlink()
        log = open(self.workdir / f"{self.node}.log", "ab")  # noqa: SIM115 - owned by the process
        cmd = [sys.executable, "-m", "provider", "serve", "--config", str(self.config_path)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gm-provider exited with {self.proc.returncode}:\n{self.log}")
            if ready_file.exists():
                try:
                    self.ready = json.loads(ready_file.read_text())
                    return
                except json.JSONDecodeError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gm-provider did not become ready in {timeout}s:\n{self.log}")

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)

    def kill(self) -> None:
        """kill -9: no cleanup, no lease release; what a crash looks like."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def configure(
    workdir: Path,
    *,
    node: str = "gm1",
    config: Mapping[str, Mapping[str, Any]] | None = None,
    inventory: Path | None = None,
    store_url: str | None = None,
) -> ProviderHandle:
    """Write the configuration and users file for one node (no process yet)."""
    workdir.mkdir(parents=True, exist_ok=True)
    users = workdir / "users"
    if not users.exists():
        write_users(users)
    state = workdir / f"{node}-state"
    sections: dict[str, dict[str, Any]] = {
        "node": {"name": node, "state_dir": str(state)},
        "server": {
            "http_port": 0,
            "unix_socket": str(state / "cimxml.socket"),
            "require_auth": True,
        },
        "store": {"url": store_url or f"sqlite:///{workdir}/gm.db"},
        "roles": {"start_as": "active", "lease_ttl": 6.0, "renew_interval": 1.0},
        "security": {"users_file": str(users)},
        "inventory": {"path": str(inventory or EXAMPLE_INVENTORY)},
    }
    merge(sections, config or {})
    etc = workdir / f"{node}-etc"
    etc.mkdir(exist_ok=True)
    config_path = etc / "gm-provider.toml"
    config_path.write_text(to_toml(sections), encoding="utf-8")
    return ProviderHandle(workdir=workdir, config_path=config_path, node=node)


@contextlib.contextmanager
def provider_process(
    workdir: Path,
    *,
    node: str = "gm1",
    config: Mapping[str, Mapping[str, Any]] | None = None,
    inventory: Path | None = None,
    store_url: str | None = None,
) -> Iterator[ProviderHandle]:
    handle = configure(workdir, node=node, config=config, inventory=inventory, store_url=store_url)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()
