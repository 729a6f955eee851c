"""A cluster-wide fixed-window rate limiter: at most ``limit`` grants per ``window`` seconds.

Owns: one counter key per window, ``<prefix><name>/<window number, zero-padded>`` → the decimal
count, updated only by compare-and-swap on its ``mod_revision`` (create revision 0 for the first
grant of a window); the removal of past windows' keys.

Must not: grant without a successful CAS (two clients that read the same count cannot both
increment it), or use leases (it works on any cluster, and a window key is tiny).

Invariants: per window, the number of ``True`` answers equals the final counter value (<= limit),
except for grants whose CAS outcome was unknown, which answer ``False`` and may have counted.
Windows are numbered by the callers' wall clocks, so clients should keep their clocks in sync;
a skewed client only shifts which window it counts against.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from raftkv import errors
from raftkv.client import Client, Compare, Op, to_bytes

MAX_CAS_ATTEMPTS = 20
WINDOW_DIGITS = 16


class RateLimiter:
    def __init__(
        self,
        client: Client,
        name: str,
        *,
        limit: int,
        window: float,
        prefix: str = "ratelimit/",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.limit = limit
        self.window = window
        self.clock = clock
        self.base = to_bytes(f"{prefix}{name}/")

    def _key(self, window: int) -> bytes:
        # Zero-padded so that key order is window order: past windows are one key range.
        return self.base + f"{window:0{WINDOW_DIGITS}d}".encode()

    async def try_acquire(self) -> bool:
        """Count one request against the current window; False if the window is full."""
        window = int(self.clock() // self.window)
        key = self._key(window)
        for _ in range(MAX_CAS_ATTEMPTS):
            resp = await self.client.get(key)
            current = resp.kvs[0] if resp.kvs else None
            count = int(current.value) if current is not None else 0
            if count >= self.limit:
                return False
            expected = Compare.mod_revision(key) == current.mod_revision if current else None
            guard = expected if expected is not None else Compare.create_revision(key) == 0
            ops = [Op.put(key, str(count + 1))]
            if current is None:
                # The first grant of a window removes the keys of all earlier windows.
                ops.append(Op.delete(self.base, self._key(window)))
            try:
                txn = await self.client.txn().if_(guard).then(*ops).commit()
            except (errors.Timeout, errors.Stopped):
                return False  # maybe counted, certainly not granted
            if txn.succeeded:
                return True
        return False

    async def count(self) -> int:
        """The grants counted in the current window so far."""
        resp = await self.client.get(self._key(int(self.clock() // self.window)))
        return int(resp.kvs[0].value) if resp.kvs else 0
