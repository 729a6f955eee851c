"""Snapshot files in ``<data-dir>/snap/`` (ARCHITECTURE.md §4.9).

Owns: the snapshot file layout, writing one durably, reading and verifying one, listing and
pruning them. A file is named ``<index:016x>-<term:016x>.snap`` and holds

    magic "RKVSNAP\\0" | u32 format | u64 index | u64 term | u32 n | ConfState (msgpack, n bytes)
    | u64 body length | u32 CRC32 | body

where the CRC (zlib) covers every header byte before it and then the body.

Must not: interpret the body (the state machine's opaque bytes), import asyncio, or fall back to
an older snapshot when the newest is bad: that is ``StorageCorrupt``. OS errors propagate;
``disk.py`` turns them into ``StorageFailed``.

Invariants: a file appears under its final name only after its bytes are fsynced (tmp → fsync →
rename → fsync of the directory), so a crash leaves the old set of snapshots or the new one plus
perhaps a tmp file, which boot deletes.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

from raftkv.errors import StorageCorrupt
from raftkv.raft.types import Snapshot, SnapshotMeta
from raftkv.raft.wire import conf_state_from_obj, conf_state_to_obj, pack, unpack
from raftkv.storage.wal import TMP_SUFFIX, FileOps

SNAP_MAGIC = b"RKVSNAP\0"
SNAP_FORMAT = 1
KEEP_SNAPSHOTS = 3

_FIXED = struct.Struct("<8sIQQI")  # magic, format, index, term, ConfState length
_BODY_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


def snapshot_name(index: int, term: int) -> str:
    return f"{index:016x}-{term:016x}.snap"


def encode_header(snapshot: Snapshot) -> bytes:
    meta = snapshot.meta
    cs = pack(conf_state_to_obj(meta.conf_state))
    head = _FIXED.pack(SNAP_MAGIC, SNAP_FORMAT, meta.index, meta.term, len(cs)) + cs
    head += _BODY_LEN.pack(len(snapshot.data))
    return head + _CRC.pack(zlib.crc32(snapshot.data, zlib.crc32(head)))


def write_snapshot(ops: FileOps, snap_dir: Path, snapshot: Snapshot) -> Path:
    """Write ``snapshot`` durably under its final name and return that path."""
    final = snap_dir / snapshot_name(snapshot.meta.index, snapshot.meta.term)
    tmp = str(final) + TMP_SUFFIX
    fd = ops.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        ops.write(fd, encode_header(snapshot))
        ops.write(fd, snapshot.data)
        ops.fsync(fd)
    finally:
        ops.close(fd)
    ops.rename(tmp, str(final))
    ops.fsync_dir(str(snap_dir))
    return final


def read_snapshot(path: Path) -> Snapshot:
    """Read and verify a snapshot file; any inconsistency raises ``StorageCorrupt``."""
    data = path.read_bytes()
    where = str(path)
    if len(data) < _FIXED.size:
        raise StorageCorrupt(where, 0, "truncated snapshot header")
    magic, fmt, index, term, cs_len = _FIXED.unpack_from(data, 0)
    if magic != SNAP_MAGIC:
        raise StorageCorrupt(where, 0, "bad snapshot magic")
    if fmt != SNAP_FORMAT:
        raise StorageCorrupt(where, 8, f"unknown snapshot format {fmt}")
    len_at = _FIXED.size + cs_len
    crc_at = len_at + _BODY_LEN.size
    body_at = crc_at + _CRC.size
    if body_at > len(data):
        raise StorageCorrupt(where, _FIXED.size, "truncated snapshot header")
    (body_len,) = _BODY_LEN.unpack_from(data, len_at)
    if body_at + body_len != len(data):
        raise StorageCorrupt(where, len_at, f"body length {body_len} does not match the file size")
    (crc,) = _CRC.unpack_from(data, crc_at)
    body = data[body_at:]
    if zlib.crc32(body, zlib.crc32(data[:crc_at])) != crc:
        raise StorageCorrupt(where, crc_at, "snapshot checksum mismatch")
    try:
        conf_state = conf_state_from_obj(unpack(data[_FIXED.size : len_at]))
    except (ValueError, TypeError) as exc:
        raise StorageCorrupt(where, _FIXED.size, f"undecodable ConfState: {exc}") from exc
    if path.name != snapshot_name(index, term):
        raise StorageCorrupt(where, 0, f"file name does not match index {index} term {term}")
    return Snapshot(meta=SnapshotMeta(index=index, term=term, conf_state=conf_state), data=body)


def list_snapshots(snap_dir: Path) -> list[tuple[int, Path]]:
    """(index, path) of every snapshot file, oldest first; any other file (but tmp) is corruption."""
    found: list[tuple[int, Path]] = []
    for p in snap_dir.iterdir():
        if p.name.endswith(TMP_SUFFIX):
            continue
        m = _NAME_RE.match(p.name)
        if m is None:
            raise StorageCorrupt(str(p), None, "unexpected file in the snapshot directory")
        found.append((int(m.group(1), 16), p))
    found.sort()
    return found


def prune_snapshots(ops: FileOps, snap_dir: Path, keep: int = KEEP_SNAPSHOTS) -> None:
    """Delete all but the ``keep`` newest snapshot files."""
    old = list_snapshots(snap_dir)[:-keep]
    for _, p in old:
        ops.unlink(str(p))
    if old:
        ops.fsync_dir(str(snap_dir))


def remove_tmp_files(ops: FileOps, directory: Path) -> None:
    """Delete files a crash left half-written; they never held acknowledged state."""
    leftovers = [p for p in directory.iterdir() if p.name.endswith(TMP_SUFFIX)]
    for p in leftovers:
        ops.unlink(str(p))
    if leftovers:
        ops.fsync_dir(str(directory))
