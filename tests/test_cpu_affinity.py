"""[daemon] cpu_affinity: where the daemon's processes and threads run.

The plan is a pure function (plan_cpus); the rest runs the real daemon and reads each
thread's CPUs from /proc, which is what the kernel schedules by.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest
from exrgen import truncation_points, write_scanline
from harness import Catalog, DaemonProcess, children, wait_for, write_config
from test_config import errors, load
from test_hooks import make_script

from exrwatchd._cpus import CpuPlan, plan_cpus

ALLOWED = sorted(os.sched_getaffinity(0))
two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs a process allowed two CPUs")


def cpus_of_threads(pid: int) -> dict[int, set[int]]:
    """Each thread of `pid` (by id) and the CPUs it may run on."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = os.sched_getaffinity(int(task.name))
        except ProcessLookupError:
            continue
    return out


class TestPlan:
    def test_auto_puts_main_and_sink_on_the_last_two_cpus(self) -> None:
        assert plan_cpus("auto", [0, 1], sink_process=True) == CpuPlan(0, 1, "auto")
        assert plan_cpus("auto", [5, 0, 7, 3], sink_process=True) == CpuPlan(5, 7, "auto")

    def test_auto_leaves_one_cpu_and_an_in_process_sink_alone(self) -> None:
        assert plan_cpus("auto", [3], sink_process=True).main is None
        unpinned = plan_cpus("auto", [0, 1, 2], sink_process=False)
        assert (unpinned.main, unpinned.sink) == (None, None)
        assert "sink_process = false" in unpinned.why

    def test_off_and_chosen_cpus(self) -> None:
        off = plan_cpus("off", [0, 1], sink_process=True)
        assert off == CpuPlan(None, None, "cpu_affinity is off")
        chosen = plan_cpus((1, 0), [0, 1], sink_process=True)
        assert (chosen.main, chosen.sink) == (1, 0)
        in_process = plan_cpus((1, 0), [0, 1], sink_process=False)
        assert (in_process.main, in_process.sink) == (1, None)

    def test_a_chosen_cpu_outside_the_allowed_set_is_named(self) -> None:
        with pytest.raises(ValueError, match=r"CPU 9 is not one .* \(allowed: 0, 1\)"):
            plan_cpus((0, 9), [0, 1], sink_process=True)


class TestConfig:
    def test_default_is_auto_and_an_array_is_two_cpus(self, tmp_path: Path) -> None:
        assert load(tmp_path, '[[watch]]\npath = "/r"\n').daemon.cpu_affinity == "auto"
        cfg = load(tmp_path, '[daemon]\ncpu_affinity = [2, 3]\n[[watch]]\npath = "/r"\n')
        assert cfg.daemon.cpu_affinity == (2, 3)
        cfg = load(tmp_path, '[daemon]\ncpu_affinity = "OFF"\n[[watch]]\npath = "/r"\n')
        assert cfg.daemon.cpu_affinity == "off"

    @pytest.mark.parametrize(("value", "message"), [
        ('"fast"', 'must be "auto", "off" or [main CPU, sink CPU], got "fast"'),
        ("[1, 1]", "must name two different CPUs, got [1, 1]"),
        ("[1]", "must be two CPU numbers, [main process, sink process], e.g. [2, 3]"),
        ("[-1, 2]", "must be two CPU numbers, [main process, sink process], e.g. [2, 3]"),
        ("2", '"auto", "off" or an array of two CPU numbers, got integer 2'),
    ])  # fmt: skip
    def test_bad_values_are_named(self, tmp_path: Path, value: str, message: str) -> None:
        text = f'[daemon]\ncpu_affinity = {value}\n[[watch]]\npath = "/r"\n'
        (line,) = errors(tmp_path, text)
        assert line.startswith("daemon.cpu_affinity: ") and message in line, line


def affinity_daemon(tmp_path: Path, wrapper: tuple[str, ...] = (), **daemon: object):
    """The real daemon on tmp/renders, with an exec hook that records the CPUs its command
    may run on (a hook's command inherits them from the thread that starts it)."""
    renders, state, got = tmp_path / "renders", tmp_path / "state", tmp_path / "hook-cpus"
    renders.mkdir()
    script = make_script(tmp_path / "hook.py", f"""
import os, sys
sys.stdin.read()
with open({str(got)!r}, "a") as f:
    f.write(" ".join(map(str, sorted(os.sched_getaffinity(0)))) + "\\n")
""")  # fmt: skip
    config = write_config(tmp_path / "c.toml", state, [{"path": str(renders)}],
                          settle={"quiet_seconds": 0.2, "max_wait_seconds": 1.0},
                          daemon=daemon)  # fmt: skip
    with config.open("a") as f:
        f.write(f'\n[[hook]]\non = ["file.incomplete"]\nexec = ["{script}"]\n')
    return DaemonProcess(config, state, wrapper=wrapper), renders, got


def catalogue_one_and_run_the_hook(daemon: DaemonProcess, renders: Path, got: Path) -> str:
    """A whole frame is catalogued and a cut one runs the hook: the CPUs the hook had."""
    frame_path = write_scanline(renders.parent / "frame.exr")
    frame = frame_path.read_bytes()
    (renders / "whole.exr").write_bytes(frame)
    (renders / "cut.exr").write_bytes(frame[: truncation_points(frame_path)["mid_data"]])
    Catalog(daemon.state_dir).wait_paths({str(renders / "whole.exr")})
    wait_for(lambda: got.exists() and got.read_text().strip(), 20, "the hook ran")
    return got.read_text().strip()


