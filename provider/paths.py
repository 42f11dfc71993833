"""Where gm-provider keeps its files when the configuration does not say.

From a source checkout (the `make run` case) everything lives under `<checkout>/var/`, so a
newcomer needs no root and no system directories. Installed elsewhere, the usual system
places are used. `GM_PROVIDER_SOCKET` overrides the socket for clients such as `wbemexec`
and the cron entry, which cannot read the server's configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "builtin_socket_path",
    "checkout_root",
    "default_config_path",
    "default_socket_path",
    "default_state_dir",
]


def checkout_root() -> Path | None:
    """The source checkout this package runs from, or None when installed normally."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "provider").is_dir() else None


def default_state_dir() -> Path:
    root = checkout_root()
    return root / "var" if root is not None else Path("/var/lib/gm-provider")


def default_socket_path() -> Path:
    env = os.environ.get("GM_PROVIDER_SOCKET")
    if env:
        return Path(env)
    return builtin_socket_path()


def builtin_socket_path() -> Path:
    """The socket a client finds with no `GM_PROVIDER_SOCKET` (cron's environment)."""
    root = checkout_root()
    return (
        root / "var" / "run" / "cimxml.socket"
        if root is not None
        else Path("/run/gm-provider/cimxml.socket")
    )


def default_config_path() -> Path:
    env = os.environ.get("GM_PROVIDER_CONFIG")
    if env:
        return Path(env)
    root = checkout_root()
    return (
        root / "etc" / "gm-provider.toml"
        if root is not None
        else Path("/etc/gm-provider/gm-provider.toml")
    )
