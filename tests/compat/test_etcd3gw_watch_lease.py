"""The unmodified ``etcd3gw`` client's watch and lease APIs against a real raftkv (API.md §11).

etcd3gw's watch posts one ``create_request`` and reads the chunked response with
``iter_content(chunk_size=None)``, ``json.loads``-ing every chunk: it relies on one message per
chunk, skips ``created`` messages and decodes ``kv.key``/``kv.value``; ``cancel`` shuts the socket
down. Its lease calls are ``/lease/grant`` (``{"TTL":n,"ID":0}``), ``/lease/keepalive`` parsed with
``resp.json()`` (so exactly one JSON document), and the ``/kv/lease/timetolive`` and
``/kv/lease/revoke`` aliases. ``lock`` combines a lease with txns.

etcd3gw's iterators block forever, so events are moved to a queue by a helper thread and read
with deadlines. Watches that must not miss a write start at an explicit ``start_revision``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import WatchTimedOut

from tests.cluster.harness import HOST, Node, wait_until

DEADLINE = 30.0


@pytest.fixture
def client(server: Node) -> Iterator[Etcd3Client]:
    c = Etcd3Client(host=HOST, port=server.client_port, timeout=30)
    try:
        yield c
    finally:
        c.session.close()


def revision(client: Etcd3Client) -> int:
    return int(client.status()["header"]["revision"])


class Pump:
    """Moves events from an etcd3gw watch iterator onto a queue (the iterator has no timeout)."""

    def __init__(self, watch: tuple[Iterator[Any], Callable[[], None]]) -> None:
        self.iterator, self.cancel = watch
        self.events: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for event in self.iterator:
            self.events.put(event)

    def take(self, n: int, deadline: float = DEADLINE) -> list[Any]:
        out = []
        for _ in range(n):
            try:
                out.append(self.events.get(timeout=deadline))
            except queue.Empty:
                raise AssertionError(f"only {len(out)} of {n} watch events arrived: {out}") from None
        return out

    def close(self) -> None:
        self.cancel()
        self.thread.join(timeout=10)


def test_watch_key_events_and_cancel(client: Etcd3Client, prefix: str) -> None:
    key = prefix + "k"
    start = revision(client) + 1
    pump = Pump(client.watch(key, start_revision=start))
    try:
        client.put(key, "one")
        client.put(prefix + "other", "x")  # a different key: not delivered
        client.put(key, "two")
        client.delete(key)
        put1, put2, deleted = pump.take(3)
    finally:
        pump.close()
    assert put1["kv"]["key"] == key.encode() and put1["kv"]["value"] == b"one"
    assert "type" not in put1, "PUT events have no type"
    assert int(put1["kv"]["mod_revision"]) == start
    assert put2["kv"]["value"] == b"two" and put2["kv"]["version"] == "2"
    assert deleted["type"] == "DELETE" and deleted["kv"]["key"] == key.encode()
    assert "value" not in deleted["kv"]
    assert not pump.thread.is_alive(), "cancel ends the iterator"


def test_watch_without_start_revision_sees_writes_from_now(client: Etcd3Client, prefix: str) -> None:
    key = prefix + "live"
    client.put(key, "old")
    pump = Pump(client.watch(key))
    try:
        # The watch is registered asynchronously: write until one event arrives (bounded).
        got: list[Any] = []

        def one_event() -> bool:
            client.put(key, "new")
            try:
                got.append(pump.events.get(timeout=0.5))
            except queue.Empty:
                return False
            return True

        wait_until(one_event, DEADLINE, "an event on a watch from now")
    finally:
        pump.close()
    assert got[0]["kv"]["value"] == b"new", "the write before the watch is not replayed"


def test_watch_prefix_history_filters_and_prev_kv(client: Etcd3Client, prefix: str) -> None:
    start = revision(client) + 1
    client.put(prefix + "a", "1")
    client.put(prefix + "b", "2")
    client.put(prefix + "a", "3")
    client.delete(prefix + "b")
    everything = Pump(client.watch_prefix(prefix, start_revision=start))
    deletes = Pump(client.watch_prefix(prefix, start_revision=start, filters=["NOPUT"], prev_kv=True))
    puts = Pump(client.watch_prefix(prefix, start_revision=start, filters=["NODELETE"]))
    try:
        all_events = everything.take(4)
        (deleted,) = deletes.take(1)
        put_events = puts.take(3)
    finally:
        for p in (everything, deletes, puts):
            p.close()
    assert [(e["kv"]["key"], e.get("type", "PUT")) for e in all_events] == [
        ((prefix + "a").encode(), "PUT"),
        ((prefix + "b").encode(), "PUT"),
        ((prefix + "a").encode(), "PUT"),
        ((prefix + "b").encode(), "DELETE"),
    ]
    assert [int(e["kv"]["mod_revision"]) for e in all_events] == list(range(start, start + 4))
    assert deleted["type"] == "DELETE" and deleted["prev_kv"]["key"] and deleted["prev_kv"]["mod_revision"]
    assert all("type" not in e for e in put_events)
    assert deletes.events.empty(), "NOPUT delivered a put"


def test_watch_once(client: Etcd3Client, prefix: str) -> None:
    key = prefix + "once"
    start = revision(client) + 1
    client.put(key, "v1")
    client.put(key, "v2")
    event = client.watch_once(key, timeout=DEADLINE, start_revision=start)
    assert event["kv"]["value"] == b"v1"
    with pytest.raises(WatchTimedOut):
        # Nothing is written to this key: the call gives up after its own timeout.
        client.watch_once(prefix + "silent", timeout=0.5)


def test_lease_grant_ttl_keys_refresh_revoke(client: Etcd3Client, prefix: str) -> None:
    lease = client.lease(ttl=60)
    assert isinstance(lease.id, int) and lease.id > 0
    assert client.put(prefix + "a", "1", lease=lease)
    assert client.put(prefix + "b", "2", lease=lease)
    assert 0 < lease.ttl() <= 60
    assert sorted(lease.keys()) == [(prefix + "a").encode(), (prefix + "b").encode()]
    assert lease.refresh() == 60
    ((_, meta),) = client.get(prefix + "a", metadata=True)
    assert int(meta["lease"]) == lease.id
    assert lease.revoke() is True
    assert client.get_prefix(prefix) == []
    assert lease.ttl() == -1
    assert lease.refresh() == -1, "a dead lease answers without TTL, which etcd3gw maps to -1"
    assert lease.keys() == []


def test_lease_expiry_with_watch(client: Etcd3Client, prefix: str) -> None:
    start = revision(client) + 1
    lease = client.lease(ttl=1)  # raised to the minimum TTL
    assert 0 < lease.ttl() <= 2  # the 2 s minimum of a 1 s election timeout
    client.put(prefix + "e1", "x", lease=lease)
    client.put(prefix + "e2", "y", lease=lease)
    pump = Pump(client.watch_prefix(prefix, start_revision=start))
    try:
        events = pump.take(4, deadline=DEADLINE)
    finally:
        pump.close()
    assert [e.get("type", "PUT") for e in events] == ["PUT", "PUT", "DELETE", "DELETE"]
    assert events[2]["kv"]["mod_revision"] == events[3]["kv"]["mod_revision"]
    assert client.get_prefix(prefix) == []
    assert lease.ttl() == -1


def test_lock_with_lease(client: Etcd3Client, prefix: str) -> None:
    lock = client.lock(id=prefix + "lock", ttl=30)
    assert lock.acquire() is True
    assert lock.is_acquired()
    other = client.lock(id=prefix + "lock", ttl=30)
    assert other.acquire() is False
    assert lock.refresh() == 30
    assert lock.release() is True
    assert not lock.is_acquired()
    assert other.acquire() is True
    other.release()
