"""``bench kv``: raftkv against etcd 3.4 under the same wrk load (issue 4).

Throughput mode (the default) starts a 3-node raftkv cluster on 127.0.0.1 (free ports, temporary
data dirs, fsync on), drives it with wrk through ``scripts/wrk/put.lua`` and
``scripts/wrk/range.lua`` at 1, 16, 64 and 256 connections, records every node's RSS, stops it,
and then does the same with a 3-node etcd 3.4 cluster. The two systems are never up at the same
time, so neither steals CPU from the other on this 2-core machine. It prints one table row per
(system, op, connections) with ops/s, p50/p99, errors and the servers' CPU time per op (steadier
than ops/s when other work shares the machine), then the raftkv/etcd ratios per cell.

Load spreading (the same for both systems): the connections of a cell are dealt round-robin over
the three client endpoints, leader first (1 → leader only; 16 → 6/5/5; 64 → 22/21/21;
256 → 86/85/85). One wrk process runs per endpoint that got connections, all at once for the
same duration; their counts are summed and their latency distributions merged from 1000
quantiles each. ``--target leader`` sends everything to the leader instead.

Memory mode (``--memory``) loads 100k distinct 256-byte keys into each system (bounded by
``--memory-timeout``), reports every node's RSS, compacts to the current revision and reports RSS
again.

Profile mode (``--profile DIR``) runs the raftkv cells again with py-spy sampling the leader,
writes the collapsed stacks to DIR and prints the top functions by inclusive and self time.

Every process this script starts (nodes and wrk) is stopped by PID on exit, error or Ctrl-C.
All traffic goes to 127.0.0.1. Missing tools (wrk, etcd) are installed with apt-get.

Run: ``.venv/bin/python scripts/bench_kv.py [--duration 5] [--memory | --profile DIR]``.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRK_DIR = ROOT / "scripts" / "wrk"
ETCD_BIN = "/usr/bin/etcd"
HOST = "127.0.0.1"
CONNECTIONS = (1, 16, 64, 256)
OPS = ("put", "range")
RANGE_PREFIX = "bench/range/"
RANGE_KEYS = 1000
VALUE_BYTES = 256
PUT_KEYSPACE = 10_000  # keys per wrk thread before put.lua wraps around
MEMORY_PREFIX = "bench/mem/"

# Every child process, so that atexit and signal handlers can stop the ones still running.
_CHILDREN: list[subprocess.Popen[bytes]] = []


# --- processes -----------------------------------------------------------------------------------


def spawn(cmd: Sequence[str], *, log: Path | None = None, env: dict[str, str] | None = None,
          stdout_pipe: bool = False) -> subprocess.Popen[bytes]:
    """Start a child in its own session (a Ctrl-C reaches only us; we stop the children in order)."""
    log_file = log.open("ab") if log and not stdout_pipe else None
    out = subprocess.PIPE if stdout_pipe else (log_file or subprocess.DEVNULL)
    try:
        proc = subprocess.Popen(
            list(cmd), stdout=out,
            stderr=subprocess.STDOUT if log_file or stdout_pipe else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, cwd=ROOT, env=env, start_new_session=True,
        )
    finally:
        if log_file is not None:
            log_file.close()  # the child has its own copy of the descriptor
    _CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM (both servers shut down cleanly on it), then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except ProcessLookupError:
            pass
    if proc in _CHILDREN:
        _CHILDREN.remove(proc)


def stop_all() -> None:
    for proc in list(_CHILDREN):
        stop(proc, grace=5.0)


def _on_sigterm(signum: int, frame: object) -> None:
    # Turn SIGTERM into SystemExit so that the finally blocks (and atexit) stop the children.
    raise SystemExit(128 + signum)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state), so utime (field 14) is fields[11] and stime fields[12].
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# --- tools ---------------------------------------------------------------------------------------


def ensure_tools() -> None:
    """Install wrk and etcd-server (Debian's etcd 3.4) when missing; we run as root."""
    missing = [pkg for pkg, path in (("wrk", shutil.which("wrk")), ("etcd-server", ETCD_BIN))
               if not path or not Path(path).exists()]
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env)


