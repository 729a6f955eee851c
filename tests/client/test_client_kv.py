"""The client's KV, txn and error behaviour against a real 3-node cluster, plus the pure parts
(prefix ranges, error mapping, txn encoding) without one.

Covers: put/get/delete with str and bytes; every range option; txns built with ``Compare``/``Op``
(both branches, every compare target, nested txns); typed errors mapped back from the server's
messages, with etcd's codes and outcomes; ``SyncClient``; an unreachable endpoint list.
"""

from __future__ import annotations

import pytest

from raftkv import errors
from raftkv.client import (
    Client,
    Compare,
    EndpointsUnavailable,
    Op,
    RangeResponse,
    SortOrder,
    SortTarget,
    SyncClient,
    Txn,
    error_from_body,
    prefix_end,
)
from tests.cluster.harness import free_ports

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


# --- pure --------------------------------------------------------------------------------------


def test_prefix_end_increments_the_last_byte_below_0xff() -> None:
    assert prefix_end(b"abc") == b"abd"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_end(b"") == b"\0"


@pytest.mark.parametrize(
    ("message", "grpc_code", "expected"),
    [
        ("etcdserver: mvcc: required revision has been compacted", 11, errors.Compacted),
        ("etcdserver: mvcc: required revision is a future revision", 11, errors.FutureRevision),
        ("etcdserver: requested lease not found", 5, errors.LeaseNotFound),
        ("etcdserver: no leader", 14, errors.NoLeader),
        ("etcdserver: request timed out", 14, errors.Timeout),
        ("etcdserver: leader changed", 14, errors.LeaderChanged),
        ("etcdserver: key is not provided", 3, errors.InvalidArgument),
        ("grpc: received message larger than max (3000000 vs. 2097152)", 8, errors.MessageTooLarge),
        ("raftkv does not implement /v3/lock/lock yet", 12, errors.Unimplemented),
        ("etcdserver: something new", 14, errors.Timeout),  # unknown UNAVAILABLE: outcome unknown
        ("strange", 13, errors.Internal),
    ],
)
def test_error_bodies_map_back_to_the_error_classes(
    message: str, grpc_code: int, expected: type[errors.RaftkvError]
) -> None:
    exc = error_from_body(message, grpc_code)
    assert type(exc) is expected
    assert exc.message == message
    assert exc.code.spec.grpc_code == grpc_code or expected in (errors.Timeout, errors.Internal)


def test_txn_builder_encodes_compares_and_ops_as_the_gateway_expects() -> None:
    captured: list[dict[str, object]] = []
    txn = (
        Txn(captured.append)
        .if_(Compare.value("k") == "v", Compare.mod_revision("k") < 7, Compare.version("p", prefix=True) > 0)
        .then(Op.put("k", b"w", lease=0x10, prev_kv=True), Op.get("p", prefix=True, limit=2))
        .else_(Op.delete("k"))
    )
    txn.commit()
    (body,) = captured
    assert body["compare"] == [
        {"result": "EQUAL", "target": "VALUE", "key": "aw==", "value": "dg=="},
        {"result": "LESS", "target": "MOD", "key": "aw==", "mod_revision": "7"},
        {"result": "GREATER", "target": "VERSION", "key": "cA==", "version": "0", "range_end": "cQ=="},
    ]
    assert body["success"] == [
        {"request_put": {"key": "aw==", "value": "dw==", "lease": "16", "prev_kv": True}},
        {"request_range": {"key": "cA==", "range_end": "cQ==", "limit": "2"}},
    ]
    assert body["failure"] == [{"request_delete_range": {"key": "aw=="}}]


def test_compare_rejects_operands_of_the_wrong_type() -> None:
    with pytest.raises(TypeError):
        _ = Compare.value("k") == 3
    with pytest.raises(TypeError):
        _ = Compare.version("k") == "3"


# --- against a cluster ---------------------------------------------------------------------------


