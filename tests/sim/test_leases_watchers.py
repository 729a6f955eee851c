"""The simulator's lease model, lease checks and watchers: each passes on a legal trace and fails on
one mutation."""

from __future__ import annotations

import pytest

from raftkv.raft.types import EntryType
from raftkv.sim.checks import OpRecord, RefModel, Violation, build_model
from raftkv.sim.leases import ExpiryDecision, LeaseBook
from raftkv.sim.watchers import NodeWatcher, check_watchers
from raftkv.state.commands import (
    EventType,
    LeaseGrant,
    LeaseRevoke,
    Put,
    RequestId,
    encode_command,
)
from raftkv.state.machine import StateMachine
from raftkv.state.watch import WatchHub, WatchMessage


def rid(n: int, member: int = 1000) -> RequestId:
    return RequestId(member, 1, n)


LEASE = 7
COMMANDS: list[tuple[RequestId, object, int]] = [  # (request id, command, entry term)
    (rid(1), LeaseGrant(LEASE, 2), 1),
    (rid(2), Put(b"b", b"1", lease=LEASE), 1),
    (rid(3), Put(b"a", b"2", lease=LEASE), 1),
    (rid(4), Put(b"c", b"3"), 1),
    (rid(1, member=501), LeaseRevoke(LEASE, leader_term=1), 2),  # a stale expiry: ignored
    (rid(2, member=501), LeaseRevoke(LEASE, leader_term=2), 2),
    (rid(5), Put(b"d", b"4", lease=LEASE), 2),  # the lease is gone: refused
]


def committed() -> dict[int, tuple[int, EntryType, bytes]]:
    log = {}
    for index, (r, cmd, term) in enumerate(COMMANDS, start=1):
        log[index] = (term, EntryType.NORMAL, encode_command(r, cmd))  # type: ignore[arg-type]
    return log


def test_ref_model_revokes_attached_keys_at_one_revision_and_ignores_stale_revokes() -> None:
    model = build_model(committed(), len(COMMANDS))
    assert model.results[rid(1, member=501)].stale
    revoke = model.results[rid(2, member=501)]
    assert (revoke.changed, revoke.deleted, revoke.revision) == (True, 2, 5)
    assert model.results[rid(5)].error
    assert sorted(model.live) == [b"c"]
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in model.events] == [
        (EventType.PUT, b"b", 2),
        (EventType.PUT, b"a", 3),
        (EventType.PUT, b"c", 4),
        (EventType.DELETE, b"a", 5),
        (EventType.DELETE, b"b", 5),
    ]


def test_ref_model_agrees_with_the_state_machine() -> None:
    machine = StateMachine()
    for index, (term, _type, data) in committed().items():
        machine.apply(index, term, data)
    model = build_model(committed(), len(COMMANDS))
    assert machine.kv.revision == model.revision
    assert len(machine.leases) == len(model.leases) == 0


def keepalive(op_id: int, call: int, ret: int, ttl: int = 2) -> OpRecord:
    return OpRecord(
        op_id, 0, "keepalive", b"", 1, call, lease=LEASE, return_t=ret, outcome="ok", response=ttl
    )


def book_with_expiry(decided_at: int) -> tuple[LeaseBook, RefModel]:
    model = build_model(committed(), len(COMMANDS))
    book = LeaseBook()
    book.decided(rid(2, member=501), ExpiryDecision(LEASE, decided_at, 1, 2))
    book.on_applied(rid(2, member=501), decided_at + 10)
    return book, model


def test_lease_check_accepts_an_expiry_a_full_ttl_after_the_last_keepalive() -> None:
    book, model = book_with_expiry(decided_at=3000)
    book.check([keepalive(0, 1000, 1005)], model, {LEASE: 2}, rate_max=1.0)


def test_lease_check_flags_an_expiry_decided_within_ttl_of_a_keepalive() -> None:
    book, model = book_with_expiry(decided_at=2500)
    with pytest.raises(Violation, match="expired early"):
        book.check([keepalive(0, 1000, 1005)], model, {LEASE: 2}, rate_max=1.0)
    # A faster clock ends the TTL sooner in real time: the same decision is then legal.
    book.check([keepalive(0, 1000, 1005)], model, {LEASE: 2}, rate_max=1.5)


def test_lease_check_ignores_revokes_that_took_no_effect() -> None:
    model = build_model(committed(), len(COMMANDS))
    book = LeaseBook()
    book.decided(rid(1, member=501), ExpiryDecision(LEASE, 1500, 1, 1))  # the stale one
    book.check([keepalive(0, 1000, 1005)], model, {LEASE: 2}, rate_max=1.0)


def test_lease_check_flags_a_keepalive_answered_alive_after_the_revoke_applied() -> None:
    book, model = book_with_expiry(decided_at=3000)
    with pytest.raises(Violation, match="answered alive"):
        book.check([keepalive(0, 3100, 3105)], model, {LEASE: 2}, rate_max=1.0)
    book.check([keepalive(0, 3100, 3105, ttl=0)], model, {LEASE: 2}, rate_max=1.0)


def watched_hub() -> tuple[StateMachine, WatchHub, NodeWatcher]:
    machine = StateMachine()
    hub = WatchHub(machine.kv, lambda _stream: None)
    watcher = NodeWatcher(1)
    watcher.attach(hub)
    return machine, hub, watcher


def apply_all(machine: StateMachine, hub: WatchHub, watcher: NodeWatcher, upto: int) -> None:
    for index, (term, _type, data) in committed().items():
        if machine.applied_index < index <= upto:
            result = machine.apply(index, term, data)
            if result.events:
                hub.publish(result.events[0].kv.mod_revision, result.events)
            hub.sync()
            watcher.collect(hub)


def test_watcher_sees_the_model_events_also_across_a_restart() -> None:
    machine, hub, watcher = watched_hub()
    apply_all(machine, hub, watcher, 3)
    # The node restarts from a snapshot of its state: the watch resumes after the last revision.
    restarted = StateMachine()
    restarted.restore(machine.snapshot())
    hub = WatchHub(restarted.kv, lambda _stream: None)
    watcher.attach(hub)
    apply_all(restarted, hub, watcher, len(COMMANDS))
    assert watcher.resumes == 1
    check_watchers([watcher], build_model(committed(), len(COMMANDS)))


def test_watcher_flags_a_repeated_revision_and_check_flags_a_missing_event() -> None:
    machine, hub, watcher = watched_hub()
    apply_all(machine, hub, watcher, len(COMMANDS))
    last = tuple(e for e in watcher.events if e.kv.mod_revision == watcher.last_rev)
    with pytest.raises(Violation, match="duplicate or out of order"):
        watcher._take(WatchMessage(0, watcher.last_rev, last))
    with pytest.raises(Violation, match="out of order in one message"):
        NodeWatcher(2)._take(WatchMessage(0, watcher.last_rev, last[::-1]))
    model = build_model(committed(), len(COMMANDS))
    check_watchers([watcher], model)
    short = NodeWatcher(2, events=watcher.events[:-1])
    with pytest.raises(Violation, match="saw 4 events"):
        check_watchers([watcher, short], model)
