"""Automatic event handling (SPEC 4.4; reference vcem-domain.md §5): the third way to
initiate failover in seed 000 — an indication arrives, and the Group Manager either alerts
the administrator or fails the server over itself and says so.

* `rules`    — etc/events.toml: parsing (errors name file and line) and pure matching;
* `decide`   — the pure decision for one indication (windows, kill switch, first occurrence);
* `journal`  — decisions recorded in the store (`events_decisions`, bounded) or, on a
  standby, in memory;
* `listener` — the ExportHandler: ExportIndication in, failover through failoverProfile's
  path, notifications by log and e-mail;
* `cim`      — GM_EventRule, GM_EventDecision and GM_GroupManager.setAutomaticFailover.

Configuration, `[events]` in gm-provider.toml:

    rules = "etc/events.toml"     # the rules file (default: events.toml in the product's etc/;
                                  # when that does not exist either: no rules)

Notifications use `[notify]` (provider.drivers.notify). `install(registry, services)` is
what the server calls; it returns the listener, which the application uses for export
requests. It imports the parts when called: `listener` needs `provider.vcem`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provider.app import ExportHandler
    from provider.cim.provider import ProviderRegistry
    from provider.services import Services

__all__ = ["install", "rules_path"]

_KEYS = {"rules"}


def rules_path(services: Services) -> Path:
    config = services.config
    section = config.section("events")
    for key in section:
        if key not in _KEYS:
            raise config.error(
                "events", key, f"unknown setting events.{key}; known: {', '.join(sorted(_KEYS))}."
            )
    value = section.get("rules")
    if value is None:
        return services.etc_dir / "events.toml"
    if not isinstance(value, str) or not value:
        raise config.error("events", "rules", "events.rules must be the path of the rules file.")
    path = Path(value)
    # Relative paths are relative to the directory above the configuration's folder, as
    # every path of gm-provider.toml (provider.config).
    return path if path.is_absolute() else config.etc_dir.parent / path


def install(registry: ProviderRegistry, services: Services) -> ExportHandler:
    import socket

    from provider.drivers.notify import Notifier, notify_settings
    from provider.privileges import authorizer_from_config

    from .cim import install_cim
    from .journal import DecisionLog
    from .listener import EventListener, FailoverPath
    from .rules import RulesFile

    config = services.config
    # An installation without the example file and without [events]: no rules, so every
    # indication is recorded as no-rule. A rules file that is configured must exist.
    # Read again whenever it changes (RulesFile): no restart, so no change of role.
    rules = RulesFile(rules_path(services), optional="rules" not in config.section("events"))
    # The same table the CIM layer checks methods with (provider.server), so a failover
    # started by an event needs what failoverProfile needs.
    authorizer = authorizer_from_config(config)
    journal = DecisionLog(
        services.store, services.roles, services.node_name, rules.current().retention
    )
    install_cim(registry, services.roles, rules, journal)
    listener = EventListener(
        rules=rules,
        journal=journal,
        store=services.store,
        roles=services.roles,
        failover=FailoverPath(
            registry, authorizer, services.roles, socket.gethostname(), services.audit
        ),
        notifier=Notifier(notify_settings(config), services.node_name),
        clock=services.clock,
        node=services.node_name,
    )
    services.add_background(listener.end_mails.run)
    return listener
