"""The hardware driver interface and the registry of drivers by name."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from provider.errors import ConfigError

__all__ = [
    "BayRef",
    "DeviceState",
    "Discovery",
    "DriverContext",
    "HardwareDriver",
    "PowerState",
    "create_driver",
    "driver_names",
    "register_driver",
]


class PowerState(enum.Enum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"  # no server, or the management processor did not answer


class BayRef(NamedTuple):
    enclosure: str
    bay: str

    def __str__(self) -> str:
        return f"{self.enclosure} bay {self.bay}"


@dataclass(frozen=True)
class DeviceState:
    """One bay as the hardware reports it now."""

    present: bool  # a server blade is physically in the bay
    model: str
    generation: str
    product: str  # "ProLiant" | "Integrity" | "" when not identified
    power: PowerState
    profile: str | None  # the Virtual Connect profile applied to the bay


@dataclass(frozen=True)
class Discovery:
    """What discovery (HP SIM in VCEM) finds on a bay's running OS."""

    host: str | None
    ips: tuple[str, ...]


@dataclass(frozen=True)
class DriverContext:
    """What a driver may use: its configuration section and the store (for the simulator)."""

    settings: Mapping[str, Any]  # the driver's configuration section, e.g. [simulator]
    config_error: Callable[[str | None, str], ConfigError]  # (key, message) -> line-precise
    store: Any  # provider.store.Store
    fenced: Callable[[str], AbstractContextManager[Any]]  # RoleManager.fenced
    state_dir: Path


class HardwareDriver(ABC):
    """Every call blocks until the hardware has done it (or raises DeviceError)."""

    name: str = ""

    @abstractmethod
    def read(self, bays: Sequence[BayRef]) -> dict[BayRef, DeviceState]:
        """The state of each bay; unknown bays raise DeviceError."""

    @abstractmethod
    def hard_power_off(self, bay: BayRef, job_key: str) -> None:
        """Press and hold the power button: off now, no graceful shutdown (seed 002,
        reference §3.2 step 3; Redfish ForceOff)."""

    @abstractmethod
    def power_on(self, bay: BayRef, job_key: str) -> None:
        """Momentary press: the server boots (from SAN, with the profile's identity)."""

    @abstractmethod
    def assign_profile(self, bay: BayRef, profile: str, job_key: str) -> None:
        """Apply `profile` (its MACs, WWNs, serial, UUID, boot settings) to the bay."""

    @abstractmethod
    def unassign_profile(self, bay: BayRef, profile: str, job_key: str) -> None:
        """Remove `profile` from the bay; its addresses stay reserved for it."""

    @abstractmethod
    def discover(self, bay: BayRef) -> Discovery:
        """Find the host name and IP addresses of the OS running in the bay."""

    def seed(self, tx: Any, inventory: Any) -> None:  # noqa: B027 - optional for real drivers
        """Initialise driver-side state from the inventory in the store's seed transaction
        (the simulator creates its devices; real hardware needs nothing)."""


DriverFactory = Callable[[DriverContext], HardwareDriver]

_REGISTRY: dict[str, DriverFactory] = {}


def register_driver(name: str, factory: DriverFactory) -> None:
    if name in _REGISTRY:
        raise ValueError(f"a hardware driver named {name!r} is already registered")
    _REGISTRY[name] = factory


def driver_names() -> list[str]:
    return sorted(_REGISTRY)


def create_driver(name: str, context: DriverContext) -> HardwareDriver:
    """The driver registered as `name`; ValueError (naming the known ones) if none is."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"unknown hardware driver {name!r}; known: {', '.join(driver_names())}")
    return factory(context)
