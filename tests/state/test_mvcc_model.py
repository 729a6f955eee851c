"""Model-based test: KVStore against a dict-of-history reference (one full dict per revision)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftkv import errors
from raftkv.state.commands import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    EventType,
    KeyValue,
    Put,
    Range,
    Txn,
)
from raftkv.state.mvcc import KVStore

KEYS = [b"a", b"ab", b"b", b"ba", b"c", b"\xff"]
keys = st.sampled_from(KEYS)
range_ends = st.sampled_from([b"", b"\x00", *KEYS, b"zz"])
values = st.sampled_from([b"", b"x", b"y", b"zz"])

# key -> (value, create_revision, mod_revision, version)
State = dict[bytes, tuple[bytes, int, int, int]]


def in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


def model_put(state: State, rev: int, key: bytes, value: bytes) -> None:
    prev = state.get(key)
    state[key] = (value, prev[1] if prev else rev, rev, prev[3] + 1 if prev else 1)


def model_delete(state: State, key: bytes, end: bytes) -> bool:
    doomed = [k for k in state if in_range(k, key, end)]
    for k in doomed:
        del state[k]
    return bool(doomed)


def as_kv(key: bytes, t: tuple[bytes, int, int, int]) -> KeyValue:
    return KeyValue(key, t[1], t[2], t[3], t[0], 0)


class KVModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = KVStore()
        self.states: dict[int, State] = {1: {}}
        self.rev = 1
        self.compacted = 0

    def _commit(self, state: State, changed: bool) -> None:
        if changed:
            self.rev += 1
            self.states[self.rev] = state

    @rule(key=keys, value=values)
    def put(self, key: bytes, value: bytes) -> None:
        resp, events = self.store.put(Put(key, value))
        state = dict(self.states[self.rev])
        model_put(state, self.rev + 1, key, value)
        self._commit(state, True)
        assert resp.revision == self.rev
        assert [e.kv for e in events] == [as_kv(key, state[key])]

    @rule(key=keys, end=range_ends)
    def delete(self, key: bytes, end: bytes) -> None:
        resp, events = self.store.delete_range(DeleteRange(key, end))
        before = self.states[self.rev]
        state = dict(before)
        changed = model_delete(state, key, end)
        self._commit(state, changed)
        assert resp.revision == self.rev
        assert resp.deleted == len(before) - len(state)
        assert [e.prev_kv for e in events] == [as_kv(k, before[k]) for k in sorted(before) if k not in state]

    @rule(
        key=keys,
        version=st.integers(0, 3),
        result=st.sampled_from(list(CompareResult)),
        puts=st.lists(st.tuples(keys, values), max_size=3),
        dels=st.lists(st.tuples(keys, range_ends), max_size=2),
        fail_put=st.tuples(keys, values),
    )
    def txn(
        self,
        key: bytes,
        version: int,
        result: CompareResult,
        puts: list[tuple[bytes, bytes]],
        dels: list[tuple[bytes, bytes]],
        fail_put: tuple[bytes, bytes],
    ) -> None:
        ops: list[Any] = [Put(k, v) for k, v in puts]
        # interleave deletes between puts so later ops must see earlier ones
        for i, (k, e) in enumerate(dels):
            ops.insert(min(2 * i + 1, len(ops)), DeleteRange(k, e))
        req = Txn(
            (Compare(result, CompareTarget.VERSION, key, version=version),),
            tuple(ops),
            (Put(*fail_put),),
        )
        resp, _ = self.store.txn(req)
        state = dict(self.states[self.rev])
        actual = state[key][3] if key in state else 0
        holds = {
            CompareResult.EQUAL: actual == version,
            CompareResult.NOT_EQUAL: actual != version,
            CompareResult.GREATER: actual > version,
            CompareResult.LESS: actual < version,
        }[result]
        changed = False
        for op in ops if holds else [Put(*fail_put)]:
            if isinstance(op, Put):
                model_put(state, self.rev + 1, op.key, op.value)
                changed = True
            else:
                changed = model_delete(state, op.key, op.range_end) or changed
        self._commit(state, changed)
        assert resp.succeeded is holds
        assert resp.revision == self.rev

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        target = data.draw(st.integers(0, self.rev + 1))
        if target <= self.compacted:
            with pytest.raises(errors.Compacted):
                self.store.compact(target)
        elif target > self.rev:
            with pytest.raises(errors.FutureRevision):
                self.store.compact(target)
        else:
            self.store.compact(target)
            for r in [r for r in self.states if r < target]:
                del self.states[r]
            self.compacted = target

    @rule(key=keys, end=range_ends, data=st.data())
    def range_at(self, key: bytes, end: bytes, data: st.DataObject) -> None:
        rev = data.draw(st.integers(-1, self.rev + 1))
        req = Range(key, end, revision=rev)
        if rev > self.rev:
            with pytest.raises(errors.FutureRevision):
                self.store.range(req)
            return
        at = self.rev if rev <= 0 else rev
        if at < self.compacted:
            with pytest.raises(errors.Compacted):
                self.store.range(req)
            return
        state = self.states[at]
        expected = tuple(as_kv(k, state[k]) for k in sorted(state) if in_range(k, key, end))
        resp = self.store.range(req)
        assert resp.kvs == expected and resp.count == len(expected) and resp.revision == self.rev

    @precondition(lambda self: self.rev > self.compacted + 1)
    @rule(key=keys, end=range_ends, data=st.data())
    def history(self, key: bytes, end: bytes, data: st.DataObject) -> None:
        start = data.draw(st.integers(self.compacted + 1, self.rev + 1))
        expected = []
        for r in range(max(start, 2), self.rev + 1):
            before, after = self.states[r - 1], self.states[r]
            for k in sorted(set(before) | set(after)):
                if not in_range(k, key, end) or before.get(k) == after.get(k):
                    continue
                prev = as_kv(k, before[k]) if k in before else None
                if k in after:
                    expected.append((EventType.PUT, as_kv(k, after[k]), prev))
                else:
                    expected.append((EventType.DELETE, KeyValue(k, 0, r, 0, b"", 0), prev))
        got = [(e.type, e.kv, e.prev_kv) for e in self.store.history(key, end, start)]
        assert got == expected

    @invariant()
    def revisions_agree(self) -> None:
        assert self.store.revision == self.rev
        assert self.store.compact_revision == self.compacted
        assert len(self.store) == len(self.states[self.rev])

    @invariant()
    def snapshot_round_trips_and_history_is_trimmed(self) -> None:
        obj = self.store.to_obj()
        assert KVStore.from_obj(obj).to_obj() == obj
        for _, recs in obj[2]:
            assert recs and recs[0][2] != 0  # no history starts with a tombstone
            assert sum(1 for r in recs if r[0] <= self.compacted) <= 1  # compaction dropped the rest


KVModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, derandomize=True
)
TestKVModel = KVModel.TestCase
