"""Process harness for tier c: real ``raftkv`` nodes as subprocesses on 127.0.0.1.

Owns: picking free ports (bind to port 0), temporary data directories, one log file per node
(stdout and stderr), starting, killing (SIGKILL), stopping (SIGTERM) and restarting a node with the
same flags, waiting for readiness (``/health``, then an agreed leader via
``/v3/maintenance/status``) with a deadline, finding the leader, and a tiny synchronous JSON client
(``http.client``) for the etcd v3 gateway.

Every process the harness starts is recorded in a module-level registry by PID; ``Cluster.stop``
kills them, and an ``atexit`` guard kills whatever is left if a test run dies before its fixtures
finalise. No function here sleeps to synchronise: waits poll a condition until a deadline, and
the short pause between polls only bounds the polling rate.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

HOST = "127.0.0.1"
# Timing of tier c (TESTING.md §4.3): a shared 2-core machine needs slack, so the election timeout
# sits at the top of the 500-1000 ms range.
HEARTBEAT_MS = 50
ELECTION_MS = 1000
READY_DEADLINE = 60.0
POLL_INTERVAL = 0.05

# PID -> process, for every process any harness object started and has not yet reaped.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_leftovers() -> None:
    """atexit guard: SIGKILL every process still registered (a crashed run must not leak nodes)."""
    for pid, proc in list(_LIVE.items()):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        _LIVE.pop(pid, None)


atexit.register(_kill_leftovers)


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def unb64(data: str) -> bytes:
    return base64.b64decode(data)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all sockets held open until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(
    condition: Callable[[], T | None], deadline: float, what: str, diag: Callable[[], str] | None = None
) -> T:
    """Poll ``condition`` until it returns a truthy value; ``AssertionError`` after ``deadline`` s."""
    end = time.monotonic() + deadline
    last_exc: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() >= end:
            extra = f"; last error: {last_exc!r}" if last_exc else ""
            details = "\n" + diag() if diag else ""
            raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what}{extra}{details}")
        time.sleep(POLL_INTERVAL)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def json_pairs(self) -> Any:
        """Parse keeping field order: every object becomes a list of (name, value) pairs."""
        return json.loads(self.body, object_pairs_hook=list)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body[:500]!r})"


def request(
    port: int,
    path: str,
    body: bytes | str | dict[str, Any] | None = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request to 127.0.0.1:port; dict bodies are JSON-encoded."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


@dataclass
class Node:
    """One raftkv process; its flags stay fixed across restarts."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    initial_cluster: str = ""
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    member_id: str | None = None

    @property
    def client_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    def args(self) -> list[str]:
        return [
            sys.executable, "-m", "raftkv.server.main",
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            *self.extra_args,
        ]

    def start(self) -> None:
        assert not self.alive, f"{self.name} is already running"
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts}: {' '.join(self.args())}\n".encode())
        log.flush()
        env = dict(os.environ, RAFTKV_TEST="1", PYTHONUNBUFFERED="1")
        try:
            self.proc = subprocess.Popen(
                self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        finally:
            log.close()  # the child holds its own descriptor
        _LIVE[self.proc.pid] = self.proc

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _reap(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        _LIVE.pop(self.proc.pid, None)
        return code

    def kill(self) -> int:
        """SIGKILL (a crash: nothing is flushed) and reap."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        code = self._reap(30)
        assert code is not None, f"{self.name} (pid {self.proc.pid}) survived SIGKILL"
        return code

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (a clean stop), falling back to SIGKILL after ``timeout`` s; returns the status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        code = self._reap(timeout)
        if code is None:
            return self.kill()
        return code

    def restart(self) -> None:
        if self.alive:
            self.kill()
        self.start()

    def log_text(self, tail: int = 12_000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return text[-tail:]

    # --- client helpers --------------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any] | bytes | str | None = None, **kw: Any) -> Response:
        return request(self.client_port, path, body, **kw)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        r = self.post("/v3/maintenance/status", {}, timeout=timeout)
        if r.status != 200:
            raise ValueError(f"status of {self.name}: {r!r}")
        body: dict[str, Any] = r.json()
        self.member_id = body["header"]["member_id"]
        return body

    def healthy(self) -> bool:
        return request(self.client_port, "/health", method="GET", timeout=2.0).status == 200


class Cluster:
    """N nodes with free ports and a shared temp root; ``stop()`` kills every process it started."""

    def __init__(
        self,
        size: int = 3,
        *,
        extra_args: list[str] | None = None,
        root: Path | None = None,
        heartbeat_ms: int = HEARTBEAT_MS,
        election_ms: int = ELECTION_MS,
    ) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="raftkv-cluster-"))
        self._own_root = root is None
        self.root.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * size)
        args = [
            "--heartbeat-interval", str(heartbeat_ms),
            "--election-timeout", str(election_ms),
            *(extra_args or []),
        ]
        self.nodes = [
            Node(
                name=f"n{i + 1}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=self.root / f"n{i + 1}",
                log_path=self.root / f"n{i + 1}.log",
                extra_args=list(args),
            )
            for i in range(size)
        ]
        initial = ",".join(f"{n.name}={n.peer_url}" for n in self.nodes)
        for n in self.nodes:
            n.initial_cluster = initial

    # --- lifetime --------------------------------------------------------------------------------

    def start(self, deadline: float = READY_DEADLINE) -> Cluster:
        for n in self.nodes:
            n.start()
        self.wait_ready(deadline)
        return self

    def stop(self) -> None:
        """Stop every process this cluster started, by PID (SIGKILL: teardown needs no grace)."""
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(n.proc.pid, signal.SIGKILL)
        for n in self.nodes:
            if n.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    n.proc.wait(timeout=30)
                if n.proc.poll() is not None:
                    _LIVE.pop(n.proc.pid, None)

    def cleanup(self) -> None:
        self.stop()
        if self._own_root:
            import shutil

            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # --- observation -----------------------------------------------------------------------------

    @property
    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    def logs(self, tail: int = 6_000) -> str:
        parts = []
        for n in self.nodes:
            state = f"pid {n.pid}, exit {n.proc.poll() if n.proc else None}"
            parts.append(f"----- {n.name} ({state}) log {n.log_path}:\n{n.log_text(tail)}")
        return "\n".join(parts)

    def _check_processes(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is not None and n.proc.pid in _LIVE:
                raise AssertionError(
                    f"{n.name} exited unexpectedly with {n.proc.returncode}\n{self.logs()}"
                )

    def wait_ready(self, deadline: float = READY_DEADLINE, nodes: list[Node] | None = None) -> Node:
        """Every given (default: live) node is healthy and they all name one leader among them."""
        targets = nodes or self.live

        def healthy() -> bool:
            self._check_processes()
            return all(n.healthy() for n in targets)

        wait_until(healthy, deadline, "/health on every node", self.logs)
        return self.wait_leader(deadline, nodes=targets)

    def leader_of(self, nodes: list[Node]) -> Node | None:
        """The leader if every node in ``nodes`` agrees on one that is among them, else None."""
        statuses = [n.status() for n in nodes]
        leaders = {s.get("leader") for s in statuses}
        if len(leaders) != 1 or None in leaders:
            return None
        (leader_id,) = leaders
        for n in nodes:
            if n.member_id == leader_id:
                return n
        return None

    def wait_leader(
        self, deadline: float = READY_DEADLINE, nodes: list[Node] | None = None, exclude: Node | None = None
    ) -> Node:
        targets = nodes or self.live

        def agreed() -> Node | None:
            self._check_processes()
            leader = self.leader_of(targets)
            return None if leader is exclude else leader

        return wait_until(agreed, deadline, "an agreed leader", self.logs)

    def leader(self) -> Node:
        return self.wait_leader()

    def followers(self) -> list[Node]:
        leader = self.leader()
        return [n for n in self.live if n is not leader]

    # --- KV helpers ------------------------------------------------------------------------------

    def call(self, node: Node, path: str, body: dict[str, Any], deadline: float = 30.0) -> Response:
        """``path`` on ``node``, retried on 503 and connection errors until ``deadline`` (an election
        may be in progress; a 503 promises nothing either way). Any other non-200 answer fails.
        Callers only retry requests whose repetition is harmless for what they check (reads, and
        puts whose final value, not version, is asserted)."""

        def attempt() -> Response | None:
            r = node.post(path, body)
            if r.status == 503:
                return None
            assert r.status == 200, f"{path} via {node.name} ({body}): {r!r}"
            return r

        return wait_until(attempt, deadline, f"{path} via {node.name}", self.logs)

    def put(self, node: Node, key: str, value: str, deadline: float = 30.0) -> Response:
        return self.call(node, "/v3/kv/put", {"key": b64(key), "value": b64(value)}, deadline)

    def get(self, node: Node, key: str, *, serializable: bool = False) -> bytes | None:
        r = self.call(node, "/v3/kv/range", {"key": b64(key), "serializable": serializable})
        kvs = r.json().get("kvs", [])
        return unb64(kvs[0].get("value", "")) if kvs else None

    def prefix(self, node: Node, prefix: str, *, serializable: bool = False) -> dict[str, bytes]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = {"key": b64(prefix), "range_end": b64(end), "serializable": serializable}
        r = self.call(node, "/v3/kv/range", body)
        return {unb64(kv["key"]).decode(): unb64(kv.get("value", "")) for kv in r.json().get("kvs", [])}
