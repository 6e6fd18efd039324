"""The emulator: a threaded loopback HTTP server speaking the VAST tabular API, with faults.

    with VastEmulator(buckets={"exrwatch"}) as emu:
        session = vastdb.connect(endpoint=emu.endpoint, access=emu.access_key,
                                 secret=emu.secret_key, timeout=(5, 5))
        emu.fail_next(1, status=503, code="SlowDown")  # retried by the SDK itself

The state (store) outlives ``down()``/``up()``: only the listening socket and the open
connections go away, and ``up()`` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from .faults import XML_STATUSES, Fault, FaultPlan, RowPredicate
from .routes import Reply, Request, Router
from .store import EmulatorError, Store
from .wire import error_xml

log = logging.getLogger("vast_emulator")

#: Reported in the Server header. 5.5: timestamps keep their time zone (5.4+), tables open
#: with three requests (no ``?sorted-columns`` probe) and no ADBC is involved in any case.
DEFAULT_VERSION = (5, 5, 0, 0)

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]+)"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck on a client must not keep the process alive
    request_queue_size = 128
    emulator: VastEmulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the SDK's pooled requests.Session
    server: _Server

    def version_string(self) -> str:
        return "vast " + ".".join(map(str, self.server.emulator.version))

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus the client's
        # delayed ACK stall every reply by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            with contextlib.suppress(OSError):  # the peer may be gone already
                super().finish()
        finally:
            self.server.emulator._track(self.connection, add=False)

    def _handle(self) -> None:
        self.server.emulator._serve_one(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    def drop(self) -> None:
        """Close the connection without replying (what a crashed or restarted node does)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:  # the client gave up (read timeout): nothing left to tell it
            self.close_connection = True


