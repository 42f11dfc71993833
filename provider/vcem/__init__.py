"""Server profile failover (VCEM semantics): inventory, spare selection, services, CIM.

* `inventory`  — the `[vcem]` part of the inventory file, validated (errors name the line);
* `spares`     — pure spare selection (SPEC 4.1, reference vcem-domain.md §2.3);
* `repository` — the `vcem_*` tables; `service` — failover/move submission, spares,
  maintenance, cancel; `cim` — GM_DomainGroup, GM_Enclosure, GM_DeviceBay, GM_ServerProfile,
  GM_ConcreteJob and the methods failoverProfile, moveProfile, setSpare, setMaintenance,
  cancelJob.

`install(registry, services)` is what `provider.app` calls. It imports `cim` when called, not
at import time: `cim` needs `provider.jobs`, whose steps need `provider.vcem.repository`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provider.cim.provider import ProviderRegistry
    from provider.services import Services

__all__ = ["install"]


def install(registry: ProviderRegistry, services: Services) -> None:
    from .cim import install as install_cim

    install_cim(registry, services)
