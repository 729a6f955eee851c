"""KVStore: range selection and every filter, sort and limit rule; put flags; delete ranges;
compaction (API.md §2, §3.1-§3.3, §3.5)."""

from __future__ import annotations

from typing import Any

import pytest

from raftkv import errors
from raftkv.state.commands import (
    DeleteRange,
    EventType,
    KeyValue,
    Put,
    Range,
    SortOrder,
    SortTarget,
)
from raftkv.state.mvcc import KVStore


def keys_of(store: KVStore, req: Range) -> list[bytes]:
    return [kv.key for kv in store.range(req).kvs]


@pytest.fixture
def abc() -> KVStore:
    """a=1 (rev 2), b=2 (rev 3), c=3 (rev 4), ab=4 (rev 5), \\xff\\xff=5 (rev 6)."""
    s = KVStore()
    for k, v in [(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"ab", b"4"), (b"\xff\xff", b"5")]:
        s.put(Put(k, v))
    return s


def test_fresh_store_is_at_revision_one() -> None:
    s = KVStore()
    assert s.revision == 1
    resp = s.range(Range(b"a"))
    assert (resp.revision, resp.kvs, resp.count, resp.more) == (1, (), 0, False)


def test_put_creates_and_versions_keys() -> None:
    s = KVStore()
    resp, events = s.put(Put(b"k", b"v1"))
    assert resp.revision == 2 and resp.prev_kv is None
    assert events[0].type == EventType.PUT and events[0].prev_kv is None
    assert events[0].kv == KeyValue(b"k", 2, 2, 1, b"v1", 0)
    s.put(Put(b"k", b"v1"))  # the same value still makes a new revision and version
    assert s.get(b"k") == KeyValue(b"k", 2, 3, 2, b"v1", 0)
    s.delete_range(DeleteRange(b"k"))
    s.put(Put(b"k", b"v2"))
    assert s.get(b"k") == KeyValue(b"k", 5, 5, 1, b"v2", 0)


@pytest.mark.parametrize(
    ("key", "end", "expected"),
    [
        (b"a", b"", [b"a"]),
        (b"zz", b"", []),
        (b"a", b"b", [b"a", b"ab"]),
        (b"a", b"c", [b"a", b"ab", b"b"]),
        (b"ab", b"\x00", [b"ab", b"b", b"c", b"\xff\xff"]),
        (b"\x00", b"\x00", [b"a", b"ab", b"b", b"c", b"\xff\xff"]),
        (b"\x00", b"", []),
        (b"c", b"a", []),
        (b"b", b"b", []),
        (b"\xff", b"\x00", [b"\xff\xff"]),
    ],
)
def test_range_key_selection(abc: KVStore, key: bytes, end: bytes, expected: list[bytes]) -> None:
    assert keys_of(abc, Range(key, end)) == expected


def test_range_empty_key_is_invalid(abc: KVStore) -> None:
    with pytest.raises(errors.InvalidArgument, match="etcdserver: key is not provided"):
        abc.range(Range(b"", b"\x00"))


def test_range_revisions(abc: KVStore) -> None:
    abc.put(Put(b"a", b"new"))  # rev 7
    abc.delete_range(DeleteRange(b"b"))  # rev 8
    assert abc.range(Range(b"a", revision=6)).kvs[0].value == b"1"
    old = abc.range(Range(b"\x00", b"\x00", revision=3))
    assert [kv.key for kv in old.kvs] == [b"a", b"b"]
    assert old.revision == 8  # the header shows the current revision, not the one asked for
    assert keys_of(abc, Range(b"b", revision=7)) == [b"b"]
    assert keys_of(abc, Range(b"b", revision=8)) == []
    assert keys_of(abc, Range(b"b", revision=-3)) == []  # negative = current
    assert abc.range(Range(b"a", revision=1)).kvs == ()
    with pytest.raises(errors.FutureRevision, match="future revision"):
        abc.range(Range(b"a", revision=9))


def test_count_is_before_filters_and_limit(abc: KVStore) -> None:
    resp = abc.range(Range(b"\x00", b"\x00", limit=2))
    assert resp.count == 5 and resp.more and [kv.key for kv in resp.kvs] == [b"a", b"ab"]
    resp = abc.range(Range(b"\x00", b"\x00", min_mod_revision=4))
    assert resp.count == 5 and [kv.key for kv in resp.kvs] == [b"ab", b"c", b"\xff\xff"]


