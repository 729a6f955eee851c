"""The segmented write-ahead log of one node (ARCHITECTURE.md §4.9).

Owns: the record framing, the segment files in ``<data-dir>/wal/``, appending to the newest
segment, rolling over to a new one, and replaying all segments into the log state they describe.
Also owns ``FileOps``, the thin seam every storage write goes through so tests can inject
``OSError`` (ENOSPC, EIO) on write and fsync.

Must not: interpret entry payloads or snapshot bytes, import asyncio, retry an fsync, or skip a
bad record silently. OS errors propagate unchanged; ``disk.py`` turns them into ``StorageFailed``.

Invariants:
- A record is ``u32 length | u32 CRC32 | u8 type | msgpack body`` padded with zeros to a multiple
  of 8 bytes, so every record starts at an 8-byte-aligned offset. The CRC (zlib) covers the
  length, the type and the body. A record counts as complete only with its padding.
- A segment ``<seq:016x>-<first_index:016x>.wal`` starts with a header record naming the format,
  the checksum kind, the member and cluster ids, its seq and first index; it appears under its
  final name only once the header (and the latest hard state) are fsynced, so a header is never
  torn. ``first_index`` is the writer's last index + 1 when the segment was created, so replay can
  check that no segment is missing.
- Only the newest segment may end in a torn write: an incomplete or CRC-failing record with no
  valid record at any later aligned offset. It is truncated and logged. Every other bad record is
  ``StorageCorrupt`` naming the file and offset.
- Older segments are fsynced before a new one is created, so a torn write can only ever be in the
  newest segment.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from raftkv.errors import StorageCorrupt
from raftkv.raft.types import Entry, HardState
from raftkv.raft.wire import (
    entry_from_obj,
    entry_to_obj,
    hard_state_from_obj,
    hard_state_to_obj,
    pack,
    unpack,
)

log = logging.getLogger("raftkv.storage")

WAL_FORMAT = 1
CHECKSUM_KIND = "crc32"
TMP_SUFFIX = ".tmp"

_HEAD = struct.Struct("<IIB")  # length, crc, type
_CRC_PREFIX = struct.Struct("<IB")  # what the CRC covers before the body: length, type
_ZEROS = bytes(8)
_SEGMENT_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


class RecordType(enum.IntEnum):
    HEADER = 1
    ENTRY = 2
    HARD_STATE = 3
    SNAPSHOT_MARK = 4


_KNOWN_TYPES = frozenset(int(t) for t in RecordType)


class FileOps:
    """Every write-side file operation of the storage; subclass it to inject failures in tests."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``; a short write continues where it stopped."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def fsync(self, fd: int) -> None:
        # fdatasync still flushes a changed file size, which is all the metadata replay needs.
        if hasattr(os, "fdatasync"):
            os.fdatasync(fd)
        else:
            os.fsync(fd)

    def truncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    format: int
    checksum: str
    member_id: int
    cluster_id: int
    seq: int
    first_index: int


@dataclass(frozen=True, slots=True)
class SnapshotMark:
    """A snapshot at (index, term) is durable; ``installed`` if it came from the leader."""

    index: int
    term: int
    installed: bool


# ---------------------------------------------------------------------------------------------
# Encoding


def append_record(buf: bytearray, rtype: RecordType, body: bytes) -> None:
    n = len(body)
    crc = zlib.crc32(body, zlib.crc32(_CRC_PREFIX.pack(n, rtype)))
    buf += _HEAD.pack(n, crc, rtype)
    buf += body
    pad = -(_HEAD.size + n) % 8
    if pad:
        buf += _ZEROS[:pad]


def append_entries(buf: bytearray, entries: Sequence[Entry]) -> None:
    for e in entries:
        append_record(buf, RecordType.ENTRY, pack(entry_to_obj(e)))


def append_hard_state(buf: bytearray, hs: HardState) -> None:
    append_record(buf, RecordType.HARD_STATE, pack(hard_state_to_obj(hs)))


def append_mark(buf: bytearray, mark: SnapshotMark) -> None:
    append_record(buf, RecordType.SNAPSHOT_MARK, pack([mark.index, mark.term, mark.installed]))


def append_header(buf: bytearray, h: SegmentHeader) -> None:
    body = pack([h.format, h.checksum, h.member_id, h.cluster_id, h.seq, h.first_index])
    append_record(buf, RecordType.HEADER, body)


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}.wal"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    m = _SEGMENT_RE.match(name)
    if m is None:
        return None
    return int(m.group(1), 16), int(m.group(2), 16)


# ---------------------------------------------------------------------------------------------
# Writing


