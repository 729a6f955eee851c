"""The simulated world: virtual time, the event heap, nodes driven through the Ready contract,
faults, clients, and one seed's run from swarm profile to verdict.

Owns: ``Profile`` (one seed's random choice of fault classes and rates), ``World`` (the event loop
and every node's driver), ``run_seed`` and ``SeedResult``.

Must not: import asyncio, time, os, socket, threading, subprocess or datetime; use randomness other
than ``random.Random`` streams derived from the seed in a fixed order; call ``hash()``; iterate a
set whose order could depend on hashing. A seed therefore replays exactly.

Invariants of the driver (the same order as the server's driver): a node's inputs (messages,
ticks, proposals, reads) queue in its inbox and are stepped in only while no Ready is outstanding;
for each Ready the world sends ``messages``, writes to ``SimDisk``, waits the virtual fsync time
(the node does nothing else meanwhile), marks the records synced, sends
``messages_after_persist``, then calls ``finish_ready`` and handles what was applied. A crash can
fall between any two of these steps and discards the node's memory; a restart recovers from the
disk alone.
"""

from __future__ import annotations

import contextlib
import heapq
import random
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftkv.errors import LogCompacted, LogUnavailable, ProposalDropped
from raftkv.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMeta, StateRole
from raftkv.replica import Applied, ReadyWork, Replica, ReplicaConfig
from raftkv.sim.checks import OpRecord, SafetyChecker, Violation, build_model, check_history
from raftkv.sim.clients import ClientPool
from raftkv.sim.disk import SimDisk
from raftkv.sim.leases import TTL_CHOICES, ExpiryDecision, LeaseBook
from raftkv.sim.net import NetFaults, Network, bridge, deaf, halves, ring
from raftkv.sim.watchers import NodeWatcher, check_watchers
from raftkv.state.commands import Command, LeaseRevoke, RequestId, encode_command
from raftkv.state.machine import StateMachine

TICK_MS = 10
ELECTION_TICK = 10
CLIENT_TIMEOUT_MS = 2000
# A keepalive stream has no per-request deadline in etcd's clients; the simulated one gives up later.
KEEPALIVE_TIMEOUT_MS = 5000
# Simulated fault phase per seed: sized so the CI batch (300 seeds + canaries) fits ~8 min on 2 cores.
DEFAULT_FAULT_MS = 10_000
CORE_FLAGS = frozenset(
    {
        "no_noop",
        "commit_old_term",
        "local_reads",
        "no_prevote_checkquorum",
        "ack_before_persist",
        "forget_vote",
    }
)
SIM_FLAGS = frozenset({"no_fsync", "no_dedup", "stale_revoke", "keepalive_no_confirm"})
ALL_FLAGS = CORE_FLAGS | SIM_FLAGS

# A leader looks for expired leases every this many of its own ticks, revoking up to a batch.
LEASE_CHECK_TICKS = 5
LEASE_REVOKE_BATCH = 16
# A lease revoke that has not taken effect this long after it was proposed is proposed again.
REVOKE_RETRY_MS = 1000

# Event kinds (ints keep heap comparisons cheap and deterministic).
_TICK, _DELIVER, _PROCESS, _SYNC, _CLIENT, _TIMEOUT, _FAULT, _END_FAULT, _KEEPALIVE = range(9)
# Inbox item kinds.
(
    _IN_MSG,
    _IN_TICK,
    _IN_PROP,
    _IN_READ,
    _IN_SREAD,
    _IN_SNAP_STATUS,
    _IN_UNREACHABLE,
    _IN_LEASE_CHECK,
    _IN_KEEPALIVE_READ,
    _IN_REVOKE,
) = range(10)
# A crash right after the write is the one that can lose unsynced data, so it is drawn most.
_CRASH_POINTS = ("after_write", "after_write", "after_sync", "after_send")


@dataclass(slots=True)
class Profile:
    """One seed's swarm profile: which fault classes are on, and how hard."""

    fault_ms: int
    drop: float = 0.0
    duplicate: float = 0.0
    partition_every: tuple[int, int] | None = None
    partition_len: tuple[int, int] = (500, 10_000)
    crash_every: tuple[int, int] | None = None
    lose_unsynced: float = 0.5
    pause_every: tuple[int, int] | None = None
    snapshot_count: int = 100
    catchup_entries: int = 20
    drift: bool = False
    clients: int = 10
    # Small messages and windows make followers catch up in many steps (probing, partial acks).
    max_msg_bytes: int = 4096
    max_inflight: int = 256

    @staticmethod
    def draw(rng: random.Random, fault_ms: int) -> Profile:
        p = Profile(fault_ms=fault_ms)
        if rng.random() < 0.5:
            p.drop = rng.uniform(0.0, 0.2)
        if rng.random() < 0.5:
            p.duplicate = rng.uniform(0.0, 0.05)
        if rng.random() < 0.7:
            lo = rng.randint(1000, 3000)
            p.partition_every = (lo, lo + 2000)
            p.partition_len = (500, rng.randint(1000, 10_000))
        if rng.random() < 0.7:
            lo = rng.randint(1000, 5000)
            p.crash_every = (lo, lo + 5000)
        if rng.random() < 0.5:
            lo = rng.randint(800, 3000)
            p.pause_every = (lo, lo + 2000)
        p.snapshot_count = rng.randint(20, 200)
        p.catchup_entries = rng.randint(2, 50)
        p.drift = rng.random() < 0.5
        p.clients = rng.randint(10, 20)
        p.max_msg_bytes = rng.choice((256, 1024, 4096, 1 << 20))
        p.max_inflight = rng.choice((2, 8, 256))
        return p

    def __str__(self) -> str:
        return (
            f"profile drop={self.drop:.3f} dup={self.duplicate:.3f} partitions={self.partition_every} "
            f"len={self.partition_len} crashes={self.crash_every} lose={self.lose_unsynced} "
            f"pauses={self.pause_every} snapshot_count={self.snapshot_count} "
            f"catchup={self.catchup_entries} drift={self.drift} clients={self.clients} "
            f"max_msg={self.max_msg_bytes} inflight={self.max_inflight}"
        )


