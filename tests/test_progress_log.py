"""At info, per-file work is summed up in `progress` lines, not logged file by file (issue 13,
issue 14: log volume that fits journald's rate limit at catch-up rates)."""

from __future__ import annotations

from pathlib import Path

from exrgen import write_scanline
from harness import DaemonEnv, wait_for

PER_FILE_EVENTS = ("file.detected", "file.settled", "file.inspected", "sink.persisted",
                   "file.deleted")  # fmt: skip


def _total(events: list[dict], key: str) -> int:
    return sum(int(e.get(key, 0)) for e in events)


def test_info_level_logs_progress_lines_not_a_line_per_file(tmp_path: Path) -> None:
    env = DaemonEnv(tmp_path, log={"level": "info"})
    daemon = env.start()
    try:
        daemon.wait_event("daemon.ready")
        paths = {str(write_scanline(env.watch / f"beauty.{i:04d}.exr")) for i in range(40)}
        env.catalog.wait_paths(paths)
        gone = sorted(paths)[0]
        Path(gone).unlink()
        env.catalog.wait_paths(paths - {gone})
        # The lines sum up every file: 40 inspected (main process), 40 persisted and one
        # deletion shipped (sink process), whatever the number of lines they took.
        wait_for(lambda: _total(daemon.seen("progress"), "inspected") == 40
                 and _total(daemon.seen("progress"), "deleted") == 1
                 and _total(daemon.seen("sink.progress"), "persisted") == 40
                 and _total(daemon.seen("sink.progress"), "deleted") == 1,
                 30, lambda: f"progress totals:\n{daemon.tail()}")  # fmt: skip
        for event in PER_FILE_EVENTS:
            assert not daemon.seen(event), f"{event} logged at info"
        line = daemon.seen("progress")[-1]
        assert line["level"] == "info" and "pending" in line and "inspecting" in line
    finally:
        assert daemon.stop() == 0
    assert len(daemon.seen("progress")) < 40  # summed up, not one per file


def test_debug_level_keeps_the_per_file_lines(tmp_path: Path) -> None:
    # Operators grep for a frame: at debug every file still has its lines.
    env = DaemonEnv(tmp_path)  # the harness's default level is debug
    daemon = env.start()
    try:
        daemon.wait_event("daemon.ready")
        path = str(write_scanline(env.watch / "plate.0001.exr"))
        env.catalog.wait_paths({path})
        for event in ("file.settled", "file.inspected"):
            assert daemon.seen(event, path=path), event
        wait_for(lambda: daemon.seen("sink.persisted", path=path), 10, "sink.persisted")
    finally:
        assert daemon.stop() == 0
