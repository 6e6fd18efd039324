"""The processes under test run from compiled bytecode, as they do where they are deployed.

`pip install` compiles a package when it installs it, and a daemon run from an editable
install writes its bytecode on first import. Where PYTHONDONTWRITEBYTECODE is set (this
machine sets it for every process) nothing is ever written, so every start of the daemon, of
its sink process and of the CLI compiled all of exrwatchd from source again: 0.15-0.25 s of
CPU per process (measured 2026-12-04), which a 20,000-file catch-up counted as ~0.01 ms of
CPU per file in each process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def deployed_env() -> dict[str, str]:
    """The environment for a child process that reads its bytecode where Python keeps it
    (`__pycache__` beside each module), with exrwatchd's compiled there already.

    Not PYTHONPYCACHEPREFIX: a process with a prefix looks for every module's bytecode
    under it, the standard library's and site-packages' too, so a fresh prefix made each
    start compile those as well (1.5 s of CPU)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "exrwatchd")],
                   env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return env
