"""Service discovery: two instances register with metadata under leases; a client discovers them
and watches instances come and go.

Run against the dev cluster (``scripts/run``, or ``raftkv dev-cluster``):

    python examples/service_registry.py

Endpoints default to the dev cluster; override with RAFTKV_ENDPOINTS=host:port,host:port.
Exits 0 after it saw instance "api-2" register and then disappear with its lease.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from raftkv.client import Client
from raftkv.recipes import ServiceRegistry, Session

ENDPOINTS = os.environ.get("RAFTKV_ENDPOINTS", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")


async def main() -> None:
    prefix = f"examples/services/{uuid.uuid4().hex[:8]}/"
    async with Client(ENDPOINTS) as client, Session(client, ttl=5) as first:
        registry = ServiceRegistry(client, prefix=prefix)
        await registry.register(first, "api", "api-1", {"host": "10.0.0.1", "port": 8080})
        snapshot = await registry.discover("api")
        print("discovered:", {i: inst.metadata for i, inst in snapshot.instances.items()})
        changes = registry.watch("api", after=snapshot.revision)

        # A second instance comes up, then dies: its registration goes with its lease.
        second = Session(client, ttl=5)
        await registry.register(second, "api", "api-2", {"host": "10.0.0.2", "port": 8080})
        for expected_up in (True, False):
            change = await asyncio.wait_for(anext(changes), 30)
            instance, state = change.instance, "up" if change.up else "down"
            print(f"revision {change.revision}: {instance.instance_id} is {state} {instance.metadata}")
            assert change.up is expected_up and change.instance.instance_id == "api-2"
            if change.up:
                await second.close()
        await changes.aclose()
        print("now:", sorted((await registry.discover("api")).instances))


if __name__ == "__main__":
    asyncio.run(main())