class VastEmulator:
    """A VAST cluster stand-in for the real ``vastdb`` SDK. See the package docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_key: str = "emulator-access-key",
        secret_key: str = "emulator-secret-key",
        buckets: set[str] | frozenset[str] = frozenset({"exrwatch"}),
        version: tuple[int, int, int, int] = DEFAULT_VERSION,
        verify_signatures: bool = True,
        advertise_vips: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.access_key, self.secret_key = access_key, secret_key
        self.version = version
        self.verify_signatures = verify_signatures
        self.store = Store(set(buckets), keep_timezones=version >= (5, 4))
        self.faults = FaultPlan()
        # advertise_vips: stats name this host as a VIP, so that a session without
        # SessionConfig(data_endpoints=...) runs 2.1's discovery (a begin+rollback probe).
        self._router = Router(self.store, version, [host] if advertise_vips else [],
                              lambda: self.faults.reject)  # fmt: skip
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def buckets(self) -> set[str]:
        return self.store.buckets

    def start(self) -> VastEmulator:
        self._stopping.clear()
        self.up()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed handlers
        if self._server is not None:
            self.down()

    def __enter__(self) -> VastEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    def up(self) -> None:
        """Listen (again, on the same port once one was chosen)."""
        if self._server is not None:
            return
        server = _Server((self.host, self.port), _Handler)
        server.emulator = self
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"vast-emulator-{self.port}", daemon=True).start()  # fmt: skip

    def down(self) -> None:
        """Refuse connections: stop listening and cut the open ones. State is kept."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:  # pooled keep-alive connections would still work
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    # ------------------------------------------------------------------ counters

    @property
    def requests(self) -> Counter[tuple[str, str]]:
        """Requests received, by (HTTP method, tabular command); faulted ones included."""
        with self._lock:
            return Counter(self._requests)

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self._requests.values())

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------------ faults

    def fail_next(self, n: int = 1, status: int = 503, code: str = "SlowDown", *,
                  method: str | None = None, command: str | None = None) -> None:  # fmt: skip
        """The next ``n`` matching requests fail with ``status``: S3 XML with ``code`` for
        statuses the SDK knows (503 SlowDown is retried by it, 503 ServiceUnavailable and 500
        InternalServerError are raised), a plain body otherwise (429, 502, 504...)."""
        self.faults.arm(Fault("fail", n, method, command, status=status, code=code))

    def reset_connection(
        self,
        when: Literal["before_commit", "after_commit", "before_request"] = "before_commit",
        n: int = 1,
        *,
        method: str | None = None,
        command: str | None = None,
    ) -> None:
        """Close the connection without a reply. ``before_commit``: the commit is not applied
        (the transaction stays open); ``after_commit``: it is applied, then the connection
        drops, so the client cannot know; ``before_request``: any matching request."""
        if when == "before_request":
            self.faults.arm(Fault("reset_before", n, method, command))
        elif when in ("before_commit", "after_commit"):
            kind: Literal["reset_before", "reset_after"] = (
                "reset_before" if when == "before_commit" else "reset_after"
            )
            self.faults.arm(Fault(kind, n, "PUT", "transaction"))
        else:
            raise ValueError(f"unknown reset point {when!r}")

    def delay(self, seconds: float, n: int = 1, *, method: str | None = None,
              command: str | None = None) -> None:  # fmt: skip
        """Sleep before handling the next ``n`` matching requests. The request still takes
        effect afterwards, like on a slow node, even if the client gave up meanwhile."""
        self.faults.arm(Fault("delay", n, method, command, seconds=seconds))

    def hold(self, *, method: str | None = None, command: str | None = None) -> threading.Event:
        """Hold the next matching request, unanswered, until the returned event is set; then
        reset its connection (an outage in the middle of a request). Unlike `delay`, the
        moment it ends is the test's, not a timer's."""
        release = threading.Event()
        self.faults.arm(Fault("hold", 1, method, command, release=release))
        return release

    def reject_rows(self, predicate: RowPredicate | None) -> None:
        """Fail (400 BadRequest naming the row) every insert holding a row for which
        ``predicate(row_dict)`` is true, until called again with None."""
        self.faults.reject = predicate

    def clear_faults(self) -> None:
        self.faults.clear()

    # ------------------------------------------------------------------ serving

    def _serve_one(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        url = urlsplit(handler.path)
        first = url.query.split("&", 1)[0]
        command = "" if "=" in first else unquote(first)
        with self._lock:
            self._requests[(handler.command, command)] += 1
        request = Request(handler.command, [unquote(p) for p in url.path.split("/") if p],
                          command, handler.headers, body)  # fmt: skip
        try:
            self._authenticate(handler, body)
            fault = self.faults.take(handler.command, command)
            if fault is not None and fault.kind == "delay":
                self._stopping.wait(fault.seconds)
            elif fault is not None and fault.kind == "hold":
                assert fault.release is not None
                while not fault.release.wait(0.05) and not self._stopping.is_set():
                    pass
                return handler.drop()
            elif fault is not None and fault.kind == "reset_before":
                return handler.drop()
            elif fault is not None and fault.kind == "fail":
                return handler.send(_failure(fault.status, fault.code))
            reply = self._router.handle(request)
            if fault is not None and fault.kind == "reset_after":
                return handler.drop()
        except EmulatorError as exc:
            log.debug("%s %s -> %s", handler.command, handler.path, exc)
            reply = Reply(exc.status, error_xml(exc.code, exc.message),
                          {"Content-Type": "application/xml"})  # fmt: skip
        except Exception as exc:  # an emulator bug: make it loud on the client side too
            log.exception("emulator failure on %s %s", handler.command, handler.path)
            reply = Reply(500, error_xml("InternalError", f"emulator: {exc!r}"))
        handler.send(reply)

    def _authenticate(self, handler: _Handler, body: bytes) -> None:
        """Check the SigV4 header the SDK's AWSRequestsAuth adds (service s3, empty region)."""
        match = _AUTH.fullmatch(handler.headers.get("Authorization", ""))
        if match is None:
            raise EmulatorError(403, "AccessDenied", "missing or malformed Authorization")
        if match["key"] != self.access_key:
            raise EmulatorError(403, "InvalidAccessKeyId", f"unknown access key {match['key']}")
        if not self.verify_signatures:
            return
        payload_hash = hashlib.sha256(body).hexdigest()
        if handler.headers.get("x-amz-content-sha256", payload_hash) != payload_hash:
            raise EmulatorError(400, "XAmzContentSHA256Mismatch", "payload hash mismatch")
        url = urlsplit(handler.path)
        canonical_query = "&".join(
            p if "=" in p else p + "=" for p in sorted(url.query.split("&")) if p
        )
        signed = match["signed"].split(";")
        canonical_headers = "".join(f"{h}:{handler.headers.get(h, '')}\n" for h in signed)
        canonical_request = "\n".join([
            handler.command, quote(url.path or "/", safe="/-_.~"), canonical_query,
            canonical_headers, match["signed"], payload_hash,
        ])  # fmt: skip
        date, region, service, _ = match["scope"].split("/")
        to_sign = "\n".join([
            "AWS4-HMAC-SHA256", handler.headers.get("x-amz-date", ""), match["scope"],
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ])  # fmt: skip
        key = ("AWS4" + self.secret_key).encode()
        for part in (date, region, service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["signature"]):
            raise EmulatorError(403, "SignatureDoesNotMatch", "SigV4 signature mismatch")


def _failure(status: int, code: str) -> Reply:
    if status in XML_STATUSES:
        return Reply(status, error_xml(code, f"emulated fault ({code})"),
                     {"Content-Type": "application/xml"})  # fmt: skip
    return Reply(status, f"emulated fault: HTTP {status}\n".encode(),
                 {"Content-Type": "text/plain"})  # fmt: skip
