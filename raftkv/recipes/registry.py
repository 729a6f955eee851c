"""Service discovery: instances register under a lease, clients discover and watch them.

Owns: the key layout ``<prefix><service>/<instance id>`` → the instance's metadata as JSON,
attached to the registering process's ``Session`` lease; ``register`` / ``deregister``,
``discover`` (a snapshot at one revision) and ``watch`` (changes after that revision).

Must not: keep a registration alive by anything but its lease: an instance that dies disappears
when its lease expires, without anyone cleaning up after it.

Invariants: ``watch(service, after=r)`` yields every change after revision ``r`` once, in revision
order, so ``discover`` + ``watch(after=snapshot.revision)`` never misses or repeats a change.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from raftkv.client import Client, EventType, to_bytes
from raftkv.recipes.session import Session


@dataclass(frozen=True, slots=True)
class Instance:
    service: str
    instance_id: str
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Change:
    """``up`` is True when the instance registered or changed its metadata, False when it left."""

    up: bool
    instance: Instance
    revision: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    instances: dict[str, Instance]
    revision: int


class ServiceRegistry:
    def __init__(self, client: Client, prefix: str = "services/") -> None:
        self.client = client
        self.prefix = prefix

    def _service_prefix(self, service: str) -> bytes:
        return to_bytes(f"{self.prefix}{service}/")

    def _instance(self, service: str, key: bytes, value: bytes) -> Instance:
        instance_id = key[len(self._service_prefix(service)) :].decode()
        return Instance(service, instance_id, json.loads(value) if value else {})

    async def register(
        self, session: Session, service: str, instance_id: str, metadata: dict[str, Any]
    ) -> None:
        """Publish (or update) an instance; it lives as long as ``session``'s lease."""
        await session.open()
        key = self._service_prefix(service) + instance_id.encode()
        await self.client.put(key, json.dumps(metadata, sort_keys=True), lease=session.lease_id)

    async def deregister(self, service: str, instance_id: str) -> None:
        await self.client.delete(self._service_prefix(service) + instance_id.encode())

    async def discover(self, service: str) -> Snapshot:
        resp = await self.client.get(self._service_prefix(service), prefix=True)
        assert resp.header is not None
        instances = {
            inst.instance_id: inst for inst in (self._instance(service, kv.key, kv.value) for kv in resp.kvs)
        }
        return Snapshot(instances, resp.header.revision)

    async def watch(self, service: str, after: int) -> AsyncGenerator[Change, None]:
        """Every registration and departure after revision ``after``."""
        prefix = self._service_prefix(service)
        async with self.client.watch(prefix, prefix=True, start_revision=after + 1) as watch:
            async for event in watch:
                assert event.kv is not None
                up = event.type == EventType.PUT
                instance = self._instance(service, event.kv.key, event.kv.value if up else b"")
                yield Change(up, instance, event.kv.mod_revision)
