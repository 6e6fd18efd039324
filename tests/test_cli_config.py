"""Which config a command reads, and `check-config` (with `--connect`) as an operator runs it:
real subprocesses, real files, the real SDK against the loopback VAST emulator."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import vastdb
from crash_support import vast_env
from harness import ROOT, write_config
from vast_emulator import VastEmulator
from vastdb.config import SessionConfig

from exrwatchd.catalog import CATALOG_VERSION
from exrwatchd.config import CONFIG_ENV, DEFAULT_CONFIG_PATH

BUCKET, SCHEMA = "exrwatch", "exr_metadata"

# Every command that reads the config, with the arguments it needs besides --config.
COMMANDS = [
    ["run"],
    ["scan"],
    ["status"],
    ["sequences"],
    ["check-config"],
    ["journal", "stats"],
    ["vast", "init"],
]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    return subprocess.run(
        [sys.executable, "-m", "exrwatchd", *args],
        capture_output=True, text=True, cwd=ROOT, env={**base, **(env or {})}, timeout=120,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "renders").mkdir()
    return write_config(tmp_path / "c.toml", tmp_path / "state", [{"path": tmp_path / "renders"}])


class TestConfigPath:
    @pytest.mark.skipif(DEFAULT_CONFIG_PATH.exists(), reason="this host has a real config")
    @pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
    def test_default_path_missing_names_it_and_the_fix(self, argv: list[str]) -> None:
        proc = run(*argv)
        assert proc.returncode == 78, proc.stderr
        assert str(DEFAULT_CONFIG_PATH) in proc.stderr
        assert "--config PATH" in proc.stderr and CONFIG_ENV in proc.stderr
        assert "Traceback" not in proc.stderr

    @pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
    def test_env_names_the_file(self, argv: list[str], tmp_path: Path) -> None:
        missing = tmp_path / "nowhere.toml"
        proc = run(*argv, env={CONFIG_ENV: str(missing)})
        assert proc.returncode == 78, proc.stderr
        assert f"{missing} does not exist" in proc.stderr and f"${CONFIG_ENV}" in proc.stderr

    def test_env_is_used_and_option_wins_over_it(self, config: Path, tmp_path: Path) -> None:
        proc = run("status", "--json", env={CONFIG_ENV: str(config)})
        assert json.loads(proc.stdout)["state_dir"] == str(tmp_path / "state")
        missing = tmp_path / "nope.toml"
        proc = run("status", "--config", str(missing), env={CONFIG_ENV: str(config)})
        assert proc.returncode == 78 and f"{missing} does not exist (from --config)" in (
            proc.stderr
        )

    def test_check_config_takes_it_positionally_or_as_option(self, config: Path) -> None:
        for argv in (["check-config", str(config)], ["check-config", "--config", str(config)]):
            proc = run(*argv)
            assert proc.returncode == 0, proc.stderr
            assert f"{config}: OK" in proc.stderr

    def test_journal_takes_the_env_too(self, config: Path, tmp_path: Path) -> None:
        proc = run("journal", "stats", env={CONFIG_ENV: str(config)})
        assert proc.returncode == 1  # the config was read: it is the journal that is missing
        assert f"no journal at {tmp_path / 'state' / 'journal.db'}" in proc.stderr


class TestCheckConfig:
    def test_no_watch_is_refused_as_run_refuses_it(self, tmp_path: Path) -> None:
        cfg = write_config(tmp_path / "c.toml", tmp_path / "state", [])
        proc = run("check-config", str(cfg))
        assert proc.returncode == 78
        assert "watch: at least one [[watch]] entry is required" in proc.stderr
        assert "OK" not in proc.stderr
        daemon = run("run", "--config", str(cfg))
        assert daemon.returncode == 78 and "at least one [[watch]]" in daemon.stderr

    def test_missing_watch_path_is_a_warning(self, tmp_path: Path) -> None:
        gone = tmp_path / "not-mounted"
        cfg = write_config(tmp_path / "c.toml", tmp_path / "state", [{"path": gone}])
        proc = run("check-config", str(cfg))
        assert proc.returncode == 0, proc.stderr
        assert f"warning: watch[0].path: {gone} does not exist" in proc.stderr

    def test_local_connect_ok(self, config: Path, tmp_path: Path) -> None:
        proc = run("check-config", "--connect", str(config))
        assert proc.returncode == 0, proc.stderr
        assert f"{config}: OK" in proc.stderr
        assert not (tmp_path / "state").exists()  # a check creates nothing

    def test_local_connect_problems_one_per_line(self, tmp_path: Path) -> None:
        state = tmp_path / "state"
        state.write_text("a file, not a directory")
        cfg = write_config(tmp_path / "c.toml", state, [{"path": tmp_path}])
        proc = run("check-config", "--connect", str(cfg))
        assert proc.returncode == 78
        assert f"daemon.state_dir: {state} is not a directory" in proc.stderr.splitlines()[-1]

    def test_local_connect_catalog_too_new_or_broken(self, tmp_path: Path) -> None:
        state = tmp_path / "state"
        state.mkdir()
        cfg = write_config(tmp_path / "c.toml", state, [{"path": tmp_path}])
        with sqlite3.connect(state / "catalog.db") as con:
            con.execute(f"PRAGMA user_version = {CATALOG_VERSION + 1}")
        proc = run("check-config", "--connect", str(cfg))
        assert proc.returncode == 78
        assert f"has catalog version {CATALOG_VERSION + 1}" in proc.stderr
        (state / "catalog.db").write_bytes(b"not sqlite" * 500)
        proc = run("check-config", "--connect", str(cfg))
        assert proc.returncode == 78 and "catalog.db" in proc.stderr


@pytest.fixture
def emu() -> Iterator[VastEmulator]:
    with VastEmulator(buckets={BUCKET}) as emulator:
        yield emulator


def vast_toml(tmp_path: Path, endpoint: str, **vast: object) -> Path:
    (tmp_path / "renders").mkdir(exist_ok=True)
    settings = {"endpoint": endpoint, "bucket": BUCKET, "schema": SCHEMA,
                "connect_timeout": 1.0, "read_timeout": 2.0} | vast  # fmt: skip
    return write_config(tmp_path / "c.toml", tmp_path / "state", [{"path": tmp_path / "renders"}],
                        sink={"kind": "vast"}, vast=settings)  # fmt: skip


class TestCheckConfigVast:
    def test_ready_catalog_passes_then_a_missing_one_is_named(
        self, emu: VastEmulator, tmp_path: Path
    ) -> None:
        cfg = vast_toml(tmp_path, emu.endpoint)
        proc = run("check-config", "--connect", str(cfg), env=vast_env(emu))
        assert proc.returncode == 78
        assert f"schema {BUCKET}/{SCHEMA} does not exist" in proc.stderr
        assert run("vast", "init", "--config", str(cfg), env=vast_env(emu)).returncode == 0
        proc = run("check-config", "--connect", str(cfg), env=vast_env(emu))
        assert proc.returncode == 0, proc.stderr
        assert f"{cfg}: OK" in proc.stderr

    def test_bad_credentials_and_missing_bucket(self, emu: VastEmulator, tmp_path: Path) -> None:
        cfg = vast_toml(tmp_path, emu.endpoint)
        env = vast_env(emu) | {"VAST_DB_SECRET_KEY": "wrong-secret-value"}
        proc = run("check-config", "--connect", str(cfg), env=env)
        assert proc.returncode == 78
        assert "credentials" in proc.stderr and "wrong-secret-value" not in proc.stderr
        cfg = vast_toml(tmp_path, emu.endpoint, bucket="nope")
        proc = run("check-config", "--connect", str(cfg), env=vast_env(emu))
        assert proc.returncode == 78 and "bucket 'nope' does not exist" in proc.stderr

    def test_incompatible_columns_each_on_a_line(self, emu: VastEmulator, tmp_path: Path) -> None:
        import pyarrow as pa

        session = vastdb.connect(endpoint=emu.endpoint, access=emu.access_key,
                                 secret=emu.secret_key, timeout=(5, 5),
                                 config=SessionConfig(data_endpoints=[emu.endpoint]))  # fmt: skip
        wrong = pa.schema([pa.field("file_id", pa.int64()), pa.field("file_path", pa.int32())])
        with session.transaction() as tx:
            tx.bucket(BUCKET).create_schema(SCHEMA).create_table("files", wrong)
        proc = run("check-config", "--connect", str(vast_toml(tmp_path, emu.endpoint)),
                   env=vast_env(emu))  # fmt: skip
        assert proc.returncode == 78
        lines = proc.stderr.splitlines()
        assert any(line.endswith("table files: column file_id: expected string, found int64")
                   for line in lines)  # fmt: skip
        assert any("table files: column file_path: expected" in line for line in lines)

    def test_unreachable_exits_69(self, emu: VastEmulator, tmp_path: Path) -> None:
        cfg = vast_toml(tmp_path, emu.endpoint)
        emu.down()
        proc = run("check-config", "--connect", str(cfg), env=vast_env(emu))
        assert proc.returncode == 69, proc.stderr
        assert "unreachable" in proc.stderr and emu.endpoint in proc.stderr
