"""Property: after any sequence of saves, snapshots, releases, reopens and crashes that lose
unsynced writes, recovery yields exactly a state the simple model passed through since the last
sync (and the synced state itself whenever nothing unsynced was written).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from raftkv.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta
from raftkv.storage.disk import DiskStorage, NodeMeta, Recovered
from raftkv.storage.wal import FileOps

META = NodeMeta(name="p1", member_id=0x21, cluster_id=0xC2)
CONF = ConfState(voters=(0x21, 0x22, 0x23))
SEGMENT_BYTES = 400


class LossyOps(FileOps):
    """Remembers how much of each file was fsynced, so a crash can drop the rest."""

    def __init__(self) -> None:
        self.fd_paths: dict[int, str] = {}
        self.synced: dict[str, int] = {}

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        fd = super().open(path, flags, mode)
        self.fd_paths[fd] = path
        self.synced.setdefault(path, os.fstat(fd).st_size)
        return fd

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        self.synced[self.fd_paths[fd]] = os.fstat(fd).st_size

    def rename(self, src: str, dst: str) -> None:
        super().rename(src, dst)
        self.synced[dst] = self.synced.pop(src)
        self.fd_paths = {fd: dst if p == src else p for fd, p in self.fd_paths.items()}

    def close(self, fd: int) -> None:
        super().close(fd)
        del self.fd_paths[fd]

    def crash(self) -> None:
        for path, size in self.synced.items():
            if os.path.exists(path) and os.path.getsize(path) > size:
                os.truncate(path, size)
        self.synced.clear()


State = tuple[SnapshotMeta, bytes, tuple[Entry, ...], HardState]


@dataclass
class Model:
    """What a correct log holds: the snapshot, the entries after it, the last hard state."""

    snap: Snapshot = field(default_factory=lambda: Snapshot(SnapshotMeta(0, 0, CONF), b"boot"))
    entries: list[Entry] = field(default_factory=list)
    hs: HardState = field(default_factory=HardState)

    @property
    def last(self) -> int:
        return self.entries[-1].index if self.entries else self.snap.meta.index

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snap.meta.term

    def term_at(self, index: int) -> int:
        if index == self.snap.meta.index:
            return self.snap.meta.term
        return self.entries[index - self.snap.meta.index - 1].term

    def state(self) -> State:
        hs = replace(self.hs, commit=max(self.hs.commit, self.snap.meta.index))
        return (self.snap.meta, self.snap.data, tuple(self.entries), hs)


def recovered_state(rec: Recovered) -> State:
    st_ = rec.storage
    ents = (
        tuple(st_.entries(st_.first_index(), st_.last_index() + 1))
        if st_.last_index() >= st_.first_index()
        else ()
    )
    assert list(ents) == rec.entries
    assert st_.snapshot() == rec.snapshot
    assert st_.hard_state == rec.hard_state
    return (rec.snapshot.meta, rec.snapshot.data, ents, rec.hard_state)


def make_entries(lo: int, n: int, term: int) -> list[Entry]:
    return [Entry(term=term, index=i, data=b"e%d.%d" % (term, i) * (i % 7)) for i in range(lo, lo + n)]


@settings(
    derandomize=True,
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_recovery_matches_the_model(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "node"
        model = Model()
        DiskStorage.bootstrap(root, META, CONF, model.snap.data)
        ops = LossyOps()
        disk, rec = DiskStorage.open(root, expect=META, segment_bytes=SEGMENT_BYTES, file_ops=ops)
        assert recovered_state(rec) == model.state()
        since_sync: list[State] = [model.state()]  # states a crash may legitimately leave

        for _ in range(data.draw(st.integers(1, 30), label="steps")):
            kind = data.draw(
                st.sampled_from(
                    ["append", "append", "append", "own", "install", "release", "reopen", "crash"]
                )
            )
            event(kind)
            synced = True
            if kind == "append":
                floor = max(model.hs.commit, model.snap.meta.index)
                lo = data.draw(st.integers(floor + 1, model.last + 1), label="lo")
                n = data.draw(st.integers(0, 6), label="n")
                term = max(model.hs.term, model.last_term) + data.draw(st.integers(0, 1), label="bump")
                new = make_entries(lo, n, term)
                hs: HardState | None = None
                if data.draw(st.booleans(), label="with hs"):
                    last = new[-1].index if new else model.last
                    commit = data.draw(st.integers(model.hs.commit, last), label="commit")
                    hs = HardState(term=term, vote=data.draw(st.sampled_from([0, 0x21, 0x22])), commit=commit)
                synced = data.draw(st.booleans(), label="must_sync")
                disk.save(hs, new, None, synced)
                if new:
                    del model.entries[lo - model.snap.meta.index - 1 :]
                    model.entries.extend(new)
                if hs is not None:
                    model.hs = hs
            elif kind == "own":
                top = min(model.hs.commit, model.last)
                if top <= model.snap.meta.index:
                    continue
                index = data.draw(st.integers(model.snap.meta.index + 1, top), label="own index")
                snap = Snapshot(SnapshotMeta(index, model.term_at(index), CONF), b"own@%d" % index)
                disk.save_snapshot(snap)
                model.entries = model.entries[index - model.snap.meta.index :]
                model.snap = snap
            elif kind == "install":
                floor = max(model.hs.commit, model.snap.meta.index)
                index = data.draw(st.integers(floor + 1, model.last + 5), label="install index")
                term = max(model.hs.term, model.last_term) + 1
                snap = Snapshot(SnapshotMeta(index, term, CONF), b"leader@%d" % index)
                after = make_entries(index + 1, data.draw(st.integers(0, 3), label="after"), term)
                hs = HardState(term=term, vote=0, commit=index)
                disk.save(hs, after, snap, data.draw(st.booleans(), label="install sync"))
                model.snap, model.entries, model.hs = snap, after, hs
            elif kind == "release":
                disk.release(data.draw(st.integers(0, model.last + 3), label="release"))
                synced = False  # deleting segments makes nothing durable
            else:
                disk.close()
                if kind == "crash":
                    ops.crash()
                ops = LossyOps()
                disk, rec = DiskStorage.open(root, expect=META, segment_bytes=SEGMENT_BYTES, file_ops=ops)
                got = recovered_state(rec)
                assert got in since_sync, (kind, got, since_sync[-1])
                if got != since_sync[-1]:
                    event("a crash lost unsynced writes")
                if kind == "reopen":
                    assert got == since_sync[-1]
                # Whatever survived is now the truth; later states a crash dropped are gone.
                model = Model(snap=rec.snapshot, entries=list(rec.entries), hs=rec.hard_state)
                since_sync = [got]
                continue
            since_sync = [model.state()] if synced else [*since_sync, model.state()]

        disk.close()
        event(f"{len(os.listdir(root / 'wal'))} segments at the end")
        _, rec = DiskStorage.open(root, expect=META, segment_bytes=SEGMENT_BYTES)
        assert recovered_state(rec) == since_sync[-1]
