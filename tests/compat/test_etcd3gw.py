"""The unmodified PyPI client ``etcd3gw`` against a real raftkv process (API.md §11).

etcd3gw discovers the API prefix from ``GET /version``, sends int64s and enums as JSON numbers,
posts txns with ``data=json.dumps(...)`` (no Content-Type) and decides success by the *presence* of
``kvs``, ``succeeded`` and ``deleted``, so these tests exercise exactly the zero-omission rules of
§1.3. Lease-based calls (``lease()``, ``lock()``) are not covered here because raftkv's lease API
is not implemented yet; the lock's txn shapes are sent through ``transaction()`` instead.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception

from tests.cluster.harness import HOST, Node


def enc(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def client(server: Node) -> Iterator[Etcd3Client]:
    c = Etcd3Client(host=HOST, port=server.client_port, timeout=30)
    try:
        yield c
    finally:
        c.session.close()


def test_api_path_discovery(client: Etcd3Client) -> None:
    assert client.api_path == "/v3/"


def test_put_get_delete(client: Etcd3Client, prefix: str) -> None:
    k = prefix + "key"
    assert client.get(k) == []
    assert client.put(k, "value") is True
    assert client.get(k) == [b"value"]
    ((value, meta),) = client.get(k, metadata=True)
    assert value == b"value" and meta["key"] == k.encode() and meta["version"] == "1"
    client.put(k, "")
    assert client.get(k) == [b""]  # empty value: omitted on the wire, etcd3gw defaults to ''
    assert client.delete(k) is True
    assert client.delete(k) is False  # 'deleted' absent when 0
    assert client.get(k) == []


def test_get_prefix_get_all_and_sorting(client: Etcd3Client, prefix: str) -> None:
    for name, value in (("b", "2"), ("a", "3"), ("c", "1")):
        client.put(prefix + name, value)
    got = client.get_prefix(prefix)
    assert [m["key"] for _, m in got] == [(prefix + n).encode() for n in "abc"]
    got = client.get_prefix(prefix, sort_order="descend", sort_target="value")
    assert [v for v, _ in got] == [b"3", b"2", b"1"]
    assert client.get(prefix, range_end=prefix + "b") == [b"3"]
    assert client.get(prefix + "a", range_end=prefix + "z", limit=2, keys_only=True) == [b"", b""]
    everything = client.get_all()
    assert {(prefix + n).encode() for n in "abc"} <= {m["key"] for _, m in everything}
    assert client.delete_prefix(prefix) is True
    assert client.get_prefix(prefix) == []


def test_replace(client: Etcd3Client, prefix: str) -> None:
    k = prefix + "k"
    client.put(k, "one")
    assert client.replace(k, "one", "two") is True
    assert client.replace(k, "one", "three") is False  # 'succeeded' absent when false
    assert client.get(k) == [b"two"]
    assert client.replace(prefix + "missing", "", "x") is False  # VALUE compare on a missing key


def test_create_if_absent(client: Etcd3Client, prefix: str) -> None:
    k = prefix + "k"
    assert client.create(k, "first") is True
    assert client.create(k, "second") is False
    assert client.get(k) == [b"first"]


def test_lock_shaped_transactions(client: Etcd3Client, prefix: str) -> None:
    """etcd3gw's Lock.acquire / release txns, minus the lease (not implemented in raftkv yet)."""
    k = prefix + "lock"

    def acquire(owner: str) -> bool:
        txn = {
            "compare": [{"key": enc(k), "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": enc(k), "value": enc(owner)}}],
            "failure": [{"request_range": {"key": enc(k)}}],
        }
        result = client.transaction(txn)
        return bool(result.get("succeeded", False))

    def release(owner: str) -> bool:
        txn = {
            "compare": [{"key": enc(k), "result": "EQUAL", "target": "VALUE", "value": enc(owner)}],
            "success": [{"request_delete_range": {"key": enc(k)}}],
        }
        result = client.transaction(txn)
        return bool(result.get("succeeded", False))

    assert acquire("alice") is True
    assert acquire("bob") is False
    result = client.transaction({
        "compare": [{"key": enc(k), "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
        "success": [],
        "failure": [{"request_range": {"key": enc(k)}}],
    })
    (resp,) = result["responses"]
    assert base64.b64decode(resp["response_range"]["kvs"][0]["value"]) == b"alice"
    assert release("bob") is False
    assert release("alice") is True
    assert client.get(k) == []
    assert acquire("bob") is True


def test_status_and_members(client: Etcd3Client, server: Node) -> None:
    status = client.status()
    assert status["leader"] == status["header"]["member_id"]
    assert int(status["raftIndex"]) >= 1
    (member,) = client.members()
    assert member["name"] == server.name
    assert member["clientURLs"] == [server.client_url]
    assert member["peerURLs"] == [server.peer_url]


def test_errors_raise_generic_exception(client: Etcd3Client, prefix: str) -> None:
    k = enc(prefix + "k")
    with pytest.raises(Etcd3Exception) as info:
        client.transaction({
            "compare": [],
            "success": [{"request_put": {"key": k, "value": k}}, {"request_put": {"key": k, "value": k}}],
            "failure": [],
        })
    # 400 maps to the generic exception (not one of the dedicated subclasses).
    assert type(info.value) is Etcd3Exception
    assert client.get(prefix + "k") == []
