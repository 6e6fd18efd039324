"""The running daemon's /metrics and /healthz, scraped over real HTTP."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from pathlib import Path

from exrgen import write_scanline
from harness import Catalog, DaemonProcess, wait_for, write_config
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from test_metrics import PROMETHEUS_ACCEPT, fetch_bytes
from test_metrics_files import missing_names


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
    polled = tmp_path / "polled"  # a poll watch: the poller tells its directory count
    polled.mkdir()
    config = write_config(tmp_path / "c.toml", state,
                          [{"path": str(renders)}, {"path": str(polled), "backend": "poll"}],
                          metrics={"listen": "127.0.0.1:0"})  # fmt: skip
    daemon = DaemonProcess(config, state)
    try:
        address = daemon.wait_event("metrics.listening")["address"]
        daemon.wait_event("daemon.ready")
        # Said once, with the address: tests and operators take the address from the first
        # such line (a second one, from the server itself, once came first without it).
        assert [e.get("address") for e in daemon.seen("metrics.listening")] == [address]
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
        assert metric(text, "exrwatchd_healthy") == 1
        assert metric(text, "exrwatchd_journal_disk_full_seconds") == 0
        assert metric(text, "process_resident_memory_bytes") > 0
        assert metric(text, "process_open_fds") > 0
        # Every metric the shipped dashboard and alert rules use is served by the daemon.
        assert missing_names(text) == {}

        # What Prometheus asks for: OpenMetrics, gzipped.
        _, body, headers = fetch_bytes(f"http://{address}/metrics", Accept=PROMETHEUS_ACCEPT,
                                       Accept_Encoding="gzip")  # fmt: skip
        assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert headers["Content-Encoding"] == "gzip"
        families = {f.name: f for f in text_string_to_metric_families(gzip.decompress(body)
                                                                     .decode())}  # fmt: skip
        persisted = families["exrwatchd_persisted"]
        assert persisted.type == "counter" and persisted.samples[0].value >= 6
        assert families["exrwatchd_end_to_end_seconds"].type == "histogram"
        assert families["process_cpu_seconds"].samples[0].value > 0
    finally:
        assert daemon.stop() == 0
