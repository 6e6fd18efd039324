"""Issue 12, case 14: a reload that restarts the sink never blocks the daemon's main loop.

Opening a VAST sink can take a minute (connect and read timeouts, the SDK's retries), and
stopping the old sink process up to shutdown_timeout. On the main loop that stalls the settle
loop and the systemd watchdog pings past WatchdogSec, so systemd kills a healthy daemon. The
real daemon here reloads onto a VAST endpoint that accepts connections and never answers;
the test decides when that endpoint goes away, so nothing depends on a timer.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from pathlib import Path

from exrgen import write_scanline
from fake_systemd import FakeSystemd
from harness import Catalog, DaemonProcess, wait_for, write_config

#: WatchdogSec=2 for the daemon under test: it pings every second while healthy.
WATCHDOG_SECONDS = 2.0


class SilentServer:
    """A TCP endpoint that accepts connections and never answers, until closed."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.held.append(conn)

    def close(self) -> None:
        """Go away: held connections are reset, new ones refused."""
        with contextlib.suppress(OSError):  # wakes the accept() (a plain close would not)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                conn.close()
        self._thread.join(timeout=5)


def test_a_sink_restart_that_hangs_keeps_the_main_loop_and_the_watchdog_going(
    tmp_path: Path, systemd: FakeSystemd
) -> None:
    # issue 12, case 14
    renders = tmp_path / "renders"
    renders.mkdir()
    state = tmp_path / "state"
    config = tmp_path / "c.toml"
    watches = [{"path": str(renders), "backend": "inotify"}]
    write_config(config, state, watches)
    silent = SilentServer()
    env = {
        "NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": str(int(WATCHDOG_SECONDS * 1e6)),
        "VAST_DB_ACCESS_KEY": "test-access-key", "VAST_DB_SECRET_KEY": "test-secret-key",
    }  # fmt: skip
    daemon = DaemonProcess(config, state, env=env)
    catalog = Catalog(state)
    try:
        daemon.wait_event("daemon.ready")
        daemon.wait_event("sink.started")  # the running sink has read its settings
        systemd.wait_key("WATCHDOG", timeout=10)
        write_config(
            config, state, watches, sink={"kind": "vast"},
            vast={"endpoint": f"http://127.0.0.1:{silent.port}", "bucket": "renders",
                  "connect_timeout": 5.0, "read_timeout": 120.0},
        )  # fmt: skip
        hup_at = time.monotonic()
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: silent.held, 30, "the new sink's first request to the silent VAST")
        # While the new sink hangs, a frame that lands is still settled and catalogued by
        # the running (local) sink: the main loop turns.
        frame = write_scanline(renders / "a.0001.exr")
        catalog.wait_paths({str(frame)}, timeout=30)
        landed_at = time.monotonic()
        assert not daemon.seen("config.sink_unchanged"), "the restart was meant to still hang"
        pings = [at for at, _ in systemd.with_key("WATCHDOG") if at >= hup_at - WATCHDOG_SECONDS]
        gaps = [b - a for a, b in zip([hup_at, *pings], [*pings, landed_at], strict=True)]
        assert max(gaps) < WATCHDOG_SECONDS, f"watchdog silent for {max(gaps):.1f} s"
        silent.close()  # the endpoint goes away: the new sink opens (and retries later)
        daemon.wait_event("sink.started", sink="vast", timeout=120)
        assert daemon.proc.poll() is None
    finally:
        silent.close()
        assert daemon.stop() == 0
