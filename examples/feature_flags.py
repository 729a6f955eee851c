"""Feature flags: readers keep a local copy that a watch keeps current; an administrator turns a
flag on for 10 % of users, then for everyone, then removes it.

Run against the dev cluster (``scripts/run``, or ``raftkv dev-cluster``):

    python examples/feature_flags.py

Endpoints default to the dev cluster; override with RAFTKV_ENDPOINTS=host:port,host:port.
Exits 0 once both readers saw every change.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import zlib
from typing import Any

from raftkv.client import Client
from raftkv.recipes import FeatureFlags

ENDPOINTS = os.environ.get("RAFTKV_ENDPOINTS", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")


def enabled_for(flags: FeatureFlags, name: str, user: str) -> bool:
    rule: Any = flags.value(name, {"percent": 0})
    return zlib.crc32(user.encode()) % 100 < int(rule["percent"])


async def main() -> None:
    prefix = f"examples/flags/{uuid.uuid4().hex[:8]}/"
    users = [f"user-{i}" for i in range(20)]
    async with Client(ENDPOINTS) as c1, Client(ENDPOINTS) as c2, Client(ENDPOINTS) as admin_client:
        admin = FeatureFlags(admin_client, prefix=prefix)
        async with FeatureFlags(c1, prefix=prefix) as reader1, FeatureFlags(c2, prefix=prefix) as reader2:
            reader1.on_change(lambda name, value: print(f"reader 1: {name} = {value}"))
            for percent in (10, 100):
                revision = await admin.set("new_checkout", {"percent": percent})
                for reader in (reader1, reader2):
                    await reader.wait_revision(revision, 30)
                on = [u for u in users if enabled_for(reader2, "new_checkout", u)]
                print(f"{percent}%: new checkout for {len(on)} of {len(users)} users")
            await admin.delete("new_checkout")
            await reader2.wait_revision(revision + 1, 30)
            assert not any(enabled_for(reader2, "new_checkout", u) for u in users)
            print("flag removed: nobody gets the new checkout")


if __name__ == "__main__":
    asyncio.run(main())
