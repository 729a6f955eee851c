"""StateMachine: apply, dedup, leases, read path, snapshot/restore and the state hash."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv import errors
from raftkv.state.commands import (
    Command,
    Compact,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    EventType,
    LeaseGrant,
    LeaseGrantResponse,
    LeaseRevoke,
    LeaseRevokeResponse,
    Put,
    PutResponse,
    Range,
    RequestId,
    Txn,
    TxnResponse,
    encode_command,
)
from raftkv.state.machine import ApplyResult, StateMachine


class Driver:
    """Feeds commands to a machine at increasing indexes, as the replica would."""

    def __init__(self, machine: StateMachine | None = None, term: int = 2) -> None:
        self.m = machine or StateMachine()
        self.term = term
        self.counter = 0

    def apply(self, cmd: Command, *, term: int | None = None, rid: RequestId | None = None) -> ApplyResult:
        if rid is None:
            self.counter += 1
            rid = RequestId(1, 42, self.counter)
        return self.m.apply(self.m.applied_index + 1, term or self.term, encode_command(rid, cmd))


def norm(r: ApplyResult) -> tuple[object, ...]:
    """An ApplyResult comparable by value (exceptions compare by identity)."""
    err = None if r.error is None else (type(r.error), r.error.message)
    return (r.request_id, r.response, err, r.events, r.duplicate)


def test_noop_entry_only_moves_applied_index() -> None:
    m = StateMachine()
    before = m.kv.to_obj()
    result = m.apply(1, 1, b"")
    assert result == ApplyResult(None, None, None, ())
    assert m.applied_index == 1 and m.kv.to_obj() == before


def test_apply_refuses_old_indexes_and_allows_gaps() -> None:
    m = StateMachine()
    m.apply(3, 1, b"")  # conf-change entries go elsewhere, so indexes may skip
    with pytest.raises(errors.InvariantViolation):
        m.apply(3, 1, b"")


def test_undecodable_entry_is_an_error_result() -> None:
    m = StateMachine()
    result = m.apply(1, 1, b"\x93garbage")
    assert isinstance(result.error, errors.Internal) and result.request_id is None
    assert m.applied_index == 1 and m.kv.revision == 1


def test_put_response_and_events() -> None:
    d = Driver()
    result = d.apply(Put(b"k", b"v"))
    assert result.request_id == RequestId(1, 42, 1)
    assert result.response == PutResponse(2, None) and result.error is None
    assert [(e.type, e.kv.key) for e in result.events] == [(EventType.PUT, b"k")]


def test_store_errors_become_results_and_change_nothing() -> None:
    d = Driver()
    d.apply(Put(b"k", b"v"))
    snap = d.m.snapshot()
    result = d.apply(Txn((), (Put(b"a", b"1"), Put(b"missing", ignore_value=True)), ()))
    assert (
        isinstance(result.error, errors.InvalidArgument)
        and result.error.message == "etcdserver: key not found"
    )
    assert result.response is None and result.events == ()
    result = d.apply(Compact(5))
    assert isinstance(result.error, errors.FutureRevision)
    # only the applied index and dedup counter moved
    m2 = StateMachine()
    m2.restore(snap)
    assert d.m.kv.to_obj() == m2.kv.to_obj()


def test_dedup_skips_duplicates_and_reordered_counters() -> None:
    d = Driver()
    rid = RequestId(7, 1, 5)
    assert not d.apply(Put(b"k", b"1"), rid=rid).duplicate
    dup = d.apply(Put(b"k", b"1"), rid=rid)
    assert dup == ApplyResult(rid, None, None, (), duplicate=True)
    assert d.apply(Put(b"k", b"2"), rid=RequestId(7, 1, 4)).duplicate  # older counter
    assert not d.apply(Put(b"k", b"3"), rid=RequestId(7, 2, 1)).duplicate  # another nonce
    assert not d.apply(Put(b"k", b"4"), rid=RequestId(8, 1, 5)).duplicate  # another member
    assert d.m.kv.revision == 4 and d.m.kv.get(b"k").version == 3  # type: ignore[union-attr]


def test_unsafe_no_dedup_applies_twice() -> None:
    d = Driver(StateMachine(unsafe_no_dedup=True))
    rid = RequestId(7, 1, 5)
    d.apply(Put(b"k", b"1"), rid=rid)
    result = d.apply(Put(b"k", b"1"), rid=rid)
    assert not result.duplicate and d.m.kv.get(b"k").version == 2  # type: ignore[union-attr]


def test_lease_grant_and_put_attach() -> None:
    d = Driver()
    assert d.apply(LeaseGrant(10, 30)).response == LeaseGrantResponse(1, 10, 30)
    assert d.m.kv.revision == 1  # grant does not change the revision
    assert isinstance(d.apply(LeaseGrant(10, 60)).error, errors.LeaseExists)
    assert isinstance(d.apply(Put(b"k", b"v", lease=11)).error, errors.LeaseNotFound)
    assert isinstance(d.apply(Put(b"k", b"v", lease=-3)).error, errors.LeaseNotFound)
    d.apply(Put(b"k", b"v", lease=10))
    d.apply(Put(b"j", b"v", lease=10))
    assert d.m.leases.keys(10) == (b"j", b"k")
    d.apply(Put(b"k", b"v2", ignore_lease=True))
    assert d.m.leases.keys(10) == (b"j", b"k")
    d.apply(Put(b"k", b"v3"))  # lease 0 detaches
    assert d.m.leases.keys(10) == (b"j",)
    d.apply(LeaseGrant(-5, 10))  # negative ids are valid
    d.apply(Txn((), (Put(b"j", b"x", lease=-5),), ()))
    assert d.m.leases.keys(10) == () and d.m.leases.keys(-5) == (b"j",)
    d.apply(DeleteRange(b"j"))
    assert d.m.leases.keys(-5) == ()


def test_revoke_deletes_keys_at_one_revision() -> None:
    d = Driver()
    d.apply(LeaseGrant(10, 30))
    for k in (b"c", b"a", b"b"):
        d.apply(Put(k, b"v", lease=10))
    d.apply(Put(b"other", b"v"))
    result = d.apply(LeaseRevoke(10))
    assert result.response == LeaseRevokeResponse(6) and d.m.kv.revision == 6
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in result.events] == [
        (EventType.DELETE, b"a", 6),
        (EventType.DELETE, b"b", 6),
        (EventType.DELETE, b"c", 6),
    ]
    assert 10 not in d.m.leases and d.m.kv.get(b"other") is not None
    assert isinstance(d.apply(LeaseRevoke(10)).error, errors.LeaseNotFound)
    assert isinstance(d.apply(LeaseRevoke(0)).error, errors.LeaseNotFound)
    assert isinstance(d.apply(Put(b"a", b"v", lease=10)).error, errors.LeaseNotFound)


def test_revoke_without_keys_keeps_revision() -> None:
    d = Driver()
    d.apply(LeaseGrant(3, 30))
    result = d.apply(LeaseRevoke(3))
    assert result.response == LeaseRevokeResponse(1) and result.events == () and 3 not in d.m.leases


def test_expiry_revoke_of_another_term_is_ignored() -> None:
    d = Driver(term=5)
    d.apply(LeaseGrant(3, 30))
    d.apply(Put(b"k", b"v", lease=3))
    result = d.apply(LeaseRevoke(3, leader_term=4))
    assert result.response == LeaseRevokeResponse(2) and result.error is None and result.events == ()
    assert d.m.stale_revokes_ignored == 1 and 3 in d.m.leases and d.m.kv.get(b"k") is not None
    result = d.apply(LeaseRevoke(3, leader_term=5))
    assert len(result.events) == 1 and 3 not in d.m.leases and d.m.stale_revokes_ignored == 1


def test_read_path() -> None:
    d = Driver()
    d.apply(Put(b"k", b"v"))
    before = d.m.snapshot()
    assert d.m.read(Range(b"k")).kvs[0].value == b"v"  # type: ignore[union-attr]
    txn = Txn((Compare(CompareResult.EQUAL, CompareTarget.VALUE, b"k", value=b"v"),), (Range(b"k"),), ())
    resp = d.m.read(txn)
    assert isinstance(resp, TxnResponse) and resp.succeeded and resp.revision == 2
    with pytest.raises(errors.InvalidArgument):
        d.m.read(Txn((), (), (Put(b"x", b"1"),)))
    with pytest.raises(errors.FutureRevision):
        d.m.read(Range(b"k", revision=3))
    assert d.m.snapshot() == before


def _busy_driver() -> Driver:
    d = Driver()
    d.apply(LeaseGrant(9, 30))
    d.apply(Put(b"a", b"1", lease=9))
    d.apply(Put(b"b", b"2"))
    d.apply(Put(b"a", b"3", lease=9))
    d.apply(DeleteRange(b"b"))
    d.apply(Put(b"c", b"4"))
    d.apply(Compact(3))
    d.apply(Put(b"d", b"5"), rid=RequestId(2, 1, 1))
    return d


def test_snapshot_restore_gives_equal_state() -> None:
    d = _busy_driver()
    data = d.m.snapshot()
    m2 = StateMachine()
    m2.restore(data)
    assert m2.state_hash() == d.m.state_hash() and m2.snapshot() == data
    assert m2.applied_index == d.m.applied_index
    assert m2.kv.compact_revision == 3 and m2.leases.keys(9) == (b"a",)
    # identical results for further applies, including dedup and leases
    d2 = Driver(m2)
    d2.counter = d.counter
    further: list[tuple[Command, RequestId | None]] = [
        (Put(b"d", b"dup"), RequestId(2, 1, 1)),
        (LeaseRevoke(9), None),
        (Range(b"a", revision=4), None),
        (Txn((), (Put(b"e", b"6"),), ()), None),
    ]
    for cmd, rid in further:
        assert norm(d.apply(cmd, rid=rid)) == norm(d2.apply(cmd, rid=rid))
    assert d.m.state_hash() == d2.m.state_hash()


def test_state_hash_distinguishes_states() -> None:
    a, b = _busy_driver(), _busy_driver()
    assert a.m.state_hash() == b.m.state_hash()
    b.apply(Put(b"z", b""))
    assert a.m.state_hash() != b.m.state_hash()
    a.apply(Put(b"z", b"x"))
    assert a.m.state_hash() != b.m.state_hash()
    empty = StateMachine()
    empty.restore(StateMachine.empty_snapshot())
    assert empty.state_hash() == StateMachine().state_hash() != a.m.state_hash()


def test_state_hash_is_stable_across_processes() -> None:
    # PYTHONHASHSEED differs between interpreters, so set iteration order would show up here.
    code = "from tests.state.test_state_machine import _busy_driver;print(_busy_driver().m.state_hash())"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=str(__import__("pathlib").Path(__file__).parents[2]),
        ).stdout
        for seed in ("1", "2")
    }
    assert outs == {f"{_busy_driver().m.state_hash()}\n"}


def test_restore_refuses_garbage_and_keeps_state() -> None:
    d = _busy_driver()
    before = d.m.state_hash()
    for bad in (b"", b"\x01\x02", StateMachine.empty_snapshot()[:-1], b"\x95\x02\x00\x90\x90\x90"):
        with pytest.raises(ValueError):
            d.m.restore(bad)
    assert d.m.state_hash() == before


cmds = st.one_of(
    st.builds(
        Put, st.sampled_from([b"a", b"b", b"c"]), st.sampled_from([b"", b"1"]), st.sampled_from([0, 1, 2])
    ),
    st.builds(DeleteRange, st.sampled_from([b"a", b"b"]), st.sampled_from([b"", b"c", b"\x00"])),
    st.builds(LeaseGrant, st.sampled_from([1, 2]), st.just(10)),
    st.builds(LeaseRevoke, st.sampled_from([1, 2]), st.sampled_from([0, 2, 3])),
    st.builds(Compact, st.integers(0, 12)),
    st.builds(
        Txn,
        st.just((Compare(CompareResult.EQUAL, CompareTarget.VERSION, b"a"),)),
        st.just((Put(b"b", b"t", lease=1),)),
        st.just((DeleteRange(b"a"),)),
    ),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(cmds, max_size=25), st.integers(0, 25))
def test_snapshot_at_any_point_then_replay_converges(commands: list[Command], cut: int) -> None:
    full = Driver(term=2)
    results = [full.apply(c) for c in commands]
    part = Driver(term=2)
    for c in commands[:cut]:
        part.apply(c)
    restored = StateMachine()
    restored.restore(part.m.snapshot())
    tail = Driver(restored, term=2)
    tail.counter = part.counter
    assert [norm(tail.apply(c)) for c in commands[cut:]] == [norm(r) for r in results[cut:]]
    assert tail.m.state_hash() == full.m.state_hash()
    # the lease invariant: every attached key is live and carries that lease
    for info in full.m.leases.list():
        for key in info.keys:
            kv = full.m.kv.get(key)
            assert kv is not None and kv.lease == info.id
