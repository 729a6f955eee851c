"""What a leader knows of each peer: replication ``Progress``, vote tallies, quorum commit index.

Owns: per-peer ``Progress`` (probe / replicate / snapshot states and the in-flight window), the
``ProgressTracker`` (voters, learners, their progress, the votes of the current election) and the
quorum arithmetic. It must not send messages or touch the log; ``raft/core.py`` decides.

Invariants: ``match < next``; ``match`` never decreases; a learner never counts for a quorum or a
vote; ``committed()`` is the largest index replicated on a quorum of voters (by ``match``).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from raftkv.raft.types import ConfState


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class VoteResult(enum.IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


class Inflights:
    """The last indexes of appends sent to a follower in replicate state and not yet acknowledged."""

    __slots__ = ("_indexes", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._indexes: deque[int] = deque()

    def add(self, index: int) -> None:
        self._indexes.append(index)

    def free_le(self, index: int) -> None:
        """Forget every append up to and including ``index`` (it was acknowledged)."""
        while self._indexes and self._indexes[0] <= index:
            self._indexes.popleft()

    def free_first_one(self) -> None:
        if self._indexes:
            self._indexes.popleft()

    def full(self) -> bool:
        return len(self._indexes) >= self.capacity

    def reset(self) -> None:
        self._indexes.clear()


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower (etcd-io/raft's ``tracker.Progress``)."""

    match: int
    next: int
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    pending_snapshot: int = 0
    recent_active: bool = False
    probe_sent: bool = False
    is_learner: bool = False

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        """Record an acknowledgement of ``index``; False when it is stale (changes nothing)."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def sent_entries(self, last_index: int) -> None:
        """Account for an append carrying entries up to ``last_index``."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """Handle a rejected append for ``rejected``; False when the rejection is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __str__(self) -> str:
        return f"{self.state.name} match={self.match} next={self.next}"


def quorum_index(matches: list[int]) -> int:
    """The largest value that at least a majority of ``matches`` reach (0 for no voters)."""
    if not matches:
        return 0
    ordered = sorted(matches)
    return ordered[(len(ordered) - 1) // 2]


@dataclass(slots=True)
class ProgressTracker:
    """Membership, per-peer progress and the votes of the running election."""

    max_inflight: int
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()
    progress: dict[int, Progress] = field(default_factory=dict)
    votes: dict[int, bool] = field(default_factory=dict)

    def conf_state(self) -> ConfState:
        return ConfState(voters=self.voters, learners=self.learners)

    def set_conf(self, conf_state: ConfState, next_index: int) -> None:
        """Adopt ``conf_state``, keeping the progress of members that stay."""
        self.voters = tuple(sorted(conf_state.voters))
        self.learners = tuple(sorted(conf_state.learners))
        members = set(self.voters) | set(self.learners)
        for node_id in list(self.progress):
            if node_id not in members:
                del self.progress[node_id]
        for node_id in members:
            pr = self.progress.get(node_id)
            if pr is None:
                pr = Progress(match=0, next=next_index, inflights=Inflights(self.max_inflight))
                pr.recent_active = True
                self.progress[node_id] = pr
            pr.is_learner = node_id in self.learners

    def is_voter(self, node_id: int) -> bool:
        return node_id in self.voters

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def committed(self) -> int:
        return quorum_index([self.progress[v].match for v in self.voters if v in self.progress])

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        """Record ``node_id``'s first answer in this election; later duplicates are ignored."""
        if node_id not in self.votes:
            self.votes[node_id] = granted

    def vote_result(self, votes: dict[int, bool] | None = None) -> VoteResult:
        tally = self.votes if votes is None else votes
        granted = sum(1 for v in self.voters if tally.get(v) is True)
        rejected = sum(1 for v in self.voters if tally.get(v) is False)
        quorum = len(self.voters) // 2 + 1
        if granted >= quorum:
            return VoteResult.WON
        if rejected > len(self.voters) - quorum:
            return VoteResult.LOST
        return VoteResult.PENDING

    def quorum_active(self, self_id: int) -> bool:
        """Whether a quorum of voters (counting this node) was heard from recently."""
        active = {v: (v == self_id or self.progress[v].recent_active) for v in self.voters}
        return self.vote_result(active) is VoteResult.WON
