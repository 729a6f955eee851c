"""A scripted, step-by-step cluster for golden and unit tests (etcd-io/raft datadriven style).

Owns: ``ScriptedCluster``, which drives real ``Replica``s through the Ready contract one explicit
step at a time (no clock, no random faults): messages wait in per-recipient queues until a test
delivers or drops them; ``process_ready`` runs one full Ready cycle (persist and sync on the node's
``SimDisk``, then apply); partitions drop queued messages at delivery. Every method returns the
canonical lines it produced (the ``__str__`` of ``raftkv.raft.types`` values) and appends them to
``output``.

Must not: decide anything randomly except through each node's seeded ``random.Random`` (so a
script's output is a pure function of the script and its seed), or reorder messages: queues are
FIFO per recipient.

Invariants: the same Ready order as the server and ``World``: send ``messages``, persist, sync,
send ``messages_after_persist``, ``finish_ready``; at most one Ready outstanding per node. The
online checks of ``SafetyChecker`` run on every step and raise ``Violation``.
"""

from __future__ import annotations

import random

from raftkv.errors import LogCompacted, LogUnavailable, ProposalDropped
from raftkv.raft.types import Entry, Message, MessageType, StateRole
from raftkv.replica import Replica, ReplicaConfig
from raftkv.sim.checks import SafetyChecker
from raftkv.sim.disk import SimDisk
from raftkv.sim.world import bootstrap_snapshot
from raftkv.state.machine import StateMachine


