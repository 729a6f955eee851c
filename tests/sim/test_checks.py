"""The simulator's checkers: each invariant passes on a legal trace and fails on one mutation."""

from __future__ import annotations

import pytest

from raftkv.raft.types import Entry, EntryType, HardState, Message, MessageType
from raftkv.sim.checks import OpRecord, RefModel, SafetyChecker, Violation, build_model, check_history
from raftkv.state.commands import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    DeleteRangeResponse,
    KeyValue,
    Put,
    PutResponse,
    Range,
    RangeResponse,
    RequestId,
    Txn,
    TxnResponse,
    encode_command,
)


def e(term: int, index: int, data: bytes = b"x") -> Entry:
    return Entry(term=term, index=index, data=data)


def test_election_safety() -> None:
    c = SafetyChecker(2)
    assert c.on_leader(1, 3) is True
    assert c.on_leader(1, 3) is False
    c.on_leader(2, 4)
    with pytest.raises(Violation, match="election safety"):
        c.on_leader(3, 3)


def test_one_vote_per_term() -> None:
    c = SafetyChecker(2)
    c.on_vote(1, 5, 2, "vote response")
    c.on_vote(1, 5, 2, "durable hard state")
    c.on_vote(1, 5, 0, "recovered")  # no vote is not a second vote
    with pytest.raises(Violation, match="one vote per term"):
        c.on_vote(1, 5, 3, "vote response")


def test_state_machine_safety_and_quorum_durability() -> None:
    c = SafetyChecker(2)
    c.on_apply(1, e(1, 1, b"a"), synced_on=2)
    c.on_apply(2, e(1, 1, b"a"), synced_on=3)
    with pytest.raises(Violation, match="state-machine safety"):
        c.on_apply(3, e(2, 1, b"b"), synced_on=3)
    with pytest.raises(Violation, match="durable on a quorum"):
        c.on_apply(1, e(1, 2), synced_on=1)


def test_log_matching_against_committed_entries() -> None:
    c = SafetyChecker(2)
    c.on_apply(1, e(1, 1, b"a"), synced_on=2)
    c.on_persist_entries(2, None, [e(1, 1, b"a"), e(1, 2)], 0)
    c.on_persist_entries(3, None, [e(2, 1, b"other")], 0)  # a stale, uncommitted divergent entry
    with pytest.raises(Violation, match="log matching"):
        c.on_persist_entries(3, None, [e(1, 1, b"b")], 0)


def test_leader_append_only() -> None:
    c = SafetyChecker(2)
    c.on_persist_entries(1, 2, [e(2, 5)], 4)
    c.on_persist_entries(1, 2, [e(2, 6), e(2, 7)], 5)
    c.on_persist_entries(1, 3, [e(3, 6)], 7)  # a new term's first batch is exempt
    with pytest.raises(Violation, match="append-only"):
        c.on_persist_entries(1, 2, [e(2, 7)], 7)


def test_leader_completeness() -> None:
    c = SafetyChecker(2)
    for i in (1, 2, 3):
        c.on_apply(1, e(1, i), synced_on=2)
    c.check_leader_completeness(2, 2, {1: 1, 2: 1, 3: 1}.get)
    c.check_leader_completeness(2, 2, lambda i: None if i <= 2 else 1)  # compacted is covered
    with pytest.raises(Violation, match="leader completeness"):
        c.check_leader_completeness(3, 2, lambda i: 1 if i < 3 else 0)


def test_monotonic_commit_and_applied_across_restarts() -> None:
    c = SafetyChecker(2)
    c.on_start(1, 0, 0)
    c.on_status(1, 5, 4)
    with pytest.raises(Violation, match="commit went back"):
        c.on_status(1, 4, 4)
    c.on_snapshot_saved(1, 3)
    c.on_start(1, 3, 4)  # a restart begins again at the durable snapshot
    c.on_status(1, 4, 3)
    with pytest.raises(Violation, match="applied went back"):
        c.on_status(1, 4, 2)
    with pytest.raises(Violation, match="durable snapshot went back"):
        c.on_start(1, 2, 4)
    c.on_start(1, 3, 4)
    c.on_hard_state(1, HardState(2, 1, 5))
    with pytest.raises(Violation, match="durable commit went back"):
        c.on_hard_state(1, HardState(2, 1, 4))


def test_figure8_rule_for_leaders() -> None:
    c = SafetyChecker(2)
    c.on_status(1, 2, 2, leader_term=3, commit_term=3)
    with pytest.raises(Violation, match="Figure 8"):
        c.on_status(1, 3, 2, leader_term=3, commit_term=2)


def test_acks_only_after_durability() -> None:
    c = SafetyChecker(2)
    vote = Message(MessageType.VOTE_RESP, to=2, frm=1, term=4)
    c.on_ack_sent(vote, HardState(4, 2, 0), lambda i: True)
    with pytest.raises(Violation, match="vote sent before"):
        c.on_ack_sent(vote, HardState(4, 0, 0), lambda i: True)
    app = Message(MessageType.APP_RESP, to=2, frm=1, term=4, index=7)
    c.on_ack_sent(app, None, lambda i: i <= 7)
    c.on_ack_sent(Message(MessageType.APP_RESP, to=2, frm=1, index=9, reject=True), None, lambda i: False)
    with pytest.raises(Violation, match="append acknowledged before"):
        c.on_ack_sent(app, None, lambda i: i <= 6)


