"""The coordination recipes against a real cluster: lock, election, service registry, TTL
sessions, rate limiter and feature flags (etcd's semantics where etcd has the recipe).

Lock: mutual exclusion with increasing fencing tokens; each waiter watches only its predecessor;
the lease is re-checked after waiting; a dead holder's lease frees the lock and its guard then
fails; a timed-out acquire leaves the queue. Election: one leader, observe order, proclaim and
resign rules. The process-level fault tests are in ``test_recipes_faults.py``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from raftkv.client import Client, Compare, Op
from raftkv.recipes import (
    Election,
    FeatureFlags,
    Lock,
    LockLost,
    NotLeader,
    RateLimiter,
    ServiceRegistry,
    Session,
    SessionStore,
)
from raftkv.recipes import lock as lock_module

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

DEADLINE = 20.0


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, deadline: float = DEADLINE) -> None:
    """Poll an async condition until it holds; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not await condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def queued(client: Client, prefix: str, count: int) -> bool:
    return len((await client.get(prefix, prefix=True)).kvs) == count


async def test_lock_is_exclusive_and_fencing_tokens_increase(endpoints: list[str], prefix: str) -> None:
    holders: list[int] = []
    grants: list[int] = []
    counter = prefix + "counter"

    async def worker(client: Client) -> None:
        async with Session(client, ttl=10) as session:
            for _ in range(3):
                async with Lock(session, prefix + "lock") as lock:
                    holders.append(lock.revision)
                    assert len(holders) == 1, f"two holders at once: {holders}"
                    grants.append(lock.revision)
                    value = int(await client.get_str(counter) or 0)
                    fenced = (
                        await client.txn().if_(lock.guard()).then(Op.put(counter, str(value + 1))).commit()
                    )
                    assert fenced.succeeded
                    await asyncio.sleep(0.01)  # hold it across a loop turn so that overlaps would show
                    holders.remove(lock.revision)

    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(endpoints)) for _ in range(4)]
        await asyncio.wait_for(asyncio.gather(*(worker(c) for c in clients)), 90)
        assert await clients[0].get_str(counter) == "12"
    assert grants == sorted(grants) and len(set(grants)) == 12


def record_watches(client: Client) -> list[bytes]:
    """Make ``client`` record the key of every watch it creates."""
    watched: list[bytes] = []
    original = client.watch

    def watch(key: str | bytes, *args: Any, **kwargs: Any) -> Any:
        watched.append(key if isinstance(key, bytes) else key.encode())
        return original(key, *args, **kwargs)

    client.watch = watch  # type: ignore[method-assign]
    return watched


async def test_each_waiter_watches_only_its_predecessor(endpoints: list[str], prefix: str) -> None:
    name = prefix + "lock"
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(endpoints)) for _ in range(4)]
        sessions = [await stack.enter_async_context(Session(c, ttl=10)) for c in clients]
        locks = [Lock(s, name) for s in sessions]
        watched = [record_watches(c) for c in clients]
        await locks[0].acquire()
        tasks = []
        for i in (1, 2, 3):
            tasks.append(asyncio.create_task(locks[i].acquire()))
            await eventually(functools.partial(queued, clients[0], name + "/", i + 1), f"waiter {i} queued")
        for i in (1, 2, 3):
            await locks[i - 1].release()
            await asyncio.wait_for(tasks[i - 1], DEADLINE)
            assert not any(t.done() for t in tasks[i:]), "a waiter woke up before its turn"
        await locks[3].release()
    for i in (1, 2, 3):
        assert watched[i] == [locks[i - 1].key], f"waiter {i} watched {watched[i]}"


async def test_a_waiter_whose_lease_died_does_not_get_the_lock(endpoints: list[str], prefix: str) -> None:
    async with (
        Client(endpoints) as c,
        Session(c, ttl=10) as holder_session,
        Session(c, ttl=10) as waiter_session,
    ):
        holder = Lock(holder_session, prefix + "lock")
        waiter = Lock(waiter_session, prefix + "lock")
        await holder.acquire()
        task = asyncio.create_task(waiter.acquire())
        await eventually(lambda: queued(c, prefix + "lock/", 2), "waiter queued")
        await c.revoke(waiter_session.lease_id)  # the waiter's lease expires while it waits
        await holder.release()
        with pytest.raises(LockLost):
            await asyncio.wait_for(task, DEADLINE)


