"""``bench watch``: watch fan-out and lease keepalives, raftkv against etcd 3.4 (issue 5).

For each system in turn (never both up at once: the machine has 2 cores) this starts a 3-node
cluster with ``bench_kv``'s helpers and runs two scenarios against it.

Watch fan-out. For each watcher count (default 1, 100, 1000), that many watchers are created on
one fresh prefix, one streaming ``POST /v3/watch`` connection each, dealt round-robin over the
three client endpoints (leader first). The watchers run in ``--watch-procs`` separate processes
(asyncio + aiohttp; default 2), so that the putter's timing does not suffer from the watchers'
parsing. Once every watcher has its ``created`` line, the main process puts to keys under the
prefix through the leader, open loop at ``--rate`` puts/s for ``--put-seconds`` seconds; each
value is the ``time.monotonic()`` of its send (CLOCK_MONOTONIC is system-wide, so it compares
across processes). Each watcher records the arrival time of every event and checks that the
event revisions strictly increase (a repeat or reorder is a duplicate). After the last put the
watchers get up to ``--drain`` seconds to reach the last put's revision. Reported: events/s
delivered over all watchers (delivered events / (last arrival - first send)), put-to-event latency
p50/p99, events expected / delivered / duplicated / missing (a watcher that reached the final
revision with fewer events than puts lost some: a server bug), watchers still behind at the drain
deadline, the puts' own latency and the puts committed (counted in the store: a put the client gave
up on may still commit), the servers' CPU seconds, and per watcher process on-CPU / (on-CPU +
runnable-but-waiting) seconds over wall seconds, from ``/proc/<pid>/task/*/schedstat``: CPU time
alone cannot tell idle from starved on a loaded machine, while a second figure near 1.0 means the
process always wanted a CPU (saturated), so more ``--watch-procs`` may raise the numbers.

Leases. ``--leases`` leases (TTL ``--ttl``) are granted by ``--ka-conns`` workers, each
keeping its own leases alive every TTL/3 over one keepalive websocket (``--ka-mode ws``, the
default: ``--ka-batch`` ``{"ID":n}`` frames sent back to back, then one answer frame each) or with
``POST /v3/lease/keepalive`` bodies of ``--ka-batch`` objects (``--ka-mode post``; etcd 3.4's
gateway answers only a prefix of such a body under load, so its leases then expire through the
client's fault), workers dealt round-robin over the three endpoints. The first ``--attach``
leases get a key (a put with ``lease``). Granting happens between keepalive rounds, so leases
granted first stay alive while the rest are granted.
Then a keepalive-only phase of ``--lease-seconds``: every node's CPU seconds, keepalives/s
answered with a TTL, the leader's raft index and store revision before and after (both should
stay put: keepalives are not Raft writes). Then, with keepalives still running, the check: every
lease still listed by ``lease/leases``, ``lease/timetolive`` > 0 for every lease with a key, and
every attached key still there. A keepalive answered without a TTL ("lost"), a missing lease or a
missing key counts as WRONGLY expired when it was seen less than TTL after the send of that lease's
last acknowledged keepalive (the server refreshed it no earlier than that send, so it could not
have expired yet); otherwise the client was late (late rounds and the largest ack gap are shown).

Every node's RSS is printed after each scenario. Every loop is bounded in count and time; all
traffic goes to 127.0.0.1; every process started here is stopped by PID on exit, error or Ctrl-C.

Run: ``.venv/bin/python scripts/bench_watch.py [--watchers 1,100,1000] [--leases 10000]``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import atexit
import base64
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_kv  # scripts/ is not a package: reuse bench kv's cluster helpers
from bench_kv import Cluster, b64, call, cpu_seconds, fmt_rss, start_cluster, stop_cluster

JSON = {"Content-Type": "application/json"}
WATCH_PREFIX = "bench/watch/"
LEASE_PREFIX = "bench/lease/"
PUT_CONCURRENCY = 256  # in-flight puts at most (the schedule is open loop below that)

# Watcher processes (multiprocessing), so that cleanup can stop them by PID.
_WATCHER_PROCS: list[multiprocessing.process.BaseProcess] = []


def _stop_watcher_procs() -> None:
    for proc in list(_WATCHER_PROCS):
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        _WATCHER_PROCS.remove(proc)


def _stop_everything() -> None:
    _stop_watcher_procs()
    bench_kv.stop_all()


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def prefix_end(prefix: str) -> bytes:
    end = bytearray(prefix.encode())
    end[-1] += 1
    return bytes(end)


def status(url: str) -> tuple[int, int]:
    """(raft index, store revision) of one node."""
    resp = call(url, "maintenance/status", {})
    header = resp.get("header")
    revision = int(str(header.get("revision", 0))) if isinstance(header, dict) else 0
    return int(str(resp.get("raftIndex", 0))), revision


def sched_seconds(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) summed over the process's threads
    (``/proc/<pid>/task/*/schedstat``). On a loaded machine CPU time alone cannot tell an idle
    process from a starved one; on-CPU + waiting close to the wall time means it was always ready
    to run, i.e. saturated."""
    run = wait = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0, 0.0
    for task in tasks:
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue
        run += int(fields[0])
        wait += int(fields[1])
    return run / 1e9, wait / 1e9


