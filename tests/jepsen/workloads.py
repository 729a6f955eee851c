"""Workloads run by a campaign against the cluster (ISSUE 7, TESTING.md §4.3).

Owns: the logical clients of each workload and what they record:

* ``register``: put / linearizable get / CAS (a txn comparing mod_revision or value, then put) on a
  few keys at a time, rotated every ``ROTATE`` operations per key; recorded as ``raftkv.checker``
  ops. A client whose operation had an unknown outcome is retired and replaced by a new client id.
* ``bank``: transfers between accounts as a txn comparing both accounts' mod_revisions; read-alls
  (one linearizable range, one revision) must always sum to the initial total.
* ``watch``: one watcher per node over the whole keyspace from revision 1, resuming on the next
  node after any error from the last revision seen + 1.
* ``lease``: kept-alive leases (a keeper pinned to one node, plus concurrent keepalive probes to
  that node), unkept leases, and readers of the attached keys.
* ``lock``: a few clients of the ``raftkv.recipes.Lock`` recipe (through ``raftkv.Client`` with
  every node as an endpoint) contending for two locks; each hold does fenced increments of that
  lock's counter (a txn comparing the holder's key's create revision, the fencing token, and the
  counter's mod_revision), and a few holders let their lease expire while holding (zombies).

All times are ``time.monotonic_ns()`` of this process, in seconds since the campaign start.
Every loop stops when the shared ``stop`` event is set; request time-outs bound every await.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from raftkv import errors
from raftkv.checker import CasIn, CasOut, HistoryBuilder, PutIn, PutOut, ReadIn, ReadOut
from raftkv.client import Client, Compare, Op, RangeResponse
from raftkv.recipes import Lock, LockLost, Session
from tests.jepsen.client import HOST, Api, b64, header_rev, unb64

T = TypeVar("T")

ROTATE = 200  # operations per key before its generation is retired (bounds per-key WGL cost)
ALL_KEYS = {"key": b64("\0"), "range_end": b64("\0")}


def prefix_range(prefix: str) -> dict[str, str]:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return {"key": b64(prefix), "range_end": b64(end)}


@dataclass
class Ctx:
    api: Api
    ports: list[int]
    rng: random.Random
    stop: asyncio.Event
    t0_ns: int
    rate: float  # total target ops/s of this workload

    def now(self) -> float:
        return (time.monotonic_ns() - self.t0_ns) / 1e9

    def port(self) -> int:
        return self.rng.choice(self.ports)

    async def pace(self, clients: int) -> None:
        # Each client waits clients/rate on average, so the workload offers ~rate ops/s.
        delay = self.rng.expovariate(self.rate / clients) if self.rate > 0 else 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=min(delay, 2.0))


# --- register --------------------------------------------------------------------------------


@dataclass
class Register:
    ctx: Ctx
    clients: int = 10
    keys: int = 5
    prefix: str = "r/"
    history: HistoryBuilder = field(default_factory=HistoryBuilder)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "unknown": 0})
    _next_client: int = 0
    _ops: int = 0
    _seen: dict[str, tuple[str, int]] = field(default_factory=dict)

    def key(self) -> str:
        gen = self._ops // (ROTATE * self.keys)
        return f"{self.prefix}{gen}/{self.ctx.rng.randrange(self.keys)}"

    async def run(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))

    async def _client(self) -> None:
        cid = self._new_id()
        seq = 0
        while not self.ctx.stop.is_set():
            await self.ctx.pace(self.clients)
            if self.ctx.stop.is_set():
                break
            seq += 1
            outcome = await self._one(cid, seq)
            self.counts[outcome] += 1
            if outcome == "unknown":
                cid, seq = self._new_id(), 0  # retire: at most one op outstanding per client id

    def _new_id(self) -> int:
        self._next_client += 1
        return self._next_client

    async def _one(self, cid: int, seq: int) -> str:
        ctx, h = self.ctx, self.history
        key = self.key()
        self._ops += 1
        value = f"{cid}-{seq}"
        r = ctx.rng.random()
        port = ctx.port()
        if r < 0.4:
            handle = h.invoke(cid, key, ReadIn(), ctx.now())
            res = await ctx.api.call(port, "/v3/kv/range", {"key": b64(key)})
            if res.ok:
                kvs = res.body.get("kvs", [])
                if kvs:
                    kv = kvs[0]
                    out = ReadOut(unb64(kv.get("value")), int(kv["mod_revision"]), int(kv["version"]),
                                  header_rev(res.body))
                    self._seen[key] = (out.value or "", out.mod_revision)
                else:
                    out = ReadOut(None, 0, 0, header_rev(res.body))
                h.ok(handle, out, ctx.now())
        elif r < 0.7 or key not in self._seen:
            handle = h.invoke(cid, key, PutIn(value), ctx.now())
            res = await ctx.api.call(port, "/v3/kv/put", {"key": b64(key), "value": b64(value)})
            if res.ok:
                h.ok(handle, PutOut(header_rev(res.body)), ctx.now())
        else:
            seen_value, seen_rev = self._seen[key]
            if ctx.rng.random() < 0.5:
                cas = CasIn("mod_revision", seen_rev, value)
                cmp = {"result": "EQUAL", "target": "MOD", "key": b64(key), "mod_revision": str(seen_rev)}
            else:
                cas = CasIn("value", seen_value, value)
                cmp = {"result": "EQUAL", "target": "VALUE", "key": b64(key), "value": b64(seen_value)}
            body = {"compare": [cmp], "success": [{"request_put": {"key": b64(key), "value": b64(value)}}]}
            handle = h.invoke(cid, key, cas, ctx.now())
            res = await ctx.api.call(port, "/v3/kv/txn", body)
            if res.ok:
                h.ok(handle, CasOut(bool(res.body.get("succeeded", False)), header_rev(res.body)), ctx.now())
        if res.outcome == "fail":
            h.fail(handle, ctx.now())
        elif res.outcome == "unknown":
            h.unknown(handle)
        return res.outcome


# --- bank ------------------------------------------------------------------------------------


@dataclass
class Bank:
    ctx: Ctx
    clients: int = 3
    accounts: int = 5
    initial: int = 100
    prefix: str = "b/"
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "unknown": 0})
    reads: list[tuple[float, float, int, int]] = field(default_factory=list)  # call, ret, rev, total
    bad_reads: list[dict[str, Any]] = field(default_factory=list)
    ready: bool = False

    @property
    def total(self) -> int:
        return self.accounts * self.initial

    async def setup(self) -> None:
        """Create every account in one txn (retried until certainly applied or present)."""
        ops = [
            {"request_put": {"key": b64(f"{self.prefix}{i}"), "value": b64(str(self.initial))}}
            for i in range(self.accounts)
        ]
        cmp = [{"result": "EQUAL", "target": "VERSION", "key": b64(f"{self.prefix}0"), "version": "0"}]
        for _ in range(100):
            res = await self.ctx.api.call(self.ctx.port(), "/v3/kv/txn", {"compare": cmp, "success": ops})
            if res.ok:
                self.ready = True
                return
            await asyncio.sleep(0.2)

    async def run(self) -> None:
        await self.setup()
        if self.ready:
            await asyncio.gather(*(self._client() for _ in range(self.clients)))

    async def read_all(self, port: int) -> tuple[dict[str, tuple[int, int]], int] | None:
        res = await self.ctx.api.call(port, "/v3/kv/range", prefix_range(self.prefix))
        if not res.ok:
            return None
        accts = {unb64(kv["key"]): (int(unb64(kv.get("value"))), int(kv["mod_revision"]))
                 for kv in res.body.get("kvs", [])}
        return accts, header_rev(res.body)

    async def _client(self) -> None:
        ctx = self.ctx
        while not ctx.stop.is_set():
            await ctx.pace(self.clients)
            if ctx.stop.is_set():
                break
            port = ctx.port()
            call = ctx.now()
            got = await self.read_all(port)
            if got is None:
                continue
            accts, rev = got
            total = sum(v for v, _ in accts.values())
            self.reads.append((call, ctx.now(), rev, total))
            if total != self.total or len(accts) != self.accounts:
                self.bad_reads.append({"call": call, "revision": rev, "total": total, "accounts": len(accts)})
            a, b = ctx.rng.sample(sorted(accts), 2)
            amount = ctx.rng.randint(1, 5)
            if accts[a][0] < amount:
                continue
            cmp = [{"result": "EQUAL", "target": "MOD", "key": b64(k), "mod_revision": str(accts[k][1])}
                   for k in (a, b)]
            puts = [{"request_put": {"key": b64(a), "value": b64(str(accts[a][0] - amount))}},
                    {"request_put": {"key": b64(b), "value": b64(str(accts[b][0] + amount))}}]
            res = await ctx.api.call(ctx.port(), "/v3/kv/txn", {"compare": cmp, "success": puts})
            self.counts[res.outcome] += 1


# --- watch -----------------------------------------------------------------------------------


@dataclass
class Watcher:
    """Watches the whole keyspace from revision 1, resuming on the next node after any error."""

    ctx: Ctx
    start_node: int
    events: list[tuple[int, str, str, str]] = field(default_factory=list)  # rev, key, type, value
    messages: list[list[int]] = field(default_factory=list)  # revisions of each message's events
    resumes: int = 0
    compacted: int = 0
    last_rev: int = 0

    async def run(self) -> None:
        node = self.start_node
        while not self.ctx.stop.is_set():
            port = self.ctx.ports[node % len(self.ctx.ports)]
            await self._stream(port)
            if self.ctx.stop.is_set():
                break
            self.resumes += 1
            node += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.stop.wait(), timeout=0.3)

    async def _stream(self, port: int, until_rev: int | None = None) -> None:
        body = {"create_request": {**ALL_KEYS, "start_revision": str(self.last_rev + 1)}}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2, sock_read=3)
        try:
            async with self.ctx.api.session.post(
                f"http://{HOST}:{port}/v3/watch", data=json.dumps(body), timeout=timeout
            ) as resp:
                if resp.status != 200:
                    return
                while not self.ctx.stop.is_set() or until_rev is not None:
                    line = await resp.content.readline()
                    if not line:
                        return
                    if not line.strip():
                        continue
                    msg = json.loads(line).get("result")
                    if msg is None:
                        return
                    if msg.get("canceled"):
                        if msg.get("compact_revision"):
                            self.compacted += 1
                        return
                    self._take(msg)
                    if until_rev is not None and self.last_rev >= until_rev:
                        return
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return

    def _take(self, msg: dict[str, Any]) -> None:
        revs = []
        for ev in msg.get("events", []):
            kv = ev.get("kv", {})
            rev = int(kv.get("mod_revision", 0))
            typ = ev.get("type", "PUT")
            value = unb64(kv.get("value")) if typ == "PUT" else ""
            self.events.append((rev, unb64(kv.get("key")), typ, value))
            revs.append(rev)
            self.last_rev = max(self.last_rev, rev)
        if revs:
            self.messages.append(revs)

    async def catch_up(self, port: int, until_rev: int, deadline_s: float) -> bool:
        """Read from ``port`` until revision ``until_rev`` is seen (final history), with a deadline."""
        end = time.monotonic() + deadline_s
        while self.last_rev < until_rev and time.monotonic() < end:
            try:
                left = max(0.1, end - time.monotonic())
                await asyncio.wait_for(self._stream(port, until_rev), timeout=left)
            except TimeoutError:
                break
        return self.last_rev >= until_rev


# --- lease -----------------------------------------------------------------------------------


@dataclass
class LeaseRecord:
    lease_id: int
    key: str
    kept: bool
    node: int
    granted: tuple[float, float] = (0.0, 0.0)
    put_ok: tuple[float, float] | None = None
    keepalives: list[tuple[float, float, int]] = field(default_factory=list)  # call, ret, ttl (ok only)
    reads: list[tuple[float, float, bool, int]] = field(default_factory=list)  # call, ret, present, rev


@dataclass
class Leases:
    ctx: Ctx
    ttl: int = 3
    kept: int = 3
    unkept_every_s: float = 2.0
    probe_every_s: float = 0.5
    records: list[LeaseRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "unknown": 0})
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _next: int = 0

    async def run(self) -> None:
        jobs = [self._keeper(i) for i in range(self.kept)]
        jobs.append(self._unkept())
        jobs.append(self._reader())
        await asyncio.gather(*jobs)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _grant(self, kept: bool, node: int) -> LeaseRecord | None:
        ctx = self.ctx
        self._next += 1
        lease_id = (ctx.rng.randrange(1, 1 << 40) << 8) | (self._next & 0xFF)
        call = ctx.now()
        port = ctx.ports[node]
        res = await ctx.api.call(port, "/v3/lease/grant", {"TTL": str(self.ttl), "ID": str(lease_id)})
        self.counts[res.outcome] += 1
        if not res.ok:
            return None
        rec = LeaseRecord(lease_id, f"l/{'k' if kept else 'u'}/{lease_id}", kept, node, (call, ctx.now()))
        call = ctx.now()
        body = {"key": b64(rec.key), "value": b64("x"), "lease": str(lease_id)}
        res = await ctx.api.call(port, "/v3/kv/put", body)
        self.counts[res.outcome] += 1
        if res.ok:
            rec.put_ok = (call, ctx.now())
        self.records.append(rec)
        return rec

    async def _keepalive(self, rec: LeaseRecord) -> int | None:
        """One keepalive to the record's pinned node: the returned TTL (0: gone), None if not ok."""
        ctx = self.ctx
        call = ctx.now()
        # A long time-out: a keepalive queued at a paused node must be answered after it wakes.
        res = await ctx.api.call(ctx.ports[rec.node], "/v3/lease/keepalive", {"ID": str(rec.lease_id)}, 15.0)
        if not res.ok:
            return None
        ttl = int(res.body.get("result", {}).get("TTL", 0)) if isinstance(res.body, dict) else 0
        if ttl > 0:
            rec.keepalives.append((call, ctx.now(), ttl))
        return ttl

    async def _keeper(self, i: int) -> None:
        ctx = self.ctx
        node = i % len(ctx.ports)
        while not ctx.stop.is_set():
            rec = await self._grant(True, node)
            if rec is None or rec.put_ok is None:
                await self._nap(0.5)
                continue
            # Concurrent probes, independent of the keeper's own keepalive: keepalives queued at a
            # paused node exercise its wake-up path (a deposed leader must not refresh leases).
            gone = asyncio.Event()
            prober = asyncio.create_task(self._probes(rec, gone))
            self._tasks.add(prober)
            prober.add_done_callback(self._tasks.discard)
            while not ctx.stop.is_set():
                if await self._keepalive(rec) == 0:
                    break  # the lease is gone (legitimately or not: the checker decides)
                await self._nap(self.ttl / 3)
            gone.set()

    async def _probes(self, rec: LeaseRecord, gone: asyncio.Event) -> None:
        outstanding: set[asyncio.Task[int | None]] = set()
        while not self.ctx.stop.is_set() and not gone.is_set():
            if len(outstanding) < 30:
                task = asyncio.create_task(self._keepalive(rec))
                outstanding.add(task)
                task.add_done_callback(outstanding.discard)
            await self._nap(self.probe_every_s)
        await asyncio.gather(*outstanding, return_exceptions=True)

    async def _unkept(self) -> None:
        n = 0
        while not self.ctx.stop.is_set():
            await self._grant(False, n % len(self.ctx.ports))
            n += 1
            await self._nap(self.unkept_every_s)

    async def _reader(self) -> None:
        ctx = self.ctx
        while not ctx.stop.is_set():
            await self._nap(0.1)
            live = [r for r in self.records if r.put_ok is not None]
            if not live:
                continue
            rec = ctx.rng.choice(live[-8:])
            task = asyncio.create_task(self.read(rec, ctx.port()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def read(self, rec: LeaseRecord, port: int) -> None:
        ctx = self.ctx
        call = ctx.now()
        res = await ctx.api.call(port, "/v3/kv/range", {"key": b64(rec.key)})
        if res.ok:
            rec.reads.append((call, ctx.now(), bool(res.body.get("kvs")), header_rev(res.body)))

    async def _nap(self, s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.stop.wait(), timeout=s)


# --- lock ------------------------------------------------------------------------------------

LOCK_PREFIX = "lock/"  # lock i is the recipe's queue under "lock/<i>/"
LOCK_COUNTER_PREFIX = "lockctr/"  # the counter lock i guards is "lockctr/<i>"


@dataclass
class Increment:
    """One fenced increment: a txn comparing the holder's key's create revision (the fencing token)
    and the counter's mod_revision (read linearizably just before), then putting ``value``."""

    call: float
    ret: float
    outcome: str  # ok | fail | unknown | lost (the guard failed) | conflict (guard held, counter moved)
    value: int  # the value written (counter + 1)
    revision: int = 0  # the commit revision, when ok


@dataclass
class LockHold:
    """One successful ``Lock.acquire`` and what the holder did until it released."""

    client: int
    session: int  # serial number of the Session (one lease), unique over the run
    lock: str
    counter: str
    key: str
    token: int  # Lock.revision: the create revision of ``key``
    acquire: tuple[float, float]  # call, return
    increments: list[Increment] = field(default_factory=list)
    release: tuple[float, float] | None = None  # call, return (always attempted)
    release_outcome: str = ""  # ok | fail | unknown
    lost_t: float | None = None  # when the holder learned it lost the lock (guard failed, session lost)
    zombie: bool = False  # the holder stopped its keepalive and slept past the TTL while holding
    # Whether the session's lease died during this hold: False for every hold its session followed
    # with another successful acquire (the lease was alive then, and leases never come back); for
    # the session's last hold, what the end of the session showed (None: could not tell).
    lease_died: bool | None = False

    @property
    def end(self) -> float:
        """The end of the hold as the holder saw it: when it called release."""
        return self.release[0] if self.release is not None else float("inf")


class _Stopped(Exception):
    """The campaign's stop event fired while a lock call was pending (it was cancelled)."""


@dataclass
class Locks:
    """Lock clients contending for a few lock names through the real ``raftkv.recipes.Lock`` over
    the failover ``raftkv.Client`` (all nodes as endpoints), each a Session with a short TTL.

    Every hold does 1-3 fenced increments of the lock's counter, then releases. A few holds are
    zombies: the holder stops its keepalive and sleeps past the TTL, then tries one more fenced
    increment, which must fail once another client acquired the lock meanwhile."""

    ctx: Ctx
    ttl: int = 4
    clients: int = 3
    locks: int = 2
    max_holds: int = 400  # per client
    acquire_timeout_s: float = 8.0
    zombie_p: float = 0.04
    holds: list[LockHold] = field(default_factory=list)
    acquire_failures: dict[str, int] = field(default_factory=dict)  # by reason
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "unknown": 0})
    sessions: int = 0
    sessions_died: int = 0
    client_errors: list[str] = field(default_factory=list)  # unexpected exceptions (client bugs)

    async def run(self) -> None:
        await asyncio.gather(*(self._client(i) for i in range(self.clients)))

    @property
    def timeout_s(self) -> float:
        return self.ctx.api.timeout_s

    def increments(self, outcome: str) -> int:
        return sum(1 for h in self.holds for inc in h.increments if inc.outcome == outcome)

    async def _client(self, cid: int) -> None:
        ctx = self.ctx
        async with Client([f"{HOST}:{p}" for p in ctx.ports], timeout=self.timeout_s) as client:
            session: Session | None = None
            sid = 0
            last: LockHold | None = None  # the current session's last hold
            n = 0
            try:
                while not ctx.stop.is_set() and n < self.max_holds:
                    if session is None:
                        session = await self._open_session(client)
                        if session is None:
                            await self._nap(0.5)
                            continue
                        self.sessions += 1
                        sid, last = self.sessions, None
                    n += 1
                    hold, gone = await self._hold(client, session, cid, sid)
                    if hold is not None:
                        last = hold
                    if gone:
                        await self._end_session(client, session, last, True if gone == "died" else None)
                        session = None
                    else:
                        await self._nap(ctx.rng.uniform(0.0, 0.3))
            except Exception as exc:  # a crash of the client or the recipe is a finding
                self.client_errors.append(f"lock client {cid}: {type(exc).__name__}: {exc}"[:2000])
            finally:
                if session is not None:
                    await self._end_session(client, session, last, None)

    async def _open_session(self, client: Client) -> Session | None:
        session = Session(client, ttl=self.ttl)
        try:
            await asyncio.wait_for(session.open(), self.timeout_s)
        except (errors.RaftkvError, TimeoutError):
            return None  # an unknown grant leaves at most an unkept lease, which expires
        return session

    async def _end_session(
        self, client: Client, session: Session, last: LockHold | None, died: bool | None
    ) -> None:
        """Find out whether the session's lease died (a lease never comes back, so a live lease now
        means it was alive through every hold), then revoke it."""
        if died is None:
            try:
                ttl = (await asyncio.wait_for(client.time_to_live(session.lease_id), self.timeout_s)).TTL
                died = ttl < 0  # -1: unknown lease; 0 is a lease still there (its keys too)
            except (errors.RaftkvError, TimeoutError):
                died = None
        if died:
            self.sessions_died += 1
        if last is not None:
            last.lease_died = died
        with contextlib.suppress(errors.RaftkvError, TimeoutError):
            await asyncio.wait_for(session.close(), self.timeout_s)

    async def _unless_stopped(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` unless the stop event fires first; then cancel it (bounded) and raise
        ``_Stopped``, except when it completed meanwhile."""
        task = asyncio.ensure_future(aw)
        stopper = asyncio.ensure_future(self.ctx.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=3 * self.timeout_s)
            if not task.done() or task.cancelled():
                raise _Stopped
        return task.result()

    async def _hold(
        self, client: Client, session: Session, cid: int, sid: int
    ) -> tuple[LockHold | None, str]:
        """Acquire one lock, increment its counter under it, release. Returns the hold (None if not
        acquired) and whether the session must end: "died" (its lease certainly died), "maybe"
        (the holder saw it lost, or left it to expire), or ""."""
        ctx = self.ctx
        i = ctx.rng.randrange(self.locks)
        lock = Lock(session, f"{LOCK_PREFIX}{i}")
        call = ctx.now()
        try:
            token = await self._unless_stopped(lock.acquire(timeout=self.acquire_timeout_s))
        except (LockLost, errors.LeaseNotFound) as exc:
            self._failed(type(exc).__name__)
            return None, "died"
        except TimeoutError:
            self._failed("not_granted_in_time")
            return None, ""
        except _Stopped:
            self._failed("stopped")
            return None, ""
        except errors.RaftkvError as exc:
            self._failed(type(exc).__name__)
            return None, "maybe" if session.lost.is_set() else ""
        hold = LockHold(cid, sid, lock.prefix.decode().rstrip("/"), f"{LOCK_COUNTER_PREFIX}{i}",
                        lock.key.decode(), token, (call, ctx.now()))
        self.holds.append(hold)
        try:
            if ctx.rng.random() < self.zombie_p:
                hold.zombie = True
                await session.lease.stop_keepalive()
                await self._nap(self.ttl * 1.5 + 1.0)
                await self._increment(client, lock, hold)
            else:
                for _ in range(ctx.rng.randint(1, 3)):
                    if ctx.stop.is_set() or hold.lost_t is not None:
                        break
                    if session.lost.is_set():
                        hold.lost_t = ctx.now()
                        break
                    if await self._increment(client, lock, hold) not in ("ok", "read_failed"):
                        break  # lost, conflict or an uncertain outcome: end this hold
        finally:
            await self._release(lock, hold)
        if session.lost.is_set() and hold.lost_t is None:
            hold.lost_t = ctx.now()
        if hold.zombie or hold.lost_t is not None:
            return hold, "died" if any(inc.outcome == "lost" for inc in hold.increments) else "maybe"
        return hold, ""

    def _failed(self, reason: str) -> None:
        self.acquire_failures[reason] = self.acquire_failures.get(reason, 0) + 1

    async def _increment(self, client: Client, lock: Lock, hold: LockHold) -> str:
        ctx = self.ctx
        try:
            resp = await client.get(hold.counter)  # linearizable; bounded by the client's timeout
        except errors.RaftkvError:
            return "read_failed"
        value = int(resp.kvs[0].value) if resp.kvs else 0
        mod = resp.kvs[0].mod_revision if resp.kvs else 0
        txn = (
            client.txn()
            .if_(lock.guard(), Compare.mod_revision(hold.counter) == mod)
            .then(Op.put(hold.counter, str(value + 1)))
            .else_(Op.get(lock.key))
        )
        call = ctx.now()
        revision = 0
        try:
            res = await txn.commit()
        except errors.RaftkvError as exc:
            outcome = "fail" if exc.outcome is errors.Outcome.NOT_APPLIED else "unknown"
        else:
            if res.succeeded:
                outcome = "ok"
                revision = res.header.revision if res.header is not None else 0
            else:
                got = res.responses[0].response if res.responses else None
                mine = got.kvs if isinstance(got, RangeResponse) else ()
                outcome = "conflict" if mine and mine[0].create_revision == hold.token else "lost"
        ret = ctx.now()
        hold.increments.append(Increment(call, ret, outcome, value + 1, revision))
        self.counts["ok" if outcome in ("ok", "lost", "conflict") else outcome] += 1
        if outcome == "lost" and hold.lost_t is None:
            hold.lost_t = ret
        return outcome

    async def _release(self, lock: Lock, hold: LockHold) -> None:
        call = self.ctx.now()
        try:
            # Lock.release repeats its guarded delete after unknown outcomes: bound the whole of it.
            await asyncio.wait_for(lock.release(), 2 * self.timeout_s)
            hold.release_outcome = "ok"
        except errors.RaftkvError as exc:
            hold.release_outcome = "fail" if exc.outcome is errors.Outcome.NOT_APPLIED else "unknown"
        except TimeoutError:
            hold.release_outcome = "unknown"
        hold.release = (call, self.ctx.now())

    async def _nap(self, s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.stop.wait(), timeout=s)