async def test_a_dead_holder_frees_the_lock_and_its_guard_fails(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c, Session(c, ttl=10) as first, Session(c, ttl=10) as second:
        old = Lock(first, prefix + "lock")
        new = Lock(second, prefix + "lock")
        await old.acquire()
        task = asyncio.create_task(new.acquire())
        await eventually(lambda: queued(c, prefix + "lock/", 2), "second queued")
        await c.revoke(first.lease_id)  # the holder's lease dies (crash, partition)
        token = await asyncio.wait_for(task, DEADLINE)
        assert token > old.revision
        stale = await c.txn().if_(old.guard()).then(Op.put(prefix + "resource", "stale")).commit()
        assert not stale.succeeded and await c.get_value(prefix + "resource") is None
        assert not await old.is_held() and await new.is_held()
        await new.release()


async def test_a_timed_out_acquire_never_leaves_its_key_behind(
    endpoints: list[str], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The queueing txn is on the wire when the timeout fires and lands only afterwards. Withdrawing
    # before it landed left a key on the session's lease that blocked every later waiter.
    gate = asyncio.Event()
    sent = asyncio.Event()
    in_flight: list[asyncio.Future[Any]] = []
    real = lock_module.repeat_until_known

    async def lands_late(send: Callable[[], Awaitable[Any]]) -> Any:
        if sent.is_set():  # the withdrawal and anything after it go straight through
            return await real(send)
        sent.set()

        async def later() -> Any:
            await gate.wait()
            return await real(send)

        in_flight.append(asyncio.ensure_future(later()))
        return await asyncio.shield(in_flight[0])

    async with Client(endpoints) as c, Session(c, ttl=10) as first, Session(c, ttl=10) as second:
        await Lock(first, prefix + "lock").acquire()
        waiter = Lock(second, prefix + "lock")
        monkeypatch.setattr(lock_module, "repeat_until_known", lands_late)
        task = asyncio.create_task(waiter.acquire(timeout=0.2))

        async def timed_out_and_withdrawing() -> bool:
            # Withdrawing now waits for the queueing write (its future is taken); before, the
            # acquire simply ended.
            return task.done() or (sent.is_set() and getattr(waiter, "_enqueue", False) is None)

        await eventually(timed_out_and_withdrawing, "the acquire timed out")
        gate.set()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(task, DEADLINE)
        await asyncio.wait_for(in_flight[0], DEADLINE)  # the late write has landed
        assert await queued(c, prefix + "lock/", 1), "the timed-out waiter left its key behind"


async def test_acquire_timeout_leaves_the_queue(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c, Session(c, ttl=10) as first, Session(c, ttl=10) as second:
        await Lock(first, prefix + "lock").acquire()
        with pytest.raises(TimeoutError):
            await Lock(second, prefix + "lock").acquire(timeout=1.0)
        assert len((await c.get(prefix + "lock/", prefix=True)).kvs) == 1


async def test_election_campaign_observe_proclaim_resign(endpoints: list[str], prefix: str) -> None:
    name = prefix + "election"
    async with AsyncExitStack() as stack:
        c = await stack.enter_async_context(Client(endpoints))
        sessions = [await stack.enter_async_context(Session(c, ttl=10)) for _ in range(3)]
        a, b, observer = (Election(s, name) for s in sessions)
        assert await observer.leader() is None
        await a.campaign("a")
        b_task = asyncio.create_task(b.campaign("b"))
        await eventually(lambda: queued(c, name + "/", 2), "b queued")
        observed = observer.observe()
        first = await asyncio.wait_for(anext(observed), DEADLINE)
        assert first.value == b"a"
        await a.proclaim("a2")
        assert (await asyncio.wait_for(anext(observed), DEADLINE)).value == b"a2"
        with pytest.raises(NotLeader):
            await b.proclaim("b2")  # still campaigning, not leading
        assert not b_task.done()
        await a.resign()
        await asyncio.wait_for(b_task, DEADLINE)
        assert (await asyncio.wait_for(anext(observed), DEADLINE)).value == b"b"
        leader = await observer.leader()
        assert leader is not None and leader.value == b"b" and await b.is_leader() and not await a.is_leader()
        await observed.aclose()


async def test_service_registry_discovers_and_watches(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c:
        registry = ServiceRegistry(c, prefix=prefix)
        async with Session(c, ttl=10) as s1:
            s2 = await Session(c, ttl=10).__aenter__()
            await registry.register(s1, "web", "i1", {"port": 8001})
            snapshot = await registry.discover("web")
            assert {i: inst.metadata for i, inst in snapshot.instances.items()} == {"i1": {"port": 8001}}
            changes = registry.watch("web", after=snapshot.revision)
            await registry.register(s2, "web", "i2", {"port": 8002})
            up = await asyncio.wait_for(anext(changes), DEADLINE)
            assert up.up and up.instance.instance_id == "i2" and up.instance.metadata == {"port": 8002}
            await s2.close()  # the instance dies: its lease goes, and the registration with it
            down = await asyncio.wait_for(anext(changes), DEADLINE)
            assert not down.up and down.instance.instance_id == "i2" and down.revision > up.revision
            await changes.aclose()
            assert set((await registry.discover("web")).instances) == {"i1"}


async def test_session_store_expires_idle_sessions(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c:
        store = SessionStore(c, prefix=prefix, ttl=2)
        sid = await store.create({"user": "ann"})
        assert await store.get(sid) == {"user": "ann"}
        assert await store.update(sid, {"user": "ann", "cart": 1})
        assert await store.get(sid) == {"user": "ann", "cart": 1}
        assert await store.touch(sid)
        gone = await store.create({"user": "bob"})
        assert await store.delete(gone) and await store.get(gone) is None and not await store.delete(gone)

        async def expired() -> bool:
            return await store.get(sid) is None

        await eventually(expired, "the idle session to expire")
        assert not await store.touch(sid) and not await store.update(sid, {})


async def test_rate_limiter_grants_exactly_the_limit_per_window(endpoints: list[str], prefix: str) -> None:
    now = [1000.0]
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(endpoints)) for _ in range(3)]
        limiters = [
            RateLimiter(c, "api", limit=4, window=10, prefix=prefix, clock=lambda: now[0]) for c in clients
        ]
        answers = await asyncio.gather(*(limiters[i % 3].try_acquire() for i in range(10)))
        assert answers.count(True) == 4 and await limiters[0].count() == 4
        now[0] += 10  # the next window
        assert await limiters[1].try_acquire() and await limiters[2].count() == 1
        keys = [kv.key for kv in (await clients[0].get(prefix, prefix=True)).kvs]
        assert len(keys) == 1  # the past window's counter was removed


async def test_feature_flags_reach_every_reader_through_the_watch(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as admin_client, Client(endpoints) as reader_client:
        admin = FeatureFlags(admin_client, prefix=prefix)
        await admin.set("preexisting", True)
        async with FeatureFlags(reader_client, prefix=prefix) as reader:
            assert reader.is_enabled("preexisting")
            changes: list[tuple[str, Any]] = []
            reader.on_change(lambda name, value: changes.append((name, value)))
            revision = await admin.set("dark_mode", {"enabled": True, "percent": 10})
            await reader.wait_revision(revision, DEADLINE)
            assert reader.value("dark_mode") == {"enabled": True, "percent": 10}
            await admin.delete("preexisting")
            await reader.wait_revision(revision + 1, DEADLINE)
            assert not reader.is_enabled("preexisting")
            assert changes == [("dark_mode", {"enabled": True, "percent": 10}), ("preexisting", None)]


async def test_compare_helpers_used_by_recipes(endpoints: list[str], prefix: str) -> None:
    # The recipes' CAS building blocks: create-if-absent and mod_revision CAS.
    async with Client(endpoints) as c:
        key = prefix + "k"
        created = await c.txn().if_(Compare.create_revision(key) == 0).then(Op.put(key, "1")).commit()
        again = await c.txn().if_(Compare.create_revision(key) == 0).then(Op.put(key, "2")).commit()
        assert created.succeeded and not again.succeeded and await c.get_str(key) == "1"
