"""Probers: "does this host answer?", the down check of rights seizure.

Reference gicap-domain.md §3.1: "usage rights can be seized only if the partition is
unavailable as determined by the ping command". Three probers, chosen by `[probe] method`:

* `ping` — the system's ping (iputils: `ping -n -c 1 -W <s> host`), exit status 0 = answers;
* `tcp` — a TCP connect to `port` (default 5989, the CIM HTTPS port every GiCAP member
  serves, §5.1) or to `host:port`. Only an accepted connection counts as an answer: a refused
  one means no CIM server there, which for GiCAP is as good as down;
* `static` — a map from the configuration (`up`, `down`, `default`), optionally overridden by
  a JSON file `{"host": "up" | "down"}` re-read at every probe (the simulator, and tests that
  bring hosts down and back). With `simulate_timeout = true` a down host answers "no" only
  after the timeout, as ping does.

`probe_hosts` runs every probe at once under one bounded timeout, so checking 1,000 hosts
takes about one timeout, not 1,000 of them (SPEC §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provider.errors import ConfigError

__all__ = [
    "PingProber",
    "ProbeSettings",
    "Prober",
    "StaticProber",
    "TcpProber",
    "make_prober",
    "probe_hosts",
    "probe_settings",
]

log = logging.getLogger(__name__)


class Prober(Protocol):
    async def answers(self, host: str, timeout: float) -> bool:
        """True when `host` answered within `timeout` seconds."""


@dataclass(frozen=True)
class ProbeSettings:
    method: str = "ping"
    timeout: float = 1.0
    port: int = 5989
    max_concurrency: int = 4096
    default: str = "up"
    up: tuple[str, ...] = ()
    down: tuple[str, ...] = ()
    state_file: Path | None = None
    simulate_timeout: bool = False
    ping: str = "ping"


class PingProber:
    def __init__(self, command: str = "ping") -> None:
        found = shutil.which(command)
        if found is None:
            raise ConfigError(
                f'probe.method = "ping" but {command!r} is not installed (Debian: '
                'iputils-ping); install it or choose probe.method = "tcp".'
            )
        self.command = found

    async def answers(self, host: str, timeout: float) -> bool:
        wait = max(1, round(timeout))  # iputils -W takes whole seconds
        proc = await asyncio.create_subprocess_exec(
            self.command,
            "-n",
            "-q",
            "-c",
            "1",
            "-W",
            str(wait),
            "--",
            host,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            return await asyncio.wait_for(proc.wait(), timeout + 0.5) == 0
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return False


class TcpProber:
    def __init__(self, port: int) -> None:
        self.port = port

    def _target(self, host: str) -> tuple[str, int]:
        name, sep, port = host.rpartition(":")
        if sep and port.isascii() and port.isdigit():
            return name, int(port)
        return host, self.port

    async def answers(self, host: str, timeout: float) -> bool:
        name, port = self._target(host)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(name, port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


@dataclass
class StaticProber:
    default_up: bool = True
    table: dict[str, bool] = field(default_factory=dict)
    state_file: Path | None = None
    simulate_timeout: bool = False
    _cache: tuple[float, dict[str, bool]] = (-1.0, {})

    def _overrides(self) -> dict[str, bool]:
        if self.state_file is None:
            return {}
        try:
            mtime = self.state_file.stat().st_mtime
        except FileNotFoundError:
            return {}
        if mtime != self._cache[0]:
            raw = json.loads(self.state_file.read_text(encoding="utf-8") or "{}")
            self._cache = (mtime, {str(k).lower(): str(v) == "up" for k, v in raw.items()})
        return self._cache[1]

    def lookup(self, host: str) -> bool:
        key = host.lower()
        overrides = self._overrides()
        if key in overrides:
            return overrides[key]
        return self.table.get(key, self.default_up)

    async def answers(self, host: str, timeout: float) -> bool:
        up = self.lookup(host)
        if not up and self.simulate_timeout:
            await asyncio.sleep(timeout)  # ping waits the whole timeout for a dead host
        return up


def make_prober(settings: ProbeSettings) -> Prober:
    if settings.method == "ping":
        return PingProber(settings.ping)
    if settings.method == "tcp":
        return TcpProber(settings.port)
    table = {h.lower(): True for h in settings.up}
    table.update({h.lower(): False for h in settings.down})
    return StaticProber(
        default_up=settings.default == "up",
        table=table,
        state_file=settings.state_file,
        simulate_timeout=settings.simulate_timeout,
    )


async def probe_hosts(
    prober: Prober, hosts: Iterable[str], timeout: float, max_concurrency: int = 4096
) -> dict[str, bool]:
    """Probe every distinct host concurrently; each gets `timeout` seconds (plus a little for
    process start-up). Returns host -> answered. A prober error counts as "no answer"."""
    unique = list(dict.fromkeys(hosts))
    gate = asyncio.Semaphore(max(1, max_concurrency))

    async def one(host: str) -> bool:
        async with gate:
            try:
                return await asyncio.wait_for(prober.answers(host, timeout), timeout + 1.0)
            except TimeoutError:
                return False
            except Exception:
                log.exception("probe of %s failed", host)
                return False

    results = await asyncio.gather(*(one(h) for h in unique))
    return dict(zip(unique, results, strict=True))


_KEYS = {
    "method",
    "timeout",
    "port",
    "max_concurrency",
    "default",
    "up",
    "down",
    "state_file",
    "simulate_timeout",
    "ping",
}


def probe_settings(config: Any) -> ProbeSettings:
    """`[probe]` of the configuration (provider.config.Config), validated with its lines."""
    section: Mapping[str, Any] = config.section("probe")
    for key in section:
        if key not in _KEYS:
            raise config.error(
                "probe", key, f"unknown setting probe.{key}; known: {', '.join(sorted(_KEYS))}."
            )
    d = ProbeSettings()
    method = section.get("method")
    if method is None:
        # No choice made: ping as GiCAP does (§3.1), or, where ping is not installed (a
        # minimal container), a TCP connect to the members' CIM port, never a failed start.
        method = "ping" if shutil.which(str(section.get("ping", d.ping))) else "tcp"
        if method == "tcp":
            log.warning("ping is not installed: probing hosts with TCP connects instead")
    if method not in ("ping", "tcp", "static"):
        raise config.error("probe", "method", 'probe.method must be "ping", "tcp" or "static".')
    timeout = section.get("timeout", d.timeout)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= 60:
        raise config.error("probe", "timeout", "probe.timeout must be seconds, 0 < t <= 60.")
    port = section.get("port", d.port)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise config.error("probe", "port", "probe.port must be a port number 1-65535.")
    default = section.get("default", d.default)
    if default not in ("up", "down"):
        raise config.error("probe", "default", 'probe.default must be "up" or "down".')
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("up", "down"):
        value = section.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise config.error("probe", key, f"probe.{key} must be a list of host names.")
        lists[key] = tuple(value)
    state_file = section.get("state_file", "")
    if not isinstance(state_file, str):
        raise config.error("probe", "state_file", "probe.state_file must be a path.")
    path = Path(state_file) if state_file else None
    if path is not None and not path.is_absolute():
        path = Path(config.path).resolve().parent.parent / path
    concurrency = section.get("max_concurrency", d.max_concurrency)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise config.error("probe", "max_concurrency", "probe.max_concurrency must be >= 1.")
    simulate = section.get("simulate_timeout", False)
    if not isinstance(simulate, bool):
        raise config.error("probe", "simulate_timeout", "probe.simulate_timeout must be a boolean.")
    ping = section.get("ping", d.ping)
    if not isinstance(ping, str):
        raise config.error("probe", "ping", "probe.ping must be a command name or path.")
    return ProbeSettings(
        method=method,
        timeout=float(timeout),
        port=port,
        max_concurrency=concurrency,
        default=default,
        up=lists["up"],
        down=lists["down"],
        state_file=path,
        simulate_timeout=simulate,
        ping=ping,
    )
