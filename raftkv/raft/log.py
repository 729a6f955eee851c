"""``RaftLog``: one node's log as Raft sees it, stable storage plus the unstable tail.

Owns: the entries and snapshot not yet handed to storage (``Unstable``), the commit and applied
indexes, and the log operations of the Raft paper: conflict search, ``maybe_append``, the
up-to-date check, fast-backtracking hints.

Invariants: ``applied ≤ committed ≤ last_index()``; ``committed`` never decreases (a regression
raises ``InvariantViolation``); an entry at or below ``committed`` is never truncated; unstable
entries are contiguous and start at ``unstable.offset``; entries are readable from
``first_index()`` to ``last_index()``.
"""

from __future__ import annotations

from raftkv.errors import InvariantViolation, LogCompacted, LogUnavailable
from raftkv.raft.storage import LogStorage, limit_size
from raftkv.raft.types import Entry, Snapshot


class Unstable:
    """Entries and a snapshot that storage does not hold yet (etcd's ``unstable``)."""

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        return self.snapshot.meta.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        return self.snapshot.meta.index if self.snapshot is not None else None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == index:
                return self.snapshot.meta.term
            return None
        last = self.maybe_last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` are persisted; drop them unless they were replaced since."""
        if self.maybe_term(index) == term and index >= self.offset:
            del self.entries[: index + 1 - self.offset]
            self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.meta.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: list[Entry]) -> None:
        after = entries[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif after <= self.offset:
            # Replaces entries already handed to storage; storage truncates when it appends these.
            self.offset = after
            self.entries = list(entries)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(entries)


class RaftLog:
    def __init__(self, storage: LogStorage, applied: int = 0) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # The snapshot is the oldest committed and applied state we can have.
        self.committed = first - 1
        self.applied = first - 1
        if applied:
            self.applied_to(applied)

    def __str__(self) -> str:
        return (
            f"committed={self.committed} applied={self.applied} "
            f"unstable.offset={self.unstable.offset} len(unstable)={len(self.unstable.entries)}"
        )

    # --- indexes and terms ---------------------------------------------------------------------

    def first_index(self) -> int:
        index = self.unstable.maybe_first_index()
        return index if index is not None else self.storage.first_index()

    def last_index(self) -> int:
        index = self.unstable.maybe_last_index()
        return index if index is not None else self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def term(self, index: int) -> int:
        """The term of ``index``; raises ``LogCompacted`` / ``LogUnavailable`` outside the log."""
        dummy = self.first_index() - 1
        if index < dummy:
            raise LogCompacted(f"index {index} is compacted")
        if index > self.last_index():
            raise LogUnavailable(f"index {index} is beyond the last index {self.last_index()}")
        term = self.unstable.maybe_term(index)
        if term is not None:
            return term
        return self.storage.term(index)

    def term_or_zero(self, index: int) -> int:
        try:
            return self.term(index)
        except (LogCompacted, LogUnavailable):
            return 0

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (LogCompacted, LogUnavailable):
            return False

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log at least as up to date as ours may get our vote."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    def last_stable_index(self) -> int:
        """The last index of our current log that storage holds durably."""
        return min(self.storage.last_index(), self.unstable.offset - 1)

    # --- appending -----------------------------------------------------------------------------

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """The index of the first entry that is new or disagrees in term; 0 if all match."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index ≤ ``index`` whose term is ≤ ``term``, and that term (fast backtrack)."""
        while index > 0:
            try:
                our_term = self.term(index)
            except LogCompacted:
                return index, 0
            except LogUnavailable:
                index = self.last_index()
                continue
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """Append ``entries`` after (``index``, ``log_term``); the new last index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise InvariantViolation(
                    f"entry {conflict} conflicts with committed entry (committed={self.committed})"
                )
            self.append(list(entries[conflict - index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: list[Entry]) -> int:
        if not entries:
            return self.last_index()
        if entries[0].index - 1 < self.committed:
            raise InvariantViolation(
                f"append at {entries[0].index} would truncate committed {self.committed}"
            )
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    # --- reading -------------------------------------------------------------------------------

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in [lo, hi), at most ``max_size`` bytes (at least one)."""
        if lo < self.first_index():
            raise LogCompacted(f"index {lo} is compacted")
        if hi > self.last_index() + 1:
            raise LogUnavailable(f"index {hi - 1} is beyond the last index {self.last_index()}")
        if lo >= hi:
            return []
        result: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            result = self.storage.entries(lo, min(hi, offset), max_size)
            if len(result) < min(hi, offset) - lo:
                return result  # trimmed by size
        if hi > offset:
            start = max(lo, offset)
            result = result + self.unstable.entries[start - offset : hi - offset]
        return limit_size(result, max_size)

    def entries_from(self, lo: int, max_size: int | None = None) -> list[Entry]:
        return self.slice(lo, self.last_index() + 1, max_size)

    def next_committed_entries(self) -> list[Entry]:
        start = max(self.applied + 1, self.first_index())
        if self.committed + 1 > start:
            return self.slice(start, self.committed + 1)
        return []

    def has_next_committed_entries(self) -> bool:
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    # --- commit, apply, persist ----------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if self.committed < index:
            if self.last_index() < index:
                raise InvariantViolation(
                    f"commit {index} is beyond the last index {self.last_index()}"
                )
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        if index > self.committed and self.term_or_zero(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if self.committed < index or index < self.applied:
            raise InvariantViolation(
                f"applied {index} outside [{self.applied}, {self.committed}]"
            )
        self.applied = index

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)
