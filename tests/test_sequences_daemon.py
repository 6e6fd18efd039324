"""Frame sequences as users see them: the journal's tracking (gaps, layouts, deletions,
restart, upgrade of an older journal), the real daemon filling the catalog's `sequences`
table and logging `sequence.gap` / `sequence.changed_layout`, and `exrwatchd sequences`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from catalog_layouts import as_version_4
from exrgen import write_scanline
from harness import Catalog, DaemonProcess, wait_for, write_config

from exrwatchd.catalog import CATALOG_VERSION
from exrwatchd.filesig import FileSig
from exrwatchd.journal import (
    Delete,
    Journal,
    Persist,
    Rechecking,
    RefreshSequences,
)
from exrwatchd.journal import _schema as _journal_schema

# --------------------------------------------------------------------------- journal level


def persist(path: str, status: str = "complete", layout: str | None = "1:aaaa") -> Persist:
    record = {"path": path, "layout_key": layout, "error": None}
    return Persist(path, FileSig(1, 1, 1), "h", status, record)  # type: ignore[arg-type]


def by_pattern(journal: Journal) -> dict[str, dict]:
    journal.write([RefreshSequences(force=True)])  # what the daemon's tick does when due
    return {s["pattern"]: s for s in journal.sequences()}


def sequence_entries(journal: Journal) -> list[tuple[str, str | None]]:
    with sqlite3.connect(journal.path) as conn:
        rows = conn.execute("SELECT path, record FROM outbox WHERE op = 'sequence' ORDER BY id")
        return [(os.fsdecode(p), r) for p, r in rows]


class TestJournalTracking:
    def test_gap_then_filled(self, journal: Journal) -> None:
        journal.write([persist(f"/r/shot/beauty.{n:04d}.exr") for n in (1, 2, 3, 5, 9)])
        s = by_pattern(journal)["beauty.%04d.exr"]
        assert (s["first"], s["last"], s["count"]) == (1, 9, 5)
        assert s["missing"] == [[4, 4], [6, 8]]
        journal.write([persist(f"/r/shot/beauty.{n:04d}.exr") for n in (4, 6, 7, 8)])
        s = by_pattern(journal)["beauty.%04d.exr"]
        assert s["missing"] == [] and s["count"] == 9
        # one waiting entry per sequence: the newest summary supersedes the older one
        entries = sequence_entries(journal)
        assert [p for p, _ in entries] == ["sequence:/r/shot/beauty.%04d.exr"]
        assert json.loads(entries[0][1] or "{}")["missing"] == []

    def test_other_layout_incomplete_and_failed_frames(self, journal: Journal) -> None:
        journal.write([persist(f"/r/s/b_{n:03d}.exr") for n in range(1, 6)]
                      + [persist("/r/s/b_006.exr", layout="1:bbbb"),
                         persist("/r/s/b_007.exr", status="incomplete"),
                         persist("/r/s/b_008.exr", status="failed", layout=None)])  # fmt: skip
        s = by_pattern(journal)["b_%03d.exr"]
        assert s["odd_layout"] == [6] and not s["structure_consistent"]
        assert s["incomplete"] == [7] and s["unhealthy"] == [8]

    def test_frames_the_pixel_checks_flag_are_unhealthy(self, journal: Journal) -> None:
        black = persist("/r/s/b.0002.exr")
        black.record["pixel_stats"] = {"has_nan": False, "has_inf": False, "is_constant": True}
        unread = persist("/r/s/b.0003.exr")
        unread.record["pixel_stats"] = {"unavailable": "pixel stats unavailable: sub-sampled"}
        journal.write([persist("/r/s/b.0001.exr"), black, unread])
        assert by_pattern(journal)["b.%04d.exr"]["unhealthy"] == [2]

    def test_two_sequences_in_one_directory_and_deletion(self, journal: Journal) -> None:
        journal.write([persist(f"/r/s/{name}.{n:04d}.exr")
                       for name in ("beauty", "depth") for n in (1, 2, 3)])  # fmt: skip
        assert set(by_pattern(journal)) == {"beauty.%04d.exr", "depth.%04d.exr"}
        journal.write([Delete("/r/s/depth.0002.exr")])
        assert by_pattern(journal)["depth.%04d.exr"]["missing"] == [[2, 2]]
        journal.write([Delete(f"/r/s/depth.{n:04d}.exr") for n in (1, 3)])
        assert set(by_pattern(journal)) == {"beauty.%04d.exr"}
        # the sinks are told the sequence is gone: its newest entry carries no record
        assert sequence_entries(journal)[-1] == ("sequence:/r/s/depth.%04d.exr", None)

    def test_summaries_wait_for_more_frames(self, tmp_path: Path) -> None:
        # A farm writes frames slightly out of order: a summary is made REFRESH_DELAY after
        # the first change, so a hole the next batch fills is never reported.
        now = [1000.0]
        with Journal.open(tmp_path, clock=lambda: now[0]) as j:
            j.write([persist(f"/r/s/f.{n:04d}.exr") for n in (1, 3)])
            j.write([RefreshSequences()])
            assert j.sequences() == [] and j.sequences_pending() == 1
            now[0] += 1.0
            j.write([persist("/r/s/f.0002.exr")])
            now[0] += 1.5
            j.write([RefreshSequences()])
            assert [(s["count"], s["missing"]) for s in j.sequences()] == [(3, [])]
            assert j.sequences_pending() == 0

    def test_files_that_are_not_frames_make_no_sequence(self, journal: Journal) -> None:
        journal.write([persist("/r/s/plate.exr"), persist("/r/s/notes.v2.exr.bak")])
        assert journal.sequences() == [] and sequence_entries(journal) == []

    def test_survives_reopening(self, tmp_path: Path) -> None:
        with Journal.open(tmp_path) as j:
            j.write([persist(f"/r/s/f.{n}.exr") for n in (1, 3)])
        with Journal.open(tmp_path) as j:
            j.write([persist("/r/s/f.2.exr")])
            assert by_pattern(j)["f.%01d.exr"]["missing"] == []

    def test_a_version_1_journal_is_upgraded_with_its_sequences(self, tmp_path: Path) -> None:
        db = tmp_path / "journal.db"
        conn = sqlite3.connect(db)
        for statement in _journal_schema.MIGRATIONS[1]:
            conn.execute(statement)
        for n in (1, 2, 4):
            path = os.fsencode(f"/r/s/beauty.{n:04d}.exr")
            conn.execute("INSERT INTO paths VALUES (?, ?, 1, 1, 1, 'h', 'complete', NULL, 0)",
                         (path, os.fsencode("/r/s")))  # fmt: skip
        conn.execute("INSERT INTO outbox (path, op, state, next_attempt_at, created_at, "
                     "updated_at) VALUES (X'2F78', 'delete', 'ready', 0, 0, 0)")  # fmt: skip
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        conn.close()
        with Journal(db) as j:
            assert by_pattern(j)["beauty.%04d.exr"]["missing"] == [[3, 3]]
            assert j.stats().ready == 2  # the old entry kept, the sequence queued for the sinks
            j.write([persist("/r/s/beauty.0003.exr")])
            assert by_pattern(j)["beauty.%04d.exr"]["missing"] == []

    def test_a_3_padded_render_crossing_999_stays_one_sequence(self, journal: Journal) -> None:
        journal.write([persist(f"/r/s/c.{n}.exr") for n in (1000, 1001)])
        assert set(by_pattern(journal)) == {"c.%04d.exr"}
        journal.write([persist("/r/s/c.998.exr")])
        s = by_pattern(journal)["c.%03d.exr"]
        assert set(by_pattern(journal)) == {"c.%03d.exr"}
        assert (s["first"], s["last"], s["missing"]) == (998, 1001, [[999, 999]])
        assert s["notation"] == "c.998,1000-1001@@@.exr"
        # the sinks drop the 4-padded row and store the 3-padded one
        entries = dict(sequence_entries(journal))
        assert entries["sequence:/r/s/c.%04d.exr"] is None
        assert json.loads(entries["sequence:/r/s/c.%03d.exr"] or "{}")["count"] == 3
        journal.write([Delete("/r/s/c.998.exr")])  # and back
        assert set(by_pattern(journal)) == {"c.%04d.exr"}
        assert by_pattern(journal)["c.%04d.exr"]["notation"] == "c.1000-1001#.exr"

    def test_older_summaries_are_regrouped_at_start(self, tmp_path: Path) -> None:
        """A journal of the version that split `%03d` from `%04d`: at start the family is
        summarized again and the stale 4-padded sequence goes away."""
        with Journal.open(tmp_path) as j:
            j.write([persist(f"/r/s/c.{n}.exr") for n in (998, 999, 1000)])
            by_pattern(j)
        old = {"c.%03d.exr": (998, 999), "c.%04d.exr": (1000, 1000)}
        with sqlite3.connect(tmp_path / "journal.db") as conn:
            conn.execute("DELETE FROM sequences")
            for pattern, (first, last) in old.items():
                record = {"directory": "/r/s", "pattern": pattern, "first": first, "last": last,
                          "count": last - first + 1, "missing": [], "incomplete": [],
                          "unhealthy": [], "structure_consistent": True, "layout": "1:aaaa",
                          "odd_layout": [], "updated_at": "2024-01-01T00:00:00.000000Z"}
                conn.execute("INSERT INTO sequences VALUES (?, ?)",
                             (os.fsencode(f"sequence:/r/s/{pattern}"), json.dumps(record)))
        with Journal.open(tmp_path) as j:
            j.reset_inflight()  # what the daemon does at start
            assert [s["pattern"] for s in j.sequences()] == ["c.%03d.exr", "c.%04d.exr"]
            found = by_pattern(j)
            assert list(found) == ["c.%03d.exr"] and found["c.%03d.exr"]["last"] == 1000
            assert dict(sequence_entries(j))["sequence:/r/s/c.%04d.exr"] is None

    def test_frames_being_rechecked_are_in_progress(self, tmp_path: Path) -> None:
        with Journal.open(tmp_path) as j:
            j.write([persist(f"/r/s/b.{n:04d}.exr") for n in (1, 2, 3)])
            j.write([Rechecking("/r/s/b.0005.exr"), Rechecking("/r/s/b.0002.exr"),
                     Rechecking("/r/s/notes.exr")])  # fmt: skip
            s = by_pattern(j)["b.%04d.exr"]
            assert (s["in_progress"], s["count"], s["missing"]) == ([2, 5], 4, [[4, 4]])
            assert j.path_state("/r/s/b.0005.exr") is None  # a frame mark, not a verdict
            assert [p for p, _ in sequence_entries(j)] == ["sequence:/r/s/b.%04d.exr"]
            j.write([persist("/r/s/b.0002.exr")])
            assert by_pattern(j)["b.%04d.exr"]["in_progress"] == [5]
            j.write([Rechecking("/r/s/b.0003.exr")])
        with Journal.open(tmp_path) as j:  # a restart waits for nothing: the rescan decides
            j.reset_inflight()
            s = by_pattern(j)["b.%04d.exr"]
            assert (s["in_progress"], s["first"], s["last"], s["count"]) == ([], 1, 3, 3)


# --------------------------------------------------------------------------- the daemon


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("frames")
    return {
        "rgba": write_scanline(d / "a.exr").read_bytes(),
        "aovs": write_scanline(d / "b.exr", channels=("R", "G", "B", "A", "Z")).read_bytes(),
    }


def sequences_rows(catalog: Catalog) -> dict[str, tuple]:
    rows = catalog.query(
        "SELECT pattern, first_frame, last_frame, frame_count, missing_ranges, "
        "odd_layout_frames, structure_consistent, is_whole FROM sequences"
    )
    return {r[0]: r[1:] for r in rows}


def daemon_on(tmp_path: Path) -> tuple[DaemonProcess, Catalog, Path]:
    """The real daemon (local sink, short settle) on tmp_path/renders; started and ready."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(tmp_path / "renders")}],
                          settle={"quiet_seconds": 0.2})  # fmt: skip
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_event("daemon.ready")
    except BaseException:
        daemon.kill()
        raise
    return daemon, Catalog(state), config