async def test_put_get_delete_round_trip(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c:
        put = await c.put(prefix + "a", "1")
        assert put.header is not None and put.header.revision > 1
        assert await c.get_str(prefix + "a") == "1"
        await c.put((prefix + "b").encode(), b"\x00\xff")
        assert await c.get_value(prefix + "b") == b"\x00\xff"
        assert await c.get_value(prefix + "missing") is None
        again = await c.put(prefix + "a", "2", prev_kv=True)
        assert again.prev_kv is not None and again.prev_kv.value == b"1"
        kv = (await c.get(prefix + "a")).kvs[0]
        assert put.header is not None and again.header is not None
        assert (kv.version, kv.create_revision, kv.mod_revision) == (
            2,
            put.header.revision,
            again.header.revision,
        )
        deleted = await c.delete(prefix, prefix=True, prev_kv=True)
        assert deleted.deleted == 2
        assert sorted(kv.key for kv in deleted.prev_kvs) == [(prefix + "a").encode(), (prefix + "b").encode()]
        assert (await c.get(prefix, prefix=True)).kvs == ()


async def test_range_options(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c:
        revisions = {}
        for key, value in (("c", "1"), ("a", "3"), ("b", "2")):
            resp = await c.put(prefix + key, value)
            assert resp.header is not None
            revisions[key] = resp.header.revision

        def keys(resp: RangeResponse) -> list[str]:
            return [kv.key.decode()[len(prefix) :] for kv in resp.kvs]

        assert keys(await c.get(prefix, prefix=True)) == ["a", "b", "c"]
        limited = await c.get(prefix, prefix=True, limit=2)
        assert keys(limited) == ["a", "b"] and limited.more and limited.count == 3
        assert keys(await c.get(prefix + "b", from_key=True, limit=10))[:2] == ["b", "c"]
        assert keys(await c.get(prefix + "a", prefix + "c")) == ["a", "b"]
        by_value = await c.get(
            prefix, prefix=True, sort_target=SortTarget.VALUE, sort_order=SortOrder.DESCEND
        )
        assert keys(by_value) == ["a", "b", "c"]
        by_create = await c.get(prefix, prefix=True, sort_target="create", sort_order="ascend")
        assert keys(by_create) == ["c", "a", "b"]
        counted = await c.get(prefix, prefix=True, count_only=True)
        assert counted.kvs == () and counted.count == 3
        only_keys = await c.get(prefix, prefix=True, keys_only=True)
        assert [kv.value for kv in only_keys.kvs] == [b"", b"", b""]
        old = await c.get(prefix, prefix=True, revision=revisions["a"])
        assert keys(old) == ["a", "c"]
        stale_ok = await c.get(prefix + "a", serializable=True)
        assert isinstance(stale_ok, RangeResponse)
        newer = await c.get(prefix, prefix=True, min_create_revision=revisions["a"])
        assert keys(newer) == ["a", "b"]


async def test_txn_branches_and_compare_targets(endpoints: list[str], prefix: str) -> None:
    k = prefix + "k"
    async with Client(endpoints) as c:
        created = await c.put(k, "v1")
        assert created.header is not None
        rev = created.header.revision
        ok = await (
            c.txn()
            .if_(
                Compare.value(k) == "v1",
                Compare.version(k) == 1,
                Compare.create_revision(k) == rev,
                Compare.mod_revision(k) < rev + 1,
                Compare.lease(k) == 0,
            )
            .then(Op.put(k, "v2"), Op.get(k))
            .else_(Op.get(k))
            .commit()
        )
        assert ok.succeeded
        got = ok.responses[1].response
        assert isinstance(got, RangeResponse) and got.kvs[0].value == b"v2"
        failed = await c.txn().if_(Compare.value(k) == "v1").then(Op.delete(k)).else_(Op.get(k)).commit()
        assert not failed.succeeded
        assert await c.get_str(k) == "v2"
        nested = await (
            c.txn().then(Op.txn([Compare.value(k) == "v2"], [Op.put(prefix + "n", "yes")], [])).commit()
        )
        assert nested.succeeded and await c.get_str(prefix + "n") == "yes"
        empty = await c.txn().commit()
        assert empty.succeeded and empty.responses == ()


async def test_server_errors_arrive_as_typed_exceptions(endpoints: list[str], prefix: str) -> None:
    async with Client(endpoints) as c:
        with pytest.raises(errors.InvalidArgument) as invalid:
            await c.put("", "x")
        assert invalid.value.message == "etcdserver: key is not provided" and invalid.value.retryable
        current = (await c.get(prefix + "x")).header
        assert current is not None
        with pytest.raises(errors.FutureRevision) as future:
            await c.get(prefix + "x", revision=current.revision + 1000)
        assert future.value.code.spec.grpc_code == 11
        with pytest.raises(errors.InvalidArgument, match="duplicate key"):
            await c.txn().then(Op.put(prefix + "d", "1"), Op.put(prefix + "d", "2")).commit()
        assert await c.get_value(prefix + "d") is None  # nothing of the failed txn was applied
        with pytest.raises(errors.LeaseNotFound):
            await c.put(prefix + "l", "x", lease=0x7777)
        w1 = await c.put(prefix + "c", "1")
        await c.put(prefix + "c", "2")
        assert w1.header is not None
        await c.compact(w1.header.revision + 1)
        with pytest.raises(errors.Compacted):
            await c.get(prefix + "c", revision=w1.header.revision)
        with pytest.raises(errors.Compacted):
            await c.compact(w1.header.revision)


async def test_unreachable_endpoints_fail_with_a_not_applied_error() -> None:
    (port,) = free_ports(1)
    async with Client([f"127.0.0.1:{port}"], timeout=1.0, dial_timeout=0.5) as c:
        with pytest.raises(EndpointsUnavailable) as exc:
            await c.put("k", "v")
    assert exc.value.retryable


async def test_a_dead_endpoint_in_the_list_is_skipped(endpoints: list[str], prefix: str) -> None:
    (port,) = free_ports(1)
    async with Client([f"127.0.0.1:{port}", *endpoints]) as c:
        await c.put(prefix + "k", "v")  # a write: the refused connection sent nothing
        assert await c.get_str(prefix + "k") == "v"
        assert c.endpoint != f"http://127.0.0.1:{port}"


def test_sync_client(endpoints: list[str], prefix: str) -> None:
    with SyncClient(",".join(endpoints)) as c:
        c.put(prefix + "k", "v")
        assert c.get_str(prefix + "k") == "v"
        resp = c.txn().if_(Compare.value(prefix + "k") == "v").then(Op.put(prefix + "k", "w")).commit()
        assert resp.succeeded
        assert c.get(prefix, prefix=True).kvs[0].value == b"w"
        assert c.delete(prefix + "k").deleted == 1
        assert c.status().version
        assert len(c.member_list().members) == 3
        thread = c._thread
    assert not thread.is_alive()