def free_ports(n: int) -> list[int]:
    """Ports the kernel hands out now; all sockets stay open until every port is picked so that
    no two are the same."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --- HTTP client (setup, status, compaction; the load itself is wrk's) ---------------------------


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def call(url: str, method: str, body: dict[str, object], timeout: float = 10.0) -> dict[str, object]:
    req = urllib.request.Request(f"{url}/v3/{method}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        result: dict[str, object] = json.loads(resp.read() or b"{}")
        return result


# --- clusters ------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    client_url: str
    proc: subprocess.Popen[bytes]
    member_id: str = ""


@dataclass
class Cluster:
    system: str
    nodes: list[Node]
    workdir: Path
    leader: str = ""  # member id

    def ordered(self) -> list[Node]:
        """Leader first, so that a 1-connection cell always talks to the leader."""
        return sorted(self.nodes, key=lambda n: n.member_id != self.leader)

    def leader_node(self) -> Node:
        return self.ordered()[0]

    def rss(self) -> dict[str, int | None]:
        return {n.name: rss_kib(n.proc.pid) for n in self.nodes}


def node_command(system: str, name: str, data_dir: Path, client: int, peer: int,
                 initial_cluster: str) -> list[str]:
    flags = [
        "--name", name, "--data-dir", str(data_dir),
        "--listen-client-urls", f"http://{HOST}:{client}",
        "--advertise-client-urls", f"http://{HOST}:{client}",
        "--listen-peer-urls", f"http://{HOST}:{peer}",
        "--initial-advertise-peer-urls", f"http://{HOST}:{peer}",
        "--initial-cluster", initial_cluster,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", f"bench-{system}",
    ]
    if system == "etcd":
        return [ETCD_BIN, *flags, "--logger", "zap", "--log-outputs", "stderr"]
    python = ROOT / ".venv" / "bin" / "python"
    return [str(python if python.exists() else sys.executable), "-m", "raftkv.server.main", *flags]


def start_cluster(system: str, workdir: Path, ready_timeout: float = 60.0) -> Cluster:
    ports = free_ports(6)
    names = ["n1", "n2", "n3"]
    peers = {name: ports[3 + i] for i, name in enumerate(names)}
    initial = ",".join(f"{name}=http://{HOST}:{port}" for name, port in peers.items())
    # Keep the host's ETCD_*/RAFTKV_* settings out: both read flags from the environment too.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "RAFTKV_"))}
    nodes = []
    for i, name in enumerate(names):
        data_dir = workdir / system / name
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        cmd = node_command(system, name, data_dir, ports[i], peers[name], initial)
        proc = spawn(cmd, log=workdir / f"{system}-{name}.log", env=env)
        nodes.append(Node(name, f"http://{HOST}:{ports[i]}", proc))
    cluster = Cluster(system, nodes, workdir)
    wait_ready(cluster, ready_timeout)
    return cluster


def wait_ready(cluster: Cluster, timeout: float) -> None:
    """Until every node reports the same leader and a put through the leader succeeds."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            if node.proc.poll() is not None:
                raise RuntimeError(f"{cluster.system} {node.name} exited with {node.proc.returncode}; "
                                   f"see {cluster.workdir}/{cluster.system}-{node.name}.log")
        try:
            leaders = set()
            for node in cluster.nodes:
                status = call(node.client_url, "maintenance/status", {}, timeout=2.0)
                header = status.get("header")
                assert isinstance(header, dict)
                node.member_id = str(header.get("member_id", ""))
                leaders.add(str(status.get("leader", "0")))
            if len(leaders) == 1 and "0" not in leaders:
                cluster.leader = leaders.pop()
                call(cluster.leader_node().client_url, "kv/put",
                     {"key": b64("bench/ready"), "value": b64("1")}, timeout=5.0)
                return
            last_error = f"leaders seen: {leaders}"
        except (OSError, urllib.error.URLError, ValueError, AssertionError) as exc:
            last_error = str(exc)
        time.sleep(0.3)
    raise RuntimeError(f"{cluster.system} cluster not ready after {timeout}s: {last_error}")


def stop_cluster(cluster: Cluster) -> None:
    for node in cluster.nodes:
        stop(node.proc)


