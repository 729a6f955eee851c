"""TTL sessions (e.g. web logins): each session lives under a lease of its own; using it
(``touch``) extends it, and an idle session disappears by itself.

Run against the dev cluster (``scripts/run``, or ``raftkv dev-cluster``):

    python examples/ttl_sessions.py

Endpoints default to the dev cluster; override with RAFTKV_ENDPOINTS=host:port,host:port.
Exits 0 once the idle session expired while the active one lived on (about 10 s).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from raftkv.client import Client
from raftkv.recipes import SessionStore

ENDPOINTS = os.environ.get("RAFTKV_ENDPOINTS", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")
TTL = 3


async def main() -> None:
    async with Client(ENDPOINTS) as client:
        store = SessionStore(client, prefix=f"examples/sessions/{uuid.uuid4().hex[:8]}/", ttl=TTL)
        active = await store.create({"user": "ann"})
        idle = await store.create({"user": "bob"})
        print("created sessions for ann and bob, TTL", TTL, "s")
        start = time.monotonic()
        while await store.get(idle) is not None:
            assert time.monotonic() - start < 30, "the idle session did not expire"
            assert await store.touch(active), "the active session expired although it was used"
            await asyncio.sleep(0.5)  # ann clicks around; bob does nothing
        print(f"bob's idle session expired after {time.monotonic() - start:.1f}s")
        print("ann's session:", await store.get(active))
        assert await store.get(active) == {"user": "ann"}
        await store.delete(active)
        print("ann logged out")


if __name__ == "__main__":
    asyncio.run(main())
