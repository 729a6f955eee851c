"""Peer framing (pure): length-prefixed msgpack frames between raftkv nodes.

Owns: the byte layout of the peer protocol (ARCHITECTURE.md §4.8): every frame is
``u32 big-endian length | msgpack body`` with a body of at most ``MAX_FRAME_BYTES``; the body is
``[kind, payload]``. Kinds: ``HELLO`` (the dialler's first frame), ``MESSAGES`` (a batch of Raft
messages), ``LEASE_CALL`` / ``LEASE_REPLY`` (forwarded lease calls, matched by call id), and on a
snapshot connection ``SNAP_META`` (the ``MsgSnap`` without its data, the data's length and CRC32)
followed by ``SNAP_CHUNK`` frames of at most ``SNAPSHOT_CHUNK`` bytes.

Invariants: decoding never raises anything but ``FrameError``; a frame over the limit or with an
unknown kind is an error (the connection is closed); identity comes from ``Hello``, never from
addresses.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, replace
from typing import Any

from raftkv.raft.types import Message
from raftkv.raft.wire import message_from_obj, message_to_obj, pack, unpack

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 << 20
HEADER = struct.Struct(">I")


class FrameError(Exception):
    """A malformed or oversized frame: the connection must be closed."""


class FrameKind(enum.IntEnum):
    HELLO = 1
    MESSAGES = 2
    LEASE_CALL = 3
    LEASE_REPLY = 4
    SNAP_META = 5
    SNAP_CHUNK = 6


class Purpose(enum.IntEnum):
    RAFT = 1
    SNAPSHOT = 2


SNAPSHOT_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Hello:
    protocol: int
    cluster_id: int
    frm: int
    to: int
    purpose: Purpose = Purpose.RAFT


def encode_frame(kind: FrameKind, payload: Any) -> bytes:
    body = pack([int(kind), payload])
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(body)) + body


def encode_hello(hello: Hello) -> bytes:
    return encode_frame(
        FrameKind.HELLO, [hello.protocol, hello.cluster_id, hello.frm, hello.to, int(hello.purpose)]
    )


def encode_messages(messages: list[Message]) -> bytes:
    return encode_frame(FrameKind.MESSAGES, [message_to_obj(m) for m in messages])


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")
    return int(length)


def decode_body(body: bytes) -> tuple[FrameKind, Any]:
    try:
        kind, payload = unpack(body)
        return FrameKind(kind), payload
    except (ValueError, TypeError) as exc:
        raise FrameError(f"bad frame: {exc}") from exc


def decode_hello(payload: Any) -> Hello:
    try:
        protocol, cluster_id, frm, to, purpose = payload
        return Hello(protocol=protocol, cluster_id=cluster_id, frm=frm, to=to, purpose=Purpose(purpose))
    except (ValueError, TypeError) as exc:
        raise FrameError(f"bad hello: {exc}") from exc


def encode_lease_call(call_id: int, kind: str, lease_id: int) -> bytes:
    return encode_frame(FrameKind.LEASE_CALL, [call_id, kind, lease_id])


def encode_lease_reply(call_id: int, result: Any) -> bytes:
    return encode_frame(FrameKind.LEASE_REPLY, [call_id, result])


def decode_lease_call(payload: Any) -> tuple[int, str, int]:
    try:
        call_id, kind, lease_id = payload
        return int(call_id), str(kind), int(lease_id)
    except (ValueError, TypeError) as exc:
        raise FrameError(f"bad lease call: {exc}") from exc


def decode_lease_reply(payload: Any) -> tuple[int, Any]:
    try:
        call_id, result = payload
        return int(call_id), result
    except (ValueError, TypeError) as exc:
        raise FrameError(f"bad lease reply: {exc}") from exc


def encode_snapshot(message: Message) -> list[bytes]:
    """A ``MsgSnap`` as frames: its metadata, then its data in chunks (never one huge frame)."""
    if message.snapshot is None:
        raise FrameError("a snapshot message without a snapshot")
    data = message.snapshot.data
    bare = replace(message, snapshot=replace(message.snapshot, data=b""))
    frames = [encode_frame(FrameKind.SNAP_META, [message_to_obj(bare), len(data), zlib.crc32(data)])]
    for offset in range(0, len(data), SNAPSHOT_CHUNK):
        frames.append(encode_frame(FrameKind.SNAP_CHUNK, data[offset : offset + SNAPSHOT_CHUNK]))
    return frames


class SnapshotAssembler:
    """Rebuilds a ``MsgSnap`` from its frames; ``FrameError`` on a length or checksum mismatch."""

    def __init__(self, meta_payload: Any) -> None:
        try:
            obj, length, crc = meta_payload
            self.length = int(length)
            self.crc = int(crc)
            self.message = message_from_obj(obj)
        except (ValueError, TypeError) as exc:
            raise FrameError(f"bad snapshot metadata: {exc}") from exc
        if self.message.snapshot is None:
            raise FrameError("snapshot metadata without a snapshot")
        self._parts: list[bytes] = []
        self._received = 0

    def add(self, chunk: Any) -> bool:
        """Add one chunk; True once the whole snapshot arrived."""
        if not isinstance(chunk, bytes) or self._received + len(chunk) > self.length:
            raise FrameError("snapshot chunk beyond the announced length")
        self._parts.append(chunk)
        self._received += len(chunk)
        return self._received == self.length

    def done(self) -> bool:
        return self._received == self.length

    def result(self) -> Message:
        data = b"".join(self._parts)
        if zlib.crc32(data) != self.crc:
            raise FrameError("snapshot checksum mismatch")
        snapshot = self.message.snapshot
        if snapshot is None:  # checked in __init__; kept for the type checker
            raise FrameError("snapshot metadata without a snapshot")
        return replace(self.message, snapshot=replace(snapshot, data=data))


def decode_messages(payload: Any) -> list[Message]:
    try:
        return [message_from_obj(o) for o in payload]
    except (ValueError, TypeError) as exc:
        raise FrameError(f"bad message batch: {exc}") from exc
