"""The running daemon's /metrics and /healthz, scraped over real HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from exrgen import write_scanline
from harness import Catalog, DaemonProcess, wait_for, write_config


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_and_health_of_a_running_daemon(tmp_path: Path) -> None:
    renders = tmp_path / "renders"
    renders.mkdir()
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}],
                          metrics={"listen": "127.0.0.1:0"})  # fmt: skip
    daemon = DaemonProcess(config, state)
    try:
        address = daemon.wait_event("metrics.listening")["address"]
        expected = {str(write_scanline(renders / f"f.{i}.exr")) for i in range(5)}
        (renders / "broken.exr").write_bytes(b"not an exr")
        Catalog(state).wait_paths(expected | {str(renders / "broken.exr")})
        text = wait_for(
            lambda: (t := get(f"http://{address}/metrics")[1])
            and metric(t, "exrwatchd_persisted_total") >= 6 and t,
            20, "persisted counter reaches 6",
        )  # fmt: skip
        assert metric(text, 'exrwatchd_inspections_total{status="complete"}') == 5
        assert metric(text, 'exrwatchd_inspection_failures_total{reason="not_exr"}') == 1
        assert metric(text, "exrwatchd_end_to_end_seconds_count") >= 6
        assert get(f"http://{address}/healthz") == (200, "ok\n")
    finally:
        assert daemon.stop() == 0
