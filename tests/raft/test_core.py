"""Unit tests of the Raft core through ``Replica``/``RawNode``, named after the paper's rules and
the pitfalls of TESTING.md §3 (the row number is in each docstring)."""

from __future__ import annotations

import random

import pytest

from raftkv.errors import ProposalDropped
from raftkv.raft.node import Config, RawNode
from raftkv.raft.storage import MemoryStorage
from raftkv.raft.types import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
    StateRole,
)
from tests.raft.harness import Network


def roles(net: Network) -> dict[int, StateRole]:
    return {i: net.nodes[i].status().role for i in net.ids if i not in net.down}


def terms(net: Network) -> dict[int, int]:
    return {i: net.nodes[i].status().term for i in net.ids if i not in net.down}


# --- §5.2 leader election ----------------------------------------------------------------------


def test_election_by_timeout_elects_exactly_one_leader() -> None:
    net = Network(3, seed=7)
    net.tick_all(30)
    leaders = [i for i, r in roles(net).items() if r is StateRole.LEADER]
    assert len(leaders) == 1
    assert len(set(terms(net).values())) == 1


def test_randomized_election_timeout_in_range() -> None:
    seen = set()
    for seed in range(200):
        storage = MemoryStorage()
        storage.apply_snapshot(Snapshot(meta=SnapshotMeta(conf_state=ConfState(voters=(1, 2, 3)))))
        node = RawNode(Config(id=1, rng=random.Random(seed), election_tick=10), storage)
        seen.add(node.raft.randomized_election_timeout)
    assert seen == set(range(10, 20))


def test_one_vote_per_term() -> None:
    """Pitfall 2: a node votes once per term; a second candidate in that term is rejected."""
    net = Network(3)
    net.nodes[1].campaign()
    net.stabilize()
    assert net.leader() == 1
    # Node 3 has voted for 1 in term 1 (pre-vote off path: check the raw rule directly).
    raft3 = net.nodes[3].raw.raft
    assert raft3.vote == 1
    raft3.lead = 0  # pretend it lost the leader, so only the vote rule can refuse
    raft3.step(Message(type=MessageType.VOTE, to=3, frm=2, term=1, index=99, log_term=99))
    resp = raft3.msgs_after_persist[-1]
    assert resp.type is MessageType.VOTE_RESP and resp.reject


def test_vote_and_append_responses_wait_for_persistence() -> None:
    """Pitfall 2/3: vote and append acknowledgements leave only after the fsync (after persist)."""
    net = Network(3)
    net.nodes[1].campaign()
    # Deliver 1's (pre-)vote requests to 2 by hand and look at 2's Ready.
    net.stabilize()
    net.propose(1, b"x")
    for m in net.sent:
        if m.type in (MessageType.VOTE_RESP, MessageType.APP_RESP) and m.frm == 2:
            break
    else:
        pytest.fail("no responses seen")
    raft2 = net.nodes[2].raw.raft
    raft2.step(Message(type=MessageType.APP, to=2, frm=1, term=raft2.term, index=raft2.log.last_index(),
                       log_term=raft2.log.last_term(), commit=raft2.log.committed,
                       entries=(Entry(term=raft2.term, index=raft2.log.last_index() + 1, data=b"y"),)))
    assert not any(m.type is MessageType.APP_RESP for m in raft2.msgs)
    assert any(m.type is MessageType.APP_RESP for m in raft2.msgs_after_persist)


def test_up_to_date_check_refuses_stale_candidate() -> None:
    """§5.4.1: a voter refuses a candidate whose log is behind its own."""
    net = Network(3)
    net.elect(1)
    net.crash(3)
    net.propose(1, b"a")
    net.propose(1, b"b")
    net.restart(3)
    net.crash(1)
    # 3 has a shorter log: it cannot win against 2.
    for _ in range(100):
        net.tick(3)
        net.stabilize()
        if net.nodes[2].status().role is StateRole.LEADER:
            break
    assert net.nodes[3].status().role is not StateRole.LEADER or net.nodes[3].status().last_index >= 3


