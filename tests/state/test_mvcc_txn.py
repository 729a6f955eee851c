"""KVStore.txn: every compare rule and execution rule of API.md §3.4."""

from __future__ import annotations

import pytest

from raftkv import errors
from raftkv.state.commands import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    DeleteRangeResponse,
    EventType,
    Put,
    PutResponse,
    Range,
    RangeResponse,
    Txn,
)
from raftkv.state.mvcc import KVStore

EQ, GT, LT, NE = CompareResult.EQUAL, CompareResult.GREATER, CompareResult.LESS, CompareResult.NOT_EQUAL
VERSION, CREATE, MOD, VALUE, LEASE = (
    CompareTarget.VERSION,
    CompareTarget.CREATE,
    CompareTarget.MOD,
    CompareTarget.VALUE,
    CompareTarget.LEASE,
)


@pytest.fixture
def store() -> KVStore:
    """foo=bar (create 2), foo=bar2 (mod 3, version 2, lease 9), zoo=z (4)."""
    s = KVStore()
    s.put(Put(b"foo", b"bar"))
    s.put(Put(b"foo", b"bar2", lease=9))
    s.put(Put(b"zoo", b"z"))
    return s


def holds(store: KVStore, *compares: Compare) -> bool:
    resp, events = store.txn(Txn(compares, (), ()))
    assert events == ()
    return resp.succeeded


@pytest.mark.parametrize(
    ("compare", "expected"),
    [
        (Compare(EQ, VERSION, b"foo", version=2), True),
        (Compare(GT, VERSION, b"foo", version=1), True),
        (Compare(LT, VERSION, b"foo", version=2), False),
        (Compare(NE, VERSION, b"foo", version=2), False),
        (Compare(EQ, CREATE, b"foo", create_revision=2), True),
        (Compare(LT, CREATE, b"foo", create_revision=3), True),
        (Compare(EQ, MOD, b"foo", mod_revision=3), True),
        (Compare(GT, MOD, b"foo", mod_revision=3), False),
        (Compare(EQ, VALUE, b"foo", value=b"bar2"), True),
        (Compare(GT, VALUE, b"foo", value=b"bar"), True),  # bytewise: bar2 > bar
        (Compare(LT, VALUE, b"foo", value=b"bas"), True),
        (Compare(NE, VALUE, b"foo", value=b"bar2"), False),
        (Compare(EQ, LEASE, b"foo", lease=9), True),
        (Compare(EQ, LEASE, b"zoo", lease=0), True),
        # missing key: numbers compare against 0; VALUE is always false
        (Compare(EQ, VERSION, b"nope", version=0), True),
        (Compare(EQ, CREATE, b"nope"), True),
        (Compare(LT, MOD, b"nope", mod_revision=1), True),
        (Compare(EQ, LEASE, b"nope"), True),
        (Compare(EQ, VALUE, b"nope", value=b""), False),
        (Compare(NE, VALUE, b"nope", value=b"x"), False),
        # the union member that does not match the target is ignored: the target reads 0
        (Compare(EQ, VERSION, b"foo", mod_revision=3), False),
        (Compare(EQ, MOD, b"nope", version=5), True),
        # unknown result: false; unknown target: result 0
        (Compare(9, VERSION, b"foo", version=2), False),
        (Compare(EQ, 42, b"foo"), True),
    ],
)
def test_single_key_compares(store: KVStore, compare: Compare, expected: bool) -> None:
    assert holds(store, compare) is expected


def test_compares_are_anded_and_empty_is_true(store: KVStore) -> None:
    assert holds(store)
    assert holds(store, Compare(EQ, VERSION, b"foo", version=2), Compare(EQ, VALUE, b"zoo", value=b"z"))
    assert not holds(store, Compare(EQ, VERSION, b"foo", version=2), Compare(EQ, VALUE, b"zoo", value=b"y"))


