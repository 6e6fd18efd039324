"""status.json: what the running daemon last reported, for `exrwatchd status`."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

# status.json is padded with spaces (which JSON ignores) to leave this much room, so that on a
# full disk, where no new file can be written, the next status still fits over the old one.
_ROOM = 4096
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def write_status_file(state_dir: Path, status: dict[str, Any]) -> None:
    """Atomically replace <state_dir>/status.json (readers never see half a file); on a full
    disk, overwrite it in place instead, if it fits (gather_status reads again then)."""
    target = state_dir / "status.json"
    tmp = target.with_suffix(".tmp")
    text = json.dumps(status).encode()
    try:
        _create_private(tmp)
        tmp.write_bytes(text.ljust(-(-(len(text) + _ROOM) // _ROOM) * _ROOM))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno not in _FULL:
            raise
        _overwrite(target, text, exc)


def _create_private(path: Path) -> None:
    # 0600 whatever the umask (the README's promise for every state file; outside the unit
    # the umask is usually 022); fchmod for a leftover .tmp made before that promise. Writing
    # it afterwards truncates it and keeps the mode.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _overwrite(target: Path, text: bytes, cause: OSError) -> None:
    # Within its size a file's blocks are already allocated: writing them needs no space.
    with open(target, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if len(text) > size:
            raise cause
        f.write(text.ljust(size))


def read_status_file(state_dir: Path) -> dict[str, Any] | None:
    """What <state_dir>/status.json last said; None when there is none or it cannot be read.
    On a full disk it is rewritten in place (see write_status_file), so a read that catches
    it half-way is tried again."""
    for _ in range(3):
        try:
            status = json.loads((state_dir / "status.json").read_text())
        except OSError:
            return None
        except ValueError:
            time.sleep(0.05)  # the writer finishes the in-place rewrite within a moment
            continue
        return status if isinstance(status, dict) else None
    return None