@dataclass(slots=True)
class SimNode:
    id: int
    disk: SimDisk
    period: int
    replica: Replica | None = None
    life: int = 0
    paused: bool = False
    busy: bool = False
    scheduled: bool = False
    inbox: list[tuple[Any, ...]] = field(default_factory=list)
    work: ReadyWork | None = None
    crash_point: str | None = None
    led_term: int = 0  # the term this node was last seen leading (for step-down counting)
    ticks: int = 0
    # Expiry revokes: (member, nonce) of this life's proposals, their counter, and lease -> when
    # its revoke was last proposed (not proposed again before REVOKE_RETRY_MS).
    revoke_nonce: int = 0
    revoke_counter: int = 0
    revoking: dict[int, int] = field(default_factory=dict)
    # Keepalives that arrived while paused: their handlers run first when the process wakes.
    deferred: list[OpRecord] = field(default_factory=list)


@dataclass(slots=True)
class SeedResult:
    seed: int
    nodes: int
    violation: str | None
    trace: list[str]
    faults: dict[str, int]
    client_ops: dict[str, int]
    rare_paths: dict[str, int]
    sim_ms: int


def bootstrap_snapshot(voters: list[int]) -> Snapshot:
    """The state every node starts from: an empty machine and the initial voters, at index 0."""
    meta = SnapshotMeta(index=0, term=0, conf_state=ConfState(voters=tuple(voters)))
    return Snapshot(meta=meta, data=StateMachine.empty_snapshot())


