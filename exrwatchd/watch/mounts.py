"""Which file system a watched path is on, and so which backend can see its changes.

inotify only sees changes made through this host's kernel. On NFS, SMB, cluster and most FUSE
file systems, files written by other machines (the render farm) never produce an event, so
"auto" polls there and uses inotify only on local file systems.
"""

from __future__ import annotations

import os
import re
from typing import Literal

BackendChoice = Literal["inotify", "poll"]

MOUNTS_FILE = "/proc/self/mounts"

#: File systems whose contents other hosts change behind this kernel's back.
NETWORK_FSTYPES = frozenset(
    {
        # NFS and SMB
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "smb2",
        "ncpfs",
        # FUSE without a subtype; "fuse.<anything>" (sshfs, s3fs, rclone, glusterfs, ceph-fuse,
        # mfs, vmhgfs-fuse, ...) is matched by prefix in is_network_fs
        "fuse",
        # VM and container shares (the host writes)
        "9p",
        "virtiofs",
        "vboxsf",
        "vmhgfs",
        # distributed, parallel and cluster file systems
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "afs",
        "openafs",
        "coda",
        "orangefs",
        "pvfs2",
        "panfs",  # Panasas
        "wekafs",  # WEKA
        "cvfs",  # StorNext / Xsan
        "gfs2",
        "ocfs2",
        "davfs",
    }
)

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def is_network_fs(fstype: str) -> bool:
    """Whether files on `fstype` can change without this host's inotify seeing it.

    "fuseblk" (ntfs-3g and other FUSE drivers of a local block device) is local: every write
    goes through this host.
    """
    fstype = fstype.lower()
    return fstype in NETWORK_FSTYPES or fstype.startswith("fuse.")


def _unescape(field: bytes) -> str:
    """The kernel writes space, tab, newline and backslash in mount points as \\ooo octal."""
    return os.fsdecode(_OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def parse_mounts(mounts_text: str | bytes) -> list[tuple[str, str, str]]:
    """(device, mount point, fstype) for each line of /proc/self/mounts, in file order."""
    if isinstance(mounts_text, str):
        mounts_text = os.fsencode(mounts_text)
    out = []
    for line in mounts_text.split(b"\n"):
        fields = line.split()
        if len(fields) < 3:
            continue
        out.append(
            (_unescape(fields[0]), _unescape(fields[1]), fields[2].decode("ascii", "replace"))
        )
    return out


def _read_mounts() -> bytes:
    with open(MOUNTS_FILE, "rb") as f:
        return f.read()


def mount_fstype(path: str, mounts_text: str | bytes | None = None) -> tuple[str, str]:
    """(fstype, mount point) of the mount holding `path`.

    `path` is made absolute and its symlinks resolved first (a symlink into an NFS mount is on
    NFS). The longest mount point containing it wins; of equal ones, the last mounted (a mount
    stacked over another hides it). Raises OSError when /proc/self/mounts cannot be read and
    LookupError when no mount contains the path.
    """
    if mounts_text is None:
        mounts_text = _read_mounts()
    target = os.path.realpath(path)
    best: tuple[str, str] | None = None
    best_len = -1
    for _device, mount_point, fstype in parse_mounts(mounts_text):
        if mount_point == "/":
            inside = target.startswith("/")
        else:
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= best_len:
            best, best_len = (fstype, mount_point), len(mount_point)
    if best is None:
        raise LookupError(f"no mount in the mount table contains {target!r}")
    return best


def choose_backend(
    configured: str, path: str, mounts_text: str | bytes | None = None
) -> tuple[BackendChoice, str]:
    """("inotify" | "poll", reason) for watching `path` with `configured` "auto"/"inotify"/"poll".

    The reason is meant for the log line that says which backend each watch uses.
    """
    if configured not in ("auto", "inotify", "poll"):
        raise ValueError(f'backend must be "auto", "inotify" or "poll", got {configured!r}')
    try:
        fstype, mount_point = mount_fstype(path, mounts_text)
    except (OSError, LookupError) as exc:
        if configured == "inotify":
            return "inotify", "configured: inotify"
        if configured == "poll":
            return "poll", "configured: poll"
        return "poll", (
            f"auto: cannot tell which file system {path} is on ({exc}); "
            "polling sees changes on every file system"
        )
    network = is_network_fs(fstype)
    where = f"{path} is on {fstype} mount {mount_point}"
    if configured == "poll":
        return "poll", f"configured: poll ({where})"
    if configured == "inotify":
        if network:
            return "inotify", (
                f"configured: inotify, but {where}; inotify does not see writes from other "
                "hosts, only from this one"
            )
        return "inotify", f"configured: inotify ({where})"
    if network:
        return "poll", f"auto: {where}; inotify does not see writes from other hosts"
    return "inotify", f"auto: {where}; local file system, inotify sees every write"
