"""Golden files for spare selection: tests/vcem/golden/<case>.json (a snapshot of the source
and the group's bays) → <case>.expected (the chosen bay, or why none qualifies). A change of
behaviour shows as a reviewable diff; regenerate with GM_UPDATE_GOLDEN=1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provider.vcem.spares import Candidate, NoSpare, SourceServer, choose_spare

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))


def render(case: dict[str, object]) -> str:
    source = SourceServer(**case["source"])  # type: ignore[arg-type]
    candidates = [Candidate(**c) for c in case["bays"]]  # type: ignore[union-attr]
    choice = choose_spare(source, candidates, bool(case["same_generation"]))
    if isinstance(choice, NoSpare):
        lines = ["none qualifies:"] + [f"  {label}: {why}" for label, why in choice.rejected]
        if not choice.rejected:
            lines = ["none qualifies: the domain group has no designated spare bay"]
    else:
        lines = [f"chosen: {choice.enclosure} bay {choice.bay}"]
        lines += [f"  passed over {label}: {why}" for label, why in choice.passed_over]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", CASES)
def test_spare_choice_matches_golden_file(name: str) -> None:
    case = json.loads((GOLDEN / f"{name}.json").read_text())
    got = render(case)
    expected_path = GOLDEN / f"{name}.expected"
    if os.environ.get("GM_UPDATE_GOLDEN") or not expected_path.exists():
        expected_path.write_text(got)
    assert got == expected_path.read_text()


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 6