def test_daemon_tracks_a_sequence_end_to_end(tmp_path: Path, frames: dict[str, bytes]) -> None:
    shot = tmp_path / "renders" / "shot010"
    shot.mkdir(parents=True)
    daemon, catalog, config = daemon_on(tmp_path)
    try:
        for n in (1, 2, 3, 5):
            (shot / f"beauty.{n:04d}.exr").write_bytes(frames["rgba"])
        wait_for(lambda: sequences_rows(catalog).get("beauty.%04d.exr", (0, 0, 0))[2] == 4,
                 20, "four frames in the sequences table")  # fmt: skip
        row = sequences_rows(catalog)["beauty.%04d.exr"]
        assert row[:4] == (1, 5, 4, "[[4,4]]") and row[6] == 0  # not whole
        # catalog version 4: the notation people read, and the frames still awaited
        assert catalog.query("SELECT notation, in_progress_frames FROM sequences") == [
            ("beauty.1-3,5#.exr", "[]")
        ]
        gap = daemon.wait_event("sequence.gap")
        assert gap["pattern"] == "beauty.%04d.exr" and gap["ranges"] == [[4, 4]]
        assert gap["directory"] == str(shot)

        # the re-render fills the gap; a frame with another channel set stands out
        (shot / "beauty.0004.exr").write_bytes(frames["rgba"])
        (shot / "beauty.0006.exr").write_bytes(frames["aovs"])
        wait_for(lambda: sequences_rows(catalog)["beauty.%04d.exr"][2] == 6, 20, "six frames")
        row = sequences_rows(catalog)["beauty.%04d.exr"]
        assert row[3] == "[]" and row[4] == "[6]" and row[5] == 0
        assert daemon.wait_event("sequence.changed_layout")["ranges"] == [[6, 6]]

        # deleting the odd frame makes the sequence whole
        (shot / "beauty.0006.exr").unlink()
        wait_for(lambda: sequences_rows(catalog)["beauty.%04d.exr"][6] == 1, 20, "whole again")
        assert sequences_rows(catalog)["beauty.%04d.exr"][:5] == (1, 5, 5, "[]", "[]")

        out = subprocess.run([sys.executable, "-m", "exrwatchd", "sequences", "--config",
                              str(config), "--json"], capture_output=True, text=True,
                             check=True)  # fmt: skip
        listed = [json.loads(line) for line in out.stdout.splitlines()]
        assert [(s["pattern"], s["notation"], s["first"], s["last"]) for s in listed] == [
            ("beauty.%04d.exr", "beauty.1-5#.exr", 1, 5)
        ]
        command = [sys.executable, "-m", "exrwatchd", "sequences", "--config", str(config)]
        readable = subprocess.run(command, capture_output=True, text=True, check=True)
        assert f"{shot}/beauty.1-5#.exr  5 frames, whole" in readable.stdout

        # filtered by directory: the shot's own, one above it, a sibling that shares a prefix
        def listing(*paths: Path) -> str:
            run = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True,
                                 check=True, cwd=tmp_path)  # fmt: skip
            return run.stdout
        assert "beauty.1-5#.exr" in listing(shot)
        assert "beauty.1-5#.exr" in listing(Path("renders"), tmp_path / "elsewhere")
        assert listing(tmp_path / "renders" / "shot01").strip() == "no frame sequences"
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_log_lines_of_a_gappy_sequence_stay_short() -> None:
    from exrwatchd.sequences import SequenceEvent

    event = SequenceEvent("sequence.gap", "warning", "/r", "f.%04d.exr",
                          tuple((n, n) for n in range(1, 2000, 2)))  # fmt: skip
    fields = event.fields()
    assert len(fields["ranges"]) == SequenceEvent.MAX_LOGGED_RANGES
    assert fields["ranges_not_shown"] == 1000 - SequenceEvent.MAX_LOGGED_RANGES
    assert fields["frames"] == 1000


