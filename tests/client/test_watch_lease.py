"""The client's watch and lease APIs against a real cluster (API.md §4, §5).

Covers: watches from now, from a past revision (replay), on a prefix, with prev_kv and filters;
compaction reported as ``WatchCompacted`` (an ``errors.Compacted``) with the compact revision;
``next_event`` time-outs that lose nothing; a watch that cannot start; ``SyncWatch`` and
``SyncLease``; lease grant, time-to-live with keys, listing, keepalive (background and once),
revoke deleting the keys, ``Lease`` as a context manager, ``lost`` set when the lease is revoked
behind the keepalive's back.
"""

from __future__ import annotations

import asyncio

import pytest

from raftkv import errors
from raftkv.client import Client, EndpointsUnavailable, EventType, SyncClient, WatchCompacted, collect
from tests.cluster.harness import free_ports

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

EVENT_DEADLINE = 20.0


async def test_watch_from_now_sees_later_writes_in_order(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c:
        await c.put(prefix + "before", "x")
        async with c.watch(prefix, prefix=True, prev_kv=True) as watch:
            await c.put(prefix + "a", "1")
            await c.put(prefix + "a", "2")
            await c.delete(prefix + "a")
            events = await collect(watch, 3, EVENT_DEADLINE)
    assert [e.type for e in events] == [EventType.PUT, EventType.PUT, EventType.DELETE]
    assert [e.kv.value for e in events if e.kv] == [b"1", b"2", b""]
    assert events[0].prev_kv is None and events[1].prev_kv is not None and events[1].prev_kv.value == b"1"
    assert events[2].kv is not None and events[2].kv.key == (prefix + "a").encode()
    revisions = [e.kv.mod_revision for e in events if e.kv]
    assert revisions == sorted(revisions) and len(set(revisions)) == 3


async def test_watch_replays_history_from_a_past_revision_with_filters(
    endpoints: list[str], prefix: str
) -> None:
    async with Client(endpoints) as c:
        first = await c.put(prefix + "k", "1")
        await c.delete(prefix + "k")
        await c.put(prefix + "k", "2")
        assert first.header is not None
        async with c.watch(prefix + "k", start_revision=first.header.revision) as watch:
            replayed = await collect(watch, 3, EVENT_DEADLINE)
        async with c.watch(prefix + "k", start_revision=first.header.revision, filters=["NODELETE"]) as puts:
            only_puts = await collect(puts, 2, EVENT_DEADLINE)
    assert [e.type for e in replayed] == [EventType.PUT, EventType.DELETE, EventType.PUT]
    assert [e.kv.value for e in only_puts if e.kv] == [b"1", b"2"]


async def test_watch_replays_a_history_larger_than_one_line_buffer(endpoints: list[str], prefix: str) -> None:
    # Catch-up messages of up to about 1 MiB: far above aiohttp's default 128 KiB line limit.
    value = "v" * 4096
    async with Client(endpoints) as c:
        first = await c.put(prefix + "big/0", value)
        for i in range(1, 120):
            await c.put(f"{prefix}big/{i}", value)
        assert first.header is not None
        async with c.watch(prefix + "big/", prefix=True, start_revision=first.header.revision) as watch:
            events = await collect(watch, 120, EVENT_DEADLINE)
    assert len(events) == 120 and all(e.kv is not None and len(e.kv.value) == 4096 for e in events)


async def test_watch_below_the_compact_revision_raises_compacted(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c:
        old = await c.put(prefix + "k", "1")
        newer = await c.put(prefix + "k", "2")
        assert old.header is not None and newer.header is not None
        await c.compact(newer.header.revision)
        watch = c.watch(prefix + "k", start_revision=old.header.revision)
        with pytest.raises(WatchCompacted) as exc:
            await watch.next_event(EVENT_DEADLINE)
        assert isinstance(exc.value, errors.Compacted) and exc.value.compact_revision == newer.header.revision


def test_sync_watch_and_lease(endpoints: list[str], prefix: str) -> None:
    with SyncClient(endpoints) as c, c.watch(prefix, prefix=True) as watch:
        c.put(prefix + "s", "1")
        event = watch.next_event(EVENT_DEADLINE)
        assert event.kv is not None and event.kv.value == b"1"
        assert watch.next_revision == event.kv.mod_revision + 1
        with c.grant(10) as lease:
            c.put(prefix + "leased", "x", lease=lease.id)
            assert lease.time_to_live(keys=True).keys == ((prefix + "leased").encode(),)
        assert lease.lost and c.get_value(prefix + "leased") is None
        assert [next(watch).type, next(watch).type] == [EventType.PUT, EventType.DELETE]


async def test_lease_grant_ttl_keys_list_revoke(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c:
        lease = await c.grant(30)
        assert lease.id > 0 and lease.ttl == 30
        await c.put(prefix + "a", "1", lease=lease.id)
        await c.put(prefix + "b", "2", lease=lease.id)
        ttl = await lease.time_to_live(keys=True)
        assert ttl.grantedTTL == 30 and 0 < ttl.TTL <= 30
        assert sorted(ttl.keys) == [(prefix + "a").encode(), (prefix + "b").encode()]
        assert lease.id in await c.leases()
        assert (await c.get(prefix + "a")).kvs[0].lease == lease.id
        assert await c.keepalive_once(lease.id) == 30
        await lease.revoke()
        assert lease.lost.is_set()
        assert (await c.get(prefix, prefix=True)).kvs == ()
        assert (await c.time_to_live(lease.id)).TTL == -1
        assert await c.keepalive_once(lease.id) == 0
        with pytest.raises(errors.LeaseNotFound):
            await c.revoke(lease.id)
        with pytest.raises(errors.LeaseExists):
            await c.grant(30, lease_id=(await c.grant(30)).id)


async def test_background_keepalive_outlives_the_ttl_and_stops_on_exit(
    endpoints: list[str], prefix: str
) -> None:
    async with Client(endpoints) as c:
        lease = await c.grant(2)
        async with lease:
            await c.put(prefix + "k", "v", lease=lease.id)
            # Let more than two TTLs pass: only the keepalive task keeps the key.
            await asyncio.sleep(5)
            assert await c.get_str(prefix + "k") == "v"
            assert not lease.lost.is_set()
        assert await c.get_value(prefix + "k") is None


async def test_lost_is_set_when_the_lease_is_revoked_elsewhere(endpoints: list[str]) -> None:
    async with Client(endpoints) as c, Client(endpoints) as other:
        lease = await c.grant(3)
        await lease.keepalive()
        await other.revoke(lease.id)
        await asyncio.wait_for(lease.lost.wait(), EVENT_DEADLINE)
        await lease.stop_keepalive()


async def test_next_event_times_out_without_losing_the_stream(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c, c.watch(prefix, prefix=True) as watch:
        with pytest.raises(TimeoutError):
            await watch.next_event(0.3)
        await c.put(prefix + "late", "x")
        event = await watch.next_event(EVENT_DEADLINE)
        assert event.kv is not None and event.kv.value == b"x"


async def test_a_watch_that_cannot_start_fails_after_the_timeout() -> None:
    (port,) = free_ports(1)
    async with Client([f"127.0.0.1:{port}"], timeout=1.0, dial_timeout=0.2) as c:
        with pytest.raises(EndpointsUnavailable):
            await c.watch("k").start()