class ScriptedCluster:
    def __init__(
        self,
        seed: int = 0,
        *,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        max_size_per_msg: int = 1 << 20,
    ) -> None:
        self._rng = random.Random(seed)
        self.max_size_per_msg = max_size_per_msg
        self.checker = SafetyChecker(quorum=1)
        self.election_tick = election_tick
        self.heartbeat_tick = heartbeat_tick
        self.ids: list[int] = []
        self.disks: dict[int, SimDisk] = {}
        self.replicas: dict[int, Replica | None] = {}
        self.queues: dict[int, list[Message]] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.unsafe: frozenset[str] = frozenset()
        self.snapshot_count = 100_000
        self.output: list[str] = []

    def _emit(self, lines: list[str]) -> list[str]:
        self.output.extend(lines)
        return lines

    def _replica(self, nid: int) -> Replica:
        r = self.replicas.get(nid)
        if r is None:
            raise ValueError(f"node {nid} is not running")
        return r

    # -- membership and lifecycle ------------------------------------------------------------

    def add_nodes(
        self, n: int, *, unsafe: frozenset[str] = frozenset(), snapshot_count: int = 100_000
    ) -> list[str]:
        """Create nodes 1..n, all voters, started from the bootstrap snapshot."""
        self.unsafe = unsafe
        self.snapshot_count = snapshot_count
        self.ids = list(range(1, n + 1))
        self.checker = SafetyChecker(quorum=n // 2 + 1)
        boot = bootstrap_snapshot(self.ids)
        lines = []
        for nid in self.ids:
            disk = SimDisk(no_fsync="no_fsync" in unsafe)
            disk.write_snapshot(boot)
            disk.sync_all_written()
            self.disks[nid] = disk
            self.queues[nid] = []
            self._boot(nid)
            lines.append(f"INFO {nid} started: {self._replica(nid).status()}")
        return self._emit(lines)

    def _boot(self, nid: int) -> None:
        config = ReplicaConfig(
            node_id=nid,
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            snapshot_count=self.snapshot_count,
            max_size_per_msg=self.max_size_per_msg,
            unsafe=self.unsafe - {"no_fsync", "no_dedup"},
        )
        machine = StateMachine(unsafe_no_dedup="no_dedup" in self.unsafe)
        rng = random.Random(self._rng.getrandbits(64))
        storage = self.disks[nid].recover()
        self.replicas[nid] = Replica(config, storage, machine, rng)
        self.checker.on_start(nid, storage.snapshot().meta.index, storage.hard_state.commit)

    def crash(self, nid: int, *, lose_unsynced: bool = True) -> list[str]:
        """Stop ``nid``; its unsynced records are lost (or all kept), queued messages to it dropped."""
        self.disks[nid].crash(self._rng, 1.0 if lose_unsynced else 0.0)
        self.replicas[nid] = None
        dropped = [f"dropped: {m}" for m in self.queues[nid]]
        self.queues[nid] = []
        return self._emit([f"INFO {nid} crashed", *dropped])

    def restart(self, nid: int) -> list[str]:
        self._boot(nid)
        return self._emit([f"INFO {nid} restarted: {self._replica(nid).status()}"])

    # -- inputs ---------------------------------------------------------------------------------

    def campaign(self, nid: int) -> list[str]:
        self._replica(nid).campaign()
        return self._emit([f"INFO {nid} campaigns"])

    def tick(self, nid: int, n: int = 1) -> list[str]:
        r = self._replica(nid)
        for _ in range(n):
            r.tick()
        return []

    def tick_all(self, n: int = 1) -> list[str]:
        for nid in self.ids:
            if self.replicas.get(nid) is not None:
                self.tick(nid, n)
        return []

    def propose(self, nid: int, data: bytes) -> list[str]:
        try:
            self._replica(nid).propose(data)
        except ProposalDropped as e:
            return self._emit([f"INFO {nid} proposal dropped: {e}"])
        return []

    def read(self, nid: int, token: object) -> list[str]:
        self._replica(nid).read(token)
        return []

    # -- the network ----------------------------------------------------------------------------

    def partition(self, *groups: list[int]) -> list[str]:
        """Symmetric partition between the groups (every node not listed is in no group and is cut
        off from all of them)."""
        self.blocked.clear()
        member = {nid: gi for gi, g in enumerate(groups) for nid in g}
        for a in self.ids:
            for b in self.ids:
                if a != b and (a not in member or b not in member or member[a] != member[b]):
                    self.blocked.add((a, b))
        return self._emit([f"INFO partition {[sorted(g) for g in groups]}"])

    def heal(self) -> list[str]:
        self.blocked.clear()
        return self._emit(["INFO healed"])

    def _queue(self, msgs: list[Message]) -> list[str]:
        lines = []
        for m in msgs:
            if m.type in (MessageType.VOTE_RESP, MessageType.APP_RESP):
                disk = self.disks[m.frm]
                self.checker.on_ack_sent(m, disk.synced_hard_state(), disk.synced_covers)
            self.queues.setdefault(m.to, []).append(m)
            lines.append(f"  {m}")
        return lines

    def deliver(
        self, to: int | None = None, *, type: MessageType | None = None, drop: bool = False
    ) -> list[str]:
        """Deliver (or drop) the queued messages to ``to`` (all nodes if None), of ``type`` only
        if given. Messages across a partition or to a crashed node are dropped."""
        lines = []
        for nid in [to] if to is not None else self.ids:
            keep: list[Message] = []
            due: list[Message] = []
            for m in self.queues.get(nid, []):
                (due if type is None or m.type == type else keep).append(m)
            self.queues[nid] = keep
            r = self.replicas.get(nid)
            for m in due:
                if drop or r is None or (m.frm, m.to) in self.blocked:
                    lines.append(f"dropped: {m}")
                else:
                    r.step(m)
                    lines.append(f"{m}")
        return self._emit(lines)

    # -- the Ready cycle ------------------------------------------------------------------------

    def process_ready(self, nid: int) -> list[str]:
        """One full Ready cycle of ``nid``; the lines say what it persisted, sent and applied."""
        r = self._replica(nid)
        work = r.begin_ready()
        if work is None:
            return []
        lines = [f"> {nid} handling Ready"]
        if work.messages:
            lines.append("  Messages:")
            lines += self._queue(work.messages)
        if work.snapshot is not None:
            lines.append(f"  {work.snapshot}")
        if work.entries:
            lines.append("  Entries:")
            lines += [f"  {e}" for e in work.entries]
        if work.hard_state is not None:
            lines.append(f"  {work.hard_state}")
        disk = self.disks[nid]
        before = r.status()
        leader_term = before.term if before.role == StateRole.LEADER else None
        self.checker.on_persist_entries(nid, leader_term, work.entries, r.storage.last_index())
        disk.write_ready(work.snapshot, work.entries, work.hard_state)
        if work.must_sync:
            disk.sync()
        if work.messages_after_persist:
            lines.append("  OnSync:")
            lines += self._queue(work.messages_after_persist)
        applied = r.finish_ready(work)
        self._check_applied(nid, r, applied.entries)
        if applied.entries:
            lines.append("  CommittedEntries:")
            lines += [f"  {e}" for e in applied.entries]
        for token in applied.reads_ready:
            lines.append(f"  read ready: {token!r}")
        for token in applied.reads_failed:
            lines.append(f"  read failed: {token!r}")
        if applied.snapshot is not None:
            disk.write_snapshot(applied.snapshot)
            disk.sync()
            r.snapshot_saved(applied.snapshot)
            lines.append(f"  saved {applied.snapshot}")
        return self._emit(lines)

    def _check_applied(self, nid: int, r: Replica, entries: list[Entry]) -> None:
        disks = list(self.disks.values())
        for e in entries:
            self.checker.on_apply(nid, e, sum(1 for d in disks if d.synced_has(e.index, e.term)))
        st = r.status()
        if st.role == StateRole.LEADER:
            self.checker.on_leader(nid, st.term)
            self.checker.on_status(nid, st.commit, st.applied, st.term, _term_at(r, st.commit))
        else:
            self.checker.on_status(nid, st.commit, st.applied)

    def stabilize(self, max_rounds: int = 1000) -> list[str]:
        """Process every Ready and deliver every message until the cluster is quiet."""
        lines: list[str] = []
        for _ in range(max_rounds):
            progressed = False
            for nid in self.ids:
                r = self.replicas.get(nid)
                if r is not None and r.has_ready():
                    lines += self.process_ready(nid)
                    progressed = True
            for nid in self.ids:
                if self.queues.get(nid):
                    lines += self.deliver(nid)
                    progressed = True
            if not progressed:
                return lines
        raise RuntimeError(f"no quiescence after {max_rounds} rounds")

    # -- state ----------------------------------------------------------------------------------

    def compact(self, nid: int, index: int | None = None) -> list[str]:
        """Snapshot ``nid``'s applied state (at ``index``, default the applied index) and compact
        its log behind it."""
        r = self._replica(nid)
        at = r.status().applied if index is None else index
        snap = r.storage.create_snapshot(at, r.raw.conf_state, r.machine.snapshot())
        self.disks[nid].write_snapshot(snap)
        self.disks[nid].sync()
        r.storage.compact(at)
        return self._emit([f"INFO {nid} compacted to {at}: {snap}"])

    def status(self, nid: int) -> list[str]:
        return self._emit([str(self._replica(nid).status())])

    def raft_log(self, nid: int) -> list[str]:
        r = self._replica(nid)
        st = r.storage
        try:
            entries = st.entries(st.first_index(), st.last_index() + 1)
        except LogCompacted:
            entries = []
        lines = [str(e) for e in entries] or [f"log is empty: first index={st.first_index()}"]
        return self._emit(lines)


def _term_at(r: Replica, index: int) -> int | None:
    try:
        return r.storage.term(index)
    except (LogCompacted, LogUnavailable):
        return None
