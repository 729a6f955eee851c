"""Configuration hot reload: an application loads its configuration, then applies every change
an administrator makes, through a watch that starts right after the revision it loaded.

Run against the dev cluster (``scripts/run``, or ``raftkv dev-cluster``):

    python examples/config_watch.py

Endpoints default to the dev cluster; override with RAFTKV_ENDPOINTS=host:port,host:port.
Exits 0 once the application runs with the administrator's last change.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

from raftkv.client import Client, EventType

ENDPOINTS = os.environ.get("RAFTKV_ENDPOINTS", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")


class App:
    def __init__(self, client: Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.config: dict[str, Any] = {}

    async def run(self, until: dict[str, Any]) -> None:
        resp = await self.client.get(self.prefix, prefix=True)
        self.config = {kv.key.decode()[len(self.prefix) :]: json.loads(kv.value) for kv in resp.kvs}
        print("loaded:", self.config)
        assert resp.header is not None
        # From the next revision: no change between the load and the watch is missed.
        async with self.client.watch(
            self.prefix, prefix=True, start_revision=resp.header.revision + 1
        ) as watch:
            async for event in watch:
                assert event.kv is not None
                name = event.kv.key.decode()[len(self.prefix) :]
                if event.type == EventType.DELETE:
                    self.config.pop(name, None)
                else:
                    self.config[name] = json.loads(event.kv.value)
                print(f"reloaded at revision {event.kv.mod_revision}:", self.config)
                if self.config == until:
                    return


async def main() -> None:
    prefix = f"examples/config/{uuid.uuid4().hex[:8]}/"
    async with Client(ENDPOINTS) as admin, Client(ENDPOINTS) as app_client:
        await admin.put(prefix + "log_level", json.dumps("info"))
        await admin.put(prefix + "workers", json.dumps(4))
        app = App(app_client, prefix)
        final = {"log_level": "debug", "workers": 8, "feature": {"cache": True}}
        running = asyncio.create_task(app.run(until=final))
        await admin.put(prefix + "log_level", json.dumps("debug"))
        await admin.put(prefix + "workers", json.dumps(8))
        await admin.put(prefix + "feature", json.dumps({"cache": True}))
        await asyncio.wait_for(running, 30)
    print("application runs with:", app.config)


if __name__ == "__main__":
    asyncio.run(main())
