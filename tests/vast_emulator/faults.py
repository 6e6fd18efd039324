"""Faults armed by tests and consumed by requests, thread-safe.

Each armed fault has a filter (HTTP method and/or tabular command such as ``"rows"``,
``"data"``, ``"transaction"``) and a count. A request takes the oldest matching fault, at
most one per request, and the fault disarms itself when its count runs out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["fail", "reset_before", "reset_after", "delay", "hold"]
RowPredicate = Callable[[Mapping[str, Any]], bool]

#: Statuses the SDK maps to exceptions; any other one makes it raise a plain ValueError
#: ("... is not a valid HttpStatus"), and VAST's load balancers send those without S3 XML.
XML_STATUSES = frozenset({400, 403, 404, 405, 408, 409, 500, 501, 503, 507})


@dataclass
class Fault:
    kind: FaultKind
    remaining: int
    method: str | None = None
    command: str | None = None
    status: int = 503
    code: str = "SlowDown"
    seconds: float = 0.0
    release: threading.Event | None = None  # "hold": kept until set, then reset

    def matches(self, method: str, command: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.command is None or self.command == command
        )


class FaultPlan:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._reject: RowPredicate | None = None

    def arm(self, fault: Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("a fault needs n >= 1")
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, command: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, command):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
            return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._reject = None

    @property
    def reject(self) -> RowPredicate | None:
        with self._lock:
            return self._reject

    @reject.setter
    def reject(self, predicate: RowPredicate | None) -> None:
        with self._lock:
            self._reject = predicate
