"""``DiskStorage``: one node's durable state in its data directory (ARCHITECTURE.md §4.9).

Owns: the data directory layout (``meta.json``, ``snap/``, ``wal/``), bootstrap, recovery (the
node's identity check, the newest snapshot, WAL replay, the cross-checks between them), and the
write path the Ready contract uses (``save``, ``save_snapshot``, ``release``).

Must not: interpret snapshot bytes or entry payloads, import asyncio (callers run it in a worker
thread), retry a failed write or fsync, or start from a directory it cannot fully trust.

Invariants:
- ``save`` makes a received snapshot durable before its installed mark, and appends the mark,
  the entries and the hard state with one write and at most one fsync.
- After any OS error on a write path the instance is failed for good: every later call raises
  ``StorageFailed``. An fsync error leaves the page cache in an unknown state, so retrying could
  report data durable that is not.
- ``release`` never deletes the newest segment nor any entry above the newest durable snapshot.
- Recovery either returns state that every durable record agrees with or raises
  ``StorageCorrupt`` naming the file (and offset); the only repair it makes is truncating a torn
  tail of the newest segment.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from raftkv.errors import StorageCorrupt, StorageFailed
from raftkv.raft.storage import MemoryStorage
from raftkv.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftkv.storage.snapshot import (
    list_snapshots,
    prune_snapshots,
    read_snapshot,
    remove_tmp_files,
    write_snapshot,
)
from raftkv.storage.wal import (
    CHECKSUM_KIND,
    TMP_SUFFIX,
    WAL_FORMAT,
    FileOps,
    SegmentHeader,
    SegmentWriter,
    SnapshotMark,
    append_entries,
    append_hard_state,
    append_mark,
    replay_wal,
)

__all__ = ["DiskStorage", "FileOps", "NodeMeta", "Recovered"]

META_FORMAT = 1
META_FILE = "meta.json"
WAL_DIR = "wal"
SNAP_DIR = "snap"


@dataclass(frozen=True, slots=True)
class NodeMeta:
    """The identity recorded in ``meta.json`` at bootstrap and checked at every boot."""

    name: str
    member_id: int
    cluster_id: int


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recovery found: ``entries`` follow ``snapshot``; ``storage`` holds all of it, ready
    for Raft. ``hard_state.commit`` is at least the snapshot index (a snapshot is committed)."""

    meta: NodeMeta
    hard_state: HardState
    snapshot: Snapshot
    entries: list[Entry]
    storage: MemoryStorage


@dataclass(frozen=True, slots=True)
class _Segment:
    seq: int
    first_index: int
    path: Path


def _read_meta(path: Path) -> NodeMeta:
    try:
        raw = json.loads(path.read_bytes())
        if raw["format"] != META_FORMAT:
            raise ValueError(f"unknown format {raw['format']}")
        name, member_id, cluster_id = raw["name"], raw["member_id"], raw["cluster_id"]
        if not (isinstance(name, str) and isinstance(member_id, int) and isinstance(cluster_id, int)):
            raise ValueError("fields have the wrong types")
    except FileNotFoundError as exc:
        raise StorageCorrupt(str(path), None, "missing: the data directory was never bootstrapped") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageCorrupt(str(path), None, f"unreadable: {exc}") from exc
    return NodeMeta(name=name, member_id=member_id, cluster_id=cluster_id)


def _write_file(ops: FileOps, path: Path, data: bytes) -> None:
    tmp = str(path) + TMP_SUFFIX
    fd = ops.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        ops.write(fd, data)
        ops.fsync(fd)
    finally:
        ops.close(fd)
    ops.rename(tmp, str(path))
    ops.fsync_dir(str(path.parent))