@two_cpus
def test_auto_runs_the_main_process_on_one_cpu_and_the_sink_on_another(tmp_path: Path) -> None:
    daemon, renders, got = affinity_daemon(tmp_path, cpu_affinity="auto")
    try:
        ready = daemon.wait_event("daemon.cpus")
        daemon.wait_event("daemon.ready")
        main_cpu, sink_cpu = ALLOWED[-2], ALLOWED[-1]
        assert (ready["main"], ready["sink"], ready["allowed"]) == (main_cpu, sink_cpu, ALLOWED)
        threads = cpus_of_threads(daemon.proc.pid)
        # every thread but one: the hooks thread widens itself, for the commands it starts
        widened = [cpus for cpus in threads.values() if cpus != {main_cpu}]
        assert widened == [set(ALLOWED)], threads
        assert threads[daemon.proc.pid] == {main_cpu}
        (sink,) = [pid for pid in children(daemon.proc.pid)
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # fmt: skip
        wait_for(lambda: daemon.seen("sink.started"), 20, "the sink process started")
        assert set(map(frozenset, cpus_of_threads(sink).values())) == {frozenset({sink_cpu})}
        assert catalogue_one_and_run_the_hook(daemon, renders, got) == " ".join(map(str, ALLOWED))
        assert daemon.stop() == 0
    finally:
        daemon.kill()


@two_cpus
def test_off_leaves_every_thread_every_cpu(tmp_path: Path) -> None:
    daemon, renders, got = affinity_daemon(tmp_path, cpu_affinity="off")
    try:
        assert daemon.wait_event("daemon.cpus")["main"] is None
        daemon.wait_event("daemon.ready")
        for pid in [daemon.proc.pid, *children(daemon.proc.pid)]:
            assert set(map(frozenset, cpus_of_threads(pid).values())) == {frozenset(ALLOWED)}
        catalogue_one_and_run_the_hook(daemon, renders, got)
        assert daemon.stop() == 0
    finally:
        daemon.kill()


# Starts the daemon with only the first allowed CPU, as systemd's CPUAffinity= would.
NARROW = (sys.executable, "-c", f"import os, sys; os.sched_setaffinity(0, {{{ALLOWED[0]}}}); "
          "os.execv(sys.argv[1], sys.argv[1:])")  # fmt: skip


def test_a_process_allowed_one_cpu_is_left_there_and_still_works(tmp_path: Path) -> None:
    daemon, renders, got = affinity_daemon(tmp_path, wrapper=NARROW, cpu_affinity="auto")
    try:
        cpus = daemon.wait_event("daemon.cpus")
        assert (cpus["main"], cpus["why"]) == (None, "one CPU allowed")
        daemon.wait_event("daemon.ready")
        assert catalogue_one_and_run_the_hook(daemon, renders, got) == str(ALLOWED[0])
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_a_chosen_cpu_the_process_may_not_use_stops_the_start(tmp_path: Path) -> None:
    daemon, _, _ = affinity_daemon(tmp_path, wrapper=NARROW, cpu_affinity=[ALLOWED[0], 4095])
    try:
        assert daemon.proc.wait(timeout=30) == 78, daemon.tail()
        daemon.stop()
        assert f"daemon.cpu_affinity: CPU 4095 is not one this process may run on (allowed: " \
               f"{ALLOWED[0]})" in "\n".join(daemon.raw_lines)  # fmt: skip
    finally:
        daemon.kill()


# Runs the daemon under a seccomp filter that fails sched_setaffinity with EPERM, as a unit
# with SystemCallFilter=~@resources (and without our exception for it) does. x86_64 only: the
# filter names the call by its number there (203).
DENY_SETAFFINITY = (sys.executable, "-c", """
import ctypes, os, struct, sys
def op(code, k, jt=0, jf=0):
    return struct.pack("HBBI", code, jt, jf, k)
program = b"".join([
    op(0x20, 4), op(0x15, 0xC000003E, 0, 3),       # arch is x86_64, else allow
    op(0x20, 0), op(0x15, 203, 0, 1),              # sched_setaffinity:
    op(0x06, 0x00050000 | 1), op(0x06, 0x7FFF0000),  # EPERM; anything else: allow
])
buffer = ctypes.create_string_buffer(program)
fprog = struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(buffer))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.create_string_buffer(fprog)) == 0, ctypes.get_errno()
os.execv(sys.argv[1], sys.argv[1:])
""")


@two_cpus
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the filter is written for x86_64")
def test_a_sandbox_that_forbids_pinning_is_said_and_the_daemon_runs(tmp_path: Path) -> None:
    daemon, renders, got = affinity_daemon(tmp_path, wrapper=DENY_SETAFFINITY,
                                           cpu_affinity="auto")
    try:
        refused = daemon.wait_event("daemon.cpus_not_pinned")
        assert "Operation not permitted" in refused["error"], refused
        assert daemon.wait_event("daemon.cpus")["main"] is None
        daemon.wait_event("daemon.ready")
        assert set(map(frozenset, cpus_of_threads(daemon.proc.pid).values())) == {
            frozenset(ALLOWED)}  # fmt: skip
        assert catalogue_one_and_run_the_hook(daemon, renders, got) == " ".join(map(str, ALLOWED))
        assert daemon.stop() == 0
    finally:
        daemon.kill()
