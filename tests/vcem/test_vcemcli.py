"""vcemcli against a real server: the local Unix socket and HTTP with Basic credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli.vcemcli import EXIT_JOB_FAILED, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_USAGE, parse
from tests.harness import ROOT, USERS, ProviderHandle, provider_process
from tests.vcem.cimtools import config


def vcemcli(gm: ProviderHandle, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.vcemcli", *args],
        cwd=ROOT,
        env=gm.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_failover_with_wait_over_the_unix_socket_then_show_job(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        done = vcemcli(gm, "-failover", "-hostname", "web01.example.com", "--wait")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == "Job 1 submitted: failover of host web01.example.com."
        # The wait ends saying where the server runs now: what the caller waited to learn.
        where = "Job 1: profile web01-profile moved to enc01 bay 12 (from enc01 bay 3)"
        assert done.stdout.splitlines()[-2:] == ["Job 1: Completed", where]
        shown = vcemcli(gm, "-show", "job", "-jobid", "1")
        assert "Job State: Completed" in shown.stdout
        waited = vcemcli(gm, "-show", "job", "-jobid", "1", "--wait")
        assert waited.returncode == 0 and waited.stdout.splitlines()[-2:] == [
            "Job 1: Completed",
            where,
        ]
        assert "Target: enc01 bay 12" in shown.stdout
        listed = vcemcli(gm, "-show", "job")
        assert "Completed" in listed.stdout and "dg-web" in listed.stdout


def test_exit_codes_for_not_found_refused_and_a_failed_job(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        assert vcemcli(gm, "-failover", "-ipaddress", "203.0.113.1").returncode == EXIT_NOT_FOUND
        failed = vcemcli(gm, "-failover", "-enclosurename", "enc05", "-bayname", "1", "--wait")
        assert failed.returncode == EXIT_JOB_FAILED
        assert "stays powered off" in failed.stdout
        # Waiting on an existing job exits as waiting on a submitted one: 6 when it failed.
        job_id = failed.stdout.split()[1]
        shown = vcemcli(gm, "-show", "job", "-jobid", job_id, "--wait")
        assert shown.returncode == EXIT_JOB_FAILED, shown.stdout + shown.stderr
        assert vcemcli(gm, "-startvcdmaint", "-domaingroupname", "dg-web").returncode == 0
        refused = vcemcli(gm, "-failover", "-hostname", "web02.example.com")
        assert refused.returncode == EXIT_REFUSED and "maintenance" in refused.stderr
        assert vcemcli(gm, "-cancelvcdmaint", "-domaingroupname", "dg-web").returncode == 0


def test_move_and_spares_over_http_with_credentials(tmp_path: Path) -> None:
    with provider_process(tmp_path, config=config()) as gm:
        creds = ["-s", gm.url, "-u", "admin", "-p", USERS["admin"][1]]
        moved = vcemcli(gm, *creds, "-move", "profile", "-profilename", "web02-profile",
                        "-targetenclosurename", "enc01", "-targetbayname", "5", "-nopoweron",
                        "--wait")  # fmt: skip
        assert moved.returncode == 0, moved.stdout + moved.stderr
        added = vcemcli(gm, *creds, "-add", "spare", "-enclosurename", "enc05", "-bayname", "4")
        assert added.returncode == 0 and "now a spare" in added.stdout
        bad = vcemcli(gm, "-s", gm.url, "-u", "admin", "-p", "wrong", "-show", "job")
        assert bad.returncode == 3
        # The server's own reason, and advice that fits credentials that were given.
        assert "Invalid user name or password" in bad.stderr, bad.stderr
        assert "check the user name and password" in bad.stderr
        # A bad --timeout is a usage error found before anything is sent: no job starts.
        jobs = vcemcli(gm, *creds, "-show", "job").stdout.splitlines()
        assert len(jobs) == 1  # the move
        typo = vcemcli(gm, *creds, "-failover", "-hostname", "web01.example.com", "--wait",
                       "--timeout", "abc")  # fmt: skip
        assert typo.returncode == EXIT_USAGE and "--timeout needs a number" in typo.stderr
        assert "submitted" not in typo.stdout
        assert vcemcli(gm, *creds, "-show", "job").stdout.splitlines() == jobs


def test_usage_errors() -> None:
    for argv in (
        [],
        ["-move"],
        ["-failover", "-bayname"],
        ["-bogus"],
        ["-failover", "-hostname", "h", "--wait", "--timeout", "abc"],
        ["-failover", "-hostname", "h", "--wait", "--timeout", "0"],
        ["-failover", "-hostname", "h", "--wait", "--timeout", "nan"],
        ["-show", "job", "--wait"],
    ):
        try:
            parse(argv)
        except Exception as exc:
            assert type(exc).__name__ == "UsageError"
        else:
            raise AssertionError(argv)
    from cli.vcemcli import main

    assert main(["-failover", "-enclosurename"]) == EXIT_USAGE


def test_wbemexec_request_file_starts_a_job_that_vcemcli_shows(tmp_path: Path) -> None:
    """The cron/script way in: post etc/requests/failoverProfile.xml over the local socket,
    read the job number from the reply, then follow the job with vcemcli."""
    with provider_process(tmp_path, config=config()) as gm:
        run = subprocess.run(
            [sys.executable, "-m", "cli.wbemexec", str(ROOT / "etc/requests/failoverProfile.xml")],
            cwd=ROOT,
            env=gm.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[lines.index('<RETURNVALUE PARAMTYPE="uint32">') + 2] == "4096"
        job_id = lines[lines.index('<PARAMVALUE NAME="JobID" PARAMTYPE="uint32">') + 2]
        waited = vcemcli(gm, "-show", "job", "-jobid", job_id, "--wait")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        shown = vcemcli(gm, "-show", "job", "-jobid", job_id)
        assert "Job State: Completed" in shown.stdout
        assert "enc01 bay 3" in shown.stdout


def test_a_closed_standard_output_ends_quietly() -> None:
    """`vcemcli ... | head`: a reader that went away is no traceback."""
    for module in ("cli.vcemcli", "cli.icapmanage", "cli.wbemexec"):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first line
        try:
            done = subprocess.run(
                [sys.executable, "-m", module, "--help"],
                cwd=ROOT,
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
        finally:
            os.close(write_end)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, (
            module,
            done.stderr,
        )
