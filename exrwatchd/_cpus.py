"""Which CPUs the daemon's processes run on: ``[daemon] cpu_affinity``.

Why pin at all. The main process runs several Python threads that take turns holding the
interpreter lock (the settle loop, the header workers, the journal writer, the reconciler,
watchdog's threads). Free to run on any core, each hand-off of the lock to a thread on
another core moves the interpreter's working set between the cores' caches: the same
inspection loop cost 141 us per file in two threads free on both cores of this two-core
machine, and 82 us pinned to one (docs/benchmarks.md, ninth session). Pinned, a catch-up
cost the main process a fifth less CPU per file. The process then has one core for
everything, and in a fast local burst watchdog's inotify thread fell behind until the kernel
queue overflowed (tenth session); since its queue is read by a thread that does nothing else
(watch/_inotify_drain.py), no pinned burst has (eleventh session), and "auto" is the
default. The sink process (one busy thread) gets a CPU of its own beside it.

What keeps every CPU. The pixel lane's threads decode pixels in OpenImageIO, outside the
lock, and the hooks thread starts commands that inherit its CPUs: both call
`unpin_this_thread()` when they start.

The one piece of global state (what the process was allowed before it pinned itself) lives
here, set by `pin_process` and read by `unpin_this_thread`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["CpuPlan", "CpuSetting", "pin_process", "plan_cpus", "unpin_this_thread"]

#: "auto", "off", or the CPUs (main process, sink process) the operator chose.
CpuSetting = Literal["auto", "off"] | tuple[int, int]


@dataclass(frozen=True, slots=True)
class CpuPlan:
    """Where each process runs; None: wherever the scheduler puts it."""

    main: int | None
    """The CPU of every thread of the main process (but the pixel lane and hooks)."""
    sink: int | None
    """The CPU of the sink process."""
    why: str
    """Why this plan, for the start-up log line."""


def plan_cpus(setting: CpuSetting, allowed: Iterable[int], *, sink_process: bool) -> CpuPlan:
    """The plan for `setting` on a process allowed `allowed` CPUs (its affinity at start,
    which systemd's CPUAffinity= or taskset may have narrowed).

    Raises ValueError, naming the CPU, when a chosen CPU is not among `allowed`.
    """
    cpus = sorted(set(allowed))
    if setting == "off":
        return CpuPlan(None, None, "cpu_affinity is off")
    if isinstance(setting, tuple):
        for cpu in setting:
            if cpu not in cpus:
                raise ValueError(
                    f"daemon.cpu_affinity: CPU {cpu} is not one this process may run on "
                    f"(allowed: {', '.join(map(str, cpus))})"
                )
        main, sink = setting
        return CpuPlan(main, sink if sink_process else None, "chosen in the config")
    if len(cpus) < 2:
        return CpuPlan(None, None, "one CPU allowed")
    if not sink_process:
        # The sink's SQLite or Arrow work then runs in this process, much of it outside the
        # lock: it needs the second core.
        return CpuPlan(None, None, "the sink runs in the main process (sink_process = false)")
    # The last two: CPU 0 is where interrupts land on many systems left at their defaults.
    return CpuPlan(cpus[-2], cpus[-1], "auto")


_allowed_before_pin: frozenset[int] | None = None


def pin_process(cpu: int) -> None:
    """Put every thread of this process on `cpu`; threads started later inherit it.

    Raises OSError, having changed nothing, where the kernel refuses (EPERM: a seccomp
    filter such as systemd's SystemCallFilter=~@resources). Affinity is per thread on Linux,
    so the threads already running are moved one by one, after the calling thread.
    """
    global _allowed_before_pin
    before = frozenset(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    if _allowed_before_pin is None:
        _allowed_before_pin = before
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), {cpu})
        except ProcessLookupError:
            continue  # a thread that ended meanwhile


def unpin_this_thread() -> None:
    """Give the calling thread back every CPU the process had before `pin_process`; a no-op
    in a process that never pinned itself."""
    if _allowed_before_pin is not None:
        os.sched_setaffinity(0, _allowed_before_pin)
