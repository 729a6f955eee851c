"""A distributed mutex with etcd's semantics (``concurrency.Mutex``) and a fencing token.

Owns: the key layout (``<name>/<lease id hex>``, one key per session and lock, attached to the
session's lease), the queue order (create revision), waiting, release and the fencing compare.

Must not: poll, or wake every waiter on a release: each waiter watches only the deletion of the key
just before its own in the queue (no thundering herd).

Invariants (TESTING.md §3 row 18):
* The holder is the key with the lowest create revision under the prefix; ``revision`` (the
  fencing token) is the create revision of the holder's key, so tokens increase in the order the
  lock was granted.
* After waiting, ``acquire`` re-checks that its own key still exists (etcd#11456): if the session's
  lease died meanwhile, the key is gone and the lock is *not* held (``LockLost``).
* A holder whose lease dies loses the lock without being told in time; resources it guards must
  check ``guard()`` (create revision of the key == token) in the same txn as their writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self

from raftkv import errors
from raftkv.client import Client, Cmp, Compare, Op, SortOrder, SortTarget, TxnResponse, to_bytes
from raftkv.recipes.session import Session, repeat_until_known


class LockLost(Exception):
    """The session's lease died: the lock is not (or no longer) held."""


def first_created(prefix: bytes) -> Op:
    """The key under ``prefix`` with the lowest create revision: the holder (or leader)."""
    return Op.get(prefix, prefix=True, sort_target=SortTarget.CREATE, sort_order=SortOrder.ASCEND, limit=1)


async def wait_deletes(client: Client, prefix: bytes, max_create_revision: int) -> None:
    """Return once no key under ``prefix`` has a create revision <= ``max_create_revision``: wait
    for the deletion of the newest such key, then look again (etcd's ``waitDeletes``)."""
    while True:
        resp = await client.get(
            prefix,
            prefix=True,
            sort_target=SortTarget.CREATE,
            sort_order=SortOrder.DESCEND,
            limit=1,
            max_create_revision=max_create_revision,
        )
        if not resp.kvs:
            return
        predecessor = resp.kvs[0].key
        assert resp.header is not None
        # From the revision of that read: a deletion right after it is still seen.
        watch = client.watch(predecessor, start_revision=resp.header.revision, filters=["NOPUT"])
        try:
            await anext(watch)
        except errors.Compacted:
            pass  # history moved on since the read: look again
        finally:
            await watch.close()


class Lock:
    """``async with Lock(session, "locks/db") as lock:`` → ``lock.revision`` is the fencing token.

    ``acquire(timeout)`` raises ``TimeoutError`` (after withdrawing from the queue) if the lock is
    not granted in time, and ``LockLost`` if the session's lease died while waiting."""

    def __init__(self, session: Session, name: str | bytes) -> None:
        self.session = session
        self.client = session.client
        self.prefix = to_bytes(name).rstrip(b"/") + b"/"
        self.key = b""
        self.revision = 0
        # The write that queues us, left to finish even when acquire() is cancelled: withdrawing
        # before its outcome is known could leave a key that blocks every later waiter.
        self._enqueue: asyncio.Future[TxnResponse] | None = None

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def acquire(self, timeout: float | None = None) -> int:
        """Wait until this session holds the lock; returns the fencing token."""
        await self.session.open()
        self.key = self.prefix + f"{self.session.lease_id:x}".encode()
        try:
            return await asyncio.wait_for(self._acquire(), timeout)
        except BaseException:
            # Time-out, cancellation or error: leave the queue so that nobody waits on our key.
            # If that fails too, the original error matters more; the key dies with the session.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._withdraw())
            raise

    async def _acquire(self) -> int:
        first = Op.get(
            self.prefix, prefix=True, sort_target=SortTarget.CREATE, sort_order=SortOrder.ASCEND, limit=1
        )
        enqueue = (
            self.client.txn()
            .if_(Compare.create_revision(self.key) == 0)
            .then(Op.put(self.key, b"", lease=self.session.lease_id), first)
            .else_(Op.get(self.key), first)
        )
        self._enqueue = asyncio.ensure_future(repeat_until_known(enqueue.commit))
        resp = await asyncio.shield(self._enqueue)
        if resp.succeeded:
            assert resp.header is not None
            self.revision = resp.header.revision
        else:
            self.revision = resp.responses[0].response.kvs[0].create_revision  # type: ignore[union-attr]
        owner = resp.responses[1].response.kvs  # type: ignore[union-attr]
        if owner and owner[0].create_revision == self.revision:
            return self.revision
        await wait_deletes(self.client, self.prefix, self.revision - 1)
        if not await self.is_held():
            raise LockLost(f"lock {self.prefix.decode(errors='replace')}: session lease died while waiting")
        return self.revision

    def guard(self) -> Cmp:
        """The compare that holds only while this lock is held: put it in every guarded txn."""
        return Compare.create_revision(self.key) == self.revision

    async def is_held(self) -> bool:
        resp = await self.client.get(self.key)
        return bool(resp.kvs) and resp.kvs[0].create_revision == self.revision

    async def _withdraw(self) -> None:
        enqueue, self._enqueue = self._enqueue, None
        if enqueue is not None:
            # Only its landing matters, not its answer: wait until it applied or certainly failed.
            with contextlib.suppress(Exception):
                await enqueue
        if self.key:
            await repeat_until_known(
                self.client.txn().if_(Compare.version(self.key) > 0).then(Op.delete(self.key)).commit
            )

    async def release(self) -> None:
        """Delete our key (only our incarnation of it): the next waiter's watch fires."""
        if self.revision:
            await repeat_until_known(self.client.txn().if_(self.guard()).then(Op.delete(self.key)).commit)
            self.revision = 0
