"""VCEM operations in domain words: submit a failover or move, designate spares, maintenance,
cancel. Blocking (store calls); the CIM layer runs them in a thread. Every change is one
fenced transaction of the active (`RoleManager.fenced(what)`), which re-checks the rules
inside it, so two clients racing cannot both pass a check that only one may pass: on SQLite
the write transaction holds the database; on PostgreSQL, where writes run READ COMMITTED, a
change first locks its domain group's row (`repository.lock_group`), and so does a starting
job (`repository.take_lock`), so the changes of one group, and a job's start, take turns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from provider.errors import InvalidParameter, NotFound, Refused
from provider.jobs.journal import Job, JobJournal, JobRequest
from provider.jobs.model import JobType
from provider.store import FencedTx, Tx

from . import repository as repo
from .inventory import Inventory, normalise_ip

__all__ = ["FailoverSource", "VcemService"]


@dataclass(frozen=True)
class FailoverSource:
    """How the caller named the failed server: a bay, a host name, or an IP address."""

    enclosure: str | None = None
    bay: str | None = None
    host: str | None = None
    ip: str | None = None

    def check(self) -> None:
        """SPEC 3.3: EnclosureName and BayName, or HostName, or IPAddress; else parameter 4."""
        by_bay = self.enclosure is not None or self.bay is not None
        ways = [by_bay, self.host is not None, self.ip is not None]
        if sum(ways) != 1:
            raise InvalidParameter(
                "Identify the failed server in one way only: EnclosureName and BayName, or "
                "HostName, or IPAddress."
            )
        if by_bay and (not self.enclosure or not self.bay):
            raise InvalidParameter("EnclosureName and BayName must be given together.")
        if self.host is not None and not self.host.strip():
            raise InvalidParameter("HostName is empty.")
        if self.ip is not None and not self.ip.strip():
            raise InvalidParameter("IPAddress is empty.")
        if self.ip is not None:
            try:
                normalise_ip(self.ip)
            except ValueError:
                raise InvalidParameter(
                    f"IPAddress {self.ip.strip()!r} is not an IP address; give an IPv4 address "
                    "such as 192.0.2.10 or an IPv6 address such as 2001:db8::10."
                ) from None

    def describe(self) -> str:
        if self.host is not None:
            return f"host {self.host}"
        if self.ip is not None:
            return f"IP address {self.ip}"
        return f"enclosure {self.enclosure} bay {self.bay}"


class VcemService:
    def __init__(
        self,
        store: Any,
        roles: Any,
        journal: JobJournal,
        wake: Callable[[], None],
    ) -> None:
        self.store = store
        self.roles = roles
        self.journal = journal
        self.wake = wake

    # -- failover and move ---------------------------------------------------------------

    def resolve(self, tx: Tx, source: FailoverSource) -> repo.BayRow:
        """The bay of the failed server; "The host name or IP address is mapped to its
        enclosure and bay location" (WP-NEW-13). Unknown → CIM_ERR_NOT_FOUND."""
        source.check()
        if source.host is not None:
            row = repo.bay_by_host(tx, source.host)
        elif source.ip is not None:
            row = repo.bay_by_ip(tx, source.ip)
        else:
            assert source.enclosure is not None and source.bay is not None
            row = repo.bay(tx, source.enclosure, source.bay)
            if row is None and not tx.scalar(
                "SELECT COUNT(*) FROM vcem_enclosures WHERE name = %(e)s", {"e": source.enclosure}
            ):
                raise NotFound(f"No enclosure named {source.enclosure}.")
        if row is None:
            raise NotFound(
                f"No server is known by {source.describe()} (discovery data of the inventory)."
                + moved_hint(tx, source)
            )
        return row

    def submit_failover(
        self,
        source: FailoverSource,
        owner: str,
        with_submission: Callable[[FencedTx, int], None] | None = None,
    ) -> int:
        """Submit a failover job; `with_submission(tx, job_id)` runs in the same transaction
        (an automatic failover's decision)."""
        with self.roles.fenced("fail over a server profile") as tx:
            bay = self.resolve(tx, source)
            self._refuse_if_maintenance(tx, bay.group)
            if bay.profile is None:
                raise Refused(
                    f"{bay.label} has no server profile assigned; there is nothing to fail over."
                )
            job_id = self.journal.submit(
                JobRequest(
                    job_type=JobType.FAILOVER,
                    domain_group=bay.group,
                    requested_as=source.describe(),
                    source_enclosure=bay.enclosure,
                    source_bay=bay.bay,
                    profile=bay.profile,
                    owner=owner,
                ),
                tx,
            )
            if with_submission is not None:
                with_submission(tx, job_id)
        self.wake()
        return job_id

    def submit_move(
        self, profile_name: str, enclosure: str, bay_name: str, power_on: bool, owner: str
    ) -> int:
        with self.roles.fenced("move a server profile") as tx:
            profile = repo.profile(tx, profile_name)
            if profile is None:
                raise NotFound(f"No server profile named {profile_name}.")
            target = repo.bay(tx, enclosure, bay_name)
            if target is None:
                raise NotFound(f"No bay {bay_name} in enclosure {enclosure}.")
            if target.group != profile.group:
                raise Refused(
                    f"{target.label} is in domain group {target.group}, profile {profile.name} "
                    f"in {profile.group}; a move stays within its domain group."
                )
            if (profile.enclosure, profile.bay) == (enclosure, bay_name):
                raise InvalidParameter(f"Profile {profile.name} is already in {target.label}.")
            if target.covered_by is not None:
                raise Refused(
                    f"{target.label} is covered by the full-height blade in bay "
                    f"{target.covered_by}; choose another bay."
                )
            if target.profile is not None:
                raise Refused(f"{target.label} has profile {target.profile}; choose a free bay.")
            self._refuse_if_maintenance(tx, profile.group)
            job_id = self.journal.submit(
                JobRequest(
                    job_type=JobType.MOVE,
                    domain_group=profile.group,
                    requested_as=f"profile {profile.name} to {target.label}",
                    source_enclosure=profile.enclosure,
                    source_bay=profile.bay,
                    profile=profile.name,
                    owner=owner,
                    target_enclosure=enclosure,
                    target_bay=bay_name,
                    power_on=power_on,
                ),
                tx,
            )
        self.wake()
        return job_id

    def _refuse_if_maintenance(self, tx: FencedTx, group_name: str) -> None:
        group = repo.lock_group(tx, group_name)
        if group is not None and group.maintenance:
            raise Refused(
                f"Domain group {group_name} is in maintenance (started by "
                f"{group.maintenance_owner or 'an administrator'}); failovers and moves in it are "
                "refused until maintenance is completed or cancelled (setMaintenance)."
            )

    def cancel(self, job_id: int, user: str) -> Job:
        return self.journal.cancel(job_id, user)

    # -- spares and maintenance ----------------------------------------------------------

    def set_spare(self, enclosure: str, bay_name: str, is_spare: bool, user: str) -> None:
        with self.roles.fenced("change spare designations") as tx:
            found = repo.bay(tx, enclosure, bay_name)
            if found is not None:
                repo.lock_group(tx, found.group)
                found = repo.bay(tx, enclosure, bay_name)  # as of the lock (READ COMMITTED)
            if found is None:
                raise NotFound(f"No bay {bay_name} in enclosure {enclosure}.")
            bay = found
            if is_spare:
                if bay.covered_by is not None:
                    raise Refused(
                        f"{bay.label} is covered by the full-height blade in bay {bay.covered_by};"
                        " designate that bay instead."
                    )
                if bay.profile is not None:
                    raise Refused(
                        f"{bay.label} has profile {bay.profile} assigned; a spare bay has no "
                        "profile (reference §2.3). Move or remove the profile first."
                    )
            self._refuse_if_locked(tx, bay.group)
            tx.execute(
                "UPDATE vcem_bays SET is_spare = %(s)s WHERE enclosure = %(e)s AND bay = %(b)s",
                {"s": is_spare, "e": enclosure, "b": bay_name},
            )
            tx.audit(f"{user} set spare={is_spare} on {bay.label}")

    def _refuse_if_locked(self, tx: FencedTx, group_name: str) -> None:
        running = tx.scalar(
            "SELECT id FROM gm_jobs WHERE domain_group = %(g)s AND state IN ('starting','running')",
            {"g": group_name},
        )
        if running is not None:
            raise Refused(
                f'Domain group {group_name} is locked by job {running} ("locks the VC Domain '
                'Group ... to other operations"); try again when the job has ended.'
            )

    def set_maintenance(self, group_name: str, action: str, user: str) -> None:
        """start / complete / cancel (vcemcli -startvcdmaint / -completevcdmaint /
        -cancelvcdmaint, reference §6). Nothing to propagate here: the group's configuration
        is not modelled, so complete and cancel both end the freeze."""
        if action not in ("start", "complete", "cancel"):
            raise InvalidParameter(f"Action must be start, complete or cancel, not {action!r}.")
        with self.roles.fenced("change domain maintenance") as tx:
            group = repo.lock_group(tx, group_name)
            if group is None:
                raise NotFound(f"No domain group named {group_name}.")
            if action == "start":
                if group.maintenance:
                    raise Refused(
                        f"Domain group {group_name} is in maintenance already (started by "
                        f"{group.maintenance_owner})."
                    )
                self._refuse_if_locked(tx, group_name)
                tx.execute(
                    "UPDATE vcem_groups SET maintenance = TRUE, maintenance_owner = %(u)s,"
                    " maintenance_since = %(t)s WHERE name = %(g)s",
                    {"u": user, "t": time.time(), "g": group_name},
                )
            else:
                if not group.maintenance:
                    raise Refused(f"Domain group {group_name} is not in maintenance.")
                tx.execute(
                    "UPDATE vcem_groups SET maintenance = FALSE, maintenance_owner = NULL,"
                    " maintenance_since = NULL WHERE name = %(g)s",
                    {"g": group_name},
                )
            tx.audit(f"{user}: maintenance {action} on domain group {group_name}")
        if action != "start":
            self.wake()  # queued jobs of the group may run now (and will check again)

    def seed(self, inventory: Inventory, driver: Any) -> bool:
        with self.roles.fenced("seed the inventory") as tx:
            return repo.seed(tx, inventory, driver)


