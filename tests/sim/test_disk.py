"""SimDisk: synced vs written records, adversarial crash loss, and recovery as the WAL replays."""

from __future__ import annotations

import random

import pytest

from raftkv.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftkv.sim.disk import SimDisk


def ents(term: int, lo: int, hi: int) -> list[Entry]:
    return [Entry(term=term, index=i, data=f"{term}/{i}".encode()) for i in range(lo, hi + 1)]


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(
        meta=SnapshotMeta(index=index, term=term, conf_state=ConfState(voters=(1, 2, 3))), data=b"s"
    )


def log_of(disk: SimDisk) -> list[tuple[int, int]]:
    st = disk.recover()
    return [(e.index, e.term) for e in st.entries(st.first_index(), st.last_index() + 1)]


def test_recover_replays_entries_with_later_index_overrides() -> None:
    disk = SimDisk()
    disk.write_ready(None, ents(1, 1, 5), HardState(1, 1, 2))
    disk.write_ready(None, ents(2, 3, 4), HardState(2, 2, 3))
    disk.sync()
    assert log_of(disk) == [(1, 1), (2, 1), (3, 2), (4, 2)]
    assert disk.recover().hard_state == HardState(2, 2, 3)


def test_installed_snapshot_discards_earlier_entries() -> None:
    disk = SimDisk()
    disk.write_ready(None, ents(1, 1, 10), HardState(1, 1, 3))
    disk.write_ready(snap(6, 2), [], HardState(2, 0, 6))
    disk.write_ready(None, ents(2, 7, 8), None)
    disk.sync()
    st = disk.recover()
    assert st.snapshot().meta.index == 6
    assert st.first_index() == 7
    assert log_of(disk) == [(7, 2), (8, 2)]


def test_self_taken_snapshot_keeps_later_entries() -> None:
    disk = SimDisk()
    disk.write_ready(None, ents(1, 1, 10), HardState(1, 1, 10))
    disk.write_snapshot(snap(4, 1))
    disk.sync()
    st = disk.recover()
    assert st.snapshot().meta.index == 4
    assert log_of(disk) == [(i, 1) for i in range(5, 11)]


def test_commit_never_recovers_below_the_snapshot() -> None:
    disk = SimDisk()
    disk.write_ready(snap(9, 3), [], None)
    disk.sync()
    assert disk.recover().hard_state.commit == 9


def test_crash_keeps_synced_and_loses_only_an_unsynced_suffix() -> None:
    for seed in range(50):
        rng = random.Random(seed)
        disk = SimDisk()
        disk.write_ready(None, ents(1, 1, 3), HardState(1, 1, 1))
        disk.sync()
        for i in range(4, 8):
            disk.write_ready(None, ents(1, i, i), HardState(1, 1, i - 1))
        loss = disk.crash(rng, lose_probability=1.0)
        assert 1 <= loss.lost_records <= 8, seed
        log = log_of(disk)
        assert log[:3] == [(1, 1), (2, 1), (3, 1)], seed
        assert log == [(i, 1) for i in range(1, len(log) + 1)], f"seed {seed}: not a prefix: {log}"
        assert disk.unsynced == 0


def test_crash_without_loss_keeps_everything() -> None:
    disk = SimDisk()
    disk.write_ready(None, ents(1, 1, 3), HardState(1, 1, 1))
    loss = disk.crash(random.Random(1), lose_probability=0.0)
    assert loss.lost_records == 0 and not loss.torn
    assert len(log_of(disk)) == 3


def test_crash_counts_torn_tails() -> None:
    torn = 0
    for seed in range(40):
        disk = SimDisk()
        disk.write_ready(None, ents(1, 1, 2), HardState(1, 1, 0))
        torn += disk.crash(random.Random(seed), 1.0).torn
    assert 5 < torn < 35


def test_no_fsync_never_syncs() -> None:
    disk = SimDisk(no_fsync=True)
    disk.write_ready(None, ents(1, 1, 2), HardState(1, 1, 0))
    disk.sync()
    assert disk.unsynced == 2
    assert not disk.synced_has(1, 1)
    loss = disk.crash(random.Random(0), 1.0)
    assert loss.lost_records >= 1
    assert len(disk.records) == 2 - loss.lost_records


def test_synced_view_follows_sync_and_truncation() -> None:
    disk = SimDisk()
    disk.write_ready(None, ents(1, 1, 3), HardState(1, 1, 0))
    assert not disk.synced_has(2, 1) and not disk.synced_covers(2)
    disk.sync()
    assert disk.synced_has(2, 1) and disk.synced_covers(3)
    disk.write_ready(None, ents(2, 2, 2), None)
    disk.sync()
    assert not disk.synced_has(2, 1) and disk.synced_has(2, 2) and not disk.synced_covers(3)
    assert disk.synced_hard_state() == HardState(1, 1, 0)


@pytest.mark.parametrize("seed", range(20))
def test_release_preserves_recovery(seed: int) -> None:
    rng = random.Random(seed)
    disk = SimDisk()
    term, last = 1, 0
    for _ in range(30):
        r = rng.random()
        if r < 0.6:
            lo = rng.randint(max(1, last - 3), last + 1)
            hi = lo + rng.randint(0, 4)
            term += rng.random() < 0.2
            disk.write_ready(None, ents(term, lo, hi), HardState(term, 1, 0))
            last = hi
        elif r < 0.8 and last > 2:
            disk.write_snapshot(snap(rng.randint(1, last - 1), 1))
        disk.sync()
        before = log_of(disk), disk.recover().snapshot(), disk.recover().hard_state
        disk.release()
        after = log_of(disk), disk.recover().snapshot(), disk.recover().hard_state
        assert before == after, f"seed {seed}"
