"""`inspect --jobs` when a worker process dies (the kernel's OOM killer, a crash in a native
library): the command ends with an error naming where its output stops, instead of waiting
for ever for the dead worker's batch. The deaths here are real: SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from exrgen import write_scanline
from harness import ROOT

from exrwatchd.cli._inspect_pool import CHUNK, SERIAL_LIMIT, WorkerDied, write_in_order

POISON = "poison"


def _lines_or_die(batch: list[str]) -> tuple[bytes, int]:
    """A worker's job: its batch as lines, unless the batch holds POISON."""
    if POISON in batch:
        os.kill(os.getpid(), signal.SIGKILL)
    return "".join(f"{item}\n" for item in batch).encode(), len(batch)


def _run(items: list[str], out: Path) -> dict[str, Any]:
    """write_in_order over `items` with two workers, in a thread, so a hang fails the test."""
    outcome: dict[str, Any] = {}
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def consume() -> None:
        try:
            outcome["counts"] = list(write_in_order(_lines_or_die, items, 2, print, fd))
        except WorkerDied as exc:
            outcome["died"] = exc
        except BaseException as exc:  # reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(60)
    os.close(fd)
    assert not thread.is_alive(), "write_in_order still waiting a minute after a worker died"
    return outcome


def test_a_dead_worker_ends_the_output_where_the_error_says(tmp_path: Path) -> None:
    items = [f"f{i:05d}" for i in range(SERIAL_LIMIT * 4)]
    dead_batch = 3
    items[dead_batch * CHUNK + 5] = POISON
    outcome = _run(items, tmp_path / "out")
    assert "died" in outcome, outcome
    whole = outcome["died"].first  # the output is whole up to this item
    assert items.index(whole) % CHUNK == 0  # the first of a batch,
    assert items.index(whole) <= dead_batch * CHUNK  # no later than the dead worker's
    text = (tmp_path / "out").read_text()
    before = "".join(f"{item}\n" for item in items[: items.index(whole)])
    assert text.startswith(before)  # in order, every line whole
    # After it, at most that batch's lines (its worker may have been writing them), maybe cut.
    batch = items[items.index(whole) : items.index(whole) + CHUNK]
    assert "".join(f"{item}\n" for item in batch).startswith(text[len(before) :])


def test_without_a_death_every_batch_is_written_in_order(tmp_path: Path) -> None:
    items = [f"f{i:05d}" for i in range(SERIAL_LIMIT * 4 + 7)]
    outcome = _run(items, tmp_path / "out")
    assert sum(outcome["counts"]) == len(items)
    assert (tmp_path / "out").read_text().splitlines() == items


def test_the_command_exits_1_saying_where_its_output_stops(tmp_path: Path) -> None:
    template = write_scanline(tmp_path / "t.exr").read_bytes()
    root = tmp_path / "shot"
    root.mkdir()
    names = [f"beauty.{i:05d}.exr" for i in range(SERIAL_LIMIT * 3)]
    names[CHUNK + 1] = "beauty.poison.exr"  # sorts after the numbered frames: the last batch
    for name in names:
        (root / name).write_bytes(template)
    # The reader made to die on one file, as the OOM killer would kill it: a real SIGKILL of
    # the worker process that reads it.
    code = (
        "import os, signal, sys\n"
        "import exrwatchd.cli.inspect as cli\n"
        "real = cli._render_batch\n"
        "def render(options, targets):\n"
        "    if any('poison' in str(t) for t in targets):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(options, targets)\n"
        "cli._render_batch = render\n"
        "from exrwatchd.cli import main\n"
        f"sys.exit(main(['inspect', '--json', '--jobs', '2', {str(root)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)  # fmt: skip
    printed = sorted(str(root / name) for name in names)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("exrwatchd inspect: a worker process died")
    whole = proc.stderr.split("the output is whole up to ", 1)[1].split(", which", 1)[0]
    lines = proc.stdout.split("\n")
    assert [json.loads(line)["path"] for line in lines[: printed.index(whole)]] == (
        printed[: printed.index(whole)])  # fmt: skip
