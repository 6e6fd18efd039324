"""A stand-in for systemd's notification socket: a real AF_UNIX datagram socket that records
what the daemon sends (READY=1, STATUS=, WATCHDOG=1, ...) and when it arrived."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

from harness import wait_for


class FakeSystemd:
    """A bound AF_UNIX datagram socket that records every message sent to it."""

    def __init__(self, address: str) -> None:
        self.address = address  # as it goes into NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if address.startswith("@"):
            self.sock.bind(b"\0" + address[1:].encode())
        else:
            self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []  # (monotonic time received, datagram)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def datagrams(self) -> list[str]:
        with self._lock:
            return [m for _, m in self.messages]

    def settled(self) -> list[str]:
        """Everything sent so far: a marker is sent last and waited for (datagrams on one
        socket arrive in order), so nothing sent before it can still be on its way."""
        marker = f"MARKER={time.monotonic_ns()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            target = b"\0" + self.address[1:].encode() if self.address.startswith("@") else (
                self.address)  # fmt: skip
            sender.sendto(marker.encode(), target)
        wait_for(lambda: marker in self.datagrams(), 10, "the marker datagram", 0.01)
        return [m for m in self.datagrams() if not m.startswith("MARKER=")]

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        """(time received, fields) of each message that has KEY=..."""
        with self._lock:
            found = []
            for at, text in self.messages:
                fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
                if key in fields:
                    found.append((at, fields))
            return found

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[str]:
        wait_for(
            lambda: len(self.datagrams()) >= count,
            timeout,
            lambda: f"{count} datagram(s); have {self.datagrams()}",
        )
        return self.datagrams()

    def wait_key(self, key: str, count: int = 1, timeout: float = 10.0, after: float = 0.0):
        def enough() -> list[tuple[float, dict[str, str]]] | None:
            found = [m for m in self.with_key(key) if m[0] >= after]
            return found if len(found) >= count else None

        return wait_for(enough, timeout, lambda: f"{count} x {key}; have {self.datagrams()}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def socket_path(tmp_path: Path) -> tuple[str, Path | None]:
    path = tmp_path / "notify.sock"
    if len(str(path)) < 100:  # sun_path holds 108 bytes
        return str(path), None
    short = Path(tempfile.mkdtemp(prefix="sdn", dir="/tmp"))
    return str(short / "notify.sock"), short
