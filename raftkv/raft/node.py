"""``RawNode``: the application's handle on the Raft core, and the one statement of the Ready contract.

Owns: ``Config`` (validated settings), ``Ready`` (what the application must do next) and
``RawNode`` (``tick``, ``campaign``, ``propose``, ``propose_conf_change``, ``apply_conf_change``,
``step``, ``read_index``, ``transfer_leader``, ``has_ready``, ``ready``, ``advance``, ``status``,
``report_unreachable``, ``report_snapshot``). It does no I/O.

THE READY CONTRACT. For every ``Ready`` the caller does, in order:

1. Send ``messages``, possibly while step 2 runs. None of them acknowledges local state (leader
   appends and heartbeats, heartbeat responses, vote requests, forwarded proposals and reads).
2. Persist ``snapshot`` (if any), then ``entries``, then ``hard_state``, in one storage call, with
   one fsync when ``must_sync``; then apply the same to the ``MemoryStorage`` Raft reads.
3. Only after step 2 returned, send ``messages_after_persist`` (vote, append and snapshot
   responses): no vote or append acknowledgement leaves before the fsync (Raft thesis §3.8).
4. Restore ``snapshot`` into the state machine, then apply ``committed_entries`` in order
   (CONF_CHANGE entries through ``apply_conf_change``).
5. Serve ``read_states``: a read tagged with a ReadState's context may be answered from local
   state once the applied index reaches the ReadState's index.
6. Call ``advance(ready)``. Only now does the core count its own persisted entries (leader) and
   its own vote (candidate), so no leader commits an entry it has not fsynced and no candidate
   wins on an unpersisted self-vote.

At most one Ready is outstanding: between ``ready()`` and ``advance()`` the caller must not call
``tick``, ``step``, ``propose`` or ``read_index``.
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import dataclass, field

from raftkv.errors import ProposalDropped
from raftkv.raft.core import UNSAFE_FLAGS, Raft
from raftkv.raft.storage import LogStorage
from raftkv.raft.types import (
    LOCAL_MESSAGE_TYPES,
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


@dataclass(frozen=True, slots=True)
class Config:
    """Settings of one Raft node (ARCHITECTURE.md §4.2). One tick is one heartbeat interval."""

    id: int
    rng: random.Random
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_uncommitted_size: int = 64 << 20
    applied: int = 0
    unsafe: frozenset[str] = frozenset()
    logger: logging.Logger | None = None

    def __post_init__(self) -> None:
        if self.id == NONE:
            raise ValueError("a node id must be non-zero")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat_tick must be positive")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max_inflight_msgs must be positive")
        unknown = self.unsafe - UNSAFE_FLAGS
        if unknown:
            raise ValueError(f"unknown unsafe flags: {sorted(unknown)}")


@dataclass(frozen=True, slots=True)
class Ready:
    soft_state: SoftState | None
    hard_state: HardState | None
    read_states: tuple[ReadState, ...]
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    messages_after_persist: tuple[Message, ...]
    must_sync: bool


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    role: StateRole
    last_index: int
    first_index: int
    progress: dict[int, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.id} {self.role.name} term={self.term} vote={self.vote} lead={self.lead} "
            f"commit={self.commit} applied={self.applied} log=[{self.first_index},{self.last_index}]"
        )


class RawNode:
    def __init__(self, config: Config, storage: LogStorage) -> None:
        self.config = config
        self.raft = Raft(
            node_id=config.id,
            storage=storage,
            rng=config.rng,
            election_tick=config.election_tick,
            heartbeat_tick=config.heartbeat_tick,
            pre_vote=config.pre_vote,
            check_quorum=config.check_quorum,
            max_size_per_msg=config.max_size_per_msg,
            max_inflight_msgs=config.max_inflight_msgs,
            max_uncommitted_size=config.max_uncommitted_size,
            applied=config.applied,
            unsafe=config.unsafe,
            logger=config.logger,
        )
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._outstanding = False

    # --- inputs --------------------------------------------------------------------------------

    def tick(self) -> None:
        self._check_idle()
        self.raft.tick()

    def campaign(self) -> None:
        self._check_idle()
        self.raft.step(Message(type=MessageType.HUP, frm=self.raft.id))

    def propose(self, data: bytes) -> None:
        """Propose ``data``; raises ``ProposalDropped`` if it cannot be (no leader, transfer...)."""
        self.propose_many([data])

    def propose_many(self, datas: list[bytes]) -> None:
        """Propose several commands as one message, so the leader replicates them together.
        All or none: raises ``ProposalDropped`` if they cannot be proposed."""
        self._check_idle()
        entries = tuple(Entry(term=0, index=0, data=data) for data in datas)
        self.raft.step(Message(type=MessageType.PROP, frm=self.raft.id, entries=entries))

    def propose_conf_change(self, change: ConfChange, data: bytes) -> None:
        """Propose a membership change; ``data`` is its encoding, decoded again at apply time."""
        self._check_idle()
        entry = Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=data)
        self.raft.step(Message(type=MessageType.PROP, frm=self.raft.id, entries=(entry,)))

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        return self.raft.apply_conf_change(change)

    def step(self, message: Message) -> None:
        """Step a message from the network. Local-only types are refused; proposals that can't
        proceed are dropped silently (the proposer times out)."""
        self._check_idle()
        if message.type in LOCAL_MESSAGE_TYPES:
            raise ValueError(f"refusing local message type {message.type.name} from the network")
        if message.to != self.raft.id:
            return
        if message.frm not in self.raft.tracker.progress and message.type in (
            MessageType.APP_RESP,
            MessageType.HEARTBEAT_RESP,
            MessageType.SNAP_STATUS,
        ):
            return  # a response from a node that is not (or no longer) a member
        with contextlib.suppress(ProposalDropped):
            self.raft.step(message)

    def read_index(self, context: bytes) -> None:
        """Ask for a ReadIndex; the answer arrives as a ``ReadState`` with this ``context``.

        Raises ``ProposalDropped`` when there is no leader to ask."""
        self._check_idle()
        self.raft.step(Message(type=MessageType.READ_INDEX, context=context))

    def transfer_leader(self, transferee: int) -> None:
        self._check_idle()
        self.raft.step(Message(type=MessageType.TRANSFER_LEADER, frm=transferee))

    def report_unreachable(self, peer: int) -> None:
        self._check_idle()
        self.raft.step(Message(type=MessageType.UNREACHABLE, frm=peer))

    def report_snapshot(self, peer: int, ok: bool) -> None:
        self._check_idle()
        self.raft.step(Message(type=MessageType.SNAP_STATUS, frm=peer, reject=not ok))

    # --- the Ready cycle -----------------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        return bool(
            r.soft_state() != self._prev_soft
            or r.hard_state() != self._prev_hard
            or r.msgs
            or r.msgs_after_persist
            or r.read_states
            or r.log.unstable.entries
            or r.log.unstable.snapshot is not None
            or r.log.has_next_committed_entries()
            or r.pending_self_vote is not None
        )

    def ready(self) -> Ready:
        self._check_idle()
        r = self.raft
        soft = r.soft_state()
        hard = r.hard_state()
        hard_changed = hard != self._prev_hard
        entries = tuple(r.log.unstable.entries)
        snapshot = r.log.unstable.snapshot
        rd = Ready(
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard_changed else None,
            read_states=tuple(r.read_states),
            entries=entries,
            snapshot=snapshot,
            committed_entries=tuple(r.log.next_committed_entries()),
            messages=tuple(r.msgs),
            messages_after_persist=tuple(r.msgs_after_persist),
            must_sync=bool(
                entries
                or snapshot is not None
                or hard.term != self._prev_hard.term
                or hard.vote != self._prev_hard.vote
            ),
        )
        r.msgs = []
        r.msgs_after_persist = []
        r.read_states = []
        self._outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """Steps 2–5 of the contract are done for ``rd``: count what is now durable and applied."""
        if not self._outstanding:
            raise RuntimeError("advance() without an outstanding ready()")
        self._outstanding = False
        r = self.raft
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot is not None:
            r.log.unstable.stable_snap_to(rd.snapshot.meta.index)
            r.log.applied_to(rd.snapshot.meta.index)
        if rd.entries:
            last = rd.entries[-1]
            r.log.unstable.stable_to(last.index, last.term)
        if rd.committed_entries:
            r.log.applied_to(rd.committed_entries[-1].index)
            r.reduce_uncommitted_size(list(rd.committed_entries))
        r.on_persisted()

    def _check_idle(self) -> None:
        if self._outstanding:
            raise RuntimeError("a Ready is outstanding: call advance() first")

    # --- introspection -------------------------------------------------------------------------

    def status(self) -> Status:
        r = self.raft
        progress = {}
        if r.role is StateRole.LEADER:
            progress = {peer: str(pr) for peer, pr in r.tracker.progress.items()}
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.log.committed,
            applied=r.log.applied,
            lead=r.lead,
            role=r.role,
            last_index=r.log.last_index(),
            first_index=r.log.first_index(),
            progress=progress,
        )

    @property
    def conf_state(self) -> ConfState:
        return self.raft.tracker.conf_state()
