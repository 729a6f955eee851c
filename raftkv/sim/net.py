"""The simulated network: per-message delay, drop and duplication, and partitions.

Owns: which directed links are cut, the fault rates, and the delivery times of each sent message.
Reordering is a consequence of independent random delays.

Must not: deliver anything itself (the world schedules deliveries), look at message contents beyond
the endpoints, or draw randomness except from its own ``random.Random``.

Invariants: a message between two nodes on a cut link is never delivered (checked when sent and
again when it arrives, so a partition also swallows messages in flight); a message is delivered at
most twice; delays are positive integer milliseconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

Link = tuple[int, int]


@dataclass(slots=True)
class NetFaults:
    """Rates of per-message faults; all zero means a clean (but still delaying) network."""

    drop: float = 0.0
    duplicate: float = 0.0
    tail: float = 0.02  # probability of a delay spike (the heavy tail)


@dataclass(slots=True)
class NetStats:
    sent: int = 0
    drops: int = 0
    duplicates: int = 0
    cut: int = 0


@dataclass(slots=True)
class Network:
    rng: random.Random
    faults: NetFaults = field(default_factory=NetFaults)
    blocked: set[Link] = field(default_factory=set)
    stats: NetStats = field(default_factory=NetStats)

    def delay(self) -> int:
        """One message's latency in ms: mostly 1-10, sometimes up to 50, rarely a 50-300 spike."""
        r = self.rng.random()
        if r < self.faults.tail:
            return self.rng.randint(50, 300)
        if r < 0.15:
            return self.rng.randint(10, 50)
        return self.rng.randint(1, 10)

    def send(self, frm: int, to: int) -> list[int]:
        """Delays (ms) of the copies to deliver: none if dropped or cut, two if duplicated."""
        self.stats.sent += 1
        if (frm, to) in self.blocked:
            self.stats.cut += 1
            return []
        if self.faults.drop and self.rng.random() < self.faults.drop:
            self.stats.drops += 1
            return []
        delays = [self.delay()]
        if self.faults.duplicate and self.rng.random() < self.faults.duplicate:
            self.stats.duplicates += 1
            delays.append(self.delay())
        return delays

    def can_deliver(self, frm: int, to: int) -> bool:
        return (frm, to) not in self.blocked

    # -- partitions ------------------------------------------------------------------------

    def heal(self) -> None:
        self.blocked.clear()

    def cut_groups(self, groups: list[list[int]]) -> None:
        """Symmetric partition: nodes in different groups cannot talk."""
        self.blocked.clear()
        for gi, ga in enumerate(groups):
            for gj, gb in enumerate(groups):
                if gi != gj:
                    self.blocked.update((a, b) for a in ga for b in gb)

    def cut_one_way(self, links: list[Link]) -> None:
        """One-way partition: each (i, j) loses i -> j while j -> i still works."""
        self.blocked.clear()
        self.blocked.update(links)

    def cut_except(self, nodes: list[int], allowed: set[frozenset[int]]) -> None:
        """Cut every pair of nodes not in ``allowed`` (both directions): rings and bridges."""
        self.blocked.clear()
        for a in nodes:
            for b in nodes:
                if a != b and frozenset((a, b)) not in allowed:
                    self.blocked.add((a, b))


def halves(nodes: list[int], rng: random.Random) -> list[list[int]]:
    """A random split into a majority and a minority."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    k = rng.randint(1, (len(nodes) - 1) // 2)
    return [sorted(shuffled[:k]), sorted(shuffled[k:])]


def ring(nodes: list[int]) -> set[frozenset[int]]:
    """Each node talks only to its two neighbours: every node sees a majority of 5, none all."""
    n = len(nodes)
    return {frozenset((nodes[i], nodes[(i + 1) % n])) for i in range(n)}


def bridge(nodes: list[int], rng: random.Random) -> set[frozenset[int]]:
    """Two halves joined only through one bridge node, which talks to everybody."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    middle, rest = shuffled[0], shuffled[1:]
    half = len(rest) // 2
    left, right = rest[:half], rest[half:]
    allowed: set[frozenset[int]] = set()
    for side in (left, right):
        for a in side:
            allowed.add(frozenset((a, middle)))
            for b in side:
                if a != b:
                    allowed.add(frozenset((a, b)))
    return allowed


def deaf(node: int, nodes: list[int]) -> list[Link]:
    """One-way partition where ``node`` can send to everybody but hears nobody."""
    return [(other, node) for other in nodes if other != node]
