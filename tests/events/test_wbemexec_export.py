"""An indication posted from a file with wbemexec (etc/requests/ExportIndication.xml, the
example rules of etc/events.toml): how an administrator tries automatic event handling
without a management station. wbemexec sends a SIMPLEEXPREQ with the export headers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness import ROOT, provider_process


def test_wbemexec_posts_the_example_indication(tmp_path: Path) -> None:
    settings = {"events": {"rules": str(ROOT / "etc" / "events.toml")}}
    with provider_process(tmp_path, config=settings) as gm:
        done = subprocess.run(
            [sys.executable, "-m", "cli.wbemexec", str(ROOT / "etc/requests/ExportIndication.xml")],
            cwd=ROOT,
            env=gm.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "EXPMETHODRESPONSE" in done.stdout and "ERROR" not in done.stdout, done.stdout
        decisions = list(gm.connection().EnumerateInstances("GM_EventDecision"))
    assert [(d["Decision"], d["SystemName"], d["EventID"]) for d in decisions] == [
        ("alerted", "web02.example.com", "6015")
    ]
