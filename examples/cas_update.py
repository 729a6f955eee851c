"""Optimistic concurrency: several clients update one JSON document with compare-and-swap on its
mod_revision, retrying when someone else wrote first; no update is lost.

Run against the dev cluster (``scripts/run``, or ``raftkv dev-cluster``):

    python examples/cas_update.py

Endpoints default to the dev cluster; override with RAFTKV_ENDPOINTS=host:port,host:port.
Exits 0 when all 30 updates are in the document.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

from raftkv.client import Client, Compare, Op

ENDPOINTS = os.environ.get("RAFTKV_ENDPOINTS", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")


async def append(client: Client, key: str, item: str) -> int:
    """Append ``item`` to the document's list; returns how many attempts it took."""
    for attempt in range(1, 100):
        resp = await client.get(key)
        kv = resp.kvs[0]
        doc = json.loads(kv.value)
        doc["items"].append(item)
        txn = (
            client.txn().if_(Compare.mod_revision(key) == kv.mod_revision).then(Op.put(key, json.dumps(doc)))
        )
        if (await txn.commit()).succeeded:
            return attempt
    raise RuntimeError("too much contention")


async def writer(name: str, key: str) -> None:
    async with Client(ENDPOINTS) as client:
        for i in range(10):
            attempts = await append(client, key, f"{name}-{i}")
            if attempts > 1:
                print(f"{name}: update {i} needed {attempts} attempts")


async def main() -> None:
    key = f"examples/cas/{uuid.uuid4().hex[:8]}"
    async with Client(ENDPOINTS) as client:
        await client.put(key, json.dumps({"items": []}))
        await asyncio.wait_for(asyncio.gather(*(writer(f"w{i}", key) for i in range(3))), 60)
        doc = json.loads(await client.get_value(key) or b"{}")
    print(f"{len(doc['items'])} items, none lost")
    assert sorted(doc["items"]) == sorted(f"w{w}-{i}" for w in range(3) for i in range(10))


if __name__ == "__main__":
    asyncio.run(main())