@dataclass(slots=True)
class SegmentWriter:
    """The open newest segment. Mutable by design: it tracks the file's size and sync state."""

    path: Path
    seq: int
    first_index: int
    fd: int
    size: int
    base_size: int  # the size before the first append; rolling over a segment this small is futile
    dirty: bool = False

    @property
    def has_records(self) -> bool:
        return self.size > self.base_size

    @classmethod
    def create(
        cls, ops: FileOps, wal_dir: Path, header: SegmentHeader, hard_state: HardState
    ) -> SegmentWriter:
        """Create a segment durably: tmp file, header and hard state, fsync, rename, fsync dir.

        Carrying the latest hard state keeps it in the log when older segments are released.
        """
        final = wal_dir / segment_name(header.seq, header.first_index)
        tmp = str(final) + TMP_SUFFIX
        buf = bytearray()
        append_header(buf, header)
        append_hard_state(buf, hard_state)
        fd = ops.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        try:
            ops.write(fd, buf)
            ops.fsync(fd)
            ops.rename(tmp, str(final))
            ops.fsync_dir(str(wal_dir))
        except BaseException:
            ops.close(fd)
            raise
        return cls(final, header.seq, header.first_index, fd, len(buf), len(buf))

    @classmethod
    def reopen(cls, ops: FileOps, scan: SegmentScan) -> SegmentWriter:
        fd = ops.open(str(scan.path), os.O_WRONLY | os.O_APPEND)
        return cls(scan.path, scan.seq, scan.first_index, fd, scan.valid_size, scan.header_size)

    def write(self, ops: FileOps, buf: bytearray, sync: bool) -> None:
        ops.write(self.fd, buf)
        self.size += len(buf)
        self.dirty = True
        if sync:
            self.sync(ops)

    def sync(self, ops: FileOps) -> None:
        if self.dirty:
            ops.fsync(self.fd)
            self.dirty = False


# ---------------------------------------------------------------------------------------------
# Reading


def _record_at(data: bytes, off: int) -> tuple[int, bytes, int] | None:
    """(type, body, next offset) of the complete, checksummed record at ``off``, else None."""
    size = len(data)
    if off + _HEAD.size > size:
        return None
    n, crc, rtype = _HEAD.unpack_from(data, off)
    end = off + _HEAD.size + n
    padded_end = end + (-(end - off) % 8)
    if padded_end > size:
        return None
    body = data[off + _HEAD.size : end]
    if zlib.crc32(body, zlib.crc32(_CRC_PREFIX.pack(n, rtype))) != crc:
        return None
    return rtype, body, padded_end


def _valid_record_after(data: bytes, off: int) -> int | None:
    """The first aligned offset after ``off`` holding a valid record of a known type."""
    for probe in range(off + 8, len(data) - _HEAD.size + 1, 8):
        rec = _record_at(data, probe)
        if rec is not None and rec[0] in _KNOWN_TYPES:
            return probe
    return None


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    type: RecordType
    body: bytes


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """The records of one segment; ``valid_size`` < the file size when a torn tail was found."""

    path: Path
    seq: int
    first_index: int
    records: list[Record]
    valid_size: int
    file_size: int
    header_size: int


def scan_segment(path: Path, seq: int, first_index: int, newest: bool) -> SegmentScan:
    """Read and checksum every record of a segment; a torn tail is allowed only if ``newest``."""
    data = path.read_bytes()
    records: list[Record] = []
    off = 0
    while off < len(data):
        rec = _record_at(data, off)
        if rec is None:
            after = _valid_record_after(data, off)
            if not newest or off == 0 or after is not None:
                why = "incomplete record" if off + _HEAD.size > len(data) else "bad or incomplete record"
                if after is not None:
                    why += f" followed by a valid record at {after}"
                elif not newest:
                    why += " in a segment that is not the newest"
                else:
                    why += " in the segment header"
                raise StorageCorrupt(str(path), off, why)
            break
        rtype, body, nxt = rec
        if rtype not in _KNOWN_TYPES:
            raise StorageCorrupt(str(path), off, f"unknown record type {rtype}")
        records.append(Record(off, RecordType(rtype), body))
        off = nxt
    if not records or records[0].type is not RecordType.HEADER:
        raise StorageCorrupt(str(path), 0, "segment does not start with a header")
    header_size = records[1].offset if len(records) > 1 else off
    return SegmentScan(path, seq, first_index, records, off, len(data), header_size)


def _decode(path: Path, rec: Record) -> Entry | HardState | SnapshotMark | SegmentHeader:
    try:
        obj = unpack(rec.body)
        if rec.type is RecordType.ENTRY:
            return entry_from_obj(obj)
        if rec.type is RecordType.HARD_STATE:
            return hard_state_from_obj(obj)
        if rec.type is RecordType.SNAPSHOT_MARK:
            index, term, installed = obj
            if not isinstance(installed, bool):
                raise ValueError("installed flag is not a bool")
            return SnapshotMark(int(index), int(term), installed)
        fmt, checksum, member_id, cluster_id, seq, first_index = obj
        return SegmentHeader(fmt, checksum, member_id, cluster_id, seq, first_index)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise StorageCorrupt(str(path), rec.offset, f"undecodable {rec.type.name} record: {exc}") from exc


