"""Spare selection: which bay takes over a failed server's profile. Pure; no I/O.

The rules are VCEM's (reference vcem-domain.md §2.3, WP-NEW-6, SPEC 4.1). The failover job
"Picks a qualified spare server from the source server's VC Domain Group ... A qualified spare
server is defined as the first spare found that meets the following criteria":

1. "The spare bay has no assigned profile."
2. "The spare bay server is physically present."
3. "The model of the spare server is the same as the model of the source server. Note: The
   server model generation is not a differentiator" — unless the group's policy asks for the
   same generation too (HP's best practice warns against mixed generations, §7.3).
4. "The spare server is powered off."

plus what the sentence implies: the bay is a designated spare of the same domain group, and
(SPEC 4.1 "check domains") its domain is managed, so that the move to it can be carried out.

"First found" is not defined by VCEM; ours is deterministic and documented: domain name, then
the enclosure's position in its domain (base enclosure first), then bay number ("1", "1A",
"2", ..., "10"). When nothing qualifies, the answer lists every spare with the reason it was
passed over, so the job's error tells a person what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from provider.vcem.inventory import bay_sort_key

__all__ = ["Candidate", "NoSpare", "SourceServer", "SpareChoice", "choose_spare", "rejection"]


@dataclass(frozen=True)
class SourceServer:
    enclosure: str
    bay: str
    model: str
    generation: str


@dataclass(frozen=True)
class Candidate:
    """A bay of the source's domain group as read just before choosing (device state)."""

    domain: str
    domain_state: str  # "managed", ... (provider.vcem.inventory.DomainState values)
    enclosure: str
    enclosure_position: int  # 0 for the domain's base enclosure
    bay: str
    is_spare: bool
    profile: str | None  # the profile assigned to the bay, if any
    present: bool  # a server is physically present
    model: str
    generation: str
    powered_on: bool | None  # None: the power state could not be read

    @property
    def order(self) -> tuple[str, int, tuple[int, str, str]]:
        return (self.domain, self.enclosure_position, bay_sort_key(self.bay))

    @property
    def label(self) -> str:
        return f"{self.enclosure} bay {self.bay}"


@dataclass(frozen=True)
class SpareChoice:
    enclosure: str
    bay: str
    passed_over: tuple[tuple[str, str], ...]  # (label, reason) of spares before the choice


@dataclass(frozen=True)
class NoSpare:
    rejected: tuple[tuple[str, str], ...]  # (label, reason) for every spare of the group

    def describe(self) -> str:
        if not self.rejected:
            return "the domain group has no designated spare bay"
        return "; ".join(f"{label}: {reason}" for label, reason in self.rejected)


def rejection(source: SourceServer, spare: Candidate, same_generation: bool) -> str | None:
    """Why `spare` does not qualify for `source`, or None when it does. Rules in order."""
    if (spare.enclosure, spare.bay) == (source.enclosure, source.bay):
        return "it is the source bay"
    if spare.domain_state != "managed":
        return f"its domain {spare.domain} is {spare.domain_state}"
    if spare.profile is not None:
        return f"it has profile {spare.profile} assigned"
    if not spare.present:
        return "no server is present"
    if spare.model != source.model:
        return f"model {spare.model} is not the source's model {source.model}"
    if same_generation and spare.generation != source.generation:
        return (
            f"generation {spare.generation or '(none)'} is not the source's "
            f"{source.generation or '(none)'} and the group requires the same generation"
        )
    if spare.powered_on is None:
        return "its power state could not be read"
    if spare.powered_on:
        return "it is powered on"
    return None


def choose_spare(
    source: SourceServer, candidates: Iterable[Candidate], same_generation: bool
) -> SpareChoice | NoSpare:
    """The first qualified spare in the documented order, or why there is none."""
    spares = sorted((c for c in candidates if c.is_spare), key=lambda c: c.order)
    passed: list[tuple[str, str]] = []
    for spare in spares:
        reason = rejection(source, spare, same_generation)
        if reason is None:
            return SpareChoice(spare.enclosure, spare.bay, tuple(passed))
        passed.append((spare.label, reason))
    return NoSpare(tuple(passed))
