"""The checkScavengedMember cron entry runs wbemexec on the local socket as the crontab's
user; wbemexec exits 0 on a CIM error (as OpenPegasus' does), so a user the socket refuses
meant a cron job refused every half hour for the 10 days of a loan, and no scavenged member
ever checked. The node says so at start."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from tests.harness import configure


@pytest.mark.parametrize(
    ("user", "warned"),
    [("nobody", True), ("root", False)],
)
def test_a_cron_user_the_socket_would_refuse_is_named_at_start(
    tmp_path: Path, user: str, warned: bool
) -> None:
    pwd.getpwnam(user)  # both exist on Debian
    node = configure(
        tmp_path,
        config={"gicap": {"crontab": str(tmp_path / "cron.d-gm"), "crontab_user": user}},
    )
    node.start()
    try:
        log = node.log
    finally:
        node.stop()
    said = f"The checkScavengedMember cron entry runs as {user}, whom the local socket would"
    assert (said in log) is warned, log[-2000:]
    if warned:
        assert "checkScavengedMember needs the capacity-administrator role; nobody has" in log
        assert "gm-provider user add nobody --role capacity-administrator --local" in log


def test_a_listed_cron_user_is_told_how_to_give_it_the_local_role(tmp_path: Path) -> None:
    """An HTTP account of the cron user's name does not hold on the socket unless `local`:
    the warning gives the `user role` that adds it (`user add` would say it exists)."""
    from provider.http.auth import UserRecord, format_users_line, hash_password
    from tests.harness import write_users

    users = tmp_path / "users"
    write_users(users)
    record = UserRecord("nobody", "capacity-administrator", hash_password("x", n=2**4, r=1))
    with users.open("a", encoding="utf-8") as f:
        f.write(format_users_line(record) + "\n")
    node = configure(
        tmp_path,
        config={"gicap": {"crontab": str(tmp_path / "cron.d-gm"), "crontab_user": "nobody"}},
    )
    node.start()
    try:
        log = node.log
    finally:
        node.stop()
    assert "gm-provider user role nobody capacity-administrator --all-groups --local" in log, log[
        -2000:
    ]
