"""Lease-backed sessions: ``Session`` (one lease kept alive, etcd's ``concurrency.Session``) and
``SessionStore`` (TTL sessions for application data, e.g. web logins).

Owns: granting, keeping alive and revoking the lease of a ``Session``; the key layout and JSON
encoding of ``SessionStore`` entries (``<prefix><session id>`` → JSON, attached to a lease of its
own whose TTL is the session's idle timeout).

Must not: keep session data anywhere but the store (every process sees the same sessions) or
extend a ``SessionStore`` entry except through ``touch`` (an idle session must expire).

Invariants: a ``Session``'s keys disappear when it is closed or its lease dies (``lost`` is set in
both cases); a ``SessionStore`` entry exists exactly as long as its lease.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

from raftkv import errors
from raftkv.client import Client, Compare, Lease, Op, to_bytes

DEFAULT_TTL = 60
UNKNOWN_OUTCOME_ATTEMPTS = 5

T = TypeVar("T")


async def repeat_until_known(send: Callable[[], Awaitable[T]]) -> T:
    """Send a write whose repetition is harmless (its compares make a second run a no-op or give
    the same answer) again after an unknown outcome, so that a leader change mid-request does not
    leave a recipe unsure whether it is queued, holding or released."""
    for _ in range(UNKNOWN_OUTCOME_ATTEMPTS - 1):
        try:
            return await send()
        except (errors.Timeout, errors.Stopped):
            continue
    return await send()


class Session:
    """A lease kept alive in the background; the recipes attach their keys to it.

    ``async with Session(client, ttl=10) as s:``; ``s.lease_id``; ``s.lost`` is set once the lease
    is gone (revoked, expired because keepalives could not reach a leader, or closed)."""

    def __init__(self, client: Client, ttl: int = DEFAULT_TTL) -> None:
        self.client = client
        self.ttl = ttl
        self._lease: Lease | None = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._lease is None:
            lease = await self.client.grant(self.ttl)
            await lease.keepalive()
            self._lease = lease

    @property
    def lease(self) -> Lease:
        if self._lease is None:
            raise RuntimeError("session is not open")
        return self._lease

    @property
    def lease_id(self) -> int:
        return self.lease.id

    @property
    def lost(self) -> asyncio.Event:
        return self.lease.lost

    async def close(self) -> None:
        """Stop the keepalive and revoke the lease, deleting every key attached to it."""
        if self._lease is not None:
            await self._lease.close()


class SessionStore:
    """TTL sessions holding JSON data: ``create`` → id, ``get``, ``update``, ``touch`` (refresh the
    TTL), ``delete``. An entry nobody touches for ``ttl`` seconds disappears by itself."""

    def __init__(self, client: Client, prefix: str = "sessions/", ttl: int = 30) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl

    def key(self, session_id: str) -> bytes:
        return to_bytes(self.prefix + session_id)

    async def create(self, data: dict[str, Any]) -> str:
        session_id = secrets.token_hex(16)
        lease = await self.client.grant(self.ttl)
        await self.client.put(self.key(session_id), json.dumps(data), lease=lease.id)
        return session_id

    async def get(self, session_id: str) -> dict[str, Any] | None:
        resp = await self.client.get(self.key(session_id))
        if not resp.kvs:
            return None
        data: dict[str, Any] = json.loads(resp.kvs[0].value)
        return data

    async def update(self, session_id: str, data: dict[str, Any]) -> bool:
        """Replace the data (keeping the lease); False if the session no longer exists."""
        key = self.key(session_id)
        put = Op.put(key, json.dumps(data), ignore_lease=True)
        resp = await self.client.txn().if_(Compare.version(key) > 0).then(put).commit()
        return resp.succeeded

    async def touch(self, session_id: str) -> bool:
        """Reset the idle timeout; False if the session no longer exists."""
        resp = await self.client.get(self.key(session_id))
        if not resp.kvs or not resp.kvs[0].lease:
            return False
        return await self.client.keepalive_once(resp.kvs[0].lease) > 0

    async def delete(self, session_id: str) -> bool:
        """End the session now (revoking its lease); False if it was already gone."""
        resp = await self.client.get(self.key(session_id))
        if not resp.kvs:
            return False
        try:
            await self.client.revoke(resp.kvs[0].lease)
        except errors.LeaseNotFound:
            return False
        return True
