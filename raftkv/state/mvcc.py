"""The multi-version key-value store: etcd's MVCC semantics (API.md §2, §3) in memory.

Owns: the store revision and compact revision, the sorted key index with every key's history, and
the rules of Range, Put, DeleteRange, Txn (compares and nested txns) and Compaction. Every write
returns its events (one per changed key, all at one revision).

Must not: do I/O, read a clock, know about Raft or leases beyond an injected "is this lease alive"
predicate (the state machine owns the lease table and attaches keys from the returned events).

Representation: ``_index`` maps each key (bytewise order) to its list of records, oldest first,
sorted by mod revision. A record is the tuple ``(mod_revision, create_revision, version, value,
lease)``; ``version == 0`` marks a tombstone. The records between tombstones are one incarnation, so
the list is etcd's ``key_index`` generations flattened. Plain tuples keep a record at ~80 bytes plus
the value, and the value object is shared, never copied.

Invariants:
- ``revision`` starts at 1 and grows by exactly 1 per write that changed at least one key; all
  records of one write carry that revision.
- A record list is never empty outside a write, and no tombstone is the first record of a list
  (a key's history starts with a put).
- After ``compact(c)`` no list holds a record older than the newest record at or below ``c``, and
  that record is dropped too if it is a tombstone (with its key if nothing newer exists).
- A write is atomic: it is staged in place with an undo log of list lengths; any error rolls every
  touched list back to its old length, so a failed op or txn leaves no trace. Old records are
  never mutated during a write (only records of the new revision are replaced or popped), which is
  what makes truncation a complete undo.
- ``_hist`` holds exactly the keys whose list has more than one record or ends in a tombstone, so
  compaction visits only keys that have something to drop.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from raftkv import errors
from raftkv.state.commands import (
    CompactResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    DeleteRangeResponse,
    Event,
    EventType,
    KeyValue,
    Put,
    PutResponse,
    Range,
    RangeResponse,
    SortOrder,
    SortTarget,
    Txn,
    TxnResponse,
)

_Rec = tuple[int, int, int, bytes, int]
_mod_of = itemgetter(0)

LeaseAlive = Callable[[int], bool]


def _kv(key: bytes, rec: _Rec) -> KeyValue:
    return KeyValue(key, rec[1], rec[0], rec[2], rec[3], rec[4])


def _at(recs: list[_Rec], rev: int) -> _Rec | None:
    """The newest record at or below ``rev`` (tombstones included), or None."""
    if recs and recs[-1][0] <= rev:
        return recs[-1]
    i = bisect_right(recs, rev, key=_mod_of)
    return recs[i - 1] if i else None


_SORT_KEYS: dict[int, Callable[[tuple[bytes, _Rec]], Any]] = {
    SortTarget.KEY: lambda kr: kr[0],
    SortTarget.VERSION: lambda kr: kr[1][2],
    SortTarget.CREATE: lambda kr: kr[1][1],
    SortTarget.MOD: lambda kr: kr[1][0],
    SortTarget.VALUE: lambda kr: kr[1][3],
}

_KEY_NOT_PROVIDED = "etcdserver: key is not provided"


class KVStore:
    """The MVCC store. Public writes are atomic; reads never change state."""

    __slots__ = ("_compact_rev", "_events", "_hist", "_index", "_rev", "_undo")

    def __init__(self) -> None:
        self._index: Any = SortedDict()  # bytes -> list[_Rec]
        self._hist: set[bytes] = set()
        self._rev = 1
        self._compact_rev = 0
        # Staging of the write in progress; _events non-empty means the write has changed something.
        self._undo: dict[bytes, int] = {}
        self._events: list[Event] = []

    # -- inspection -----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compact_revision(self) -> int:
        return self._compact_rev

    def __len__(self) -> int:
        """The number of keys alive at the current revision (a full scan: for tests and stats)."""
        return sum(1 for recs in self._index.values() if recs[-1][2])

    def get(self, key: bytes) -> KeyValue | None:
        """The live KeyValue of ``key`` at the current revision."""
        recs = self._index.get(key)
        if not recs or not recs[-1][2]:
            return None
        return _kv(key, recs[-1])

    # -- reads ----------------------------------------------------------------------------------

    def _visible_rev(self) -> int:
        # Inside a write, ops that follow a change see the new revision (API.md §3.4).
        return self._rev + 1 if self._events else self._rev

    def _keys_in(self, key: bytes, range_end: bytes) -> Iterable[bytes]:
        if not range_end:
            return (key,) if key in self._index else ()
        if range_end == b"\x00":
            return self._index.irange(minimum=key)  # type: ignore[no-any-return]
        if range_end <= key:
            return ()
        return self._index.irange(key, range_end, inclusive=(True, False))  # type: ignore[no-any-return]

    def _live_at(self, key: bytes, range_end: bytes, rev: int) -> list[tuple[bytes, _Rec]]:
        index = self._index
        out = []
        for k in self._keys_in(key, range_end):
            rec = _at(index[k], rev)
            if rec is not None and rec[2]:
                out.append((k, rec))
        return out

    def range(self, req: Range) -> RangeResponse:
        """API.md §3.1. Raises InvalidArgument (empty key), FutureRevision, Compacted."""
        if not req.key:
            raise errors.InvalidArgument(_KEY_NOT_PROVIDED)
        cur = self._visible_rev()
        rev = req.revision
        if rev > cur:
            raise errors.FutureRevision()
        if rev <= 0:
            rev = cur
        if rev < self._compact_rev:
            raise errors.Compacted()
        found = self._live_at(req.key, req.range_end, rev)
        count = len(found)
        if req.min_mod_revision:
            found = [kr for kr in found if kr[1][0] >= req.min_mod_revision]
        if req.max_mod_revision:
            found = [kr for kr in found if kr[1][0] <= req.max_mod_revision]
        if req.min_create_revision:
            found = [kr for kr in found if kr[1][1] >= req.min_create_revision]
        if req.max_create_revision:
            found = [kr for kr in found if kr[1][1] <= req.max_create_revision]
        order = req.sort_order
        if order == SortOrder.NONE and req.sort_target != SortTarget.KEY:
            order = SortOrder.ASCEND
        sort_key = _SORT_KEYS.get(req.sort_target)
        if sort_key is not None and order in (SortOrder.ASCEND, SortOrder.DESCEND):
            # Python's sort is stable in both directions, so ties keep ascending key order.
            found.sort(key=sort_key, reverse=order == SortOrder.DESCEND)
        more = False
        if req.limit > 0 and len(found) > req.limit:
            found = found[: req.limit]
            more = True
        if req.count_only:
            return RangeResponse(cur, (), False, count)
        if req.keys_only:
            kvs = tuple(KeyValue(k, r[1], r[0], r[2], b"", r[4]) for k, r in found)
        else:
            kvs = tuple(_kv(k, r) for k, r in found)
        return RangeResponse(cur, kvs, more, count)

    def history(self, key: bytes, range_end: bytes, start_revision: int) -> list[Event]:
        """Every event in the key range at revisions >= ``start_revision``, ordered by (revision,
        key), each with its ``prev_kv``. For watch catch-up; costs a scan of the range's keys.
        Raises Compacted if ``start_revision`` is below the compact revision. As in etcd, events at
        the compact revision itself may be incomplete (its tombstones are gone), so a watcher that
        needs them all must start above it."""
        if start_revision < self._compact_rev:
            raise errors.Compacted()
        out: list[tuple[int, bytes, Event]] = []
        for k in self._keys_in(key, range_end):
            recs = self._index[k]
            i = bisect_right(recs, start_revision - 1, key=_mod_of)
            for j in range(i, len(recs)):
                rec = recs[j]
                prev = recs[j - 1] if j and recs[j - 1][2] else None
                prev_kv = _kv(k, prev) if prev is not None else None
                if rec[2]:
                    ev = Event(EventType.PUT, _kv(k, rec), prev_kv)
                else:
                    ev = Event(EventType.DELETE, KeyValue(k, 0, rec[0], 0, b"", 0), prev_kv)
                out.append((rec[0], k, ev))
        out.sort(key=lambda t: (t[0], t[1]))
        return [t[2] for t in out]

    # -- write staging --------------------------------------------------------------------------

    def _commit(self) -> tuple[Event, ...]:
        events = tuple(self._events)
        if events:
            self._rev += 1
            index, hist = self._index, self._hist
            for key in self._undo:
                recs = index[key]
                if not recs:
                    del index[key]
                    hist.discard(key)
                elif len(recs) > 1 or not recs[-1][2]:
                    hist.add(key)
        self._undo = {}
        self._events = []
        return events

    def _rollback(self) -> None:
        index = self._index
        for key, length in self._undo.items():
            if length == 0:
                del index[key]
            else:
                del index[key][length:]
        self._undo = {}
        self._events = []

    def _write(self, key: bytes, recs: list[_Rec] | None, rec: _Rec) -> None:
        if recs is None:
            self._undo.setdefault(key, 0)
            self._index[key] = [rec]
            return
        self._undo.setdefault(key, len(recs))
        if recs and recs[-1][0] == rec[0]:
            recs[-1] = rec  # the same key written twice in one txn: the later write wins
        else:
            recs.append(rec)

    def _put(self, req: Put, lease_alive: LeaseAlive | None) -> PutResponse:
        key = req.key
        if not key:
            raise errors.InvalidArgument(_KEY_NOT_PROVIDED)
        if req.ignore_value and req.value:
            raise errors.InvalidArgument("etcdserver: value is provided")
        if req.ignore_lease and req.lease:
            raise errors.InvalidArgument("etcdserver: lease is provided")
        recs = self._index.get(key)
        prev = recs[-1] if recs and recs[-1][2] else None
        if prev is None and (req.ignore_value or req.ignore_lease):
            raise errors.InvalidArgument("etcdserver: key not found")
        value = prev[3] if prev is not None and req.ignore_value else req.value
        lease = prev[4] if prev is not None and req.ignore_lease else req.lease
        if lease and lease_alive is not None and not lease_alive(lease):
            raise errors.LeaseNotFound()
        new_rev = self._rev + 1
        if prev is not None:
            rec = (new_rev, prev[1], prev[2] + 1, value, lease)
            prev_kv: KeyValue | None = _kv(key, prev)
        else:
            rec = (new_rev, new_rev, 1, value, lease)
            prev_kv = None
        self._write(key, recs, rec)
        self._events.append(Event(EventType.PUT, _kv(key, rec), prev_kv))
        return PutResponse(new_rev, prev_kv if req.prev_kv else None)

    def _delete_live(self, key: bytes, recs: list[_Rec]) -> KeyValue:
        """Delete a key that is live now; returns its previous KeyValue."""
        new_rev = self._rev + 1
        prev_kv = _kv(key, recs[-1])
        self._undo.setdefault(key, len(recs))
        if recs[-1][0] == new_rev and (len(recs) == 1 or not recs[-2][2]):
            recs.pop()  # created earlier in this txn: drop it rather than leave a leading tombstone
        elif recs[-1][0] == new_rev:
            recs[-1] = (new_rev, 0, 0, b"", 0)
        else:
            recs.append((new_rev, 0, 0, b"", 0))
        self._events.append(Event(EventType.DELETE, KeyValue(key, 0, new_rev, 0, b"", 0), prev_kv))
        return prev_kv

    def _delete_range(self, req: DeleteRange) -> DeleteRangeResponse:
        if not req.key:
            raise errors.InvalidArgument(_KEY_NOT_PROVIDED)
        index = self._index
        live = [k for k in self._keys_in(req.key, req.range_end) if index[k] and index[k][-1][2]]
        prev_kvs = tuple(self._delete_live(k, index[k]) for k in live)
        return DeleteRangeResponse(self._visible_rev(), len(live), prev_kvs if req.prev_kv else ())

    def _compare(self, c: Compare) -> bool:
        if not c.key:
            raise errors.InvalidArgument(_KEY_NOT_PROVIDED)
        rev = self._visible_rev()
        if c.range_end:
            recs = [r for _, r in self._live_at(c.key, c.range_end, rev)]
        else:
            hist = self._index.get(c.key)
            rec = _at(hist, rev) if hist else None
            recs = [rec] if rec is not None and rec[2] else []
        if not recs:
            if c.target == CompareTarget.VALUE:
                return False  # etcd: a VALUE compare on a missing key is false, even NOT_EQUAL
            return _compare_one(c, (0, 0, 0, b"", 0))
        return all(_compare_one(c, r) for r in recs)

    def _choose_path(self, req: Txn, decisions: list[bool]) -> None:
        """Decide every txn on the executed path, nested ones included, against the state before
        the txn starts (etcd's compareToPath), in the pre-order ``_txn`` consumes them."""
        succeeded = all(self._compare(c) for c in req.compare)
        decisions.append(succeeded)
        for op in req.success if succeeded else req.failure:
            if isinstance(op, Txn):
                self._choose_path(op, decisions)

    def _txn(
        self, req: Txn, lease_alive: LeaseAlive | None, decisions: Iterator[bool] | None = None
    ) -> TxnResponse:
        if decisions is None:
            path: list[bool] = []
            self._choose_path(req, path)
            decisions = iter(path)
        succeeded = next(decisions)
        responses: list[RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse] = []
        for op in req.success if succeeded else req.failure:
            if isinstance(op, Range):
                responses.append(self.range(op))
            elif isinstance(op, Put):
                responses.append(self._put(op, lease_alive))
            elif isinstance(op, DeleteRange):
                responses.append(self._delete_range(op))
            else:
                responses.append(self._txn(op, lease_alive, decisions))
        return TxnResponse(self._visible_rev(), succeeded, tuple(responses))

    def _run(self, fn: Callable[[], Any]) -> tuple[Any, tuple[Event, ...]]:
        if self._undo or self._events:  # pragma: no cover - a bug in this module
            raise AssertionError("KVStore write re-entered")
        try:
            resp = fn()
        except BaseException:
            self._rollback()
            raise
        return resp, self._commit()

    # -- public writes --------------------------------------------------------------------------

    def put(self, req: Put, lease_alive: LeaseAlive | None = None) -> tuple[PutResponse, tuple[Event, ...]]:
        """API.md §3.2. ``lease_alive`` validates a non-zero lease (None: no lease check). Raises
        InvalidArgument (key is not provided, value is provided, lease is provided, key not found)
        or LeaseNotFound; nothing is written then."""
        resp, events = self._run(lambda: self._put(req, lease_alive))
        return resp, events

    def delete_range(self, req: DeleteRange) -> tuple[DeleteRangeResponse, tuple[Event, ...]]:
        """API.md §3.3; no revision when nothing was deleted. Raises InvalidArgument (empty key)."""
        resp, events = self._run(lambda: self._delete_range(req))
        return resp, events

    def delete_keys(self, keys: Iterable[bytes]) -> tuple[int, tuple[Event, ...]]:
        """Delete the live ones of ``keys`` at one revision (a lease revoke); returns the revision
        after the write and the events, in the given order."""

        def run() -> int:
            index = self._index
            for k in keys:
                recs = index.get(k)
                if recs and recs[-1][2]:
                    self._delete_live(k, recs)
            return 0

        _, events = self._run(run)
        return self._rev, events

    def txn(self, req: Txn, lease_alive: LeaseAlive | None = None) -> tuple[TxnResponse, tuple[Event, ...]]:
        """API.md §3.4: compares, then the chosen branch in order as one atomic write with one new
        revision iff it changed something. Any error aborts the whole txn with nothing written."""
        resp, events = self._run(lambda: self._txn(req, lease_alive))
        return resp, events

    def compact(self, revision: int) -> CompactResponse:
        """API.md §3.5: drop history below ``revision`` and tombstones at or below it, freeing the
        records. Raises Compacted (revision <= compact revision) or FutureRevision."""
        if revision <= self._compact_rev:
            raise errors.Compacted()
        if revision > self._rev:
            raise errors.FutureRevision()
        index, hist = self._index, self._hist
        for key in list(hist):
            recs = index[key]
            i = bisect_right(recs, revision, key=_mod_of)
            if i == 0:
                continue
            keep_from = i - 1 if recs[i - 1][2] else i
            if keep_from:
                del recs[:keep_from]
            if not recs:
                del index[key]
                hist.discard(key)
            elif len(recs) == 1 and recs[0][2]:
                hist.discard(key)
        self._compact_rev = revision
        return CompactResponse(self._rev)

    # -- snapshots ------------------------------------------------------------------------------

    def to_obj(self) -> list[Any]:
        """A msgpack-ready canonical form: [revision, compact revision, [[key, [record...]]...]]
        in key order. Shares the value objects rather than copying them."""
        return [self._rev, self._compact_rev, [[k, recs] for k, recs in self._index.items()]]

    @classmethod
    def from_obj(cls, obj: Any) -> KVStore:
        """Inverse of ``to_obj`` (lists or tuples). Raises ValueError on malformed input."""
        try:
            rev, compact_rev, items = obj
            store = cls()
            store._rev, store._compact_rev = int(rev), int(compact_rev)
            pairs = []
            for key, recs in items:
                rl = [(int(m), int(c), int(v), bytes(val), int(le)) for m, c, v, val, le in recs]
                if not isinstance(key, bytes) or not key or not rl:
                    raise ValueError("bad key or empty history")
                pairs.append((key, rl))
                if len(rl) > 1 or not rl[-1][2]:
                    store._hist.add(key)
            store._index = SortedDict(pairs)
        except (TypeError, ValueError) as e:
            raise ValueError(f"malformed KV snapshot: {e}") from e
        return store


def _compare_one(c: Compare, rec: _Rec) -> bool:
    target = c.target
    result: int
    if target == CompareTarget.VALUE:
        result = (rec[3] > c.value) - (rec[3] < c.value)
    else:
        if target == CompareTarget.VERSION:
            mine, theirs = rec[2], c.version
        elif target == CompareTarget.CREATE:
            mine, theirs = rec[1], c.create_revision
        elif target == CompareTarget.MOD:
            mine, theirs = rec[0], c.mod_revision
        elif target == CompareTarget.LEASE:
            mine, theirs = rec[4], c.lease
        else:
            mine = theirs = 0  # etcd leaves the result 0 for an unknown target
        result = (mine > theirs) - (mine < theirs)
    if c.result == CompareResult.EQUAL:
        return result == 0
    if c.result == CompareResult.NOT_EQUAL:
        return result != 0
    if c.result == CompareResult.GREATER:
        return result > 0
    if c.result == CompareResult.LESS:
        return result < 0
    return False