# How every hint of `moved_hint` begins after its job number (the events' mail tells by it).
MOVED_MARK = " its profile "


def moved_hint(tx: Tx, source: FailoverSource) -> str:
    """When a job moved the named server's profile and discovery has not found it on the
    target yet (`[vcem] rediscovery_delay_s`, 10 minutes by default), where it is and how to
    name it meanwhile; else "". The move dropped the name from the source, as VCEM's does.
    Said to a failover by name, and in the decision on an event that names the server."""
    if source.host is not None:
        where, params = "lower(rediscover_host) = %(h)s", {"h": source.host.strip().lower()}
    elif source.ip is not None:
        where, params = "rediscover_ips LIKE %(ip)s", {"ip": f'%"{normalise_ip(source.ip)}"%'}
    else:
        return ""
    row = tx.fetchone(
        "SELECT j.id, j.target_enclosure, j.target_bay, j.rediscover_at, j.state, j.error_step,"
        " j.profile, p.enclosure, p.bay, t.server_present FROM gm_jobs j"
        " LEFT JOIN vcem_profiles p ON p.name = j.profile"
        " LEFT JOIN vcem_bays t ON t.enclosure = j.target_enclosure AND t.bay = j.target_bay"
        f" WHERE j.rediscovered = FALSE AND {where} ORDER BY j.id DESC LIMIT 1",
        params,
    )
    if row is None:
        return ""
    job, enclosure, bay, due, state = int(row[0]), row[1], row[2], row[3], str(row[4])
    profile, step = row[6], row[5] or "unknown"
    by_bay = (
        f"name it by enclosure and bay: vcemcli -failover -enclosurename {enclosure} -bayname {bay}"
    )
    if state in ("starting", "running"):
        return (
            f" Job {job} is moving its profile to {enclosure} bay {bay} now; discovery finds "
            f"it there some minutes after the job ([vcem] rediscovery_delay_s). Meanwhile "
            f"{by_bay}"
        )
    if state != "completed" and row[7] is None:
        # A move that failed half-way (steps._stranded): the profile is on no bay.
        return (
            f" Job {job} took its profile {profile} off its bay and ended in error (step "
            f"{step}); the profile is assigned to no bay. Fix the cause, then assign it where "
            f"it should run: vcemcli -move profile -profilename {profile} "
            f"-targetenclosurename {enclosure} -targetbayname {bay}"
        )
    if state == "completed" and row[9] is not None and not row[9]:
        # Moved without power-on to an empty bay (steps.runs_nowhere), as its check_target
        # read it: applied once a server is inserted; nothing to discover until then.
        return (
            f" Job {job} moved its profile {profile} to {enclosure} bay {bay}, which has no "
            "server: it runs nowhere until a server is inserted there (the profile is applied "
            "then), or until it is moved to a bay with a server: vcemcli -move profile "
            f"-profilename {profile} -targetenclosurename ENCLOSURE -targetbayname BAY"
        )
    if state != "completed" or due is None:
        return (
            f" Job {job} moved its profile to {enclosure} bay {bay} and ended in error (step "
            f"{step}); discovery does not run after a failed job, so {by_bay}"
        )
    when = time.strftime("%H:%M:%S UTC", time.gmtime(float(due)))
    return (
        f" Job {job} moved its profile to {enclosure} bay {bay}; discovery finds it there at "
        f"{when} ([vcem] rediscovery_delay_s). Until then {by_bay}"
    )
