"""The crontab entry that runs checkScavengedMember (seed 003, SPEC §4.3).

Seed 003 shows cron on a Group Manager running
`/opt/wbem/bin/wbemexec /etc/opt/iCAP/GiCAP.checkScavengedMember.xml`, and says "The job is
removed from crontab only if there is no member in any group from where active Group Manager
has seized rights." Here the entry runs our wbemexec with the request file in
`<etc>/requests/`, carries a comment marker naming this node so it is found again, and is
managed with python-crontab in either

* a user's crontab (`[gicap] crontab = "user"`, the default: the user running the server), or
* a crontab file (`crontab = "/path/to/file"`, the `tabfile=` mode), in the format of a
  user's crontab (five time fields, then the command), or, with `crontab_user` set, in the
  format of /etc/crontab and /etc/cron.d files, whose sixth field is the user the command
  runs as (crontab(5)). A file under /etc/cron.d or /etc/crontab itself needs `crontab_user`:
  cron would read the command's first word as a user name and never run it.

`sync(wanted)` is idempotent: it installs the entry when wanted and missing (or changed),
removes it when not wanted, and otherwise leaves the file untouched.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crontab import CronTab

__all__ = ["CronSettings", "ScavengerCron"]


@dataclass(frozen=True)
class CronSettings:
    target: str = "user"  # "user", or the path of a crontab file
    schedule: str = "*/30 * * * *"  # [I] §3.8: "≤ 1 h is reasonable"; iCAP's loop is 30 min
    wbemexec: Path = Path("wbemexec")
    request_file: Path = Path("GiCAP.checkScavengedMember.xml")
    socket: Path | None = None  # exported as GM_PROVIDER_SOCKET when not the default
    user: str | None = None  # a system crontab file's user field (/etc/cron.d), or None


class ScavengerCron:
    def __init__(self, settings: CronSettings, node: str) -> None:
        self.settings = settings
        self.marker = f"gm-provider checkScavengedMember node={node}"

    @property
    def command(self) -> str:
        s = self.settings
        prefix = f"GM_PROVIDER_SOCKET={s.socket} " if s.socket is not None else ""
        return f"{prefix}{s.wbemexec} {s.request_file}"

    def _open(self) -> CronTab:
        if self.settings.target == "user":
            return CronTab(user=True)
        path = Path(self.settings.target)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        if self.settings.user is not None:
            return CronTab(tabfile=str(path), user=False)  # system format: a user field
        return CronTab(tabfile=str(path))

    def _write(self, tab: CronTab) -> None:
        if self.settings.target == "user":
            tab.write()
            return
        # Atomically: cron (or a test) may read the file at any moment.
        path = Path(self.settings.target)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".crontab.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(tab.render())
        os.replace(tmp, path)

    def installed(self) -> bool:
        return any(True for _ in self._open().find_comment(self.marker))

    def sync(self, wanted: bool) -> str:
        """Make the entry present iff `wanted`; returns "installed", "removed" or "unchanged"."""
        target = self.settings.target
        if not wanted and target != "user" and not Path(target).exists():
            return "unchanged"  # nothing to remove: no file (or directory) is made for it
        tab = self._open()
        jobs = list(tab.find_comment(self.marker))
        current = [
            j
            for j in jobs
            if j.command == self.command
            and str(j.slices) == self.settings.schedule
            and (self.settings.user is None or j.user == self.settings.user)
        ]
        if wanted and len(current) == 1 and len(jobs) == 1:
            return "unchanged"
        if not wanted and not jobs:
            return "unchanged"
        for job in jobs:
            tab.remove(job)
        if wanted:
            job = tab.new(command=self.command, comment=self.marker, user=self.settings.user)
            job.setall(self.settings.schedule)
        self._write(tab)
        return "installed" if wanted else "removed"
