"""The CIM face of automatic event handling: GM_EventRule (the rules as loaded),
GM_EventDecision (recent decisions, newest first) and GM_GroupManager.setAutomaticFailover,
the kill switch per domain group (reference vcem-domain.md §5.4: "a kill switch per group").

The kill switch is GM_DomainGroup.AutomaticFailoverDisabled, the `auto_failover_disabled`
column VCEM's inventory seeds; the VCEM repository has no setter for it, so the method writes
that one column here, in a fenced transaction of the active, and audits who did it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from provider.cim.provider import (
    InstanceProvider,
    MethodOutcome,
    MethodSpec,
    OperationContext,
    ProviderRegistry,
    Row,
)
from provider.errors import NotFound
from provider.vcem import repository as repo

from .journal import Decision, DecisionLog
from .rules import RuleSet, RulesFile

__all__ = ["install_cim", "set_automatic_failover"]

NS = "root/cimv2"


def _rule_rows(rules: RuleSet) -> Iterable[Row]:
    for position, rule in enumerate(rules.rules, start=1):
        yield {
            "Name": rule.name,
            "Description": rule.description,
            "Enabled": rule.enabled,
            "Mode": rule.mode.value,
            "Position": position,
            "IndicationClasses": list(rule.classes),
            "PropertyMatches": rule.describe_match(),
            "Systems": list(rule.systems),
            "DomainGroups": list(rule.groups),
            "TimeWindows": [w.describe() for w in rule.windows],
            "TimeZone": rules.timezone_name,
            "CooldownMinutes": rule.cooldown_minutes,
            "Source": f"{rules.path}:{rule.line}",
        }


class _Rules(InstanceProvider):
    def __init__(self, rules: RulesFile) -> None:
        self.rules = rules

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        return list(_rule_rows(self.rules.current()))


def _decision_row(d: Decision) -> Row:
    return {
        "InstanceID": d.instance_id,
        "Time": d.at,
        "Node": d.node,
        "Sender": d.sender,
        "IndicationClass": d.indication_class,
        "IndicationIdentifier": d.indication_id,
        "EventID": d.event_id,
        "PerceivedSeverity": d.severity,
        "SystemName": d.system_named,
        "EnclosureName": d.enclosure,
        "BayName": d.bay,
        "DomainGroup": d.domain_group,
        "Rule": d.rule,
        "Mode": d.mode,
        "Decision": d.outcome.value,
        "JobID": d.job_id,
        "Reason": d.reason,
        "Notified": d.notified,
        "MailState": d.mail,
        "EndMailState": d.end_mail,
    }


class _Decisions(InstanceProvider):
    def __init__(self, journal: DecisionLog) -> None:
        self.journal = journal

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        for decision in self.journal.recent():
            yield _decision_row(decision)

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        instance_id = str(next(iter(keys.values()), ""))
        decision = self.journal.get(instance_id)
        if decision is None:
            raise NotFound(
                f'No GM_EventDecision with InstanceID "{instance_id}" (kept: the '
                "newest decisions only)."
            )
        return _decision_row(decision)


def set_automatic_failover(roles: Any, group_name: str, enabled: bool, user: str) -> None:
    """Switch event-driven failover on or off for one domain group. Blocking."""
    with roles.fenced("switch automatic failover on or off") as tx:
        if repo.group(tx, group_name) is None:
            raise NotFound(f"No domain group named {group_name}.")
        tx.execute(
            "UPDATE vcem_groups SET auto_failover_disabled = %(off)s WHERE name = %(g)s",
            {"off": not enabled, "g": group_name},
        )
        state = "enabled" if enabled else "disabled"
        tx.audit(f"{user}: automatic failover {state} for domain group {group_name}")


def install_cim(
    registry: ProviderRegistry, roles: Any, rules: RulesFile, journal: DecisionLog
) -> None:
    registry.add_instances(NS, "GM_EventRule", _Rules(rules))
    registry.add_instances(NS, "GM_EventDecision", _Decisions(journal))

    async def switch(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        await asyncio.to_thread(
            set_automatic_failover,
            roles,
            str(params["DomainGroup"]),
            bool(params["Enabled"]),
            ctx.user,
        )
        return MethodOutcome(0)

    registry.add_method(
        NS,
        "GM_GroupManager",
        MethodSpec(
            "setAutomaticFailover",
            switch,
            changes_state=True,
            what="switch automatic failover on or off",
            action="manageEventRules",
            scope_param="DomainGroup",
        ),
    )
