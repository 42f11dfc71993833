"""Hardware drivers: how the Group Manager reaches enclosures, blades and Virtual Connect.

    driver = create_driver("simulator", DriverContext(...))
    state = driver.read([BayRef("enc01", "3")])[BayRef("enc01", "3")]
    if state.power is PowerState.ON:
        driver.hard_power_off(BayRef("enc01", "3"), job_key="job 7 power_off_source")

The interface (`HardwareDriver`) is what a failover or move job needs (reference
vcem-domain.md §3.2, §8.3): read a bay's state, hard power-off (press-and-hold), power on,
assign and unassign a server profile, and run discovery on a bay. Calls block and are made
from worker threads, never from the asyncio loop. A real driver (Redfish `ComputerSystem.Reset`
with `ForceOff`/`On`, Virtual Connect or OneView profile calls) registers itself by name with
`register_driver`; the configuration picks one (`[vcem] driver = "simulator"`, the default).
"""

from __future__ import annotations

from .base import (
    BayRef,
    DeviceState,
    Discovery,
    DriverContext,
    HardwareDriver,
    PowerState,
    create_driver,
    driver_names,
    register_driver,
)
from .simulator import SimulatorDriver, SimulatorSettings, parse_simulator_settings

__all__ = [
    "BayRef",
    "DeviceState",
    "Discovery",
    "DriverContext",
    "HardwareDriver",
    "PowerState",
    "SimulatorDriver",
    "SimulatorSettings",
    "create_driver",
    "driver_names",
    "parse_simulator_settings",
    "register_driver",
]
