"""The CIM face of VCEM: instance providers and GM_GroupManager methods.

`install(registry, services)` registers instance providers for GM_DomainGroup, GM_Enclosure,
GM_DeviceBay, GM_ServerProfile and GM_ConcreteJob, and the static methods failoverProfile,
moveProfile, setSpare, setMaintenance and cancelJob (SPEC 3.2-3.4); it starts the job runner
as a background task. Configuration, `[vcem]` in gm-provider.toml:

    driver = "simulator"          # hardware driver (provider.drivers); the simulator reads
                                  # its own [simulator] section
    rediscovery_delay_s = 600     # HP SIM discovery "in ten minutes" (reference §1.6)
    job_workers = 16              # threads that run job steps (device calls block)
    device_timeout_s = 300        # a job step whose hardware calls have not answered by
                                  # then fails the job (outcome unknown), unlocking the group
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pywbem import CIMInstanceName

from provider.cim.provider import (
    InstanceProvider,
    MethodOutcome,
    MethodSpec,
    OperationContext,
    ProviderRegistry,
    Row,
    WriteSpec,
    numbered,
)
from provider.drivers import DriverContext, create_driver
from provider.drivers.deadline import Deadline, TracedDriver
from provider.errors import InvalidParameter, NotFound
from provider.jobs import JobJournal, JobRunner, Step, StepContext, crash_hook
from provider.jobs.journal import Job
from provider.roles import Role
from provider.services import Services
from provider.store import Tx

from . import repository as repo
from .inventory import ENCLOSURE_TYPES, bay_sort_key, load_inventory
from .service import FailoverSource, VcemService

_R = TypeVar("_R")

__all__ = ["NS", "install", "job_instance_id", "job_row"]


log = logging.getLogger("gm.vcem")

NS = "root/cimv2"
_MANAGER = "GM_GroupManager"
_JOB_PREFIX = "GM:ConcreteJob:"
_VCEM_KEYS = {"driver", "rediscovery_delay_s", "job_workers", "device_timeout_s"}


def job_instance_id(job_id: int) -> str:
    return f"{_JOB_PREFIX}{job_id}"


def _job_ref(job_id: int) -> CIMInstanceName:
    return CIMInstanceName("GM_ConcreteJob", {"InstanceID": job_instance_id(job_id)}, namespace=NS)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def job_row(job: Job) -> Row:
    name = f"{job.job_type.value} {job.requested_as}"
    return {
        "InstanceID": job_instance_id(job.id),
        "JobID": job.id,
        "JobType": job.job_type.value,
        "Name": name,
        "JobState": job.state.cim,
        "DomainGroup": job.domain_group,
        "SourceEnclosureName": job.source_enclosure,
        "SourceBayName": job.source_bay,
        "TargetEnclosureName": job.target_enclosure,
        "TargetBayName": job.target_bay,
        "Profile": job.profile,
        "CurrentStep": job.current_step,
        "StepsDone": list(job.steps_done),
        "PercentComplete": job.percent,
        "ErrorCode": job.error_code,
        "ErrorDescription": job.error_description,
        "TimeSubmitted": _time(job.submitted_at),
        "StartTime": _time(job.started_at),
        "TimeOfLastStateChange": _time(job.changed_at),
        "Owner": job.owner,
        "Epoch": job.epoch,
    }


# -- instance providers ----------------------------------------------------------------------


class _Groups(InstanceProvider):
    def __init__(self, store: Any) -> None:
        self.store = store

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        with self.store.read() as tx:
            groups = repo.list_groups(tx)
            domains = {g.name: repo.domains_of_group(tx, g.name) for g in groups}
            spares = repo.available_spares(tx)
        for g in groups:
            yield _group_row(g, domains[g.name], spares.get(g.name, 0))

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        # One group's rows, not every group's (with their spare counts over every bay).
        name = _name_key(keys)
        with self.store.read() as tx:
            group = repo.group(tx, name)
            if group is None:
                raise NotFound(f"No domain group named {name}.")
            domains = repo.domains_of_group(tx, name)
            spares = repo.available_spares(tx, name).get(name, 0)
        return _group_row(group, domains, spares)


def _group_row(g: repo.GroupRow, domains: list[repo.DomainRow], spares: int) -> Row:
    return {
        "Name": g.name,
        "ElementName": g.description or g.name,
        "Domains": [d.name for d in domains],
        "SpareRequiresSameGeneration": g.same_generation,
        "Locked": g.locked_by_job is not None,
        "InMaintenance": g.maintenance,
        "AutomaticFailoverDisabled": g.auto_failover_disabled,
        "AvailableSpares": spares,
    }


def _name_key(keys: Mapping[str, Any]) -> str:
    """The Name key of a class keyed by Name alone (any case of the key's name)."""
    return str(next((v for k, v in keys.items() if k.lower() == "name"), ""))


def _by_name(
    store: Any, keys: Mapping[str, Any], find: Callable[[Tx, str], _R | None], what: str
) -> _R:
    """The row `find` reads by the Name key in one query, or NotFound naming it."""
    name = _name_key(keys)
    with store.read_one() as tx:
        row = find(tx, name)
    if row is None:
        raise NotFound(f"No {what} named {name}.")
    return row


class _Enclosures(InstanceProvider):
    def __init__(self, store: Any) -> None:
        self.store = store

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        with self.store.read() as tx:
            rows = repo.list_enclosures(tx)
        for e in rows:
            yield _enclosure_row(e)

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        return _enclosure_row(_by_name(self.store, keys, repo.enclosure, "enclosure"))


def _enclosure_row(e: repo.EnclosureRow) -> Row:
    return {
        "Name": e.name,
        "Domain": e.domain,
        "DomainGroup": e.group,
        "ElementName": f"{e.name} ({e.kind})",
        "DomainState": e.domain_state,
    }


def _bay_row(b: repo.BayRow, covered: list[str]) -> Row:
    return {
        "EnclosureName": b.enclosure,
        "BayName": b.bay,
        "DomainGroup": b.group,
        "IsSpare": b.is_spare,
        "ServerPresent": b.server_present,
        "ServerModel": b.model,
        "ServerGeneration": b.generation,
        "PowerState": b.power_state,
        "ProfileName": b.profile,
        "HostName": b.host,
        "IPAddresses": list(b.ips),
        "CoveredBays": covered,
    }


def _bay_fields_row(
    enclosure: str,
    bay: str,
    group: str,
    domain: str,
    domain_state: str,
    enclosure_position: int,
    is_spare: bool,
    full_height: bool,
    covered_by: str | None,
    server_present: bool,
    model: str,
    generation: str,
    product: str,
    power_state: str,
    host: str | None,
    ips: tuple[str, ...],
    profile: str | None,
    enclosure_kind: str,
) -> Row:
    """`_bay_row` of the BayRow these fields make, without building the BayRow (an
    enumeration makes 16,000 rows; tests/vcem check that both give the same)."""
    return {
        "EnclosureName": enclosure,
        "BayName": bay,
        "DomainGroup": group,
        "IsSpare": is_spare,
        "ServerPresent": server_present,
        "ServerModel": model,
        "ServerGeneration": generation,
        "PowerState": power_state,
        "ProfileName": profile,
        "HostName": host,
        "IPAddresses": list(ips),
        "CoveredBays": _covered_bays(bay, enclosure_kind) if full_height else [],
    }


class _Bays(InstanceProvider):
    def __init__(self, store: Any, service: VcemService) -> None:
        self.store = store
        self.service = service
        # ModifyInstance of IsSpare is setSpare: the same privilege in the bay's domain group.
        self.writes = WriteSpec(
            what="change spare designations", action="setSpare", scope=self._group_of
        )

    def _group_of(self, keys: Mapping[str, Any]) -> str | None:
        enclosure, bay = _bay_keys(keys)
        with self.store.read_one() as tx:
            row = repo.bay(tx, enclosure, bay)
        return row.group if row is not None else None

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        # Streams a page at a time (repository.iter_bays): bounded memory for 16,000 bays.
        return repo.iter_bays_as(self.store, _bay_fields_row)

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        enclosure, bay = _bay_keys(keys)
        with self.store.read_one() as tx:  # one indexed query: no BEGIN/COMMIT around it
            row = repo.bay(tx, enclosure, bay)
        if row is None:
            raise NotFound(f"No bay {bay} in enclosure {enclosure}.")
        return _bay_row(row, _covered(row))

    def modify(self, ctx: OperationContext, classname: str, keys: Row, changes: Row) -> None:
        enclosure, bay = _bay_keys(keys)
        unknown = {k for k in changes if k.lower() != "isspare"}
        if unknown:
            raise InvalidParameter(
                f"Only IsSpare of a GM_DeviceBay can be changed, not {', '.join(sorted(unknown))}."
            )
        value = next((v for k, v in changes.items() if k.lower() == "isspare"), None)
        if value is None:
            raise InvalidParameter("IsSpare must be true or false.")
        self.service.set_spare(enclosure, bay, bool(value), ctx.user)


def _covered(b: repo.BayRow) -> list[str]:
    """The bay a full-height blade also covers (N+8 in a c7000, N+4 in a c3000)."""
    return _covered_bays(b.bay, b.enclosure_kind) if b.full_height else []


def _covered_bays(bay: str, enclosure_kind: str) -> list[str]:
    reach = ENCLOSURE_TYPES.get(enclosure_kind, (16, 8))[1]
    return [str(bay_sort_key(bay)[0] + reach)]


def _bay_keys(keys: Mapping[str, Any]) -> tuple[str, str]:
    lower = {k.lower(): v for k, v in keys.items()}
    return str(lower.get("enclosurename", "")), str(lower.get("bayname", ""))


class _Profiles(InstanceProvider):
    def __init__(self, store: Any) -> None:
        self.store = store

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        # A page at a time, as the bays: bounded memory for 16,000 profiles.
        return repo.iter_profiles_as(self.store, _profile_row)

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        # By its key (an index), not a scan of every profile (60 ms at 15,000 profiles).
        return _profile_row(*_by_name(self.store, keys, repo.profile, "server profile"))


def _profile_row(
    name: str,
    group: str,
    enclosure: str | None,
    bay: str | None,
    boot_from_san: bool,
    macs: tuple[str, ...],
    wwns: tuple[str, ...],
    serial_number: str,
    uuid: str,
) -> Row:
    """The row of the ProfileRow these fields make (repository.iter_profiles_as)."""
    return {
        "Name": name,
        "DomainGroup": group,
        "EnclosureName": enclosure,
        "BayName": bay,
        "BootFromSAN": boot_from_san,
        "MACAddresses": list(macs),
        "WWNs": list(wwns),
        "VirtualSerialNumber": serial_number,
        "VirtualUUID": uuid,
    }


class _Jobs(InstanceProvider):
    def __init__(self, journal: JobJournal) -> None:
        self.journal = journal

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        for job in self.journal.iterate():
            yield job_row(job)

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        instance_id = str(next(iter(keys.values()), ""))
        number = numbered(instance_id, _JOB_PREFIX)
        if number is None:
            raise NotFound(f'No GM_ConcreteJob with InstanceID "{instance_id}".')
        return job_row(self.journal.get(number))


# -- install ---------------------------------------------------------------------------------


def _device_timeout(services: Services) -> float:
    """`[vcem] device_timeout_s`: VC profile assignment can take minutes on real hardware."""
    config = services.config
    value = config.section("vcem").get("device_timeout_s", 300)
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise config.error(
            "vcem", "device_timeout_s", "vcem.device_timeout_s: seconds > 0 (default 300)."
        )
    return float(value)


def _settings(services: Services) -> tuple[str, float, int]:
    config = services.config
    section = config.section("vcem")
    for key in section:
        if key not in _VCEM_KEYS:
            raise config.error(
                "vcem", key, f"unknown setting vcem.{key}; known: {', '.join(sorted(_VCEM_KEYS))}."
            )
    driver = section.get("driver", "simulator")
    delay = section.get("rediscovery_delay_s", 600)
    workers = section.get("job_workers", 16)
    if not isinstance(driver, str):
        raise config.error("vcem", "driver", "vcem.driver must be a string.")
    if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
        raise config.error("vcem", "rediscovery_delay_s", "vcem.rediscovery_delay_s: seconds >= 0.")
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 256:
        raise config.error("vcem", "job_workers", "vcem.job_workers: a whole number 1-256.")
    return driver, float(delay), workers


def _crash_hook(services: Services, spec: str | None) -> Callable[[Step, str], None]:
    try:
        return crash_hook(spec, services.state_dir)
    except ValueError:
        steps = ", ".join(s.value for s in Step if s is not Step.UNLOCK)
        raise services.config.error(
            "simulator",
            "crash_at",
            f'simulator.crash_at: "<step>[:intent|act|record]", steps: {steps}.',
        ) from None


def install(registry: ProviderRegistry, services: Services) -> None:
    store, roles, config = services.store, services.roles, services.config
    driver_name, rediscovery_delay, workers = _settings(services)
    inventory = load_inventory(services.inventory_path)
    sim_section = config.section("simulator")
    try:
        driver = create_driver(
            driver_name,
            DriverContext(
                settings=sim_section if driver_name == "simulator" else config.section(driver_name),
                config_error=lambda key, msg: config.error(driver_name, key, msg),
                store=store,
                fenced=roles.fenced,
                state_dir=services.state_dir,
            ),
        )
    except ValueError as exc:
        raise config.error("vcem", "driver", f"{exc}.") from None
    driver = TracedDriver(driver)
    deadline = Deadline(_device_timeout(services))
    journal = JobJournal(store, roles.fenced, clock=lambda: services.clock().timestamp())
    crash_spec = sim_section.get("crash_at") if driver_name == "simulator" else None
    context = StepContext(
        store=store,
        journal=journal,
        driver=driver,
        rediscovery_delay=rediscovery_delay,
        clock=lambda: services.clock().timestamp(),
        crash=_crash_hook(services, crash_spec),
        deadline=deadline.run,
    )
    holder: list[JobRunner] = []
    service = VcemService(store, roles, journal, lambda: holder[0].wake() if holder else None)

    def on_active() -> None:
        if service.seed(inventory, driver):
            log.info("seeded the store from %s", inventory.path)

    if roles.role is Role.ACTIVE:
        # Before the listeners open: the first request must already see the inventory.
        on_active()

    runner = JobRunner(journal, context, roles, workers=workers, on_active=on_active)
    holder.append(runner)
    services.add_background(runner.run)
    _register(registry, store, service, journal)


def _register(
    registry: ProviderRegistry, store: Any, service: VcemService, journal: JobJournal
) -> None:
    registry.add_instances(NS, "GM_DomainGroup", _Groups(store))
    registry.add_instances(NS, "GM_Enclosure", _Enclosures(store))
    registry.add_instances(NS, "GM_DeviceBay", _Bays(store, service))
    registry.add_instances(NS, "GM_ServerProfile", _Profiles(store))
    registry.add_instances(NS, "GM_ConcreteJob", _Jobs(journal))

    def text(params: Mapping[str, Any], name: str) -> str | None:
        value = params.get(name)
        return None if value is None else str(value)

    def source_of(params: Mapping[str, Any]) -> FailoverSource:
        source = FailoverSource(
            enclosure=text(params, "EnclosureName"),
            bay=text(params, "BayName"),
            host=text(params, "HostName"),
            ip=text(params, "IPAddress"),
        )
        source.check()
        return source

    async def failover(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        source = source_of(params)
        job_id = await asyncio.to_thread(
            service.submit_failover, source, ctx.user, ctx.with_submission
        )
        # "The failover job is then scheduled. Its job number is returned so the initiator
        # can check its status." (seed 000): 4096, job started.
        return MethodOutcome(4096, {"JobID": job_id, "Job": _job_ref(job_id)})

    async def move(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        job_id = await asyncio.to_thread(
            service.submit_move,
            str(params["ProfileName"]),
            str(params["TargetEnclosureName"]),
            str(params["TargetBayName"]),
            bool(params.get("PowerOn", True)),
            ctx.user,
        )
        return MethodOutcome(4096, {"JobID": job_id, "Job": _job_ref(job_id)})

    async def set_spare(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        await asyncio.to_thread(
            service.set_spare,
            str(params["EnclosureName"]),
            str(params["BayName"]),
            bool(params["IsSpare"]),
            ctx.user,
        )
        return MethodOutcome(0)

    async def set_maintenance(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        await asyncio.to_thread(
            service.set_maintenance, str(params["DomainGroup"]), str(params["Action"]), ctx.user
        )
        return MethodOutcome(0)

    async def cancel(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        await asyncio.to_thread(service.cancel, int(params["JobID"]), ctx.user)
        return MethodOutcome(0)

    # The domain group a call acts on, for users whose role is bound to groups (reference
    # §4.1 "Scope: Group"). What the call names must exist: it is CIM_ERR_NOT_FOUND with the
    # method's own text, for every user (a group-bound user was told it needed the role "for
    # every domain group" for a mistyped bay, host or job).

    def failed_server_group(params: Mapping[str, Any]) -> str:
        with store.read() as tx:
            return service.resolve(tx, source_of(params)).group

    def profile_group(params: Mapping[str, Any]) -> str:
        name = str(params["ProfileName"])
        with store.read() as tx:
            prof = repo.profile(tx, name)
        if prof is None:
            raise NotFound(f"No server profile named {name}.")
        return prof.group

    def bay_group(params: Mapping[str, Any]) -> str:
        enclosure, bay = str(params["EnclosureName"]), str(params["BayName"])
        with store.read() as tx:
            row = repo.bay(tx, enclosure, bay)
        if row is None:
            raise NotFound(f"No bay {bay} in enclosure {enclosure}.")
        return row.group

    def job_group(params: Mapping[str, Any]) -> str:
        with store.read() as tx:
            return journal.get(int(params["JobID"]), tx).domain_group

    for spec in (
        MethodSpec(
            "failoverProfile",
            failover,
            True,
            "fail over a server profile",
            scope=failed_server_group,
        ),
        MethodSpec("moveProfile", move, True, "move a server profile", scope=profile_group),
        MethodSpec("setSpare", set_spare, True, "change spare designations", scope=bay_group),
        MethodSpec(
            "setMaintenance",
            set_maintenance,
            True,
            "change domain maintenance",
            scope_param="DomainGroup",
        ),
        MethodSpec("cancelJob", cancel, True, "cancel a job", scope=job_group),
    ):
        registry.add_method(NS, _MANAGER, spec)
