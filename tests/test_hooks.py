"""[[hook]]s with real parts: config validation, events queued in the journal's own write
transaction, a real local HTTP server that fails, hangs and then accepts, a real program as
an exec hook, dead letters in `exrwatchd journal failed` / `retry`, and the real daemon
delivering every event journaled before a `kill -9` once it runs again.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exrgen import truncation_points, write_scanline
from harness import DaemonProcess, wait_for, write_config

from exrwatchd.config import HookConfig, load_config
from exrwatchd.errors import ConfigError
from exrwatchd.filesig import FileSig
from exrwatchd.journal import Journal, Persist, RefreshSequences
from exrwatchd.pipeline import HookLoop

TOKEN = "s3cret-hook-token-4711"

# --------------------------------------------------------------------------- helpers


def hook_config(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> Any:
    path = tmp_path / "hooks.toml"
    path.write_text(f'[[watch]]\npath = "{tmp_path}"\n' + body)
    return load_config(path, environ or {})


def config_errors(tmp_path: Path, body: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        hook_config(tmp_path, body, environ)
    return str(info.value)


def persist(path: str, status: str = "complete", **record: Any) -> Persist:
    return Persist(path, FileSig(1, 1, 1), "h", status, {"layout_key": "1:a", **record})  # type: ignore[arg-type]


def rows(journal: Journal) -> list[tuple[str, str, dict[str, Any]]]:
    with sqlite3.connect(journal.path) as conn:
        found = conn.execute("SELECT hook, state, payload FROM hook_outbox ORDER BY id")
        return [(h, s, json.loads(p)) for h, s, p in found]


def make_script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- config


class TestConfig:
    def test_a_valid_hook_of_each_kind(self, tmp_path: Path) -> None:
        (tmp_path / "token").write_text(TOKEN + "\n")
        cfg = hook_config(
            tmp_path,
            f"""
[[hook]]
on = ["sequence.completed", "file.incomplete"]
within = "/renders/showA"
exec = ["/usr/local/bin/on-render-event", "--quiet"]

[[hook]]
name = "pipeline"
on = ["sequence.gap"]
url = "https://pipeline.example/hooks/exr"
headers = {{ X-Studio = "north" }}
token_file = "{tmp_path / "token"}"
timeout_seconds = 3
""",
        )
        run, post = cfg.hook
        assert run.exec == ("/usr/local/bin/on-render-event", "--quiet")
        assert run.name.startswith("on-render-event#") and run.timeout_seconds == 10.0
        assert run.max_attempts == 10 and str(run.within) == "/renders/showA"
        assert post.name == "pipeline" and post.headers == {"X-Studio": "north"}
        assert post.token is not None and post.token.reveal() == TOKEN
        assert TOKEN in cfg.secrets()  # so the log redactor masks it
        assert TOKEN not in repr(post)

    def test_mistakes_are_reported_together(self, tmp_path: Path) -> None:
        text = config_errors(
            tmp_path,
            """
[[hook]]
on = ["sequence.complete"]
exec = ["on-render-event"]

[[hook]]
on = ["file.unhealthy"]
exec = ["/bin/true"]
url = "https://x.example/"

[[hook]]
on = ["file.unhealthy"]
url = "https://x.example/"
headers = { Authorization = "Bearer abc" }

[[hook]]
on = []

[[hook]]
name = "a"
on = ["sequence.gap"]
url = "ftp://x.example/"
token_credential = "hook_a"
""",
        )
        lines = text.splitlines()
        assert any('hook[0].on: unknown event "sequence.complete" (did you mean '
                   '"sequence.completed"?)' in line for line in lines)  # fmt: skip
        assert any("hook[0].exec: must start with the absolute path" in ln for ln in lines)
        assert any("hook[1]: set exactly one of exec (a program) or url" in ln for ln in lines)
        assert any("hook[2].headers.Authorization: put the bearer token in token_file" in ln
                   for ln in lines)  # fmt: skip
        assert any("hook[3].on: must list at least one event" in ln for ln in lines)
        assert any("hook[3]: set exactly one of exec" in ln for ln in lines)
        assert any("hook[4].url: must be an http:// or https:// URL" in ln for ln in lines)
        assert any("hook[4].token_credential: needs $CREDENTIALS_DIRECTORY" in ln
                   for ln in lines)  # fmt: skip
        assert all(line.startswith(str(tmp_path / "hooks.toml")) for line in lines)

    def test_token_from_credentials_directory_and_duplicate_names(self, tmp_path: Path) -> None:
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "pipeline_token").write_text(TOKEN)
        body = """
