"""Mount table parsing and the auto backend choice, from sample /proc/self/mounts text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exrwatchd.watch.mounts import (
    choose_backend,
    is_network_fs,
    mount_fstype,
    parse_mounts,
)

MOUNTS = r"""/dev/nvme0n1p2 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev,size=3263400k,mode=755 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime,fmask=0077,dmask=0077 0 0
/dev/sdb1 /data xfs rw,relatime,attr2,inode64 0 0
filer01:/vol/renders /mnt/renders nfs4 rw,relatime,vers=4.2,hard,proto=tcp,sec=sys,addr=10.0.0.2 0 0
/dev/sde1 /mnt/renders/show_a/comp ext4 rw,relatime 0 0
//nas02/Final\040Frames /mnt/final\040frames cifs rw,relatime,vers=3.1.1,cache=strict,uid=1000 0 0
artist@ws12:/home/artist/out /mnt/ws12 fuse.sshfs rw,nosuid,nodev,relatime,user_id=0,group_id=0 0 0
/dev/sdc1 /media/usb\134drive fuseblk rw,nosuid,nodev,relatime,user_id=0,group_id=0 0 0
/dev/sdd1 /mnt/stack ext4 rw,relatime 0 0
filer03:/stack /mnt/stack nfs rw,relatime,vers=3 0 0
"""


class TestParse:
    def test_fields_and_octal_escapes(self) -> None:
        rows = parse_mounts(MOUNTS)
        assert rows[0] == ("/dev/nvme0n1p2", "/", "ext4")
        assert ("//nas02/Final Frames", "/mnt/final frames", "cifs") in rows
        assert ("/dev/sdc1", "/media/usb\\drive", "fuseblk") in rows
        assert len(rows) == 12

    def test_bytes_that_are_not_utf8_survive(self) -> None:
        rows = parse_mounts(b"srv:/x /mnt/caf\xe9 nfs rw 0 0\n")
        assert os.fsencode(rows[0][1]) == b"/mnt/caf\xe9"

    def test_blank_and_short_lines_are_skipped(self) -> None:
        assert parse_mounts("\n\nnonsense\n/dev/a / ext4 rw 0 0\n") == [("/dev/a", "/", "ext4")]


class TestMountFstype:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/mnt/renders/show_b/sh010", ("nfs4", "/mnt/renders")),
            ("/mnt/renders", ("nfs4", "/mnt/renders")),
            ("/mnt/renders/show_a/comp/v001", ("ext4", "/mnt/renders/show_a/comp")),  # longest
            ("/mnt/renders/show_a/compositing", ("nfs4", "/mnt/renders")),  # not a path prefix
            ("/mnt/final frames/ep01", ("cifs", "/mnt/final frames")),
            ("/mnt/ws12/out", ("fuse.sshfs", "/mnt/ws12")),
            ("/data/local", ("xfs", "/data")),
            ("/database", ("ext4", "/")),
            ("/media/usb\\drive/x", ("fuseblk", "/media/usb\\drive")),
            ("/mnt/stack/a", ("nfs", "/mnt/stack")),  # stacked: the later mount hides the earlier
            ("/mnt/renders/../renders/./x", ("nfs4", "/mnt/renders")),
        ],
    )
    def test_longest_matching_mount_point(self, path: str, expected: tuple[str, str]) -> None:
        assert mount_fstype(path, MOUNTS) == expected

    def test_symlinks_are_resolved(self, tmp_path: Path) -> None:
        # A symlink into a mount is on that mount.
        target = tmp_path / "real"
        target.mkdir()
        link = tmp_path / "link"
        link.symlink_to(target)
        table = f"/dev/a / ext4 rw 0 0\nsrv:/x {target} nfs4 rw 0 0\n"
        assert mount_fstype(str(link / "shot"), table) == ("nfs4", str(target))

    def test_no_mount_contains_the_path(self) -> None:
        with pytest.raises(LookupError):
            mount_fstype("/mnt/x", "srv:/a /srv/a nfs rw 0 0\n")

    def test_reads_the_real_mount_table(self, tmp_path: Path) -> None:
        fstype, mount_point = mount_fstype(str(tmp_path))
        assert fstype and os.path.isdir(mount_point)


class TestNetworkFs:
    @pytest.mark.parametrize(
        "fstype",
        ["nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse", "fuse.sshfs", "fuse.rclone",
         "9p", "ceph", "glusterfs", "lustre", "gpfs", "afs", "NFS4"],
    )  # fmt: skip
    def test_network(self, fstype: str) -> None:
        assert is_network_fs(fstype)

    @pytest.mark.parametrize(
        "fstype", ["ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "vfat", "fuseblk"]
    )
    def test_local(self, fstype: str) -> None:
        assert not is_network_fs(fstype)


class TestChooseBackend:
    def test_auto_polls_on_nfs(self) -> None:
        backend, reason = choose_backend("auto", "/mnt/renders", MOUNTS)
        assert backend == "poll"
        assert reason == (
            "auto: /mnt/renders is on nfs4 mount /mnt/renders; "
            "inotify does not see writes from other hosts"
        )

    @pytest.mark.parametrize(
        ("path", "fstype"), [("/mnt/final frames/ep01", "cifs"), ("/mnt/ws12", "fuse.sshfs")]
    )
    def test_auto_polls_on_smb_and_fuse(self, path: str, fstype: str) -> None:
        backend, reason = choose_backend("auto", path, MOUNTS)
        assert backend == "poll" and f" on {fstype} mount " in reason

    def test_auto_uses_inotify_on_local_disks(self) -> None:
        backend, reason = choose_backend("auto", "/data/renders", MOUNTS)
        assert backend == "inotify"
        assert reason.startswith("auto: /data/renders is on xfs mount /data;")

    def test_auto_local_mount_inside_a_network_one(self) -> None:
        assert choose_backend("auto", "/mnt/renders/show_a/comp", MOUNTS)[0] == "inotify"

    def test_explicit_choices_are_kept(self) -> None:
        assert choose_backend("poll", "/data/x", MOUNTS) == (
            "poll",
            "configured: poll (/data/x is on xfs mount /data)",
        )
        backend, reason = choose_backend("inotify", "/mnt/renders/x", MOUNTS)
        assert backend == "inotify"
        assert "nfs4" in reason and "does not see writes from other hosts" in reason

    def test_auto_without_a_mount_table_polls(self) -> None:
        backend, reason = choose_backend("auto", "/mnt/x", "srv:/a /srv/a nfs rw 0 0\n")
        assert backend == "poll" and reason.startswith("auto: cannot tell")
        assert choose_backend("inotify", "/mnt/x", "") == ("inotify", "configured: inotify")

    def test_unknown_backend_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="kqueue"):
            choose_backend("kqueue", "/data", MOUNTS)


class TestStateDirMustBeLocal:
    MOUNTS = (
        "/dev/vda1 / ext4 rw 0 0\nfiler:/export/state /var/lib/exrwatchd nfs4 rw,relatime 0 0\n"
    )

    def test_network_state_dir_is_refused_with_a_clear_message(self) -> None:
        from exrwatchd.daemon.components import check_local_disk
        from exrwatchd.errors import StartupError

        with pytest.raises(
            StartupError,
            match=r"daemon.state_dir /var/lib/exrwatchd/x is on a "
            r"nfs4 mount \(/var/lib/exrwatchd\); the journal needs a local disk",
        ):
            check_local_disk("/var/lib/exrwatchd/x", self.MOUNTS)
        check_local_disk("/srv/state", self.MOUNTS)  # ext4: fine

    def test_unusable_state_dir_is_a_clear_start_error(self, tmp_path: Path) -> None:
        import subprocess
        import sys

        from harness import ROOT, write_config

        blocker = tmp_path / "state"
        blocker.write_text("a file where the state directory should be")
        cfg = write_config(tmp_path / "c.toml", blocker, [{"path": str(tmp_path)}])
        proc = subprocess.run([sys.executable, "-m", "exrwatchd", "run", "--config", str(cfg)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
        assert proc.returncode == 78
        assert f"exrwatchd: cannot start: daemon.state_dir {blocker}: File exists" in proc.stderr
        assert "Traceback" not in proc.stderr
