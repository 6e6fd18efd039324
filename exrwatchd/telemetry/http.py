"""The HTTP side of the metrics: `/metrics` and `/healthz` on a daemon thread.

`MetricsServer` serves `/metrics` (a registry, through prometheus-client's exposition:
Prometheus text or OpenMetrics as the scraper's `Accept` asks, gzipped when it accepts gzip)
and `/healthz` (200 "ok", or 503 and the reason); `health_reason` builds that reason.
exrwatchd.telemetry.metrics re-exports the public names here, so import them from there. This
module never imports exrwatchd.telemetry.metrics: the server needs only an object with a
`registry`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector

from exrwatchd import __version__
from exrwatchd.logs import get_logger

# The logger name of the module these lines came from, so log events keep their logger.
log = get_logger("exrwatchd.metrics")


class Exposed(Protocol):
    """What the server serves at /metrics: `Metrics` (exrwatchd.telemetry.metrics) is one."""

    @property
    def registry(self) -> Collector: ...


# ---- health ---------------------------------------------------------------------------


def health_reason(
    sink_unhealthy_seconds: float | None,
    threshold: float = 300.0,
    dead_watchers: Iterable[str] = (),
    *,
    sink_error: str | None = None,
    journal_error: str | None = None,
) -> str | None:
    """Why the daemon is unhealthy, or None when it is fine.

    Unhealthy: the journal cannot be written (`journal_error`: its disk is full), the sink
    has been failing for `threshold` seconds or more, or a watcher is dead (its path listed
    in `dead_watchers`). Several reasons are joined with "; ".
    """
    reasons = [_one_line(journal_error)] if journal_error else []
    if sink_unhealthy_seconds is not None and sink_unhealthy_seconds >= threshold:
        reason = f"sink failing for {sink_unhealthy_seconds:.0f} s"
        if sink_error:
            reason += f": {_one_line(sink_error)}"
        reasons.append(reason)
    reasons.extend(f"watcher for {path} is dead" for path in dead_watchers)
    return "; ".join(reasons) or None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- HTTP -----------------------------------------------------------------------------


def parse_listen(listen: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; port 0 picks a free one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not re.fullmatch(r"\d{1,5}", port) or int(port) > 65535:
        raise ValueError(f'metrics.listen must be "host:port", got {listen!r}')
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` at once: a connection over the
    cap gets a 503 and is closed at once, so slow clients cannot pile threads up."""

    daemon_threads = True
    metrics: Exposed
    health: Callable[[], str | None]
    request_timeout: float
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # starts the thread
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _refuse(request: socket.socket) -> None:
    # Never blocks the accepting thread: a client that reads nothing loses the answer.
    with contextlib.suppress(OSError):
        request.setblocking(False)
        request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")  # fmt: skip


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that opens a connection and sends nothing cannot keep a thread
    server_version = f"exrwatchd/{__version__}"

    def setup(self) -> None:
        super().setup()
        # `timeout` bounds each read only: a client trickling a byte at a time would keep
        # the thread for ever. Every read and the answer share one deadline instead.
        deadline = time.monotonic() + self.server.request_timeout
        self.rfile.close()  # the plain one: it would hold the socket open after close()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))
        self._deadline = deadline

    def finish(self) -> None:
        # sendall's timeout is the whole send (Python >= 3.5): the rest of the deadline.
        self.connection.settimeout(max(0.001, self._deadline - time.monotonic()))
        super().finish()

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, *, body: bool) -> None:
        url = urlsplit(self.path)
        path = url.path
        headers: dict[str, str] = {}
        if path == "/metrics":
            try:
                data, headers = self._exposition(parse_qs(url.query).get("name[]"))
                status, ctype = 200, headers.pop("Content-Type")
            except Exception as exc:
                log.error("metrics.render_failed", error=str(exc), error_type=type(exc).__name__)
                status, data, ctype = 500, b"metrics failed\n", "text/plain; charset=utf-8"
        elif path == "/healthz":
            try:
                reason = self.server.health()
            except Exception as exc:
                reason = f"health check failed: {type(exc).__name__}: {exc}"
            status = 200 if reason is None else 503
            text = "ok" if reason is None else _one_line(reason, 2000)
            data, ctype = (text + "\n").encode(), "text/plain; charset=utf-8"
        else:
            status, data, ctype = 404, b"not found\n", "text/plain; charset=utf-8"
        self.connection.settimeout(max(0.001, self._deadline - time.monotonic()))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, header_value in headers.items():
            self.send_header(name, header_value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _exposition(self, names: list[str] | None) -> tuple[bytes, dict[str, str]]:
        """The body and headers of /metrics, made as prometheus-client's own MetricsHandler
        makes them (its private `_bake_output`): the format the `Accept` header asks for
        (OpenMetrics or the text format), only the `name[]` series when the query names
        some, gzipped when `Accept-Encoding` allows it."""
        registry: Any = self.server.metrics.registry
        if names:
            registry = registry.restricted_registry(names)
        encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
        data = encoder(registry)
        headers = {"Content-Type": ctype, "Vary": "Accept, Accept-Encoding"}
        if gzip_accepted(self.headers.get("Accept-Encoding", "")):
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        return data, headers

    def log_message(self, format: str, *args: object) -> None:  # no access log on stderr
        pass


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each given what is left of one deadline; TimeoutError after it
    (BaseHTTPRequestHandler closes the connection on that)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received within the request time limit")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


@dataclass
class MetricsServer:
    """`/metrics` and `/healthz` over HTTP, on one daemon thread (plus one per connection,
    at most `max_connections`; each connection is closed after `request_timeout` seconds,
    however slowly its client sends)."""

    listen: str
    metrics: Exposed
    health: Callable[[], str | None] = lambda: None
    max_connections: int = 8
    request_timeout: float = 10.0
    _server: _Server | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Bind and serve. OSError (address in use, bad host) names `listen`."""
        host, port = parse_listen(self.listen)
        cls = _Server6 if ":" in host else _Server
        try:
            server = cls((host, port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics.listen {self.listen}: {exc.strerror or exc}") \
                from exc  # fmt: skip
        server.metrics = self.metrics
        server.health = self.health
        server.request_timeout = self.request_timeout
        server.slots = threading.BoundedSemaphore(self.max_connections)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http",
            daemon=True,
        )  # fmt: skip
        self._thread.start()  # the daemon logs metrics.listening, once, with the address

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port): the real port when `listen` asked for port 0."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
