"""Peer transport: framing, Hello checks, snapshot streaming and forwarded lease calls, over real
loopback sockets between two ``PeerTransport``s in one event loop."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from raftkv.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMeta
from raftkv.transport import frames
from raftkv.transport import peer as peer_module
from raftkv.transport.peer import PeerTransport


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)
    unreachable: list[int] = field(default_factory=list)
    snapshot_status: list[tuple[int, bool]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on_messages(self, messages: list[Message]) -> None:
        self.messages.extend(messages)
        self.arrived.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def answer(kind: str, lease_id: int) -> float:
    return 7.0 if kind == "keepalive" else -1


@pytest.fixture
async def pair() -> AsyncIterator[tuple[PeerTransport, PeerTransport, Inbox, Inbox]]:
    ports = {1: free_port(), 2: free_port()}
    inboxes = {1: Inbox(), 2: Inbox()}
    transports = {}
    for node in (1, 2):
        box = inboxes[node]
        transports[node] = PeerTransport(
            node_id=node,
            cluster_id=99,
            listen=("127.0.0.1", ports[node]),
            peers={n: ("127.0.0.1", p) for n, p in ports.items()},
            on_messages=box.on_messages,
            on_unreachable=box.unreachable.append,
            on_snapshot_status=lambda peer, ok, box=box: box.snapshot_status.append((peer, ok)),
            on_lease_call=answer,
        )
        await transports[node].start()
    yield transports[1], transports[2], inboxes[1], inboxes[2]
    for t in transports.values():
        await t.stop()


async def test_messages_arrive_in_order(pair: tuple[PeerTransport, PeerTransport, Inbox, Inbox]) -> None:
    one, _two, _box1, box2 = pair
    sent = [Message(type=MessageType.HEARTBEAT, to=2, frm=1, term=1, commit=i) for i in range(50)]
    for m in sent:
        one.send([m])
    await box2.wait_for(50)
    assert box2.messages == sent


async def test_large_snapshot_streams_in_chunks(
    pair: tuple[PeerTransport, PeerTransport, Inbox, Inbox],
) -> None:
    one, _two, box1, box2 = pair
    data = bytes(range(256)) * (5 * frames.SNAPSHOT_CHUNK // 256 + 7)  # > 5 chunks
    snapshot = Snapshot(meta=SnapshotMeta(index=10, term=2, conf_state=ConfState(voters=(1, 2))), data=data)
    one.send([Message(type=MessageType.SNAP, to=2, frm=1, term=2, snapshot=snapshot)])
    await box2.wait_for(1)
    assert box2.messages[0].snapshot == snapshot
    async with asyncio.timeout(10):
        while not box1.snapshot_status:
            await asyncio.sleep(0.01)
    assert box1.snapshot_status == [(2, True)]


async def test_forwarded_lease_call(pair: tuple[PeerTransport, PeerTransport, Inbox, Inbox]) -> None:
    one, _two, _box1, _box2 = pair
    async with asyncio.timeout(10):
        while True:  # the outgoing connection comes up asynchronously
            try:
                result = await one.call(2, "keepalive", 5, timeout=5)
                break
            except ConnectionError:
                await asyncio.sleep(0.05)
    assert result == 7.0


def test_snapshot_assembler_rejects_bad_checksum() -> None:
    snapshot = Snapshot(meta=SnapshotMeta(index=3, term=1), data=b"x" * 10)
    meta, _chunk = frames.encode_snapshot(Message(type=MessageType.SNAP, to=2, frm=1, snapshot=snapshot))
    _, meta_payload = frames.decode_body(meta[4:])
    assembler = frames.SnapshotAssembler(meta_payload)
    assert assembler.add(b"y" * 10)
    with pytest.raises(frames.FrameError):
        assembler.result()


def test_oversized_and_malformed_frames_are_errors() -> None:
    with pytest.raises(frames.FrameError):
        frames.frame_length((frames.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(frames.FrameError):
        frames.decode_body(b"\xc1garbage")
    with pytest.raises(frames.FrameError):
        frames.decode_hello([1, 2])


Pair = tuple[PeerTransport, PeerTransport, Inbox, Inbox]


async def test_wrong_cluster_hello_is_refused(pair: Pair) -> None:
    _one, two, _box1, box2 = pair
    reader, writer = await asyncio.open_connection(*two.listen)
    writer.write(frames.encode_hello(frames.Hello(protocol=1, cluster_id=12345, frm=1, to=2)))
    writer.write(frames.encode_messages([Message(type=MessageType.HEARTBEAT, to=2, frm=1, term=9)]))
    await writer.drain()
    async with asyncio.timeout(10):
        assert await reader.read() == b""  # the listener closed the connection
    writer.close()
    assert all(m.term != 9 for m in box2.messages)


async def test_a_peer_that_stops_reading_is_redialled(monkeypatch: pytest.MonkeyPatch) -> None:
    # The peer accepts and then never reads: TCP reports nothing, so only the write timeout can
    # tell the connection is dead (seen behind the fault suite's proxy, which left a node deaf).
    monkeypatch.setattr("raftkv.transport.peer.WRITE_TIMEOUT", 0.3)
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _r, w: accepted.append(w), "127.0.0.1", 0)
    port = int(silent.sockets[0].getsockname()[1])
    box = Inbox()
    sender = PeerTransport(
        node_id=1,
        cluster_id=99,
        listen=("127.0.0.1", free_port()),
        peers={2: ("127.0.0.1", port)},
        on_messages=box.on_messages,
        on_unreachable=box.unreachable.append,
        on_snapshot_status=lambda _peer, _ok: None,
    )
    await sender.start()
    try:
        big = Message(type=MessageType.HEARTBEAT, to=2, frm=1, term=1, context=b"x" * (1 << 20))
        async with asyncio.timeout(20):
            while len(accepted) < 2:
                sender.send([big])
                await asyncio.sleep(0.02)
        assert 2 in box.unreachable
    finally:
        await sender.stop()
        for w in accepted:
            w.close()
        silent.close()


def test_a_connection_closed_by_the_peer_is_redialled_under_uvloop() -> None:
    # uvloop raises RuntimeError on a write to a closed transport (asyncio ignores it); once that
    # killed the sender task and the peer never heard from this node again.
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> int:
        accepted = 0

        async def reset_after_hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.read(1)
            # A reset, not a clean close: the sender's transport closes before its next write.
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server = await asyncio.start_server(reset_after_hello, "127.0.0.1", 0)
        port = int(server.sockets[0].getsockname()[1])
        sender = PeerTransport(
            node_id=1,
            cluster_id=99,
            listen=("127.0.0.1", free_port()),
            peers={2: ("127.0.0.1", port)},
            on_messages=lambda _messages: None,
            on_unreachable=lambda _peer: None,
            on_snapshot_status=lambda _peer, _ok: None,
        )
        await sender.start()
        try:
            async with asyncio.timeout(20):
                while accepted < 3:
                    sender.send([Message(type=MessageType.HEARTBEAT, to=2, frm=1, term=1)])
                    await asyncio.sleep(0.01)
        finally:
            await sender.stop()
            server.close()
        return accepted

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) >= 3


async def test_closing_a_connection_whose_peer_stopped_reading_gives_up_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A timed-out flush must not cancel the connection's shared "closed" future, or the abort
    # that follows raises CancelledError (a snapshot sender then never reported its outcome).
    monkeypatch.setattr("raftkv.transport.peer.WRITE_TIMEOUT", 0.3)
    held: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)
    _reader, writer = await asyncio.open_connection(*silent.sockets[0].getsockname()[:2])
    writer.write(b"x" * (64 << 20))
    try:
        assert await peer_module._close(writer, flush=True) is False
        assert await peer_module._close(writer, flush=False) is False
    finally:
        for w in held:
            w.close()
        silent.close()
