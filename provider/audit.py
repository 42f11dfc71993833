"""The audit log: one JSON line per state-changing request, whatever its outcome.

Who asked (user, how they came in, from where), what they asked (the operation, its target
and parameters), and what came of it (success with the return value and the job number, or
the CIM error, refusals included: access denied, not active, bad parameters). VCEM's own
advice is an "audit log of who started each job" (reference vcem-domain.md §4.3 [I]); a Group
Manager can power servers off and seize licences, so a refused attempt matters as much as a
granted one.

Lines are written by `provider.cim.operations.CimOperations`, the one place every CIM request
passes the privilege check and the role gate. Each line is a single `write(2)` on a file opened
with O_APPEND, so lines from concurrent requests (and from both nodes of a pair sharing a
file system) never interleave. One line, keys in this order:

    {"time": "2024-05-01T12:00:00.123456+00:00", "user": "admin", "via": "http",
     "peer": "127.0.0.1:41234", "operation": "InvokeMethod", "method": "failoverProfile",
     "namespace": "root/cimv2", "target": "GM_GroupManager",
     "params": {"EnclosureName": "enc01", "BayName": "3"},
     "outcome": "success", "return_value": 4096, "job": 17}

and on failure `"outcome": "error", "code": 2, "error": "CIM_ERR_ACCESS_DENIED",
"description": "..."`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pywbem import CIMInstance

from provider.errors import CIM_STATUS_NAMES, CIMClientError, ConfigError, ServerError
from provider.http.messages import Principal

__all__ = ["AuditLog", "audit_record", "describe_error"]

log = logging.getLogger("gm.audit")

# What a client chose is bounded twice: each text (a value, a parameter or property name, a
# method name) is cut at MAX_VALUE_CHARS characters, and the parameters of one record share
# MAX_PARAMS_CHARS in all (64 parameters of 64-element arrays of 512 characters were 2 MB a
# line), after which the rest is counted ("...": "N more"). An error description, which may
# quote them, is cut at four times MAX_VALUE_CHARS. The log says what was asked; a client
# must not grow it by megabytes per request (the body limit is 4 MiB).
MAX_VALUE_CHARS = 512
MAX_PARAMS_CHARS = 8192
MORE = "..."


def _cut(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _Budget:
    """The characters the texts of one record's parameters may still take."""

    def __init__(self, chars: int = MAX_PARAMS_CHARS) -> None:
        self.left = chars

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def text(self, value: Any) -> str:
        out = _cut(value, max(0, min(MAX_VALUE_CHARS, self.left)))
        self.left -= len(out)
        return out


def _named(items: Iterable[tuple[str, Any]], budget: _Budget) -> dict[str, Any]:
    """Names and values while the budget lasts (then how many more there were)."""
    out: dict[str, Any] = {}
    more = 0
    for name, value in items:
        if budget.spent:
            more += 1
        else:
            key = budget.text(name)  # before its value spends the budget
            out[key] = _plain(value, budget)
    if more:
        out[MORE] = f"{more} more"
    return out


def _plain(value: Any, budget: _Budget) -> Any:
    """A JSON-able form of a CIM value: text, numbers, booleans, lists; paths as WBEM URIs;
    an instance (Create/ModifyInstance) as its class, path and properties."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        items: list[Any] = []
        for i, item in enumerate(value):
            if budget.spent:
                items.append(f"{MORE} {len(value) - i} more")
                break
            items.append(_plain(item, budget))
        return items
    if isinstance(value, CIMInstance):
        return {
            "class": budget.text(value.classname),
            "path": None if value.path is None else _plain(value.path, budget),
            "properties": _named(((p.name, p.value) for p in value.properties.values()), budget),
        }
    return budget.text(value)


def describe_error(exc: BaseException) -> tuple[int, str, str]:
    """(code, CIM status name, description) of an exception, as the client hears it."""
    if isinstance(exc, CIMClientError):
        return exc.status_code, exc.code_name, exc.description
    if isinstance(exc, ServerError):
        return exc.status_code, "CIM_ERR_FAILED", exc.description
    # Our bug: the application answers CIM_ERR_FAILED "internal error" (provider.app).
    return 1, CIM_STATUS_NAMES[1], f"internal error ({type(exc).__name__})"


def audit_record(
    principal: Principal | None,
    operation: str,
    method: str,
    namespace: str,
    target: str,
    params: Iterable[tuple[str, Any]],
    *,
    return_value: Any = None,
    job: Any = None,
    error: BaseException | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The audit record of one request (pure; `AuditLog.write` serialises it)."""
    record: dict[str, Any] = {
        "time": (now or datetime.now(UTC)).isoformat(),
        "user": principal.user if principal is not None else "anonymous",
        "via": principal.via.value if principal is not None else None,
        "peer": principal.peer if principal is not None else None,
        "operation": operation,
        "method": _cut(method),
        "namespace": _cut(namespace),
        "target": _cut(target),
        "params": _named(params, _Budget()),
    }
    if error is None:
        record["outcome"] = "success"
        record["return_value"] = _plain(return_value, _Budget(MAX_VALUE_CHARS))
        if job is not None:
            record["job"] = _plain(job, _Budget(MAX_VALUE_CHARS))
    else:
        code, name, description = describe_error(error)
        record.update(
            outcome="error",
            code=code,
            error=name,
            description=_cut(description, 4 * MAX_VALUE_CHARS),
        )
    return record


_SEPARATORS = {c: f"\\u{c:04x}" for c in [0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]}


class AuditLog:
    """Appends audit records to a file, one JSON line each.

    The file is opened once at start (a path that cannot be written stops the start with a
    ConfigError) and kept open; a failed write is logged and the request's answer is not
    changed, since the state change it reports has already happened.
    """

    def __init__(
        self,
        path: Path,
        *,
        is_read: Callable[[str], bool] = lambda action: False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = path
        self._is_read = is_read
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # 0o600: parameters name hosts and bays; the log is for administrators.
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot open the audit log: {exc.strerror}") from exc

    def wants(self, action: str, changes_state: bool) -> bool:
        """Is a method audited? Those that pass the role gate, and every other one a read-only
        user may not run (takeControl changes the pair's state without the gate, since it is
        what a standby is for)."""
        return changes_state or not self._is_read(action)

    def write(self, record: Mapping[str, Any]) -> None:
        # JSON escapes the C0 controls; the other characters Python's splitlines() breaks a
        # line at (U+0085 and the C1 controls, U+2028, U+2029) are escaped too, so a record
        # stays one line. Other text stays as sent (escaping all non-ASCII made a 4-byte
        # character 12 bytes).
        line = json.dumps(record, ensure_ascii=False, separators=(", ", ": "), default=str)
        line = line.translate(_SEPARATORS)
        data = (line + "\n").encode("utf-8")
        try:
            with self._lock:
                os.write(self._fd, data)
        except OSError:
            log.exception("could not write the audit log %s: %s", self.path, line)

    def record(self, principal: Principal | None, operation: str, method: str, **kw: Any) -> None:
        """`audit_record(...)` stamped with this log's clock, then written."""
        self.write(audit_record(principal, operation, method, now=self._clock(), **kw))

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