def cluster_cpu(cluster: Cluster) -> dict[str, float]:
    return {n.name: cpu_seconds(n.proc.pid) for n in cluster.nodes}


def fmt_cpu(before: dict[str, float], after: dict[str, float], leader: str) -> str:
    return "  ".join(f"{name}{'*' if name == leader else ''} {after[name] - before[name]:.1f}s"
                     for name in before)


# --- watchers (run in child processes) -----------------------------------------------------------


@dataclass
class WatcherState:
    created: bool = False
    failed: str = ""
    events: int = 0
    duplicates: int = 0  # revision <= the last one seen: repeated or out of order
    last_rev: int = 0
    first_arrival: float = 0.0
    last_arrival: float = 0.0


def _handle_line(line: bytes, now: float, st: WatcherState, lat: array.array[float]) -> None:
    msg = json.loads(line)
    result = msg.get("result")
    if not isinstance(result, dict):
        st.failed = st.failed or f"error line: {line[:200]!r}"
        return
    if result.get("created"):
        st.created = True
    if result.get("canceled"):
        st.failed = st.failed or f"canceled: {line[:200]!r}"
    for event in result.get("events", ()):
        kv = event["kv"]
        rev = int(kv["mod_revision"])
        if rev <= st.last_rev:
            st.duplicates += 1
            continue
        st.last_rev = rev
        st.events += 1
        if not st.first_arrival:
            st.first_arrival = now
        st.last_arrival = now
        with contextlib.suppress(ValueError):
            lat.append(now - float(base64.b64decode(kv.get("value", ""))))


