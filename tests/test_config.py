"""The config file: what loads, what is rejected and how, and that secrets never leak."""

from __future__ import annotations

import json
import pickle
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from exrwatchd.config import (
    DEFAULT_EXCLUDE,
    Config,
    DaemonConfig,
    InspectConfig,
    LogConfig,
    MetricsConfig,
    SettleConfig,
    SinkConfig,
    VastConfig,
    WatchConfig,
    config_to_dict,
    load_config,
)
from exrwatchd.errors import ConfigError
from exrwatchd.secrets import Secret
from exrwatchd.watch import NameFilter

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"

ACCESS = "AKIA-access-value-1234"
SECRET = "s3cr3t-value-9876"

WATCH = '[[watch]]\npath = "/srv/renders"\n'
VAST_SINK = '[sink]\nkind = "vast"\n[vast]\nendpoint = "https://vast.example.com"\nbucket = "b"\n'


def write(tmp_path: Path, text: str, mode: int = 0o600, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def load(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), {} if environ is None else environ)


def errors(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Each line of the ConfigError, with the file name prefix checked and removed."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {} if environ is None else environ)
    lines = str(info.value).splitlines()
    for line in lines:
        assert line.startswith(f"{path}: "), line
    return [line.removeprefix(f"{path}: ") for line in lines]


def to_toml(data: Mapping[str, Any]) -> str:
    """Just enough of a TOML writer for config_to_dict output (tables, [[arrays]], scalars)."""

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return json.dumps(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        return repr(value)

    def table(header: str, values: Mapping[str, Any]) -> list[str]:
        return [header, *(f"{k} = {scalar(v)}" for k, v in values.items())]

    lines: list[str] = []
    for section, values in data.items():
        if isinstance(values, list):
            for item in values:
                lines += table(f"[[{section}]]", item)
        else:
            lines += table(f"[{section}]", values)
    return "\n".join(lines) + "\n"


class TestExampleConfig:
    def test_loads_with_documented_defaults(self) -> None:
        cfg = load_config(EXAMPLE, {})
        assert cfg.daemon == DaemonConfig()
        assert cfg.watch == (WatchConfig(path=Path("/srv/renders")),)
        assert cfg.settle == SettleConfig()
        assert cfg.sink == SinkConfig()
        assert cfg.vast == VastConfig()
        assert cfg.log == LogConfig()
        assert cfg.metrics == MetricsConfig()
        assert cfg.inspect == InspectConfig()
        assert cfg.warnings == ()

    def test_paths_follow_the_environment_so_it_runs_without_root(self, tmp_path: Path) -> None:
        env = {
            "EXRWATCHD_STATE_DIR": str(tmp_path / "state"),
            "EXRWATCHD_WATCH_DIR": str(tmp_path / "renders"),
        }
        cfg = load_config(EXAMPLE, env)
        assert cfg.daemon.state_dir == tmp_path / "state"
        assert cfg.watch[0].path == tmp_path / "renders"

    def test_documents_every_key(self) -> None:
        text = EXAMPLE.read_text(encoding="utf-8")
        sections: dict[str, Any] = {
            "daemon": DaemonConfig,
            "watch": WatchConfig,
            "settle": SettleConfig,
            "sink": SinkConfig,
            "vast": VastConfig,
            "log": LogConfig,
            "metrics": MetricsConfig,
            "inspect": InspectConfig,
        }
        extra_vast = ["access_key_file", "secret_key_file", "access_key_env", "secret_key_env"]
        for section, cls in sections.items():
            keys = list(cls.__dataclass_fields__) + (extra_vast if section == "vast" else [])
            for key in keys:
                assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), f"{section}.{key}"
        headers = re.findall(r"^\[+(\w+)\]+$", text, re.MULTILINE)
        assert headers == list(sections), "sections out of order"

    def test_effective_config_round_trips_as_toml(self, tmp_path: Path) -> None:
        cfg = load_config(EXAMPLE, {"VAST_DB_ENDPOINT": "http://vast.local:8080"})
        again = load(tmp_path, to_toml(config_to_dict(cfg)))
        assert again.vast.endpoint == "http://vast.local:8080"
        assert config_to_dict(again) == config_to_dict(cfg)

    def test_effective_config_is_plain_toml_data(self) -> None:
        data = config_to_dict(load_config(EXAMPLE, {}))
        assert tomllib.loads(to_toml(data)) == data
        assert data["watch"][0]["exclude"] == list(DEFAULT_EXCLUDE)
        assert "endpoint" not in data["vast"]  # unset keys are left out: TOML has no null


class TestFileProblems:
    def test_missing_file_names_it(self, tmp_path: Path) -> None:
        path = tmp_path / "nope.toml"
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: cannot read .*No such"):
            load_config(path, {})

    def test_unreadable_file_names_it(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: cannot read"):
            load_config(tmp_path, {})  # a directory: unreadable even for root

    def test_syntax_error_names_line_and_column(self, tmp_path: Path) -> None:
        path = write(tmp_path, '[daemon]\nworkers = 2\nstate_dir = "/x\n')
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        assert re.fullmatch(
            rf"{re.escape(str(path))}: line 3, column \d+: invalid TOML: .+", str(info.value)
        )

    def test_invalid_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "config.toml"
        path.write_bytes(b'[daemon]\nstate_dir = "/x\xff"\n')
        with pytest.raises(ConfigError, match="not valid UTF-8"):
            load_config(path, {})

    def test_empty_file_is_all_defaults_and_no_watches(self, tmp_path: Path) -> None:
        cfg = load(tmp_path, "")
        assert cfg.watch == ()
        assert cfg.daemon == DaemonConfig()
        with pytest.raises(ConfigError) as info:
            cfg.require_watches()
        assert (
            str(info.value)
            == f"{tmp_path / 'config.toml'}: watch: at least one [[watch]] entry is required"
        )


class TestUnknownKeys:
    def test_suggests_the_closest_key(self, tmp_path: Path) -> None:
        assert errors(tmp_path, WATCH + "recursve = false\n") == [
            'watch[0].recursve: unknown key (did you mean "recursive"?)'
        ]

    def test_at_every_level(self, tmp_path: Path) -> None:
        text = 'wacth = 1\n[daemon]\nworker = 2\n[vast]\nsecret_kee = "x"\n[log]\ncolour = 1\n'
        assert errors(tmp_path, text) == [
            'wacth: unknown key (did you mean "watch"?)',
            'daemon.worker: unknown key (did you mean "workers"?)',
            'vast.secret_kee: unknown key (did you mean "secret_key"?)',
            "log.colour: unknown key",
        ]

    def test_unknown_key_value_is_not_echoed(self, tmp_path: Path) -> None:
        [line] = errors(tmp_path, f'[vast]\nsecrte = "{SECRET}"\n')
        assert SECRET not in line


class TestTypesAndRanges:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ('[daemon]\nworkers = "4"', 'daemon.workers: expected an integer, got string "4"'),
            ("[daemon]\nworkers = true", "daemon.workers: expected an integer, got boolean true"),
            ("[daemon]\nworkers = 2.0", "daemon.workers: expected an integer, got float 2.0"),
            ("[daemon]\nworkers = 0", "daemon.workers: must be >= 1, got 0"),
            ("[daemon]\nqueue_size = -1", "daemon.queue_size: must be >= 1, got -1"),
            ("[daemon]\nrescan_interval = 0", "daemon.rescan_interval: must be > 0, got 0.0"),
            (
                "[daemon]\nshutdown_timeout = nan",
                "daemon.shutdown_timeout: must be a finite number, got float nan",
            ),
            ("[settle]\nquiet_seconds = -0.5", "settle.quiet_seconds: must be >= 0, got -0.5"),
            (
                "[settle]\nquiet_seconds = [1]",
                "settle.quiet_seconds: expected a number, got an array",
            ),
            (
                '[sink]\nbatch_size = "500"',
                'sink.batch_size: expected an integer, got string "500"',
            ),
            ("[sink]\nmax_attempts = 0", "sink.max_attempts: must be >= 1, got 0"),
            (
                '[vast]\nssl_verify = "yes"',
                'vast.ssl_verify: expected a boolean (true or false), got string "yes"',
            ),
            ('[vast]\nschema = ""', "vast.schema: must not be empty"),
            ("daemon = 3", "daemon: expected a table ([daemon]), got integer 3"),
            (
                '[watch]\npath = "/x"',
                "watch: expected an array of tables ([[watch]]), got a single table ([watch])",
            ),
        ],
    )
    def test_rejected(self, tmp_path: Path, text: str, message: str) -> None:
        assert errors(tmp_path, text + "\n") == [message]

    def test_bad_enum_lists_allowed_values(self, tmp_path: Path) -> None:
        assert errors(tmp_path, WATCH + 'backend = "kqueue"\n') == [
            'watch[0].backend: must be one of "auto", "inotify", "poll", got "kqueue"'
        ]
        assert errors(tmp_path, '[sink]\nkind = "vats"\n') == [
            'sink.kind: must be one of "local", "vast", got "vats" (did you mean "vast"?)'
        ]

    def test_enums_are_case_insensitive(self, tmp_path: Path) -> None:
        cfg = load(tmp_path, '[log]\nlevel = "WARNING"\nformat = "Console"\n')
        assert (cfg.log.level, cfg.log.format) == ("warning", "console")

    def test_integers_are_accepted_for_seconds(self, tmp_path: Path) -> None:
        cfg = load(tmp_path, "[settle]\nquiet_seconds = 0\nmax_wait_seconds = 60\n")
        assert cfg.settle.quiet_seconds == 0.0
        assert isinstance(cfg.settle.max_wait_seconds, float)

    def test_backoff_start_above_its_cap(self, tmp_path: Path) -> None:
        text = "[sink]\nbackoff_initial_seconds = 500\n[settle]\nrecheck_initial_seconds = 90\n"
        assert errors(tmp_path, text) == [
            "settle.recheck_max_seconds: must be >= settle.recheck_initial_seconds (90.0), "
            "got 60.0",
            "sink.backoff_max_seconds: must be >= sink.backoff_initial_seconds (500.0), got 300.0",
        ]

    @pytest.mark.parametrize("listen", ["127.0.0.1:9100", "localhost:1", "[::1]:65535", "host:0"])
    def test_metrics_listen(self, tmp_path: Path, listen: str) -> None:
        cfg = load(tmp_path, f'[metrics]\nlisten = "{listen}"\n')
        assert cfg.metrics.listen == listen
        assert f"{cfg.metrics.host}:{cfg.metrics.port}" == listen.replace("[", "").replace("]", "")

    @pytest.mark.parametrize(
        "listen", ["9100", ":9100", "host:-1", "host:70000", "host:http", "::1:9100"]
    )
    def test_metrics_listen_rejected(self, tmp_path: Path, listen: str) -> None:
        [line] = errors(tmp_path, f'[metrics]\nlisten = "{listen}"\n')
        assert line.startswith("metrics.listen: ")

    def test_every_error_is_reported_at_once(self, tmp_path: Path) -> None:
        text = (
            'typo = 1\n[daemon]\nworkers = "4"\nstate_dir = "state"\n'
            '[[watch]]\nrecursive = "yes"\n[log]\nlevel = "loud"\n'
        )
        assert errors(tmp_path, text) == [
            "typo: unknown key",
            'daemon.state_dir: must be an absolute path, got "state"',
            'daemon.workers: expected an integer, got string "4"',
            "watch[0].path: missing required key",
            'watch[0].recursive: expected a boolean (true or false), got string "yes"',
            'log.level: must be one of "debug", "info", "warning", "error", got "loud"',
        ]


