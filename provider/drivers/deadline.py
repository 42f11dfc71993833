"""A hard deadline on the hardware calls of a job step (reference ha-jobs-style.md A.7.4
step 2: "call the device with a hard timeout").

Real drivers talk to management processors that can hang: without a deadline, one power-off
that never answered held its domain group locked (every failover of the group queued behind
it, cancelJob and stepDown refused) and kept the process from exiting at SIGTERM.

Each step that calls the hardware runs on a daemon worker thread (`Deadline.run`); past
`timeout` seconds its job gets a DeviceError that names the call under way and says its
outcome is unknown, and the job ends in Exception with its group unlocked. The call itself
cannot be taken back: it may still complete. That is why every step reads the device before
it acts (`provider.jobs.steps`): the next job finds whatever it did.

The deadline is per step, not per call: a step reads, acts and reads again, and each hand-off
to a worker costs the job a wait for the interpreter lock (up to `[server] switch_interval`)
while readers keep it busy; per call, a failover's p50 under 8 readers went from 12 to 28 ms.
`TracedDriver` names the call a step is in, for the message. Workers are reused (the
simulator keeps its store connection per thread); one that hangs keeps only itself.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from provider.errors import DeviceError

from .base import BayRef, DeviceState, Discovery, HardwareDriver

__all__ = ["Deadline", "TracedDriver"]

T = TypeVar("T")

_current = threading.local()  # .call: the _Call a worker runs


class _Call:
    """One piece of work handed to a worker, the hardware call it is in, and its result."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.doing = ""  # set by TracedDriver: "Hard power-off of enc01 bay 3"
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class _Workers:
    """Daemon threads, used again; a call past its deadline keeps its worker until it returns
    and the next call takes another. Daemon: a call that never returns does not keep the
    process from exiting."""

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
            _current.call = call
            try:
                call.value, call.ok = call.fn(), True
            except BaseException as exc:  # handed to the caller, whatever it is
                call.value = exc
            _current.call = None
            call.done.set()
            with self._lock:
                self._idle.append(inbox)


class Deadline:
    """Runs work that calls the hardware with at most `timeout` seconds to finish."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._workers = _Workers()

    def run(self, what: str, fn: Callable[[], T]) -> T:
        call = _Call(fn)
        self._workers.run(call)
        if not call.done.wait(self.timeout):
            doing = call.doing or what
            raise DeviceError(
                f"{doing} did not answer within {self.timeout:g} s ([vcem] device_timeout_s); "
                "its outcome is unknown, and the device may still complete it. Check the bay "
                "(its Onboard Administrator, or GetInstance of GM_DeviceBay after the next "
                "job reads it) before acting on it by hand."
            )
        if call.ok:
            result: T = call.value
            return result
        raise call.value


def inline(what: str, fn: Callable[[], T]) -> T:
    """No deadline: the work runs on the calling thread (tests of the steps alone)."""
    return fn()


class TracedDriver(HardwareDriver):
    """`driver`, noting on the worker's call which hardware call is under way."""

    def __init__(self, driver: HardwareDriver) -> None:
        self.driver = driver
        self.name = driver.name

    @staticmethod
    def _doing(text: str) -> None:
        call: _Call | None = getattr(_current, "call", None)
        if call is not None:
            call.doing = text

    def read(self, bays: Sequence[BayRef]) -> dict[BayRef, DeviceState]:
        where = str(bays[0]) if len(bays) == 1 else f"{len(bays)} bays"
        self._doing(f"Reading the state of {where}")
        return self.driver.read(bays)

    def hard_power_off(self, bay: BayRef, job_key: str) -> None:
        self._doing(f"Hard power-off of {bay}")
        self.driver.hard_power_off(bay, job_key)

    def power_on(self, bay: BayRef, job_key: str) -> None:
        self._doing(f"Power on of {bay}")
        self.driver.power_on(bay, job_key)

    def assign_profile(self, bay: BayRef, profile: str, job_key: str) -> None:
        self._doing(f"Assigning profile {profile} to {bay}")
        self.driver.assign_profile(bay, profile, job_key)

    def unassign_profile(self, bay: BayRef, profile: str, job_key: str) -> None:
        self._doing(f"Unassigning profile {profile} from {bay}")
        self.driver.unassign_profile(bay, profile, job_key)

    def discover(self, bay: BayRef) -> Discovery:
        self._doing(f"Discovery of {bay}")
        return self.driver.discover(bay)

    def seed(self, tx: Any, inventory: Any) -> None:
        self.driver.seed(tx, inventory)