def test_range_compare_must_hold_for_every_key(store: KVStore) -> None:
    assert holds(store, Compare(GT, MOD, b"a", b"\x00", mod_revision=2))
    assert not holds(store, Compare(GT, MOD, b"a", b"\x00", mod_revision=3))
    assert holds(store, Compare(EQ, VERSION, b"a", b"fop", version=2))  # only foo in range
    # an empty range behaves as a missing key
    assert holds(store, Compare(EQ, VERSION, b"p", b"q", version=0))
    assert not holds(store, Compare(NE, VALUE, b"p", b"q", value=b"x"))
    assert holds(store, Compare(LT, CREATE, b"\x00", b"\x00", create_revision=5))


def test_compare_sees_deleted_key_as_missing(store: KVStore) -> None:
    store.delete_range(DeleteRange(b"zoo"))
    assert holds(store, Compare(EQ, VERSION, b"zoo", version=0))
    assert not holds(store, Compare(EQ, VALUE, b"zoo", value=b"z"))


def test_compare_with_empty_key_is_invalid(store: KVStore) -> None:
    with pytest.raises(errors.InvalidArgument, match="key is not provided"):
        store.txn(Txn((Compare(EQ, VERSION, b""),), (Put(b"x", b"1"),), ()))
    assert store.get(b"x") is None


def test_branches(store: KVStore) -> None:
    ok = (Compare(EQ, VALUE, b"foo", value=b"bar2"),)
    bad = (Compare(EQ, VALUE, b"foo", value=b"nope"),)
    resp, events = store.txn(Txn(ok, (Put(b"s", b"1"),), (Put(b"f", b"1"),)))
    assert resp.succeeded and resp.revision == 5 and [e.kv.key for e in events] == [b"s"]
    resp, events = store.txn(Txn(bad, (Put(b"s", b"2"),), (Put(b"f", b"1"),)))
    assert not resp.succeeded and resp.revision == 6 and [e.kv.key for e in events] == [b"f"]


def test_revision_only_if_something_changed(store: KVStore) -> None:
    resp, events = store.txn(Txn((), (Range(b"foo"), DeleteRange(b"missing")), ()))
    assert resp.revision == 4 and store.revision == 4 and events == ()
    resp, events = store.txn(Txn((), (Put(b"a", b"1"), Put(b"b", b"1"), DeleteRange(b"zoo")), ()))
    assert resp.revision == 5 == store.revision
    assert {e.kv.mod_revision for e in events} == {5} and len(events) == 3
    assert [e.type for e in events] == [EventType.PUT, EventType.PUT, EventType.DELETE]


def test_later_ops_see_earlier_ops(store: KVStore) -> None:
    resp, _ = store.txn(
        Txn(
            (),
            (
                Range(b"foo"),
                Put(b"foo", b"new"),
                Range(b"foo"),
                DeleteRange(b"zoo"),
                Range(b"zoo"),
                Put(b"zoo", b"again"),
                Range(b"zoo"),
            ),
            (),
        )
    )
    r0, p1, r2, d3, r4, p5, r6 = resp.responses
    assert isinstance(r0, RangeResponse) and r0.kvs[0].value == b"bar2" and r0.revision == 4
    assert isinstance(p1, PutResponse) and p1.revision == 5
    assert isinstance(r2, RangeResponse) and r2.kvs[0].value == b"new" and r2.revision == 5
    assert r2.kvs[0].version == 3 and r2.kvs[0].mod_revision == 5
    assert isinstance(d3, DeleteRangeResponse) and d3.deleted == 1 and d3.revision == 5
    assert isinstance(r4, RangeResponse) and r4.kvs == ()
    assert isinstance(p5, PutResponse) and p5.revision == 5
    assert isinstance(r6, RangeResponse) and r6.kvs[0].value == b"again" and r6.kvs[0].version == 1
    assert r6.kvs[0].create_revision == 5
    assert store.get(b"zoo") is not None and store.get(b"zoo").version == 1  # type: ignore[union-attr]
    # history at 4 still shows the state before the txn
    assert store.range(Range(b"zoo", revision=4)).kvs[0].value == b"z"


