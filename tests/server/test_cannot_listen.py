"""A node that cannot listen (its port or socket taken) says so in one line, exits 2, and
hands back the lease it took at start: it had crashed with a traceback and kept the lease
until its TTL ran out, while it served nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from provider.store import open_store
from tests.harness import ROOT, configure


def test_a_taken_port_is_a_clear_error_and_the_lease_is_given_back(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        node = configure(
            tmp_path, config={"server": {"http_port": port}, "roles": {"lease_ttl": 600.0}}
        )
        done = subprocess.run(
            [sys.executable, "-m", "provider", "serve", "--config", str(node.config_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert "cannot listen" in done.stderr and "http_port" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    store = open_store(f"sqlite:///{tmp_path}/gm.db")
    try:
        lease = store.current()
    finally:
        store.close()
    assert not lease.valid, lease  # free now, not for the next 600 s
