"""The commands as a user runs them: real subprocesses, real files, exit codes and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from exrgen import write_multipart, write_scanline, zeroed_offset_table_copy
from harness import ROOT, write_config


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exrwatchd", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    root = tmp_path / "shots"
    write_scanline(root / "sh010" / "beauty.0001.exr")
    write_multipart(root / "sh010" / "beauty.0002.exr")
    (root / "sh010" / "notes.txt").write_text("not a frame")
    (root / "sh010" / ".hidden.exr").write_bytes(b"ignored: hidden")
    return root


class TestInspect:
    def test_directory_is_walked_and_json_lines_printed(self, shots: Path) -> None:
        proc = run("inspect", "--json", str(shots))
        assert proc.returncode == 0, proc.stderr
        records = [json.loads(line) for line in proc.stdout.splitlines()]
        assert sorted(Path(r["path"]).name for r in records) == [
            "beauty.0001.exr",
            "beauty.0002.exr",
        ]
        for record in records:
            assert record["complete"] and record["error"] is None
            assert record["frame_number"] in (1, 2)
            assert len(record["header_hash"]) == 64
            assert "metadata_embedding" not in record

    def test_embeddings_flag(self, shots: Path) -> None:
        proc = run("inspect", "--embeddings", str(shots / "sh010" / "beauty.0001.exr"))
        record = json.loads(proc.stdout)
        assert len(record["metadata_embedding"]) == 384
        assert len(record["channel_fingerprint"]) == 128
        assert record["embedding_version"] >= 1

    def test_exit_1_when_any_file_failed(self, shots: Path) -> None:
        bad = shots / "bad.exr"
        bad.write_bytes(b"definitely not an exr")
        proc = run("inspect", str(shots / "sh010" / "beauty.0001.exr"), str(bad))
        assert proc.returncode == 1
        assert f"{bad}: ERROR not_exr" in proc.stdout

    def test_incomplete_is_read_but_strict_fails(self, shots: Path, tmp_path: Path) -> None:
        partial = zeroed_offset_table_copy(shots / "sh010" / "beauty.0001.exr", tmp_path / "p.exr")
        proc = run("inspect", str(partial))
        assert proc.returncode == 0 and "INCOMPLETE" in proc.stdout
        assert run("inspect", "--strict", str(partial)).returncode == 1

    def test_usage_errors_exit_2(self) -> None:
        assert run("inspect").returncode == 2
        assert run("no-such-command").returncode == 2

    def test_missing_path_is_not_found(self, tmp_path: Path) -> None:
        proc = run("inspect", "--json", str(tmp_path / "nope.exr"), str(tmp_path / "no" / "dir"))
        assert proc.returncode == 1
        kinds = [json.loads(line)["error"]["kind"] for line in proc.stdout.splitlines()]
        assert kinds == ["not_found", "not_found"]
        text = run("inspect", str(tmp_path / "nope.exr")).stdout
        assert text.startswith(f"{tmp_path / 'nope.exr'}: ERROR not_found: ")

    def test_directories_are_walked_in_sorted_order(self, tmp_path: Path) -> None:
        root = tmp_path / "shots"
        # Created out of order, so that directory order (creation order on most file
        # systems, hash order on others) is not the sorted one.
        names = ["sh020/b.0002.exr", "sh010/z.exr", "sh020/b.0001.exr", "a.exr",
                 "sh010/sub/c.exr", "sh010/a.exr", "sh100/x.exr", "sh020/a/q.exr"]  # fmt: skip
        for name in names:
            write_scanline(root / name)
        proc = run("inspect", "--json", str(root))
        assert proc.returncode == 0, proc.stderr
        found = [str(Path(json.loads(line)["path"]).relative_to(root))
                 for line in proc.stdout.splitlines()]  # fmt: skip
        # Each directory's files by name, then its subdirectories by name, depth first.
        assert found == ["a.exr", "sh010/a.exr", "sh010/z.exr", "sh010/sub/c.exr",
                         "sh020/b.0001.exr", "sh020/b.0002.exr", "sh020/a/q.exr",
                         "sh100/x.exr"]  # fmt: skip

    def test_a_file_gone_during_the_walk_stays_vanished(self, tmp_path: Path) -> None:
        from exrwatchd.cli.inspect import inspect_results

        for name in ("a.exr", "b.exr"):
            write_scanline(tmp_path / "d" / name)
        results = inspect_results([str(tmp_path / "d")])
        assert next(results).error is None
        (tmp_path / "d" / "b.exr").unlink()  # listed by the walk, gone before it is read
        gone = next(results)
        assert gone.path == str(tmp_path / "d" / "b.exr")
        assert gone.error is not None and gone.error.kind == "vanished"


    def test_many_files_are_read_by_several_processes_with_the_same_output(
        self, tmp_path: Path
    ) -> None:
        # Past SERIAL_LIMIT files, --jobs 2 shares the files out to two processes: the lines
        # must be the very ones, in the very order, one process gives, failures counted.
        from exrwatchd.cli._inspect_pool import SERIAL_LIMIT

        root = tmp_path / "many"
        frames = [write_scanline(root / f"sh{i % 3}" / f"beauty.{i:04d}.exr")
                  for i in range(SERIAL_LIMIT + 60)]  # fmt: skip
        frames[7].write_bytes(frames[7].read_bytes()[:200])  # one bad file among them
        serial = run("inspect", "--json", "--jobs", "1", str(root), str(tmp_path / "nope"))
        shared = run("inspect", "--json", "--jobs", "2", str(root), str(tmp_path / "nope"))
        assert shared.returncode == serial.returncode == 1, shared.stderr
        assert shared.stdout == serial.stdout
        records = [json.loads(line) for line in shared.stdout.splitlines()]
        assert len(records) == SERIAL_LIMIT + 61
        assert records[-1]["error"]["kind"] == "not_found"
        assert sum(r["error"] is not None for r in records) == 2


    def test_a_short_inspection_loads_only_what_it_needs(self, shots: Path) -> None:
        # Start-up is most of `inspect` over a few files: it must not load the daemon's
        # journal and logging, the config model, numpy or multiprocessing (~0.07 s together).
        heavy = ("exrwatchd.journal", "structlog", "exrwatchd.config.model", "numpy",
                 "multiprocessing")  # fmt: skip
        code = ("import sys; from exrwatchd.cli import main; "
                f"code = main(['inspect', '--json', {str(shots)!r}]); "
                f"loaded = [m for m in {heavy!r} if m in sys.modules]; "
                "print(loaded, code, file=sys.stderr)")  # fmt: skip
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT, timeout=60)  # fmt: skip
        assert proc.stdout.count("\n") >= 1
        assert proc.stderr.strip() == "[] 0"

    def test_a_reader_that_stops_early_ends_every_process(self, tmp_path: Path) -> None:
        # `inspect --json DIR | head -1`: the reader closes the pipe after one line. The
        # worker writing then finds the pipe broken; the others, waiting for their turns or
        # reading, must not be left behind, and the command exits 0 without a traceback.
        from exrwatchd.cli._inspect_pool import SERIAL_LIMIT

        template = write_scanline(tmp_path / "t.exr").read_bytes()
        root = tmp_path / "many"
        root.mkdir()
        for i in range(SERIAL_LIMIT * 20):  # far more output than a pipe buffer holds
            (root / f"beauty.{i:05d}.exr").write_bytes(template)
        proc = subprocess.Popen(
            [sys.executable, "-m", "exrwatchd", "inspect", "--json", "--jobs", "2", str(root)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        try:
            code = proc.wait(timeout=60)
        finally:
            proc.kill()
        assert json.loads(first)["path"].endswith("beauty.00000.exr")
        assert code == 0
        assert b"Traceback" not in proc.stderr.read()


class TestCheckConfig:
    def test_example_config_passes(self) -> None:
        proc = run("check-config", "config.example.toml")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["sink"]["kind"] == "local"

    def test_errors_name_file_key_and_suggestion(self, tmp_path: Path) -> None:
        cfg = tmp_path / "config.toml"
        cfg.write_text('[[watch]]\npath = "/srv"\nrecursve = true\n[daemon]\nworkers = "4"\n')
        proc = run("check-config", str(cfg))
        assert proc.returncode == 78
        assert 'config.toml: watch[0].recursve: unknown key (did you mean "recursive"?)' in (
            proc.stderr
        )
        assert "config.toml: daemon.workers:" in proc.stderr

    def test_secrets_are_masked(self, tmp_path: Path) -> None:
        cfg = tmp_path / "config.toml"
        cfg.write_text('[[watch]]\npath = "/srv"\n[sink]\nkind = "vast"\n[vast]\n'
                       'endpoint = "http://127.0.0.1:9"\nbucket = "b"\n')  # fmt: skip
        env = {"VAST_DB_ACCESS_KEY": "AKIAEXAMPLEACCESS", "VAST_DB_SECRET_KEY": "s3cr3t-v4lue-xyz"}
        proc = run("check-config", str(cfg), env=env)
        assert proc.returncode == 0, proc.stderr
        assert "s3cr3t-v4lue-xyz" not in proc.stdout + proc.stderr
        assert "AKIAEXAMPLEACCESS" not in proc.stdout + proc.stderr


class TestScanAndStatus:
    def test_scan_catalogs_everything_then_exits(self, shots: Path, tmp_path: Path) -> None:
        state = tmp_path / "state"
        cfg = write_config(tmp_path / "c.toml", state, [{"path": str(shots)}])
        proc = run("scan", "--config", str(cfg))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        events = [json.loads(line)["event"] for line in proc.stdout.splitlines()]
        assert "scan.started" in events and "scan.finished" in events
        import sqlite3

        con = sqlite3.connect(state / "catalog.db")
        names = sorted(Path(r[0]).name for r in con.execute("SELECT file_path FROM files"))
        con.close()
        assert names == ["beauty.0001.exr", "beauty.0002.exr"]

        status = run("status", "--config", str(cfg), "--json")
        assert status.returncode == 3, status.stderr  # LSB: not running
        report = json.loads(status.stdout)
        assert report["journal"]["ready"] == 0 and report["journal"]["dead"] == 0
        assert report["journal"]["paths_by_status"]["complete"] == 2
        assert report["daemon"]["running"] is False

        again = run("scan", "--config", str(cfg))  # nothing changed: nothing re-inspected
        assert again.returncode == 0
        assert '"file.inspected"' not in again.stdout


def registered_commands() -> list[list[str]]:
    """Every leaf command of the real parser: ["inspect"], ["vast", "init"], ..."""
    import argparse

    from exrwatchd.cli.main import build_parser

    def leaves(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [prefix]
        choices = subs[0].choices.items()
        return [leaf for name, sub in choices for leaf in leaves(sub, [*prefix, name])]

    return leaves(build_parser(), [])


@pytest.mark.parametrize("argv", registered_commands(), ids=" ".join)
def test_help_has_an_example_every_option_explained_and_the_exit_codes(argv: list[str]) -> None:
    import argparse

    from exrwatchd.cli.main import build_parser

    proc = run(*argv, "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.lower()
    assert "example" in text and f"exrwatchd {' '.join(argv)}" in proc.stdout, proc.stdout
    assert "exit" in text and "\n  0 " in proc.stdout, proc.stdout
    parser = build_parser()
    for name in argv:  # down to the command's own parser
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[name]  # fmt: skip
    for action in parser._actions:
        assert action.help, f"{' '.join(argv)}: {action.option_strings or action.dest} has no help"