def test_renamed_and_moved_frames_update_their_sequences(
    tmp_path: Path, frames: dict[str, bytes]
) -> None:
    watch = tmp_path / "renders"
    shot = watch / "shot020"
    shot.mkdir(parents=True)
    for n in (1, 2, 3):
        (shot / f"comp_{n:03d}.exr").write_bytes(frames["rgba"])
    daemon, catalog, _ = daemon_on(tmp_path)
    try:
        wait_for(lambda: sequences_rows(catalog).get("comp_%03d.exr", (0, 0, 0))[2] == 3, 20,
                 "the sequence found by the start-up scan")  # fmt: skip
        # a rename within the sequence leaves a hole where the frame was
        (shot / "comp_002.exr").rename(shot / "comp_005.exr")
        wait_for(lambda: sequences_rows(catalog)["comp_%03d.exr"][:4] == (1, 5, 3, "[[2,2],[4,4]]"),
                 20, "the renamed frame moved in its sequence")  # fmt: skip
        # moving the whole directory moves the sequence
        shot.rename(watch / "shot021")
        moved = [str(watch / "shot021")]
        wait_for(lambda: [r[0] for r in catalog.query("SELECT directory FROM sequences")] == moved,
                 20, "the sequence under its new directory")  # fmt: skip
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_a_frame_still_being_written_shows_in_progress(
    tmp_path: Path, frames: dict[str, bytes]
) -> None:
    """Found incomplete and waited for: `exrwatchd sequences` says so long before
    max_wait_seconds, and the sequence is whole once the frame is."""
    shot = tmp_path / "renders" / "sh010"
    shot.mkdir(parents=True)
    state = tmp_path / "state"
    config = write_config(tmp_path / "c.toml", state, [{"path": str(tmp_path / "renders")}],
                          settle={"quiet_seconds": 0.2, "max_wait_seconds": 120.0})  # fmt: skip
    daemon = DaemonProcess(config, state)
    try:
        daemon.wait_event("daemon.ready")
        for n in (1, 2):
            (shot / f"beauty.{n:04d}.exr").write_bytes(frames["rgba"])
        data = frames["rgba"]
        (shot / "beauty.0003.exr").write_bytes(data[: len(data) // 2])  # the farm is writing
        command = [sys.executable, "-m", "exrwatchd", "sequences", "--config", str(config)]

        def listed() -> dict:
            run = subprocess.run([*command, "--json"], capture_output=True, text=True, check=True)
            found = [json.loads(line) for line in run.stdout.splitlines()]
            return found[0] if found else {}

        wait_for(lambda: listed().get("in_progress") == [3], 20, "frame 3 in progress")
        readable = subprocess.run([*command, str(shot)], capture_output=True, text=True,
                                  check=True).stdout  # fmt: skip
        assert f"{shot}/beauty.1-3#.exr  3 frames, IN PROGRESS" in readable
        assert "    in progress (being written): 3" in readable

        (shot / "beauty.0003.exr").write_bytes(data)  # the rest lands
        wait_for(lambda: listed().get("in_progress") == [] and listed()["count"] == 3, 20,
                 "frame 3 complete")  # fmt: skip
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_a_version_3_catalog_gains_the_sequence_notation_columns(
    tmp_path: Path, frames: dict[str, bytes]
) -> None:
    shot = tmp_path / "renders" / "shot010"
    shot.mkdir(parents=True)
    daemon, catalog, _config = daemon_on(tmp_path)
    assert daemon.stop() == 0
    as_version_4(catalog.path)
    conn = sqlite3.connect(catalog.path)
    conn.execute("ALTER TABLE sequences DROP COLUMN notation")
    conn.execute("ALTER TABLE sequences DROP COLUMN in_progress_frames")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    daemon, catalog, _config = daemon_on(tmp_path)
    try:
        upgraded = daemon.wait_event("catalog.upgraded")
        assert upgraded["from_version"] == 3 and upgraded["to_version"] == CATALOG_VERSION
        assert upgraded["columns_added"] == ["sequences.notation", "sequences.in_progress_frames"]
        for n in (1, 2):
            (shot / f"beauty.{n:04d}.exr").write_bytes(frames["rgba"])
        wait_for(lambda: catalog.query("SELECT notation FROM sequences") == [("beauty.1-2#.exr",)],
                 20, lambda: f"the notation column: {catalog.query('SELECT * FROM sequences')}")
        assert daemon.stop() == 0
    finally:
        daemon.kill()
