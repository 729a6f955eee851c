"""Creating and checking a node's data directory, and building its ``Replica`` from it.

Owns: the first boot of an empty data directory (``meta.json`` with member and cluster ids, a
bootstrap snapshot at index 0 holding the initial ``ConfState`` and an empty state machine, the
first WAL segment) and every later boot (recovery through ``DiskStorage.open``, which checks the
identity and refuses corrupt data). ``--initial-*`` flags are ignored once data exists.

Must not: start any task or socket; it returns the pieces the app wires together.
"""

from __future__ import annotations

import errno
import os
import random
from dataclasses import dataclass
from pathlib import Path

from raftkv.raft.types import ConfState
from raftkv.replica import Replica, ReplicaConfig
from raftkv.server.config import ServerConfig
from raftkv.state.machine import StateMachine
from raftkv.storage.disk import DiskStorage, FileOps, NodeMeta

REPLICA_FLAGS = {"no_noop", "commit_old_term", "no_prevote_checkquorum", "local_reads"}


class NoFsyncOps(FileOps):
    """The ``no_fsync`` canary (test harness only): data reaches the page cache, never the disk."""

    def fsync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


class LazyDiskOps(FileOps):
    """Test shim ``RAFTKV_TEST_DISK=lazy``: writes stay in this process until fsync, so a
    ``kill -9`` loses exactly the unsynced data, as a power cut would lose the page cache."""

    def __init__(self, inner: FileOps, *, fsync_flushes: bool = True) -> None:
        self._inner = inner
        # False for the no_fsync canary: "synced" data is still lost by a kill -9.
        self._fsync_flushes = fsync_flushes
        self._pending: dict[int, list[bytes]] = {}

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        self._pending.setdefault(fd, []).append(bytes(data))

    def _flush(self, fd: int) -> None:
        for chunk in self._pending.pop(fd, []):
            self._inner.write(fd, chunk)

    def fsync(self, fd: int) -> None:
        if self._fsync_flushes:
            self._flush(fd)
            self._inner.fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        self._flush(fd)
        self._inner.truncate(fd, length)

    def close(self, fd: int) -> None:
        self._pending.pop(fd, None)  # never synced: lost, as after a crash
        self._inner.close(fd)


class EnospcOps(FileOps):
    """Test shim ``RAFTKV_TEST_DISK=enospc_after:<bytes>``: the disk is full after that many bytes."""

    def __init__(self, inner: FileOps, budget: int) -> None:
        self._inner = inner
        self._budget = budget

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        if len(data) > self._budget:
            raise OSError(errno.ENOSPC, "No space left on device (test shim)")
        self._budget -= len(data)
        self._inner.write(fd, data)


def file_ops_for(unsafe: frozenset[str]) -> FileOps | None:
    """The file operations the test hooks ask for (``RAFTKV_TEST=1`` only), else None."""
    ops: FileOps | None = NoFsyncOps() if "no_fsync" in unsafe else None
    if os.environ.get("RAFTKV_TEST") != "1":
        return ops
    mode = os.environ.get("RAFTKV_TEST_DISK", "")
    if mode == "lazy":
        return LazyDiskOps(FileOps(), fsync_flushes="no_fsync" not in unsafe)
    if mode.startswith("enospc_after:"):
        return EnospcOps(ops or FileOps(), int(mode.partition(":")[2]))
    return ops


@dataclass(slots=True)
class Node:
    disk: DiskStorage
    replica: Replica
    machine: StateMachine


def open_node(config: ServerConfig) -> Node:
    """Bootstrap the data directory if it is empty, then recover; raises ``StorageCorrupt``."""
    meta = NodeMeta(name=config.name, member_id=config.member_id, cluster_id=config.cluster_id)
    path = config.data_path
    if not DiskStorage.exists(path):
        Path(path).mkdir(parents=True, exist_ok=True)
        voters = tuple(sorted(config.member_ids().values()))
        DiskStorage.bootstrap(path, meta, ConfState(voters=voters), StateMachine.empty_snapshot())
    unsafe = frozenset(config.unsafe)
    file_ops = file_ops_for(unsafe)
    disk, recovered = DiskStorage.open(path, expect=meta, file_ops=file_ops)
    machine = StateMachine(
        unsafe_no_dedup="no_dedup" in unsafe, unsafe_stale_revoke="stale_revoke" in unsafe
    )
    replica = Replica(
        ReplicaConfig(
            node_id=config.member_id,
            election_tick=config.election_ticks,
            heartbeat_tick=1,
            snapshot_count=config.snapshot_count,
            unsafe=unsafe & REPLICA_FLAGS,
        ),
        recovered.storage,
        machine,
        random.Random(random.SystemRandom().getrandbits(64)),
    )
    return Node(disk=disk, replica=replica, machine=machine)