# -- oracle B -----------------------------------------------------------------------------------


def rid(n: int) -> RequestId:
    return RequestId(1000, 1, n)


def committed_log(cmds: list[tuple[RequestId, object]]) -> dict[int, tuple[int, EntryType, bytes]]:
    log = {1: (1, EntryType.NORMAL, b"")}  # the leader's no-op
    for i, (r, cmd) in enumerate(cmds, start=2):
        log[i] = (1, EntryType.NORMAL, encode_command(r, cmd))  # type: ignore[arg-type]
    return log


def kv(key: bytes, value: bytes, create: int, mod: int, version: int) -> KeyValue:
    return KeyValue(key=key, create_revision=create, mod_revision=mod, version=version, value=value, lease=0)


def legal_history() -> tuple[list[OpRecord], RefModel]:
    cas = Txn(
        compare=(Compare(CompareResult.EQUAL, CompareTarget.MOD, b"a", mod_revision=2),),
        success=(Put(b"a", b"v3"),),
        failure=(Range(b"a"),),
    )
    cmds = [
        (rid(1), Put(b"a", b"v1")),
        (rid(1), Put(b"a", b"v1")),
        (rid(3), cas),
        (rid(4), DeleteRange(b"a")),
    ]
    model = build_model(committed_log(cmds), 5)
    ops = [
        OpRecord(
            0,
            0,
            "put",
            b"a",
            1,
            0,
            value=b"v1",
            request_id=rid(1),
            return_t=10,
            outcome="ok",
            response=PutResponse(2, None),
        ),
        OpRecord(
            1,
            1,
            "get",
            b"a",
            2,
            11,
            return_t=12,
            outcome="ok",
            response=RangeResponse(2, (kv(b"a", b"v1", 2, 2, 1),), False, 1),
        ),
        OpRecord(
            2,
            0,
            "cas",
            b"a",
            1,
            13,
            value=b"v3",
            expect_mod=2,
            request_id=rid(3),
            return_t=20,
            outcome="ok",
            response=TxnResponse(3, True, (PutResponse(3, None),)),
        ),
        OpRecord(
            3, 2, "sget", b"a", 3, 21, return_t=22, outcome="ok", response=RangeResponse(1, (), False, 0)
        ),
        OpRecord(
            4,
            1,
            "delete",
            b"a",
            2,
            23,
            request_id=rid(4),
            return_t=30,
            outcome="ok",
            response=DeleteRangeResponse(4, 1, ()),
        ),
        OpRecord(5, 2, "put", b"b", 3, 31, value=b"x", request_id=rid(9), return_t=40, outcome="fail"),
        OpRecord(6, 3, "put", b"b", 3, 31, value=b"y", request_id=rid(10), return_t=40, outcome="unknown"),
    ]
    return ops, model


def test_model_replays_with_dedup_and_revisions() -> None:
    _ops, model = legal_history()
    assert model.duplicates == 1
    assert model.revision == 4
    assert model.at(b"a", 3) == kv(b"a", b"v3", 2, 3, 2)
    assert model.at(b"a", 4) is None and model.at(b"a", 1) is None


def test_legal_history_passes() -> None:
    ops, model = legal_history()
    check_history(ops, model)


@pytest.mark.parametrize(
    ("index", "change", "reason"),
    [
        (0, {"response": PutResponse(3, None)}, "differs from the committed order"),
        (0, {"request_id": rid(42)}, "acknowledged write lost"),
        (1, {"response": RangeResponse(2, (), False, 0)}, "returned None"),
        (1, {"response": RangeResponse(1, (), False, 0)}, "real-time order"),
        (1, {"response": RangeResponse(9, (), False, 0)}, "future revision"),
        (2, {"response": TxnResponse(3, False, ())}, "txn succeeded"),
        (4, {"response": DeleteRangeResponse(4, 0, ())}, "delete count"),
        (5, {"request_id": rid(1)}, "reported as not applied was committed"),
    ],
)
def test_single_mutations_fail(index: int, change: dict[str, object], reason: str) -> None:
    ops, model = legal_history()
    for k, v in change.items():
        setattr(ops[index], k, v)
    with pytest.raises(Violation, match=reason):
        check_history(ops, model)


def test_stale_serializable_read_is_allowed_but_not_a_wrong_one() -> None:
    ops, model = legal_history()
    ops[3].response = RangeResponse(2, (kv(b"a", b"v1", 2, 2, 1),), False, 1)  # stale but consistent
    check_history(ops, model)
    ops[3].response = RangeResponse(2, (kv(b"a", b"zz", 2, 2, 1),), False, 1)
    with pytest.raises(Violation, match="returned"):
        check_history(ops, model)


def test_build_model_refuses_a_hole() -> None:
    log = committed_log([(rid(1), Put(b"a", b"1"))])
    del log[1]
    with pytest.raises(Violation, match="hole"):
        build_model(log, 2)
