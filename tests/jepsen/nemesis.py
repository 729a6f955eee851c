"""Fault schedules and the nemesis that executes them against a ``JepsenCluster``.

Owns: the fault kinds (``KINDS``), a ``Schedule`` (a list of faults with a start gap, a duration
and a target choice), schedule generation from a seed (``random_schedule``) or Hypothesis
(``schedule_strategy``, shrinkable), and ``Nemesis.run``, which applies each fault, holds it, heals
it and records a timeline. It runs in a worker thread: process control blocks.

Invariants: every fault is healed before the next starts and ``heal_everything`` leaves every node
running, unpaused, with its base environment and every link passing, whatever happened; all waits
are bounded by deadlines.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.jepsen.cluster import JepsenCluster

# Every nemesis kind; "partition" picks one of the partition shapes at random.
KINDS = (
    "kill", "kill-leader", "kill-all", "pause", "pause-isolate", "partition-half", "partition-leader",
    "partition-oneway", "partition-bridge", "torn-tail", "enospc", "clock",
)
CHURN_LIMIT = 3  # term increments tolerated during one bridge partition (liveness, §3 row 10)
GROUPS: dict[str, tuple[str, ...]] = {
    "all": KINDS,
    "kill": ("kill", "kill-leader", "kill-all"),
    "pause": ("pause", "pause-isolate"),
    "partition": ("partition-half", "partition-leader", "partition-oneway", "partition-bridge"),
    "bridge": ("partition-bridge",),
    "isolate": ("partition-leader",),
    "oneway": ("partition-oneway",),
    "disk": ("torn-tail", "enospc"),
    "torn": ("torn-tail",),
    "enospc": ("enospc",),
    "clock": ("clock",),
    "none": (),
}


@dataclass(frozen=True)
class Fault:
    kind: str
    gap_s: float  # quiet time before the fault
    dur_s: float  # how long the fault is held
    pick: int  # chooses the target node / shape / variant deterministically


@dataclass
class Schedule:
    faults: list[Fault] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(f) for f in self.faults]


def kinds_for(spec: str) -> tuple[str, ...]:
    """``all``, a group name, a kind, or a comma-separated list of those."""
    out: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        for k in GROUPS.get(part, (part,)):
            if k not in KINDS:
                raise ValueError(f"unknown nemesis {part!r}; choose from {sorted(GROUPS) + list(KINDS)}")
            if k not in out:
                out.append(k)
    return tuple(out)


def fault_duration(kind: str, rng: random.Random, election_s: float) -> float:
    if kind in ("pause", "pause-isolate"):
        return rng.uniform(2, 4) * election_s + 0.5  # longer than the election timeout: a leader is deposed
    if kind == "kill-all":
        return rng.uniform(0.2, 1.0)
    return rng.uniform(2.0, 5.0)


def random_schedule(
    kinds: tuple[str, ...], seconds: float, rng: random.Random, election_s: float
) -> Schedule:
    """Faults filling ``seconds``; kinds cycle in a shuffled order so each appears early."""
    faults: list[Fault] = []
    t = 0.0
    order = list(kinds)
    rng.shuffle(order)
    n = 0
    while order and t < seconds:
        kind = order[n % len(order)]
        n += 1
        gap = rng.uniform(1.0, 3.0)
        dur = fault_duration(kind, rng, election_s)
        faults.append(Fault(kind, round(gap, 2), round(dur, 2), rng.randrange(1 << 16)))
        t += gap + dur + 2.0  # ~2 s of restart / recovery overhead per fault
    return Schedule(faults)


def schedule_strategy(kinds: tuple[str, ...], max_faults: int = 8) -> st.SearchStrategy[Schedule]:
    """A shrinkable Hypothesis strategy for schedules (fewer, shorter, simpler faults shrink first)."""
    fault = st.builds(
        Fault,
        kind=st.sampled_from(kinds),
        gap_s=st.floats(0.5, 3.0),
        dur_s=st.floats(0.2, 5.0),
        pick=st.integers(0, 1 << 16),
    )
    return st.builds(Schedule, st.lists(fault, min_size=1, max_size=max_faults))


class Nemesis:
    def __init__(self, cluster: JepsenCluster, now: Callable[[], float], stop: threading.Event) -> None:
        self.c = cluster
        self.now = now
        self.stop = stop
        self.timeline: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.max_clock_rate = 1.0
        self.min_clock_rate = 1.0
        self.paused: set[int] = set()
        self.errors: list[str] = []
        self.term_churn: list[int] = []
        self.churn_violations: list[str] = []

    def log(self, kind: str, action: str, **detail: Any) -> None:
        self.timeline.append({"t": round(self.now(), 3), "kind": kind, "action": action, **detail})

    def _hold(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def run(self, schedule: Schedule) -> None:
        try:
            for f in schedule.faults:
                if self.stop.is_set():
                    break
                self._hold(f.gap_s)
                if self.stop.is_set():
                    break
                try:
                    self.apply(f)
                except Exception as exc:  # a nemesis error must not leave faults in place
                    self.errors.append(f"{f.kind}: {exc!r}")
                    self.log(f.kind, "error", error=repr(exc)[:300])
                finally:
                    self.heal_everything()
        finally:
            self.heal_everything()

    # --- faults ----------------------------------------------------------------------------------

    def _leader(self) -> int | None:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            lead = self.c.leader_index()
            if lead is not None:
                return lead
            self.stop.wait(0.1)
        return None

    def apply(self, f: Fault) -> None:
        c, rng = self.c, random.Random(f.pick)
        n = len(c.nodes)
        self.counts[f.kind] = self.counts.get(f.kind, 0) + 1
        if f.kind in ("kill", "kill-leader"):
            target = self._leader() if f.kind == "kill-leader" else rng.randrange(n)
            target = rng.randrange(n) if target is None else target
            c.node(target).kill()
            self.log(f.kind, "start", nodes=[target])
            self._hold(f.dur_s)
            c.node(target).start()
            self.log(f.kind, "end", nodes=[target])
        elif f.kind == "kill-all":
            for i in range(n):
                c.node(i).kill()
            self.log(f.kind, "start", nodes=list(range(n)))
            self._hold(f.dur_s)
            for i in range(n):
                c.node(i).start()
            self.log(f.kind, "end", nodes=list(range(n)))
        elif f.kind == "pause":
            target = self._leader()
            target = rng.randrange(n) if target is None else target
            self._signal(target, signal.SIGSTOP)
            self.paused.add(target)
            self.log(f.kind, "start", nodes=[target])
            self._hold(f.dur_s)
            self._signal(target, signal.SIGCONT)
            self.paused.discard(target)
            self.log(f.kind, "end", nodes=[target])
        elif f.kind == "pause-isolate":
            # A paused leader that wakes still isolated keeps believing it leads until
            # check-quorum deposes it: the window in which it must not serve anything stale.
            target = self._leader()
            target = rng.randrange(n) if target is None else target
            self._signal(target, signal.SIGSTOP)
            self.paused.add(target)
            rest = [i for i in range(n) if i != target]
            c.block({(target, j) for j in rest} | {(j, target) for j in rest})
            self.log(f.kind, "start", nodes=[target])
            self._hold(f.dur_s)
            self._signal(target, signal.SIGCONT)
            self.paused.discard(target)
            self.log(f.kind, "wake", nodes=[target])
            self._hold(2.0)
            c.heal()
            self.log(f.kind, "end", nodes=[target])
        elif f.kind.startswith("partition"):
            links, detail = self._partition_links(f.kind, rng)
            term0 = c.max_term() if f.kind == "partition-bridge" else 0
            c.block(links)
            self.log(f.kind, "start", links=sorted(links), **detail)
            self._hold(f.dur_s)
            if f.kind == "partition-bridge":
                # Pre-vote and check-quorum keep a bridged cluster stable: a node that cannot hear
                # the leader must not disturb it. A few terms of slack absorb a slow machine.
                churn = c.max_term() - term0
                self.term_churn.append(churn)
                if churn > CHURN_LIMIT and f.dur_s >= 3.0:
                    self.churn_violations.append(
                        f"term rose by {churn} during a {f.dur_s:.1f}s bridge partition"
                    )
            c.heal()
            self.log(f.kind, "end")
        elif f.kind == "torn-tail":
            lead = self._leader()
            target = rng.choice([i for i in range(n) if i != lead])
            c.node(target).kill()
            how = self._tear(target, rng)
            self.log(f.kind, "start", nodes=[target], edit=how)
            self._hold(min(f.dur_s, 1.0))
            c.node(target).start()
            self.log(f.kind, "end", nodes=[target])
        elif f.kind == "enospc":
            target = self._leader()
            target = rng.randrange(n) if target is None else target
            budget = rng.choice([4096, 32768, 262144])
            c.node(target).kill()
            c.reset_env(target, RAFTKV_TEST_DISK=f"enospc_after:{budget}")
            c.node(target).start()
            self.log(f.kind, "start", nodes=[target], bytes=budget)
            self._hold(f.dur_s)
            c.node(target).kill()
            c.reset_env(target)
            c.node(target).start()
            self.log(f.kind, "end", nodes=[target])
        elif f.kind == "clock":
            target = rng.randrange(n)
            variant = rng.choice(["fast", "slow", "jump"])
            env = {"fast": {"RAFTKV_TEST_CLOCK_RATE": "2"}, "slow": {"RAFTKV_TEST_CLOCK_RATE": "0.5"},
                   "jump": {"RAFTKV_TEST_CLOCK_OFFSET": "3600"}}[variant]
            if variant == "fast":
                self.max_clock_rate = 2.0
            elif variant == "slow":
                self.min_clock_rate = 0.5
            c.node(target).kill()
            c.reset_env(target, **env)
            c.node(target).start()
            self.log(f.kind, "start", nodes=[target], variant=variant)
            self._hold(max(f.dur_s, 3.0))
            c.node(target).kill()
            c.reset_env(target)
            c.node(target).start()
            self.log(f.kind, "end", nodes=[target])
        else:
            raise ValueError(f"unknown fault {f.kind}")

    def _signal(self, i: int, sig: signal.Signals) -> None:
        pid = self.c.node(i).pid
        if pid is not None and self.c.node(i).alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _partition_links(self, kind: str, rng: random.Random) -> tuple[set[tuple[int, int]], dict[str, Any]]:
        n = len(self.c.nodes)
        nodes = list(range(n))

        def cut(a: list[int], b: list[int]) -> set[tuple[int, int]]:
            return {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}

        if kind == "partition-leader":
            lead = self._leader()
            lead = rng.randrange(n) if lead is None else lead
            rest = [i for i in nodes if i != lead]
            return cut([lead], rest), {"isolated": lead}
        if kind == "partition-half":
            rng.shuffle(nodes)
            minority = nodes[: (n - 1) // 2]
            return cut(minority, nodes[len(minority):]), {"minority": sorted(minority)}
        if kind == "partition-oneway":
            # The leader (or a random node) cannot send to anyone but still receives: a one-way cut.
            lead = self._leader() if rng.random() < 0.5 else None
            src = rng.randrange(n) if lead is None else lead
            return {(src, j) for j in nodes if j != src}, {"mute": src}
        # Bridge: two sides that only the bridge node connects (3 nodes: 0 and 2 cannot talk).
        rng.shuffle(nodes)
        bridge = nodes[0]
        rest = nodes[1:]
        half = len(rest) // 2
        return cut(rest[:half], rest[half:]), {"bridge": bridge}

    def _tear(self, i: int, rng: random.Random) -> str:
        """Simulate a torn write of an unacknowledged record at the tail of the newest segment:
        a record header promising more bytes than follow (an incomplete record), or garbage.
        Synced records are left intact, since losing those on one node is a different fault
        (acknowledged data loss), and nothing valid may follow the torn bytes (that would be
        mid-log corruption, which the node must refuse)."""
        seg = self.c.newest_segment(i)
        if seg is None:
            return "no segment"
        if rng.random() < 0.5:
            n = rng.randrange(64, 4096)
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 48)))
            torn = struct.pack("<IIB", n, rng.randrange(1 << 32), 1) + body
            what = f"incomplete record ({len(torn)} of {n + 9} bytes)"
        else:
            torn = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            what = f"{len(torn)} garbage bytes"
        with seg.open("ab") as f:
            f.write(torn)
        return f"{what} appended to {seg.name}"

    def heal_everything(self) -> None:
        """Links pass, paused nodes continue, base environment everywhere, every node running."""
        with contextlib.suppress(Exception):
            self.c.heal()
        for i in list(self.paused):
            self._signal(i, signal.SIGCONT)
        self.paused.clear()
        for i in range(len(self.c.nodes)):
            node = self.c.node(i)
            if node.env != self.c.base_env[i]:
                if node.alive:
                    node.kill()
                self.c.reset_env(i)
            if not node.alive:
                if node.proc is not None and node.proc.poll() is not None:
                    self.log("process", "exited", nodes=[i], code=node.proc.returncode)
                    with contextlib.suppress(Exception):
                        node.kill()  # reap and unregister
                node.start()
        self._wait_leader(20.0)

    def _wait_leader(self, deadline_s: float) -> None:
        """Wait (bounded) until a leader is known again, so the next fault's quiet gap measures
        time with a working cluster rather than process start-up on a loaded machine."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.c.leader_index() is not None:
                return
            time.sleep(0.1)  # polling rate only; the loop is bounded by the deadline
        self.log("cluster", "no-leader", after_s=deadline_s)
