"""Creating and checking a node's data directory, and building its ``Replica`` from it.

Owns: the first boot of an empty data directory (``meta.json`` with member and cluster ids, a
bootstrap snapshot at index 0 holding the initial ``ConfState`` and an empty state machine, the
first WAL segment) and every later boot (recovery through ``DiskStorage.open``, which checks the
identity and refuses corrupt data). ``--initial-*`` flags are ignored once data exists.

Must not: start any task or socket; it returns the pieces the app wires together.
"""

from __future__ import annotations

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
    file_ops = NoFsyncOps() if "no_fsync" in unsafe else None
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
