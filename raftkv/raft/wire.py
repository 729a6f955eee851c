"""Versioned msgpack encoding of the Raft types, shared by the WAL, snapshots and the transport.

Owns: the byte layout of ``Entry``, ``HardState``, ``ConfState``, ``SnapshotMeta``, ``Snapshot``
and ``Message``. Each value is a msgpack array (compact and positional); a message carries
``WIRE_VERSION`` first so a peer running another format is refused instead of misread.

Invariants: ``decode_x(encode_x(v)) == v`` for every value; decoding malformed bytes raises
``ValueError`` (never another exception type), so callers can treat it as a bad frame or record.
"""

from __future__ import annotations

from typing import Any

import msgpack

from raftkv.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

WIRE_VERSION = 1


def entry_to_obj(e: Entry) -> list[Any]:
    return [e.term, e.index, int(e.type), e.data]


def _malformed(what: str, exc: Exception) -> ValueError:
    return ValueError(f"malformed {what}: {exc}")


def entry_from_obj(o: Any) -> Entry:
    try:
        term, index, kind, data = o
        return Entry(term=term, index=index, type=EntryType(kind), data=data)
    except (TypeError, ValueError) as exc:
        raise _malformed("entry", exc) from exc


def conf_state_to_obj(cs: ConfState) -> list[Any]:
    return [list(cs.voters), list(cs.learners)]


def conf_state_from_obj(o: Any) -> ConfState:
    try:
        voters, learners = o
        return ConfState(voters=tuple(voters), learners=tuple(learners))
    except (TypeError, ValueError) as exc:
        raise _malformed("conf state", exc) from exc


def snapshot_meta_to_obj(m: SnapshotMeta) -> list[Any]:
    return [m.index, m.term, conf_state_to_obj(m.conf_state)]


def snapshot_meta_from_obj(o: Any) -> SnapshotMeta:
    try:
        index, term, cs = o
        return SnapshotMeta(index=index, term=term, conf_state=conf_state_from_obj(cs))
    except (TypeError, ValueError) as exc:
        raise _malformed("snapshot meta", exc) from exc


def hard_state_to_obj(hs: HardState) -> list[int]:
    return [hs.term, hs.vote, hs.commit]


def hard_state_from_obj(o: Any) -> HardState:
    try:
        term, vote, commit = o
        return HardState(term=term, vote=vote, commit=commit)
    except (TypeError, ValueError) as exc:
        raise _malformed("hard state", exc) from exc


def message_to_obj(m: Message) -> list[Any]:
    snap = None
    if m.snapshot is not None:
        snap = [snapshot_meta_to_obj(m.snapshot.meta), m.snapshot.data]
    return [
        WIRE_VERSION,
        int(m.type),
        m.to,
        m.frm,
        m.term,
        m.log_term,
        m.index,
        [entry_to_obj(e) for e in m.entries],
        m.commit,
        snap,
        m.reject,
        m.reject_hint,
        m.context,
    ]


def message_from_obj(o: Any) -> Message:
    try:
        (version, kind, to, frm, term, log_term, index, ents, commit, snap, reject, hint, ctx) = o
        if version != WIRE_VERSION:
            raise ValueError(f"unsupported wire version {version}")
        snapshot = None
        if snap is not None:
            snapshot = Snapshot(meta=snapshot_meta_from_obj(snap[0]), data=snap[1])
        return Message(
            type=MessageType(kind),
            to=to,
            frm=frm,
            term=term,
            log_term=log_term,
            index=index,
            entries=tuple(entry_from_obj(e) for e in ents),
            commit=commit,
            snapshot=snapshot,
            reject=bool(reject),
            reject_hint=hint,
            context=ctx,
        )
    except ValueError:
        raise
    except (TypeError, KeyError, IndexError) as exc:
        raise ValueError(f"malformed message: {exc}") from exc


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"undecodable msgpack: {exc}") from exc


def encode_message(m: Message) -> bytes:
    return pack(message_to_obj(m))


def decode_message(data: bytes) -> Message:
    return message_from_obj(unpack(data))


def encode_conf_change(change: ConfChange) -> bytes:
    return pack([WIRE_VERSION, int(change.type), change.node_id, change.context])


def decode_conf_change(data: bytes) -> ConfChange:
    try:
        version, kind, node_id, context = unpack(data)
        if version != WIRE_VERSION:
            raise ValueError(f"unsupported wire version {version}")
        return ConfChange(type=ConfChangeType(kind), node_id=node_id, context=context)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed conf change: {exc}") from exc