def preload_range_keys(cluster: Cluster) -> None:
    """Write the keys range.lua reads (16 client threads: fast, and the same for both systems)."""
    url = cluster.leader_node().client_url
    value = b64(b"r" * VALUE_BYTES)

    def put(i: int) -> None:
        call(url, "kv/put", {"key": b64(f"{RANGE_PREFIX}{i:08d}"), "value": value})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(RANGE_KEYS)))


# --- wrk -----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int = 0
    duration_us: int = 0
    status_errors: int = 0
    socket_errors: int = 0  # connect, read, write errors and timeouts
    quantiles: list[tuple[float, float]] = field(default_factory=list)  # (latency us, weight)


def parse_wrk(output: str) -> WrkResult:
    result = WrkResult()
    found = False
    quantiles_us: list[float] = []
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            found = True
            values = dict(item.split("=", 1) for item in line.split()[1:])
            result.requests = int(values["requests"])
            result.duration_us = int(values["duration_us"])
            result.status_errors = int(values["status_errors"])
            result.socket_errors = sum(int(values[k]) for k in
                                       ("connect_errors", "read_errors", "write_errors", "timeouts"))
        elif line.startswith("BENCH_QUANTILES "):
            quantiles_us = [float(v) for v in line.split(maxsplit=1)[1].split(",")]
    if not found:
        raise RuntimeError(f"wrk printed no BENCH_RESULT line:\n{output[-2000:]}")
    # Each quantile stands for an equal share of this process's requests, so processes that
    # served more requests weigh more in the merged distribution.
    weight = result.requests / max(len(quantiles_us), 1)
    result.quantiles = [(v, weight) for v in quantiles_us]
    return result


def merged_percentile(samples: Iterable[tuple[float, float]], pct: float) -> float:
    ordered = sorted(samples)
    total = sum(w for _, w in ordered)
    if total <= 0:
        return float("nan")
    target = total * pct / 100
    acc = 0.0
    for value, weight in ordered:
        acc += weight
        if acc >= target:
            return value
    return ordered[-1][0]


def spread(connections: int, nodes: list[Node], target: str) -> list[tuple[Node, int]]:
    """Deal the connections round-robin over the endpoints, leader first."""
    if target == "leader":
        return [(nodes[0], connections)]
    counts = [connections // len(nodes) + (1 if i < connections % len(nodes) else 0)
              for i in range(len(nodes))]
    return [(node, c) for node, c in zip(nodes, counts, strict=True) if c > 0]


def wrk_command(url: str, script: str, connections: int, duration: float, args: Sequence[str],
                timeout_s: int = 10) -> list[str]:
    # Threads ≤ connections and ≤ 2 (two cores, shared with the servers).
    threads = max(1, min(2, connections))
    return ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
            "--timeout", f"{timeout_s}s", "--latency", "-s", str(WRK_DIR / script), url, "--", *args]


@dataclass
class Cell:
    system: str
    op: str
    connections: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    socket_errors: int
    # CPU time the servers spent per successful op: on a shared 2-core machine throughput moves
    # with whatever else runs, while the CPU cost of one op is far steadier.
    leader_cpu_ms: float = 0.0
    cluster_cpu_ms: float = 0.0


def run_cell(cluster: Cluster, op: str, connections: int, duration: float, target: str) -> Cell:
    plan = spread(connections, cluster.ordered(), target)
    leader_pid = cluster.leader_node().proc.pid
    cpu_before = {n.proc.pid: cpu_seconds(n.proc.pid) for n in cluster.nodes}
    procs = []
    for i, (node, conns) in enumerate(plan):
        if op == "put":
            # Distinct prefix per cell and per wrk process: every put writes a key nobody else
            # writes during this cell.
            script, args = "put.lua", [f"bench/put/c{connections}/p{i}/", str(PUT_KEYSPACE),
                                       str(VALUE_BYTES)]
        else:
            script, args = "range.lua", [RANGE_PREFIX, str(RANGE_KEYS)]
        cmd = wrk_command(node.client_url, script, conns, duration, args)
        procs.append(spawn(cmd, stdout_pipe=True))
    results = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=duration + 60)
            results.append(parse_wrk(out.decode(errors="replace")))
    finally:
        for proc in procs:
            stop(proc)
    cpu_used = {pid: cpu_seconds(pid) - before for pid, before in cpu_before.items()}
    requests = sum(r.requests for r in results)
    errors = sum(r.status_errors for r in results)
    ok = max(requests - errors, 1)
    seconds = max(r.duration_us for r in results) / 1e6
    samples = [q for r in results for q in r.quantiles]
    return Cell(
        system=cluster.system, op=op, connections=connections,
        ops_per_s=(requests - errors) / seconds if seconds else 0.0,
        p50_ms=merged_percentile(samples, 50) / 1000,
        p99_ms=merged_percentile(samples, 99) / 1000,
        errors=errors, socket_errors=sum(r.socket_errors for r in results),
        leader_cpu_ms=1000 * cpu_used[leader_pid] / ok,
        cluster_cpu_ms=1000 * sum(cpu_used.values()) / ok,
    )


