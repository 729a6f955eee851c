"""``NodeDriver``: the one task that owns a node's ``Replica`` and storage and runs the Ready loop.

Owns: the inbox (messages from peers, proposals, reads), the clock (monotonic time turned into
Raft ticks and lease deadlines), persistence in a worker thread, sending through the transport,
the futures that complete proposals and reads, request ids, the leader's lease expiry loop
(revokes proposed through Raft), keepalives and TimeToLive (answered by the leader after a
ReadIndex round confirms its leadership; followers forward them over the peer transport) and the
wakeups of watch streams. Handlers never touch the replica: they call the methods below and await.

Must not: block the event loop (disk I/O runs through ``asyncio.to_thread``), or acknowledge
anything that was not persisted first (the order of ``Replica.begin_ready`` / ``finish_ready``).

Invariants: one Ready cycle at a time; **group commit**: while the worker thread writes and
fsyncs, new proposals and messages queue in the inbox, and the next cycle steps all of them in,
so they share one write and one fsync. A storage failure stops the node: every waiter fails with
``Stopped`` and nothing more is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from raftkv.errors import (
    LeaderChanged,
    MessageTooLarge,
    NoLeader,
    ProposalDropped,
    RaftkvError,
    RequestTooLarge,
    Stopped,
    StorageFailed,
    Timeout,
    TooManyRequests,
)
from raftkv.raft.types import NONE, Message
from raftkv.replica import Replica
from raftkv.state.commands import Command, LeaseRevoke, RequestId, encode_command
from raftkv.state.machine import ApplyResult
from raftkv.storage.disk import DiskStorage

log = logging.getLogger("raftkv.driver")

MAX_PENDING = 5000
GRPC_OVERHEAD = 512 * 1024  # etcd's gRPC receive limit is --max-request-bytes plus this


@dataclass(frozen=True, slots=True)
class DriverSettings:
    tick_seconds: float
    request_timeout: float
    # Ticks granted at boot so the first election does not wait a whole timeout (etcd's
    # advanceTicks); randomization still spreads the candidates.
    initial_ticks: int = 0
    max_pending: int = MAX_PENDING
    member_id: int = 0
    max_request_bytes: int = 1_572_864
    lease_check_seconds: float = 0.5
    lease_revoke_batch: int = 500
    keepalive_confirm: bool = True  # False only for the keepalive_no_confirm canary
    progress_notify_seconds: float = 600.0  # etcd's default watch progress notify interval
    lease_forward_timeout: float = 2.0  # per forwarded lease call; retried until the deadline


# (leader, kind, lease id, timeout) -> the leader's answer, or None if it could not answer.
LeaseForwarder = Callable[[int, str, int, float], Awaitable[Any]]


class NodeDriver:
    def __init__(
        self,
        *,
        replica: Replica,
        disk: DiskStorage,
        send: Callable[[list[Message]], None],
        settings: DriverSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replica = replica
        self.disk = disk
        self._send = send
        self.settings = settings
        self._clock = clock
        self._inbox: deque[tuple[str, Any]] = deque()
        self._wakeup = asyncio.Event()
        self._pending: dict[RequestId, asyncio.Future[ApplyResult]] = {}
        # Futures in the order they were created, with their deadlines (all requests share one
        # timeout, so this is also deadline order): expired by the owner task at each tick.
        self._deadlines: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self.stopped = asyncio.Event()
        self._nonce = random.SystemRandom().getrandbits(62)
        self._counter = itertools.count(1)
        self._revoking: set[int] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self.forward_lease_call: LeaseForwarder | None = None
        self._watch_wakeups: dict[int, asyncio.Event] = {}
        replica.watches.set_waker(self._wake_stream)

    # --- watch streams -------------------------------------------------------------------------

    def _wake_stream(self, stream_id: int) -> None:
        event = self._watch_wakeups.get(stream_id)
        if event is not None:
            event.set()

    def watch_wakeup(self, stream_id: int) -> asyncio.Event:
        event = self._watch_wakeups.setdefault(stream_id, asyncio.Event())
        return event

    def forget_watch_stream(self, stream_id: int) -> None:
        self._watch_wakeups.pop(stream_id, None)

    # --- called from handlers and the transport (same event loop) ------------------------------

    def deliver(self, messages: list[Message]) -> None:
        for m in messages:
            self._inbox.append(("step", m))
        self._wakeup.set()

    def report_unreachable(self, peer: int) -> None:
        self._inbox.append(("unreachable", peer))
        self._wakeup.set()

    def report_snapshot(self, peer: int, ok: bool) -> None:
        self._inbox.append(("snapshot_status", (peer, ok)))
        self._wakeup.set()

    async def propose(self, request_id: RequestId, data: bytes) -> ApplyResult:
        """Propose an encoded command and wait for its apply result.

        Raises ``NoLeader`` (not applied), ``TooManyRequests`` (not applied), ``Timeout`` (outcome
        unknown) or ``Stopped``."""
        self._check_running()
        if len(self._pending) >= self.settings.max_pending:
            raise TooManyRequests()
        future: asyncio.Future[ApplyResult] = self._new_future()
        # Registered before proposing, so an apply can never outrun its waiter.
        self._pending[request_id] = future
        self._inbox.append(("propose", (request_id, data)))
        self._wakeup.set()
        try:
            return await future
        finally:
            self._pending.pop(request_id, None)

    def next_request_id(self) -> RequestId:
        return RequestId(self.settings.member_id, self._nonce, next(self._counter))

    async def propose_command(self, command: Command) -> ApplyResult:
        """Encode ``command`` with a fresh request id and propose it (see ``propose``); raises
        ``RequestTooLarge`` when its encoding exceeds ``--max-request-bytes``."""
        request_id = self.next_request_id()
        data = encode_command(request_id, command)
        limit = self.settings.max_request_bytes
        if len(data) > limit + GRPC_OVERHEAD:
            raise MessageTooLarge(
                f"grpc: received message larger than max ({len(data)} vs. {limit + GRPC_OVERHEAD})"
            )
        if len(data) > limit:
            raise RequestTooLarge()
        return await self.propose(request_id, data)

    # --- leases --------------------------------------------------------------------------------

    async def keepalive(self, lease_id: int) -> int:
        """Refresh a lease on the leader; the granted TTL, or 0 for an unknown or expired lease."""
        return int(await self._lease_call("keepalive", lease_id))

    async def time_to_live(self, lease_id: int) -> tuple[float, int, list[bytes]]:
        """(seconds left, granted TTL, attached keys) as the leader knows them after a ReadIndex
        round, so they include every acknowledged write; (-1, 0, []) for an unknown lease."""
        remaining, granted, keys = await self._lease_call("ttl", lease_id)
        return float(remaining), int(granted), [bytes(k) for k in keys]

    async def _lease_call(self, kind: str, lease_id: int) -> Any:
        """Answer as the leader, or forward to the leader; keepalive and TimeToLive are idempotent,
        so a forward that finds no answer (a leader that just died) is retried against whoever
        leads now, until the request deadline."""
        deadline = self._clock() + self.settings.request_timeout
        while True:
            if self.replica.is_leader():
                return await self.answer_lease_call(kind, lease_id)
            leader = self.replica.leader_id
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise Timeout()
            if leader != NONE and self.forward_lease_call is not None:
                try:
                    timeout = min(remaining, self.settings.lease_forward_timeout)
                    result = await self.forward_lease_call(leader, kind, lease_id, timeout)
                    if result is not None:
                        return result
                except (TimeoutError, ConnectionError):
                    pass
            # No leader, or no answer from it: wait a tick for the cluster to settle, then retry.
            await asyncio.sleep(self.settings.tick_seconds)

    async def answer_lease_call(self, kind: str, lease_id: int) -> Any:
        """Serve a keepalive (the granted TTL, 0 if unknown or expired) or a TimeToLive
        ([remaining, granted, keys]) as the leader, also for calls forwarded to us."""
        if not self.replica.is_leader():
            raise LeaderChanged()
        term = self.replica.term
        if kind == "keepalive":
            # Only a leader whose leadership a quorum just confirmed may extend a lease.
            if self.settings.keepalive_confirm:
                await self.read_barrier()
            ttl = self.replica.refresh_lease(lease_id, term, self._clock())
            return ttl or 0
        await self.read_barrier()
        remaining = self.replica.lease_remaining(lease_id, self._clock())
        leases = self.replica.machine.leases
        granted = leases.ttl(lease_id)
        if remaining is None or granted is None:
            return [-1, 0, []]
        return [remaining, granted, list(leases.keys(lease_id))]

    def _check_leases(self, now: float) -> None:
        """Propose a revoke for each expired lease (not one already being revoked)."""
        if not self.replica.is_leader():
            return
        for lease_id in self.replica.expired_leases(now, self.settings.lease_revoke_batch):
            if lease_id in self._revoking:
                continue
            self._revoking.add(lease_id)
            task = asyncio.create_task(self._revoke(lease_id, self.replica.term))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _revoke(self, lease_id: int, term: int) -> None:
        try:
            await self.propose_command(LeaseRevoke(id=lease_id, leader_term=term))
        except RaftkvError as exc:
            log.info("expiry revoke of lease %d did not complete: %s", lease_id, exc)
        finally:
            self._revoking.discard(lease_id)

    async def read_barrier(self) -> None:
        """Wait until this node may serve a linearizable read (ReadIndex confirmed and applied).

        Raises ``NoLeader`` / ``LeaderChanged`` (safe to retry) or ``Timeout``."""
        self._check_running()
        future: asyncio.Future[None] = self._new_future()
        self._inbox.append(("read", future))
        self._wakeup.set()
        await future

    def _new_future(self) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._deadlines.append((self._clock() + self.settings.request_timeout, future))
        return future

    def _expire(self, now: float) -> None:
        """Fail requests past their deadline with ``Timeout`` (their outcome is unknown)."""
        deadlines = self._deadlines
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1].done()):
            _, future = deadlines.popleft()
            if not future.done():
                future.set_exception(Timeout())

    def _check_running(self) -> None:
        if self.failure is not None or self.stopped.is_set():
            raise Stopped()

    # --- the owner task ------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.settings.initial_ticks):
            self.replica.tick()
        self._task = asyncio.create_task(self._run(), name="raftkv-driver")

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_all(Stopped())
        self.stopped.set()

    async def _run(self) -> None:
        next_tick = self._clock() + self.settings.tick_seconds
        next_lease_check = self._clock() + self.settings.lease_check_seconds
        next_progress = self._clock() + self.settings.progress_notify_seconds
        try:
            while True:
                now = self._clock()
                if not self._inbox and not self.replica.has_ready() and now < next_tick:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), next_tick - now)
                self._wakeup.clear()
                now = self._clock()
                if now >= next_tick:
                    self._expire(now)
                    self.replica.tick()
                    # After a stall, tick once and resynchronise rather than firing a burst.
                    next_tick = max(next_tick + self.settings.tick_seconds, now)
                if now >= next_lease_check:
                    next_lease_check = now + self.settings.lease_check_seconds
                    self._check_leases(now)
                if now >= next_progress:
                    next_progress = now + self.settings.progress_notify_seconds
                    self.replica.watches.notify_idle()
                self._drain_inbox()
                await self._cycle()
        except StorageFailed as exc:
            log.critical("storage failed, stopping the node: %s", exc)
            self.failure = exc
        except Exception as exc:
            log.critical("driver crashed, stopping the node", exc_info=True)
            self.failure = exc
        finally:
            self._fail_all(Stopped())
            self.stopped.set()

    def _drain_inbox(self) -> None:
        inbox = self._inbox
        replica = self.replica
        proposals: list[tuple[RequestId, bytes]] = []
        while inbox:
            kind, item = inbox.popleft()
            if kind == "step":
                try:
                    replica.step(item)
                except ValueError as exc:
                    log.warning("dropping message %s: %s", item, exc)
            elif kind == "propose":
                proposals.append(item)
            elif kind == "read":
                replica.read(item)
            elif kind == "unreachable":
                replica.report_unreachable(item)
            elif kind == "snapshot_status":
                replica.report_snapshot(*item)
        if proposals:
            self._propose_batch(proposals)

    def _propose_batch(self, proposals: list[tuple[RequestId, bytes]]) -> None:
        """Everything proposed since the last cycle goes to Raft as one message: one append per
        follower and one fsync for the whole batch (group commit)."""
        try:
            self.replica.propose_many([data for _, data in proposals])
        except ProposalDropped:
            for request_id, _ in proposals:
                future = self._pending.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_exception(NoLeader())

    async def _cycle(self) -> None:
        work = self.replica.begin_ready()
        if work is None:
            return
        self._send(work.messages)
        if work.must_sync:
            await asyncio.to_thread(
                self.disk.save, work.hard_state, work.entries, work.snapshot, work.must_sync
            )
        elif work.hard_state is not None:
            # Only the commit index moved: a small page-cache write, cheaper inline than a thread hop.
            self.disk.save(work.hard_state, work.entries, work.snapshot, False)
        self._send(work.messages_after_persist)
        applied = self.replica.finish_ready(work, self._clock())
        for request_id, result in applied.results:
            future = self._pending.get(request_id)
            if future is None or future.done():
                continue
            if result.duplicate:
                # The first application reached us inside a snapshot: it happened, but its
                # response is unknown here.
                future.set_exception(Timeout())
            else:
                future.set_result(result)
        for token in applied.reads_ready:
            if isinstance(token, asyncio.Future) and not token.done():
                token.set_result(None)
        for token in applied.reads_failed:
            if isinstance(token, asyncio.Future) and not token.done():
                has_leader = self.replica.leader_id != 0
                token.set_exception(LeaderChanged() if has_leader else NoLeader())
        if applied.snapshot is not None:
            await asyncio.to_thread(self.disk.save_snapshot, applied.snapshot)
            first_needed = self.replica.snapshot_saved(applied.snapshot)
            await asyncio.to_thread(self.disk.release, first_needed)

    def _fail_all(self, error: RaftkvError) -> None:
        for _, future in self._deadlines:
            if not future.done():
                future.set_exception(error)
        self._deadlines.clear()
        self._pending.clear()
        while self._inbox:
            kind, item = self._inbox.popleft()
            if kind == "read" and not item.done():
                item.set_exception(error)
