"""A VCEM stack without a server: store, role manager, simulator, journal, runner, service.

For tests of the services and the job runner below the CIM layer (the end-to-end tests go
through `tests.harness.provider_process`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provider.drivers import DriverContext, SimulatorDriver
from provider.errors import ConfigError
from provider.jobs import JobJournal, JobRunner, JobState, StepContext
from provider.jobs.journal import Job
from provider.roles import RoleManager
from provider.store import Store, open_store
from provider.vcem.inventory import Inventory, load_inventory
from provider.vcem.service import VcemService

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "etc" / "inventory.example.toml"


@dataclass
class Stack:
    store: Store
    roles: RoleManager
    driver: SimulatorDriver
    journal: JobJournal
    runner: JobRunner
    service: VcemService
    inventory: Inventory

    async def wait(self, job_id: int, timeout: float = 10.0) -> Job:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job = await asyncio.to_thread(self.journal.get, job_id)
            if job.state in (JobState.COMPLETED, JobState.EXCEPTION, JobState.TERMINATED):
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} still {job.state} after {timeout}s")
            await asyncio.sleep(0.01)

    def sim(self, enclosure: str, bay: str) -> dict[str, Any]:
        with self.store.read() as tx:
            row = tx.fetchone(
                "SELECT power, profile, power_ons, power_offs FROM sim_bays"
                " WHERE enclosure = %(e)s AND bay = %(b)s",
                {"e": enclosure, "b": bay},
            )
        assert row is not None
        return {"power": row[0], "profile": row[1], "power_ons": row[2], "power_offs": row[3]}


@contextlib.asynccontextmanager
async def vcem_stack(
    tmp_path: Path,
    simulator: Mapping[str, Any] | None = None,
    inventory: Path = EXAMPLE,
    start_runner: bool = True,
    store_url: str | None = None,
    rediscovery_delay: float = 0.0,
) -> AsyncIterator[Stack]:
    store = open_store(store_url or f"sqlite:///{tmp_path}/gm.db")
    roles = RoleManager(store, "gm1", ttl=30, renew_interval=5, start_as="active")
    roles.start()
    driver = SimulatorDriver(
        DriverContext(
            settings=dict(simulator or {}),
            config_error=lambda key, msg: ConfigError(f"[simulator] {key}: {msg}"),
            store=store,
            fenced=roles.fenced,
            state_dir=tmp_path,
        )
    )
    journal = JobJournal(store, roles.fenced)
    inv = load_inventory(inventory)
    context = StepContext(store, journal, driver, rediscovery_delay, __import__("time").time)
    holder: list[JobRunner] = []
    service = VcemService(store, roles, journal, lambda: holder[0].wake())
    runner = JobRunner(
        journal, context, roles, poll_interval=0.05, on_active=lambda: service.seed(inv, driver)
    )
    holder.append(runner)
    service.seed(inv, driver)
    task = asyncio.create_task(runner.run()) if start_runner else None
    try:
        yield Stack(store, roles, driver, journal, runner, service, inv)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        roles.close()
        store.close()
