"""Crash and corruption at the byte level: torn tails are truncated, everything else is refused.

Record boundaries are found by reading the length fields directly, independently of the code
under test; each trial runs on a fresh copy of a prepared data directory.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftkv.errors import StorageCorrupt
from raftkv.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftkv.storage.disk import DiskStorage, NodeMeta

ENTRY = 2
SEGMENT_BYTES = 700


@dataclass(frozen=True)
class Rec:
    start: int
    end: int  # padded end
    covered_end: int  # end of the bytes the CRC covers
    type: int


def records(data: bytes) -> list[Rec]:
    out = []
    off = 0
    while off < len(data):
        length = int.from_bytes(data[off : off + 4], "little")
        covered = off + 9 + length
        out.append(Rec(off, covered + (-covered % 8), covered, data[off + 8]))
        off = out[-1].end
    return out


def entry(i: int) -> Entry:
    return Entry(term=1 + i // 10, index=i, data=b"payload-%d-" % i + bytes(range(i % 40)))


@dataclass(frozen=True)
class Prepared:
    """A data directory with several segments, written one entry per save."""

    root: Path
    meta: NodeMeta
    segments: list[Path]
    entries_before_newest: int  # entries wholly in older segments
    total: int


@pytest.fixture
def prepared(data_dir: Path, meta: NodeMeta) -> Prepared:
    disk, _ = DiskStorage.open(data_dir, expect=meta, segment_bytes=SEGMENT_BYTES)
    total = 0
    while True:
        total += 1
        disk.save(None, [entry(total)], None, True)
        segments = sorted((data_dir / "wal").iterdir())
        in_newest = sum(r.type == ENTRY for r in records(segments[-1].read_bytes()))
        if len(segments) >= 3 and in_newest >= 6:
            break
    disk.close()
    return Prepared(data_dir, meta, segments, total - in_newest, total)


@pytest.fixture
def trial_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "trial"


def fresh_copy(p: Prepared, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(p.root, dst)
    return dst


def in_copy(p: Prepared, copy: Path, original: Path) -> Path:
    return copy / original.relative_to(p.root)


def expect_prefix(p: Prepared, copy: Path, n_entries: int, size: int) -> None:
    disk, rec = DiskStorage.open(copy, expect=p.meta, segment_bytes=SEGMENT_BYTES)
    disk.close()
    assert rec.entries == [entry(i) for i in range(1, n_entries + 1)]
    assert in_copy(p, copy, p.segments[-1]).stat().st_size == size


def expect_corrupt(p: Prepared, copy: Path, original: Path, offset: int | None) -> None:
    with pytest.raises(StorageCorrupt) as err:
        DiskStorage.open(copy, expect=p.meta, segment_bytes=SEGMENT_BYTES)
    assert err.value.path == str(in_copy(p, copy, original))
    assert err.value.offset == offset


def test_cut_at_every_offset_of_the_last_record(prepared: Prepared, trial_dir: Path) -> None:
    newest = prepared.segments[-1]
    data = newest.read_bytes()
    last = records(data)[-1]
    assert last.type == ENTRY
    for cut in range(last.start, last.end):
        copy = fresh_copy(prepared, trial_dir)
        in_copy(prepared, copy, newest).write_bytes(data[:cut])
        expect_prefix(prepared, copy, prepared.total - 1, last.start)


def test_cut_at_sampled_offsets_of_the_newest_segment(prepared: Prepared, trial_dir: Path) -> None:
    newest = prepared.segments[-1]
    data = newest.read_bytes()
    recs = records(data)
    header = recs[0]
    for cut in range(0, len(data), 5):
        copy = fresh_copy(prepared, trial_dir)
        in_copy(prepared, copy, newest).write_bytes(data[:cut])
        if cut < header.end:
            expect_corrupt(prepared, copy, newest, 0)
            continue
        complete = [r for r in recs if r.end <= cut]
        n = prepared.entries_before_newest + sum(r.type == ENTRY for r in complete)
        expect_prefix(prepared, copy, n, complete[-1].end)


def test_cut_in_an_older_segment_is_corruption(prepared: Prepared, trial_dir: Path) -> None:
    older = prepared.segments[-2]
    data = older.read_bytes()
    recs = records(data)
    for r in recs[1:]:
        for cut in (r.start + 1, r.start + 9, r.end - 1):
            copy = fresh_copy(prepared, trial_dir)
            in_copy(prepared, copy, older).write_bytes(data[:cut])
            expect_corrupt(prepared, copy, older, r.start)


def test_torn_tail_is_logged_with_offset_and_length(
    prepared: Prepared, trial_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    newest = prepared.segments[-1]
    data = newest.read_bytes()
    last = records(data)[-1]
    copy = fresh_copy(prepared, trial_dir)
    in_copy(prepared, copy, newest).write_bytes(data[: last.start + 5])
    with caplog.at_level(logging.WARNING, logger="raftkv.storage"):
        expect_prefix(prepared, copy, prepared.total - 1, last.start)
    assert any(f"offset {last.start}" in m and "5 bytes" in m for m in caplog.messages)


def test_zeroed_tail_is_torn(prepared: Prepared, trial_dir: Path) -> None:
    # A file system may extend a file with zeros before the data arrives.
    newest = prepared.segments[-1]
    data = newest.read_bytes()
    copy = fresh_copy(prepared, trial_dir)
    in_copy(prepared, copy, newest).write_bytes(data + bytes(64))
    expect_prefix(prepared, copy, prepared.total, len(data))


def flip(data: bytes, at: int, bit: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]


def test_bit_flip_in_the_last_record_is_a_torn_write(prepared: Prepared, trial_dir: Path) -> None:
    newest = prepared.segments[-1]
    data = newest.read_bytes()
    last = records(data)[-1]
    for at in range(last.start, last.covered_end):
        copy = fresh_copy(prepared, trial_dir)
        in_copy(prepared, copy, newest).write_bytes(flip(data, at, at % 8))
        expect_prefix(prepared, copy, prepared.total - 1, last.start)


def test_bit_flip_mid_segment_is_corruption(prepared: Prepared, trial_dir: Path) -> None:
    newest = prepared.segments[-1]
    data = newest.read_bytes()
    recs = records(data)
    assert len(recs) >= 4
    for r in recs[:-1]:
        for at in (r.start, r.start + 4, r.start + 8, r.covered_end - 1):
            copy = fresh_copy(prepared, trial_dir)
            in_copy(prepared, copy, newest).write_bytes(flip(data, at, 3))
            expect_corrupt(prepared, copy, newest, r.start)


def test_bit_flip_in_an_older_segment_is_corruption(prepared: Prepared, trial_dir: Path) -> None:
    for older in prepared.segments[:-1]:
        data = older.read_bytes()
        for r in records(data):
            copy = fresh_copy(prepared, trial_dir)
            in_copy(prepared, copy, older).write_bytes(flip(data, r.covered_end - 1, 6))
            expect_corrupt(prepared, copy, older, r.start)


def test_bit_flip_in_the_snapshot_file_is_corruption(
    data_dir: Path, meta: NodeMeta, conf: ConfState, trial_dir: Path
) -> None:
    disk, _ = DiskStorage.open(data_dir, expect=meta)
    disk.save(HardState(term=1, commit=5), [entry(i) for i in range(1, 8)], None, True)
    disk.save_snapshot(Snapshot(SnapshotMeta(5, 1, conf), b"the state machine" * 20))
    disk.close()
    snap_file = data_dir / "snap" / "0000000000000005-0000000000000001.snap"
    data = snap_file.read_bytes()
    prep = Prepared(data_dir, meta, [], 0, 0)
    offsets = [*range(0, 80), *range(80, len(data), 17), len(data) - 1]
    for at in offsets:
        copy = fresh_copy(prep, trial_dir)
        (copy / "snap" / snap_file.name).write_bytes(flip(data, at, at % 8))
        with pytest.raises(StorageCorrupt) as err:
            DiskStorage.open(copy, expect=meta)
        assert err.value.path == str(copy / "snap" / snap_file.name)
        assert err.value.offset is not None
    copy = fresh_copy(prep, trial_dir)
    (copy / "snap" / snap_file.name).write_bytes(data[:-1])
    with pytest.raises(StorageCorrupt):
        DiskStorage.open(copy, expect=meta)