def test_candidate_does_not_win_before_its_vote_is_persisted() -> None:
    """Pitfall 2: a single-node candidate becomes leader only after the Ready with its vote."""
    storage = MemoryStorage()
    storage.apply_snapshot(Snapshot(meta=SnapshotMeta(conf_state=ConfState(voters=(1,)))))
    node = RawNode(Config(id=1, rng=random.Random(1), pre_vote=False), storage)
    node.campaign()
    assert node.raft.role is StateRole.CANDIDATE
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 1 and rd.must_sync
    assert node.raft.role is StateRole.CANDIDATE
    node.advance(rd)
    assert node.raft.role is StateRole.LEADER


def test_single_node_commits_only_after_persisting() -> None:
    """Pitfall 3: a single node never commits (or applies) before its own fsync."""
    storage = MemoryStorage()
    storage.apply_snapshot(Snapshot(meta=SnapshotMeta(conf_state=ConfState(voters=(1,)))))
    node = RawNode(Config(id=1, rng=random.Random(1)), storage)
    node.campaign()
    while node.raft.role is not StateRole.LEADER:
        rd = node.ready()
        storage.append(rd.entries)
        if rd.hard_state:
            storage.set_hard_state(rd.hard_state)
        node.advance(rd)
    rd = node.ready()  # the no-op
    assert rd.entries and not rd.committed_entries
    assert node.raft.log.committed == 0
    storage.append(rd.entries)
    node.advance(rd)
    assert node.raft.log.committed == 1
    rd = node.ready()  # applies the no-op
    node.advance(rd)
    node.propose(b"p")
    rd = node.ready()
    assert [e.data for e in rd.entries] == [b"p"] and not rd.committed_entries
    storage.append(rd.entries)
    node.advance(rd)
    rd = node.ready()
    assert [e.data for e in rd.committed_entries] == [b"p"]


# --- pre-vote and check-quorum (pitfall 10) ----------------------------------------------------


def test_prevote_does_not_raise_term_of_partitioned_node() -> None:
    net = Network(3)
    net.elect(1)
    net.isolate(3)
    for _ in range(100):
        net.tick(3)
        net.stabilize()
    assert terms(net)[3] == 1, "pre-vote must never raise the term"
    net.heal()
    net.tick_all(5)
    assert net.leader() == 1 and terms(net) == {1: 1, 2: 1, 3: 1}


def test_without_prevote_a_rejoining_node_disrupts() -> None:
    net = Network(3, unsafe=frozenset({"no_prevote_checkquorum"}))
    net.elect(1)
    net.isolate(3)
    for _ in range(100):
        net.tick(3)
        net.stabilize()
    assert terms(net)[3] > 1


def test_check_quorum_leader_steps_down_when_isolated() -> None:
    net = Network(3)
    net.elect(1)
    net.isolate(1)
    net.tick(1, 20)
    net.stabilize()
    assert roles(net)[1] is StateRole.FOLLOWER


def test_nodes_that_hear_a_leader_ignore_vote_requests() -> None:
    net = Network(3)
    net.elect(1)
    raft2 = net.nodes[2].raw.raft
    raft2.step(Message(type=MessageType.VOTE, to=2, frm=3, term=5, index=100, log_term=5))
    assert raft2.term == 1 and raft2.lead == 1 and not raft2.msgs_after_persist


def test_stale_leader_learns_new_term_from_append_response() -> None:
    net = Network(3)
    net.elect(1)
    net.isolate(1)
    net.tick_all(40)
    new_leader = net.leader()
    assert new_leader in (2, 3)
    net.heal()
    net.stabilize()
    net.tick_all(3)
    assert roles(net)[1] is StateRole.FOLLOWER


# --- §5.3 log replication ----------------------------------------------------------------------


