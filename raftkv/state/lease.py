"""The replicated lease table: lease id -> granted TTL and the keys attached to it.

Owns: ``LeaseTable``, the part of lease state every replica holds identically (it is in snapshots
and in the state hash). Deadlines are not here: they are leader-local (``ExpiryTracker``), because
time is not replicated.

Must not: read a clock, delete keys itself (the state machine deletes a revoked lease's keys through
the KV store first), or expose iteration in hash order: every listing is sorted, so callers that act
on it (revoke deletes keys in that order) stay deterministic across processes.

Invariants: a key is attached to at most one lease; every attached key was put with that lease and
not since overwritten or deleted (the state machine keeps this by attaching and detaching from the
events of each write).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from raftkv import errors


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A read-only view of one lease; ``keys`` is sorted."""

    id: int
    ttl: int
    keys: tuple[bytes, ...]


class _Lease:
    __slots__ = ("keys", "ttl")

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.keys: set[bytes] = set()


class LeaseTable:
    """Leases by id. All methods are O(1) except those that list keys or ids (which sort)."""

    __slots__ = ("_leases",)

    def __init__(self) -> None:
        self._leases: dict[int, _Lease] = {}

    def __contains__(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def __len__(self) -> int:
        return len(self._leases)

    def grant(self, lease_id: int, ttl: int) -> None:
        """Create a lease. Raises ``LeaseNotFound`` for id 0 (etcd's NoLease) and ``LeaseExists``."""
        if lease_id == 0:
            raise errors.LeaseNotFound()
        if lease_id in self._leases:
            raise errors.LeaseExists()
        self._leases[lease_id] = _Lease(ttl)

    def revoke(self, lease_id: int) -> None:
        """Forget a lease (its keys must already be deleted). Raises ``LeaseNotFound``."""
        if self._leases.pop(lease_id, None) is None:
            raise errors.LeaseNotFound()

    def attach(self, lease_id: int, key: bytes) -> None:
        """Record ``key`` as held by ``lease_id``. Raises ``LeaseNotFound``."""
        lease = self._leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFound()
        lease.keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        """Drop ``key`` from ``lease_id`` if both exist; a no-op otherwise (the lease may be gone)."""
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    def lookup(self, lease_id: int) -> LeaseInfo | None:
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        return LeaseInfo(lease_id, lease.ttl, tuple(sorted(lease.keys)))

    def ttl(self, lease_id: int) -> int | None:
        """The granted TTL, without copying the key set (keepalive's hot path)."""
        lease = self._leases.get(lease_id)
        return None if lease is None else lease.ttl

    def keys(self, lease_id: int) -> tuple[bytes, ...]:
        """The attached keys in sorted order; empty for an unknown lease."""
        lease = self._leases.get(lease_id)
        return () if lease is None else tuple(sorted(lease.keys))

    def ids(self) -> builtins.list[int]:
        """All lease ids, sorted."""
        return sorted(self._leases)

    def list(self) -> builtins.list[LeaseInfo]:
        """Every lease, sorted by id (the canonical order used by snapshots and the state hash)."""
        return [
            LeaseInfo(i, self._leases[i].ttl, tuple(sorted(self._leases[i].keys)))
            for i in sorted(self._leases)
        ]


class ExpiryTracker:
    """Lease deadlines, kept by the leader only (not replicated; ARCHITECTURE.md §4.5).

    Time is the caller's monotonic ``now`` (seconds). On promotion every known lease gets a full
    TTL, so no lease expires early because leadership moved; ``demote`` forgets everything.
    """

    def __init__(self) -> None:
        self._deadlines: dict[int, float] = {}
        self._ttls: dict[int, int] = {}
        self.active = False

    def promote(self, now: float, leases: dict[int, int]) -> None:
        self.active = True
        self._ttls = dict(leases)
        self._deadlines = {lease_id: now + ttl for lease_id, ttl in leases.items()}

    def demote(self) -> None:
        self.active = False
        self._deadlines.clear()
        self._ttls.clear()

    def granted(self, lease_id: int, ttl: int, now: float) -> None:
        if self.active:
            self._ttls[lease_id] = ttl
            self._deadlines[lease_id] = now + ttl

    def forget(self, lease_id: int) -> None:
        self._deadlines.pop(lease_id, None)
        self._ttls.pop(lease_id, None)

    def refresh(self, lease_id: int, now: float) -> int | None:
        """Reset a live lease to a full TTL; None for an unknown lease or one already past its
        deadline (its revoke may be in flight, so it must not be revived)."""
        deadline = self._deadlines.get(lease_id)
        if deadline is None or deadline <= now:
            return None
        ttl = self._ttls[lease_id]
        self._deadlines[lease_id] = now + ttl
        return ttl

    def remaining(self, lease_id: int, now: float) -> float | None:
        deadline = self._deadlines.get(lease_id)
        return None if deadline is None else max(0.0, deadline - now)

    def expired(self, now: float, limit: int) -> list[int]:
        """Up to ``limit`` leases past their deadline, earliest first."""
        due = sorted((d, lease_id) for lease_id, d in self._deadlines.items() if d <= now)
        return [lease_id for _, lease_id in due[:limit]]
