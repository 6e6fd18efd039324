"""SIGTERM, SIGINT and SIGHUP: what they ask of the daemon, set as plain attributes.

The main loop reads them each turn (<= 0.5 s). Plain attributes, not Events: an Event's lock,
held by the main thread when a (second) signal lands in that same thread, would deadlock it.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Protocol


class Signalled(Protocol):
    stop_requested: bool
    force: bool  # a second Ctrl-C: stop waiting for in-flight work
    reload_requested: bool


def install_signal_handlers(daemon: Signalled) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        if daemon.stop_requested and signum == signal.SIGINT:
            daemon.force = True
        daemon.stop_requested = True

    def hangup(signum: int, frame: FrameType | None) -> None:
        daemon.reload_requested = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hangup)