def test_no_op_at_start_of_term() -> None:
    """Pitfall 1: every new leader appends an empty entry of its term."""
    net = Network(3)
    net.elect(2)
    raft2 = net.nodes[2].raw.raft
    last = raft2.log.slice(raft2.log.last_index(), raft2.log.last_index() + 1)[0]
    assert last.term == raft2.term and last.data == b""


def test_conflicting_follower_log_is_repaired() -> None:
    net = Network(3)
    net.elect(1)
    net.propose(1, b"a")
    # 1 is cut off and keeps appending entries nobody else has.
    net.isolate(1)
    for k in range(5):
        net.nodes[1].propose(net.cmd(b"lost%d" % k))
        net.stabilize()
    net.tick_all(40)
    leader = net.leader()
    assert leader in (2, 3)
    net.propose(leader, b"b")
    net.heal()
    net.tick_all(5)
    for i in net.ids:
        assert net.commands(i) == [b"a", b"b"]


def test_duplicate_and_reordered_appends_do_not_truncate() -> None:
    """Pitfall 4: an old append whose entries match never truncates the follower's log."""
    net = Network(3)
    net.elect(1)
    net.propose(1, b"a")
    old_app = [m for m in net.sent if m.type is MessageType.APP and m.to == 2 and m.entries][-1]
    net.propose(1, b"b")
    net.propose(1, b"c")
    last_before = net.nodes[2].status().last_index
    net.nodes[2].step(old_app)
    net.stabilize()
    assert net.nodes[2].status().last_index == last_before
    assert net.commands(2) == [b"a", b"b", b"c"]


def test_stale_append_response_does_not_move_progress() -> None:
    """Pitfall 22: a duplicated old response leaves match and next alone."""
    net = Network(3)
    net.elect(1)
    net.propose(1, b"a")
    net.propose(1, b"b")
    pr = net.nodes[1].raw.raft.tracker.progress[2]
    match, nxt = pr.match, pr.next
    net.nodes[1].step(Message(type=MessageType.APP_RESP, to=1, frm=2, term=1, index=1))
    net.nodes[1].step(
        Message(type=MessageType.APP_RESP, to=1, frm=2, term=1, index=1, reject=True, reject_hint=0)
    )
    assert (pr.match, pr.next) == (match, nxt)


def test_fast_backtracking_uses_few_probes() -> None:
    net = Network(3)
    net.elect(1)
    net.crash(3)
    for k in range(50):
        net.propose(1, b"v%d" % k)
    net.restart(3)
    net.sent.clear()
    net.tick_all(3)
    rejects = [m for m in net.sent if m.type is MessageType.APP_RESP and m.frm == 3 and m.reject]
    assert len(rejects) <= 2
    assert net.commands(3) == net.commands(1)


# --- §5.4.2 commitment (figure 8) --------------------------------------------------------------


def _figure8(unsafe: frozenset[str]) -> Network:
    """Raft paper figure 8 (c): S1 leads term 4 holding (2, term 2), S5 holds (2, term 3)."""
    net = Network(5, unsafe=unsafe | {"no_noop"})
    logs = {
        1: [Entry(1, 1), Entry(2, 2)],
        2: [Entry(1, 1), Entry(2, 2)],
        3: [Entry(1, 1)],
        4: [Entry(1, 1)],
        5: [Entry(1, 1), Entry(3, 2)],
    }
    for i, entries in logs.items():
        net.disks[i].entries = entries
        net.disks[i].hard_state = HardState(term=3, vote=0, commit=1)
        net.restart(i)
    net.cut = {(1, 5), (5, 1)}
    net.elect(1)
    assert net.leader() == 1 and terms(net)[1] == 4
    return net


def test_figure8_leader_does_not_commit_old_term_entry_by_counting() -> None:
    """Pitfall 1: (2, term 2) reaches S1-S4, a majority, but is of an old term: not committed,
    because S5 (term 3 at index 2) could still be elected and overwrite it."""
    net = _figure8(frozenset())
    raft1 = net.nodes[1].raw.raft
    assert all(net.nodes[i].raw.raft.log.match_term(2, 2) for i in (1, 2, 3, 4))
    assert raft1.log.committed == 1


