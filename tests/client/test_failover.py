"""Failover: the client keeps working when the node it talks to dies, and never repeats a write
whose outcome is unknown.

Covers: reads retry on another node after SIGKILL of the current one; writes go on after the leader
is killed (a write in flight may end as "outcome unknown", never as a silent duplicate); a hung node
(accepts, never answers) costs a read half its deadline and then the read fails over, while a write
to it raises ``errors.Timeout`` and is not re-sent elsewhere; a watch resumes on another node from
the last delivered revision + 1 without gaps or duplicates; a lease kept alive through failover.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from raftkv import errors
from raftkv.client import Client, EventType
from tests.client.conftest import endpoints_of
from tests.cluster.harness import Cluster, free_ports

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

Factory = Callable[..., Cluster]


async def test_reads_retry_on_another_node_when_the_current_one_is_killed(own_cluster: Factory) -> None:
    cluster = own_cluster(3)
    async with Client(endpoints_of(cluster), timeout=20) as c:
        await c.put("k", "v")
        victim = next(n for n in cluster.nodes if n.client_url == c.endpoint)
        victim.kill()
        assert await c.get_str("k") == "v"
        assert c.endpoint != victim.client_url


async def test_writes_continue_after_the_leader_is_killed(own_cluster: Factory) -> None:
    cluster = own_cluster(3)
    leader = cluster.leader()
    # Start on the leader so that the kill hits the node the client uses.
    order = [leader.client_url] + [n.client_url for n in cluster.nodes if n is not leader]
    acknowledged: dict[str, str] = {}
    unknown: dict[str, str] = {}
    async with Client(order, timeout=20) as c:
        await c.put("w/0", "0")
        acknowledged["w/0"] = "0"
        leader.kill()
        for i in range(1, 6):
            key = f"w/{i}"
            try:
                await c.put(key, str(i))
                acknowledged[key] = str(i)
            except errors.Timeout:
                unknown[key] = str(i)
        resp = await c.get("w/", prefix=True)
    seen = {kv.key.decode(): kv.value.decode() for kv in resp.kvs}
    assert acknowledged.items() <= seen.items()
    assert set(seen) <= set(acknowledged) | set(unknown)
    assert all(kv.version == 1 for kv in resp.kvs)  # no write was applied twice
    assert len(acknowledged) >= 2


@pytest.fixture
async def hung_endpoint() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP endpoint that accepts every request and never answers; yields (url, paths seen)."""
    seen: list[str] = []
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        seen.append(request.path)
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    (port,) = free_ports(1)
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        release.set()
        await runner.cleanup()


async def test_a_read_fails_over_from_a_hung_node(
    hung_endpoint: tuple[str, list[str]], endpoints: list[str]
) -> None:
    url, seen = hung_endpoint
    async with Client(endpoints) as c:
        await c.put("hung/r", "v")
    async with Client([url, *endpoints], timeout=4) as c:
        assert await c.get_str("hung/r") == "v"
    assert "/v3/kv/range" in seen


async def test_a_write_with_unknown_outcome_is_not_resent(
    hung_endpoint: tuple[str, list[str]], endpoints: list[str]
) -> None:
    url, seen = hung_endpoint
    async with Client([url, *endpoints], timeout=1.5) as c:
        with pytest.raises(errors.Timeout) as exc:
            await c.put("hung/w", "v")
        assert not exc.value.retryable
    assert seen == ["/v3/kv/put"]
    async with Client(endpoints) as c:
        assert await c.get_value("hung/w") is None  # no other node got it


async def test_watch_resumes_on_another_node_without_gaps_or_duplicates(own_cluster: Factory) -> None:
    cluster = own_cluster(3)
    leader = cluster.leader()
    victim = next(n for n in cluster.nodes if n is not leader)
    # The watch starts on a follower that gets killed; the writer talks to the leader, so that its
    # writes are not disturbed (a write during an election may end with an unknown outcome).
    watch_order = [victim.client_url] + [n.client_url for n in cluster.nodes if n is not victim]
    async with Client([leader.client_url], timeout=20) as writer, Client(watch_order, timeout=20) as w:
        watch = w.watch("ev/", prefix=True, prev_kv=True)
        await watch.start()
        first = watch.next_revision
        written: list[int] = []

        async def write(n: int) -> None:
            for _ in range(n):
                i = len(written)
                resp = await writer.put(f"ev/{i % 3}", str(i))
                assert resp.header is not None
                written.append(resp.header.revision)

        await write(5)
        events = [await watch.next_event(20) for _ in range(5)]
        victim.kill()
        await write(5)
        await writer.delete("ev/0")
        events += [await watch.next_event(30) for _ in range(6)]
        await watch.close()
    revisions = [e.kv.mod_revision for e in events if e.kv is not None]
    assert revisions[:10] == written and revisions == sorted(set(revisions))
    assert revisions[0] >= first
    assert events[-1].type == EventType.DELETE and events[-1].prev_kv is not None
    assert watch.reconnects >= 1


async def test_lease_keepalive_survives_the_loss_of_the_leader_it_uses(own_cluster: Factory) -> None:
    cluster = own_cluster(3)
    leader = cluster.leader()
    order = [leader.client_url] + [n.client_url for n in cluster.nodes if n is not leader]
    async with Client(order, timeout=20) as c:
        lease = await c.grant(3)
        async with lease:
            await c.put("lk", "v", lease=lease.id)
            leader.kill()
            # Let more than two TTLs pass: without working keepalives the key would be gone.
            await asyncio.sleep(7)
            assert not lease.lost.is_set()
            assert await c.get_str("lk") == "v"
        assert lease.lost.is_set()
        assert await c.get_value("lk") is None  # leaving the block revoked the lease
