"""Delivering one event to one [[hook]]: a program run without a shell, or an HTTP POST.

What counts as what (hook_loop.py acts on it):
- exec: exit 0 is delivered; any other exit, a program that cannot be started, or one still
  running at `timeout_seconds` (killed, with its process group) is retried.
- url: 2xx is delivered; 408, 429, 5xx, a timeout, a refused or reset connection are
  retried; any other status (3xx: redirects are not followed, so a bearer token never goes
  to another host; 4xx: the request itself is refused) is dead at once, since sending the
  same bytes again would get the same answer. `exrwatchd journal retry` sends it again
  once the receiver or the config is fixed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from typing import IO, Literal

from exrwatchd.config import HookConfig

#: Bytes of a program's output (or a response body) kept for the log line.
OUTPUT_LIMIT = 2048
#: The whole environment of an exec hook: nothing of the daemon's is inherited (its
#: credentials, $CREDENTIALS_DIRECTORY, proxies), only what a program needs to run.
EXEC_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_RETRIED_STATUS = frozenset({408, 429})

Result = Literal["delivered", "retry", "dead"]


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    error: str | None = None  # why it failed (no secret: never a header, never the URL)
    output: str = ""  # the program's stdout+stderr, or the response body, truncated
    status: int | None = None  # exit code or HTTP status


def deliver(hook: HookConfig, payload: bytes) -> Outcome:
    """Send `payload` (the event as JSON) to `hook`, within its timeout."""
    return run_program(hook, payload) if hook.exec else post(hook, payload)


def _truncated(data: bytes) -> str:
    text = data[:OUTPUT_LIMIT].decode("utf-8", "replace")
    return text + (" [truncated]" if len(data) > OUTPUT_LIMIT else "")


def _head(f: IO[bytes]) -> str:
    f.seek(0)
    return _truncated(f.read(OUTPUT_LIMIT + 1))


def run_program(hook: HookConfig, payload: bytes) -> Outcome:
    # Output to a file, not a pipe: memory stays bounded whatever the program prints, and a
    # grandchild that keeps the pipe open cannot make us wait past the timeout.
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                list(hook.exec), stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                env=dict(EXEC_ENV), cwd="/", close_fds=True, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            return Outcome("retry", f"cannot run {hook.exec[0]}: {exc.strerror or exc}")
        try:
            proc.communicate(payload, timeout=hook.timeout_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return Outcome("retry", f"still running after {hook.timeout_seconds:g} s: killed",
                           _head(out))  # fmt: skip
        except BrokenPipeError:  # it exited without reading all of stdin: its exit decides
            proc.wait(timeout=hook.timeout_seconds)
        code = proc.returncode
        if code == 0:
            return Outcome("delivered", None, _head(out), 0)
        why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        return Outcome("retry", why, _head(out), code)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the program and everything it started (its own session: start_new_session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a 3xx comes back as an HTTPError: the token stays with its host


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(hook: HookConfig, payload: bytes) -> Outcome:
    assert hook.url is not None
    headers = {"Content-Type": "application/json", "User-Agent": "exrwatchd-hook",
               **hook.headers}  # fmt: skip
    if hook.token is not None:
        headers["Authorization"] = f"Bearer {hook.token.reveal()}"
    request = urllib.request.Request(hook.url, data=payload, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=hook.timeout_seconds) as response:
            return Outcome("delivered", None, _truncated(response.read(OUTPUT_LIMIT + 1)),
                           response.status)  # fmt: skip
    except urllib.error.HTTPError as exc:
        status = exc.code
        body = _truncated(exc.read(OUTPUT_LIMIT + 1)) if exc.fp is not None else ""
        result: Result = "retry" if status >= 500 or status in _RETRIED_STATUS else "dead"
        return Outcome(result, f"HTTP {status} {exc.reason}", body, status)
    except urllib.error.URLError as exc:
        return Outcome("retry", f"cannot reach the hook: {exc.reason}")
    except (TimeoutError, OSError, HTTPException) as exc:
        return Outcome("retry", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
