"""Validating and applying a single-server ``ConfChange`` to a ``ConfState``.

Owns: the membership rules of ARCHITECTURE.md §4.7 at the level of one change: add a voter (or
promote a learner), add a learner, remove a member. It must not know about progress or the log.

Invariants: the result never has a node both voter and learner; removing the last voter is
refused (``ValueError``), since such a cluster could never commit again.
"""

from __future__ import annotations

from raftkv.raft.types import ConfChange, ConfChangeType, ConfState


def apply_change(conf_state: ConfState, change: ConfChange) -> ConfState:
    voters = set(conf_state.voters)
    learners = set(conf_state.learners)
    node = change.node_id
    if node == 0:
        raise ValueError("a conf change needs a non-zero node id")
    if change.type is ConfChangeType.ADD_NODE:
        learners.discard(node)
        voters.add(node)
    elif change.type is ConfChangeType.ADD_LEARNER:
        if node in voters:
            raise ValueError(f"node {node} is a voter; demoting a voter is not supported")
        learners.add(node)
    elif change.type is ConfChangeType.REMOVE_NODE:
        voters.discard(node)
        learners.discard(node)
        if not voters:
            raise ValueError("removing the last voter")
    return ConfState(voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
