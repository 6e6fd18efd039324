"""The systemd notify protocol (sd_notify(3)) on a plain datagram socket: no dependency.

systemd (Type=notify) passes NOTIFY_SOCKET, and with WatchdogSec= also WATCHDOG_USEC and
WATCHDOG_PID, in the environment. A message is one datagram of newline-separated
`KEY=value` assignments sent to that socket. Without NOTIFY_SOCKET (a terminal, a test, the
one-shot `scan`) every method does nothing and reports success, so the daemon runs the same
everywhere.

Nothing here raises into the daemon and nothing logs: a send returns False on failure, with
the reason in `last_error`, and the caller decides what to log.

    notifier = Notifier.from_env()
    pinger = WatchdogPinger(notifier.watchdog_interval)
    notifier.ready(status="watching 2 roots")
    while running:
        ...
        if pinger.due(time.monotonic()) and everything_alive():
            notifier.watchdog()
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """Talks to the service manager named by NOTIFY_SOCKET; a no-op when there is none."""

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        """`address`: a socket path, or "@name" for the abstract namespace; None disables.

        `watchdog_usec`: the watchdog timeout systemd announced (WATCHDOG_USEC), or None.
        """
        self.address = address
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self.last_error: str | None = None
        self._target: str | bytes | None = _socket_address(address) if address else None
        if address and self._target is None:
            self.last_error = f"unsupported NOTIFY_SOCKET address {address!r}"
        self._sock: socket.socket | None = None
        self._closed = False
        if self._target is not None:
            self._sock = self._open()  # now, so that sends from other threads never race

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, pid: int | None = None
    ) -> Notifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID as systemd sets them.

        WATCHDOG_PID, when set, must equal our pid (`pid`, default os.getpid()): the variables
        may have been inherited from a parent that the watchdog is really meant for.
        """
        address = environ.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw_usec = environ.get("WATCHDOG_USEC", "").strip()
        if raw_usec.isdigit() and int(raw_usec) > 0:
            usec = int(raw_usec)
        raw_pid = environ.get("WATCHDOG_PID", "").strip()
        if usec is not None and raw_pid:
            mine = os.getpid() if pid is None else pid
            if not raw_pid.isdigit() or int(raw_pid) != mine:
                usec = None
        return cls(address, watchdog_usec=usec)

    # ---- state ---------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to talk to."""
        return self._target is not None and not self._closed

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when it is off."""
        if self.watchdog_usec is None or not self.enabled:
            return None
        return self.watchdog_usec / 2_000_000

    # ---- messages ------------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """READY=1: start-up is complete (also ends a reload begun with `reloading`)."""
        return self.notify("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        """STATUS=text: the line `systemctl status` shows."""
        return self.notify(*_status(text))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (systemd 253+ wants it for notify-reload).

        Follow with `ready()` once the new configuration is in force.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.notify("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        """WATCHDOG=1. Call only after checking that the daemon is really alive."""
        if self.watchdog_interval is None:
            return True  # no watchdog for us: nothing to keep alive
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: ask for `seconds` more before the start/stop timeout fires."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def notify(self, *assignments: str) -> bool:
        """Send one datagram of KEY=value lines. False (and `last_error`) when it failed."""
        if self._target is None:
            # Disabled: fine. A NOTIFY_SOCKET we cannot use: report it on every call.
            return self.address is None
        if self._closed or not assignments:
            return True
        sock = self._sock if self._sock is not None else self._open()
        if sock is None:
            return False
        self._sock = sock
        try:
            sock.sendto("\n".join(assignments).encode("utf-8", "replace"), self._target)
        except OSError as exc:
            self.last_error = f"sendto {self.address}: {exc.strerror or exc}"
            return False
        return True

    def close(self) -> None:
        """Close the socket; later messages are dropped (and reported as sent)."""
        self._closed = True
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Notifier(address={self.address!r}, watchdog_usec={self.watchdog_usec})"

    def _open(self) -> socket.socket | None:
        try:
            return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        except OSError as exc:
            self.last_error = f"socket: {exc.strerror or exc}"
            return None


class WatchdogPinger:
    """When the next WATCHDOG=1 is due, given the interval (None: never).

    `due(now)` is True at the first call and then once per interval; each True moves the
    schedule on, whether or not the caller then pings (it must not when something is dead:
    then systemd's watchdog fires and restarts the service, which is the point).
    """

    def __init__(self, interval: float | None) -> None:
        self.interval = interval if interval is not None and interval > 0 else None
        self._next: float | None = None

    def due(self, now: float) -> bool:
        if self.interval is None:
            return False
        if self._next is not None and now < self._next:
            return False
        # From now, not from the missed slot: after a stall, one ping, not a burst.
        self._next = now + self.interval
        return True


def format_status(
    *,
    queue_depth: int,
    pending: int,
    failed: int,
    last_persisted: float | None,
    now: float | None = None,
) -> str:
    """The STATUS= line: work waiting, dead letters, and how long since a row was persisted.

    `last_persisted` and `now` are wall-clock times (time.time()); None: nothing yet.
    """
    if last_persisted is None:
        ago = "never"
    else:
        seconds = max(0, int((time.time() if now is None else now) - last_persisted))
        ago = f"{_duration(seconds)} ago"
    return f"queue {queue_depth}, settling {pending}, failed {failed}, last persisted {ago}"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    # One assignment per line: a newline in the text would start a bogus one.
    return ("STATUS=" + " ".join(text.splitlines()),)


def _socket_address(address: str) -> str | bytes | None:
    if address.startswith("/"):
        return address
    if address.startswith("@") and len(address) > 1:
        return b"\0" + address[1:].encode()  # Linux abstract namespace
    return None  # vsock: and other forms are for VMs; not ours to support
