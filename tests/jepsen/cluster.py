"""A harness cluster whose peer links run through ``ProxySet`` and whose nodes take per-node
test environment (disk shim, clock, canary switches).

Owns: building ``tests.cluster.harness`` nodes with a per-node environment (by subclassing
``Node``, the harness itself is unchanged), the member ids (``raftkv.server.config.member_id``),
the dial map of every node, partitions expressed as sets of blocked directed links, and WAL tail
edits between a kill and a restart.

Every node process is recorded in the harness registry by PID; ``close`` kills them by PID and
stops the proxy thread, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from raftkv.server.config import member_id
from tests.cluster import harness
from tests.cluster.harness import Cluster, Node
from tests.jepsen.proxy import ProxySet

TOKEN = "raftkv-cluster"


@dataclass
class EnvNode(Node):
    """A harness node started with extra environment variables (set before each start)."""

    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        self.starts += 1
        log = self.log_path.open("ab")
        env_text = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()))
        log.write(f"\n===== start #{self.starts}: {env_text} {' '.join(self.args())}\n".encode())
        log.flush()
        env = dict(os.environ, RAFTKV_TEST="1", PYTHONUNBUFFERED="1", **self.env)
        # Drop inherited RAFTKV_* settings that are not ours: click reads RAFTKV_<FLAG> as flags.
        for k in list(env):
            if k.startswith("RAFTKV_") and k not in self.env and k not in ("RAFTKV_TEST", "RAFTKV_LOG_LEVEL"):
                del env[k]
        try:
            self.proc = subprocess.Popen(
                self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        finally:
            log.close()
        harness._LIVE[self.proc.pid] = self.proc


class JepsenCluster(Cluster):
    """N ``EnvNode``s, all peer links proxied."""

    def __init__(
        self,
        size: int,
        root: Path,
        *,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            size, root=root, heartbeat_ms=heartbeat_ms, election_ms=election_ms, extra_args=extra_args
        )
        self.election_ms = election_ms
        self.nodes = [EnvNode(**{f: getattr(n, f) for f in Node.__dataclass_fields__}) for n in self.nodes]
        self.ids = [member_id([n.peer_url], TOKEN) for n in self.nodes]
        self.proxies = ProxySet()
        for i in range(size):
            dial = []
            for j, dst in enumerate(self.nodes):
                if i != j:
                    port = self.proxies.add(i, j, dst.peer_port)
                    dial.append(f"{self.ids[j]:x}={harness.HOST}:{port}")
            self.node(i).env = {"RAFTKV_TEST_PEER_DIAL": ",".join(dial), **(env or {})}
        self.base_env = [dict(self.node(i).env) for i in range(size)]

    def node(self, i: int) -> EnvNode:
        n = self.nodes[i]
        assert isinstance(n, EnvNode)
        return n

    def index_of(self, node: Node) -> int:
        return self.nodes.index(node)

    def reset_env(self, i: int, **extra: str) -> None:
        self.node(i).env = {**self.base_env[i], **extra}

    # --- observation without waiting ------------------------------------------------------------

    def leader_index(self) -> int | None:
        """The node a majority of the live, answering nodes names as leader (None if unsure)."""
        votes: dict[str, int] = {}
        for n in self.live:
            with contextlib.suppress(Exception):
                s = harness.request(n.client_port, "/v3/maintenance/status", b"{}", timeout=1.0)
                if s.status == 200:
                    body = s.json()
                    n.member_id = body["header"]["member_id"]
                    lead = body.get("leader")
                    if lead:
                        votes[lead] = votes.get(lead, 0) + 1
        if not votes:
            return None
        lead = max(votes, key=lambda k: votes[k])
        for i in range(len(self.nodes)):
            if int(lead) == self.ids[i]:
                return i
        return None

    def max_term(self) -> int:
        """The highest raft_term any live node reports (0 if none answers)."""
        term = 0
        for n in self.live:
            with contextlib.suppress(Exception):
                r = harness.request(n.client_port, "/v3/maintenance/status", b"{}", timeout=1.0)
                if r.status == 200:
                    term = max(term, int(r.json()["header"].get("raft_term", 0)))
        return term

    # --- partitions ------------------------------------------------------------------------------

    def block(self, links: set[tuple[int, int]], mode: str = "drop") -> None:
        """Put every directed link in ``links`` into ``mode``, every other link into pass."""
        for (src, dst) in self.proxies.links:
            self.proxies.set_mode(src, dst, mode if (src, dst) in links else "pass")

    def heal(self) -> None:
        self.proxies.heal_all()

    # --- WAL edits -------------------------------------------------------------------------------

    def newest_segment(self, i: int) -> Path | None:
        wal = self.node(i).data_dir / "wal"
        segs = sorted(wal.glob("*.wal")) if wal.is_dir() else []
        return segs[-1] if segs else None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.proxies.close()
