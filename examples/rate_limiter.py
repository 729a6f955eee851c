"""A cluster-wide rate limiter: three clients share a limit of 5 requests per 2-second window,
counted by compare-and-swap on one counter per window.

Run against the dev cluster (``scripts/run``, or ``raftkv dev-cluster``):

    python examples/rate_limiter.py

Endpoints default to the dev cluster; override with RAFTKV_ENDPOINTS=host:port,host:port.
Exits 0 after three windows, none of which granted more than 5.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter

from raftkv.client import Client
from raftkv.recipes import RateLimiter

ENDPOINTS = os.environ.get("RAFTKV_ENDPOINTS", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")
LIMIT = 5
WINDOW = 2.0


async def caller(name: str, prefix: str, granted: Counter[int], until: float) -> None:
    async with Client(ENDPOINTS) as client:
        limiter = RateLimiter(client, "api", limit=LIMIT, window=WINDOW, prefix=prefix)
        while time.time() < until:
            window = int(time.time() // WINDOW)
            if await limiter.try_acquire():
                granted[window] += 1
                print(f"{name}: request allowed in window {window}")
            await asyncio.sleep(0.1)  # the caller's request rate, well above the limit


async def main() -> None:
    prefix = f"examples/ratelimit/{uuid.uuid4().hex[:8]}/"
    granted: Counter[int] = Counter()
    until = time.time() + 3 * WINDOW
    await asyncio.wait_for(
        asyncio.gather(*(caller(f"client-{i}", prefix, granted, until) for i in range(3))), 60
    )
    print("granted per window:", dict(granted))
    assert granted and max(granted.values()) <= LIMIT


if __name__ == "__main__":
    asyncio.run(main())