def test_figure8_canary_commits_old_term_entry() -> None:
    net = _figure8(frozenset({"commit_old_term"}))
    assert net.nodes[1].raw.raft.log.committed == 2


# --- proposals ---------------------------------------------------------------------------------


def test_follower_forwards_proposals_to_leader() -> None:
    net = Network(3)
    net.elect(1)
    net.propose(3, b"from3")
    assert all(net.commands(i) == [b"from3"] for i in net.ids)


def test_proposal_without_leader_fails_at_once() -> None:
    net = Network(3)
    with pytest.raises(ProposalDropped):
        net.nodes[2].propose(net.cmd(b"x"))


def test_refuses_local_message_types_from_network() -> None:
    net = Network(3)
    with pytest.raises(ValueError):
        net.nodes[1].step(Message(type=MessageType.HUP, to=1, frm=2))


# --- ReadIndex (pitfall 8) ---------------------------------------------------------------------


def _read(net: Network, i: int, token: object) -> tuple[list[object], list[object]]:
    net.nodes[i].read(token)
    ready: list[object] = []
    failed: list[object] = []
    for _ in range(50):
        for j in net.ids:
            if j in net.down:
                continue
            applied = net.process(j)
            if applied is not None and j == i:
                ready += applied.reads_ready
                failed += applied.reads_failed
        if net.queue:
            batch, net.queue = net.queue, []
            for m in batch:
                if m.to not in net.down:
                    net.nodes[m.to].step(m)
        if ready or failed:
            break
    return ready, failed


@pytest.mark.parametrize("reader", [1, 2])
def test_read_index_on_leader_and_follower(reader: int) -> None:
    net = Network(3)
    net.elect(1)
    net.propose(1, b"a")
    ready, failed = _read(net, reader, "tok")
    assert ready == ["tok"] and not failed
    assert net.nodes[reader].status().applied >= 2


def test_read_index_needs_heartbeat_quorum() -> None:
    """A leader cut off from its quorum never confirms a read."""
    net = Network(3)
    net.elect(1)
    net.isolate(1)
    ready, _ = _read(net, 1, "tok")
    assert ready == []


def test_read_index_waits_for_current_term_commit() -> None:
    """The leader serves ReadIndex only after its no-op commits."""
    net = Network(3)
    net.elect(1)
    net.tick_all(1)
    # Make 2 leader while 3's append responses are dropped, so the no-op cannot commit at once.
    net.isolate(1)
    net.tick_all(40)
    leader = net.leader()
    assert leader is not None
    raft = net.nodes[leader].raw.raft
    assert raft.log.term(raft.log.committed) == raft.term


def test_reads_fail_when_no_leader() -> None:
    net = Network(3)
    ready, failed = _read(net, 2, "tok")
    assert failed == ["tok"] and not ready


def test_local_reads_canary_serves_without_round() -> None:
    net = Network(3, unsafe=frozenset({"local_reads"}))
    net.elect(1)
    net.isolate(1)
    ready, _ = _read(net, 1, "tok")
    assert ready == ["tok"]


# --- snapshots (pitfalls 5, 12, 23) ------------------------------------------------------------


def test_lagging_follower_is_caught_up_by_snapshot() -> None:
    net = Network(3, snapshot_count=10, catchup=2)
    net.elect(1)
    net.crash(3)
    for k in range(40):
        net.propose(1, b"v%d" % k)
    assert net.nodes[1].storage.first_index() > 2
    net.restart(3)
    net.tick_all(5)
    assert any(m.type is MessageType.SNAP and m.to == 3 for m in net.sent)
    assert net.commands(3) == net.commands(1)
    assert net.nodes[3].status().applied == net.nodes[1].status().applied


