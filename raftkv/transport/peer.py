"""``PeerTransport``: Raft messages between nodes over persistent TCP connections (asyncio).

Owns: the peer listener; per peer one outgoing connection, a bounded queue and a sender task;
reconnect with jittered exponential backoff; delivery of received batches to the node; forwarded
lease calls (a follower's keepalive or TimeToLive sent to the leader, answered on the leader's
own connection back, matched by call id).

Must not: block or raise in ``send``; interpret messages beyond routing them. Data flows only
from dialler to listener, so a one-way partition affects exactly one connection.

Invariants: a queue never holds more than ``queue_limit`` messages (overflow drops the message and
reports the peer unreachable); a connection error drops what was queued and reports the peer
unreachable, and a dropped ``SNAP`` is reported as a failed snapshot; identity comes from the
``Hello`` frame, and a wrong cluster id or recipient closes the connection.

A ``MsgSnap`` travels on its own short-lived connection (purpose ``SNAPSHOT``) as metadata and
1 MiB chunks, so heartbeats never wait behind it and no frame grows with the store; the receiver
checks length and CRC32 before stepping it, and the sender reports the outcome to Raft.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from raftkv.raft.types import Message, MessageType
from raftkv.transport.frames import (
    HEADER,
    PROTOCOL_VERSION,
    FrameError,
    FrameKind,
    Hello,
    Purpose,
    SnapshotAssembler,
    decode_body,
    decode_hello,
    decode_lease_call,
    decode_lease_reply,
    decode_messages,
    encode_hello,
    encode_lease_call,
    encode_lease_reply,
    encode_messages,
    encode_snapshot,
    frame_length,
)

log = logging.getLogger("raftkv.transport")

Address = tuple[str, int]

BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
# A connection whose buffered data makes no progress this long is dead even if TCP has not said
# so (a peer or middlebox that stopped reading): drop it and redial, as etcd's peer writers do.
WRITE_TIMEOUT = 5.0


class _Peer:
    def __init__(self, transport: PeerTransport, peer_id: int, address: Address) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.address = address
        # Raft messages, or whole pre-encoded frames (lease calls and replies).
        self.queue: deque[Message | bytes] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.connected = False

    def enqueue(self, message: Message | bytes) -> bool:
        if isinstance(message, Message) and message.type is MessageType.SNAP:
            task = asyncio.create_task(self._send_snapshot(message))
            self.transport._background.add(task)
            task.add_done_callback(self.transport._background.discard)
            return True
        if len(self.queue) >= self.transport.queue_limit:
            return False
        self.queue.append(message)
        self.wakeup.set()
        return True

    async def _send_snapshot(self, message: Message) -> None:
        ok = False
        writer: asyncio.StreamWriter | None = None
        try:
            host, port = self.address
            _, writer = await asyncio.open_connection(host, port)
            hello = Hello(
                protocol=PROTOCOL_VERSION,
                cluster_id=self.transport.cluster_id,
                frm=self.transport.node_id,
                to=self.peer_id,
                purpose=Purpose.SNAPSHOT,
            )
            writer.write(encode_hello(hello))
            for frame in encode_snapshot(message):
                _write(writer, [frame])
                await _drain(writer)
            # The receiver steps the snapshot once the last chunk is in; a clean close delivers it.
            ok = await _close(writer, flush=True)
        except (OSError, ConnectionError, FrameError) as exc:
            log.info("snapshot to peer %x failed: %r", self.peer_id, exc)
        finally:
            try:
                if writer is not None and not ok:
                    await _close(writer, flush=False)
            finally:
                # Raft waits for this report before it sends this follower anything else.
                self.transport.on_snapshot_status(self.peer_id, ok)

    async def run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                host, port = self.address
                _, writer = await asyncio.open_connection(host, port)
                writer.write(
                    encode_hello(
                        Hello(
                            protocol=PROTOCOL_VERSION,
                            cluster_id=self.transport.cluster_id,
                            frm=self.transport.node_id,
                            to=self.peer_id,
                        )
                    )
                )
                await writer.drain()
                backoff = BACKOFF_MIN
                self.connected = True
                log.debug("peer %x: connected to %s:%d", self.peer_id, host, port)
                await self._pump(writer)
            except (OSError, ConnectionError, FrameError) as exc:
                log.debug("peer %x: connection lost: %r", self.peer_id, exc)
            except Exception:
                # Anything else is a bug, but the sender must not die of it: its peer would go deaf.
                log.exception("peer %x: sender failed; reconnecting", self.peer_id)
            finally:
                self.connected = False
                if writer is not None:
                    # What is still buffered is dropped with the queue: never wait for a peer
                    # that stopped reading to take it.
                    await _close(writer, flush=False)
            self._drop_queue()
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _pump(self, writer: asyncio.StreamWriter) -> None:
        while True:
            if not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            batch = list(self.queue)
            self.queue.clear()
            messages = [m for m in batch if isinstance(m, Message)]
            frames = [m for m in batch if isinstance(m, bytes)]
            _write(writer, [encode_messages(messages), *frames] if messages else frames)
            await _drain(writer)

    def _drop_queue(self) -> None:
        self.queue.clear()
        self.transport.on_unreachable(self.peer_id)


def _write(writer: asyncio.StreamWriter, data: list[bytes]) -> None:
    """Queue ``data``; a connection the peer already closed raises ``ConnectionResetError``.

    asyncio's own transports drop writes after a close silently, but uvloop's raise
    ``RuntimeError``: uncaught, it once killed a sender and left its peer deaf for good."""
    if writer.transport.is_closing():
        raise ConnectionResetError("connection closed by the peer")
    writer.writelines(data)


async def _drain(writer: asyncio.StreamWriter) -> None:
    """Wait for the buffer to drain, at most ``WRITE_TIMEOUT`` (then ``TimeoutError``)."""
    if writer.transport.get_write_buffer_size():
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
    else:
        # Everything went to the kernel: drain cannot block, so skip the timeout's task.
        await writer.drain()


async def _close(writer: asyncio.StreamWriter, *, flush: bool) -> bool:
    """Close a connection; with ``flush``, first hand the buffered data to the peer (at most
    ``WRITE_TIMEOUT``), otherwise drop it. True when it closed cleanly with everything sent."""
    if flush:
        writer.close()
        try:
            # Shielded: wait_closed() shares the connection's one "closed" future, which a
            # timeout would otherwise cancel for every later waiter.
            await asyncio.wait_for(asyncio.shield(writer.wait_closed()), WRITE_TIMEOUT)
            return True
        except (OSError, ConnectionError):
            pass
    writer.transport.abort()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return False


class PeerTransport:
    def __init__(
        self,
        *,
        node_id: int,
        cluster_id: int,
        listen: Address,
        peers: dict[int, Address],
        on_messages: Callable[[list[Message]], None],
        on_unreachable: Callable[[int], None],
        on_snapshot_status: Callable[[int, bool], None],
        on_lease_call: Callable[[str, int], Awaitable[Any]] | None = None,
        queue_limit: int = 4096,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.listen = listen
        self.on_messages = on_messages
        self.on_unreachable = on_unreachable
        self.on_snapshot_status = on_snapshot_status
        self.on_lease_call = on_lease_call
        self.queue_limit = queue_limit
        self._call_ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._peers = {pid: _Peer(self, pid, addr) for pid, addr in peers.items() if pid != node_id}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        host, port = self.listen
        self._server = await asyncio.start_server(self._accept, host, port)
        for peer in self._peers.values():
            peer.task = asyncio.create_task(peer.run(), name=f"peer-{peer.peer_id:x}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [p.task for p in self._peers.values() if p.task is not None]
        tasks += list(self._inbound) + list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def send(self, messages: list[Message]) -> None:
        """Queue ``messages`` for their recipients; never blocks or raises."""
        for m in messages:
            peer = self._peers.get(m.to)
            if peer is None:
                continue
            if not peer.enqueue(m):
                self.on_unreachable(m.to)

    async def call(self, peer: int, kind: str, lease_id: int, timeout: float) -> Any:
        """Forward a lease call to ``peer`` (the leader) and wait for its reply.

        Raises ``TimeoutError`` (no reply in time) or ``ConnectionError`` (cannot queue it)."""
        target = self._peers.get(peer)
        if target is None or not target.connected:
            # Fail fast so the caller can retry elsewhere instead of waiting out its timeout.
            raise ConnectionError(f"no connection to peer {peer:x}")
        call_id = next(self._call_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        try:
            if not target.enqueue(encode_lease_call(call_id, kind, lease_id)):
                raise ConnectionError(f"queue to peer {peer:x} is full")
            return await asyncio.wait_for(future, timeout)
        finally:
            self._calls.pop(call_id, None)

    async def _answer_call(self, frm: int, call_id: int, kind: str, lease_id: int) -> None:
        result: Any = None  # None tells the caller to retry elsewhere (e.g. we are not leader)
        if self.on_lease_call is not None:
            try:
                result = await self.on_lease_call(kind, lease_id)
            except Exception as exc:
                log.info("forwarded %s for lease %d failed: %s", kind, lease_id, exc)
        peer = self._peers.get(frm)
        if peer is not None:
            peer.enqueue(encode_lease_reply(call_id, result))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inbound.add(task)
        try:
            kind, payload = await self._read_frame(reader)
            if kind is not FrameKind.HELLO:
                raise FrameError("first frame is not a hello")
            hello = decode_hello(payload)
            if hello.cluster_id != self.cluster_id or hello.to != self.node_id:
                raise FrameError(
                    f"hello for cluster {hello.cluster_id:x} member {hello.to:x} refused"
                )
            if hello.purpose is Purpose.SNAPSHOT:
                await self._receive_snapshot(reader)
                return
            while True:
                kind, payload = await self._read_frame(reader)
                if kind is FrameKind.MESSAGES:
                    self.on_messages(decode_messages(payload))
                elif kind is FrameKind.LEASE_CALL:
                    call_id, call_kind, lease_id = decode_lease_call(payload)
                    task = asyncio.create_task(self._answer_call(hello.frm, call_id, call_kind, lease_id))
                    self._inbound.add(task)
                    task.add_done_callback(self._inbound.discard)
                elif kind is FrameKind.LEASE_REPLY:
                    call_id, result = decode_lease_reply(payload)
                    future = self._calls.get(call_id)
                    if future is not None and not future.done():
                        future.set_result(result)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.CancelledError):
            pass  # the peer went away, or we are shutting down
        except FrameError as exc:
            log.warning("closing peer connection: %s", exc)
        finally:
            if task is not None:
                self._inbound.discard(task)
            writer.close()

    async def _receive_snapshot(self, reader: asyncio.StreamReader) -> None:
        kind, payload = await self._read_frame(reader)
        if kind is not FrameKind.SNAP_META:
            raise FrameError("a snapshot connection must start with its metadata")
        assembler = SnapshotAssembler(payload)
        while not assembler.done():
            kind, payload = await self._read_frame(reader)
            if kind is not FrameKind.SNAP_CHUNK:
                raise FrameError("expected a snapshot chunk")
            assembler.add(payload)
        self.on_messages([assembler.result()])

    @staticmethod
    async def _read_frame(reader: asyncio.StreamReader) -> tuple[FrameKind, object]:
        header = await reader.readexactly(HEADER.size)
        body = await reader.readexactly(frame_length(header))
        return decode_body(body)