def test_limit_equal_to_result_is_not_more(abc: KVStore) -> None:
    resp = abc.range(Range(b"\x00", b"\x00", limit=5))
    assert not resp.more and len(resp.kvs) == 5
    resp = abc.range(Range(b"\x00", b"\x00", limit=-1))
    assert not resp.more and len(resp.kvs) == 5


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"min_mod_revision": 3}, [b"ab", b"b", b"c", b"\xff\xff"]),
        ({"max_mod_revision": 3}, [b"a", b"b"]),
        ({"min_create_revision": 5}, [b"ab", b"\xff\xff"]),
        ({"max_create_revision": 2}, [b"a"]),
        ({"min_mod_revision": 3, "max_mod_revision": 4}, [b"b", b"c"]),
        ({"min_mod_revision": -5}, [b"a", b"ab", b"b", b"c", b"\xff\xff"]),
        ({"max_mod_revision": -1}, []),
        ({"max_create_revision": -1}, []),
    ],
)
def test_range_filters(abc: KVStore, kwargs: dict[str, Any], expected: list[bytes]) -> None:
    resp = abc.range(Range(b"\x00", b"\x00", **kwargs))
    assert [kv.key for kv in resp.kvs] == expected
    assert resp.count == 5


def test_filters_use_mod_and_create_separately() -> None:
    s = KVStore()
    s.put(Put(b"x", b"1"))  # create 2
    s.put(Put(b"y", b"1"))  # create 3
    s.put(Put(b"x", b"2"))  # mod 4
    assert keys_of(s, Range(b"\x00", b"\x00", min_mod_revision=4)) == [b"x"]
    assert keys_of(s, Range(b"\x00", b"\x00", min_create_revision=3)) == [b"y"]


def _sorted_store() -> KVStore:
    s = KVStore()
    s.put(Put(b"k1", b"c"))  # 2
    s.put(Put(b"k2", b"a"))  # 3
    s.put(Put(b"k3", b"b"))  # 4
    s.put(Put(b"k1", b"c"))  # 5: k1 version 2
    s.put(Put(b"k3", b"a"))  # 6: k3 version 2, value a ties with k2
    return s


@pytest.mark.parametrize(
    ("order", "target", "expected"),
    [
        (SortOrder.NONE, SortTarget.KEY, [b"k1", b"k2", b"k3"]),
        (SortOrder.ASCEND, SortTarget.KEY, [b"k1", b"k2", b"k3"]),
        (SortOrder.DESCEND, SortTarget.KEY, [b"k3", b"k2", b"k1"]),
        (SortOrder.ASCEND, SortTarget.VALUE, [b"k2", b"k3", b"k1"]),
        (SortOrder.DESCEND, SortTarget.VALUE, [b"k1", b"k2", b"k3"]),  # ties keep key order
        (SortOrder.NONE, SortTarget.VALUE, [b"k2", b"k3", b"k1"]),  # NONE + non-KEY = ASCEND
        (SortOrder.ASCEND, SortTarget.VERSION, [b"k2", b"k1", b"k3"]),
        (SortOrder.DESCEND, SortTarget.VERSION, [b"k1", b"k3", b"k2"]),
        (SortOrder.ASCEND, SortTarget.CREATE, [b"k1", b"k2", b"k3"]),
        (SortOrder.DESCEND, SortTarget.CREATE, [b"k3", b"k2", b"k1"]),
        (SortOrder.ASCEND, SortTarget.MOD, [b"k2", b"k1", b"k3"]),
        (SortOrder.DESCEND, SortTarget.MOD, [b"k3", b"k1", b"k2"]),
        (7, SortTarget.MOD, [b"k1", b"k2", b"k3"]),  # unknown order: no sorting
        (SortOrder.DESCEND, 9, [b"k1", b"k2", b"k3"]),  # unknown target: no sorting
    ],
)
def test_range_sort(order: int, target: int, expected: list[bytes]) -> None:
    assert keys_of(_sorted_store(), Range(b"k", b"l", sort_order=order, sort_target=target)) == expected


