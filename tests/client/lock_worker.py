"""A lock-using worker process for ``test_recipes_faults.py``.

``python -m tests.client.lock_worker ENDPOINTS LOCK_NAME COUNTER_KEY ROUNDS LOG_FILE``

Each round: open a session (TTL 5 s), acquire the lock, log ``acquired <token> <monotonic ns>``,
increment the counter with a fenced CAS (``incremented``, ``fenced-out`` or ``unknown``), hold the
lock briefly, log ``releasing <token> <ns>``, release. Errors are logged (``error ...``) and the
next round starts. Every line is flushed at once, so a SIGKILL loses nothing already logged.
``time.monotonic_ns`` is one system-wide clock, so the test can order lines of several processes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from raftkv import errors
from raftkv.client import Client, Compare, Op
from raftkv.recipes import Lock, LockLost, Session

HOLD_SECONDS = 0.05


def log(out: TextIO, kind: str, token: int) -> None:
    out.write(f"{kind} {token} {time.monotonic_ns()}\n")
    out.flush()


async def fenced_increment(client: Client, lock: Lock, counter: str) -> str:
    resp = await client.get(counter)
    current = resp.kvs[0] if resp.kvs else None
    value = int(current.value) if current else 0
    unchanged = (
        Compare.mod_revision(counter) == current.mod_revision if current else Compare.version(counter) == 0
    )
    try:
        txn = await client.txn().if_(lock.guard(), unchanged).then(Op.put(counter, str(value + 1))).commit()
    except (errors.Timeout, errors.Stopped):
        return "unknown"
    return "incremented" if txn.succeeded else "fenced-out"


async def main(endpoints: str, name: str, counter: str, rounds: int, out: TextIO) -> None:
    async with Client(endpoints, timeout=10) as client:
        for _ in range(rounds):
            try:
                async with Session(client, ttl=5) as session:
                    lock = Lock(session, name)
                    token = await lock.acquire()
                    log(out, "acquired", token)
                    log(out, await fenced_increment(client, lock, counter), token)
                    await asyncio.sleep(HOLD_SECONDS)  # the work done under the lock
                    log(out, "releasing", token)
                    await lock.release()
            except (errors.RaftkvError, LockLost) as exc:
                out.write(f"error 0 {time.monotonic_ns()} {type(exc).__name__}: {exc}\n")
                out.flush()


if __name__ == "__main__":
    endpoints_arg, name_arg, counter_arg, rounds_arg, log_path = sys.argv[1:6]
    with open(log_path, "a") as log_file:
        asyncio.run(main(endpoints_arg, name_arg, counter_arg, int(rounds_arg), log_file))
