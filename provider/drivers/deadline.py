"""A hard deadline on every hardware call (reference ha-jobs-style.md A.7.4 step 2: "call the
device with a hard timeout").

Real drivers talk to management processors that can hang: without a deadline, one power-off
that never answered held its domain group locked (every failover of the group queued behind
it, cancelJob and stepDown refused) and kept the process from exiting at SIGTERM. Each call
runs on a daemon worker thread (reused, so the simulator keeps its store connection); past
`timeout` seconds the caller gets a DeviceError that says the outcome is unknown, and the job
ends in Exception with its group unlocked. The call itself cannot be taken back: it may
still complete. That is why every step reads the device before it acts
(`provider.jobs.steps`): the next job finds whatever it did.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from provider.errors import DeviceError

from .base import BayRef, DeviceState, Discovery, HardwareDriver

__all__ = ["DeadlineDriver"]

T = TypeVar("T")


class _Call:
    """One call handed to a worker, and its result once it has one."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class _Workers:
    """Daemon threads that run device calls and are used again (each keeps its store
    connection: the simulator's device state is in the store). A call past its deadline keeps
    its worker until it returns; the next call takes another. Daemon threads: a call that
    never returns does not keep the process from exiting."""

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[_Call]] = []
        self._lock = threading.Lock()

    def run(self, call: _Call) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(
                target=self._serve, args=(inbox,), name="gm-device", daemon=True
            ).start()
        inbox.put(call)

    def _serve(self, inbox: queue.SimpleQueue[_Call]) -> None:
        while True:
            call = inbox.get()
            try:
                call.value, call.ok = call.fn(), True
            except BaseException as exc:  # handed to the caller, whatever it is
                call.value = exc
            call.done.set()
            with self._lock:
                self._idle.append(inbox)


class DeadlineDriver(HardwareDriver):
    """`driver`, with every call given at most `timeout` seconds."""

    def __init__(self, driver: HardwareDriver, timeout: float) -> None:
        self.driver = driver
        self.timeout = timeout
        self.name = driver.name
        self._workers = _Workers()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        call = _Call(fn)
        self._workers.run(call)
        if not call.done.wait(self.timeout):
            raise DeviceError(
                f"{what} did not answer within {self.timeout:g} s ([vcem] device_timeout_s); "
                "its outcome is unknown, and the device may still complete it. Check the bay "
                "(its Onboard Administrator, or GetInstance of GM_DeviceBay after the next "
                "job reads it) before acting on it by hand."
            )
        if call.ok:
            result: T = call.value
            return result
        raise call.value

    def read(self, bays: Sequence[BayRef]) -> dict[BayRef, DeviceState]:
        where = str(bays[0]) if len(bays) == 1 else f"{len(bays)} bays"
        return self._call(f"Reading the state of {where}", lambda: self.driver.read(bays))

    def hard_power_off(self, bay: BayRef, job_key: str) -> None:
        self._call(f"Hard power-off of {bay}", lambda: self.driver.hard_power_off(bay, job_key))

    def power_on(self, bay: BayRef, job_key: str) -> None:
        self._call(f"Power on of {bay}", lambda: self.driver.power_on(bay, job_key))

    def assign_profile(self, bay: BayRef, profile: str, job_key: str) -> None:
        self._call(
            f"Assigning profile {profile} to {bay}",
            lambda: self.driver.assign_profile(bay, profile, job_key),
        )

    def unassign_profile(self, bay: BayRef, profile: str, job_key: str) -> None:
        self._call(
            f"Unassigning profile {profile} from {bay}",
            lambda: self.driver.unassign_profile(bay, profile, job_key),
        )

    def discover(self, bay: BayRef) -> Discovery:
        return self._call(f"Discovery of {bay}", lambda: self.driver.discover(bay))

    def seed(self, tx: Any, inventory: Any) -> None:
        self.driver.seed(tx, inventory)  # in the store's seed transaction: no thread
