"""The simulated network: delays, drops, duplicates and partition shapes."""

from __future__ import annotations

import random

from raftkv.sim.net import NetFaults, Network, bridge, deaf, halves, ring


def test_clean_network_delivers_once_with_positive_delays() -> None:
    net = Network(random.Random(1))
    delays = [net.send(1, 2) for _ in range(1000)]
    assert all(len(d) == 1 and 1 <= d[0] <= 300 for d in delays)
    assert len({d[0] for d in delays}) > 10  # varied delays reorder messages


def test_drop_and_duplicate_rates() -> None:
    net = Network(random.Random(2), NetFaults(drop=0.2, duplicate=0.05))
    copies = [len(net.send(1, 2)) for _ in range(10_000)]
    assert 1700 < copies.count(0) < 2300
    assert 250 < copies.count(2) < 550
    assert net.stats.drops == copies.count(0) and net.stats.duplicates == copies.count(2)


def test_symmetric_partition_cuts_both_ways_only_between_groups() -> None:
    net = Network(random.Random(3))
    net.cut_groups([[1], [2, 3]])
    assert net.send(1, 2) == [] and net.send(3, 1) == []
    assert net.send(2, 3) and net.send(3, 2)
    net.heal()
    assert net.send(1, 2)


def test_one_way_partition() -> None:
    net = Network(random.Random(4))
    net.cut_one_way(deaf(2, [1, 2, 3]))
    assert not net.can_deliver(1, 2) and not net.can_deliver(3, 2)
    assert net.can_deliver(2, 1) and net.can_deliver(2, 3) and net.can_deliver(1, 3)


def test_halves_gives_a_majority_and_a_minority() -> None:
    for seed in range(20):
        groups = halves([1, 2, 3, 4, 5], random.Random(seed))
        sizes = sorted(len(g) for g in groups)
        assert sum(sizes) == 5 and sizes[1] >= 3, seed


def test_ring_and_bridge_shapes() -> None:
    nodes = [1, 2, 3, 4, 5]
    net = Network(random.Random(5))
    net.cut_except(nodes, ring(nodes))
    for a in nodes:
        reachable = [b for b in nodes if b != a and net.can_deliver(a, b)]
        assert len(reachable) == 2
    allowed = bridge(nodes, random.Random(6))
    net.cut_except(nodes, allowed)
    degree = {a: sum(net.can_deliver(a, b) for b in nodes if b != a) for a in nodes}
    assert sorted(degree.values())[-1] == 4  # the bridge talks to everybody
    assert sum(1 for d in degree.values() if d == 4) == 1