class TestPaths:
    def test_variables_and_defaults(self, tmp_path: Path) -> None:
        text = (
            '[daemon]\nstate_dir = "${STATE:-/var/lib/x}"\n'
            '[[watch]]\npath = "${ROOT}/shows/${SHOW:-main}"\n'
            '[log]\nfile = "${LOGS:-/var/log}/exrwatchd.log"\n'
        )
        cfg = load(tmp_path, text, {"ROOT": "/mnt/proj", "LOGS": ""})
        assert cfg.daemon.state_dir == Path("/var/lib/x")
        assert cfg.watch[0].path == Path("/mnt/proj/shows/main")
        assert cfg.log.file == Path("/var/log/exrwatchd.log")  # empty counts as unset, as in sh

    def test_tilde_uses_home_from_the_environment(self, tmp_path: Path) -> None:
        cfg = load(
            tmp_path, '[daemon]\nstate_dir = "~/.local/state/exrwatchd"\n', {"HOME": "/home/ana"}
        )
        assert cfg.daemon.state_dir == Path("/home/ana/.local/state/exrwatchd")

    def test_undefined_variable_names_key_and_variable(self, tmp_path: Path) -> None:
        [line] = errors(tmp_path, '[[watch]]\npath = "${RENDERS}/x"\n')
        assert line.startswith("watch[0].path: environment variable RENDERS is not set")

    def test_relative_path_is_rejected(self, tmp_path: Path) -> None:
        assert errors(tmp_path, '[daemon]\nstate_dir = "state"\n') == [
            'daemon.state_dir: must be an absolute path, got "state"'
        ]
        assert errors(tmp_path, '[daemon]\nstate_dir = "${D}/x"\n', {"D": "rel"}) == [
            'daemon.state_dir: must be an absolute path, got "rel/x" (expanded from "${D}/x")'
        ]

    def test_unterminated_variable(self, tmp_path: Path) -> None:
        [line] = errors(tmp_path, '[daemon]\nstate_dir = "/x/${HOME"\n', {"HOME": "/h"})
        assert line.startswith('daemon.state_dir: unterminated "${"')

    def test_normalised_but_not_resolved(self, tmp_path: Path) -> None:
        real = tmp_path / "Real"
        real.mkdir()
        (tmp_path / "Link").symlink_to(real)
        cfg = load(tmp_path, f'[[watch]]\npath = "{tmp_path}//Link/./sub/../"\n')
        assert cfg.watch[0].path == tmp_path / "Link"  # symlink and case kept

    def test_leading_double_slash_is_one_directory(self, tmp_path: Path) -> None:
        cfg = load(tmp_path, '[daemon]\nstate_dir = "//var/lib/x"\n')
        assert cfg.daemon.state_dir == Path("/var/lib/x")