def test_sort_happens_before_limit() -> None:
    resp = _sorted_store().range(Range(b"k", b"l", sort_order=SortOrder.DESCEND, limit=1))
    assert [kv.key for kv in resp.kvs] == [b"k3"] and resp.more and resp.count == 3


def test_keys_only_and_count_only(abc: KVStore) -> None:
    resp = abc.range(Range(b"a", b"b", keys_only=True))
    assert resp.kvs == (KeyValue(b"a", 2, 2, 1, b"", 0), KeyValue(b"ab", 5, 5, 1, b"", 0))
    resp = abc.range(Range(b"\x00", b"\x00", count_only=True, limit=1))
    assert resp.kvs == () and resp.count == 5 and not resp.more


def test_put_prev_kv() -> None:
    s = KVStore()
    resp, _ = s.put(Put(b"k", b"1", prev_kv=True))
    assert resp.prev_kv is None
    resp, _ = s.put(Put(b"k", b"2", prev_kv=True))
    assert resp.prev_kv == KeyValue(b"k", 2, 2, 1, b"1", 0)
    resp, events = s.put(Put(b"k", b"3"))
    assert resp.prev_kv is None
    assert events[0].prev_kv == KeyValue(b"k", 2, 3, 2, b"2", 0)  # events always carry it


def test_put_ignore_value_and_lease() -> None:
    s = KVStore()
    s.put(Put(b"k", b"v", lease=7))
    s.put(Put(b"k", ignore_value=True, lease=8))
    assert s.get(b"k") == KeyValue(b"k", 2, 3, 2, b"v", 8)
    s.put(Put(b"k", b"w", ignore_lease=True))
    assert s.get(b"k") == KeyValue(b"k", 2, 4, 3, b"w", 8)
    s.put(Put(b"k", ignore_value=True, ignore_lease=True))  # touch
    assert s.get(b"k") == KeyValue(b"k", 2, 5, 4, b"w", 8)
    s.put(Put(b"k", ignore_value=True))  # no lease in the request detaches it
    assert s.get(b"k") == KeyValue(b"k", 2, 6, 5, b"w", 0)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (Put(b"", b"v"), "etcdserver: key is not provided"),
        (Put(b"k", b"v", ignore_value=True), "etcdserver: value is provided"),
        (Put(b"k", lease=3, ignore_lease=True), "etcdserver: lease is provided"),
        (Put(b"missing", ignore_value=True), "etcdserver: key not found"),
        (Put(b"missing", ignore_lease=True), "etcdserver: key not found"),
        (Put(b"gone", ignore_value=True), "etcdserver: key not found"),
    ],
)
def test_put_errors_write_nothing(req: Put, message: str) -> None:
    s = KVStore()
    s.put(Put(b"k", b"v"))
    s.put(Put(b"gone", b"v"))
    s.delete_range(DeleteRange(b"gone"))
    before = s.to_obj()
    with pytest.raises(errors.InvalidArgument) as info:
        s.put(req)
    assert info.value.message == message
    assert s.to_obj() == before


def test_put_lease_check() -> None:
    s = KVStore()
    with pytest.raises(errors.LeaseNotFound):
        s.put(Put(b"k", b"v", lease=5), lambda lease: lease == 4)
    assert s.revision == 1 and s.get(b"k") is None
    s.put(Put(b"k", b"v", lease=4), lambda lease: lease == 4)
    assert s.get(b"k") == KeyValue(b"k", 2, 2, 1, b"v", 4)


def test_delete_range(abc: KVStore) -> None:
    resp, events = abc.delete_range(DeleteRange(b"a", b"b", prev_kv=True))
    assert (resp.revision, resp.deleted) == (7, 2)
    assert [kv.key for kv in resp.prev_kvs] == [b"a", b"ab"]
    assert [(e.type, e.kv, e.prev_kv is not None) for e in events] == [
        (EventType.DELETE, KeyValue(b"a", 0, 7, 0, b"", 0), True),
        (EventType.DELETE, KeyValue(b"ab", 0, 7, 0, b"", 0), True),
    ]
    resp, events = abc.delete_range(DeleteRange(b"a", b"b"))  # nothing left: no revision
    assert (resp.revision, resp.deleted, events) == (7, 0, ())
    resp, _ = abc.delete_range(DeleteRange(b"c"))
    assert resp.prev_kvs == () and resp.deleted == 1 and resp.revision == 8
    resp, _ = abc.delete_range(DeleteRange(b"\x00", b"\x00"))
    assert resp.deleted == 2 and abc.range(Range(b"\x00", b"\x00")).count == 0
    with pytest.raises(errors.InvalidArgument, match="key is not provided"):
        abc.delete_range(DeleteRange(b""))