[[hook]]
name = "p"
on = ["sequence.gap"]
url = "https://pipeline.example/"
token_credential = "pipeline_token"
"""
        cfg = hook_config(tmp_path, body, {"CREDENTIALS_DIRECTORY": str(creds)})
        assert cfg.hook[0].token.reveal() == TOKEN
        assert cfg.hook[0].token.source == "$CREDENTIALS_DIRECTORY/pipeline_token"
        text = config_errors(tmp_path, body + body, {"CREDENTIALS_DIRECTORY": str(creds)})
        assert 'hook[1].name: "p" is already the name of hook[0]' in text
        assert TOKEN not in text


# --------------------------------------------------------------------------- journal


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "state", backoff_initial=0.05, backoff_max=0.2) as j:
        yield j


ALL = ("file.incomplete", "file.unhealthy", "sequence.gap", "sequence.completed")


class TestJournal:
    def test_events_enter_with_their_cause(self, journal: Journal) -> None:
        journal.write([persist("/r/showA/x.exr", "incomplete", incomplete_reason="cut")])
        assert rows(journal) == []  # no hooks, no rows
        journal.set_hooks([HookConfig("a", ALL, within=Path("/r/showA")),
                           HookConfig("b", ("sequence.gap",))])  # fmt: skip
        unhealthy = {"unhealthy": ["nan"], "has_nan": True}
        journal.write([
            persist("/r/showA/x.exr", "incomplete", incomplete_reason="cut"),
            persist("/r/showAB/y.exr", "incomplete", incomplete_reason="cut"),  # not within
            persist("/r/showA/z.exr", pixel_stats=unhealthy),
            persist("/r/showA/fine.exr", pixel_stats={"unhealthy": []}),
        ])  # fmt: skip
        found = rows(journal)
        assert [(h, e["event"], e.get("path")) for h, _, e in found] == [
            ("a", "file.incomplete", "/r/showA/x.exr"),
            ("a", "file.unhealthy", "/r/showA/z.exr"),
        ]
        assert found[0][2]["facts"] == {"reason": "cut"}
        assert found[1][2]["facts"] == {"reasons": ["nan"]}

        journal.write([persist(f"/r/showA/s/b.{n:04d}.exr") for n in (1, 2, 4)])
        journal.write([RefreshSequences(force=True)])
        journal.write([persist("/r/showA/s/b.0003.exr")])
        journal.write([RefreshSequences(force=True)])
        seq = [(h, e["event"], e["facts"]["ranges"]) for h, _, e in rows(journal)[2:]]
        assert seq == [("a", "sequence.gap", [[3, 3]]), ("b", "sequence.gap", [[3, 3]]),
                       ("a", "sequence.completed", [[1, 4]])]  # fmt: skip
        gap_a, gap_b = rows(journal)[2][2], rows(journal)[3][2]
        assert gap_a == gap_b  # one event, one id, whichever hook gets it
        assert gap_a["sequence"] == "/r/showA/s/b.%04d.exr"

    def test_retry_backoff_dead_letter_and_requeue(self, journal: Journal) -> None:
        journal.set_hooks([HookConfig("a", ALL)])
        journal.write([persist("/r/x.exr", "incomplete")])
        (row,) = journal.hook_claim(10)
        assert journal.hook_claim(10) == []  # in flight
        assert not journal.hook_fail(row.id, "HTTP 500", max_attempts=2, permanent=False)
        assert journal.hook_claim(10) == []  # backing off
        again = wait_for(lambda: journal.hook_claim(10), 5, "due again after the backoff")
        assert again[0].attempts == 1 and again[0].payload == row.payload
        assert journal.hook_fail(row.id, "HTTP 500", max_attempts=2, permanent=False)
        (dead,) = journal.hook_dead_letters()
        assert (dead.op, dead.hook, dead.path, dead.attempts) == (
            "hook",
            "a file.incomplete",
            "/r/x.exr",
            2,
        )
        assert journal.requeue_dead_hooks("/r/x.exr") == 1
        assert journal.hook_claim(10)[0].payload == row.payload  # the same id again

    def test_a_version_3_journal_gains_the_hook_table(self, tmp_path: Path) -> None:
        with Journal.open(tmp_path / "s") as j:
            j.write([persist("/r/x.exr")])
        with sqlite3.connect(tmp_path / "s" / "journal.db") as conn:
            conn.execute("DROP TABLE hook_outbox")
            conn.execute("PRAGMA user_version = 3")
        with Journal.open(tmp_path / "s") as j:
            j.set_hooks([HookConfig("a", ALL)])
            j.write([persist("/r/y.exr", "incomplete")])
            assert [e["path"] for _, _, e in rows(j)] == ["/r/y.exr"]
            assert j.path_state("/r/x.exr") is not None

    def test_rows_in_flight_at_a_crash_are_due_at_the_next_start(self, tmp_path: Path) -> None:
        with Journal.open(tmp_path / "s") as j:
            j.set_hooks([HookConfig("a", ALL)])
            j.write([persist("/r/x.exr", "incomplete")])
            assert len(j.hook_claim(10)) == 1
        with Journal.open(tmp_path / "s") as j:  # no ack: the process died
            j.reset_inflight()
            assert len(j.hook_claim(10)) == 1


# --------------------------------------------------------------------------- delivery


class Receiver(http.server.ThreadingHTTPServer):
    """A real HTTP server that answers per a script of behaviours, then 200."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.received: list[tuple[str, dict[str, Any]]] = []  # (behaviour, event)
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks"

    def accepted(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for b, e in self.received if b == "ok"]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            behaviour = self.server.script.pop(0) if self.server.script else "ok"
            self.server.received.append((behaviour, json.loads(body)))
            self.server.auth.append(self.headers.get("Authorization"))
        if behaviour == "hang":
            time.sleep(2.0)  # past the hook's timeout
        status = {"ok": 200, "fail": 500, "hang": 200, "gone": 404, "echo": 500}[behaviour]
        body = b"nope" if status >= 400 else b"thanks"
        if behaviour == "echo":  # a careless receiver: its error page shows our headers
            body = str(self.headers).encode()
        try:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)
        except BrokenPipeError:  # the client gave up on a "hang"
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(["fail", "fail", "hang"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_url_hook_fails_times_out_then_accepts(journal: Journal, receiver: Receiver) -> None:
    from exrwatchd.secrets import Secret

    hook = HookConfig("p", ALL, url=receiver.url, timeout_seconds=0.5,
                      token=Secret(TOKEN, "test"), headers={"X-Studio": "north"})  # fmt: skip
    journal.set_hooks([hook])
    journal.write([persist(f"/r/f{n}.exr", "incomplete") for n in range(3)])
    ids = {e["id"] for _, _, e in rows(journal)}
    assert len(ids) == 3
    loop = HookLoop(journal, [hook])
    loop.start()
    try:
        wait_for(lambda: {e["id"] for e in receiver.accepted()} >= ids, 20,
                 lambda: f"all three accepted; got {receiver.received}")  # fmt: skip
        wait_for(lambda: rows(journal) == [], 5, "every row acknowledged")
    finally:
        loop.stop(5)
    behaviours = [b for b, _ in receiver.received]
    assert behaviours[:3] == ["fail", "fail", "hang"]
    assert set(receiver.auth) == {f"Bearer {TOKEN}"}
    assert loop.counts["retried"] == 3 and loop.counts["delivered"] >= 3


def test_a_refusing_receiver_dead_letters_at_once(journal: Journal, receiver: Receiver,
                                                  tmp_path: Path) -> None:  # fmt: skip
    receiver.script[:] = ["gone"]
    hook = HookConfig("p", ALL, url=receiver.url, timeout_seconds=2)
    journal.set_hooks([hook])
    journal.write([persist("/r/f.exr", "incomplete")])
    loop = HookLoop(journal, [hook])
    loop.start()
    try:
        wait_for(lambda: journal.hook_dead_letters(), 10, "a dead letter")
        assert journal.hook_dead_letters()[0].last_error == "HTTP 404 Not Found"
    finally:
        loop.stop(5)


def test_exec_hook_gets_the_event_on_stdin_and_nothing_else(journal: Journal,
                                                            tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "got"
    script = make_script(
        tmp_path / "hook.py",
        f"""
import json, os, sys
event = json.load(sys.stdin)
with open({str(out)!r}, "a") as f:
    f.write(json.dumps({{"event": event, "env": dict(os.environ), "argv": sys.argv[1:]}}) + "\\n")
print("seen", event["id"])
""",
    )
    hook = HookConfig("run", ALL, exec=(str(script), "--flag"), timeout_seconds=10)
    journal.set_hooks([hook])
    journal.write([persist("/r/f.exr", "incomplete", incomplete_reason="cut")])
    (event_id,) = {e["id"] for _, _, e in rows(journal)}
    os.environ["VAST_DB_SECRET_KEY"] = TOKEN  # the daemon would have withdrawn it; even so
    loop = HookLoop(journal, [hook])
    loop.start()
    try:
        wait_for(lambda: out.exists() and rows(journal) == [], 15, "delivered")
    finally:
        loop.stop(5)
        del os.environ["VAST_DB_SECRET_KEY"]
    (line,) = out.read_text().splitlines()
    got = json.loads(line)
    assert got["event"]["id"] == event_id and got["event"]["facts"] == {"reason": "cut"}
    assert got["argv"] == ["--flag"]
    env = {k: v for k, v in got["env"].items() if k not in ("PWD", "SHLVL", "_", "LC_CTYPE")}
    assert env == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def test_a_hanging_exec_hook_is_killed_and_retried(journal: Journal, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    script = make_script(
        tmp_path / "slow.py",
        f"""
import os, sys, time
sys.stdin.read()
first = not os.path.exists({str(marker)!r})
open({str(marker)!r}, "a").write("x")
print("x" * 5000)
sys.stdout.flush()
if first:
    time.sleep(60)
""",
    )
    hook = HookConfig("slow", ALL, exec=(str(script),), timeout_seconds=1)
    journal.set_hooks([hook])
    journal.write([persist("/r/f.exr", "incomplete")])
    loop = HookLoop(journal, [hook])
    started = time.monotonic()
    loop.start()
    try:
        wait_for(lambda: rows(journal) == [], 20, "delivered on the second run")
    finally:
        loop.stop(5)
    assert time.monotonic() - started < 15
    assert marker.read_text() == "xx" and loop.counts == {"delivered": 1, "retried": 1,
                                                          "dead_lettered": 0}  # fmt: skip


# --------------------------------------------------------------------------- the daemon


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exrwatchd", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_daemon_delivers_every_event_across_kill_9(tmp_path: Path, receiver: Receiver) -> None:
    """Events journaled while the hook fails are all delivered after a kill -9 and a
    restart; a url hook's token never reaches the log; dead letters show in the CLI."""
    renders, state = tmp_path / "renders", tmp_path / "state"
    shot = renders / "showA" / "shot010"
    shot.mkdir(parents=True)
    gate, got = tmp_path / "gate", tmp_path / "got.jsonl"
    script = make_script(
        tmp_path / "hook.py",
        f"""
import os, sys
data = sys.stdin.read()
if not os.path.exists({str(gate)!r}):
    print("not yet")
    sys.exit(3)
with open({str(got)!r}, "a") as f:
    f.write(data + "\\n")
""",
    )
    (tmp_path / "token").write_text(TOKEN)
    backoff = {"backoff_initial_seconds": 0.2, "backoff_max_seconds": 0.5}
    config = write_config(
        tmp_path / "c.toml",
        state,
        [{"path": str(renders)}],
        settle={"quiet_seconds": 0.2, "max_wait_seconds": 1.0},
        sink=backoff,
    )
    with config.open("a") as f:
        f.write(f"""
[[hook]]
on = ["sequence.completed", "sequence.gap", "file.incomplete"]
within = "{renders / "showA"}"
exec = ["{script}"]
max_attempts = 1000

[[hook]]
name = "nobody"
on = ["file.incomplete"]
url = "{receiver.url}"
token_file = "{tmp_path / "token"}"
timeout_seconds = 1
max_attempts = 2
""")
    frame = write_scanline(tmp_path / "frame.exr").read_bytes()
    cut = frame[: truncation_points(tmp_path / "frame.exr")["mid_data"]]
    receiver.script[:] = ["echo", "echo"]
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_event("daemon.ready")
        for n in (1, 2, 4):
            (shot / f"beauty.{n:04d}.exr").write_bytes(frame)
        (shot / "broken.exr").write_bytes(cut)
        daemon.wait_event("sequence.gap")
        (shot / "beauty.0003.exr").write_bytes(frame)
        daemon.wait_event("sequence.completed")
        daemon.wait_event("file.incomplete", path=str(shot / "broken.exr"), will_recheck=False)
        echoed = daemon.wait_event("hook.failed", hook="nobody", dead_letter=True)
        assert "Bearer ********" in echoed["output"]  # the redactor masked what came back
        daemon.kill()  # kill -9, with every event still waiting for the exec hook
        first = daemon
        with sqlite3.connect(state / "journal.db") as conn:
            queued = conn.execute("SELECT payload FROM hook_outbox WHERE hook <> 'nobody'")
            journaled = {json.loads(p)["id"]: json.loads(p)["event"] for (p,) in queued}
        # (frames settle in any order: 1 and 4 first make a gap 2-3 that frame 2 narrows)
        assert set(journaled.values()) == {"file.incomplete", "sequence.completed",
                                           "sequence.gap"}  # fmt: skip
        gate.write_text("open")
        daemon = DaemonProcess(config, state)
        daemon.wait_event("daemon.ready")

        def delivered() -> dict[str, dict[str, Any]]:
            text = got.read_text() if got.exists() else ""
            return {e["id"]: e for e in map(json.loads, text.splitlines())}

        wait_for(lambda: set(delivered()) >= set(journaled), 30,
                 lambda: f"every journaled event delivered; got {delivered()}")  # fmt: skip
        events = delivered()
        gaps = [e for e in events.values() if e["event"] == "sequence.gap"]
        assert {g["sequence"] for g in gaps} == {str(shot / "beauty.%04d.exr")}
        assert any(a <= 3 <= b for g in gaps for a, b in g["facts"]["ranges"])
        failed = run_cli(config, "journal", "failed")
        assert "hook nobody file.incomplete" in failed.stdout, failed.stdout + failed.stderr
        assert str(shot / "broken.exr") in failed.stdout
        retried = run_cli(config, "journal", "retry", str(shot / "broken.exr"))
        assert retried.returncode == 0 and "requeued 1 dead letter" in retried.stdout
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert TOKEN not in "\n".join(first.raw_lines + daemon.raw_lines)


def test_a_reload_brings_in_new_hooks(tmp_path: Path) -> None:
    renders, state, got = tmp_path / "renders", tmp_path / "state", tmp_path / "got.jsonl"
    renders.mkdir()
    script = make_script(
        tmp_path / "hook.py",
        f"""
import sys
with open({str(got)!r}, "a") as f:
    f.write(sys.stdin.read() + "\\n")
""",
    )
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}],
                          settle={"quiet_seconds": 0.2, "max_wait_seconds": 1.0})  # fmt: skip
    frame = write_scanline(tmp_path / "frame.exr").read_bytes()
    cut = frame[: truncation_points(tmp_path / "frame.exr")["mid_data"]]
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_event("daemon.ready")
        (renders / "before.exr").write_bytes(cut)
        daemon.wait_event("file.incomplete", path=str(renders / "before.exr"), will_recheck=False)
        with config.open("a") as f:
            f.write(f'\n[[hook]]\non = ["file.incomplete"]\nexec = ["{script}"]\n')
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_event("config.reloaded")
        (renders / "after.exr").write_bytes(cut)
        wait_for(lambda: got.exists() and got.read_text().strip(), 20, "the new hook ran")
        (event,) = map(json.loads, got.read_text().splitlines())
        assert event["path"] == str(renders / "after.exr")  # not the one before the reload
        assert daemon.stop() == 0
    finally:
        daemon.kill()