class TestWatches:
    def test_defaults(self, tmp_path: Path) -> None:
        [watch] = load(tmp_path, WATCH).watch
        assert watch == WatchConfig(
            path=Path("/srv/renders"),
            recursive=True,
            backend="auto",
            poll_interval=10.0,
            include=("*.exr",),
            exclude=(".*", "*.tmp", "*.temp", "*.part", "*.partial", "*~", "*.swp"),
            follow_symlinks=False,
        )

    def test_several_watches(self, tmp_path: Path) -> None:
        text = WATCH + '[[watch]]\npath = "/srv/renders2"\nbackend = "poll"\n'
        cfg = load(tmp_path, text)
        assert [(str(w.path), w.backend) for w in cfg.watch] == [
            ("/srv/renders", "auto"),
            ("/srv/renders2", "poll"),  # a shared prefix is not nesting
        ]

    def test_duplicate(self, tmp_path: Path) -> None:
        assert errors(tmp_path, WATCH + '[[watch]]\npath = "/srv/renders/"\n') == [
            'watch[1].path: "/srv/renders" is already watched by watch[0]'
        ]

    def test_nested_either_way(self, tmp_path: Path) -> None:
        inner = '[[watch]]\npath = "/srv/renders/shot010"\n'
        assert errors(tmp_path, WATCH + inner) == [
            'watch[1].path: "/srv/renders/shot010" is inside watch[0].path "/srv/renders"; '
            "keep only one of them"
        ]
        assert errors(tmp_path, inner + WATCH) == [
            'watch[1].path: "/srv/renders" contains watch[0].path "/srv/renders/shot010"; '
            "keep only one of them"
        ]

    def test_globs_match_base_name_case_insensitively(self, tmp_path: Path) -> None:
        [watch] = load(tmp_path, WATCH).watch
        accepts = NameFilter(watch.include, watch.exclude).accepts
        assert accepts("beauty.0001.exr")
        assert accepts("BEAUTY.0001.EXR")
        assert not accepts(".beauty.0001.exr")
        assert not accepts("beauty.0001.exr.PART")
        assert not accepts("beauty.0001.tif")

    def test_glob_with_slash_can_never_match(self, tmp_path: Path) -> None:
        assert errors(tmp_path, WATCH + 'include = ["*.exr", "shots/*.exr"]\n') == [
            'watch[0].include[1]: "shots/*.exr" can never match: patterns match the base name only'
        ]

    def test_include_must_not_be_empty_but_exclude_may(self, tmp_path: Path) -> None:
        assert errors(tmp_path, WATCH + "include = []\n") == [
            "watch[0].include: must list at least one pattern"
        ]
        assert load(tmp_path, WATCH + "exclude = []\n").watch[0].exclude == ()

    def test_entry_that_is_not_a_table(self, tmp_path: Path) -> None:
        assert errors(tmp_path, 'watch = ["/srv/renders"]\n') == [
            'watch[0]: expected a table, got string "/srv/renders"'
        ]