def test_compaction_rules(abc: KVStore) -> None:
    abc.put(Put(b"a", b"new"))  # 7
    abc.delete_range(DeleteRange(b"b"))  # 8
    abc.put(Put(b"c", b"x"))  # 9
    with pytest.raises(errors.Compacted):
        abc.compact(0)
    with pytest.raises(errors.FutureRevision):
        abc.compact(10)
    assert abc.compact(8).revision == 9
    assert abc.compact_revision == 8 and abc.revision == 9
    with pytest.raises(errors.Compacted, match="has been compacted"):
        abc.range(Range(b"a", revision=7))
    with pytest.raises(errors.Compacted):
        abc.compact(8)
    at8 = abc.range(Range(b"\x00", b"\x00", revision=8))
    assert [(kv.key, kv.value) for kv in at8.kvs] == [
        (b"a", b"new"),
        (b"ab", b"4"),
        (b"c", b"3"),
        (b"\xff\xff", b"5"),
    ]
    # the tombstone of b (at rev 8 = the compact revision) is gone with its history
    assert abc.history(b"b", b"", 8) == []
    abc.compact(9)  # the current revision may be compacted
    assert abc.range(Range(b"c", revision=9)).kvs[0].value == b"x"


def test_compaction_frees_history() -> None:
    s = KVStore()
    for i in range(50):
        s.put(Put(b"k", b"%d" % i))
    s.put(Put(b"gone", b"v"))
    s.delete_range(DeleteRange(b"gone"))
    s.compact(s.revision)
    assert s.to_obj()[2] == [[b"k", [(51, 2, 50, b"49", 0)]]]


def test_compaction_keeps_history_above_revision() -> None:
    s = KVStore()
    s.put(Put(b"k", b"1"))  # 2
    s.put(Put(b"k", b"2"))  # 3
    s.delete_range(DeleteRange(b"k"))  # 4
    s.put(Put(b"k", b"3"))  # 5
    s.compact(3)
    assert s.range(Range(b"k", revision=3)).kvs[0].value == b"2"
    assert s.range(Range(b"k", revision=4)).kvs == ()
    assert [e.type for e in s.history(b"k", b"", 4)] == [EventType.DELETE, EventType.PUT]
    s.compact(4)
    assert s.range(Range(b"k", revision=4)).kvs == ()
    assert s.range(Range(b"k")).kvs[0] == KeyValue(b"k", 5, 5, 1, b"3", 0)


def test_history_for_watch_catch_up() -> None:
    s = KVStore()
    s.put(Put(b"a", b"1"))  # 2
    s.put(Put(b"b", b"1"))  # 3
    s.put(Put(b"a", b"2"))  # 4
    s.delete_range(DeleteRange(b"a", b"c"))  # 5
    events = s.history(b"a", b"c", 3)
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (EventType.PUT, b"b", 3),
        (EventType.PUT, b"a", 4),
        (EventType.DELETE, b"a", 5),
        (EventType.DELETE, b"b", 5),
    ]
    assert events[1].prev_kv == KeyValue(b"a", 2, 2, 1, b"1", 0)
    assert events[0].prev_kv is None
    s.compact(4)
    with pytest.raises(errors.Compacted):
        s.history(b"a", b"c", 3)


def test_snapshot_object_round_trip(abc: KVStore) -> None:
    abc.delete_range(DeleteRange(b"c"))
    copy = KVStore.from_obj(abc.to_obj())
    assert copy.to_obj() == abc.to_obj()
    assert copy.range(Range(b"\x00", b"\x00", revision=4)) == abc.range(Range(b"\x00", b"\x00", revision=4))
    copy.compact(7)
    assert copy.get(b"c") is None and copy.revision == abc.revision
    with pytest.raises(ValueError):
        KVStore.from_obj([1, 0, [[b"k", []]]])
