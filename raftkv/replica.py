"""``Replica``: one node's logic without I/O: Raft, its log storage and the replicated state machine.

Owns: a ``RawNode`` with its ``MemoryStorage``, the ``StateMachine``, the node's ``WatchHub``
(fed with each applied revision's events) and the leader-local lease ``ExpiryTracker``; the Ready
contract of ``raft/node.py`` split into two phases around the caller's I/O (``begin_ready``
returns what to send and persist, ``finish_ready`` applies, serves reads and advances); ReadIndex
batching for linearizable reads; the snapshot policy; lease deadlines (promotion gives every
lease a full TTL, keepalives refresh only on a confirmed leader); the test-only canary switches of
the replica layer.
The server's driver and the simulator both drive a node only through this class, so the order
of the contract is written once.

Must not: do I/O, read a clock, or block. The caller does the sending and the persisting.

Invariants: reads queued together share one ReadIndex round with a fresh context; a read
completes only once the applied index reaches its round's read index; a round that loses its
leader before it is answered fails (safe to retry); a snapshot is taken only of applied state.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raftkv.errors import ProposalDropped
from raftkv.raft.node import Config, RawNode, Ready, Status
from raftkv.raft.storage import MemoryStorage
from raftkv.raft.types import NONE, Entry, EntryType, HardState, Message, Snapshot, StateRole
from raftkv.raft.wire import decode_conf_change, pack
from raftkv.state.commands import LeaseGrantResponse, RequestId
from raftkv.state.lease import ExpiryTracker
from raftkv.state.machine import ApplyResult, StateMachine
from raftkv.state.watch import WatchHub


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    node_id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    snapshot_count: int = 100_000
    snapshot_catchup_entries: int = 5_000
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_uncommitted_size: int = 64 << 20
    unsafe: frozenset[str] = frozenset()


@dataclass(slots=True)
class ReadyWork:
    """Steps 1–3 of the Ready contract: what the caller sends and persists."""

    messages: list[Message]
    snapshot: Snapshot | None
    entries: list[Entry]
    hard_state: HardState | None
    must_sync: bool
    messages_after_persist: list[Message]
    ready: Ready | None = None


@dataclass(slots=True)
class Applied:
    """What ``finish_ready`` did (steps 4–6)."""

    entries: list[Entry] = field(default_factory=list)
    results: list[tuple[RequestId, ApplyResult]] = field(default_factory=list)
    reads_ready: list[object] = field(default_factory=list)
    reads_failed: list[object] = field(default_factory=list)
    snapshot: Snapshot | None = None


class Replica:
    def __init__(
        self,
        config: ReplicaConfig,
        storage: MemoryStorage,
        machine: StateMachine,
        rng: random.Random,
        *,
        wake_watchers: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.storage = storage
        self.machine = machine
        snapshot = storage.snapshot()
        if snapshot.data:
            machine.restore(snapshot.data)
        self._last_snapshot_index = snapshot.meta.index
        self.watches = WatchHub(machine.kv, wake_watchers or (lambda _stream: None))
        self.expiry = ExpiryTracker()
        unsafe = config.unsafe
        self.raw = RawNode(
            Config(
                id=config.node_id,
                rng=rng,
                election_tick=config.election_tick,
                heartbeat_tick=config.heartbeat_tick,
                pre_vote="no_prevote_checkquorum" not in unsafe,
                check_quorum="no_prevote_checkquorum" not in unsafe,
                max_size_per_msg=config.max_size_per_msg,
                max_inflight_msgs=config.max_inflight_msgs,
                max_uncommitted_size=config.max_uncommitted_size,
                applied=snapshot.meta.index,
                unsafe=unsafe,
            ),
            storage,
        )
        self._read_seq = 0
        self._read_queue: list[object] = []
        self._rounds: dict[bytes, list[object]] = {}
        self._confirmed: list[tuple[int, list[object]]] = []
        self._failed_reads: list[object] = []
        self._local_reads: list[object] = []
        self._lead = NONE
        self._role = StateRole.FOLLOWER

    # --- inputs --------------------------------------------------------------------------------

    def tick(self) -> None:
        self.raw.tick()

    def step(self, message: Message) -> None:
        self.raw.step(message)

    def campaign(self) -> None:
        self.raw.campaign()

    def propose(self, data: bytes) -> None:
        """Propose a command; raises ``ProposalDropped`` when it cannot reach a leader now."""
        self.raw.propose(data)

    def propose_many(self, datas: list[bytes]) -> None:
        """Propose commands together (one message, one append); all or none is dropped."""
        self.raw.propose_many(datas)

    def read(self, token: object) -> None:
        """Queue a linearizable read; ``token`` comes back in ``Applied.reads_ready`` or ``reads_failed``."""
        if "local_reads" in self.config.unsafe:
            self._local_reads.append(token)
        else:
            self._read_queue.append(token)

    def report_unreachable(self, peer: int) -> None:
        self.raw.report_unreachable(peer)

    def report_snapshot(self, peer: int, ok: bool) -> None:
        self.raw.report_snapshot(peer, ok)

    def transfer_leader(self, transferee: int) -> None:
        self.raw.transfer_leader(transferee)

    # --- the Ready cycle -----------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(
            self._read_queue
            or self._failed_reads
            or self._local_reads
            or self.raw.has_ready()
        )

    def begin_ready(self) -> ReadyWork | None:
        """Start a cycle: returns what to send and persist, or None when there is nothing to do."""
        if self._read_queue:
            self._start_read_round()
        if not self.raw.has_ready():
            if self._failed_reads or self._local_reads:
                return ReadyWork([], None, [], None, False, [])
            return None
        rd = self.raw.ready()
        hard_state = rd.hard_state
        if hard_state is not None and "forget_vote" in self.config.unsafe:
            hard_state = HardState(term=hard_state.term, vote=NONE, commit=hard_state.commit)
        messages = list(rd.messages)
        after = list(rd.messages_after_persist)
        if "ack_before_persist" in self.config.unsafe:
            messages += after
            after = []
        return ReadyWork(
            messages=messages,
            snapshot=rd.snapshot,
            entries=list(rd.entries),
            hard_state=hard_state,
            must_sync=rd.must_sync,
            messages_after_persist=after,
            ready=rd,
        )

    def finish_ready(self, work: ReadyWork, now: float = 0.0) -> Applied:
        """Finish a cycle once ``work`` is persisted: apply, serve reads, advance. ``now`` is the
        caller's monotonic clock (seconds), used only for lease deadlines."""
        out = Applied()
        rd = work.ready
        if rd is not None:
            self._record_persisted(rd)
            if rd.soft_state is not None:
                self._role_changed(rd.soft_state.lead, rd.soft_state.role, now)
            if rd.snapshot is not None:
                self.machine.restore(rd.snapshot.data)
                self._last_snapshot_index = rd.snapshot.meta.index
                self.watches.rebind(self.machine.kv)
            self._apply(rd.committed_entries, out, now)
            self.watches.sync()
            for rs in rd.read_states:
                tokens = self._rounds.pop(rs.request_ctx, None)
                if tokens:
                    self._confirmed.append((rs.index, tokens))
            self.raw.advance(rd)
        self._release_reads(out)
        out.snapshot = self._maybe_snapshot()
        return out

    def _record_persisted(self, rd: Ready) -> None:
        # The caller made these durable; now Raft may read them back from MemoryStorage.
        if rd.snapshot is not None:
            self.storage.apply_snapshot(rd.snapshot)
        if rd.entries:
            self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)

    def _role_changed(self, lead: int, role: StateRole, now: float) -> None:
        if lead != self._lead:
            self._lead = lead
            self._fail_unanswered_rounds()
        if role is StateRole.LEADER and self._role is not StateRole.LEADER:
            # A new leader gives every lease a full TTL: none expires early because leadership moved.
            self.expiry.promote(now, {lease.id: lease.ttl for lease in self.machine.leases.list()})
        elif role is not StateRole.LEADER and self._role is StateRole.LEADER:
            self.expiry.demote()
        self._role = role

    def _apply(self, entries: tuple[Entry, ...], out: Applied, now: float) -> None:
        for entry in entries:
            if entry.type is EntryType.CONF_CHANGE:
                self.raw.apply_conf_change(decode_conf_change(entry.data))
                result = self.machine.apply(entry.index, entry.term, b"")
            else:
                result = self.machine.apply(entry.index, entry.term, entry.data)
            if result.request_id is None:
                continue
            out.results.append((result.request_id, result))
            if result.events:
                self.watches.publish(result.events[0].kv.mod_revision, result.events)
            if isinstance(result.response, LeaseGrantResponse):
                self.expiry.granted(result.response.id, result.response.ttl, now)
        out.entries = list(entries)

    # --- reads ---------------------------------------------------------------------------------

    def _start_read_round(self) -> None:
        self._read_seq += 1
        ctx = pack([self.node_id, self._read_seq])
        tokens, self._read_queue = self._read_queue, []
        try:
            self.raw.read_index(ctx)
        except ProposalDropped:
            self._failed_reads.extend(tokens)
            return
        self._rounds[ctx] = tokens

    def _fail_unanswered_rounds(self) -> None:
        for tokens in self._rounds.values():
            self._failed_reads.extend(tokens)
        self._rounds.clear()

    def _release_reads(self, out: Applied) -> None:
        applied = self.raw.raft.log.applied
        waiting = []
        for index, tokens in self._confirmed:
            if index <= applied:
                out.reads_ready.extend(tokens)
            else:
                waiting.append((index, tokens))
        self._confirmed = waiting
        out.reads_ready.extend(self._local_reads)
        self._local_reads = []
        out.reads_failed, self._failed_reads = self._failed_reads, []

    # --- snapshots -----------------------------------------------------------------------------

    def _maybe_snapshot(self) -> Snapshot | None:
        applied = self.raw.raft.log.applied
        if applied - self._last_snapshot_index < self.config.snapshot_count:
            return None
        snapshot = self.storage.create_snapshot(applied, self.raw.conf_state, self.machine.snapshot())
        self._last_snapshot_index = applied
        return snapshot

    def snapshot_saved(self, snapshot: Snapshot) -> int:
        """``snapshot`` (from ``Applied.snapshot``) is durable: compact the in-memory log behind it,
        keeping ``snapshot_catchup_entries`` for slow followers. Returns the first index still
        needed, so durable log segments wholly below it may be released."""
        keep_from = snapshot.meta.index - self.config.snapshot_catchup_entries
        if keep_from > self.storage.first_index():
            self.storage.compact(keep_from - 1)
        return self.storage.first_index()

    # --- leases (leader only) ------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.raw.raft.role is StateRole.LEADER

    @property
    def term(self) -> int:
        return self.raw.raft.term

    def refresh_lease(self, lease_id: int, term: int, now: float) -> int | None:
        """A keepalive whose leadership check (a ReadIndex round) started in ``term`` completed:
        refresh the lease if this node is still leader of that term. Returns the granted TTL, or
        None for an unknown or expired lease, or when leadership moved."""
        if not self.is_leader() or self.term != term or lease_id not in self.machine.leases:
            return None
        return self.expiry.refresh(lease_id, now)

    def lease_remaining(self, lease_id: int, now: float) -> float | None:
        """Seconds until the lease expires, as the leader knows it (None if not leader/unknown)."""
        if not self.is_leader() or lease_id not in self.machine.leases:
            return None
        return self.expiry.remaining(lease_id, now)

    def expired_leases(self, now: float, limit: int) -> list[int]:
        """Leases past their deadline that the leader should revoke through Raft."""
        if not self.is_leader():
            return []
        expired = []
        for lease_id in self.expiry.expired(now, limit):
            if lease_id in self.machine.leases:
                expired.append(lease_id)
            else:
                self.expiry.forget(lease_id)
        return expired

    # --- introspection -------------------------------------------------------------------------

    def status(self) -> Status:
        return self.raw.status()

    @property
    def leader_id(self) -> int:
        return self.raw.raft.lead
