"""A distributed lock guarding a counter: four workers each add 5 under the lock, writing with
the lock's fencing token in the same txn, so a holder whose lease died could not write.

Run against the dev cluster (``scripts/run``, or ``raftkv dev-cluster``):

    python examples/lock_counter.py

Endpoints default to the dev cluster; override with RAFTKV_ENDPOINTS=host:port,host:port.
Exits 0 when the counter is exactly 20.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from raftkv.client import Client, Op
from raftkv.recipes import Lock, Session

ENDPOINTS = os.environ.get("RAFTKV_ENDPOINTS", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")


async def worker(name: str, base: str) -> None:
    async with Client(ENDPOINTS) as client, Session(client, ttl=10) as session:
        for _ in range(5):
            async with Lock(session, base + "lock") as lock:
                value = int(await client.get_str(base + "counter") or 0)
                # Fenced write: only applied while our lock key (and so our lease) still exists.
                txn = client.txn().if_(lock.guard()).then(Op.put(base + "counter", str(value + 1)))
                assert (await txn.commit()).succeeded, "lost the lock"
                print(f"{name}: {value} -> {value + 1} (fencing token {lock.revision})")


async def main() -> None:
    base = f"examples/lock/{uuid.uuid4().hex[:8]}/"
    await asyncio.wait_for(asyncio.gather(*(worker(f"worker-{i}", base) for i in range(4))), 60)
    async with Client(ENDPOINTS) as client:
        final = await client.get_str(base + "counter")
    print("final counter:", final)
    assert final == "20"


if __name__ == "__main__":
    asyncio.run(main())
