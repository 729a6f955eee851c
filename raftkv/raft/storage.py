"""The log storage Raft reads from: the ``LogStorage`` protocol and ``MemoryStorage``.

Owns: the stable (persisted) part of one node's log as Raft sees it. Raft only reads it; the
application writes to ``MemoryStorage`` after it has made the same data durable (the Ready
contract, ``raft/node.py``).

Invariants of ``MemoryStorage``: ``_ents[0]`` is a dummy entry carrying the index and term of the
last compaction point (the snapshot), so ``first_index() == _ents[0].index + 1``; entries are
contiguous; appending an entry at index i discards every stored entry ≥ i (a conflict
truncation). Indexes at or below the compaction point raise ``LogCompacted``; beyond the last
index, ``LogUnavailable``.
"""

from __future__ import annotations

from typing import Protocol

from raftkv.errors import LogCompacted, LogUnavailable
from raftkv.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMeta


class LogStorage(Protocol):
    """What Raft needs from stable storage; every method is read-only."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]: ...

    def term(self, index: int) -> int: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


def limit_size(entries: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix of ``entries`` within ``max_size`` bytes, but never empty."""
    if max_size is None or not entries:
        return entries
    total = 0
    for i, entry in enumerate(entries):
        total += entry.size()
        if total > max_size and i > 0:
            return entries[:i]
    return entries


class MemoryStorage:
    """An in-memory ``LogStorage`` that the application fills from its durable storage."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.meta.conf_state

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi), trimmed to ``max_size`` bytes (at least one entry)."""
        offset = self._ents[0].index
        if lo <= offset:
            raise LogCompacted(f"index {lo} is compacted (first is {offset + 1})")
        if hi > self.last_index() + 1:
            raise LogUnavailable(f"index {hi - 1} is beyond the last index {self.last_index()}")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, index: int) -> int:
        offset = self._ents[0].index
        if index < offset:
            raise LogCompacted(f"index {index} is compacted (first is {offset + 1})")
        if index - offset >= len(self._ents):
            raise LogUnavailable(f"index {index} is beyond the last index {self.last_index()}")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot``; an older snapshot than the current is ignored."""
        if snapshot.meta.index < self._snapshot.meta.index:
            return
        self._snapshot = snapshot
        self._ents = [Entry(term=snapshot.meta.term, index=snapshot.meta.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the applied state at ``index`` (≤ last index) without compacting."""
        if index <= self._snapshot.meta.index:
            return self._snapshot
        if index > self.last_index():
            raise LogUnavailable(f"snapshot index {index} is beyond the last index {self.last_index()}")
        meta = SnapshotMeta(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(meta=meta, data=data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Discard entries at and below ``compact_index`` (which must be ≤ the last index)."""
        offset = self._ents[0].index
        if compact_index <= offset:
            return
        if compact_index > self.last_index():
            raise LogUnavailable(f"compact index {compact_index} is beyond {self.last_index()}")
        i = compact_index - offset
        self._ents = [Entry(term=self._ents[i].term, index=compact_index), *self._ents[i + 1 :]]

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append durable entries; an entry at index i replaces everything stored at ≥ i."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return  # all of it is already compacted
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        offset = entries[0].index - self._ents[0].index
        if offset > len(self._ents):
            raise LogUnavailable(
                f"missing log entry: last {self.last_index()}, appending at {entries[0].index}"
            )
        del self._ents[offset:]
        self._ents.extend(entries)