async def _watch_one(session: aiohttp.ClientSession, url: str, prefix: str, st: WatcherState,
                     lat: array.array[float]) -> None:
    body = json.dumps({"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}})
    try:
        async with session.post(f"{url}/v3/watch", data=body, headers=JSON) as resp:
            if resp.status != 200:
                st.failed = f"HTTP {resp.status}"
                return
            buf = b""
            async for chunk in resp.content.iter_any():
                now = time.monotonic()
                buf += chunk
                if b"\n" not in buf:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        _handle_line(line, now, st, lat)
            st.failed = st.failed or "stream ended"
    except asyncio.CancelledError:
        raise
    except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
        st.failed = st.failed or f"{type(exc).__name__}: {exc}"


async def _watchers_main(urls: list[str], prefix: str, conn: multiprocessing.connection.Connection,
                         hard_deadline: float, create_timeout: float) -> None:
    states = [WatcherState() for _ in urls]
    lat: array.array[float] = array.array("d")
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(_watch_one(session, url, prefix, st, lat))
                 for url, st in zip(urls, states, strict=True)]
        try:
            limit = min(hard_deadline, time.monotonic() + create_timeout)
            while time.monotonic() < limit and not all(st.created or st.failed for st in states):
                await asyncio.sleep(0.05)
            conn.send(("ready", sum(st.created for st in states),
                       [st.failed for st in states if st.failed][:3]))
            # Wait for the parent's go-ahead to drain: (final revision, drain deadline).
            final_rev, drain_deadline = 0, hard_deadline
            while time.monotonic() < hard_deadline:
                if conn.poll():
                    final_rev, drain_deadline = conn.recv()
                    break
                await asyncio.sleep(0.05)
            drain_deadline = min(drain_deadline, hard_deadline)
            while time.monotonic() < drain_deadline:
                if all(st.last_rev >= final_rev or st.failed for st in states):
                    break
                await asyncio.sleep(0.02)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(("result", [(st.created, st.failed, st.events, st.duplicates, st.last_rev,
                           st.first_arrival, st.last_arrival) for st in states], lat.tobytes()))


def watcher_process(urls: list[str], prefix: str, conn: multiprocessing.connection.Connection,
                    hard_deadline: float, create_timeout: float) -> None:
    """Entry point of a watcher process (forked: the parent's child list is not ours to stop)."""
    bench_kv._CHILDREN.clear()
    _WATCHER_PROCS.clear()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us by PID
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        asyncio.run(_watchers_main(urls, prefix, conn, hard_deadline, create_timeout))
    finally:
        conn.close()


# --- putter --------------------------------------------------------------------------------------


@dataclass
class PutResult:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    revisions: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # of the successful puts (s)
    first_send: float = 0.0
    late: float = 0.0  # worst lag of a send behind its schedule (s)


async def drive_puts(url: str, prefix: str, rate: float, seconds: float) -> PutResult:
    result = PutResult()
    count = max(1, int(rate * seconds))
    sem = asyncio.Semaphore(PUT_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:
        async def one(i: int, due: float) -> None:
            async with sem:
                sent = time.monotonic()
                result.late = max(result.late, sent - due)
                if not result.first_send:
                    result.first_send = sent
                body = {"key": b64(f"{prefix}k{i:06d}"), "value": b64(repr(sent))}
                result.sent += 1
                try:
                    async with session.post(f"{url}/v3/kv/put", json=body) as resp:
                        data = await resp.json(content_type=None)
                    if resp.status != 200:
                        result.errors += 1
                        return
                    result.latencies.append(time.monotonic() - sent)
                    result.revisions.append(int(data["header"]["revision"]))
                    result.ok += 1
                except (aiohttp.ClientError, OSError, ValueError, KeyError, TimeoutError):
                    result.errors += 1

        start = time.monotonic()
        tasks = []
        for i in range(count):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.wait(tasks, timeout=60)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


# --- watch scenario ------------------------------------------------------------------------------


def committed_puts(url: str, prefix: str, settle: float = 15.0) -> tuple[int, int]:
    """(keys under ``prefix``, store revision), once the count has stopped moving (bounded)."""
    deadline = time.monotonic() + settle
    previous = -1
    while True:
        resp = call(url, "kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                      "count_only": True}, timeout=30.0)
        header = resp.get("header")
        revision = int(str(header.get("revision", 0))) if isinstance(header, dict) else 0
        count = int(str(resp.get("count", 0)))
        if count == previous or time.monotonic() > deadline:
            return count, revision
        previous = count
        time.sleep(1.0)


@dataclass
class WatchCell:
    system: str
    watchers: int
    created: int
    puts_ok: int
    put_errors: int
    committed: int  # puts found in the store (the client may have given up on some)
    expected: int
    delivered: int
    duplicates: int
    lost: int  # watchers at the final revision, fewer events than puts
    behind: int  # watchers short of the final revision at the drain deadline
    failed: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    put_late_ms: float
    put_p50_ms: float
    put_p99_ms: float
    cpu: str
    client_util: str
    rss: str
    notes: list[str] = field(default_factory=list)


def watch_cell(cluster: Cluster, watchers: int, rate: float, put_seconds: float, drain: float,
               procs: int, tag: str) -> WatchCell:
    nodes = cluster.ordered()
    urls = [nodes[i % len(nodes)].client_url for i in range(watchers)]
    prefix = f"{WATCH_PREFIX}{tag}/w{watchers}/"
    procs = max(1, min(procs, watchers))
    create_timeout = 60.0
    hard_deadline = time.monotonic() + create_timeout + put_seconds + drain + 90
    ctx = multiprocessing.get_context("fork")
    pipes = []
    children = []
    try:
        for p in range(procs):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=watcher_process, daemon=True,
                               args=(urls[p::procs], prefix, child_end, hard_deadline, create_timeout))
            proc.start()
            _WATCHER_PROCS.append(proc)
            child_end.close()
            pipes.append(parent_end)
            children.append(proc)

        def recv(pipe: multiprocessing.connection.Connection, limit: float) -> Any:
            if not pipe.poll(max(0.0, limit - time.monotonic())):
                raise RuntimeError("a watcher process did not answer in time")
            return pipe.recv()

        created = 0
        notes: list[str] = []
        for pipe in pipes:
            _, n, failures = recv(pipe, time.monotonic() + create_timeout + 15)
            created += n
            notes.extend(failures)
        cpu_before = cluster_cpu(cluster)
        client_before = {proc.pid or 0: sched_seconds(proc.pid or 0) for proc in children}
        wall0 = time.monotonic()
        puts = asyncio.run(drive_puts(cluster.leader_node().client_url, prefix, rate, put_seconds))
        # A put the client gave up on may still commit, so the truth is the store: one key per
        # put, and nothing else writes during the cell.
        committed, final_rev = committed_puts(cluster.leader_node().client_url, prefix)
        for pipe in pipes:
            pipe.send((final_rev, time.monotonic() + drain))
        results = [recv(pipe, hard_deadline + 10) for pipe in pipes]
        wall = time.monotonic() - wall0
        client_util = " ".join(
            f"{(after[0] - before[0]) / wall:.2f}/{(sum(after) - sum(before)) / wall:.2f}"
            for pid, before in client_before.items() for after in [sched_seconds(pid)])
        cpu_after = cluster_cpu(cluster)
        for proc in children:
            proc.join(10)  # they exit by themselves once they have sent their results
    finally:
        for pipe in pipes:
            pipe.close()
        _stop_watcher_procs()  # SIGTERM (then SIGKILL) by PID to any still running
    states = [s for _, per_watcher, _ in results for s in per_watcher]
    lat: array.array[float] = array.array("d")
    for _, _, raw in results:
        lat.frombytes(raw)
    samples = sorted(lat)
    delivered = sum(s[2] for s in states)
    last_arrival = max((s[6] for s in states if s[6]), default=0.0)
    window = last_arrival - puts.first_send if last_arrival else 0.0
    lost = sum(1 for s in states if s[4] >= final_rev and s[2] < committed)
    behind = sum(1 for s in states if s[4] < final_rev)
    notes.extend(s[1] for s in states if s[1])
    leader = cluster.leader_node().name
    return WatchCell(
        system=cluster.system, watchers=watchers, created=created, puts_ok=puts.ok,
        put_errors=puts.errors, committed=committed, expected=committed * watchers,
        delivered=delivered,
        duplicates=sum(s[3] for s in states), lost=lost, behind=behind,
        failed=sum(1 for s in states if s[1] and s[1] != "stream ended"),
        events_per_s=delivered / window if window > 0 else 0.0,
        p50_ms=1000 * percentile(samples, 50), p99_ms=1000 * percentile(samples, 99),
        put_late_ms=1000 * puts.late, put_p50_ms=1000 * percentile(sorted(puts.latencies), 50),
        put_p99_ms=1000 * percentile(sorted(puts.latencies), 99), cpu=fmt_cpu(cpu_before, cpu_after, leader),
        client_util=client_util, rss=fmt_rss(cluster.rss()), notes=sorted(set(notes))[:3],
    )


# --- lease scenario ------------------------------------------------------------------------------


@dataclass
class LeaseStats:
    granted: int = 0
    grant_errors: int = 0
    attached: int = 0
    attach_errors: int = 0
    ka_sent: int = 0
    ka_ok: int = 0
    ka_lost: int = 0  # answered without a TTL: the server thinks the lease is gone
    ka_errors: int = 0  # HTTP errors, missing result lines, stream error lines
    late_rounds: int = 0  # a round that started more than a period after the previous one
    max_gap: float = 0.0  # largest (ack received - previous ack's send) of one lease (s)
    lost_ids: list[int] = field(default_factory=list)
    # Send time of each lease's last acknowledged keepalive (or of its grant): the server refreshed
    # the lease no earlier than that, so it may not expire before that + TTL.
    last_ack: dict[int, float] = field(default_factory=dict)
    wrongly_expired: list[tuple[int, float]] = field(default_factory=list)  # (id, s since ack)
    error_samples: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    keyed: dict[int, str] = field(default_factory=dict)  # lease id -> attached key


def note_expired(st: LeaseStats, lease_id: int, seen_at: float, ttl: int) -> None:
    """A lease found gone at ``seen_at``: wrongly so when its last ack was sent < TTL before."""
    since = seen_at - st.last_ack.get(lease_id, 0.0)
    if since < ttl:
        st.wrongly_expired.append((lease_id, since))


class WsKeepalive:
    """One worker's keepalive websocket (``GET /v3/lease/keepalive`` upgraded, API.md §4.7): one
    text frame per ``{"ID":n}``, one frame back per request. Reconnects after any shortfall so that
    a late answer is never taken for the next round's."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.replace("http://", "ws://", 1) + "/v3/lease/keepalive"
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def exchange(self, chunk: list[int]) -> str:
        if self.ws is None or self.ws.closed:
            self.ws = await self.session.ws_connect(self.url, timeout=aiohttp.ClientWSTimeout(
                ws_receive=30.0, ws_close=5.0))
        ws = self.ws
        try:
            for lease_id in chunk:
                await ws.send_str(json.dumps({"ID": lease_id}))
            lines = []
            for _ in chunk:
                msg = await ws.receive(timeout=30.0)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                lines.append(str(msg.data))
        except BaseException:
            await self.close()
            raise
        if len(lines) < len(chunk):
            await self.close()
        return "\n".join(lines)

    async def close(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()


async def _keepalive_batch(session: aiohttp.ClientSession, url: str, chunk: list[int],
                           st: LeaseStats, ttl: int, ws: WsKeepalive | None) -> None:
    st.ka_sent += len(chunk)
    sent = time.monotonic()
    try:
        if ws is not None:
            text, status_code = await ws.exchange(chunk), 200
        else:
            body = "\n".join(json.dumps({"ID": i}) for i in chunk)
            async with session.post(f"{url}/v3/lease/keepalive", data=body, headers=JSON) as resp:
                text = await resp.text()
                status_code = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        st.ka_errors += len(chunk)
        if len(st.error_samples) < 5:
            st.error_samples.append(f"{type(exc).__name__} {exc} after {time.monotonic() - sent:.1f} s")
        return
    now = time.monotonic()
    answered: dict[int, int] = {}
    if status_code != 200 and len(st.error_samples) < 5:
        st.error_samples.append(f"HTTP {status_code}: {text[:200]}")
    if status_code == 200:
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                result = json.loads(line).get("result")
            except ValueError:
                continue
            if isinstance(result, dict) and "ID" in result:
                answered[int(result["ID"])] = int(result.get("TTL", 0))
    for lease_id in chunk:
        answer = answered.get(lease_id)
        if answer is None:
            st.ka_errors += 1
            if len(st.error_samples) < 5:
                st.error_samples.append(f"no result line for lease {lease_id}: {text[-200:]!r}")
        elif answer > 0:
            st.ka_ok += 1
            previous = st.last_ack.get(lease_id)
            if previous is not None:
                st.max_gap = max(st.max_gap, now - previous)
            st.last_ack[lease_id] = sent
        else:
            st.ka_lost += 1
            note_expired(st, lease_id, now, ttl)
            if len(st.lost_ids) < 20:
                st.lost_ids.append(lease_id)


async def lease_worker(session: aiohttp.ClientSession, url: str, index: int, share: range,
                       attach: int, ttl: int, batch: int, st: LeaseStats, stop: asyncio.Event,
                       hard_deadline: float, mode: str) -> None:
    """Grant this worker's leases between keepalive rounds; keep them alive every ttl/3."""
    ws = WsKeepalive(session, url) if mode == "ws" else None
    try:
        await _lease_worker_loop(session, url, index, share, attach, ttl, batch, st, stop,
                                 hard_deadline, ws)
    finally:
        if ws is not None:
            await ws.close()


async def _lease_worker_loop(session: aiohttp.ClientSession, url: str, index: int, share: range,
                             attach: int, ttl: int, batch: int, st: LeaseStats,
                             stop: asyncio.Event, hard_deadline: float,
                             ws: WsKeepalive | None) -> None:
    period = ttl / 3
    mine: list[int] = []
    todo = list(share)
    previous_start = 0.0
    await asyncio.sleep(random.uniform(0, period))  # spread the rounds over the period
    while not stop.is_set() and time.monotonic() < hard_deadline:
        start = time.monotonic()
        if previous_start and start - previous_start > period * 1.2:
            st.late_rounds += 1
        previous_start = start
        for i in range(0, len(mine), batch):
            await _keepalive_batch(session, url, mine[i:i + batch], st, ttl, ws)
        # Grant more in what is left of the period (bounded by the share and the time).
        while todo and time.monotonic() < start + period * 0.7 and not stop.is_set():
            n = todo.pop()
            sent = time.monotonic()
            try:
                async with session.post(f"{url}/v3/lease/grant", json={"TTL": ttl}) as resp:
                    data = await resp.json(content_type=None)
                if resp.status != 200:
                    st.grant_errors += 1
                    continue
                lease_id = int(data["ID"])
            except (aiohttp.ClientError, OSError, ValueError, KeyError, TimeoutError):
                st.grant_errors += 1
                continue
            mine.append(lease_id)
            st.ids.append(lease_id)
            st.last_ack[lease_id] = sent
            st.granted += 1
            if n < attach:
                key = f"{LEASE_PREFIX}{index}/{lease_id}"
                try:
                    async with session.post(f"{url}/v3/kv/put", json={
                            "key": b64(key), "value": b64("x"), "lease": lease_id}) as resp:
                        await resp.read()
                    if resp.status == 200:
                        st.attached += 1
                        st.keyed[lease_id] = key
                    else:
                        st.attach_errors += 1
                except (aiohttp.ClientError, OSError, TimeoutError):
                    st.attach_errors += 1
        remaining = start + period - time.monotonic()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)


@dataclass
class LeaseResult:
    system: str
    leases: int
    granted: int
    grant_s: float
    attached: int
    ka_per_s: float
    ka_lost: int
    ka_errors: int
    late_rounds: int
    max_gap_s: float
    wrongly_expired: int
    index_growth: int
    revision_growth: int
    cpu: dict[str, float]
    leader: str
    client_cpu_s: float
    missing_leases: int
    ttl_minus_one: int
    keys_missing: int
    rss: str
    phase_s: float
    notes: list[str] = field(default_factory=list)


async def _lease_checks(url: str, st: LeaseStats, ttl: int) -> tuple[int, int, int, list[str]]:
    """(leases missing from lease/leases, keyed leases with TimeToLive -1, keys missing)."""
    notes: list[str] = []
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:
        async with session.post(f"{url}/v3/lease/leases", json={}) as resp:
            data = await resp.json(content_type=None)
        listed_at = time.monotonic()
        listed = {int(x["ID"]) for x in data.get("leases", ())}
        missing = [i for i in st.ids if i not in listed]
        for lease_id in missing:
            note_expired(st, lease_id, listed_at, ttl)
        if missing:
            notes.append(f"leases missing from lease/leases, e.g. {missing[:5]}")
        sem = asyncio.Semaphore(32)
        minus_one: list[int] = []
        gone_keys: list[str] = []

        async def check(lease_id: int, key: str) -> None:
            async with sem:
                async with session.post(f"{url}/v3/lease/timetolive",
                                        json={"ID": lease_id}) as resp:
                    remaining = int((await resp.json(content_type=None)).get("TTL", -1))
                if remaining <= 0:
                    minus_one.append(lease_id)
                    note_expired(st, lease_id, time.monotonic(), ttl)
                async with session.post(f"{url}/v3/kv/range", json={"key": b64(key)}) as resp:
                    if int((await resp.json(content_type=None)).get("count", 0)) != 1:
                        gone_keys.append(key)
                        note_expired(st, lease_id, time.monotonic(), ttl)

        await asyncio.wait_for(asyncio.gather(*(check(i, k) for i, k in st.keyed.items())), 120)
        if minus_one:
            notes.append(f"TimeToLive <= 0 for kept-alive leases, e.g. {minus_one[:5]}")
        if gone_keys:
            notes.append(f"keys of kept-alive leases gone, e.g. {gone_keys[:3]}")
        return len(missing), len(minus_one), len(gone_keys), notes


async def _lease_scenario(cluster: Cluster, leases: int, attach: int, ttl: int, conns: int,
                          batch: int, seconds: float, grant_timeout: float,
                          mode: str) -> LeaseResult:
    nodes = cluster.ordered()
    leader = cluster.leader_node()
    st = LeaseStats()
    stop = asyncio.Event()
    hard_deadline = time.monotonic() + grant_timeout + seconds + 300
    timeout = aiohttp.ClientTimeout(total=30)
    notes: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:
        workers = [asyncio.create_task(lease_worker(
            session, nodes[w % len(nodes)].client_url, w, range(w, leases, conns), attach, ttl,
            batch, st, stop, hard_deadline, mode)) for w in range(conns)]
        try:
            t0 = time.monotonic()
            while st.granted + st.grant_errors < leases and time.monotonic() - t0 < grant_timeout:
                await asyncio.sleep(0.2)
            grant_s = time.monotonic() - t0
            if st.granted < leases:
                notes.append(f"only {st.granted}/{leases} leases granted in {grant_s:.0f} s "
                             f"({st.grant_errors} errors)")
            print(f"   granted {st.granted} leases ({st.attached} with a key) in {grant_s:.1f} s; "
                  f"keepalive-only phase for {seconds:.0f} s", flush=True)
            await asyncio.sleep(ttl / 3 + 1)  # every worker into the keepalive-only rhythm
            index0, rev0 = status(leader.client_url)
            cpu0 = cluster_cpu(cluster)
            client0 = cpu_seconds(os.getpid())
            ok0, wall0 = st.ka_ok, time.monotonic()
            await asyncio.sleep(seconds)
            ka_per_s = (st.ka_ok - ok0) / (time.monotonic() - wall0)
            cpu1 = cluster_cpu(cluster)
            client_cpu = cpu_seconds(os.getpid()) - client0
            index1, rev1 = status(leader.client_url)
            missing, minus_one, gone, check_notes = await _lease_checks(leader.client_url, st, ttl)
            notes.extend(check_notes)
        finally:
            stop.set()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    if st.lost_ids:
        notes.append(f"keepalive answered without TTL for e.g. {st.lost_ids[:5]}")
    if st.wrongly_expired:
        wrong = sorted(set(st.wrongly_expired), key=lambda w: w[1])
        notes.append(f"WRONGLY EXPIRED (gone < TTL after an acknowledged keepalive was sent): "
                     f"{len({w[0] for w in wrong})} leases, e.g. "
                     + ", ".join(f"{i} ({since:.1f} s)" for i, since in wrong[:5]))
    notes.extend(f"keepalive error: {e}" for e in st.error_samples)
    return LeaseResult(
        system=cluster.system, leases=leases, granted=st.granted, grant_s=grant_s,
        attached=st.attached, ka_per_s=ka_per_s, ka_lost=st.ka_lost, ka_errors=st.ka_errors,
        late_rounds=st.late_rounds, max_gap_s=st.max_gap,
        wrongly_expired=len({w[0] for w in st.wrongly_expired}), index_growth=index1 - index0,
        revision_growth=rev1 - rev0, cpu={n: cpu1[n] - cpu0[n] for n in cpu0},
        leader=leader.name, client_cpu_s=client_cpu, missing_leases=missing,
        ttl_minus_one=minus_one, keys_missing=gone, rss=fmt_rss(cluster.rss()), phase_s=seconds,
        notes=notes,
    )


# --- tables --------------------------------------------------------------------------------------


def print_watch_table(cells: list[WatchCell]) -> None:
    print("\nWatch fan-out: one prefix, N watchers (one HTTP stream each, round-robin over the 3 "
          "endpoints), open-loop puts to the leader. ev/s = events delivered over all watchers / "
          "(last arrival - first put). lat = put send -> event arrival. lost = watchers that reached "
          "the last revision with events missing; behind = short of it at the drain deadline. "
          "cli util = per watcher process, (on-CPU s)/(on-CPU + runnable-waiting s) over wall s: "
          "a second figure near 1.00 means the process was saturated (CPU-bound or starved).")
    print("puts = committed (found in the store) / answered 2xx / client errors (30 s timeout); "
          "put p50/p99 = the puts' own latency.")
    header = (f"{'watchers':>8} {'system':7} {'created':>7} {'puts':>15} {'put p50':>8} "
              f"{'put p99':>8} {'expected':>9} {'delivered':>9} {'dup':>4} {'lost':>4} "
              f"{'behind':>6} {'ev/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'cli util':>9}  "
              "server CPU s (* leader)")
    print(header)
    print("-" * len(header))
    for c in sorted(cells, key=lambda c: (c.watchers, c.system != "raftkv")):
        puts = f"{c.committed}/{c.puts_ok}/{c.put_errors}"
        print(f"{c.watchers:8d} {c.system:7} {c.created:7d} {puts:>15} {c.put_p50_ms:8.1f} "
              f"{c.put_p99_ms:8.1f} {c.expected:9d} {c.delivered:9d} {c.duplicates:4d} {c.lost:4d} "
              f"{c.behind:6d} {c.events_per_s:7.0f} {c.p50_ms:8.1f} {c.p99_ms:8.1f} "
              f"{c.client_util:>9}  {c.cpu}")
        for note in c.notes:
            print(f"{'':17}note: {note}")
    print("\nRSS after each watch cell")
    for c in cells:
        print(f"{c.system:7} {c.watchers:5d} watchers: {c.rss}")


def print_lease_table(results: list[LeaseResult]) -> None:
    if not results:
        return
    print("\nLeases: keepalive-only phase (after granting). ka/s = keepalives answered with a TTL "
          "per second; growth = leader's raft index / revision over the phase (should be 0).")
    rows: list[tuple[str, Any]] = [
        ("leases granted", lambda r: f"{r.granted}/{r.leases}"),
        ("grant phase s", lambda r: f"{r.grant_s:.1f}"),
        ("keys attached", lambda r: r.attached),
        ("keepalives/s", lambda r: f"{r.ka_per_s:.0f}"),
        ("raft index growth", lambda r: r.index_growth),
        ("revision growth", lambda r: r.revision_growth),
        ("leader CPU s", lambda r: f"{r.cpu[r.leader]:.1f}"),
        ("CPU s per node", lambda r: " ".join(f"{n}{'*' if n == r.leader else ''}={v:.1f}"
                                              for n, v in r.cpu.items())),
        ("leader CPU us/keepalive",
         lambda r: f"{1e6 * r.cpu[r.leader] / max(1.0, r.ka_per_s * r.phase_s):.0f}"),
        ("client CPU s", lambda r: f"{r.client_cpu_s:.1f}"),
        ("ka lost (no TTL)", lambda r: r.ka_lost),
        ("ka errors", lambda r: r.ka_errors),
        ("late rounds", lambda r: r.late_rounds),
        ("max ack gap s", lambda r: f"{r.max_gap_s:.1f}"),
        ("WRONGLY expired", lambda r: r.wrongly_expired),
        ("leases missing", lambda r: r.missing_leases),
        ("keyed TTL <= 0", lambda r: r.ttl_minus_one),
        ("keys missing", lambda r: r.keys_missing),
    ]
    print(f"{'':24}" + "".join(f"{r.system:>26}" for r in results))
    for title, get in rows:
        print(f"{title:24}" + "".join(f"{get(r)!s:>26}" for r in results))
    for r in results:
        for note in r.notes:
            print(f"{r.system}: note: {note}")
    print("\nRSS after the lease scenario")
    for r in results:
        print(f"{r.system:7} {r.rss}")


# --- entry point ---------------------------------------------------------------------------------


def run_system(system: str, workdir: Path, args: argparse.Namespace, watchers: list[int],
               watch_cells: list[WatchCell], lease_results: list[LeaseResult]) -> None:
    print(f"\n== {system}: starting 3 nodes (load average {fmt_load()})", flush=True)
    cluster = start_cluster(system, workdir)
    try:
        leader = cluster.leader_node()
        print(f"   leader {leader.name} ({leader.client_url}); RSS idle: {fmt_rss(cluster.rss())}",
              flush=True)
        for n in watchers:
            cell = watch_cell(cluster, n, args.rate, args.put_seconds, args.drain,
                              args.watch_procs, system)
            watch_cells.append(cell)
            print(f"   watch x{n:<5} created {cell.created}  puts {cell.committed}/{cell.puts_ok}/"
                  f"{cell.put_errors} (p50 {cell.put_p50_ms:.0f} ms, p99 {cell.put_p99_ms:.0f} ms)  "
                  f"delivered {cell.delivered}/"
                  f"{cell.expected}  dup {cell.duplicates}  lost {cell.lost}  behind {cell.behind}  "
                  f"{cell.events_per_s:.0f} ev/s  p50 {cell.p50_ms:.1f} ms  p99 {cell.p99_ms:.1f} ms  "
                  f"watcher-proc util {cell.client_util}  put lag max {cell.put_late_ms:.0f} ms  "
                  f"CPU {cell.cpu}  (load {fmt_load()})", flush=True)
            print(f"   RSS: {cell.rss}", flush=True)
        if args.leases > 0:
            result = asyncio.run(_lease_scenario(
                cluster, args.leases, min(args.attach, args.leases), args.ttl, args.ka_conns,
                args.ka_batch, args.lease_seconds, args.grant_timeout, args.ka_mode))
            lease_results.append(result)
            print(f"   leases: {result.ka_per_s:.0f} keepalives/s, raft index +{result.index_growth}, "
                  f"revision +{result.revision_growth}, lost {result.ka_lost}, errors "
                  f"{result.ka_errors}, missing {result.missing_leases}/{result.ttl_minus_one}/"
                  f"{result.keys_missing}, wrongly expired {result.wrongly_expired}  "
                  f"(load {fmt_load()})", flush=True)
            print(f"   RSS: {result.rss}", flush=True)
    finally:
        _stop_watcher_procs()
        stop_cluster(cluster)


def fmt_load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="raftkv,etcd", help="which systems, in order")
    parser.add_argument("--watchers", default="1,100,1000", help="comma-separated watcher counts")
    parser.add_argument("--watch-procs", type=int, default=2, help="watcher processes (default 2)")
    parser.add_argument("--rate", type=float, default=200.0, help="puts/s (default 200)")
    parser.add_argument("--put-seconds", type=float, default=10.0, help="put phase (default 10 s)")
    parser.add_argument("--drain", type=float, default=30.0,
                        help="seconds after the last put for watchers to catch up (default 30)")
    parser.add_argument("--leases", type=int, default=10_000, help="leases (0 skips the scenario)")
    parser.add_argument("--attach", type=int, default=1000, help="leases that get a key")
    parser.add_argument("--ttl", type=int, default=10, help="lease TTL in s (default 10)")
    parser.add_argument("--ka-conns", type=int, default=50, help="keepalive workers/connections")
    parser.add_argument("--ka-batch", type=int, default=100,
                        help="{\"ID\"} objects per POST body (or per websocket exchange)")
    parser.add_argument("--ka-mode", choices=("ws", "post"), default="ws",
                        help="keepalive stream: one websocket per worker (default) or one POST "
                             "per batch (etcd 3.4's gateway drops the tail of such bodies)")
    parser.add_argument("--lease-seconds", type=float, default=30.0,
                        help="keepalive-only phase (default 30 s)")
    parser.add_argument("--grant-timeout", type=float, default=180.0,
                        help="time bound of the grant phase (default 180 s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs and logs")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not set(systems) <= {"raftkv", "etcd"}:
        parser.error("--systems takes raftkv and/or etcd")
    watchers = [int(w) for w in args.watchers.split(",") if w.strip()]

    atexit.register(_stop_everything)
    previous = signal.signal(signal.SIGTERM, bench_kv._on_sigterm)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    watch_cells: list[WatchCell] = []
    lease_results: list[LeaseResult] = []
    try:
        bench_kv.ensure_tools()
        print(f"load average at start: {fmt_load()} ({os.cpu_count()} CPUs)", flush=True)
        for system in systems:
            run_system(system, workdir, args, watchers, watch_cells, lease_results)
        print_watch_table(watch_cells)
        print_lease_table(lease_results)
        print(f"\nload average at end: {fmt_load()}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        _stop_everything()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if args.keep:
            print(f"data dirs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
