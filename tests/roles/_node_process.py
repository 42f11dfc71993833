"""One Group Manager node in its own process, driven line by line on stdin (tests only).

    python -m tests.roles._node_process <store-url> <node-name> <start_as>

Commands: `start`, `take [force]`, `write`, `role`, `quit`; one answer line each. An error
answers with its exception class name, then the role the node reports afterwards.
"""

from __future__ import annotations

import os
import sys

from provider.errors import GMError
from provider.roles import RoleManager
from tests.store._helpers import open_test_store


def answer(manager: RoleManager, command: list[str]) -> str:
    if command[0] == "start":
        return manager.start().value
    if command[0] == "take":
        return str(manager.take_control(force=command[1:] == ["force"]))
    if command[0] == "write":
        with manager.fenced("write") as tx:
            tx.audit(f"{manager.node_name} in process {os.getpid()}")
            return f"ok {tx.epoch}"
    if command[0] == "role":
        return f"{manager.role.value} {manager.epoch} {manager.active_manager}"
    raise ValueError(f"unknown command {command!r}")


def main() -> None:
    url, name, start_as = sys.argv[1:4]
    store = open_test_store(url)
    manager = RoleManager(store, name, 30.0, 5.0, start_as=start_as)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command == ["quit"]:
            break
        try:
            reply = answer(manager, command)
        except GMError as exc:
            reply = f"{type(exc).__name__} {manager.role.value}"
        print(reply, flush=True)
    store.close()


if __name__ == "__main__":
    main()
