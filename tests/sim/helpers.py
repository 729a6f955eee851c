"""Shared parts of the simulation tests: scale, the per-seed fault duration, failure text, and the
scripted Figure 8 scenario."""

from __future__ import annotations

import os

from raftkv.sim.cli import replay_command
from raftkv.sim.script import ScriptedCluster
from raftkv.sim.world import DEFAULT_FAULT_MS, SeedResult
from raftkv.state.commands import Put, RequestId, encode_command

SCALE = os.environ.get("RAFTKV_TEST_SCALE", "ci")
FAULT_MS = DEFAULT_FAULT_MS


def failure_text(result: SeedResult, unsafe: list[str] | None = None) -> str:
    trace = "\n".join(f"  | {line}" for line in result.trace)
    return (
        f"seed {result.seed} ({result.nodes} nodes): {result.violation}\n"
        f"  replay: {replay_command(result.seed, result.nodes, unsafe or [], FAULT_MS)}\n{trace}"
    )


def figure8(unsafe: frozenset[str]) -> ScriptedCluster:
    """Leader 1 replicates entry 2 (term 1) to node 2 only and crashes; node 2 wins term 2 and
    catches node 3 up one entry per message. Counting node 3's ack of index 2 would commit an
    entry of an earlier term, which Raft §5.4.2 forbids."""
    c = ScriptedCluster(7, max_size_per_msg=1)
    c.add_nodes(3, unsafe=unsafe)
    c.campaign(1)
    c.stabilize()
    c.propose(1, encode_command(RequestId(1, 1, 1), Put(b"k", b"v")))
    c.process_ready(1)
    c.deliver(2)
    c.deliver(3, drop=True)
    c.process_ready(2)
    c.crash(1)
    c.crash(3, lose_unsynced=False)  # a restart forgets the leader, so node 3 grants the pre-vote
    c.restart(3)
    c.campaign(2)
    c.stabilize()
    return c
