"""Simulated watchers: one watch over the whole key space on every node, and their checks.

Owns: ``NodeWatcher`` — a stream on one node's ``WatchHub`` watching every key from revision 1,
re-created from the last revision it saw whenever the node restarts (as a client reconnecting
with ``start_revision = last + 1`` does), the events it received, and the online order checks;
``check_watchers`` — the end-of-seed comparison with the reference model.

Must not: change what the node applies or answer anything: it only opens streams and pops them.

Invariants checked online (API.md §4): every message's first revision is above every revision
received before (no duplicate, no going back), a message never splits a revision, events within a
revision come in key order, and no watch is cancelled (the simulator never compacts). At the end
every node's sequence equals the model's full event sequence, so watchers on different nodes saw
the same events in the same order, exactly once, also across restarts and snapshot installs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftkv.sim.checks import RefModel, Violation
from raftkv.state.commands import Event
from raftkv.state.watch import WatchHub, WatchMessage, WatchStream

ALL_KEYS = b"\x00"  # key and range_end "\0": every key


@dataclass(slots=True)
class NodeWatcher:
    node: int
    events: list[Event] = field(default_factory=list)
    last_rev: int = 0
    resumes: int = 0
    stream: WatchStream | None = None

    def attach(self, hub: WatchHub) -> None:
        """Open the watch on a freshly started node, from the revision after the last one seen."""
        if self.last_rev:
            self.resumes += 1
        self.stream = hub.open_stream()
        hub.create(self.stream, key=ALL_KEYS, range_end=ALL_KEYS, start_revision=self.last_rev + 1)
        self.collect(hub)

    def collect(self, hub: WatchHub) -> None:
        """Take everything the stream holds, letting the hub refill it from history until empty."""
        stream = self.stream
        assert stream is not None
        while stream.buffer:
            for message in stream.pop_all():
                self._take(message)
            hub.sync(stream)

    def _take(self, m: WatchMessage) -> None:
        if m.canceled:
            raise Violation(f"watch on n{self.node} cancelled: {m}")
        if not m.events:
            return
        first = m.events[0].kv.mod_revision
        if first <= self.last_rev:
            raise Violation(
                f"watch on n{self.node}: revision {first} after {self.last_rev} (duplicate or out of order)"
            )
        prev: Event | None = None
        for ev in m.events:
            rev = ev.kv.mod_revision
            if prev is not None:
                prev_rev = prev.kv.mod_revision
                if rev < prev_rev or (rev == prev_rev and ev.kv.key <= prev.kv.key):
                    raise Violation(f"watch on n{self.node}: events out of order in one message: {m}")
            prev = ev
        self.events.extend(m.events)
        self.last_rev = m.events[-1].kv.mod_revision


def check_watchers(watchers: list[NodeWatcher], model: RefModel) -> None:
    """Every watcher saw exactly the committed event sequence, all of it."""
    want = [(e.type, e.kv) for e in model.events]
    for w in watchers:
        got = [(e.type, e.kv) for e in w.events]
        if got == want:
            continue
        for i, (a, b) in enumerate(zip(got, want, strict=False)):
            if a != b:
                raise Violation(f"watch on n{w.node}: event #{i} is {a}, the committed order has {b}")
        raise Violation(
            f"watch on n{w.node} saw {len(got)} events, the committed order has {len(want)} "
            f"(last revision seen {w.last_rev}, model revision {model.revision})"
        )
