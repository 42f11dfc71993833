"""GM_GroupManager: this node, and the pair's own methods `takeControl` and `stepDown`.

`takeControl` is `icapmanage -Q` (reference gicap-domain.md §1.4): a standby becomes active
with a new epoch; the former active learns it at its next write or lease renewal and drops to
standby before doing anything else (SPEC 4.2). It is the one state-changing method a standby
may run, so it does not pass the role gate. On an active node it is refused: the node already
has control. `stepDown` hands over gracefully: the lease is released so the standby can
take control at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from provider import __version__
from provider.cim.provider import (
    InstanceProvider,
    MethodOutcome,
    MethodSpec,
    OperationContext,
    ProviderRegistry,
    Row,
)
from provider.errors import NotFound
from provider.services import Services

__all__ = ["install_manager"]

NS = "root/cimv2"
CLASS = "GM_GroupManager"


class _ManagerInstances(InstanceProvider):
    def __init__(self, services: Services) -> None:
        self.services = services
        self.node = services.node_name
        # What does not change while the node runs, so that a GetInstance (a monitor polls
        # this one) reads only the role.
        self._fixed = {
            "Name": self.node,
            "ElementName": f"Group Manager {self.node}",
            "StoreBackend": str(services.store.dialect),
            "AutomaticTakeover": services.config.roles.automatic_takeover,
            "Version": __version__,
        }

    def enumerate(self, ctx: OperationContext, classname: str) -> Iterable[Row]:
        yield self._row()

    def get(self, ctx: OperationContext, classname: str, keys: Mapping[str, Any]) -> Row:
        # The one instance, without the default's scan.
        name = keys.get("Name")
        if name != self.node:
            raise NotFound(f"No {CLASS} instance with Name={name!r}: this node is {self.node!r}.")
        return self._row()

    def _row(self) -> Row:
        role, epoch, active = self.services.roles.state()
        return {**self._fixed, "Role": role.value, "Epoch": epoch, "ActiveManager": active or ""}


def install_manager(registry: ProviderRegistry, services: Services) -> None:
    roles = services.roles

    async def take_control(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        # On the active node it stays active (its lease renewed now) and answers its epoch, as
        # HP's `icapmanage -Q` on the active does (reference gicap §1.4): cluster start scripts
        # run it without asking which node is active.
        force = bool(params.get("Force", False))
        epoch = await asyncio.to_thread(roles.take_control, force)
        return MethodOutcome(0, {"Epoch": epoch})

    async def step_down(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        await asyncio.to_thread(roles.step_down)
        return MethodOutcome(0, {})

    async def get_role(ctx: OperationContext, params: Mapping[str, Any]) -> MethodOutcome:
        role, epoch, active = roles.state()
        return MethodOutcome(0, {"Role": role.value, "Epoch": epoch, "ActiveManager": active or ""})

    registry.add_instances(NS, CLASS, _ManagerInstances(services))
    registry.add_method(NS, CLASS, MethodSpec("getRole", get_role, changes_state=False))
    # takeControl changes state but is exactly what a standby is for: no role gate.
    registry.add_method(NS, CLASS, MethodSpec("takeControl", take_control, changes_state=False))
    registry.add_method(
        NS,
        CLASS,
        MethodSpec(
            "stepDown",
            step_down,
            changes_state=True,
            what="step down",
        ),
    )
