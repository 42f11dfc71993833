"""A node that cannot listen (its port or socket taken) says so in one line, exits 2, and
never touches the lease: it had taken the lease before binding, which fenced the running
active when the second process was a copy of it (same node name, started by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from provider.store import open_store
from tests.harness import ROOT, configure


def _serve_once(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provider", "serve", "--config", str(config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_copy_of_the_active_leaves_it_active(tmp_path: Path) -> None:
    first = configure(tmp_path / "a", store_url=f"sqlite:///{tmp_path}/gm.db")
    first.start()
    try:
        conn = first.connection()
        before = open_store(f"sqlite:///{tmp_path}/gm.db")
        try:
            lease = before.current()
        finally:
            before.close()
        assert lease.holder == "gm1" and lease.valid
        copy = configure(
            tmp_path / "b",
            store_url=f"sqlite:///{tmp_path}/gm.db",
            config={"server": {"http_port": first.port}},
        )
        done = _serve_once(copy.config_path)
        assert done.returncode == 2, done.stderr
        assert "cannot listen" in done.stderr and "http_port" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        after = open_store(f"sqlite:///{tmp_path}/gm.db")
        try:
            now = after.current()
        finally:
            after.close()
        assert (now.holder, now.epoch) == ("gm1", lease.epoch) and now.valid
        rv, _ = conn.InvokeMethod(
            "setSpare", "GM_GroupManager", EnclosureName="enc01", BayName="5", IsSpare=True
        )
        assert rv == 0  # the running node still writes
    finally:
        first.stop()