class TestVast:
    def test_local_sink_needs_no_vast_keys(self, tmp_path: Path) -> None:
        cfg = load(tmp_path, '[sink]\nkind = "local"\n')
        assert cfg.vast.endpoint is None
        assert cfg.vast.access_key is None

    def test_vast_sink_requires_everything_and_says_where_from(self, tmp_path: Path) -> None:
        assert errors(tmp_path, '[sink]\nkind = "vast"\n') == [
            'vast.endpoint: required when sink.kind = "vast"; set vast.endpoint or env '
            "VAST_DB_ENDPOINT",
            'vast.bucket: required when sink.kind = "vast"; set vast.bucket',
            'vast.access_key: required when sink.kind = "vast"; set one of vast.access_key_file, '
            "$CREDENTIALS_DIRECTORY/vast_access_key (systemd LoadCredential=), "
            "env VAST_DB_ACCESS_KEY, or vast.access_key",
            'vast.secret_key: required when sink.kind = "vast"; set one of vast.secret_key_file, '
            "$CREDENTIALS_DIRECTORY/vast_secret_key (systemd LoadCredential=), "
            "env VAST_DB_SECRET_KEY, or vast.secret_key",
        ]

    def test_required_message_names_the_overridden_env_var(self, tmp_path: Path) -> None:
        lines = errors(
            tmp_path, VAST_SINK + 'access_key_env = "MY_KEY"\n', {"VAST_DB_SECRET_KEY": SECRET}
        )
        assert len(lines) == 1
        assert "env MY_KEY," in lines[0]

    def test_endpoint_from_environment(self, tmp_path: Path) -> None:
        env = {
            "VAST_DB_ENDPOINT": "http://10.0.0.1:8070",
            "VAST_DB_ACCESS_KEY": ACCESS,
            "VAST_DB_SECRET_KEY": SECRET,
        }
        cfg = load(tmp_path, '[sink]\nkind = "vast"\n[vast]\nbucket = "b"\n', env)
        assert cfg.vast.endpoint == "http://10.0.0.1:8070"
        assert cfg.vast.bucket == "b"

    def test_endpoint_in_file_beats_environment(self, tmp_path: Path) -> None:
        cfg = load(
            tmp_path,
            VAST_SINK,
            {
                "VAST_DB_ENDPOINT": "http://other",
                "VAST_DB_ACCESS_KEY": ACCESS,
                "VAST_DB_SECRET_KEY": SECRET,
            },
        )
        assert cfg.vast.endpoint == "https://vast.example.com"

    @pytest.mark.parametrize(
        "endpoint", ["vast.example.com", "ftp://vast", "https://", "http://h:99999"]
    )
    def test_endpoint_must_be_a_url(self, tmp_path: Path, endpoint: str) -> None:
        assert errors(tmp_path, f'[vast]\nendpoint = "{endpoint}"\n') == [
            f'vast.endpoint: must be an http:// or https:// URL, got "{endpoint}"'
        ]
        assert errors(tmp_path, "", {"VAST_DB_ENDPOINT": endpoint}) == [
            f'vast.endpoint: must be an http:// or https:// URL, got "{endpoint}" '
            "(from env VAST_DB_ENDPOINT)"
        ]

    def test_endpoint_with_credentials_is_rejected_without_echo(self, tmp_path: Path) -> None:
        assert errors(tmp_path, f'[vast]\nendpoint = "https://me:{SECRET}@vast"\n') == [
            "vast.endpoint: must not contain user:password; use the access_key / secret_key "
            "settings"
        ]