# --- scenarios -----------------------------------------------------------------------------------


def fmt_rss(rss: dict[str, int | None]) -> str:
    return "  ".join(f"{name} {kib / 1024:.1f} MiB" if kib is not None else f"{name} (gone)"
                     for name, kib in rss.items())


def throughput(system: str, workdir: Path, duration: float, target: str,
               connections: Sequence[int]) -> tuple[list[Cell], dict[str, int | None]]:
    # The machine may be shared: the load average tells the reader how noisy the numbers are.
    print(f"\n== {system}: starting 3 nodes (load average {os.getloadavg()[0]:.2f})", flush=True)
    cluster = start_cluster(system, workdir)
    try:
        print(f"   leader {cluster.leader_node().name} ({cluster.leader_node().client_url}); "
              f"RSS idle: {fmt_rss(cluster.rss())}", flush=True)
        preload_range_keys(cluster)
        cells = []
        for op in OPS:
            for conns in connections:
                cell = run_cell(cluster, op, conns, duration, target)
                print(f"   {op:5} c={conns:<3} {cell.ops_per_s:9.0f} ops/s  p50 {cell.p50_ms:7.2f} ms  "
                      f"p99 {cell.p99_ms:7.2f} ms  non-2xx {cell.errors}  sock {cell.socket_errors}  "
                      f"cpu/op {cell.leader_cpu_ms:.3f}/{cell.cluster_cpu_ms:.3f} ms",
                      flush=True)
                cells.append(cell)
        rss = cluster.rss()
        print(f"   RSS after load: {fmt_rss(rss)}", flush=True)
        return cells, rss
    finally:
        stop_cluster(cluster)


def print_table(cells: list[Cell], target: str) -> None:
    how = ("one wrk per node, connections dealt round-robin over the 3 endpoints leader first; "
           "counts summed, latencies merged" if target == "all" else "one wrk against the leader")
    print(f"\nLoad: {how}. ops/s = 2xx responses per second. errors = non-2xx; "
          "sock = wrk connect/read/write errors and timeouts (10 s). cpu/op = server CPU ms per "
          "successful op (leader; all 3 nodes).")
    header = (f"{'system':7} {'op':6} {'conns':>5} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'errors':>7} {'sock':>5} {'cpu/op L':>9} {'cpu/op all':>10}")
    print(header)
    print("-" * len(header))
    for c in cells:
        print(f"{c.system:7} {c.op:6} {c.connections:5d} {c.ops_per_s:9.0f} {c.p50_ms:8.2f} "
              f"{c.p99_ms:8.2f} {c.errors:7d} {c.socket_errors:5d} {c.leader_cpu_ms:9.3f} "
              f"{c.cluster_cpu_ms:10.3f}")
    by_key = {(c.system, c.op, c.connections): c for c in cells}
    print("\nraftkv/etcd ratios (ops/s: higher is better for raftkv; CPU per op over all 3 nodes: "
          "lower is better)")
    print(f"{'op':6} {'conns':>5} {'raftkv':>9} {'etcd':>9} {'ratio':>7} {'cpu/op ratio':>13}")
    for c in cells:
        if c.system != "raftkv":
            continue
        other = by_key.get(("etcd", c.op, c.connections))
        if other is None:
            continue
        ratio = c.ops_per_s / other.ops_per_s if other.ops_per_s else float("nan")
        cpu = c.cluster_cpu_ms / other.cluster_cpu_ms if other.cluster_cpu_ms else float("nan")
        print(f"{c.op:6} {c.connections:5d} {c.ops_per_s:9.0f} {other.ops_per_s:9.0f} {ratio:7.3f} "
              f"{cpu:13.2f}")


