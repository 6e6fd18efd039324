"""Metrics and the /metrics, /healthz endpoint, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import gzip
import inspect
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exrwatchd.telemetry import (
    Metrics,
    MetricsServer,
    NullMetrics,
    Snapshot,
    WatchState,
    health_reason,
    parse_listen,
)
from exrwatchd.telemetry.metrics import ERROR_KINDS, lost_reason

# No proxy for 127.0.0.1, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def fetch(url: str, method: str = "GET") -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, method=method)
    try:
        with _OPENER.open(request, timeout=5) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode(), dict(exc.headers)


def fetch_bytes(url: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    """GET with these request headers; the body as sent (never decompressed)."""
    request = urllib.request.Request(url, headers={k.replace("_", "-"): v
                                                   for k, v in headers.items()})  # fmt: skip
    with _OPENER.open(request, timeout=5) as response:
        return response.status, response.read(), dict(response.headers)


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


SNAP = Snapshot(
    queue_depth=3, pending=7, inflight=2, outbox_ready=11, outbox_dead=0,
    oldest_pending_age_seconds=None,
    watches=(WatchState("/mnt/a", "inotify", 120), ("/mnt/b", "poll", None)),
)  # fmt: skip


class Fake:
    """What the daemon hands the server: a snapshot and a health reason that tests change."""

    def __init__(self) -> None:
        self.snapshot = SNAP
        self.reason: str | None = None
        self.snapshots_taken = 0
        self.now = 1000.0

    def take(self) -> Snapshot:
        self.snapshots_taken += 1
        return self.snapshot

    def health(self) -> str | None:
        return self.reason

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Fake:
    return Fake()


@pytest.fixture
def metrics(fake: Fake) -> Metrics:
    return Metrics(fake.take, clock=fake.clock)


@pytest.fixture
def server(metrics: Metrics, fake: Fake) -> Iterator[str]:
    srv = MetricsServer("127.0.0.1:0", metrics, fake.health)
    srv.start()
    host, port = srv.address
    assert host == "127.0.0.1" and port > 0
    try:
        yield f"http://{host}:{port}"
    finally:
        srv.stop()
    assert not srv.alive()


def scrape(base: str) -> Samples:
    status, body, headers = fetch(base + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    return parse(body)


# ---- counters and histograms ------------------------------------------------------------


def test_counters_with_labels(metrics: Metrics, server: str) -> None:
    for kind in ("changed", "changed", "closed", "gone", "subtree", "/a/path/by/mistake"):
        metrics.event(kind)
    metrics.inspected("complete")
    metrics.inspected("complete")
    metrics.inspected("failed")
    metrics.failed("not_exr")
    metrics.failed("File is not an OpenEXR file: /renders/x.exr")  # a message by mistake
    metrics.persisted(5)
    metrics.persisted(0)
    metrics.dead_lettered("rejected", 2)
    metrics.dead_lettered("max_attempts")
    metrics.sink_retry(3)
    metrics.sink_retry()
    metrics.events_lost("inotify: Inotify event queue overflowed")
    metrics.events_lost("poll /mnt/nfs: OSError: [Errno 5] Input/output error")
    metrics.rescans("start")
    metrics.rescans("lost_events")
    metrics.rescans("lost_events")
    metrics.journal_commit(0.004, 250)
    metrics.scanned(1.5, changed=4, gone=1)
    metrics.scan_skipped()
    metrics.hook_outcome("delivered", 3)
    metrics.hook_outcome("retried")
    metrics.hook_outcome("dead_lettered")
    metrics.hook_outcome("dead_lettered", 0)

    s = scrape(server)
    assert value(s, "exrwatchd_events_total", kind="changed") == 2
    assert value(s, "exrwatchd_events_total", kind="closed") == 1
    assert value(s, "exrwatchd_events_total", kind="gone") == 1
    assert value(s, "exrwatchd_events_total", kind="subtree") == 1
    assert value(s, "exrwatchd_events_total", kind="other") == 1
    assert value(s, "exrwatchd_inspections_total", status="complete") == 2
    assert value(s, "exrwatchd_inspections_total", status="incomplete") == 0
    assert value(s, "exrwatchd_inspections_total", status="failed") == 1
    assert value(s, "exrwatchd_inspection_failures_total", reason="not_exr") == 1
    assert value(s, "exrwatchd_inspection_failures_total", reason="other") == 1
    assert value(s, "exrwatchd_inspection_failures_total", reason="truncated_header") == 0
    assert value(s, "exrwatchd_persisted_total") == 5
    assert value(s, "exrwatchd_dead_letters_total", reason="rejected") == 2
    assert value(s, "exrwatchd_dead_letters_total", reason="max_attempts") == 1
    assert value(s, "exrwatchd_sink_retries_total") == 4
    assert value(s, "exrwatchd_events_lost_total", reason="inotify_overflow") == 1
    assert value(s, "exrwatchd_events_lost_total", reason="poller_died") == 1
    assert value(s, "exrwatchd_rescans_total", trigger="start") == 1
    assert value(s, "exrwatchd_rescans_total", trigger="lost_events") == 2
    assert value(s, "exrwatchd_rescans_total", trigger="interval") == 0
    assert value(s, "exrwatchd_journaled_total") == 250
    assert value(s, "exrwatchd_journal_commit_seconds_count") == 1
    assert value(s, "exrwatchd_scan_found_total", kind="changed") == 4
    assert value(s, "exrwatchd_scan_found_total", kind="gone") == 1
    assert value(s, "exrwatchd_scan_seconds_count") == 1
    assert value(s, "exrwatchd_scans_skipped_total") == 1
    assert value(s, "exrwatchd_hook_deliveries_total", outcome="delivered") == 3
    assert value(s, "exrwatchd_hook_deliveries_total", outcome="retried") == 1
    assert value(s, "exrwatchd_hook_deliveries_total", outcome="dead_lettered") == 1
    # Never a path or a message in a label value; every series is prefixed (but for the
    # standard process_* series that stock dashboards query).
    for name, labels in s:
        assert name.startswith(("exrwatchd_", "process_")), name
        for _, label_value in labels:
            assert "/" not in label_value and " " not in label_value, (name, label_value)


def test_histogram_buckets_and_counts(metrics: Metrics, server: str, fake: Fake) -> None:
    metrics.inspection_seconds(0.003)
    metrics.inspection_seconds(0.2)
    metrics.inspection_seconds(30.0)  # beyond the last bucket: +Inf only
    metrics.settle_seconds(2.2)
    metrics.sink_batch(0.02, 7)
    metrics.sink_batch(0.3, 500)
    # End to end: from the first event given to journaled() to delivered(), on our clock.
    metrics.journaled("/r/a.exr", first_seen=990.0)
    metrics.journaled("/r/a.exr", first_seen=995.0)  # a later event: the first one counts
    metrics.journaled("/r/b.exr", first_seen=998.0)
    fake.now = 1000.0
    metrics.delivered(["/r/a.exr", "/r/b.exr", "/r/never-journaled.exr"])
    metrics.delivered(["/r/a.exr"])  # already observed: not again
    metrics.end_to_end_seconds(400.0)

    s = scrape(server)
    h = "exrwatchd_inspection_seconds"
    assert value(s, h + "_bucket", le="0.0025") == 0
    assert value(s, h + "_bucket", le="0.005") == 1
    assert value(s, h + "_bucket", le="0.1") == 1
    assert value(s, h + "_bucket", le="0.25") == 2
    assert value(s, h + "_bucket", le="10.0") == 2
    assert value(s, h + "_bucket", le="+Inf") == 3
    assert value(s, h + "_count") == 3
    assert value(s, h + "_sum") == pytest.approx(30.203)

    assert value(s, "exrwatchd_settle_seconds_bucket", le="2.0") == 0
    assert value(s, "exrwatchd_settle_seconds_bucket", le="2.5") == 1

    e = "exrwatchd_end_to_end_seconds"
    assert value(s, e + "_count") == 3
    assert value(s, e + "_sum") == pytest.approx(10.0 + 2.0 + 400.0)
    assert value(s, e + "_bucket", le="2.0") == 1
    assert value(s, e + "_bucket", le="10.0") == 2
    assert value(s, e + "_bucket", le="300.0") == 2
    assert value(s, e + "_bucket", le="600.0") == 3

    assert value(s, "exrwatchd_sink_batch_seconds_count") == 2
    assert value(s, "exrwatchd_sink_batch_seconds_bucket", le="0.025") == 1
    assert value(s, "exrwatchd_sink_batch_entries_bucket", le="10.0") == 1
    assert value(s, "exrwatchd_sink_batch_entries_bucket", le="500.0") == 2
    assert value(s, "exrwatchd_sink_batch_entries_sum") == 507


def test_end_to_end_tracking_is_bounded(fake: Fake) -> None:
    m = Metrics(clock=fake.clock, max_tracked=2, process=False)
    for name in ("a", "b", "c"):
        m.journaled(name, 999.0)
    m.delivered(["a", "b", "c"])
    s = parse(m.render().decode())
    assert value(s, "exrwatchd_end_to_end_seconds_count") == 2  # "c" was not tracked
    m.journaled("c", 999.0)  # room again after delivery
    m.delivered(["c"])
    assert value(parse(m.render().decode()), "exrwatchd_end_to_end_seconds_count") == 3


def test_counters_are_thread_safe(fake: Fake) -> None:
    m = Metrics(clock=fake.clock, process=False)

    def hammer() -> None:
        for _ in range(5000):
            m.event("closed")
            m.inspection_seconds(0.001)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = parse(m.render().decode())
    assert value(s, "exrwatchd_events_total", kind="closed") == 20_000
    assert value(s, "exrwatchd_inspection_seconds_count") == 20_000


def test_private_registries() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.persisted(3)
    assert value(parse(a.render().decode()), "exrwatchd_persisted_total") == 3
    assert value(parse(b.render().decode()), "exrwatchd_persisted_total") == 0
    assert not any(f.name.startswith("exrwatchd_") for f in REGISTRY.collect()), (
        "nothing may land in prometheus-client's global registry"
    )


# ---- gauges: read at scrape time ----------------------------------------------------------


def test_gauges_come_from_the_snapshot_at_scrape_time(server: str, fake: Fake) -> None:
    assert fake.snapshots_taken == 0  # creating and registering did not read it
    s = scrape(server)
    assert fake.snapshots_taken == 1
    assert value(s, "exrwatchd_snapshot_ok") == 1
    assert value(s, "exrwatchd_queue_depth") == 3
    assert value(s, "exrwatchd_pending_files") == 7
    assert value(s, "exrwatchd_inflight_files") == 2
    assert value(s, "exrwatchd_outbox_entries", state="ready") == 11
    assert value(s, "exrwatchd_outbox_entries", state="dead") == 0
    assert value(s, "exrwatchd_hook_entries", state="ready") == 0
    assert value(s, "exrwatchd_hook_entries", state="dead") == 0
    assert value(s, "exrwatchd_oldest_pending_age_seconds") == 0
    assert value(s, "exrwatchd_sink_healthy") == 1
    assert value(s, "exrwatchd_sink_unhealthy_seconds") == 0
    assert value(s, "exrwatchd_journal_disk_full_seconds") == 0
    assert value(s, "exrwatchd_healthy") == 1
    assert value(s, "exrwatchd_watches", backend="inotify") == 1
    assert value(s, "exrwatchd_watches", backend="poll") == 1
    assert value(s, "exrwatchd_watch_up", watch="0", backend="inotify") == 1
    assert value(s, "exrwatchd_watch_up", watch="1", backend="poll") == 1
    assert value(s, "exrwatchd_watched_directories", watch="0", backend="inotify") == 120
    assert ("exrwatchd_watched_directories", frozenset({("watch", "1"), ("backend", "poll")})) \
        not in s  # fmt: skip
    assert value(s, "exrwatchd_build_info", version=__import__("exrwatchd").__version__) == 1

    fake.snapshot = replace(
        SNAP, queue_depth=0, pending=1, outbox_ready=2, outbox_dead=9, outbox_inflight=4,
        oldest_pending_age_seconds=612.5, sink_healthy=False, sink_unhealthy_seconds=612.0,
        journal_queue=17, watches=(WatchState("/mnt/a", "inotify", 130, alive=False),),
        journal_disk_full_seconds=42.5, healthy=False, hooks_ready=3, hooks_inflight=1,
        hooks_dead=2,
    )  # fmt: skip
    s = scrape(server)
    assert fake.snapshots_taken == 2
    assert value(s, "exrwatchd_queue_depth") == 0
    assert value(s, "exrwatchd_pending_files") == 1
    assert value(s, "exrwatchd_journal_queue_items") == 17
    assert value(s, "exrwatchd_outbox_entries", state="ready") == 2
    assert value(s, "exrwatchd_outbox_entries", state="inflight") == 4
    assert value(s, "exrwatchd_outbox_entries", state="dead") == 9
    assert value(s, "exrwatchd_hook_entries", state="ready") == 3
    assert value(s, "exrwatchd_hook_entries", state="inflight") == 1
    assert value(s, "exrwatchd_hook_entries", state="dead") == 2
    assert value(s, "exrwatchd_oldest_pending_age_seconds") == 612.5
    assert value(s, "exrwatchd_sink_healthy") == 0
    assert value(s, "exrwatchd_sink_unhealthy_seconds") == 612.0
    assert value(s, "exrwatchd_journal_disk_full_seconds") == 42.5
    assert value(s, "exrwatchd_healthy") == 0
    assert value(s, "exrwatchd_watch_up", watch="0", backend="inotify") == 0
    assert value(s, "exrwatchd_watched_directories", watch="0", backend="inotify") == 130
    assert ("exrwatchd_watches", frozenset({("backend", "poll")})) not in s


def test_a_failing_snapshot_keeps_the_counters() -> None:
    def broken() -> Snapshot:
        raise RuntimeError("journal is locked")

    m = Metrics(broken, process=False)
    m.persisted(1)
    srv = MetricsServer("127.0.0.1:0", m)
    srv.start()
    try:
        s = scrape("http://{}:{}".format(*srv.address))
    finally:
        srv.stop()
    assert value(s, "exrwatchd_snapshot_ok") == 0
    assert value(s, "exrwatchd_persisted_total") == 1
    assert ("exrwatchd_queue_depth", frozenset()) not in s


def test_no_snapshot_no_gauges() -> None:
    s = parse(Metrics(process=False).render().decode())
    assert ("exrwatchd_queue_depth", frozenset()) not in s
    assert ("exrwatchd_snapshot_ok", frozenset()) not in s
    assert value(s, "exrwatchd_persisted_total") == 0


# ---- HTTP ---------------------------------------------------------------------------------


# Prometheus 3's Accept header, as it sends it (scrape_protocols at their default).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)


def test_plain_text_without_accept(metrics: Metrics, server: str) -> None:
    metrics.persisted(2)
    status, body, headers = fetch_bytes(server + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    assert "Content-Encoding" not in headers
    assert int(headers["Content-Length"]) == len(body)
    assert value(parse(body.decode()), "exrwatchd_persisted_total") == 2


@pytest.mark.parametrize("accept", ["application/openmetrics-text", PROMETHEUS_ACCEPT])
def test_openmetrics_when_the_scraper_asks(metrics: Metrics, server: str, accept: str) -> None:
    metrics.persisted(2)
    metrics.inspection_seconds(0.003)
    status, body, headers = fetch_bytes(server + "/metrics", Accept=accept)
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert "Accept" in headers["Vary"]
    text = body.decode()
    assert text.endswith("# EOF\n")
    s = {(x.name, frozenset(x.labels.items())): x.value
         for f in openmetrics_families(text) for x in f.samples}  # fmt: skip
    assert value(s, "exrwatchd_persisted_total") == 2
    assert value(s, "exrwatchd_inspection_seconds_count") == 1
    assert value(s, "exrwatchd_queue_depth") == 3
    assert value(s, "process_cpu_seconds_total") > 0


def test_gzip_when_the_scraper_accepts_it(metrics: Metrics, server: str) -> None:
    metrics.persisted(4)
    status, body, headers = fetch_bytes(server + "/metrics", Accept_Encoding="gzip, deflate")
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Content-Type"].startswith("text/plain; version=")
    plain = gzip.decompress(body)
    assert len(body) < len(plain) / 3
    assert value(parse(plain.decode()), "exrwatchd_persisted_total") == 4
    # Both at once: OpenMetrics, gzipped.
    _, body, headers = fetch_bytes(server + "/metrics", Accept=PROMETHEUS_ACCEPT,
                                   Accept_Encoding="gzip")  # fmt: skip
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).endswith(b"# EOF\n")
    # HEAD tells the length of what GET would send, and sends nothing.
    status, body, headers = fetch_bytes(server + "/metrics", Accept_Encoding="gzip")
    request = urllib.request.Request(server + "/metrics", method="HEAD",
                                     headers={"Accept-Encoding": "gzip"})  # fmt: skip
    with _OPENER.open(request, timeout=5) as response:
        assert response.read() == b""
        assert response.headers["Content-Encoding"] == "gzip"


def test_name_query_restricts_the_answer(metrics: Metrics, server: str) -> None:
    metrics.persisted(1)
    url = server + "/metrics?name[]=exrwatchd_persisted_total&name[]=exrwatchd_queue_depth"
    s = parse(fetch_bytes(url)[1].decode())
    assert set(s) == {("exrwatchd_persisted_total", frozenset()),
                      ("exrwatchd_queue_depth", frozenset())}  # fmt: skip


def test_standard_process_metrics(server: str) -> None:
    # Stock dashboards (node/process, Grafana's Prometheus-client ones) query these names.
    s = scrape(server)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                 "process_start_time_seconds"):  # fmt: skip
        assert value(s, name) > 0, name
    assert value(s, "process_start_time_seconds") <= time.time()
    assert not [n for n, _ in s if n.startswith("exrwatchd_process_")]


def test_healthz_follows_health(server: str, fake: Fake) -> None:
    status, body, headers = fetch(server + "/healthz")
    assert (status, body) == (200, "ok\n")
    assert headers["Content-Type"].startswith("text/plain")

    fake.reason = "sink failing for 612 s: connection refused"
    status, body, _ = fetch(server + "/healthz")
    assert (status, body) == (503, "sink failing for 612 s: connection refused\n")

    fake.reason = None
    assert fetch(server + "/healthz")[:2] == (200, "ok\n")


def test_healthz_when_health_raises(metrics: Metrics) -> None:
    def boom() -> str | None:
        raise ValueError("no journal")

    srv = MetricsServer("127.0.0.1:0", metrics, boom)
    srv.start()
    try:
        status, body, _ = fetch("http://{}:{}/healthz".format(*srv.address))
    finally:
        srv.stop()
    assert status == 503
    assert body == "health check failed: ValueError: no journal\n"


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/", "/healthz/x", "/favicon.ico"])
def test_other_paths_are_404(server: str, path: str) -> None:
    status, body, _ = fetch(server + path)
    assert (status, body) == (404, "not found\n")


def test_query_string_and_head(server: str) -> None:
    assert fetch(server + "/metrics?name[]=x")[0] == 200
    status, body, headers = fetch(server + "/healthz", method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, "", "3")


def test_no_access_log(server: str, capfd: pytest.CaptureFixture[str]) -> None:
    fetch(server + "/metrics")
    fetch(server + "/nope")
    out, err = capfd.readouterr()
    assert "GET /" not in out + err


def test_listen_in_use_names_the_setting(metrics: Metrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(OSError, match=f"metrics.listen {listen}"):
            MetricsServer(listen, metrics).start()


def test_ipv6(metrics: Metrics) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    srv = MetricsServer("[::1]:0", metrics)
    srv.start()
    try:
        host, port = srv.address
        assert host == "::1"
        assert fetch(f"http://[::1]:{port}/healthz")[:2] == (200, "ok\n")
    finally:
        srv.stop()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9109") == ("127.0.0.1", 9109)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("0.0.0.0:65535") == ("0.0.0.0", 65535)
    for bad in ("9109", ":9109", "host:", "host:x", "host:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_stop_is_idempotent(metrics: Metrics) -> None:
    srv = MetricsServer("127.0.0.1:0", metrics)
    srv.stop()  # never started
    srv.start()
    srv.stop()
    srv.stop()
    with pytest.raises(RuntimeError):
        _ = srv.address


# ---- helpers, NullMetrics ------------------------------------------------------------------


def test_health_reason() -> None:
    assert health_reason(None, 300.0, []) is None
    assert health_reason(299.9, 300.0, []) is None
    assert health_reason(612.4, 300.0, [], sink_error="connection\nrefused") == (
        "sink failing for 612 s: connection refused"
    )
    assert health_reason(612.0, 300.0, []) == "sink failing for 612 s"
    assert health_reason(None, 300.0, ["/mnt/x"]) == "watcher for /mnt/x is dead"
    assert health_reason(400.0, 300.0, ["/mnt/x", "/mnt/y"], sink_error="timeout") == (
        "sink failing for 400 s: timeout; watcher for /mnt/x is dead; watcher for /mnt/y is dead"
    )


def test_lost_reason() -> None:
    assert lost_reason("inotify: Inotify event queue overflowed") == "inotify_overflow"
    assert lost_reason("inotify: Unhandled exception in emitter") == "inotify_error"
    assert lost_reason("poll /mnt/nfs: OSError: gone") == "poller_died"
    assert lost_reason("poller_died") == "poller_died"
    assert lost_reason("something new") == "other"


def _sample_args(name: str, param: inspect.Parameter) -> object:
    if name == "paths":
        return ["/a"]
    if param.annotation in ("str",):
        return "x"
    if param.annotation in ("int",):
        return 1
    return 0.5


def test_null_metrics_has_every_method_and_accepts_every_call(fake: Fake) -> None:
    real = Metrics(fake.take, clock=fake.clock, process=False)
    null = NullMetrics()
    assert not null.enabled and real.enabled
    public = [n for n, f in inspect.getmembers(Metrics, inspect.isfunction)
              if not n.startswith("_") and n != "render"]  # fmt: skip
    assert len(public) >= 17
    for name in public:
        sig = inspect.signature(getattr(Metrics, name))
        assert inspect.signature(getattr(NullMetrics, name)) == sig, name
        args = {p: _sample_args(p, param) for p, param in sig.parameters.items()
                if p != "self" and param.default is inspect.Parameter.empty}  # fmt: skip
        assert getattr(null, name)(**args) is None
        assert getattr(real, name)(**args) is None


def test_error_kinds_cover_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = readme.split("Error kinds:", 1)[1].split(".", 1)[0]
    kinds = {k.strip(" `\n") for k in listed.replace(", ", ",").split(",")}
    assert kinds <= set(ERROR_KINDS), kinds - set(ERROR_KINDS)


# ---- cost (printed, not asserted) -----------------------------------------------------------


def test_cost_per_update(capsys: pytest.CaptureFixture[str]) -> None:
    m, null = Metrics(lambda: SNAP, process=False), NullMetrics()
    n = 200_000
    timings = {}
    for label, call in (
        ("counter inc (event)", lambda: m.event("closed")),
        ("counter inc, unlabelled (persisted)", lambda: m.persisted(1)),
        ("histogram observe (inspection_seconds)", lambda: m.inspection_seconds(0.003)),
        ("histogram observe (end_to_end, 20 buckets)", lambda: m.end_to_end_seconds(45.0)),
        ("NullMetrics call", lambda: null.event("closed")),
    ):
        start = time.perf_counter()
        for _ in range(n):
            call()
        timings[label] = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(100):
        m.render()
    render_ms = (time.perf_counter() - start) / 100 * 1e3
    with capsys.disabled():
        print()
        for label, us in timings.items():
            print(f"  metrics cost: {label}: {us:.2f} µs (incl. lambda call)")
        print(f"  metrics cost: full render of /metrics: {render_ms:.2f} ms")
