"""A tiny deterministic test network of ``Replica``s for the Raft core's unit tests.

Owns: message delivery with optional drops/isolation and a per-node "disk" holding exactly what
the Ready contract persisted. Test commands are opaque byte strings, each stored as a Put of that
key into the real ``StateMachine``, so ``commands(i)`` lists what node i applied, in order. The
full simulator lives in ``raftkv/sim``; this harness is for small, readable tests of one rule each.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raftkv.raft.storage import MemoryStorage
from raftkv.raft.types import ConfState, HardState, Message, MessageType, Snapshot, SnapshotMeta
from raftkv.replica import Applied, Replica, ReplicaConfig
from raftkv.state.commands import Put, Range, RequestId, encode_command
from raftkv.state.machine import StateMachine


def command(data: bytes, counter: int) -> bytes:
    """An opaque test command: a Put of key ``data`` with a unique request id."""
    return encode_command(RequestId(1, 1, counter), Put(key=data, value=data))


@dataclass
class Durable:
    """What a node has on 'disk': exactly what the Ready contract persisted."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot = field(default_factory=Snapshot)
    entries: list = field(default_factory=list)


class Network:
    def __init__(
        self,
        n: int,
        *,
        seed: int = 1,
        election_tick: int = 10,
        snapshot_count: int = 100_000,
        catchup: int = 5,
        unsafe: frozenset[str] = frozenset(),
    ) -> None:
        self.rng = random.Random(seed)
        self.ids = list(range(1, n + 1))
        self.conf = ConfState(voters=tuple(self.ids))
        self.election_tick = election_tick
        self.snapshot_count = snapshot_count
        self.catchup = catchup
        self.unsafe = unsafe
        self.disks = {i: Durable(snapshot=self._boot_snapshot()) for i in self.ids}
        self.nodes: dict[int, Replica] = {}
        self.machines: dict[int, StateMachine] = {}
        self._counter = itertools.count(1)
        self.queue: list[Message] = []
        self.cut: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.drop_filter: Callable[[Message], bool] | None = None
        self.sent: list[Message] = []
        for i in self.ids:
            self._start(i)

    def _boot_snapshot(self) -> Snapshot:
        return Snapshot(
            meta=SnapshotMeta(index=0, term=0, conf_state=self.conf), data=StateMachine.empty_snapshot()
        )

    def _start(self, i: int) -> None:
        disk = self.disks[i]
        storage = MemoryStorage()
        storage.apply_snapshot(disk.snapshot)
        storage.append([e for e in disk.entries if e.index > disk.snapshot.meta.index])
        storage.set_hard_state(disk.hard_state)
        machine = StateMachine()
        self.machines[i] = machine
        config = ReplicaConfig(
            node_id=i,
            election_tick=self.election_tick,
            snapshot_count=self.snapshot_count,
            snapshot_catchup_entries=self.catchup,
            unsafe=self.unsafe,
        )
        self.nodes[i] = Replica(config, storage, machine, random.Random(self.rng.random()))

    # --- driving -------------------------------------------------------------------------------

    def process(self, i: int) -> Applied | None:
        node = self.nodes[i]
        work = node.begin_ready()
        if work is None:
            return None
        self._send(work.messages)
        disk = self.disks[i]
        if work.snapshot is not None:
            disk.snapshot = work.snapshot
            disk.entries = []
        if work.entries:
            first = work.entries[0].index
            disk.entries = [e for e in disk.entries if e.index < first] + list(work.entries)
        if work.hard_state is not None:
            disk.hard_state = work.hard_state
        self._send(work.messages_after_persist)
        applied = node.finish_ready(work)
        if applied.snapshot is not None:
            disk.snapshot = applied.snapshot
            node.snapshot_saved(applied.snapshot)
        return applied

    def _send(self, msgs: list[Message]) -> None:
        for m in msgs:
            self.sent.append(m)
            if (m.frm, m.to) in self.cut or m.to in self.down or m.frm in self.down:
                continue
            if self.drop_filter is not None and self.drop_filter(m):
                continue
            self.queue.append(m)

    def stabilize(self, limit: int = 10_000) -> None:
        """Process readies and deliver messages until nothing moves."""
        for _ in range(limit):
            moved = False
            for i in self.ids:
                if i not in self.down and self.nodes[i].has_ready():
                    self.process(i)
                    moved = True
            if self.queue:
                batch, self.queue = self.queue, []
                for m in batch:
                    if m.to not in self.down:
                        self.nodes[m.to].step(m)
                moved = True
            if not moved:
                return
        raise AssertionError("network did not stabilize")

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[i].tick()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for i in self.ids:
                if i not in self.down:
                    self.nodes[i].tick()
            self.stabilize()

    def elect(self, i: int) -> None:
        self.nodes[i].campaign()
        self.stabilize()

    def cmd(self, data: bytes) -> bytes:
        return command(data, next(self._counter))

    def propose(self, i: int, data: bytes) -> None:
        self.nodes[i].propose(self.cmd(data))
        self.stabilize()

    def commands(self, i: int) -> list[bytes]:
        everything = self.machines[i].kv.range(Range(key=b"\x00", range_end=b"\x00"))
        return [kv.key for kv in sorted(everything.kvs, key=lambda kv: kv.create_revision)]

    def isolate(self, i: int) -> None:
        for j in self.ids:
            if j != i:
                self.cut.add((i, j))
                self.cut.add((j, i))

    def heal(self) -> None:
        self.cut.clear()
        self.drop_filter = None

    def crash(self, i: int) -> None:
        self.down.add(i)
        self.queue = [m for m in self.queue if m.to != i]

    def restart(self, i: int) -> None:
        self.down.discard(i)
        self._start(i)

    def leader(self) -> int | None:
        leaders = [
            i for i in self.ids if i not in self.down and self.nodes[i].status().role.name == "LEADER"
        ]
        return leaders[0] if len(leaders) == 1 else None

    def sent_of(self, kind: MessageType) -> list[Message]:
        return [m for m in self.sent if m.type is kind]