class DiskStorage:
    """The durable log, hard state and snapshots of one node. Synchronous; not thread-safe."""

    def __init__(
        self,
        data_dir: Path,
        meta: NodeMeta,
        ops: FileOps,
        segment_bytes: int,
        writer: SegmentWriter,
        segments: list[_Segment],
        last_index: int,
        snapshot_meta: SnapshotMeta,
        hard_state: HardState,
    ) -> None:
        """Use ``open``; this only assembles the state recovery established."""
        self._dir = data_dir
        self._meta = meta
        self._ops = ops
        self._segment_bytes = segment_bytes
        self._writer: SegmentWriter | None = writer
        self._segments = segments
        self._last_index = last_index
        self._snap = snapshot_meta
        self._hard_state = hard_state
        self._failure: str | None = None

    # -- boot ---------------------------------------------------------------------------------

    @staticmethod
    def exists(data_dir: str | Path) -> bool:
        """True when ``data_dir`` has been bootstrapped (it holds ``meta.json``)."""
        return (Path(data_dir) / META_FILE).exists()

    @classmethod
    def bootstrap(
        cls,
        data_dir: str | Path,
        meta: NodeMeta,
        conf_state: ConfState,
        snapshot_data: bytes,
        *,
        segment_bytes: int = 64 << 20,
        file_ops: FileOps | None = None,
    ) -> None:
        """Initialise an empty (or absent) directory: a snapshot at index 0, the first segment,
        then ``meta.json`` last, so a crash midway never leaves a directory that looks bootstrapped.

        Raises ``FileExistsError`` if the directory is not empty and ``StorageFailed`` on an OS
        error.
        """
        del segment_bytes  # the first segment holds only its header; the size matters from open on
        ops = file_ops or FileOps()
        root = Path(data_dir)
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"{root} is not empty")
        try:
            if not root.exists():
                ops.mkdir(str(root))
                ops.fsync_dir(str(root.parent))
            ops.mkdir(str(root / SNAP_DIR))
            ops.mkdir(str(root / WAL_DIR))
            ops.fsync_dir(str(root))
            write_snapshot(ops, root / SNAP_DIR, Snapshot(SnapshotMeta(0, 0, conf_state), snapshot_data))
            header = SegmentHeader(WAL_FORMAT, CHECKSUM_KIND, meta.member_id, meta.cluster_id, 0, 1)
            writer = SegmentWriter.create(ops, root / WAL_DIR, header, HardState())
            ops.close(writer.fd)
            body = {
                "format": META_FORMAT,
                "name": meta.name,
                "member_id": meta.member_id,
                "cluster_id": meta.cluster_id,
            }
            _write_file(ops, root / META_FILE, json.dumps(body, indent=2).encode() + b"\n")
        except OSError as exc:
            raise StorageFailed(f"bootstrap of {root} failed: {exc}") from exc

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        *,
        expect: NodeMeta | None = None,
        segment_bytes: int = 64 << 20,
        file_ops: FileOps | None = None,
    ) -> tuple[DiskStorage, Recovered]:
        """Recover the node's state and open the log for appending.

        Raises ``StorageCorrupt`` (naming file and offset) if anything cannot be trusted, including
        a ``meta.json`` that differs from ``expect``; ``StorageFailed`` on an OS error.
        """
        ops = file_ops or FileOps()
        root = Path(data_dir)
        meta = _read_meta(root / META_FILE)
        if expect is not None and meta != expect:
            raise StorageCorrupt(
                str(root / META_FILE), None, f"this directory belongs to {meta}, not {expect}"
            )
        try:
            return cls._recover(root, meta, ops, segment_bytes)
        except OSError as exc:
            raise StorageFailed(f"recovery of {root} failed: {exc}") from exc

    @classmethod
    def _recover(
        cls, root: Path, meta: NodeMeta, ops: FileOps, segment_bytes: int
    ) -> tuple[DiskStorage, Recovered]:
        snap_dir, wal_dir = root / SNAP_DIR, root / WAL_DIR
        remove_tmp_files(ops, snap_dir)
        remove_tmp_files(ops, wal_dir)
        snaps = list_snapshots(snap_dir)
        if not snaps:
            raise StorageCorrupt(str(snap_dir), None, "no snapshot file")
        snapshot = read_snapshot(snaps[-1][1])
        s_index = snapshot.meta.index

        state = replay_wal(wal_dir, ops, meta.member_id, meta.cluster_id)
        replay = state.replay
        if replay.max_mark is not None and replay.max_mark[0] > s_index:
            index, path, offset = replay.max_mark
            raise StorageCorrupt(str(path), offset, f"snapshot {index} is logged but its file is missing")
        log_first = state.segments[0][1]
        if log_first > s_index + 1:
            raise StorageCorrupt(
                str(state.segments[0][2]), None, f"log starts at {log_first}, snapshot is at {s_index}"
            )

        start, ents = replay.start, replay.entries
        if start is not None and start > s_index + 1:
            raise StorageCorrupt(str(wal_dir), None, f"entries {s_index + 1}..{start - 1} are missing")
        # A snapshot from the leader whose installed mark never reached the log: like etcd-io/raft,
        # keep the log only if it contains the snapshot's (index, term), else it is superseded.
        consistent = (
            s_index == 0
            or s_index in replay.marks
            or start == s_index + 1
            or (
                start is not None
                and start <= s_index < start + len(ents)
                and ents[s_index - start].term == snapshot.meta.term
            )
        )
        entries = [e for e in ents if e.index > s_index] if consistent else []
        last_index = entries[-1].index if entries else s_index

        hard_state = replay.hard_state or HardState()
        if hard_state.commit > last_index:
            where: tuple[Path, int | None] = replay.hard_state_at or (wal_dir, None)
            raise StorageCorrupt(
                str(where[0]),
                where[1],
                f"hard state commits {hard_state.commit} but the log ends at {last_index}",
            )
        # A snapshot only holds committed state; Raft rejects a commit below its snapshot.
        hard_state = replace(hard_state, commit=max(hard_state.commit, s_index))

        prune_snapshots(ops, snap_dir)
        writer = SegmentWriter.reopen(ops, state.newest)
        segments = [_Segment(seq, first, path) for seq, first, path in state.segments]
        # The writer's last index must be what replay computes at the end of the newest segment,
        # since a segment created next is named after it; the mark below moves both to s_index.
        replayed_last = last_index if consistent or replay.last is None else replay.last
        disk = cls(root, meta, ops, segment_bytes, writer, segments, replayed_last, snapshot.meta, hard_state)
        if not consistent:
            buf = bytearray()
            append_mark(buf, SnapshotMark(s_index, snapshot.meta.term, installed=True))
            disk._append(buf, sync=True)
            disk._last_index = s_index

        storage = MemoryStorage()
        storage.apply_snapshot(snapshot)
        storage.append(entries)
        storage.set_hard_state(hard_state)
        return disk, Recovered(meta, hard_state, snapshot, entries, storage)

    # -- write path -----------------------------------------------------------------------------

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        must_sync: bool,
    ) -> None:
        """Persist one Ready: a received ``snapshot`` (file, then installed mark), then ``entries``
        and ``hard_state``, in one write and (if ``must_sync`` or a snapshot) one fsync. With
        ``must_sync``, everything saved so far is durable when this returns.

        A snapshot not newer than the current one is ignored. Raises ``ValueError`` for entries
        that would leave a gap or a commit beyond the log (nothing is written then), and
        ``StorageFailed`` on an OS error, after which the instance is unusable.
        """
        self._live()
        install = snapshot is not None and snapshot.meta.index > self._snap.index
        last = snapshot.meta.index if install and snapshot is not None else self._last_index
        if entries:
            if not 1 <= entries[0].index <= last + 1:
                raise ValueError(f"entry {entries[0].index} would leave a gap after {last}")
            for prev, e in itertools.pairwise(entries):
                if e.index != prev.index + 1:
                    raise ValueError(f"entries are not contiguous at {prev.index}")
            last = entries[-1].index
        if hard_state is not None and hard_state.commit > max(last, self._snap.index):
            raise ValueError(f"commit {hard_state.commit} is beyond the last index {last}")
        try:
            buf = bytearray()
            if install and snapshot is not None:
                write_snapshot(self._ops, self._dir / SNAP_DIR, snapshot)
                self._snap = snapshot.meta
                append_mark(buf, SnapshotMark(snapshot.meta.index, snapshot.meta.term, installed=True))
            append_entries(buf, entries)
            if hard_state is not None:
                append_hard_state(buf, hard_state)
            if buf:
                self._append(buf, sync=must_sync or install)
            elif must_sync and self._writer is not None:
                self._writer.sync(self._ops)
            self._last_index = last
            if hard_state is not None:
                self._hard_state = hard_state
            if install:
                prune_snapshots(self._ops, self._dir / SNAP_DIR)
        except BaseException as exc:
            raise self._fail(exc) from exc

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Persist a snapshot this node took of its applied state: the file durably, then a mark.

        Ignored if not newer than the current snapshot. Raises ``ValueError`` if it is beyond the
        log, ``StorageFailed`` on an OS error.
        """
        self._live()
        if snapshot.meta.index <= self._snap.index:
            return
        if snapshot.meta.index > self._last_index:
            raise ValueError(f"snapshot {snapshot.meta.index} is beyond the last index {self._last_index}")
        try:
            write_snapshot(self._ops, self._dir / SNAP_DIR, snapshot)
            self._snap = snapshot.meta
            buf = bytearray()
            append_mark(buf, SnapshotMark(snapshot.meta.index, snapshot.meta.term, installed=False))
            self._append(buf, sync=True)
            prune_snapshots(self._ops, self._dir / SNAP_DIR)
        except BaseException as exc:
            raise self._fail(exc) from exc

    def release(self, index: int) -> None:
        """Delete the oldest segments whose entries are all below ``index``.

        ``index`` is capped at the newest snapshot's index + 1, so no entry the snapshot does not
        cover is ever deleted; the newest segment is always kept.
        """
        self._live()
        index = min(index, self._snap.index + 1)
        doomed: list[_Segment] = []
        while len(self._segments) - len(doomed) > 1 and self._segments[len(doomed) + 1].first_index <= index:
            doomed.append(self._segments[len(doomed)])
        if not doomed:
            return
        try:
            # Oldest first, so a crash midway leaves a contiguous run of segments.
            for seg in doomed:
                self._ops.unlink(str(seg.path))
                self._segments.pop(0)
            self._ops.fsync_dir(str(self._dir / WAL_DIR))
        except BaseException as exc:
            raise self._fail(exc) from exc

    def close(self) -> None:
        """Close the log; later calls raise ``StorageFailed``. Idempotent; never raises."""
        writer, self._writer = self._writer, None
        if self._failure is None:
            self._failure = "closed"
        if writer is not None:
            # Nothing unsynced may be relied on after close, so a close error loses nothing.
            with contextlib.suppress(OSError):
                self._ops.close(writer.fd)

    # -- internals ------------------------------------------------------------------------------

    def _live(self) -> SegmentWriter:
        if self._failure is not None or self._writer is None:
            raise StorageFailed(f"storage in {self._dir} is unusable: {self._failure}")
        return self._writer

    def _fail(self, exc: BaseException) -> StorageFailed:
        self._failure = f"{type(exc).__name__}: {exc}"
        return (
            exc if isinstance(exc, StorageFailed) else StorageFailed(f"storage in {self._dir} failed: {exc}")
        )

    def _append(self, buf: bytearray, sync: bool) -> None:
        writer = self._live()
        if writer.has_records and writer.size + len(buf) > self._segment_bytes:
            writer = self._roll_over(writer)
        writer.write(self._ops, buf, sync)

    def _roll_over(self, old: SegmentWriter) -> SegmentWriter:
        # Only the newest segment may hold a torn write, so the old one is made durable first.
        old.sync(self._ops)
        self._ops.close(old.fd)
        self._writer = None
        header = SegmentHeader(
            WAL_FORMAT,
            CHECKSUM_KIND,
            self._meta.member_id,
            self._meta.cluster_id,
            old.seq + 1,
            self._last_index + 1,
        )
        new = SegmentWriter.create(self._ops, self._dir / WAL_DIR, header, self._hard_state)
        self._writer = new
        self._segments.append(_Segment(new.seq, new.first_index, new.path))
        return new
