"""The scripted cluster: deterministic output, Ready order, checks, and the Figure 8 scenario."""

from __future__ import annotations

import pytest

from raftkv.raft.types import MessageType, StateRole
from raftkv.sim.checks import Violation
from raftkv.sim.script import ScriptedCluster
from raftkv.state.commands import Put, RequestId, encode_command
from tests.sim.helpers import figure8


def elect_and_write(seed: int) -> ScriptedCluster:
    c = ScriptedCluster(seed)
    c.add_nodes(3)
    c.campaign(1)
    c.stabilize()
    c.propose(2, encode_command(RequestId(9, 1, 1), Put(b"k", b"v")))  # forwarded to the leader
    c.stabilize()
    return c


def test_election_and_replication() -> None:
    c = elect_and_write(1)
    for nid in (1, 2, 3):
        st = c._replica(nid).status()
        assert (st.commit, st.applied, st.lead) == (2, 2, 1), str(st)
    assert c._replica(1).status().role == StateRole.LEADER
    assert c.raft_log(3)[-1].startswith("1/2 ")
    # Votes and append acknowledgements leave only after the fsync of their Ready.
    text = "\n".join(c.output)
    assert "OnSync:\n  2->1 VOTE_RESP term=1" in text


def test_output_is_deterministic() -> None:
    assert elect_and_write(5).output == elect_and_write(5).output


def test_deliver_filters_by_type_and_drops() -> None:
    c = ScriptedCluster(2)
    c.add_nodes(3)
    c.campaign(1)
    c.process_ready(1)
    assert c.deliver(2, type=MessageType.APP) == []
    lines = c.deliver(2, drop=True)
    assert lines == ["dropped: 1->2 PRE_VOTE term=1"]
    assert c.queues[3] and not c.queues[2]


def test_partition_drops_across_groups() -> None:
    c = ScriptedCluster(3)
    c.add_nodes(3)
    c.partition([1], [2, 3])
    c.campaign(1)
    c.stabilize()
    assert c._replica(1).status().role == StateRole.PRE_CANDIDATE
    c.heal()
    c.campaign(1)
    c.stabilize()
    assert c._replica(1).status().role == StateRole.LEADER


def test_crash_restart_and_compact() -> None:
    c = elect_and_write(4)
    c.compact(1)
    assert c._replica(1).storage.first_index() == 3
    c.crash(1)
    c.restart(1)
    st = c._replica(1).status()
    assert (st.commit, st.applied) == (2, 2), str(st)


def test_figure8_leader_commits_only_its_own_term() -> None:
    c = figure8(frozenset())
    st = c._replica(2).status()
    assert (st.role, st.commit) == (StateRole.LEADER, 3), str(st)


def test_figure8_catches_commit_old_term() -> None:
    with pytest.raises(Violation, match="Figure 8"):
        figure8(frozenset({"commit_old_term"}))
