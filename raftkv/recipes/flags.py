"""Feature flags whose changes reach every reader through a watch.

Owns: the key layout ``<prefix><flag name>`` → the flag's JSON value; ``FeatureFlags``: a local
copy loaded at one revision and kept current by a watch from the next revision, with change
callbacks; ``set`` / ``delete`` for administrators.

Must not: read the store on every ``is_enabled`` call (readers use the local copy), or apply a
change twice or out of order (the watch delivers each revision once, in order).

Invariants: after ``start()``, ``revision`` is the revision the local copy reflects; every change
committed after it is applied in order by the background task, and ``wait_revision(r)`` returns
once the copy reflects revision ``r``. A reader that falls behind a compaction reloads everything
and tells its listeners about each flag that differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, Self

from raftkv import errors
from raftkv.client import Client, EventType, Watch, to_bytes

Listener = Callable[[str, Any], None]


class FeatureFlags:
    def __init__(self, client: Client, prefix: str = "flags/") -> None:
        self.client = client
        self.prefix = prefix
        self.flags: dict[str, Any] = {}
        self.revision = 0
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def on_change(self, listener: Listener) -> None:
        """``listener(name, value)`` after each change; ``value`` is None for a deleted flag."""
        self._listeners.append(listener)

    def is_enabled(self, name: str, default: bool = False) -> bool:
        return bool(self.flags.get(name, default))

    def value(self, name: str, default: Any = None) -> Any:
        return self.flags.get(name, default)

    async def set(self, name: str, value: Any) -> int:
        """Set a flag for every reader; returns the revision of the change."""
        resp = await self.client.put(to_bytes(self.prefix + name), json.dumps(value))
        assert resp.header is not None
        return resp.header.revision

    async def delete(self, name: str) -> None:
        await self.client.delete(to_bytes(self.prefix + name))

    async def start(self) -> None:
        """Load every flag, then follow changes in the background."""
        watch = await self._load()
        self._task = asyncio.get_running_loop().create_task(self._follow(watch), name="feature-flags")

    async def _load(self) -> Watch:
        """Read every flag at one revision and open the watch from the next one; tell the
        listeners about flags that differ from the local copy (after a reload)."""
        resp = await self.client.get(self.prefix, prefix=True)
        assert resp.header is not None
        old, self.flags = (
            self.flags,
            {kv.key.decode()[len(self.prefix) :]: json.loads(kv.value) for kv in resp.kvs},
        )
        watch = self.client.watch(self.prefix, prefix=True, start_revision=resp.header.revision + 1)
        await watch.start()
        await self._changed_to(resp.header.revision)
        for name in sorted(old.keys() | self.flags.keys()):
            if old.get(name) != self.flags.get(name):
                self._notify(name, self.flags.get(name))
        return watch

    async def _follow(self, watch: Watch) -> None:
        while True:
            try:
                async with watch:
                    async for event in watch:
                        kv = event.kv
                        assert kv is not None
                        name = kv.key.decode()[len(self.prefix) :]
                        value = json.loads(kv.value) if event.type == EventType.PUT else None
                        if value is None:
                            self.flags.pop(name, None)
                        else:
                            self.flags[name] = value
                        await self._changed_to(kv.mod_revision)
                        self._notify(name, value)
                return
            except errors.Compacted:
                # This reader fell behind a compaction: the changes it missed are no longer in the
                # history, so it reloads the current state instead.
                watch = await self._load()

    async def _changed_to(self, revision: int) -> None:
        async with self._changed:
            self.revision = revision
            self._changed.notify_all()

    def _notify(self, name: str, value: Any) -> None:
        for listener in self._listeners:
            listener(name, value)

    async def wait_revision(self, revision: int, timeout: float) -> None:
        """Return once the local copy reflects ``revision`` (``TimeoutError`` after ``timeout``)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.revision >= revision), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
