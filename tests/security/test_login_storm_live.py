"""A storm of logins with wrong passwords on a live provider: hundreds of connections, each
costing a full scrypt, must not cost the active its lease, nor keep callers that logged in
before (or whose credentials were verified before) from being served.

Before the password checks had threads of their own, they queued on the loop's default
executor with the lease renewal behind them: 400 such connections made a healthy active
demote itself (LEASE_EXPIRED) within seconds.
The lease is short here (3 s) so that a storm of 120 does what 400 did to the default 15 s."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from bench.loadgen import LoadResult, build_post, run_load
from provider.http.auth import UserRecord, format_users_line, hash_password
from tests.harness import USERS, provider_process
from tests.security.helpers import basic, exchange, method_call, method_headers

GET_ROLE = method_call("getRole", {})
ROLES = {"roles": {"lease_ttl": 3.0, "renew_interval": 1.0}}
STORM_CONNECTIONS = 120
STORM_SECONDS = 4.0  # longer than the lease's ttl


def _role(port: int, authorization: str) -> str:
    # 5 s: far more than a getRole takes, far less than the storm's queue of guesses.
    reply = exchange(port, GET_ROLE, method_headers("getRole", authorization), timeout=5.0)
    assert reply.status == 200, reply
    return "active" if b"<VALUE>active</VALUE>" in reply.body else reply.body.decode()


@pytest.mark.slow
def test_a_login_storm_keeps_the_lease_and_known_callers_served(tmp_path: Path) -> None:
    # The administrator's password at full strength (the harness's are cheap, for speed).
    users = tmp_path / "users"
    users.write_text(
        "".join(
            format_users_line(
                UserRecord(
                    name,
                    role,
                    hash_password(pw) if name == "admin" else hash_password(pw, n=2**4, r=1),
                )
            )
            + "\n"
            for name, (role, pw) in USERS.items()
        )
    )
    with provider_process(tmp_path, config=ROLES) as gm:
        assert _role(gm.port, basic("admin")) == "active"  # verified once, before the storm
        cim_headers = {
            k: v
            for k, v in method_headers("getRole", None).items()
            if k not in ("Host", "Content-Type")
        }
        wrong = [
            build_post(
                "/cimom",
                GET_ROLE,
                cim_headers,
                user="admin",
                password=f"guess-{n}",
            )
            for n in range(STORM_CONNECTIONS)
        ]
        result: list[LoadResult] = []
        storm = threading.Thread(
            target=lambda: result.append(
                run_load(wrong, port=gm.port, connections=STORM_CONNECTIONS, duration=STORM_SECONDS)
            )
        )
        storm.start()
        try:
            time.sleep(1.0)
            while storm.is_alive():
                # A new connection each time, as wbemexec from cron: its credentials were
                # verified before the storm, so it does not queue behind the guesses.
                assert _role(gm.port, basic("admin")) == "active"
                time.sleep(0.5)
        finally:
            storm.join(STORM_SECONDS + 60)
        [load] = result
        assert set(load.statuses) == {401}
        assert _role(gm.port, basic("admin")) == "active"
        assert "LEASE_EXPIRED" not in gm.log