def test_nested_txn_compares_see_the_state_before_the_txn(store: KVStore) -> None:
    """etcd decides every txn on the path, nested ones too, before any op runs (compareToPath):
    the parent's earlier put does not make the nested compare true."""
    inner = Txn(
        (Compare(EQ, VALUE, b"foo", value=b"changed"),),
        (Put(b"inner", b"yes"),),
        (Put(b"inner", b"no"),),
    )
    resp, events = store.txn(Txn((), (Put(b"foo", b"changed"), inner), ()))
    assert resp.succeeded and resp.revision == 5
    nested = resp.responses[1]
    assert not nested.succeeded and nested.revision == 5  # type: ignore[union-attr]
    assert store.get(b"inner").value == b"no"  # type: ignore[union-attr]
    assert len(events) == 2


@pytest.mark.parametrize(
    "bad_op",
    [
        Put(b"missing", ignore_value=True),
        Put(b"k", b"v", lease=77),
        Range(b"foo", revision=99),
        Range(b""),
        Txn((), (Put(b"", b"x"),), ()),
        Txn((Compare(EQ, VERSION, b""),), (), ()),
    ],
)
def test_runtime_error_aborts_whole_txn(store: KVStore, bad_op: object) -> None:
    before = store.to_obj()
    txn = Txn((), (Put(b"foo", b"lost"), DeleteRange(b"zoo"), bad_op), ())  # type: ignore[arg-type]
    with pytest.raises(errors.RaftkvError):
        store.txn(txn, lambda lease: lease == 9)
    assert store.to_obj() == before and store.revision == 4
    # the store still works afterwards
    resp, _ = store.txn(Txn((), (Put(b"foo", b"kept"),), ()))
    assert resp.revision == 5 and store.get(b"foo").version == 3  # type: ignore[union-attr]


def test_compacted_range_aborts_txn(store: KVStore) -> None:
    store.compact(3)
    with pytest.raises(errors.Compacted):
        store.txn(Txn((), (Put(b"x", b"1"), Range(b"foo", revision=2)), ()))
    assert store.get(b"x") is None


def test_errors_in_branch_not_taken_are_not_raised(store: KVStore) -> None:
    resp, _ = store.txn(
        Txn(
            (Compare(EQ, VALUE, b"foo", value=b"bar2"),), (Put(b"ok", b"1"),), (Put(b"x", ignore_value=True),)
        )
    )
    assert resp.succeeded and store.get(b"ok") is not None


def test_txn_put_lease_validated_only_in_executed_branch(store: KVStore) -> None:
    with pytest.raises(errors.LeaseNotFound):
        store.txn(Txn((), (Put(b"k", b"v", lease=5),), ()), lambda lease: False)
    resp, _ = store.txn(Txn((), (), (Put(b"k", b"v", lease=5),)), lambda lease: False)
    assert resp.succeeded and store.get(b"k") is None


def test_same_key_twice_in_one_txn_keeps_history_consistent(store: KVStore) -> None:
    # The API layer rejects duplicate keys, but the store must still stay consistent if it sees one.
    store.txn(Txn((), (Put(b"n", b"1"), Put(b"n", b"2")), ()))
    assert store.get(b"n").version == 2 and store.get(b"n").value == b"2"  # type: ignore[union-attr]
    store.txn(Txn((), (Put(b"m", b"1"), DeleteRange(b"m")), ()))
    assert store.get(b"m") is None
    assert store.range(Range(b"m", revision=6)).kvs == ()
    store.txn(Txn((), (Put(b"foo", b"x"), DeleteRange(b"foo")), ()))
    assert store.get(b"foo") is None
    assert store.range(Range(b"foo", revision=6)).kvs[0].value == b"bar2"
    store.compact(store.revision)
    assert store.range(Range(b"\x00", b"\x00")).count == 2