class World:
    def __init__(
        self,
        seed: int,
        n_nodes: int,
        profile: Profile,
        master: random.Random,
        unsafe: frozenset[str] = frozenset(),
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.seed = seed
        self.profile = profile
        self.unsafe = unsafe
        self.now = 0
        self._heap: list[tuple[int, int, int, Any, Any]] = []
        self._seq = 0
        self._log = log
        # Faults, leaders and installs only (ops too when logging): a failure prints all of it.
        self.trace: deque[str] = deque(maxlen=400)
        # Independent streams, derived in a fixed order, so one subsystem's draws never shift another's.
        self.net = Network(random.Random(master.getrandbits(64)), NetFaults(profile.drop, profile.duplicate))
        self.disk_rng = random.Random(master.getrandbits(64))
        self.fault_rng = random.Random(master.getrandbits(64))
        self.node_rng = random.Random(master.getrandbits(64))
        self.client_rng = random.Random(master.getrandbits(64))
        self.ids = list(range(1, n_nodes + 1))
        self.quorum = n_nodes // 2 + 1
        self.checker = SafetyChecker(self.quorum)
        self.pool = ClientPool(random.Random(master.getrandbits(64)), profile.clients)
        self.lease_rng = random.Random(master.getrandbits(64))
        self.book = LeaseBook()
        self._keepalive_terms: dict[int, int] = {}  # keepalive op -> term its leadership check began
        self.watchers = {nid: NodeWatcher(nid) for nid in self.ids}
        self.clients_active = False
        self.client_nodes = list(self.ids)
        # A client has at most one operation outstanding (its request-id discipline needs it).
        self._client_busy = [False] * profile.clients
        self.faults_active = False
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "partitions",
                "one_way",
                "crashes",
                "crash_points",
                "lost_unsynced",
                "torn_tail",
                "pauses",
                "leader_pauses",
                "snapshots_installed",
                "snapshots_taken",
                "leader_changes",
                "clock_drift",
            ),
            0,
        )
        self.rare: dict[str, int] = dict.fromkeys(
            (
                "conflict_truncation",
                "prev_log_below_snapshot",
                "follower_snapshot_install",
                "prevote_rejected",
                "checkquorum_stepdown",
                "read_index_failed",
                "dedup_hit",
                "lease_expiry_revoked",
                "stale_revoke_ignored",
                "keepalive_ok",
                "keepalive_not_leader",
                "watch_resumed",
            ),
            0,
        )
        self.nodes: dict[int, SimNode] = {}
        boot = bootstrap_snapshot(self.ids)
        for nid in self.ids:
            disk = SimDisk(no_fsync="no_fsync" in unsafe)
            disk.write_snapshot(boot)
            disk.sync_all_written()
            period = TICK_MS
            if profile.drift:
                period = max(1, round(TICK_MS / self.fault_rng.uniform(0.5, 1.5)))
            self.nodes[nid] = SimNode(nid, disk, period)
        if profile.drift:
            self.stats["clock_drift"] = 1
        for nid in self.ids:
            self._start(self.nodes[nid])

    # -- events ----------------------------------------------------------------------------

    def _at(self, t: int, kind: int, a: Any = None, b: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b))

    def note(self, line: str) -> None:
        entry = f"{self.now:>7} {line}"
        self.trace.append(entry)
        if self._log is not None:
            self._log(entry)

    def run_until(self, t_end: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t_end:
            t, _seq, kind, a, b = heapq.heappop(heap)
            self.now = t
            if kind == _DELIVER:
                self._deliver(a)
            elif kind == _TICK:
                self._tick(a, b)
            elif kind == _PROCESS:
                self._process(a, b)
            elif kind == _SYNC:
                self._synced(a, b)
            elif kind == _CLIENT:
                self._client(a)
            elif kind == _TIMEOUT:
                self._timeout(a)
            elif kind == _FAULT:
                self._fault(a)
            elif kind == _KEEPALIVE:
                self._keepalive(a, b)
            else:
                self._end_fault(a, b)
        self.now = max(self.now, t_end)

    # -- node lifecycle --------------------------------------------------------------------

    def _start(self, node: SimNode) -> None:
        storage = node.disk.recover()
        machine = StateMachine(
            unsafe_no_dedup="no_dedup" in self.unsafe, unsafe_stale_revoke="stale_revoke" in self.unsafe
        )
        p = self.profile
        config = ReplicaConfig(
            node_id=node.id,
            election_tick=ELECTION_TICK,
            snapshot_count=p.snapshot_count,
            snapshot_catchup_entries=p.catchup_entries,
            max_size_per_msg=p.max_msg_bytes,
            max_inflight_msgs=p.max_inflight,
            unsafe=self.unsafe & CORE_FLAGS,
        )
        node.replica = Replica(config, storage, machine, random.Random(self.node_rng.getrandbits(64)))
        node.life += 1
        node.busy = node.paused = node.scheduled = False
        node.inbox = []
        node.work = None
        node.crash_point = None
        node.ticks = 0
        node.revoke_nonce = self.lease_rng.getrandbits(32)
        node.revoke_counter = 0
        node.revoking = {}
        node.deferred = []
        watcher = self.watchers[node.id]
        if watcher.last_rev:
            self.rare["watch_resumed"] += 1
        watcher.attach(node.replica.watches)
        hs = storage.hard_state
        self.checker.on_start(node.id, storage.snapshot().meta.index, hs.commit)
        self.checker.on_vote(node.id, hs.term, hs.vote, "recovered hard state")
        self._at(self.now + self.node_rng.randint(1, node.period), _TICK, node.id, node.life)

    def _crash(self, node: SimNode) -> None:
        if node.replica is None:
            return
        loss = node.disk.crash(self.disk_rng, self.profile.lose_unsynced)
        self.stats["crashes"] += 1
        if loss.lost_records:
            self.stats["lost_unsynced"] += 1
        if loss.torn:
            self.stats["torn_tail"] += 1
        self.note(f"CRASH n{node.id} lost={loss.lost_records} torn={loss.torn}")
        node.replica = None
        node.life += 1
        node.busy = node.paused = node.scheduled = False
        node.inbox = []
        node.deferred = []
        node.work = None
        node.crash_point = None
        # The client connections broke: a write's fate is unknown, a read simply failed.
        for op in self.pool.pending():
            if op.node == node.id:
                self._finish(op, "unknown" if op.is_write else "fail", error="connection reset")

    # -- inputs ----------------------------------------------------------------------------

    def _enqueue(self, node: SimNode, item: tuple[Any, ...]) -> None:
        node.inbox.append(item)
        if not node.scheduled and not node.busy and not node.paused:
            node.scheduled = True
            self._at(self.now, _PROCESS, node.id, node.life)

    def _tick(self, nid: int, life: int) -> None:
        node = self.nodes[nid]
        if node.replica is None or node.life != life:
            return
        if not node.paused:
            self._enqueue(node, (_IN_TICK,))
            node.ticks += 1
            if node.ticks % LEASE_CHECK_TICKS == 0:
                self._enqueue(node, (_IN_LEASE_CHECK,))
        self._at(self.now + node.period, _TICK, nid, life)

    def _deliver(self, m: Message) -> None:
        node = self.nodes[m.to]
        sender = self.nodes[m.frm]
        r = node.replica
        ok = r is not None and self.net.can_deliver(m.frm, m.to)
        if m.type == MessageType.SNAP and sender.replica is not None:
            self._enqueue(sender, (_IN_SNAP_STATUS, m.to, ok))
        if r is None or not ok:
            if r is None and sender.replica is not None and m.type == MessageType.APP:
                self._enqueue(sender, (_IN_UNREACHABLE, m.to))
            return
        if m.type == MessageType.PRE_VOTE_RESP and m.reject:
            self.rare["prevote_rejected"] += 1
        if m.type == MessageType.APP and m.index < r.storage.snapshot().meta.index:
            self.rare["prev_log_below_snapshot"] += 1
        self._enqueue(node, (_IN_MSG, m))

    def _send(self, msgs: list[Message]) -> None:
        net = self.net
        for m in msgs:
            if m.type == MessageType.VOTE_RESP or m.type == MessageType.APP_RESP:
                disk = self.nodes[m.frm].disk
                self.checker.on_ack_sent(m, disk.synced_hard_state(), disk.synced_covers)
                if m.type == MessageType.VOTE_RESP and not m.reject:
                    self.checker.on_vote(m.frm, m.term, m.to, "vote response")
            if m.to not in self.nodes:
                continue
            delays = net.send(m.frm, m.to)
            for d in delays:
                self._at(self.now + d, _DELIVER, m)
            if not delays and m.type == MessageType.SNAP:
                # The transport saw the stream fail; the leader must hear of it or it waits forever.
                self._enqueue(self.nodes[m.frm], (_IN_SNAP_STATUS, m.to, False))

    # -- the Ready cycle -------------------------------------------------------------------

    def _process(self, nid: int, life: int) -> None:
        node = self.nodes[nid]
        if node.life != life:
            return
        node.scheduled = False
        r = node.replica
        if r is None or node.busy or node.paused:
            return
        inbox, node.inbox = node.inbox, []
        for item in inbox:
            kind = item[0]
            if kind == _IN_MSG:
                r.step(item[1])
            elif kind == _IN_TICK:
                r.tick()
            elif kind == _IN_PROP:
                op: OpRecord = item[1]
                cmd: Command = item[2]
                assert op.request_id is not None
                try:
                    r.propose(encode_command(op.request_id, cmd))
                except ProposalDropped:
                    self._finish(op, "fail", error="proposal dropped")
            elif kind == _IN_READ:
                r.read(item[1].op_id)
            elif kind == _IN_SREAD:
                op = item[1]
                self._finish(op, "ok", r.machine.read(self.pool.read_request(op)))
            elif kind == _IN_SNAP_STATUS:
                r.report_snapshot(item[1], item[2])
            elif kind == _IN_LEASE_CHECK:
                self._lease_check(node, r)
            elif kind == _IN_KEEPALIVE_READ:
                r.read(item[1].op_id)
            elif kind == _IN_REVOKE:
                with contextlib.suppress(ProposalDropped):  # retried after REVOKE_RETRY_MS
                    r.propose(item[1])
            else:
                r.report_unreachable(item[1])
        work = r.begin_ready()
        if work is None:
            self._observe(node)
            return
        raft = r.raw.raft  # role and term only: status() would also render every peer's progress
        self._send(work.messages)
        last_before = r.storage.last_index()
        leader_term = raft.term if raft.role == StateRole.LEADER else None
        self.checker.on_persist_entries(nid, leader_term, work.entries, last_before)
        if work.entries and work.entries[0].index <= last_before:
            self.rare["conflict_truncation"] += 1
        if work.snapshot is not None:
            self.stats["snapshots_installed"] += 1
            self.rare["follower_snapshot_install"] += 1
            self.note(f"n{nid} installs {work.snapshot}")
        node.disk.write_ready(work.snapshot, work.entries, work.hard_state)
        if work.hard_state is not None:
            self.checker.on_hard_state(nid, work.hard_state)
        node.busy = True
        node.work = work
        if node.crash_point == "after_write":
            self._crash(node)
            return
        if work.must_sync:
            # fsync takes virtual time; the node is blocked, as the driver's worker would be.
            rng = self.disk_rng
            delay = rng.randint(20, 60) if rng.random() < 0.05 else rng.randint(1, 5)
            self._at(self.now + delay, _SYNC, nid, node.life)
        else:
            self._synced(nid, node.life)

    def _synced(self, nid: int, life: int) -> None:
        node = self.nodes[nid]
        r = node.replica
        work = node.work
        if node.life != life or r is None or work is None:
            return
        if work.must_sync:
            node.disk.sync()
            hs = node.disk.synced_hard_state()
            if hs is not None:
                self.checker.on_vote(nid, hs.term, hs.vote, "durable hard state")
        if node.crash_point == "after_sync":
            self._crash(node)
            return
        self._send(work.messages_after_persist)
        if node.crash_point == "after_send":
            self._crash(node)
            return
        stale_before = r.machine.stale_revokes_ignored
        applied = r.finish_ready(work, self._clock(node))
        self.rare["stale_revoke_ignored"] += r.machine.stale_revokes_ignored - stale_before
        node.busy = False
        node.work = None
        self._handle_applied(node, r, applied)
        self.watchers[nid].collect(r.watches)
        self._observe(node)
        if node.inbox or r.has_ready():
            node.scheduled = True
            self._at(self.now, _PROCESS, nid, node.life)

    def _handle_applied(self, node: SimNode, r: Replica, applied: Applied) -> None:
        disks = [n.disk for n in self.nodes.values()]
        for e in applied.entries:
            synced = sum(1 for d in disks if d.synced_has(e.index, e.term))
            self.checker.on_apply(node.id, e, synced)
        by_request = self.pool.by_request
        for rid, res in applied.results:
            self.book.on_applied(rid, self.now)
            if getattr(res, "duplicate", False):
                self.rare["dedup_hit"] += 1
            op = by_request.get(rid)
            if op is not None and op.node == node.id:
                error = getattr(res, "error", None)
                if getattr(res, "duplicate", False):
                    # This node learned the first application through a snapshot, so the response
                    # is gone: the write happened, but what it returned is unknown.
                    self._finish(op, "unknown", error="duplicate of an entry applied via snapshot")
                elif error is not None:
                    self._finish(op, "fail", error=str(error))
                else:
                    self._finish(op, "ok", getattr(res, "response", None))
        for token in applied.reads_ready:
            op = self.pool.by_token.get(token)  # type: ignore[call-overload]
            if op is None:
                continue
            if op.kind == "keepalive":
                self._refresh(node, r, op, self._keepalive_terms.pop(op.op_id, 0))
            else:
                self._finish(op, "ok", r.machine.read(self.pool.read_request(op)))
        for token in applied.reads_failed:
            self.rare["read_index_failed"] += 1
            op = self.pool.by_token.get(token)  # type: ignore[call-overload]
            if op is not None:
                self._finish(op, "fail", error="read index failed")
        snap = applied.snapshot
        if snap is not None:
            node.disk.write_snapshot(snap)
            node.disk.sync()
            r.snapshot_saved(snap)
            self.stats["snapshots_taken"] += 1
            if not node.disk.no_fsync:
                self.checker.on_snapshot_saved(node.id, snap.meta.index)
                node.disk.release()

    def _observe(self, node: SimNode) -> None:
        r = node.replica
        assert r is not None
        st = r.status()
        if st.role == StateRole.LEADER:
            self.checker.on_status(node.id, st.commit, st.applied, st.term, _term_at(r, st.commit))
        else:
            self.checker.on_status(node.id, st.commit, st.applied)
        if st.role == StateRole.LEADER:
            if self.checker.on_leader(node.id, st.term):
                self.stats["leader_changes"] += 1
                node.led_term = st.term
                self.note(f"LEADER n{node.id} term={st.term} {st}")
                self.checker.check_leader_completeness(node.id, st.term, lambda i: _term_at(r, i))
        elif node.led_term and node.led_term == st.term:
            self.rare["checkquorum_stepdown"] += 1
            node.led_term = 0

    # -- clients ---------------------------------------------------------------------------

    def _finish(self, op: OpRecord, outcome: str, response: object = None, error: str = "") -> None:
        if op.outcome != "pending":
            return
        self.pool.finish(op, self.now, outcome, response, error)
        if self._log is not None:
            self.note(f"OP {op}")
        if op.kind == "keepalive":
            self._keepalive_done(op)
            return
        self._client_busy[op.client] = False
        if op.kind == "grant" and outcome == "ok" and self.lease_rng.random() < 0.5:
            self.book.kept.add(op.lease)
            self._at(self.now + self._keepalive_interval(op.lease), _KEEPALIVE, op.lease, op.client)
        if self.clients_active:
            self._at(self.now + self.client_rng.randint(1, 30), _CLIENT, op.client)

    def _client(self, client: int) -> None:
        if not self.clients_active or self._client_busy[client]:
            return
        self._client_busy[client] = True
        nid = self.client_rng.choice(self.client_nodes)
        node = self.nodes[nid]
        op, cmd = self.pool.new_op(client, nid, self.now)
        if op.kind == "revoke":
            assert op.request_id is not None
            self.book.track_revoke(op.request_id, op.lease)
        if node.replica is None:
            self._finish(op, "fail", error="connection refused")
            return
        if cmd is not None:
            self._enqueue(node, (_IN_PROP, op, cmd))
        elif op.kind == "get":
            self._enqueue(node, (_IN_READ, op))
        else:
            self._enqueue(node, (_IN_SREAD, op))
        self._at(self.now + CLIENT_TIMEOUT_MS, _TIMEOUT, op.op_id)

    def _timeout(self, op_id: int) -> None:
        op = self.pool.history[op_id]
        if op.outcome == "pending":
            self._finish(op, "unknown" if op.is_write else "fail", error="timeout")

    def start_clients(self, nodes: list[int] | None = None) -> None:
        self.client_nodes = list(nodes or self.ids)
        if self.clients_active:
            return
        self.clients_active = True
        for c in range(self.pool.n_clients):
            self._at(self.now + self.client_rng.randint(0, 50), _CLIENT, c)

    # -- leases ----------------------------------------------------------------------------

    def _clock(self, node: SimNode) -> float:
        """The node's own monotonic clock in seconds (it drifts with the node's tick period)."""
        return self.now * TICK_MS / node.period / 1000

    def _clock_rates(self) -> list[float]:
        """Each node's clock rate against virtual time."""
        return [TICK_MS / n.period for n in self.nodes.values()]

    def _election_ms(self) -> int:
        """An election timeout at the slowest node's ticks, in virtual ms."""
        return ELECTION_TICK * max(n.period for n in self.nodes.values())

    def _lease_check(self, node: SimNode, r: Replica) -> None:
        """The leader's expiry round, as the driver runs it: decide now, propose on the next cycle
        (leadership may move in between, which is what makes a revoke stale)."""
        if not r.is_leader():
            return
        for lease_id in r.expired_leases(self._clock(node), LEASE_REVOKE_BATCH):
            last = node.revoking.get(lease_id)
            if last is not None and self.now - last < REVOKE_RETRY_MS:
                continue
            node.revoking[lease_id] = self.now
            node.revoke_counter += 1
            rid = RequestId(500 + node.id, node.revoke_nonce, node.revoke_counter)
            self.book.decided(rid, ExpiryDecision(lease_id, self.now, node.id, r.term))
            command = LeaseRevoke(lease_id, leader_term=r.term)
            self._enqueue(node, (_IN_REVOKE, encode_command(rid, command)))

    def _keepalive_interval(self, lease: int) -> int:
        return self.pool.ttls[lease] * 1000 // 3  # etcd's clients keep alive every TTL/3

    def _keepalive(self, lease: int, client: int) -> None:
        """The owner's next keepalive of a kept lease: at the node it last found leading."""
        if not self.book.active or lease not in self.book.kept:
            return
        nid = self.book.hint.get(lease) or self.lease_rng.choice(self.ids)
        node = self.nodes[nid]
        op = self.pool.new_keepalive(client, lease, nid, self.now)
        r = node.replica
        if r is None:
            self._finish(op, "fail", error="connection refused")
            return
        self._at(self.now + KEEPALIVE_TIMEOUT_MS, _TIMEOUT, op.op_id)
        if node.paused:
            node.deferred.append(op)
        else:
            self._keepalive_at(node, r, op)

    def _keepalive_at(self, node: SimNode, r: Replica, op: OpRecord) -> None:
        """The server's keepalive handler. It runs beside the Raft loop, not behind its inbox (as
        the driver's HTTP handler does), so a leader waking from a pause may run it before it
        steps the messages that depose it; only the confirmation round makes that safe."""
        if op.outcome != "pending":
            return
        if not r.is_leader():
            self.rare["keepalive_not_leader"] += 1
            self._finish(op, "fail", error="not leader")
            if r.leader_id:
                self.book.hint[op.lease] = r.leader_id  # the client retries there (a forward)
            return
        if "keepalive_no_confirm" in self.unsafe:
            self._refresh(node, r, op, r.term)
        else:
            # Only a leader whose quorum confirms it in this term may extend a lease.
            self._keepalive_terms[op.op_id] = r.term
            self._enqueue(node, (_IN_KEEPALIVE_READ, op))

    def _refresh(self, node: SimNode, r: Replica, op: OpRecord, term: int) -> None:
        ttl = r.refresh_lease(op.lease, term, self._clock(node))
        if ttl:
            self.rare["keepalive_ok"] += 1
        self._finish(op, "ok", ttl or 0)

    def _keepalive_done(self, op: OpRecord) -> None:
        self._keepalive_terms.pop(op.op_id, None)
        lease = op.lease
        if not self.book.active or lease not in self.book.kept:
            return
        if op.outcome == "ok":
            if not op.response:
                self.book.kept.discard(lease)  # expired or revoked: nothing left to keep alive
                return
            self.book.hint[lease] = op.node
            delay = self._keepalive_interval(lease)
        else:
            self.book.hint.pop(lease, None)
            delay = self.lease_rng.randint(5, 30)
        self._at(self.now + delay, _KEEPALIVE, lease, op.client)

    def await_leases_expired(self) -> None:
        """Liveness: with keepalives stopped, every lease is revoked within its TTL at the slowest
        clock plus a few election timeouts, and the cluster converges on that."""
        et_ms = self._election_ms()
        rate_min = min(self._clock_rates())
        deadline = self.now + int(max(TTL_CHOICES) * 1000 / rate_min) + 10 * et_ms
        while True:
            left = {nid: len(n.replica.machine.leases) for nid, n in self.nodes.items() if n.replica}
            if not any(left.values()) and self.converged() is None:
                return
            if self.now >= deadline:
                raise Violation(f"liveness: leases not expired without keepalives: per node {left}")
            self.run_until(self.now + et_ms // 2)

    # -- faults ----------------------------------------------------------------------------

    def schedule_faults(self) -> None:
        p = self.profile
        self.faults_active = True
        for kind, every in (
            ("partition", p.partition_every),
            ("crash", p.crash_every),
            ("pause", p.pause_every),
        ):
            if every is not None:
                self._at(self.now + self.fault_rng.randint(*every), _FAULT, kind)

    def _leader(self) -> int | None:
        best: tuple[int, int] | None = None
        for nid in self.ids:
            r = self.nodes[nid].replica
            if r is None or self.nodes[nid].paused:
                continue
            st = r.status()
            if st.role == StateRole.LEADER and (best is None or st.term > best[0]):
                best = (st.term, nid)
        return None if best is None else best[1]

    def _fault(self, kind: str) -> None:
        if not self.faults_active:
            return
        p = self.profile
        rng = self.fault_rng
        if kind == "partition":
            length = rng.randint(*p.partition_len)
            self._partition(rng)
            self._at(self.now + length, _END_FAULT, "heal", None)
            assert p.partition_every is not None
            self._at(self.now + length + rng.randint(*p.partition_every), _FAULT, kind)
        elif kind == "crash":
            leader = self._leader()
            nid = leader if leader is not None and rng.random() < 0.4 else rng.choice(self.ids)
            node = self.nodes[nid]
            if node.replica is not None:
                if rng.random() < 0.4:
                    node.crash_point = rng.choice(_CRASH_POINTS)
                    self.stats["crash_points"] += 1
                    self.note(f"ARM n{nid} crash {node.crash_point}")
                else:
                    self._crash(node)
                self._at(self.now + rng.randint(100, 3000), _END_FAULT, "restart", nid)
            assert p.crash_every is not None
            self._at(self.now + rng.randint(*p.crash_every), _FAULT, kind)
        else:
            leader = self._leader()
            nid = leader if leader is not None and rng.random() < 0.7 else rng.choice(self.ids)
            node = self.nodes[nid]
            if node.replica is not None and not node.paused:
                length = rng.randint(1, 3) * ELECTION_TICK * TICK_MS + rng.randint(0, 100)
                if rng.random() < 0.25:
                    length = rng.randint(1000, 2500)  # about a lease TTL: a GC or VM stall
                node.paused = True
                self.stats["pauses"] += 1
                if nid == leader:
                    self.stats["leader_pauses"] += 1
                self.note(f"PAUSE n{nid} for {length}ms (leader={leader})")
                self._at(self.now + length, _END_FAULT, "resume", nid)
            assert p.pause_every is not None
            self._at(self.now + rng.randint(*p.pause_every), _FAULT, kind)

    def _partition(self, rng: random.Random) -> None:
        n = len(self.ids)
        choices = ["halves", "isolate_leader", "one_way", "deaf"]
        if n == 5:
            choices += ["ring", "bridge"]
        shape = rng.choice(choices)
        leader = self._leader()
        if shape == "halves" or (shape == "isolate_leader" and leader is None):
            groups = halves(self.ids, rng)
            self.net.cut_groups(groups)
            desc = f"halves {groups}"
        elif shape == "isolate_leader":
            assert leader is not None
            self.net.cut_groups([[leader], [i for i in self.ids if i != leader]])
            desc = f"isolate leader n{leader}"
        elif shape == "one_way":
            src = leader if leader is not None and rng.random() < 0.5 else rng.choice(self.ids)
            dsts = [i for i in self.ids if i != src]
            rng.shuffle(dsts)
            links = [(src, d) for d in dsts[: rng.randint(1, len(dsts))]]
            self.net.cut_one_way(links)
            self.stats["one_way"] += 1
            desc = f"one-way {links}"
        elif shape == "deaf":
            victim = leader if leader is not None and rng.random() < 0.5 else rng.choice(self.ids)
            self.net.cut_one_way(deaf(victim, self.ids))
            self.stats["one_way"] += 1
            desc = f"deaf n{victim}"
        elif shape == "ring":
            self.net.cut_except(self.ids, ring(self.ids))
            desc = "ring"
        else:
            allowed = bridge(self.ids, rng)
            self.net.cut_except(self.ids, allowed)
            desc = "bridge"
        self.stats["partitions"] += 1
        self.note(f"PARTITION {desc}")

    def _end_fault(self, kind: str, nid: int | None) -> None:
        if kind == "heal":
            if not self.faults_active:
                return  # a fault-phase partition ending after stop_faults must not heal a probe
            self.net.heal()
            self.note("HEAL")
            return
        assert nid is not None
        node = self.nodes[nid]
        if kind == "restart":
            if node.replica is None:
                self._start(node)
                self.note(f"RESTART n{nid} {node.replica.status() if node.replica else ''}")
            else:
                node.crash_point = None
        elif kind == "resume" and node.paused and node.replica is not None:
            node.paused = False
            self.note(f"RESUME n{nid}")
            # Handlers and the overdue expiry timer run as the process wakes, before the Raft
            # loop steps what its peers sent meanwhile.
            deferred, node.deferred = node.deferred, []
            for op in deferred:
                self._keepalive_at(node, node.replica, op)
            node.inbox.insert(0, (_IN_LEASE_CHECK,))
            if node.inbox:
                node.scheduled = True
                self._at(self.now, _PROCESS, nid, node.life)

    def stop_faults(self) -> None:
        """Heal everything: the network, crashed and paused nodes; no new faults."""
        self.faults_active = False
        self.book.active = False
        self.net.heal()
        self.net.faults = NetFaults()
        for nid in self.ids:
            node = self.nodes[nid]
            node.crash_point = None
            if node.replica is None:
                self._start(node)
            elif node.paused:
                node.paused = False
                if node.inbox:
                    node.scheduled = True
                    self._at(self.now, _PROCESS, nid, node.life)
        self.note("STOP FAULTS")

    # -- end checks ------------------------------------------------------------------------

    def converged(self) -> str | None:
        """None when the cluster converged; otherwise why not."""
        leader = self._leader()
        if leader is None:
            return "no leader"
        lst = self.nodes[leader].replica.status()  # type: ignore[union-attr]
        hashes: dict[int, int] = {}
        for nid in self.ids:
            node = self.nodes[nid]
            r = node.replica
            if r is None:
                return f"n{nid} down"
            st = r.status()
            if st.term != lst.term or st.lead != leader:
                return f"n{nid} term={st.term} lead={st.lead}, leader n{leader} term={lst.term}"
            if st.applied != st.commit or st.commit != lst.commit or node.busy or r.has_ready():
                return f"n{nid} commit={st.commit} applied={st.applied}, leader commit={lst.commit}"
            hashes[nid] = r.machine.state_hash()
        if len(set(hashes.values())) != 1:
            raise Violation(f"convergence: equal applied index {lst.commit} but state hashes differ {hashes}")
        return None

    def await_convergence(self, what: str) -> None:
        et_ms = self._election_ms()
        deadline = self.now + 20 * et_ms
        why = self.converged()
        while why is not None:
            if self.now >= deadline:
                raise Violation(f"liveness ({what}): no convergence within 20 election timeouts: {why}")
            self.run_until(self.now + et_ms // 2)
            why = self.converged()

    def probe_partial_partition(self) -> None:
        """G5: with one deaf node (it sends, hears nobody), a stable quorum keeps committing.

        Without pre-vote and check-quorum the deaf node keeps deposing leaders (or stays a leader
        nobody can answer), so terms churn or writes stop.
        """
        rng = self.fault_rng
        leader = self._leader()
        victim = leader if leader is not None and rng.random() < 0.5 else rng.choice(self.ids)
        others = [i for i in self.ids if i != victim]
        self.net.cut_one_way(deaf(victim, self.ids))
        self.stats["one_way"] += 1
        self.note(f"PROBE deaf n{victim}")
        et_ms = self._election_ms()
        # Settle first: a deaf leader needs up to two election timeouts to step down, and its
        # followers two more to elect a successor.
        self.run_until(self.now + 5 * et_ms)
        terms0 = max(self.nodes[i].replica.status().term for i in others)  # type: ignore[union-attr]
        start = self.now
        self.start_clients(others)
        self.run_until(self.now + 10 * et_ms)
        terms1 = max(self.nodes[i].replica.status().term for i in others)  # type: ignore[union-attr]
        writes = sum(
            1 for op in self.pool.history if op.is_write and op.outcome == "ok" and op.call_t >= start
        )
        self.clients_active = False
        # A split vote between the two halves of the quorum may cost a round or two; a deaf node
        # that can disrupt raises the term every election timeout or so.
        if terms1 - terms0 > 3:
            raise Violation(
                f"liveness (deaf n{victim}): the majority's term rose {terms0} -> {terms1} "
                "in 10 election timeouts"
            )
        if writes == 0:
            raise Violation(f"liveness (deaf n{victim}): no write succeeded in 10 election timeouts")
        self.net.heal()
        self.note("PROBE healed")

    def final_checks(self) -> None:
        # Every operation resolves: by now or, at the latest, by its client time-out.
        pending = self.pool.pending()
        if pending:
            self.run_until(max(op.call_t for op in pending) + KEEPALIVE_TIMEOUT_MS)
            pending = self.pool.pending()
        if pending:
            raise Violation(f"liveness: client operation never resolved: {pending[0]}")
        c = self.checker
        model = build_model(c.committed, c.max_committed)
        check_history(self.pool.history, model)
        rate_max = max(self._clock_rates())
        self.book.check(self.pool.history, model, self.pool.ttls, rate_max)
        check_watchers(list(self.watchers.values()), model)
        self.rare["lease_expiry_revoked"] = self.book.effective_expiries(model)

    def fault_counts(self) -> dict[str, int]:
        out = dict(self.stats)
        out["drops"] = self.net.stats.drops
        out["duplicates"] = self.net.stats.duplicates
        return out


def _term_at(r: Replica, index: int) -> int | None:
    try:
        return r.storage.term(index)
    except LogCompacted:
        return None
    except LogUnavailable:
        return 0


def run_seed(
    seed: int,
    n_nodes: int = 3,
    unsafe: frozenset[str] = frozenset(),
    fault_ms: int = DEFAULT_FAULT_MS,
    log: Callable[[str], None] | None = None,
) -> SeedResult:
    """Run one seed: faults with clients, heal and converge, a partial-partition probe, checks."""
    master = random.Random(seed)
    profile = Profile.draw(random.Random(master.getrandbits(64)), fault_ms)
    world: World | None = None
    violation: str | None = None
    try:
        world = World(seed, n_nodes, profile, master, unsafe, log)
        world.note(str(profile))
        world.start_clients()
        world.schedule_faults()
        world.run_until(fault_ms)
        world.clients_active = False
        world.stop_faults()
        world.await_convergence("after faults")
        world.probe_partial_partition()
        world.await_convergence("after probe")
        world.await_leases_expired()
        world.final_checks()
    except Violation as e:
        violation = str(e)
    except Exception as e:  # a crash of the code under test is a failure of the seed, not the harness
        violation = f"exception: {type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=8))
    if world is None:
        return SeedResult(seed, n_nodes, violation, [], {}, {}, {}, 0)
    if violation is not None:
        world.note(f"VIOLATION {violation.splitlines()[0]}")
    stats = world.pool.stats
    return SeedResult(
        seed=seed,
        nodes=n_nodes,
        violation=violation,
        trace=list(world.trace),
        faults=world.fault_counts(),
        client_ops={"ok": stats.ok, "fail": stats.fail, "unknown": stats.unknown},
        rare_paths=dict(world.rare),
        sim_ms=world.now,
    )