def test_restart_from_snapshot_and_log_reapplies_nothing_twice() -> None:
    """Pitfall 7: state rebuilt from snapshot + log applies each entry once."""
    net = Network(3, snapshot_count=5, catchup=1)
    net.elect(1)
    for k in range(12):
        net.propose(1, b"v%d" % k)
    net.crash(2)
    net.restart(2)
    net.tick_all(3)
    assert net.commands(2) == [b"v%d" % k for k in range(12)]


def test_append_below_snapshot_is_not_a_conflict() -> None:
    """Pitfall 5: prevLogIndex below the follower's snapshot is acknowledged, not rejected."""
    net = Network(3, snapshot_count=5, catchup=0)
    net.elect(1)
    for k in range(10):
        net.propose(1, b"v%d" % k)
    raft2 = net.nodes[2].raw.raft
    raft2.step(Message(type=MessageType.APP, to=2, frm=1, term=1, index=1, log_term=1, commit=1))
    resp = raft2.msgs_after_persist[-1]
    assert not resp.reject and resp.index == raft2.log.committed


# --- restarts (pitfall 2) ----------------------------------------------------------------------


def test_vote_survives_restart() -> None:
    net = Network(3)
    net.elect(1)
    net.crash(2)
    net.restart(2)
    raft2 = net.nodes[2].raw.raft
    assert raft2.vote == 1 and raft2.term == 1
    raft2.step(Message(type=MessageType.VOTE, to=2, frm=3, term=1, index=50, log_term=1))
    assert raft2.msgs_after_persist[-1].reject


def test_forget_vote_canary_votes_twice() -> None:
    net = Network(3, unsafe=frozenset({"forget_vote"}))
    net.elect(1)
    net.crash(2)
    net.restart(2)
    raft2 = net.nodes[2].raw.raft
    raft2.step(Message(type=MessageType.VOTE, to=2, frm=3, term=1, index=50, log_term=1))
    assert not raft2.msgs_after_persist[-1].reject


def test_hard_state_restored() -> None:
    storage = MemoryStorage()
    storage.apply_snapshot(Snapshot(meta=SnapshotMeta(conf_state=ConfState(voters=(1, 2, 3)))))
    storage.append([Entry(term=1, index=1), Entry(term=2, index=2)])
    storage.set_hard_state(HardState(term=2, vote=3, commit=1))
    node = RawNode(Config(id=1, rng=random.Random(1)), storage)
    assert (node.raft.term, node.raft.vote, node.raft.log.committed) == (2, 3, 1)


# --- leadership transfer -----------------------------------------------------------------------


def test_leadership_transfer() -> None:
    net = Network(3)
    net.elect(1)
    net.propose(1, b"a")
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    assert net.leader() == 3
    assert terms(net)[3] == 2


def test_old_term_ack_is_dropped_when_a_new_term_truncates_before_persisting() -> None:
    """Simulator seed 112: an append acknowledgement queued for the fsync must not leave for the
    old leader once a newer leader truncated the acknowledged entries in the same batch."""
    storage = MemoryStorage()
    storage.apply_snapshot(Snapshot(meta=SnapshotMeta(conf_state=ConfState(voters=(1, 2, 3, 4, 5)))))
    storage.append([Entry(term=1, index=1)])
    storage.set_hard_state(HardState(term=4, vote=0, commit=1))
    node = RawNode(Config(id=3, rng=random.Random(1)), storage)
    old = Message(type=MessageType.APP, to=3, frm=5, term=4, index=1, log_term=1, commit=1,
                  entries=(Entry(term=4, index=2, data=b"old"), Entry(term=4, index=3, data=b"old")))
    new = Message(type=MessageType.APP, to=3, frm=4, term=5, index=1, log_term=1, commit=1,
                  entries=(Entry(term=5, index=2, data=b"new"),))
    node.step(old)
    node.step(new)
    rd = node.ready()
    assert [(e.term, e.index) for e in rd.entries] == [(5, 2)]
    acks = [m for m in rd.messages_after_persist if m.type is MessageType.APP_RESP]
    assert [(m.to, m.term, m.index) for m in acks] == [(4, 5, 2)]
