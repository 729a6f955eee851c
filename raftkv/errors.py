"""The exception hierarchy and the one error table of raftkv.

Owns: every error a client can see (``ErrorCode`` with its gRPC code, HTTP status, etcd message and
outcome), and the internal errors that never reach a client as such (``ProposalDropped``,
``StorageCorrupt``, ``InvariantViolation``, the log-storage errors).

Invariants: the table below is the only place an error's status, message or outcome is written;
the API layer renders it and the client maps messages back to the same classes. "Not applied"
means the operation did not and will not take effect, so only those are safe to retry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """Whether an operation that failed may still take effect."""

    NOT_APPLIED = "not_applied"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    grpc_code: int
    http_status: int
    message: str
    outcome: Outcome


class ErrorCode(enum.Enum):
    """Client-visible error kinds, with etcd's rendering (ARCHITECTURE.md §4.10)."""

    INVALID_ARGUMENT = ErrorSpec(3, 400, "etcdserver: invalid argument", Outcome.NOT_APPLIED)
    REQUEST_TOO_LARGE = ErrorSpec(3, 400, "etcdserver: request is too large", Outcome.NOT_APPLIED)
    COMPACTED = ErrorSpec(
        11, 400, "etcdserver: mvcc: required revision has been compacted", Outcome.NOT_APPLIED
    )
    FUTURE_REVISION = ErrorSpec(
        11, 400, "etcdserver: mvcc: required revision is a future revision", Outcome.NOT_APPLIED
    )
    LEASE_TTL_TOO_LARGE = ErrorSpec(11, 400, "etcdserver: too large lease TTL", Outcome.NOT_APPLIED)
    LEASE_NOT_FOUND = ErrorSpec(5, 404, "etcdserver: requested lease not found", Outcome.NOT_APPLIED)
    MEMBER_NOT_FOUND = ErrorSpec(5, 404, "etcdserver: member not found", Outcome.NOT_APPLIED)
    LEASE_EXISTS = ErrorSpec(9, 400, "etcdserver: lease already exists", Outcome.NOT_APPLIED)
    NOT_LEADER = ErrorSpec(9, 400, "etcdserver: not leader", Outcome.NOT_APPLIED)
    NO_SPACE = ErrorSpec(8, 429, "etcdserver: mvcc: database space exceeded", Outcome.NOT_APPLIED)
    TOO_MANY_REQUESTS = ErrorSpec(8, 429, "etcdserver: too many requests", Outcome.NOT_APPLIED)
    MESSAGE_TOO_LARGE = ErrorSpec(8, 429, "grpc: received message larger than max", Outcome.NOT_APPLIED)
    NO_LEADER = ErrorSpec(14, 503, "etcdserver: no leader", Outcome.NOT_APPLIED)
    LEARNER_UNSUPPORTED = ErrorSpec(
        14, 503, "etcdserver: rpc not supported for learner", Outcome.NOT_APPLIED
    )
    LEADER_CHANGED = ErrorSpec(14, 503, "etcdserver: leader changed", Outcome.NOT_APPLIED)
    TIMEOUT = ErrorSpec(14, 503, "etcdserver: request timed out", Outcome.UNKNOWN)
    STOPPED = ErrorSpec(14, 503, "etcdserver: server stopped", Outcome.UNKNOWN)
    CORRUPT = ErrorSpec(15, 500, "etcdserver: corrupt cluster", Outcome.NOT_APPLIED)
    UNIMPLEMENTED = ErrorSpec(12, 501, "unimplemented", Outcome.NOT_APPLIED)
    INTERNAL = ErrorSpec(13, 500, "etcdserver: internal error", Outcome.UNKNOWN)

    @property
    def spec(self) -> ErrorSpec:
        return self.value


class RaftkvError(Exception):
    """A client-visible error. ``message`` overrides the table's text where etcd varies it."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str | None = None, *, code: ErrorCode | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message if message is not None else self.code.spec.message
        super().__init__(self.message)

    @property
    def outcome(self) -> Outcome:
        return self.code.spec.outcome

    @property
    def retryable(self) -> bool:
        """True only when the operation certainly did not take effect."""
        return self.outcome is Outcome.NOT_APPLIED


def _error_class(name: str, code: ErrorCode) -> type[RaftkvError]:
    return type(name, (RaftkvError,), {"code": code, "__doc__": code.spec.message})


InvalidArgument = _error_class("InvalidArgument", ErrorCode.INVALID_ARGUMENT)
RequestTooLarge = _error_class("RequestTooLarge", ErrorCode.REQUEST_TOO_LARGE)
Compacted = _error_class("Compacted", ErrorCode.COMPACTED)
FutureRevision = _error_class("FutureRevision", ErrorCode.FUTURE_REVISION)
LeaseTTLTooLarge = _error_class("LeaseTTLTooLarge", ErrorCode.LEASE_TTL_TOO_LARGE)
LeaseNotFound = _error_class("LeaseNotFound", ErrorCode.LEASE_NOT_FOUND)
MemberNotFound = _error_class("MemberNotFound", ErrorCode.MEMBER_NOT_FOUND)
LeaseExists = _error_class("LeaseExists", ErrorCode.LEASE_EXISTS)
NotLeader = _error_class("NotLeader", ErrorCode.NOT_LEADER)
NoSpace = _error_class("NoSpace", ErrorCode.NO_SPACE)
TooManyRequests = _error_class("TooManyRequests", ErrorCode.TOO_MANY_REQUESTS)
MessageTooLarge = _error_class("MessageTooLarge", ErrorCode.MESSAGE_TOO_LARGE)
NoLeader = _error_class("NoLeader", ErrorCode.NO_LEADER)
LearnerUnsupported = _error_class("LearnerUnsupported", ErrorCode.LEARNER_UNSUPPORTED)
LeaderChanged = _error_class("LeaderChanged", ErrorCode.LEADER_CHANGED)
Timeout = _error_class("Timeout", ErrorCode.TIMEOUT)
Stopped = _error_class("Stopped", ErrorCode.STOPPED)
Corrupt = _error_class("Corrupt", ErrorCode.CORRUPT)
Unimplemented = _error_class("Unimplemented", ErrorCode.UNIMPLEMENTED)
Internal = _error_class("Internal", ErrorCode.INTERNAL)


# Internal errors: raised inside a node, never rendered to a client as such.


class ProposalDropped(Exception):
    """The Raft core refused a proposal (no leader, transfer in progress, too much uncommitted)."""


class LogCompacted(Exception):
    """The requested log index is at or below the storage's compaction point."""


class LogUnavailable(Exception):
    """The requested log index is above the storage's last index."""


class SnapshotTemporarilyUnavailable(Exception):
    """The storage cannot produce a snapshot right now; the caller retries later."""


class StorageCorrupt(Exception):
    """The data directory cannot be trusted; names the file and offset. Stops startup."""

    def __init__(self, path: str, offset: int | None, reason: str) -> None:
        where = path if offset is None else f"{path} at offset {offset}"
        super().__init__(f"corrupt data: {where}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class StorageFailed(Exception):
    """A write or fsync failed; the node must stop without acknowledging anything after it."""


class InvariantViolation(Exception):
    """A safety invariant broke; the node stops rather than serve possibly wrong data."""
