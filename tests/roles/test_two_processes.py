"""Two real processes on one store: the superseded active learns it at its next write."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.store import Store
from tests.store._helpers import audit_rows

ROOT = Path(__file__).resolve().parents[2]


class Node:
    def __init__(self, url: str, name: str, start_as: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.roles._node_process", url, name, start_as],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == "ready"

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"node process died (exit {self.proc.poll()})"
        return line.strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def pair(store: Store, store_url: str) -> Iterator[tuple[Node, Node]]:
    # `store` (the fixture) has already migrated the database; both processes share it.
    gm1 = Node(store_url, "gm1", "active")
    gm2 = Node(store_url, "gm2", "standby")
    try:
        yield gm1, gm2
    finally:
        gm1.stop()
        gm2.stop()


def test_take_control_from_another_process_fences_the_old_active(
    store: Store, pair: tuple[Node, Node]
) -> None:
    gm1, gm2 = pair
    assert gm1.ask("start") == "active"
    assert gm2.ask("start") == "standby"
    assert gm1.ask("write") == "ok 1"
    assert gm2.ask("write") == "NotActive standby"
    assert gm2.ask("take") == "Refused standby"  # gm1's lease is valid: Force needed
    assert gm2.ask("take force") == "2"
    assert gm1.ask("role") == "active 1 gm1"  # it cannot know before it touches the store
    assert gm1.ask("write") == "Fenced standby"
    assert gm1.ask("role") == "standby 2 gm2"
    assert gm2.ask("write") == "ok 2"
    assert [(epoch, node) for epoch, node, _ in audit_rows(store)] == [(1, "gm1"), (2, "gm2")]
