"""Leader election: three workers campaign; the leader works for a while and stops, another takes
over; an observer prints every leader.

Run against the dev cluster (``scripts/run``, or ``raftkv dev-cluster``):

    python examples/leader_election.py

Endpoints default to the dev cluster; override with RAFTKV_ENDPOINTS=host:port,host:port.
Exits 0 once each of the three workers has led once.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from raftkv.client import Client
from raftkv.recipes import Election, Session

ENDPOINTS = os.environ.get("RAFTKV_ENDPOINTS", "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")


async def worker(name: str, election_name: str, led: list[str]) -> None:
    async with Client(ENDPOINTS) as client, Session(client, ttl=5) as session:
        election = Election(session, election_name)
        await election.campaign(name)
        print(f"{name}: I am the leader (revision {election.revision})")
        led.append(name)
        await election.proclaim(f"{name} (busy)")
        await asyncio.sleep(0.2)  # the leader's work
        print(f"{name}: stepping down")
        await election.resign()


async def main() -> None:
    election_name = f"examples/election/{uuid.uuid4().hex[:8]}"
    led: list[str] = []
    async with Client(ENDPOINTS) as client, Session(client, ttl=5) as session:
        observer = Election(session, election_name).observe()
        workers = [asyncio.create_task(worker(f"worker-{i}", election_name, led)) for i in range(3)]

        async def watch_leaders() -> None:
            async for leader in observer:
                print(f"observer: leader is {leader.value.decode()}")

        observing = asyncio.create_task(watch_leaders())
        await asyncio.wait_for(asyncio.gather(*workers), 60)
        observing.cancel()
    assert sorted(led) == ["worker-0", "worker-1", "worker-2"], led
    print("leaders in order:", led)


if __name__ == "__main__":
    asyncio.run(main())
