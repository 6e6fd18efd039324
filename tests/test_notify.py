"""The sd_notify protocol, against a real datagram socket standing in for systemd.

The unit tests drive `Notifier` directly. The end-to-end test runs the real daemon with
NOTIFY_SOCKET pointing at our socket and checks what systemd would see: READY=1, STATUS=
lines, WATCHDOG=1 pings at half of WATCHDOG_USEC, RELOADING=1 then READY=1 on SIGHUP, and
STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_systemd import FakeSystemd
from harness import DaemonProcess, write_config

from exrwatchd.telemetry import Notifier, WatchdogPinger, format_status


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd(f"@exrwatchd-test-{uuid.uuid4().hex}")
    yield fake
    fake.close()


# ---- the protocol ---------------------------------------------------------------------------


def test_messages_arrive_exactly(systemd: FakeSystemd) -> None:
    with Notifier.from_env({"NOTIFY_SOCKET": systemd.address}) as n:
        assert n.enabled
        assert n.ready()
        assert n.status("queue 0, settling 2")
        assert n.stopping()
    assert systemd.wait(3) == ["READY=1", "STATUS=queue 0, settling 2", "STOPPING=1"]


def test_ready_with_status_is_one_datagram(systemd: FakeSystemd) -> None:
    with Notifier.from_env({"NOTIFY_SOCKET": systemd.address}) as n:
        assert n.ready(status="watching 1 root")
    assert systemd.wait(1) == ["READY=1\nSTATUS=watching 1 root"]


def test_status_text_stays_one_assignment(systemd: FakeSystemd) -> None:
    with Notifier.from_env({"NOTIFY_SOCKET": systemd.address}) as n:
        assert n.status("line one\nREADY=1")
    assert systemd.wait(1) == ["STATUS=line one READY=1"]


def test_abstract_namespace_socket(abstract_systemd: FakeSystemd) -> None:
    assert abstract_systemd.address.startswith("@")
    with Notifier.from_env({"NOTIFY_SOCKET": abstract_systemd.address}) as n:
        assert n.ready()
        assert n.stopping()
    assert abstract_systemd.wait(2) == ["READY=1", "STOPPING=1"]


def test_reloading_carries_monotonic_usec(systemd: FakeSystemd) -> None:
    with Notifier.from_env({"NOTIFY_SOCKET": systemd.address}) as n:
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert n.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert n.ready()
    reloading, ready = systemd.wait(2)
    lines = reloading.split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert before <= int(lines[1].removeprefix("MONOTONIC_USEC=")) <= after
    assert len(lines) == 2
    assert ready == "READY=1"


def test_watchdog_ping_and_interval(systemd: FakeSystemd) -> None:
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "2000000"}
    with Notifier.from_env(env) as n:
        assert n.watchdog_interval == 1.0
        assert n.watchdog()
    assert systemd.wait(1) == ["WATCHDOG=1"]


def test_watchdog_pid_must_be_ours(systemd: FakeSystemd) -> None:
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "60000000"}
    ours = Notifier.from_env(env | {"WATCHDOG_PID": str(os.getpid())})
    assert ours.watchdog_interval == 30.0
    ours.close()
    theirs = Notifier.from_env(env | {"WATCHDOG_PID": str(os.getpid() + 1)})
    assert theirs.watchdog_interval is None
    assert theirs.watchdog()  # nothing to do is not a failure
    assert theirs.ready()  # the rest of the protocol still works
    theirs.close()
    assert systemd.wait(1) == ["READY=1"]
    with Notifier.from_env(env | {"WATCHDOG_PID": "12"}, pid=12) as given_pid:
        assert given_pid.watchdog_interval == 30.0


@pytest.mark.parametrize("usec", ["", "0", "-5", "abc", " "])
def test_watchdog_off_for_missing_or_bad_usec(systemd: FakeSystemd, usec: str) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": usec})
    assert n.watchdog_interval is None
    n.close()


def test_no_notify_socket_is_a_noop() -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "2000000"})
    assert not n.enabled
    assert n.watchdog_interval is None  # nobody to ping
    for call in (n.ready, n.stopping, n.reloading, n.watchdog):
        assert call() is True
    assert n.status("x") is True
    assert n._sock is None  # not even a socket
    n.close()
    assert Notifier.from_env({"NOTIFY_SOCKET": ""}).enabled is False


def test_failures_return_false_never_raise(tmp_path: Path) -> None:
    gone = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled
    assert gone.ready() is False
    assert "nobody-listens" in (gone.last_error or "")
    gone.close()
    odd = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert odd.ready() is False
    assert "unsupported" in (odd.last_error or "")


def test_after_close_nothing_is_sent(systemd: FakeSystemd) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": systemd.address})
    assert n.ready()
    n.close()
    assert not n.enabled
    assert n.stopping() is True
    n.close()  # twice is fine
    assert systemd.settled() == ["READY=1"]


def test_extend_timeout(systemd: FakeSystemd) -> None:
    with Notifier.from_env({"NOTIFY_SOCKET": systemd.address}) as n:
        assert n.extend_timeout(12.5)
    assert systemd.wait(1) == ["EXTEND_TIMEOUT_USEC=12500000"]


def test_sends_from_many_threads(systemd: FakeSystemd) -> None:
    with Notifier.from_env({"NOTIFY_SOCKET": systemd.address}) as n:
        threads = [threading.Thread(target=lambda i=i: n.status(f"s{i}")) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(systemd.wait(20)) == sorted(f"STATUS=s{i}" for i in range(20))


# ---- the pinger and the status line --------------------------------------------------------


def test_pinger_due_once_per_interval() -> None:
    p = WatchdogPinger(1.0)
    assert p.due(100.0)  # at once
    assert not p.due(100.0)
    assert not p.due(100.99)
    assert p.due(101.0)
    assert not p.due(101.5)
    assert p.due(102.2)
    # After a stall, one ping and a fresh schedule, not a burst of catch-up pings.
    assert p.due(110.0)
    assert not p.due(110.5)
    assert p.due(111.0)


def test_pinger_off() -> None:
    for interval in (None, 0.0):
        p = WatchdogPinger(interval)
        assert not any(p.due(t) for t in (0.0, 1.0, 1e9))


def test_pinger_from_notifier_interval(systemd: FakeSystemd) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "60000000"})
    p = WatchdogPinger(n.watchdog_interval)
    pings = 0
    for second in range(0, 300):  # a main loop turning once a second for five minutes
        if p.due(float(second)):
            pings += n.watchdog()
    n.close()
    assert pings == 10  # every 30 s: half of WatchdogSec=60


def test_format_status() -> None:
    line = format_status(queue_depth=3, pending=12, failed=1, last_persisted=95.0, now=100.0)
    assert line == "queue 3, settling 12, failed 1, last persisted 5s ago"
    never = format_status(queue_depth=0, pending=0, failed=0, last_persisted=None)
    assert never.endswith("last persisted never")
    assert "7m ago" in format_status(
        queue_depth=0, pending=0, failed=0, last_persisted=0.0, now=450.0
    )
    assert "3h ago" in format_status(
        queue_depth=0, pending=0, failed=0, last_persisted=0.0, now=3 * 3600 + 5
    )


# ---- the real daemon ---------------------------------------------------------------------


def _fields_list(systemd: FakeSystemd) -> list[str]:
    return [line for text in systemd.datagrams() for line in text.split("\n")]


def test_daemon_speaks_sd_notify(tmp_path: Path, systemd: FakeSystemd) -> None:
    """What systemd sees from `exrwatchd run` under Type=notify with WatchdogSec=2."""
    renders = tmp_path / "renders"
    renders.mkdir()
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "config.toml", state, [{"path": str(renders), "backend": "inotify"}]
    )
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "2000000"}
    daemon = DaemonProcess(config, state, env=env)
    try:
        # READY=1 once the journal is open and watching has begun.
        (ready_at, _), *_ = systemd.wait_key("READY", timeout=10.0)
        ready_logged = daemon.wait_event("daemon.ready", timeout=5.0)
        watching = daemon.wait_event("watch.started", timeout=5.0)
        assert (state / "journal.db").exists()
        ready_wall = time.time() - (time.monotonic() - ready_at)
        for event in (ready_logged, watching):
            logged = _iso_to_epoch(event["timestamp"])
            assert logged <= ready_wall + 0.05, f"READY=1 sent before {event['event']}"

        # WATCHDOG=1 at half of WATCHDOG_USEC (1 s), while everything is alive.
        pings = systemd.wait_key("WATCHDOG", count=4, timeout=8.0)
        times = [at for at, _ in pings]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap <= 1.8 for gap in gaps), f"ping gaps {gaps}"  # under WatchdogSec
        # Not faster than every 0.5 s, over the three gaps: one message read late by this
        # process's receiving thread shortens the gap after it, not their sum.
        assert times[-1] - times[0] >= 1.5, f"ping gaps {gaps}"

        # STATUS= lines for `systemctl status`, refreshed every few seconds.
        statuses = systemd.wait_key("STATUS", count=2, timeout=8.0)
        assert all(fields["STATUS"].strip() for _, fields in statuses)

        # SIGHUP: RELOADING=1 (with MONOTONIC_USEC), then READY=1 again.
        hup_at = time.monotonic()
        daemon.proc.send_signal(signal.SIGHUP)
        (reload_at, reload_fields), *_ = systemd.wait_key("RELOADING", after=hup_at)
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert abs(now_usec - int(reload_fields["MONOTONIC_USEC"])) < 5_000_000
        systemd.wait_key("READY", after=reload_at)
        assert daemon.proc.poll() is None, f"daemon died on SIGHUP:\n{daemon.tail()}"

        # SIGTERM: STOPPING=1, then a clean exit.
        term_at = time.monotonic()
        code = daemon.stop(signal.SIGTERM, timeout=10.0)
        assert code == 0, daemon.tail()
        systemd.wait_key("STOPPING", after=term_at, timeout=2.0)
        lines = _fields_list(systemd)
        assert lines.count("STOPPING=1") == 1
        assert lines.index("STOPPING=1") > max(i for i, f in enumerate(lines) if f == "READY=1")
    finally:
        daemon.kill()


def test_daemon_that_cannot_start_never_says_ready(tmp_path: Path, systemd: FakeSystemd) -> None:
    renders = tmp_path / "renders"
    renders.mkdir()
    state = tmp_path / "state"
    state.write_text("a file where the state directory should be")
    config = write_config(tmp_path / "config.toml", state, [{"path": str(renders)}])
    daemon = DaemonProcess(config, state, env={"NOTIFY_SOCKET": systemd.address})
    try:
        assert daemon.proc.wait(timeout=20) == 78, daemon.tail()
    finally:
        daemon.kill()
    assert not any("READY=1" in m for m in systemd.settled())


def _iso_to_epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