@dataclass(slots=True)
class LogReplay:
    """Accumulates records in log order into the log they describe (mutable while replaying).

    ``entries`` are contiguous from ``start``; an entry at index i discards everything at ≥ i; an
    installed snapshot mark at M discards everything and makes M + 1 the next expected index.
    """

    start: int | None = None
    entries: list[Entry] = field(default_factory=list)
    hard_state: HardState | None = None
    hard_state_at: tuple[Path, int] | None = None
    marks: set[int] = field(default_factory=set)
    max_mark: tuple[int, Path, int] | None = None

    @property
    def last(self) -> int | None:
        if self.start is None:
            return None
        return self.start + len(self.entries) - 1

    def feed(self, scan: SegmentScan, member_id: int, cluster_id: int) -> None:
        header = _decode(scan.path, scan.records[0])
        expected = SegmentHeader(WAL_FORMAT, CHECKSUM_KIND, member_id, cluster_id, scan.seq, scan.first_index)
        if header != expected:
            raise StorageCorrupt(str(scan.path), 0, f"segment header {header} does not match {expected}")
        for rec in scan.records[1:]:
            value = _decode(scan.path, rec)
            if isinstance(value, Entry):
                self._entry(scan.path, rec.offset, value)
            elif isinstance(value, HardState):
                self.hard_state = value
                self.hard_state_at = (scan.path, rec.offset)
            elif isinstance(value, SnapshotMark):
                self._mark(scan.path, rec.offset, value)
            else:
                raise StorageCorrupt(str(scan.path), rec.offset, "segment header in the middle of a segment")

    def _entry(self, path: Path, offset: int, e: Entry) -> None:
        if e.index < 1:
            raise StorageCorrupt(str(path), offset, f"entry index {e.index}")
        if self.start is None or e.index < self.start:
            self.start = e.index
            self.entries = [e]
            return
        pos = e.index - self.start
        if pos > len(self.entries):
            raise StorageCorrupt(str(path), offset, f"entry {e.index} leaves a gap after {self.last}")
        del self.entries[pos:]
        self.entries.append(e)

    def _mark(self, path: Path, offset: int, mark: SnapshotMark) -> None:
        self.marks.add(mark.index)
        if self.max_mark is None or mark.index > self.max_mark[0]:
            self.max_mark = (mark.index, path, offset)
        if mark.installed:
            self.start = mark.index + 1
            self.entries = []


@dataclass(frozen=True, slots=True)
class WalState:
    replay: LogReplay
    segments: list[tuple[int, int, Path]]  # (seq, first_index, path), oldest first
    newest: SegmentScan


def list_segments(wal_dir: Path) -> list[tuple[int, int, Path]]:
    """Segments sorted by seq; anything else in the directory (but tmp files) is corruption."""
    found: list[tuple[int, int, Path]] = []
    for p in wal_dir.iterdir():
        if p.name.endswith(TMP_SUFFIX):
            continue
        parsed = parse_segment_name(p.name)
        if parsed is None:
            raise StorageCorrupt(str(p), None, "unexpected file in the WAL directory")
        found.append((parsed[0], parsed[1], p))
    found.sort()
    return found


def replay_wal(wal_dir: Path, ops: FileOps, member_id: int, cluster_id: int) -> WalState:
    """Scan, check and replay every segment; truncate a torn tail of the newest one (and log it)."""
    segments = list_segments(wal_dir)
    if not segments:
        raise StorageCorrupt(str(wal_dir), None, "no WAL segment")
    replay = LogReplay()
    scan: SegmentScan | None = None
    for i, (seq, first_index, path) in enumerate(segments):
        if i > 0 and seq != segments[i - 1][0] + 1:
            raise StorageCorrupt(str(path), None, f"segment seq {seq - 1:016x} is missing")
        last = replay.last
        if last is not None and first_index != last + 1:
            raise StorageCorrupt(
                str(path), None, f"segment starts at index {first_index} but the log ends at {last}"
            )
        scan = scan_segment(path, seq, first_index, newest=i == len(segments) - 1)
        replay.feed(scan, member_id, cluster_id)
    assert scan is not None
    if scan.valid_size < scan.file_size:
        log.warning(
            "torn write in %s at offset %d: truncating %d bytes",
            scan.path,
            scan.valid_size,
            scan.file_size - scan.valid_size,
        )
        fd = ops.open(str(scan.path), os.O_WRONLY)
        try:
            ops.truncate(fd, scan.valid_size)
            ops.fsync(fd)
        finally:
            ops.close(fd)
    return WalState(replay, segments, scan)
