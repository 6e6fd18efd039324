"""systemd/exrwatchd.service (and its VAST drop-in, exrwatchd.service.d/vast.conf): what they
must say, that systemd accepts them, and how exposed the unit is.

- The unit is parsed here in plain Python and the settings the daemon relies on are asserted.
- The unit starts with the default (local) sink: no LoadCredential= in it; the VAST keys are
  in the drop-in, whose credential names the daemon reads.
- `systemd-analyze verify` must print nothing, with and without the drop-in: it exits 0 even
  on unknown keys and values it cannot parse, so silence is the test. ExecStart= names
  /opt/exrwatchd/bin/exrwatchd, which does not exist on a build machine and which verify
  checks; the test verifies a copy whose ExecStart= points at a stub of the same name in a
  temp dir, every other line unchanged.
- `systemd-analyze security --offline=yes` must rate the exposure at 2.5 or less.
- Two sandbox choices are checked on this kernel: ProcSubset=pid (with ProtectProc=invisible)
  still lets the daemon read /proc/self/mounts, and MemoryDenyWriteExecute=yes lets the whole
  stack (numpy, pyarrow, OpenImageIO, vastdb) load and inspect a file.

The systemd-analyze tests skip, saying why, where systemd-analyze is missing or too old (the
`python` machine image has Debian's systemd 252, so they run here and in CI).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "exrwatchd.service"
DROP_IN = ROOT / "systemd" / "exrwatchd.service.d" / "vast.conf"
EXEC_START = "/opt/exrwatchd/bin/exrwatchd run --config /etc/exrwatchd/config.toml"
MAX_EXPOSURE = 2.5

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """Sections -> (key, value) in order; keys repeat (LoadCredential=, SystemCallFilter=)."""
    unit: Unit = {}
    section: str | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):  # continuation
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        assert section is not None, f"assignment outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line}"
        unit[section].append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= expected once, found {found}"
    return found[0]


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


# ---- what the unit says -------------------------------------------------------------------


def test_lifecycle(unit: Unit) -> None:
    from exrwatchd.errors import EXIT_CONFIG

    s = "Service"
    assert one(unit, s, "Type") == "notify"
    assert one(unit, s, "NotifyAccess") == "main"
    assert one(unit, s, "WatchdogSec") == "60"
    assert one(unit, s, "ExecStart") == EXEC_START
    assert one(unit, s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, s, "Restart") == "on-failure"
    assert one(unit, s, "RestartSec") == "5"
    assert str(EXIT_CONFIG) in one(unit, s, "RestartPreventExitStatus").split()
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_ordering_and_mounts(unit: Unit) -> None:
    after = " ".join(values(unit, "Unit", "After")).split()
    assert {"network-online.target", "remote-fs.target"} <= set(after)
    assert "network-online.target" in " ".join(values(unit, "Unit", "Wants")).split()
    text = UNIT.read_text()
    # Documented, for the operator to fill in with the watched mounts.
    assert re.search(r"^#\s*RequiresMountsFor=/\S+", text, re.M)
    assert re.search(r"^#\s*ReadOnlyPaths=/\S+", text, re.M)
    assert re.search(r"^#\s*BindReadOnlyPaths=/home/\S+", text, re.M)


def test_user_state_config_credentials(unit: Unit) -> None:
    s = "Service"
    assert one(unit, s, "User") == "exrwatchd"
    assert one(unit, s, "Group") == "exrwatchd"
    assert not values(unit, s, "DynamicUser")  # NFS exports grant access by a fixed UID
    assert one(unit, s, "StateDirectory") == "exrwatchd"
    assert one(unit, s, "StateDirectoryMode") == "0700"
    assert one(unit, s, "ConfigurationDirectory") == "exrwatchd"
    assert one(unit, s, "UMask") == "0077"
    # config.example.toml: state_dir = "${EXRWATCHD_STATE_DIR:-/var/lib/exrwatchd}"
    assert "EXRWATCHD_STATE_DIR=%S/exrwatchd" in values(unit, s, "Environment")
    assert "${EXRWATCHD_STATE_DIR" in (ROOT / "config.example.toml").read_text()
    # The default (local) sink needs no keys, and LoadCredential= of a missing file fails
    # the start: the credentials are in the VAST drop-in only.
    assert not values(unit, s, "LoadCredential")
    assert not values(unit, s, "SetCredential")
    # No secret in the unit itself.
    for key, value in unit["Service"]:
        assert not re.search(r"VAST_DB_(ACCESS|SECRET)_KEY=\S", value), f"{key}={value}"


def test_vast_drop_in_loads_the_credentials() -> None:
    drop_in = parse_unit(DROP_IN.read_text())
    assert list(drop_in) == ["Service"]
    assert {k for k, _ in drop_in["Service"]} == {"LoadCredential"}
    creds = dict(v.split(":", 1) for v in values(drop_in, "Service", "LoadCredential"))
    # exrwatchd/secrets.py reads $CREDENTIALS_DIRECTORY/vast_access_key and vast_secret_key.
    assert creds == {
        "vast_access_key": "/etc/exrwatchd/credentials/vast_access_key",
        "vast_secret_key": "/etc/exrwatchd/credentials/vast_secret_key",
    }


def test_the_daemon_reads_the_drop_ins_credential_names(tmp_path: Path) -> None:
    from exrwatchd.secrets import resolve_credential

    drop_in = parse_unit(DROP_IN.read_text())
    for value in values(drop_in, "Service", "LoadCredential"):
        name = value.split(":", 1)[0]
        (tmp_path / name).write_text(f"from {name}\n")
    for key in ("access_key", "secret_key"):
        found = resolve_credential(key, file=None, env_var="UNSET", plain=None,
                                   config_name="c.toml",
                                   environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})  # fmt: skip
        assert found is not None and found.reveal() == f"from vast_{key}"


def test_journald_rate_limit_sits_above_the_daemons_own_budget(unit: Unit) -> None:
    from exrwatchd.logs import DEFAULT_BURST, DEFAULT_RATE_LIMIT

    interval = one(unit, "Service", "LogRateLimitIntervalSec")
    assert interval == "30s"
    burst = int(one(unit, "Service", "LogRateLimitBurst"))
    # Two processes (daemon, sink), each at most burst + rate x interval lines per interval:
    # journald, which drops whatever the priority, must never be the one to drop.
    most = 2 * (DEFAULT_BURST + DEFAULT_RATE_LIMIT * 30)
    assert burst >= 2 * most, (burst, most)


def test_sandbox(unit: Unit) -> None:
    s = "Service"
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "ProtectProc": "invisible",
        "ProcSubset": "pid",
        "RestrictNamespaces": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "SystemCallErrorNumber": "EPERM",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
    }
    actual = {key: one(unit, s, key) for key in expected}
    assert actual == expected
    assert set(one(unit, s, "RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
    }
    assert values(unit, s, "SystemCallFilter") == ["@system-service", "~@privileged @resources",
                                                   "sched_setaffinity"]  # fmt: skip


def test_proc_subset_matches_what_the_daemon_reads() -> None:
    from exrwatchd.watch import mounts

    # ProcSubset=pid hides /proc/mounts, /proc/sys, /proc/cpuinfo...; /proc/self/* stays.
    assert mounts.MOUNTS_FILE.startswith("/proc/self/")


# ---- systemd-analyze ----------------------------------------------------------------------


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian package: systemd)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"systemd (\d+)", out.stdout)
    if match is None or int(match.group(1)) < 250:
        pytest.skip(f"systemd-analyze too old for --offline (needs 250+): {out.stdout[:40]!r}")
    return exe


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(
        [_systemd_analyze(), "--no-pager", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _copy_with_stub(tmp_path: Path, text: str) -> Path:
    """The unit as exrwatchd.service in tmp_path, ExecStart= on an executable stub."""
    stub = tmp_path / "opt" / "exrwatchd" / "bin" / "exrwatchd"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    assert text.count(f"ExecStart={EXEC_START}\n") == 1
    copy = tmp_path / "exrwatchd.service"
    copy.write_text(text.replace("ExecStart=/opt/exrwatchd/bin/", f"ExecStart={stub.parent}/"))
    return copy


def test_verify_is_clean(tmp_path: Path) -> None:
    copy = _copy_with_stub(tmp_path, UNIT.read_text())
    result = _analyze("verify", str(copy))
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        f"systemd-analyze verify said:\n{result.stdout}{result.stderr}"
    )


def test_verify_with_the_vast_drop_in_is_clean(tmp_path: Path) -> None:
    copy = _copy_with_stub(tmp_path, UNIT.read_text())
    drop_in = tmp_path / "exrwatchd.service.d" / "vast.conf"
    drop_in.parent.mkdir()
    shutil.copy(DROP_IN, drop_in)
    result = _analyze("verify", str(copy))
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        f"systemd-analyze verify said:\n{result.stdout}{result.stderr}"
    )
    # ... and it did read the drop-in: a misspelt key there is reported.
    drop_in.write_text(DROP_IN.read_text().replace("LoadCredential=", "LoadCredentail="))
    said = _analyze("verify", str(copy))
    assert "LoadCredentail" in said.stdout + said.stderr, said


def test_verify_on_the_unit_as_shipped_only_misses_the_install(tmp_path: Path) -> None:
    """Without the stub, the one complaint is the executable that `pip install` provides."""
    result = _analyze("verify", str(UNIT))
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if Path(EXEC_START.split()[0]).exists():
        assert lines == [], lines
    else:
        assert len(lines) == 1, lines
        assert "/opt/exrwatchd/bin/exrwatchd" in lines[0] and "not executable" in lines[0], lines


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """Silence means something: this systemd-analyze does report bad keys and values."""
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt")
    broken = broken.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    result = _analyze("verify", str(_copy_with_stub(tmp_path, broken)))
    said = result.stdout + result.stderr
    assert "strickt" in said and "NoNewPrivilege" in said, said


def test_security_exposure() -> None:
    result = _analyze("security", "--offline=yes", str(UNIT))
    said = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for exrwatchd\.service:\s*(\d+(?:\.\d+)?)", said)
    assert match, f"no exposure level in:\n{said}"
    exposure = float(match.group(1))
    weak = [line.strip() for line in result.stdout.splitlines() if line.lstrip().startswith("✗")]
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} > {MAX_EXPOSURE}; open:\n" + "\n".join(
        weak
    )


# ---- the sandbox on this kernel -----------------------------------------------------------


def test_mounts_readable_with_proc_subset_pid(tmp_path: Path) -> None:
    """ProtectProc=invisible + ProcSubset=pid is /proc mounted hidepid=invisible,subset=pid.

    Mount exactly that over /proc in a private mount namespace and run the daemon's
    backend choice there: /proc/self/mounts must still be readable (and /proc/mounts gone,
    which shows the option took effect).
    """
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a procfs instance")
    watched = tmp_path / "renders"
    watched.mkdir()
    code = (
        "import os\n"
        "from exrwatchd.watch.mounts import choose_backend, mount_fstype\n"
        "assert not os.path.exists('/proc/mounts'), 'subset=pid did not apply'\n"
        "assert not os.path.exists('/proc/sys/fs'), 'subset=pid did not apply'\n"
        f"print(mount_fstype({str(watched)!r})[0], choose_backend('auto', {str(watched)!r})[0])\n"
    )
    script = (
        "mount -t proc -o hidepid=invisible,subset=pid proc /proc || exit 77\n"
        f'exec "{sys.executable}" -c "$1"\n'
    )
    result = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    if result.returncode == 77 or "unshare failed" in result.stderr:
        pytest.skip(f"cannot mount procfs with subset=pid here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    fstype, backend = result.stdout.split()
    assert fstype and backend in ("inotify", "poll")


MDWE_CHILD = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    sys.exit(77)
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("PR_SET_MDWE did not refuse a W+X mapping")
except OSError:
    pass
import numpy, pyarrow, OpenImageIO, vastdb  # noqa
import exrwatchd.sinks.local, exrwatchd.sinks.vast, exrwatchd.catalog.rows  # noqa
from exrwatchd.cli import main
sys.exit(main(["inspect", "--json", "--embeddings", sys.argv[1]]))
"""


def test_stack_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes: nothing we load needs writable+executable memory.

    The kernel's PR_SET_MDWE (Linux 6.3+) enforces the same rule as systemd's seccomp
    filter for it: no W+X mapping, no turning a mapping executable. Under it, import every
    native dependency and inspect a file (header reader, OpenImageIO, embeddings).
    """
    if not hasattr(ctypes, "CDLL") or sys.platform != "linux":
        pytest.skip("Linux only")
    from exrgen import write_scanline

    frame = write_scanline(tmp_path / "frame.0001.exr")
    result = subprocess.run(
        [sys.executable, "-c", MDWE_CHILD, str(frame)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if result.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"complete": true' in result.stdout.replace('"complete":true', '"complete": true')
