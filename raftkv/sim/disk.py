"""``SimDisk``: one simulated node's durable storage at the record level.

Owns: the ordered records a node has written (installed snapshots, entry batches, hard states,
self-taken snapshots), which of them are synced, what a crash keeps, and recovery into a filled
``MemoryStorage``. It also keeps a *synced view* (index -> term of synced entries, synced snapshot
index) that the checks use to decide whether an entry was durable on a quorum before it applied.

Must not: touch the Replica, the network or a clock; draw randomness except from the
``random.Random`` passed to ``crash``.

Invariants: records ``[0, synced)`` survive every crash; a crash keeps a prefix of the unsynced
records (the suffix is lost; half the time its first record counts as torn: partly written, then
truncated by recovery, which in the record model is the same as lost).
Recovery replays records in order exactly as the WAL replay does: the newest snapshot wins, an
entry batch starting at index i discards every entry >= i, an installed-snapshot mark discards
every earlier entry, and the last hard state wins. With ``no_fsync`` nothing is ever synced.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from raftkv.raft.storage import MemoryStorage
from raftkv.raft.types import Entry, HardState, Snapshot


class RecordKind(enum.Enum):
    INSTALL = "install"  # a snapshot received from the leader: discards every earlier entry
    ENTRIES = "entries"
    HARD_STATE = "hard_state"
    SNAPSHOT = "snapshot"  # a snapshot this node took of its own applied state


@dataclass(frozen=True, slots=True)
class Record:
    kind: RecordKind
    entries: tuple[Entry, ...] = ()
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class CrashLoss:
    """What one crash destroyed: unsynced records lost, and whether the first lost one was torn."""

    lost_records: int
    torn: bool


class _LogView:
    """Replays records: a contiguous entry run after the newest snapshot, and the last hard state."""

    __slots__ = ("base", "entries", "hard_state", "snapshot")

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.hard_state: HardState | None = None
        self.base = 1  # index of entries[0]
        self.entries: list[Entry] = []

    def apply(self, record: Record) -> None:
        if record.kind is RecordKind.HARD_STATE:
            self.hard_state = record.hard_state
        elif record.kind is RecordKind.ENTRIES:
            self._append(record.entries)
        else:
            snap = record.snapshot
            assert snap is not None
            if self.snapshot is None or snap.meta.index >= self.snapshot.meta.index:
                self.snapshot = snap
            if record.kind is RecordKind.INSTALL:
                self.entries = []
                self.base = snap.meta.index + 1

    def _append(self, batch: tuple[Entry, ...]) -> None:
        if not batch:
            return
        first = batch[0].index
        if not self.entries or first < self.base or first > self.base + len(self.entries):
            # A batch below everything truncates all of it; a gap (never expected) restarts the run.
            self.entries = list(batch)
            self.base = first
            return
        del self.entries[first - self.base :]
        self.entries.extend(batch)

    def snap_index(self) -> int:
        return 0 if self.snapshot is None else self.snapshot.meta.index

    def term(self, index: int) -> int | None:
        k = index - self.base
        if 0 <= k < len(self.entries):
            return self.entries[k].term
        return None

    def entries_after_snapshot(self) -> list[Entry]:
        start = self.snap_index() + 1
        if start < self.base:
            return []  # the run starts above the snapshot: a gap, so nothing usable follows it
        return self.entries[start - self.base :]


class SimDisk:
    """The durable log of one simulated node (see the module docstring)."""

    def __init__(self, *, no_fsync: bool = False) -> None:
        self.no_fsync = no_fsync
        self.records: list[Record] = []
        self.synced = 0
        self._synced_view = _LogView()

    # -- writing ---------------------------------------------------------------------------

    def write_ready(
        self,
        snapshot: Snapshot | None,
        entries: list[Entry] | tuple[Entry, ...],
        hard_state: HardState | None,
    ) -> None:
        """Write (not sync) one Ready's persist step: snapshot, then entries, then hard state."""
        if snapshot is not None and not snapshot.is_empty():
            self.records.append(Record(RecordKind.INSTALL, snapshot=snapshot))
        if entries:
            self.records.append(Record(RecordKind.ENTRIES, entries=tuple(entries)))
        if hard_state is not None:
            self.records.append(Record(RecordKind.HARD_STATE, hard_state=hard_state))

    def write_snapshot(self, snapshot: Snapshot) -> None:
        """Write (not sync) a snapshot this node took of its applied state."""
        self.records.append(Record(RecordKind.SNAPSHOT, snapshot=snapshot))

    def sync(self) -> None:
        """fsync: every written record becomes durable (never, under ``no_fsync``)."""
        if self.no_fsync:
            return
        for record in self.records[self.synced :]:
            self._synced_view.apply(record)
        self.synced = len(self.records)

    @property
    def unsynced(self) -> int:
        return len(self.records) - self.synced

    # -- crash and recovery ----------------------------------------------------------------

    def crash(self, rng: random.Random, lose_probability: float) -> CrashLoss:
        """Keep the synced records and, adversarially, a prefix of the unsynced ones."""
        pending = len(self.records) - self.synced
        if pending == 0 or rng.random() >= lose_probability:
            # The OS flushed its cache before dying: every written record survives.
            self.sync_all_written()
            return CrashLoss(0, False)
        keep = rng.randint(0, pending - 1)
        # Half the time the first lost record was partly written: a torn tail that recovery must
        # truncate. In the record model that is the same as losing it, so only the count differs.
        torn = rng.random() < 0.5
        del self.records[self.synced + keep :]
        # What survived a crash is on the platter now, whatever the fsync flag says.
        self.sync_all_written()
        return CrashLoss(pending - keep, torn)

    def sync_all_written(self) -> None:
        for record in self.records[self.synced :]:
            self._synced_view.apply(record)
        self.synced = len(self.records)

    def recover(self) -> MemoryStorage:
        """A ``MemoryStorage`` filled from the durable records, as the WAL replay does."""
        view = _LogView()
        for record in self.records:
            view.apply(record)
        storage = MemoryStorage()
        if view.snapshot is not None:
            # Even an index-0 snapshot matters: the bootstrap one carries the initial voters.
            storage.apply_snapshot(view.snapshot)
        storage.append(view.entries_after_snapshot())
        hs = view.hard_state or HardState()
        # The snapshot is applied state, hence committed; a torn hard state after it must not
        # leave commit below it.
        floor = view.snap_index()
        if hs.commit < floor:
            hs = HardState(term=hs.term, vote=hs.vote, commit=floor)
        storage.set_hard_state(hs)
        return storage

    def release(self) -> None:
        """Rewrite the synced records as their replayed equivalent (a WAL segment release).

        Recovery from the rewritten records yields the same storage, so this only bounds memory.
        """
        if self.synced == 0:
            return
        view = _LogView()
        for record in self.records[: self.synced]:
            view.apply(record)
        compact: list[Record] = []
        if view.snapshot is not None:
            compact.append(Record(RecordKind.SNAPSHOT, snapshot=view.snapshot))
        after = view.entries_after_snapshot()
        if after:
            compact.append(Record(RecordKind.ENTRIES, entries=tuple(after)))
        if view.hard_state is not None:
            compact.append(Record(RecordKind.HARD_STATE, hard_state=view.hard_state))
        self.records[: self.synced] = compact
        self.synced = len(compact)
        self._synced_view = view
        # The synced view keeps only what recovery can see, so trim entries behind the snapshot.
        if view.entries and view.base <= view.snap_index():
            view.entries = after
            view.base = view.snap_index() + 1

    # -- the synced view, for the checks -----------------------------------------------------

    def synced_has(self, index: int, term: int) -> bool:
        """True when entry (index, term) is durable: synced itself, or under a synced snapshot."""
        view = self._synced_view
        if index <= view.snap_index():
            return True
        return view.term(index) == term

    def synced_covers(self, index: int) -> bool:
        """True when some entry at ``index`` (or a snapshot at or above it) is durable."""
        view = self._synced_view
        return index <= view.snap_index() or view.term(index) is not None

    def synced_hard_state(self) -> HardState | None:
        return self._synced_view.hard_state
