"""``Raft``: the protocol state machine of one node (etcd-io/raft's ``raft`` struct, in Python).

Owns: the term rules of ``step()``, role transitions (follower, pre-candidate, candidate,
leader), elections with pre-vote and check-quorum, log replication with per-peer progress,
commitment, snapshots, ReadIndex, proposal forwarding, leadership transfer and the pending
conf-change rule. It only ever writes to its outboxes (``msgs``, ``msgs_after_persist``,
``read_states``); the caller (``raft/node.py``) turns them into a ``Ready``.

Must not: do I/O, read a clock, or use randomness other than the injected ``random.Random``.

Invariants: one vote per term (``vote`` is only cleared when the term changes); ``term`` never
decreases; a leader only commits entries of its own term by counting replicas (Raft §5.4.2); a
leader counts its own log only up to what it has persisted, and a candidate its own vote only
after it was persisted (both happen in ``on_persisted``); vote and append responses go to
``msgs_after_persist`` so they leave only after an fsync.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from raftkv.errors import LogCompacted, LogUnavailable, ProposalDropped, SnapshotTemporarilyUnavailable
from raftkv.raft.confchange import apply_change
from raftkv.raft.log import RaftLog
from raftkv.raft.storage import LogStorage
from raftkv.raft.tracker import Progress, ProgressState, ProgressTracker, VoteResult
from raftkv.raft.types import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateRole,
)

CAMPAIGN_TRANSFER = b"CampaignTransfer"

UNSAFE_FLAGS = frozenset(
    {
        "no_noop",  # a new leader appends no no-op and serves ReadIndex before committing in its term
        "commit_old_term",  # a leader commits earlier-term entries by counting replicas
        "no_prevote_checkquorum",  # handled by the caller's Config: pre-vote and check-quorum off
        "local_reads",  # handled by the replica: linearizable reads served locally
        "ack_before_persist",  # handled by the replica: responses sent before the fsync
        "forget_vote",  # handled by the replica: the vote is not persisted
        "no_dedup",  # handled by the state machine
        "no_fsync",  # handled by storage / the simulator's disk
    }
)


@dataclass(slots=True)
class _ReadRequest:
    index: int
    origin: int  # the node that asked (this node for local reads)
    context: bytes
    acks: set[int] = field(default_factory=set)


class Raft:
    def __init__(
        self,
        *,
        node_id: int,
        storage: LogStorage,
        rng: random.Random,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_size_per_msg: int = 1 << 20,
        max_inflight_msgs: int = 256,
        max_uncommitted_size: int = 64 << 20,
        applied: int = 0,
        unsafe: frozenset[str] = frozenset(),
        logger: logging.Logger | None = None,
    ) -> None:
        self.id = node_id
        self.rng = rng
        self.election_timeout = election_tick
        self.heartbeat_timeout = heartbeat_tick
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.max_msg_size = max_size_per_msg
        self.max_uncommitted_size = max_uncommitted_size
        self.unsafe = unsafe
        self.logger = logger or logging.getLogger("raftkv.raft")

        self.log = RaftLog(storage)
        hard_state, conf_state = storage.initial_state()
        self.tracker = ProgressTracker(max_inflight=max_inflight_msgs)
        self.tracker.set_conf(conf_state, self.log.last_index() + 1)

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.role = StateRole.FOLLOWER
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = election_tick

        self.msgs: list[Message] = []
        self.msgs_after_persist: list[Message] = []
        self.read_states: list[ReadState] = []
        self._read_queue: list[bytes] = []
        self._read_requests: dict[bytes, _ReadRequest] = {}
        self._pending_read_msgs: list[Message] = []
        # The kind of the self-vote cast but not yet counted (counted once persisted).
        self.pending_self_vote: MessageType | None = None

        if not hard_state.is_empty():
            self._load_hard_state(hard_state)
        if applied:
            self.log.applied_to(applied)
        self.become_follower(self.term, NONE)

    # --- state ---------------------------------------------------------------------------------

    def _load_hard_state(self, hs: HardState) -> None:
        if hs.commit < self.log.committed or hs.commit > self.log.last_index():
            raise ValueError(
                f"hard state commit {hs.commit} outside [{self.log.committed}, {self.log.last_index()}]"
            )
        self.log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, role=self.role)

    def promotable(self) -> bool:
        return self.tracker.is_voter(self.id) and self.log.unstable.snapshot is None

    def _committed_entry_in_current_term(self) -> bool:
        if "no_noop" in self.unsafe:
            return True
        return self.log.term_or_zero(self.log.committed) == self.term

    # --- sending -------------------------------------------------------------------------------

    def _send(self, m: Message, after_persist: bool = False) -> None:
        if after_persist:
            self.msgs_after_persist.append(m)
        else:
            self.msgs.append(m)

    def _msg(self, to: int, kind: MessageType, **kw: object) -> Message:
        kw.setdefault("term", self.term)
        return Message(type=kind, to=to, frm=self.id, **kw)  # type: ignore[arg-type]

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        pr = self.tracker.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.log.term(prev_index)
            entries = self.log.entries_from(pr.next, self.max_msg_size)
        except (LogCompacted, LogUnavailable):
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        self._send(
            self._msg(
                to,
                MessageType.APP,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        if entries:
            pr.sent_entries(entries[-1].index)
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        try:
            snapshot = self.log.snapshot()
        except SnapshotTemporarilyUnavailable:
            return False
        if snapshot.is_empty():
            raise RuntimeError("need a non-empty snapshot to catch up a follower")
        pr.become_snapshot(snapshot.meta.index)
        self._send(self._msg(to, MessageType.SNAP, snapshot=snapshot))
        return True

    def _bcast_append(self) -> None:
        for peer in self.tracker.progress:
            if peer != self.id:
                self._send_append(peer)

    def _send_heartbeat(self, to: int, context: bytes) -> None:
        commit = min(self.tracker.progress[to].match, self.log.committed)
        self._send(self._msg(to, MessageType.HEARTBEAT, commit=commit, context=context))

    def _bcast_heartbeat(self, context: bytes = b"") -> None:
        if not context and self._read_queue:
            context = self._read_queue[-1]
        for peer in self.tracker.progress:
            if peer != self.id:
                self._send_heartbeat(peer, context)

    # --- role transitions ----------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
            # Responses of an older term still waiting for the fsync may acknowledge entries
            # that this term is about to truncate (they were never persisted): drop them, as
            # the network might have. Found by simulator seed 112 (5 nodes).
            self.msgs_after_persist = [m for m in self.msgs_after_persist if m.term >= term]
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )
        self.lead_transferee = NONE
        self.tracker.reset_votes()
        self.pending_self_vote = None
        last = self.log.last_index()
        for node_id, pr in self.tracker.progress.items():
            pr.match = self.log.last_stable_index() if node_id == self.id else 0
            pr.next = last + 1
            pr.become_probe()
            pr.next = last + 1
            pr.recent_active = node_id == self.id
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self._read_queue = []
        self._read_requests = {}
        self._pending_read_msgs = []

    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        if lead != self.lead or self.role is not StateRole.FOLLOWER:
            self.logger.debug("%d became follower at term %d, leader %d", self.id, term, lead)
        self.lead = lead
        self.role = StateRole.FOLLOWER

    def become_pre_candidate(self) -> None:
        if self.role is StateRole.LEADER:
            raise RuntimeError("invalid transition: leader to pre-candidate")
        # Pre-vote changes neither term nor vote, so a disruptive node cannot raise the term.
        self.tracker.reset_votes()
        self.lead = NONE
        self.role = StateRole.PRE_CANDIDATE
        self.pending_self_vote = MessageType.PRE_VOTE
        self.logger.debug("%d became pre-candidate at term %d", self.id, self.term)

    def become_candidate(self) -> None:
        if self.role is StateRole.LEADER:
            raise RuntimeError("invalid transition: leader to candidate")
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = StateRole.CANDIDATE
        self.pending_self_vote = MessageType.VOTE
        self.logger.debug("%d became candidate at term %d", self.id, self.term)

    def become_leader(self) -> None:
        if self.role is StateRole.FOLLOWER:
            raise RuntimeError("invalid transition: follower to leader")
        self._reset(self.term)
        self.lead = self.id
        self.role = StateRole.LEADER
        self.tracker.progress[self.id].become_replicate()
        self.tracker.progress[self.id].match = self.log.last_stable_index()
        # No conf change may be proposed before this term's first entry commits (the 2015
        # single-server-change bug): everything up to our last index may hold one.
        self.pending_conf_index = self.log.last_index()
        if "no_noop" not in self.unsafe:
            self._append_entries([Entry(term=0, index=0)])
        self.logger.debug("%d became leader at term %d", self.id, self.term)

    # --- elections -----------------------------------------------------------------------------

    def _hup(self, transfer: bool = False) -> None:
        if self.role is StateRole.LEADER or not self.promotable():
            return
        if self._has_unapplied_conf_change():
            return
        if self.pre_vote and not transfer:
            self._campaign(MessageType.PRE_VOTE)
        else:
            self._campaign(MessageType.VOTE, transfer)

    def _has_unapplied_conf_change(self) -> bool:
        if self.log.applied >= self.log.committed:
            return False
        try:
            pending = self.log.slice(self.log.applied + 1, self.log.committed + 1)
        except (LogCompacted, LogUnavailable):
            return False
        return any(e.type is EntryType.CONF_CHANGE for e in pending)

    def _campaign(self, kind: MessageType, transfer: bool = False) -> None:
        if kind is MessageType.PRE_VOTE:
            self.become_pre_candidate()
            term = self.term + 1
        else:
            self.become_candidate()
            term = self.term
        context = CAMPAIGN_TRANSFER if transfer else b""
        for voter in self.tracker.voters:
            if voter == self.id:
                continue
            self._send(
                Message(
                    type=kind,
                    to=voter,
                    frm=self.id,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    context=context,
                )
            )

    def on_persisted(self) -> None:
        """Everything the last Ready asked to persist is durable (called from ``advance``)."""
        if self.pending_self_vote is not None:
            kind = self.pending_self_vote
            self.pending_self_vote = None
            self._poll(self.id, kind, granted=True)
        if self.role is StateRole.LEADER:
            pr = self.tracker.progress.get(self.id)
            if pr is not None and pr.maybe_update(self.log.last_stable_index()) and self._maybe_commit():
                self._release_pending_reads()
                self._bcast_append()

    def _poll(self, node_id: int, kind: MessageType, granted: bool) -> None:
        self.tracker.record_vote(node_id, granted)
        if self.pending_self_vote is not None:
            return  # our own vote is not durable yet: we cannot win before it is
        result = self.tracker.vote_result()
        if result is VoteResult.WON:
            if self.role is StateRole.PRE_CANDIDATE:
                self._campaign(MessageType.VOTE)
            else:
                self.become_leader()
                self._bcast_append()
        elif result is VoteResult.LOST:
            self.become_follower(self.term, NONE)

    # --- step ----------------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Process one message; raises ``ProposalDropped`` for a proposal that cannot proceed."""
        if m.term == 0:
            pass  # local message, or a forwarded proposal / read request
        elif m.term > self.term:
            if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a live leader recently: ignore the disruptive (pre-)vote.
                    return
            if m.type is MessageType.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif m.type is MessageType.PRE_VOTE_RESP and not m.reject:
                pass  # the term rises when we win the pre-vote, not now
            elif m.type in (MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (
                MessageType.HEARTBEAT,
                MessageType.APP,
            ):
                # Tell a stale leader (e.g. after a partition) about our term so it steps down.
                self._send(self._msg(m.frm, MessageType.APP_RESP))
            elif m.type is MessageType.PRE_VOTE:
                self._send(self._msg(m.frm, MessageType.PRE_VOTE_RESP, reject=True))
            return

        if m.type is MessageType.HUP:
            self._hup()
        elif m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role is StateRole.LEADER:
            self._step_leader(m)
        elif self.role in (StateRole.CANDIDATE, StateRole.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.type is MessageType.PRE_VOTE and m.term > self.term)
        )
        vote = m.type is MessageType.VOTE
        resp_type = MessageType.VOTE_RESP if vote else MessageType.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(self._msg(m.frm, resp_type, term=m.term), after_persist=True)
            if vote:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(self._msg(m.frm, resp_type, reject=True), after_persist=True)

    # --- leader --------------------------------------------------------------------------------

    def _append_entries(self, entries: list[Entry]) -> None:
        last = self.log.last_index()
        stamped = [
            Entry(term=self.term, index=last + 1 + i, type=e.type, data=e.data)
            for i, e in enumerate(entries)
        ]
        size = sum(len(e.data) for e in stamped)
        limit = self.max_uncommitted_size
        if self.uncommitted_size > 0 and size > 0 and self.uncommitted_size + size > limit:
            raise ProposalDropped("too much uncommitted data")
        self.uncommitted_size += size
        self.log.append(stamped)

    def _maybe_commit(self) -> bool:
        index = self.tracker.committed()
        if "commit_old_term" in self.unsafe:
            if index > self.log.committed:
                self.log.commit_to(index)
                return True
            return False
        return self.log.maybe_commit(index, self.term)

    def reduce_uncommitted_size(self, entries: list[Entry]) -> None:
        if self.uncommitted_size:
            self.uncommitted_size = max(0, self.uncommitted_size - sum(len(e.data) for e in entries))

    def _step_leader(self, m: Message) -> None:
        kind = m.type
        if kind is MessageType.BEAT:
            self._bcast_heartbeat()
            return
        if kind is MessageType.CHECK_QUORUM:
            if not self.tracker.quorum_active(self.id):
                self.logger.debug("%d stepped down: no quorum active", self.id)
                self.become_follower(self.term, NONE)
            for node_id, progress in self.tracker.progress.items():
                progress.recent_active = node_id == self.id
            return
        if kind is MessageType.PROP:
            self._leader_propose(m)
            return
        if kind is MessageType.READ_INDEX:
            self._leader_read_index(m)
            return

        pr = self.tracker.progress.get(m.frm)
        if pr is None:
            return
        if kind is MessageType.APP_RESP:
            self._handle_append_response(m, pr)
        elif kind is MessageType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                self._ack_read(m.frm, m.context)
        elif kind is MessageType.SNAP_STATUS:
            if pr.state is not ProgressState.SNAPSHOT:
                return
            if m.reject:
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the follower's append response before probing again.
            pr.probe_sent = True
        elif kind is MessageType.UNREACHABLE:
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
        elif kind is MessageType.TRANSFER_LEADER:
            self._leader_transfer(m.frm, pr)

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise ProposalDropped("empty proposal")
        if self.id not in self.tracker.progress:
            raise ProposalDropped("this node was removed from the configuration")
        if self.lead_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress")
        entries = list(m.entries)
        for i, entry in enumerate(entries):
            if entry.type is EntryType.CONF_CHANGE:
                if self.pending_conf_index > self.log.applied:
                    # One change at a time: keep the log position, drop the change.
                    entries[i] = Entry(term=0, index=0)
                else:
                    self.pending_conf_index = self.log.last_index() + i + 1
        self._append_entries(entries)
        self._bcast_append()

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._release_pending_reads()
            self._bcast_append()
        elif was_paused:
            self._send_append(m.frm)
        while self._send_append(m.frm, send_if_empty=False):
            pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(self._msg(m.frm, MessageType.TIMEOUT_NOW))

    def _leader_transfer(self, transferee: int, pr: Progress) -> None:
        if pr.is_learner or transferee == self.id:
            return
        if self.lead_transferee == transferee:
            return
        self.lead_transferee = transferee
        self.election_elapsed = 0
        if pr.match == self.log.last_index():
            self._send(self._msg(transferee, MessageType.TIMEOUT_NOW))
        else:
            self._send_append(transferee)

    # --- ReadIndex -----------------------------------------------------------------------------

    def _leader_read_index(self, m: Message) -> None:
        origin = m.frm if m.frm != NONE else self.id
        if self.tracker.is_singleton():
            self._answer_read(origin, self.log.committed, m.context)
            return
        if not self._committed_entry_in_current_term():
            # The commit index may be stale until our no-op commits (Raft thesis §6.4).
            self._pending_read_msgs.append(m)
            return
        ctx = m.context
        if ctx in self._read_requests:
            return
        request = _ReadRequest(index=self.log.committed, origin=origin, context=ctx, acks={self.id})
        self._read_requests[ctx] = request
        self._read_queue.append(ctx)
        self._bcast_heartbeat(ctx)

    def _release_pending_reads(self) -> None:
        if not self._pending_read_msgs or not self._committed_entry_in_current_term():
            return
        pending, self._pending_read_msgs = self._pending_read_msgs, []
        for m in pending:
            self._leader_read_index(m)

    def _ack_read(self, node_id: int, ctx: bytes) -> None:
        request = self._read_requests.get(ctx)
        if request is None:
            return
        request.acks.add(node_id)
        votes = {v: True for v in request.acks}
        if self.tracker.vote_result(votes) is not VoteResult.WON:
            return
        # Confirming a request also confirms every request queued before it.
        position = self._read_queue.index(ctx)
        released = self._read_queue[: position + 1]
        del self._read_queue[: position + 1]
        for done_ctx in released:
            done = self._read_requests.pop(done_ctx)
            self._answer_read(done.origin, done.index, done.context)

    def _answer_read(self, origin: int, index: int, ctx: bytes) -> None:
        if origin == self.id:
            self.read_states.append(ReadState(index=index, request_ctx=ctx))
        else:
            self._send(self._msg(origin, MessageType.READ_INDEX_RESP, index=index, context=ctx))

    # --- candidate and follower ----------------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        kind = m.type
        if kind is MessageType.PROP:
            raise ProposalDropped("no leader")
        if kind is MessageType.READ_INDEX:
            raise ProposalDropped("no leader")
        if kind is MessageType.APP:
            self.become_follower(m.term, m.frm)
            self._handle_append(m)
        elif kind is MessageType.HEARTBEAT:
            self.become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif kind is MessageType.SNAP:
            self.become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif (kind is MessageType.PRE_VOTE_RESP and self.role is StateRole.PRE_CANDIDATE) or (
            kind is MessageType.VOTE_RESP and self.role is StateRole.CANDIDATE
        ):
            self._poll(m.frm, kind, granted=not m.reject)

    def _step_follower(self, m: Message) -> None:
        kind = m.type
        if kind in (MessageType.PROP, MessageType.READ_INDEX):
            if self.lead == NONE:
                raise ProposalDropped("no leader")
            # Forwarded without a term, as etcd does: the leader treats it as local.
            self._send(
                Message(
                    type=kind,
                    to=self.lead,
                    frm=self.id if kind is MessageType.READ_INDEX else m.frm,
                    entries=m.entries,
                    context=m.context,
                )
            )
        elif kind is MessageType.APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif kind is MessageType.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_heartbeat(m)
        elif kind is MessageType.SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif kind is MessageType.TRANSFER_LEADER:
            if self.lead != NONE:
                self._send(Message(type=kind, to=self.lead, frm=m.frm))
        elif kind is MessageType.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif kind is MessageType.READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, request_ctx=m.context))

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            # Everything up to our commit index matches the leader's log already (a stale or
            # duplicated append, or one below our snapshot): not a conflict.
            self._send(self._msg(m.frm, MessageType.APP_RESP, index=self.log.committed), after_persist=True)
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(self._msg(m.frm, MessageType.APP_RESP, index=last_new), after_persist=True)
            return
        hint_index = min(m.index, self.log.last_index())
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            self._msg(
                m.frm,
                MessageType.APP_RESP,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            ),
            after_persist=True,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(self._msg(m.frm, MessageType.HEARTBEAT_RESP, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        snapshot = m.snapshot
        if snapshot is not None and self._restore(snapshot):
            index = self.log.last_index()
        else:
            index = self.log.committed
        self._send(self._msg(m.frm, MessageType.APP_RESP, index=index), after_persist=True)

    def _restore(self, snapshot: Snapshot) -> bool:
        meta = snapshot.meta
        if meta.index <= self.log.committed:
            return False
        if self.role is not StateRole.FOLLOWER:
            self.become_follower(self.term + 1, NONE)
            return False
        if self.log.match_term(meta.index, meta.term):
            # Our log already has it: just fast-forward the commit index.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snapshot)
        self.tracker.set_conf(meta.conf_state, self.log.last_index() + 1)
        for node_id, pr in self.tracker.progress.items():
            pr.match = 0
            pr.next = self.log.last_index() + 1
            if node_id == self.id:
                pr.match = self.log.committed
        return True

    # --- ticks ---------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role is StateRole.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(type=MessageType.HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(type=MessageType.CHECK_QUORUM, frm=self.id))
            if self.role is StateRole.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE  # the transfer did not finish in time
        if self.role is not StateRole.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MessageType.BEAT, frm=self.id))

    # --- membership ----------------------------------------------------------------------------

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        conf_state = apply_change(self.tracker.conf_state(), change)
        self.tracker.set_conf(conf_state, self.log.last_index() + 1)
        if self.role is StateRole.LEADER:
            if self.id not in self.tracker.voters:
                # A removed leader steps down once the change is applied.
                self.become_follower(self.term, NONE)
            else:
                if self._maybe_commit():
                    self._bcast_append()
                if self.lead_transferee not in (NONE, *self.tracker.voters):
                    self.lead_transferee = NONE
        return conf_state
