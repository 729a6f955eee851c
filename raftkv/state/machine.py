"""The replicated state machine: committed entry data in, responses and watch events out.

Owns: ``StateMachine`` (the KV store, the lease table, the dedup table and the applied index) and
``ApplyResult``; the snapshot byte format of the state machine and ``state_hash``.

Must not: do I/O, read a clock, use randomness, or iterate anything in hash order when the result
can influence state, a snapshot or the hash: every replica applying the same entries must reach the
same state, byte for byte in ``snapshot()``.

Invariants:
- ``applied_index`` only grows; an entry at or below it is refused with ``InvariantViolation``
  (conf-change entries go to Raft, not here, so indexes may skip).
- A command either applies completely or not at all: any ``RaftkvError`` leaves the KV store and
  the lease table unchanged and is returned in ``ApplyResult.error``.
- Dedup: per (member_id, nonce) the highest applied counter; an entry whose counter is not higher
  is skipped (``duplicate=True``), unless ``unsafe_no_dedup`` (a test-only canary).
- Every key attached to a lease is live and carries that lease: attach and detach follow the
  events of each write, and a revoke deletes the lease's keys (one revision) before the lease.
- ``snapshot()`` is a canonical encoding (sorted keys, sorted leases, sorted dedup table), so equal
  states give equal bytes and ``state_hash`` is stable across processes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack

from raftkv import errors
from raftkv.errors import RaftkvError
from raftkv.state.commands import (
    Command,
    Compact,
    DeleteRange,
    Event,
    EventType,
    LeaseGrant,
    LeaseGrantResponse,
    LeaseRevokeResponse,
    Put,
    Range,
    RangeResponse,
    RequestId,
    Txn,
    TxnResponse,
    decode_command,
    is_read_only,
)
from raftkv.state.lease import LeaseTable
from raftkv.state.mvcc import KVStore

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ApplyResult:
    request_id: RequestId | None  # None for entries that carry no command (empty no-op data)
    response: object | None
    error: RaftkvError | None
    events: tuple[Event, ...]
    duplicate: bool = False


class StateMachine:
    """Applies committed entries deterministically; see the module docstring for the contract."""

    def __init__(self, *, unsafe_no_dedup: bool = False, unsafe_stale_revoke: bool = False) -> None:
        self.unsafe_no_dedup = unsafe_no_dedup
        # Canary: apply expiry revokes whatever leader term decided them.
        self.unsafe_stale_revoke = unsafe_stale_revoke
        self.applied_index = 0
        self.kv = KVStore()
        self.leases = LeaseTable()
        self._dedup: dict[tuple[int, int], int] = {}
        # A local statistic, not replicated state: not in snapshots or the hash.
        self.stale_revokes_ignored = 0

    # -- apply ----------------------------------------------------------------------------------

    def apply(self, index: int, term: int, data: bytes) -> ApplyResult:
        """Apply the entry at ``index`` of ``term``. Raises ``InvariantViolation`` if ``index`` is
        not above ``applied_index``; every other problem is reported in the result."""
        if index <= self.applied_index:
            raise errors.InvariantViolation(f"apply of index {index} at applied index {self.applied_index}")
        self.applied_index = index
        if not data:
            return ApplyResult(None, None, None, ())
        try:
            rid, cmd = decode_command(data)
        except ValueError as e:
            # Every replica sees the same bytes, so skipping is deterministic; halting all of them
            # on a committed entry would make the cluster unrecoverable.
            return ApplyResult(None, None, errors.Internal(f"etcdserver: undecodable entry: {e}"), ())
        if not self.unsafe_no_dedup:
            client = (rid.member_id, rid.nonce)
            last = self._dedup.get(client)
            if last is not None and rid.counter <= last:
                return ApplyResult(rid, None, None, (), duplicate=True)
            self._dedup[client] = rid.counter
        try:
            response, events = self._execute(cmd, term)
        except RaftkvError as e:
            return ApplyResult(rid, None, e, ())
        return ApplyResult(rid, response, None, events)

    def _lease_alive(self, lease_id: int) -> bool:
        return lease_id in self.leases

    def _track_leases(self, events: tuple[Event, ...]) -> None:
        leases = self.leases
        for ev in events:
            key = ev.kv.key
            if ev.prev_kv is not None and ev.prev_kv.lease:
                leases.detach(ev.prev_kv.lease, key)
            if ev.type == EventType.PUT and ev.kv.lease:
                leases.attach(ev.kv.lease, key)

    def _execute(self, cmd: Command, term: int) -> tuple[object, tuple[Event, ...]]:
        kv = self.kv
        response: object
        events: tuple[Event, ...] = ()
        if isinstance(cmd, Put):
            response, events = kv.put(cmd, self._lease_alive)
        elif isinstance(cmd, DeleteRange):
            response, events = kv.delete_range(cmd)
        elif isinstance(cmd, Txn):
            response, events = kv.txn(cmd, self._lease_alive)
        elif isinstance(cmd, Range):
            response = kv.range(cmd)
        elif isinstance(cmd, Compact):
            response = kv.compact(cmd.revision)
        elif isinstance(cmd, LeaseGrant):
            self.leases.grant(cmd.id, cmd.ttl)
            response = LeaseGrantResponse(kv.revision, cmd.id, cmd.ttl)
        else:
            if cmd.leader_term and cmd.leader_term != term and not self.unsafe_stale_revoke:
                # An expiry decided by a leader of another term (e.g. a deposed leader's revoke
                # forwarded to its successor): that leader's deadlines no longer count.
                self.stale_revokes_ignored += 1
                return LeaseRevokeResponse(kv.revision), ()
            if cmd.id not in self.leases:
                raise errors.LeaseNotFound()
            _, events = kv.delete_keys(self.leases.keys(cmd.id))
            self.leases.revoke(cmd.id)
            response = LeaseRevokeResponse(kv.revision)
            return response, events
        self._track_leases(events)
        return response, events

    def read(self, request: Range | Txn) -> RangeResponse | TxnResponse:
        """Serve a read-only request from the current state. Raises RaftkvError (as Range does),
        and InvalidArgument for a txn that contains a write (those must go through Raft)."""
        if isinstance(request, Range):
            return self.kv.range(request)
        if not is_read_only(request):
            raise errors.InvalidArgument("etcdserver: txn with writes cannot be served as a read")
        response, _ = self.kv.txn(request)
        return response

    # -- snapshots ------------------------------------------------------------------------------

    def _to_obj(self) -> list[Any]:
        return [
            SNAPSHOT_FORMAT,
            self.applied_index,
            self.kv.to_obj(),
            [[info.id, info.ttl, list(info.keys)] for info in self.leases.list()],
            [[m, n, c] for (m, n), c in sorted(self._dedup.items())],
        ]

    def snapshot(self) -> bytes:
        """The whole replicated state as canonical msgpack bytes."""
        return msgpack.packb(self._to_obj(), use_bin_type=True)

    def restore(self, data: bytes) -> None:
        """Replace all replicated state with ``data`` from ``snapshot()``. Raises ValueError on
        malformed data, leaving the current state untouched."""
        try:
            obj = msgpack.unpackb(data, use_list=False, raw=False)
            fmt, applied, kv_obj, lease_objs, dedup_objs = obj
            if fmt != SNAPSHOT_FORMAT:
                raise ValueError(f"unknown snapshot format {fmt!r}")
            kv = KVStore.from_obj(kv_obj)
            leases = LeaseTable()
            for lease_id, ttl, keys in lease_objs:
                leases.grant(int(lease_id), int(ttl))
                for key in keys:
                    leases.attach(lease_id, key)
            dedup = {(int(m), int(n)): int(c) for m, n, c in dedup_objs}
            applied_index = int(applied)
        except Exception as e:  # msgpack and the field checks raise assorted types for bad data
            raise ValueError(f"malformed state machine snapshot: {e}") from e
        self.applied_index = applied_index
        self.kv = kv
        self.leases = leases
        self._dedup = dedup

    def state_hash(self) -> int:
        """A 64-bit digest of the canonical snapshot; equal across processes iff states are equal
        (up to hash collisions)."""
        return int.from_bytes(hashlib.blake2b(self.snapshot(), digest_size=8).digest(), "big")

    @staticmethod
    def empty_snapshot() -> bytes:
        """The snapshot of a fresh machine (the bootstrap snapshot's state)."""
        return StateMachine().snapshot()
