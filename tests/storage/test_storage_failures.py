"""Injected write and fsync failures: StorageFailed, then fail-stop, and never an fsync retry."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from raftkv.errors import StorageFailed
from raftkv.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftkv.storage.disk import DiskStorage, NodeMeta
from raftkv.storage.wal import FileOps


class FaultyOps(FileOps):
    """Fails the chosen operation with ``err`` once armed; counts every call."""

    def __init__(self, op: str, err: int, partial: bool = False) -> None:
        self.op = op
        self.err = err
        self.partial = partial
        self.armed = False
        self.calls: list[str] = []

    def _maybe_fail(self, op: str) -> None:
        self.calls.append(op)
        if self.armed and op == self.op:
            raise OSError(self.err, os.strerror(self.err))

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        if self.armed and self.op == "write" and self.partial:
            os.write(fd, bytes(data)[: len(data) // 2])
        self._maybe_fail("write")
        super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync")
        super().fsync(fd)

    def rename(self, src: str, dst: str) -> None:
        self._maybe_fail("rename")
        super().rename(src, dst)

    def fsync_dir(self, path: str) -> None:
        self._maybe_fail("fsync_dir")
        super().fsync_dir(path)

    def unlink(self, path: str) -> None:
        self._maybe_fail("unlink")
        super().unlink(path)


def ents(lo: int, hi: int) -> list[Entry]:
    return [Entry(term=1, index=i, data=b"x%d" % i) for i in range(lo, hi + 1)]


def assert_dead(disk: DiskStorage, conf: ConfState, ops: FaultyOps) -> None:
    """Every later call fails, and none of them touches the disk."""
    ops.armed = False
    before = len(ops.calls)
    with pytest.raises(StorageFailed):
        disk.save(HardState(term=1, commit=0), ents(1, 1), None, True)
    with pytest.raises(StorageFailed):
        disk.save(None, [], None, True)
    with pytest.raises(StorageFailed):
        disk.save_snapshot(Snapshot(SnapshotMeta(1, 1, conf), b"s"))
    with pytest.raises(StorageFailed):
        disk.release(1)
    assert ops.calls[before:] == []
    disk.close()


FAULTS = [(op, err) for op in ("write", "fsync") for err in (errno.ENOSPC, errno.EIO)]


@pytest.mark.parametrize(("op", "err"), FAULTS)
def test_failed_save_is_permanent(data_dir: Path, meta: NodeMeta, conf: ConfState, op: str, err: int) -> None:
    ops = FaultyOps(op, err)
    disk, _ = DiskStorage.open(data_dir, expect=meta, file_ops=ops)
    disk.save(HardState(term=1, commit=0), ents(1, 3), None, True)
    ops.armed = True
    with pytest.raises(StorageFailed) as exc:
        disk.save(HardState(term=1, commit=3), ents(4, 6), None, True)
    assert isinstance(exc.value.__cause__, OSError)
    assert exc.value.__cause__.errno == err
    # One fsync before arming, and for an fsync fault the one that failed: never a retry.
    assert ops.calls.count("fsync") == (2 if op == "fsync" else 1)
    assert_dead(disk, conf, ops)
    # What was acknowledged before the failure is still there.
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.entries[:3] == ents(1, 3)


@pytest.mark.parametrize(("op", "err"), FAULTS)
def test_failed_save_snapshot_is_permanent(
    data_dir: Path, meta: NodeMeta, conf: ConfState, op: str, err: int
) -> None:
    ops = FaultyOps(op, err)
    disk, _ = DiskStorage.open(data_dir, expect=meta, file_ops=ops)
    disk.save(HardState(term=1, commit=3), ents(1, 3), None, True)
    ops.armed = True
    with pytest.raises(StorageFailed):
        disk.save_snapshot(Snapshot(SnapshotMeta(3, 1, conf), b"state"))
    assert_dead(disk, conf, ops)


@pytest.mark.parametrize("op", ["write", "fsync", "rename", "fsync_dir"])
def test_failure_while_rolling_over_is_permanent(
    data_dir: Path, meta: NodeMeta, conf: ConfState, op: str
) -> None:
    ops = FaultyOps(op, errno.EIO)
    disk, _ = DiskStorage.open(data_dir, expect=meta, file_ops=ops, segment_bytes=128)
    disk.save(None, ents(1, 4), None, True)
    ops.armed = True
    with pytest.raises(StorageFailed):
        disk.save(None, ents(5, 8), None, True)  # does not fit: a new segment is created first
    assert_dead(disk, conf, ops)
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.entries[:4] == ents(1, 4)


def test_failed_release_is_permanent(data_dir: Path, meta: NodeMeta, conf: ConfState) -> None:
    ops = FaultyOps("unlink", errno.EIO)
    disk, _ = DiskStorage.open(data_dir, expect=meta, file_ops=ops, segment_bytes=128)
    for i in range(1, 10):
        disk.save(HardState(term=1, commit=i), ents(i, i), None, True)
    disk.save_snapshot(Snapshot(SnapshotMeta(8, 1, conf), b"state"))
    ops.armed = True
    with pytest.raises(StorageFailed):
        disk.release(9)
    assert_dead(disk, conf, ops)


def test_partial_write_then_enospc_recovers_the_prefix(
    data_dir: Path, meta: NodeMeta, conf: ConfState
) -> None:
    ops = FaultyOps("write", errno.ENOSPC, partial=True)
    disk, _ = DiskStorage.open(data_dir, expect=meta, file_ops=ops)
    disk.save(HardState(term=1, commit=2), ents(1, 3), None, True)
    ops.armed = True
    with pytest.raises(StorageFailed):
        disk.save(HardState(term=1, commit=3), ents(4, 9), None, True)
    assert_dead(disk, conf, ops)
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.entries[:3] == ents(1, 3)
    assert rec.entries == ents(1, len(rec.entries))
    assert len(rec.entries) < 9


def test_bootstrap_failure_is_storage_failed(tmp_path: Path, meta: NodeMeta, conf: ConfState) -> None:
    ops = FaultyOps("fsync", errno.EIO)
    ops.armed = True
    with pytest.raises(StorageFailed):
        DiskStorage.bootstrap(tmp_path / "n", meta, conf, b"", file_ops=ops)
    assert not DiskStorage.exists(tmp_path / "n")
