"""GiCAP: capacity groups, rights seizure, scavenged members and temporary capacity.

`install(registry, services)` wires the domain into the server: the capacity service (store,
probes, notifications, cron), the CIM instance providers and methods, the role listener that
re-installs the checkScavengedMember cron entry on a new active, and the background pass
(rebalance, 12-hour rule, TiCAP accounting, warnings). Configuration: `[gicap]`, `[probe]`,
`[notify]`; see docs/capacity.md.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from provider.cim.provider import ProviderRegistry
from provider.drivers.notify import Notifier, notify_settings
from provider.drivers.probe import make_prober, probe_settings
from provider.paths import builtin_socket_path
from provider.roles import Role
from provider.services import Services

from .cim import register
from .service import CapacityService, gicap_settings

__all__ = ["install"]

log = logging.getLogger(__name__)


def _cron_socket(services: Services) -> Path | None:
    """The socket the cron entry's wbemexec must use, when it is not the one wbemexec finds
    by itself in cron's environment: the built-in default, whatever `GM_PROVIDER_SOCKET` the
    server was started with (cron does not have it)."""
    configured = getattr(services.config.server, "unix_socket", None)
    if configured is None or Path(configured) == builtin_socket_path():
        return None
    return Path(configured)


def install(registry: ProviderRegistry, services: Services) -> None:
    config = services.config
    probe = probe_settings(config)
    settings = gicap_settings(
        config, services.etc_dir, Path(sys.executable).parent, _cron_socket(services)
    )
    service = CapacityService(
        services,
        settings,
        make_prober(probe),
        probe,
        Notifier(notify_settings(config), services.node_name),
    )
    if services.roles.role is Role.ACTIVE:
        service.seed_if_needed()
    service.load_sync()
    services.roles.add_listener(service.on_role_change)
    register(registry, service)
    services.add_background(service.run)