def key_count(url: str, prefix: str) -> int:
    end = bytearray(prefix.encode())
    end[-1] += 1  # the prefix's range end, as etcdctl --prefix computes it
    resp = call(url, "kv/range", {"key": b64(prefix), "range_end": b64(bytes(end)),
                                  "count_only": True}, timeout=30.0)
    return int(str(resp.get("count", 0)))


def memory(system: str, workdir: Path, keys: int, timeout: float, connections: int) -> None:
    print(f"\n== {system}: memory scenario ({keys} keys x {VALUE_BYTES} B, at most {timeout:.0f} s)",
          flush=True)
    cluster = start_cluster(system, workdir)
    try:
        print(f"   RSS idle:            {fmt_rss(cluster.rss())}", flush=True)
        plan = spread(connections, cluster.ordered(), "all")
        # Give each wrk thread an exact key quota; put.lua wraps at its keyspace, so the number of
        # distinct keys can never exceed ``keys`` however long wrk keeps writing.
        thread_plan = [(node, conns, max(1, min(2, conns))) for node, conns in plan]
        total_threads = sum(t for _, _, t in thread_plan)
        # Rounded up: at most total_threads - 1 keys more than asked; the count is reported.
        quota = -(-keys // total_threads)
        started = time.monotonic()
        procs = []
        for i, (node, conns, threads) in enumerate(thread_plan):
            cmd = wrk_command(node.client_url, "put.lua", conns, timeout,
                              [f"{MEMORY_PREFIX}p{i}/", str(quota), str(VALUE_BYTES)], timeout_s=30)
            cmd[2] = str(threads)
            procs.append(spawn(cmd, stdout_pipe=True, env={**os.environ, "BENCH_PUT_ONCE": "1"}))
        leader_url = cluster.leader_node().client_url
        count = 0
        try:
            while time.monotonic() - started < timeout + 5:
                time.sleep(2.0)
                try:
                    count = key_count(leader_url, MEMORY_PREFIX)
                except (OSError, urllib.error.URLError) as exc:
                    print(f"   (count failed: {exc})", flush=True)
                    continue
                if count >= keys or all(p.poll() is not None for p in procs):
                    break
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # wrk stops, prints its summary and exits
            for proc in procs:
                proc.communicate(timeout=30)
        finally:
            for proc in procs:
                stop(proc)
        elapsed = time.monotonic() - started
        count = key_count(leader_url, MEMORY_PREFIX)
        print(f"   loaded {count} keys in {elapsed:.1f} s ({count / elapsed:.0f} keys/s)"
              + ("" if count >= keys else "  ** time bound hit before all keys were loaded **"),
              flush=True)
        time.sleep(2.0)  # let followers apply the tail before reading their RSS
        print(f"   RSS after load:      {fmt_rss(cluster.rss())}", flush=True)
        status = call(leader_url, "kv/range", {"key": b64("bench/ready")})
        header = status.get("header")
        revision = int(str(header.get("revision", 0))) if isinstance(header, dict) else 0
        t0 = time.monotonic()
        call(leader_url, "kv/compaction", {"revision": revision, "physical": True}, timeout=120.0)
        print(f"   compacted to revision {revision} in {time.monotonic() - t0:.1f} s", flush=True)
        time.sleep(3.0)  # etcd compacts in the background and followers apply it later
        print(f"   RSS after compact:   {fmt_rss(cluster.rss())}", flush=True)
    finally:
        stop_cluster(cluster)


# Frames every sample passes through (interpreter start, click, the event loop's own loop): they
# are ~100% inclusive and say nothing, so the inclusive ranking leaves them out.
PLUMBING = ("<frozen runpy>", "click/core.py", "asyncio/runners.py", "raftkv/server/main.py",
            "BaseEventLoop.run_forever", "BaseEventLoop.run_until_complete",
            "BaseEventLoop._run_once", "Handle._run", "threading.py", "<module>")


def summarize_collapsed(path: Path, top: int) -> str:
    """Top functions of a py-spy ``--format raw`` (collapsed stacks) file, by inclusive time
    (the function or anything it called held the GIL) and by self time (it was the leaf)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        # A recursive function counts once per sample, or inclusive time could exceed 100%.
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    if not total:
        return f"   {path.name}: no samples"
    lines = [f"   {path.name}: {total} samples holding the GIL"]
    for title, table in (("inclusive", inclusive), ("self", own)):
        lines.append(f"   top {top} by {title} time:")
        ranked = sorted(table.items(), key=lambda kv: -kv[1])
        if title == "inclusive":
            ranked = [(f, c) for f, c in ranked if not any(p in f for p in PLUMBING)]
        for frame, count in ranked[:top]:
            lines.append(f"   {100 * count / total:6.1f}%  {frame}")
    return "\n".join(lines)


def profile(workdir: Path, out_dir: Path, duration: float, connections: Sequence[int],
            top: int) -> None:
    """Run the raftkv cells again with py-spy sampling the leader. These numbers are not for the
    table: py-spy briefly stops the process for every sample."""
    py_spy = ROOT / ".venv" / "bin" / "py-spy"
    if not py_spy.exists():
        # pip, not apt: py-spy is a PyPI package and belongs in the project's venv.
        subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "pip", "install", "-q",
                        "py-spy"], check=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"\n== raftkv under py-spy (load average {os.getloadavg()[0]:.2f})", flush=True)
    cluster = start_cluster("raftkv", workdir)
    try:
        leader = cluster.leader_node()
        print(f"   leader {leader.name} pid {leader.proc.pid}", flush=True)
        preload_range_keys(cluster)
        for op in OPS:
            for conns in connections:
                raw = out_dir / f"leader-{op}-c{conns}.txt"
                spy = spawn([str(py_spy), "record", "--pid", str(leader.proc.pid), "--duration",
                             str(max(1, round(duration))), "--rate", "200", "--function", "--gil",
                             "--format", "raw", "--output", str(raw)],
                            log=out_dir / "py-spy.log")
                cell = run_cell(cluster, op, conns, duration, "all")
                try:
                    spy.wait(60)
                finally:
                    stop(spy)
                print(f"\n   {op} c={conns}: {cell.ops_per_s:.0f} ops/s under py-spy", flush=True)
                print(summarize_collapsed(raw, top) if raw.exists() else "   (no profile written)",
                      flush=True)
    finally:
        stop_cluster(cluster)


# --- entry point ---------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench kv", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    parser.add_argument("--connections", default=",".join(map(str, CONNECTIONS)),
                        help="comma-separated connection counts (default 1,16,64,256)")
    parser.add_argument("--systems", default="raftkv,etcd", help="which systems, in order")
    parser.add_argument("--target", choices=("all", "leader"), default="all",
                        help="spread connections over all 3 endpoints (default) or the leader only")
    parser.add_argument("--memory", action="store_true",
                        help="run the memory scenario instead of the throughput table")
    parser.add_argument("--memory-keys", type=int, default=100_000)
    parser.add_argument("--memory-timeout", type=float, default=300.0,
                        help="time bound of each system's load in the memory scenario (s)")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="instead of the table: sample the raftkv leader with py-spy during each "
                             "cell, write collapsed stacks to DIR and print the top functions")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs and logs")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not set(systems) <= {"raftkv", "etcd"}:
        parser.error("--systems takes raftkv and/or etcd")
    connections = [int(c) for c in args.connections.split(",")]

    atexit.register(stop_all)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # A shell without job control starts background jobs with SIGINT ignored; restore Python's
    # handler so that Ctrl-C / SIGINT always reaches the cleanup below.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="bench-kv-"))
    try:
        ensure_tools()
        if args.profile is not None:
            profile(workdir, args.profile, args.duration, connections, args.profile_top)
            return 0
        if args.memory:
            for system in systems:
                memory(system, workdir, args.memory_keys, args.memory_timeout, connections=64)
            return 0
        cells: list[Cell] = []
        rss: dict[str, dict[str, int | None]] = {}
        for system in systems:
            system_cells, rss[system] = throughput(system, workdir, args.duration, args.target,
                                                   connections)
            cells.extend(system_cells)
        print_table(cells, args.target)
        print("\nRSS of each node after the load")
        for system, values in rss.items():
            print(f"{system:7} {fmt_rss(values)}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if args.keep:
            print(f"data dirs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
