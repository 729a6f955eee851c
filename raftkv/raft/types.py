"""Frozen value types of the Raft core, in etcd-io/raft's vocabulary.

Owns: ``Entry``, ``EntryType``, ``Message``, ``MessageType``, ``HardState``, ``SoftState``,
``StateRole``, ``ConfState``, ``ConfChange``, ``ConfChangeType``, ``SnapshotMeta``, ``Snapshot``,
``ReadState``. Each ``__str__`` is one canonical line, used in logs and golden files.

Invariants: values are immutable (frozen, slotted dataclasses; tuples, never lists); node ids are
non-zero; ``NONE`` (0) means "no node". This module imports nothing from raftkv.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0
"""The node id meaning "nobody" (no leader, no vote)."""


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def __str__(self) -> str:
        kind = "" if self.type is EntryType.NORMAL else " conf"
        return f"{self.term}/{self.index}{kind} {self.data[:24]!r}"

    def size(self) -> int:
        """Payload size used for message and uncommitted-size limits."""
        return len(self.data) + 16


class MessageType(enum.IntEnum):
    HUP = 0  # local: start an election
    BEAT = 1  # local: the leader should heartbeat
    PROP = 2  # a proposal (local, or forwarded by a follower)
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10  # local
    SNAP_STATUS = 11  # local
    CHECK_QUORUM = 12  # local
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


LOCAL_MESSAGE_TYPES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)
"""Types a node generates for itself; ``RawNode.step`` refuses them from the network."""

class StateRole(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a node answers: term, vote and commit index."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def __str__(self) -> str:
        return f"HardState term={self.term} vote={self.vote} commit={self.commit}"

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == NONE and self.commit == 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the application may want to know: the leader and this node's role."""

    lead: int = NONE
    role: StateRole = StateRole.FOLLOWER

    def __str__(self) -> str:
        return f"SoftState lead={self.lead} role={self.role.name}"


@dataclass(frozen=True, slots=True)
class ConfState:
    """Cluster membership: voting members and non-voting learners (sorted tuples of ids)."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"ConfState voters={list(self.voters)} learners={list(self.learners)}"

    def __post_init__(self) -> None:
        if set(self.voters) & set(self.learners):
            raise ValueError(f"a node is both voter and learner: {self}")


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    ADD_LEARNER = 2


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A single-server membership change, carried as a CONF_CHANGE entry."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def __str__(self) -> str:
        return f"ConfChange {self.type.name} {self.node_id}"


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)

    def __str__(self) -> str:
        return f"SnapshotMeta index={self.index} term={self.term} {self.conf_state}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine snapshot at ``meta.index``; ``data`` is opaque to Raft."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""

    def __str__(self) -> str:
        return f"Snapshot index={self.meta.index} term={self.meta.term} bytes={len(self.data)}"

    def is_empty(self) -> bool:
        return self.meta.index == 0


EMPTY_SNAPSHOT = Snapshot()


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: reads tagged ``request_ctx`` may be served once applied ≥ ``index``."""

    index: int
    request_ctx: bytes

    def __str__(self) -> str:
        return f"ReadState index={self.index} ctx={self.request_ctx!r}"


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int = NONE
    frm: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""

    def __str__(self) -> str:
        parts = [f"{self.frm}->{self.to} {self.type.name} term={self.term}"]
        if self.log_term or self.index:
            parts.append(f"log={self.log_term}/{self.index}")
        if self.commit:
            parts.append(f"commit={self.commit}")
        if self.reject:
            parts.append(f"rejected(hint={self.reject_hint})")
        if self.entries:
            parts.append("entries=[" + ", ".join(str(e) for e in self.entries) + "]")
        if self.snapshot is not None:
            parts.append(str(self.snapshot))
        if self.context:
            parts.append(f"ctx={self.context!r}")
        return " ".join(parts)
