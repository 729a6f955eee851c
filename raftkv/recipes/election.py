"""Leader election with etcd's semantics (``concurrency.Election``).

Owns: the key layout (``<name>/<lease id hex>`` → the candidate's value, attached to its session's
lease), campaign (queue by create revision, wait for the predecessors' deletion), proclaim,
resign, ``leader()`` and ``observe()``.

Must not: poll; let a candidate believe it leads after its lease died (``campaign`` re-checks its
key after waiting, and ``proclaim``/``resign`` only act on their own incarnation of the key).

Invariants: the leader is the candidate whose key has the lowest create revision under the prefix,
so at any revision there is at most one; ``observe()`` yields the successive leaders (and their
proclaimed values) in revision order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from raftkv.client import Client, Compare, EventType, KeyValue, Op, RangeResponse, Value, to_bytes
from raftkv.recipes.lock import LockLost, first_created, wait_deletes
from raftkv.recipes.session import Session, repeat_until_known


class NotLeader(Exception):
    """This candidate is not (or no longer) the leader."""


class Election:
    """``Election(session, "elections/web")``: ``await campaign(value)`` returns once this session
    leads; ``proclaim(value)`` updates the leader's value; ``resign()`` steps down;
    ``leader()`` and ``observe()`` work for any participant or observer."""

    def __init__(self, session: Session, name: str | bytes) -> None:
        self.session = session
        self.client: Client = session.client
        self.prefix = to_bytes(name).rstrip(b"/") + b"/"
        self.key = b""
        self.revision = 0
        # True once campaign() returned: a queued candidate has a key (and a revision) but does
        # not lead, so it may not proclaim.
        self.leading = False

    async def campaign(self, value: Value) -> None:
        await self.session.open()
        self.key = self.prefix + f"{self.session.lease_id:x}".encode()
        try:
            await self._campaign(to_bytes(value))
        except BaseException:
            # Cancelled, timed out or failed: leave the queue so that nobody waits on our key.
            await asyncio.shield(self._withdraw())
            raise
        self.leading = True

    async def _withdraw(self) -> None:
        await repeat_until_known(
            self.client.txn().if_(Compare.version(self.key) > 0).then(Op.delete(self.key)).commit
        )
        self.revision = 0

    async def _campaign(self, value: bytes) -> None:
        enqueue = (
            self.client.txn()
            .if_(Compare.create_revision(self.key) == 0)
            .then(Op.put(self.key, value, lease=self.session.lease_id))
            .else_(Op.get(self.key))
        )
        resp = await repeat_until_known(enqueue.commit)
        if resp.succeeded:
            assert resp.header is not None
            self.revision = resp.header.revision
        else:
            existing = resp.responses[0].response.kvs[0]  # type: ignore[union-attr]
            self.revision = existing.create_revision
            if existing.value != value and not await self._put_value(value):
                raise NotLeader("the election key was deleted (lease expired)")
        await wait_deletes(self.client, self.prefix, self.revision - 1)
        if not await self.is_leader():
            raise LockLost(
                f"election {self.prefix.decode(errors='replace')}: session lease died while waiting"
            )

    async def is_leader(self) -> bool:
        if not self.revision:
            return False
        resp = await self.client.get(self.key)
        return bool(resp.kvs) and resp.kvs[0].create_revision == self.revision

    async def proclaim(self, value: Value) -> None:
        """Change the leader's value without losing leadership; ``NotLeader`` otherwise."""
        if not self.leading:
            raise NotLeader("not the leader (campaign first)")
        if not await self._put_value(to_bytes(value)):
            self.revision = 0
            self.leading = False
            raise NotLeader("the election key was deleted (lease expired or resigned)")

    async def _put_value(self, value: bytes) -> bool:
        """Set our key's value if it is still our incarnation of the key."""
        put = Op.put(self.key, value, lease=self.session.lease_id)
        guarded = Compare.create_revision(self.key) == self.revision
        resp = await repeat_until_known(self.client.txn().if_(guarded).then(put).commit)
        return resp.succeeded

    async def resign(self) -> None:
        """Step down (delete our key); a no-op when not leading."""
        if self.revision:
            guarded = Compare.create_revision(self.key) == self.revision
            await repeat_until_known(self.client.txn().if_(guarded).then(Op.delete(self.key)).commit)
            self.revision = 0
            self.leading = False

    async def leader(self) -> KeyValue | None:
        """The current leader's key and value, or None when nobody campaigns."""
        resp = await self._first()
        return resp.kvs[0] if resp.kvs else None

    async def _first(self) -> RangeResponse:
        resp = await self.client.txn().then(first_created(self.prefix)).commit()
        first = resp.responses[0].response
        assert isinstance(first, RangeResponse) and resp.header is not None
        return RangeResponse(header=resp.header, kvs=first.kvs)

    async def observe(self) -> AsyncGenerator[KeyValue, None]:
        """The leader's key and value each time the leadership or the proclaimed value changes
        (etcd's ``Observe``): the current leader first, then every change, in revision order."""
        while True:
            resp = await self._first()
            assert resp.header is not None
            if resp.kvs:
                leader = resp.kvs[0]
            else:
                leader = await self._first_put(resp.header.revision)
            yield leader
            async with self.client.watch(leader.key, start_revision=leader.mod_revision + 1) as watch:
                async for event in watch:
                    if event.type == EventType.DELETE or event.kv is None:
                        break
                    yield event.kv

    async def _first_put(self, revision: int) -> KeyValue:
        async with self.client.watch(self.prefix, prefix=True, start_revision=revision) as watch:
            async for event in watch:
                if event.type == EventType.PUT and event.kv is not None:
                    return event.kv
        raise LockLost("watch ended")
