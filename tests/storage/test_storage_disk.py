"""DiskStorage behaviour: round trips, conflicts, snapshots, rollover, release and boot checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from raftkv.errors import StorageCorrupt, StorageFailed
from raftkv.raft.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta
from raftkv.storage.disk import DiskStorage, NodeMeta
from raftkv.storage.snapshot import write_snapshot
from raftkv.storage.wal import FileOps


def ents(term: int, lo: int, hi: int, tag: bytes = b"v") -> list[Entry]:
    """Entries lo..hi (inclusive) of ``term``, each with a payload naming it."""
    return [Entry(term=term, index=i, data=tag + str(i).encode()) for i in range(lo, hi + 1)]


def snap(index: int, term: int, conf: ConfState, data: bytes = b"") -> Snapshot:
    return Snapshot(SnapshotMeta(index=index, term=term, conf_state=conf), data or b"state@%d" % index)


def reopen(d: Path, meta: NodeMeta, segment_bytes: int = 64 << 20) -> tuple[DiskStorage, list[Entry]]:
    disk, rec = DiskStorage.open(d, expect=meta, segment_bytes=segment_bytes)
    return disk, rec.entries


def test_bootstrap_then_open(data_dir: Path, meta: NodeMeta, conf: ConfState) -> None:
    assert DiskStorage.exists(data_dir)
    disk, rec = DiskStorage.open(data_dir, expect=meta)
    disk.close()
    assert rec.meta == meta
    assert rec.snapshot == Snapshot(SnapshotMeta(0, 0, conf), b"initial state")
    assert rec.entries == []
    assert rec.hard_state == HardState()
    assert rec.storage.initial_state() == (HardState(), conf)
    assert (rec.storage.first_index(), rec.storage.last_index()) == (1, 0)


def test_bootstrap_refuses_a_non_empty_directory(tmp_path: Path, meta: NodeMeta, conf: ConfState) -> None:
    (tmp_path / "stray").write_text("x")
    with pytest.raises(FileExistsError):
        DiskStorage.bootstrap(tmp_path, meta, conf, b"")
    assert not DiskStorage.exists(tmp_path)


def test_open_without_bootstrap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageCorrupt) as err:
        DiskStorage.open(tmp_path)
    assert err.value.path.endswith("meta.json")


def test_round_trip(data_dir: Path, meta: NodeMeta, conf: ConfState) -> None:
    disk, _ = reopen(data_dir, meta)
    written = [*ents(1, 1, 3), Entry(term=1, index=4, type=EntryType.CONF_CHANGE, data=b"cc")]
    disk.save(HardState(term=1, vote=0x12, commit=0), written[:2], None, True)
    disk.save(HardState(term=1, vote=0x12, commit=2), written[2:], None, True)
    disk.close()
    disk, rec = DiskStorage.open(data_dir, expect=meta)
    disk.close()
    assert rec.entries == written
    assert rec.hard_state == HardState(term=1, vote=0x12, commit=2)
    assert rec.storage.entries(1, 5) == written
    assert rec.storage.initial_state() == (HardState(term=1, vote=0x12, commit=2), conf)


def test_last_hard_state_wins_across_reopen(data_dir: Path, meta: NodeMeta) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.save(HardState(term=3, vote=0x11), [], None, True)
    disk.save(HardState(term=5, vote=0x13), [], None, True)
    disk.close()
    disk, rec = DiskStorage.open(data_dir, expect=meta)
    assert (rec.hard_state.term, rec.hard_state.vote) == (5, 0x13)
    disk.save(HardState(term=6, vote=0), [], None, True)
    disk.close()
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.hard_state == HardState(term=6, vote=0)


def test_later_index_overrides_earlier(data_dir: Path, meta: NodeMeta) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.save(None, ents(1, 1, 6), None, True)
    disk.save(None, ents(2, 4, 5, b"w"), None, True)  # conflict: 4..6 replaced by 4..5
    disk.save(None, ents(3, 6, 7, b"z"), None, True)
    disk.close()
    _, got = reopen(data_dir, meta)
    assert got == ents(1, 1, 3) + ents(2, 4, 5, b"w") + ents(3, 6, 7, b"z")


def test_installed_snapshot_mark_discards_the_old_log(
    data_dir: Path, meta: NodeMeta, conf: ConfState
) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.save(HardState(term=1, commit=2), ents(1, 1, 8), None, True)
    leader_snap = snap(20, 4, conf)
    disk.save(HardState(term=4, commit=20), ents(4, 21, 22), leader_snap, True)
    disk.close()
    disk, rec = DiskStorage.open(data_dir, expect=meta)
    disk.close()
    assert rec.snapshot == leader_snap
    assert rec.entries == ents(4, 21, 22)
    assert rec.storage.first_index() == 21
    assert rec.storage.term(20) == 4
    assert rec.hard_state == HardState(term=4, commit=20)


def test_installed_snapshot_below_the_log_end_still_discards(
    data_dir: Path, meta: NodeMeta, conf: ConfState
) -> None:
    # The old log (stale term) reaches past the snapshot index; none of it may survive.
    disk, _ = reopen(data_dir, meta)
    disk.save(None, ents(1, 1, 30), None, True)
    disk.save(HardState(term=3, commit=10), [], snap(10, 3, conf), True)
    disk.close()
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.entries == []
    assert rec.storage.last_index() == 10


def test_snapshot_file_without_its_mark_supersedes_a_conflicting_log(
    data_dir: Path, meta: NodeMeta, conf: ConfState
) -> None:
    # A crash after the leader's snapshot file became durable but before its mark was logged.
    disk, _ = reopen(data_dir, meta)
    disk.save(HardState(term=1, commit=3), ents(1, 1, 30), None, True)
    disk.close()
    write_snapshot(FileOps(), data_dir / "snap", snap(10, 3, conf))
    disk, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.entries == []
    assert rec.storage.last_index() == 10
    assert rec.hard_state.commit == 10  # a snapshot holds only committed state
    disk.save(None, ents(3, 11, 12), None, True)
    disk.close()
    _, got = reopen(data_dir, meta)
    assert got == ents(3, 11, 12)


def test_own_snapshot_keeps_the_log_after_it(data_dir: Path, meta: NodeMeta, conf: ConfState) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.save(HardState(term=1, commit=12), ents(1, 1, 15), None, True)
    disk.save_snapshot(snap(12, 1, conf))
    disk.close()
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.snapshot.meta.index == 12
    assert rec.entries == ents(1, 13, 15)


def test_older_snapshots_are_ignored_and_only_three_are_kept(
    data_dir: Path, meta: NodeMeta, conf: ConfState
) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.save(HardState(term=1, commit=40), ents(1, 1, 40), None, True)
    for i in (10, 20, 30, 40):
        disk.save_snapshot(snap(i, 1, conf))
    disk.save_snapshot(snap(25, 1, conf))  # older than the newest: ignored
    disk.save(None, [], snap(35, 1, conf), True)  # an older snapshot from a leader: ignored
    disk.close()
    names = sorted(os.listdir(data_dir / "snap"))
    assert [int(n.split("-")[0], 16) for n in names] == [20, 30, 40]
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.snapshot.meta.index == 40
    assert rec.storage.last_index() == 40


def test_segment_rollover_and_release(data_dir: Path, meta: NodeMeta, conf: ConfState) -> None:
    disk, _ = reopen(data_dir, meta, segment_bytes=256)
    for i in range(1, 41):
        disk.save(HardState(term=1, vote=0x11, commit=i - 1), ents(1, i, i), None, True)
    segments = sorted(os.listdir(data_dir / "wal"))
    assert len(segments) > 5
    disk.release(1000)  # capped by the snapshot (index 0): nothing may go
    assert sorted(os.listdir(data_dir / "wal")) == segments
    disk.save_snapshot(snap(30, 1, conf))
    disk.release(31)
    left = sorted(os.listdir(data_dir / "wal"))
    assert 0 < len(left) < len(segments)
    firsts = [int(n.split("-")[1][:16], 16) for n in left]
    assert firsts[0] <= 31 < firsts[1]  # exactly the segments wholly below 31 went
    disk.close()
    disk, rec = DiskStorage.open(data_dir, expect=meta, segment_bytes=256)
    assert rec.entries == ents(1, 31, 40)
    assert rec.hard_state == HardState(term=1, vote=0x11, commit=39)
    disk.close()


def test_release_never_deletes_the_newest_segment(data_dir: Path, meta: NodeMeta, conf: ConfState) -> None:
    disk, _ = reopen(data_dir, meta, segment_bytes=1 << 20)
    disk.save(HardState(term=1, commit=5), ents(1, 1, 5), None, True)
    disk.save_snapshot(snap(5, 1, conf))
    disk.release(6)
    disk.close()
    assert len(os.listdir(data_dir / "wal")) == 1
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert rec.storage.last_index() == 5


def test_hard_state_survives_release_of_the_segment_that_held_it(
    data_dir: Path, meta: NodeMeta, conf: ConfState
) -> None:
    disk, _ = reopen(data_dir, meta, segment_bytes=200)
    disk.save(HardState(term=7, vote=0x13, commit=0), [], None, True)
    for i in range(1, 21):
        disk.save(None, ents(7, i, i), None, True)
    disk.save_snapshot(snap(20, 7, conf))
    disk.release(21)
    disk.close()
    _, rec = DiskStorage.open(data_dir, expect=meta)
    assert (rec.hard_state.term, rec.hard_state.vote) == (7, 0x13)


def test_meta_mismatch_is_refused(data_dir: Path, meta: NodeMeta) -> None:
    for other in (
        NodeMeta("n2", meta.member_id, meta.cluster_id),
        NodeMeta(meta.name, 0x99, meta.cluster_id),
        NodeMeta(meta.name, meta.member_id, 0x99),
    ):
        with pytest.raises(StorageCorrupt) as err:
            DiskStorage.open(data_dir, expect=other)
        assert err.value.path.endswith("meta.json")


def test_leftover_tmp_files_are_removed(data_dir: Path, meta: NodeMeta) -> None:
    stray = [data_dir / "snap" / "0000000000000009-0000000000000001.snap.tmp", data_dir / "wal" / "x.wal.tmp"]
    for p in stray:
        p.write_bytes(b"half written")
    disk, _ = reopen(data_dir, meta)
    disk.close()
    assert not any(p.exists() for p in stray)


def test_missing_segment_is_corruption(data_dir: Path, meta: NodeMeta) -> None:
    disk, _ = reopen(data_dir, meta, segment_bytes=200)
    for i in range(1, 30):
        disk.save(None, ents(1, i, i), None, True)
    disk.close()
    segments = sorted((data_dir / "wal").iterdir())
    assert len(segments) >= 3
    segments[1].unlink()
    with pytest.raises(StorageCorrupt) as err:
        DiskStorage.open(data_dir, expect=meta)
    assert err.value.path == str(segments[2])


def test_missing_first_segment_is_corruption(data_dir: Path, meta: NodeMeta) -> None:
    # Without a snapshot covering them, the entries of a deleted oldest segment are missing.
    disk, _ = reopen(data_dir, meta, segment_bytes=200)
    for i in range(1, 30):
        disk.save(None, ents(1, i, i), None, True)
    disk.close()
    segments = sorted((data_dir / "wal").iterdir())
    segments[0].unlink()
    with pytest.raises(StorageCorrupt) as err:
        DiskStorage.open(data_dir, expect=meta)
    assert err.value.path == str(segments[1])


def test_commit_past_the_log_is_corruption(data_dir: Path, meta: NodeMeta) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.save(HardState(term=1, commit=3), ents(1, 1, 3), None, True)
    disk.close()
    # Lose the entries but keep the hard state: rewrite the segment without its entry records.
    seg = sorted((data_dir / "wal").iterdir())[0]
    data = seg.read_bytes()
    kept = b"".join(data[start:end] for start, end, rtype in _records(data) if rtype != 2)
    seg.write_bytes(kept)
    with pytest.raises(StorageCorrupt) as err:
        DiskStorage.open(data_dir, expect=meta)
    assert err.value.path == str(seg)
    assert "commits 3" in err.value.reason


def test_snapshot_mark_without_its_file_is_corruption(
    data_dir: Path, meta: NodeMeta, conf: ConfState
) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.save(HardState(term=1, commit=5), ents(1, 1, 5), None, True)
    disk.save_snapshot(snap(5, 1, conf))
    disk.close()
    (data_dir / "snap" / "0000000000000005-0000000000000001.snap").unlink()
    with pytest.raises(StorageCorrupt):
        DiskStorage.open(data_dir, expect=meta)


def test_invalid_saves_write_nothing(data_dir: Path, meta: NodeMeta, conf: ConfState) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.save(None, ents(1, 1, 3), None, True)
    with pytest.raises(ValueError):
        disk.save(None, ents(1, 5, 6), None, True)  # gap after 3
    with pytest.raises(ValueError):
        disk.save(None, [*ents(1, 4, 4), *ents(1, 6, 6)], None, True)
    with pytest.raises(ValueError):
        disk.save(HardState(term=1, commit=4), [], None, True)
    with pytest.raises(ValueError):
        disk.save_snapshot(snap(4, 1, conf))
    disk.save(None, ents(1, 4, 4), None, True)  # still usable
    disk.close()
    _, got = reopen(data_dir, meta)
    assert got == ents(1, 1, 4)


def test_closed_storage_refuses_calls(data_dir: Path, meta: NodeMeta) -> None:
    disk, _ = reopen(data_dir, meta)
    disk.close()
    disk.close()
    with pytest.raises(StorageFailed):
        disk.save(None, ents(1, 1, 1), None, True)


def test_unsynced_saves_are_replayed_after_a_clean_close(data_dir: Path, meta: NodeMeta) -> None:
    disk, _ = reopen(data_dir, meta, segment_bytes=300)
    for i in range(1, 20):
        disk.save(HardState(term=2, commit=i - 1), ents(2, i, i), None, False)
    disk.close()
    disk, rec = DiskStorage.open(data_dir, expect=meta)
    disk.close()
    assert rec.entries == ents(2, 1, 19)
    assert rec.hard_state.commit == 18


def _records(data: bytes) -> list[tuple[int, int, int]]:
    """(start, end, type) of each record, parsed independently of the code under test."""
    out = []
    off = 0
    while off < len(data):
        length = int.from_bytes(data[off : off + 4], "little")
        end = off + 9 + length
        end += -end % 8
        out.append((off, end, data[off + 8]))
        off = end
    return out