class TestCredentials:
    def test_environment(self, tmp_path: Path) -> None:
        env = {"VAST_DB_ACCESS_KEY": ACCESS, "VAST_DB_SECRET_KEY": SECRET}
        cfg = load(tmp_path, VAST_SINK, env)
        assert cfg.vast.access_key == Secret(ACCESS, "env VAST_DB_ACCESS_KEY")
        assert cfg.vast.secret_key is not None and cfg.vast.secret_key.reveal() == SECRET
        assert cfg.secrets() == (ACCESS, SECRET)
        assert cfg.warnings == ()

    def test_renamed_environment_variables(self, tmp_path: Path) -> None:
        env = {"A": ACCESS, "B": SECRET, "VAST_DB_ACCESS_KEY": "ignored-value"}
        text = VAST_SINK + 'access_key_env = "A"\nsecret_key_env = "B"\n'
        cfg = load(tmp_path, text, env)
        assert cfg.secrets() == (ACCESS, SECRET)
        assert cfg.vast.access_key is not None and cfg.vast.access_key.source == "env A"

    def test_precedence_file_then_credentials_dir_then_env_then_plain(self, tmp_path: Path) -> None:
        key_file = tmp_path / "key"
        key_file.write_text("from-file-value\n")
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "vast_access_key").write_text("from-credential\n")
        env = {"CREDENTIALS_DIRECTORY": str(creds), "VAST_DB_ACCESS_KEY": "from-env-value"}
        plain = 'access_key = "from-plain-value"\n'
        file_key = f'access_key_file = "{key_file}"\n'

        def access(text: str, environ: Mapping[str, str]) -> tuple[str, str]:
            secret = load(tmp_path, "[vast]\n" + text, environ).vast.access_key
            assert secret is not None
            return secret.reveal(), secret.source

        assert access(file_key + plain, env) == ("from-file-value", f"file {key_file}")
        assert access(plain, env) == ("from-credential", "$CREDENTIALS_DIRECTORY/vast_access_key")
        no_cred = env | {"CREDENTIALS_DIRECTORY": str(tmp_path / "empty")}
        assert access(plain, no_cred) == ("from-env-value", "env VAST_DB_ACCESS_KEY")
        assert access(plain, {}) == (
            "from-plain-value",
            f"plain text in {tmp_path / 'config.toml'}",
        )

    def test_file_keeps_everything_but_the_trailing_newline(self, tmp_path: Path) -> None:
        key_file = tmp_path / "key"
        key_file.write_text(" spaced key \r\n")
        cfg = load(tmp_path, f'[vast]\nsecret_key_file = "{key_file}"\n')
        assert cfg.secrets() == (" spaced key ",)

    def test_unreadable_file_is_named_but_not_shown(self, tmp_path: Path) -> None:
        missing = tmp_path / "missing"
        assert errors(tmp_path, f'[vast]\naccess_key_file = "{missing}"\n') == [
            f'vast.access_key_file: cannot read file "{missing}": No such file or directory'
        ]
        garbled = tmp_path / "garbled"
        garbled.write_bytes(b"AKIA\xffsecret")
        [line] = errors(tmp_path, f'[vast]\naccess_key_file = "{garbled}"\n')
        assert line == f'vast.access_key_file: file "{garbled}" is not valid UTF-8'

    def test_empty_file(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty"
        empty.write_text("\n")
        assert errors(tmp_path, f'[vast]\nsecret_key_file = "{empty}"\n') == [
            f'vast.secret_key_file: file "{empty}" is empty'
        ]

    def test_unreadable_systemd_credential(self, tmp_path: Path) -> None:
        creds = tmp_path / "creds"
        (creds / "vast_secret_key").mkdir(parents=True)
        [line] = errors(tmp_path, "", {"CREDENTIALS_DIRECTORY": str(creds)})
        assert line.startswith(
            f'vast.secret_key: cannot read systemd credential "{creds}/vast_secret_key"'
        )

    def test_empty_environment_variable_counts_as_unset(self, tmp_path: Path) -> None:
        cfg = load(tmp_path, "", {"VAST_DB_ACCESS_KEY": ""})
        assert cfg.vast.access_key is None


class TestPlainTextWarning:
    TEXT = f'[vast]\naccess_key = "{ACCESS}"\nsecret_key = "{SECRET}"\n'

    def test_group_readable_file_warns_loudly(self, tmp_path: Path) -> None:
        path = write(tmp_path, self.TEXT, mode=0o644)
        cfg = load_config(path, {})
        assert cfg.warnings[1] == (
            f"vast.secret_key is stored in plain text in {path}, which is readable by "
            "group/others (mode 0644); chmod 600 it or use secret_key_file / LoadCredential"
        )
        assert len(cfg.warnings) == 2

    def test_private_file_warns_mildly(self, tmp_path: Path) -> None:
        cfg = load_config(write(tmp_path, self.TEXT, mode=0o600), {})
        assert len(cfg.warnings) == 2
        assert all("plain text" in w and "group/others" not in w for w in cfg.warnings)

    def test_no_warning_for_other_sources(self, tmp_path: Path) -> None:
        cfg = load(tmp_path, "", {"VAST_DB_ACCESS_KEY": ACCESS})
        assert cfg.warnings == ()


class TestSecretsNeverLeak:
    def config(self, tmp_path: Path) -> Config:
        key_file = tmp_path / "secret"
        key_file.write_text(SECRET + "\n")
        text = VAST_SINK + f'secret_key_file = "{key_file}"\n'
        return load(tmp_path, text, {"VAST_DB_ACCESS_KEY": ACCESS})

    def test_not_in_repr_or_str(self, tmp_path: Path) -> None:
        cfg = self.config(tmp_path)
        for text in (repr(cfg), str(cfg), repr(cfg.vast), str(cfg.vast.access_key)):
            assert ACCESS not in text and SECRET not in text
        assert repr(cfg.vast.access_key) == "Secret(********, from env VAST_DB_ACCESS_KEY)"

    def test_masked_in_effective_config_with_their_source(self, tmp_path: Path) -> None:
        data = config_to_dict(self.config(tmp_path))
        assert data["vast"]["access_key"] == "******** (from env VAST_DB_ACCESS_KEY)"
        assert data["vast"]["secret_key"] == f"******** (from file {tmp_path / 'secret'})"
        dumped = json.dumps(data)
        assert ACCESS not in dumped and SECRET not in dumped

    def test_not_in_error_messages(self, tmp_path: Path) -> None:
        # Pasted into the wrong keys: the messages name the key but never echo the value.
        text = f'[vast]\naccess_key_file = "{ACCESS}"\nsecret_key = 98765432\n'
        assert errors(tmp_path, text) == [
            "vast.secret_key: expected a string, got integer",
            "vast.access_key_file: must be an absolute path (value not shown: it may be a secret)",
        ]

    def test_resolved_secret_echoed_by_another_key_is_masked(self, tmp_path: Path) -> None:
        text = f'[[watch]]\npath = "/srv"\nbackend = "{SECRET}"\n'
        [line] = errors(tmp_path, text, {"VAST_DB_SECRET_KEY": SECRET})
        assert line == 'watch[0].backend: must be one of "auto", "inotify", "poll", got "********"'

    def test_cannot_be_pickled_or_changed(self) -> None:
        secret = Secret(SECRET, "env X")
        with pytest.raises(TypeError):
            pickle.dumps(secret)
        with pytest.raises(AttributeError):
            secret.source = "elsewhere"  # type: ignore[misc]
