"""The etcd v3 JSON contract (API.md §1, §3, §6, §7) against a real single-node raftkv process.

Every endpoint and error that raftkv implements: range (all key selections, limit, revision,
sort, keys_only/count_only, serializable, min/max filters), put (prev_kv, ignore_value,
ignore_lease), deleterange, txn (compares, branches, nested, validation), compaction, status,
member list, ``/version``, ``/health``, the ``/v3beta/`` alias, decoding errors, the mux's 404/405/
OPTIONS/CORS behaviour and the two size limits. Responses are compared as parsed JSON; field order
is checked (``object_pairs_hook``) where API.md makes it part of the contract. After every error
the node keeps serving and the store revision has not moved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import raftkv
from tests.cluster.harness import Node, Response, b64, unb64

CORS = {
    "access-control-allow-headers": "accept, content-type, authorization",
    "access-control-allow-methods": "POST, GET, OPTIONS, PUT, DELETE",
    "access-control-allow-origin": "*",
}
HEADER_ORDER = ["cluster_id", "member_id", "revision", "raft_term"]
KV_ORDER = ["key", "create_revision", "mod_revision", "version", "value", "lease"]
STATUS_ORDER = [
    "header", "version", "dbSize", "leader", "raftIndex", "raftTerm", "raftAppliedIndex", "errors",
    "dbSizeInUse", "isLearner",
]


# --- helpers -------------------------------------------------------------------------------------


def call(node: Node, method: str, body: Any = None, **kw: Any) -> Response:
    return node.post(f"/v3/{method}", body if body is not None else {}, **kw)


def ok(node: Node, method: str, body: Any = None) -> dict[str, Any]:
    r = call(node, method, body)
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json", r.headers
    assert r.headers.get("grpc-metadata-content-type") == "application/grpc", r.headers
    data: dict[str, Any] = r.json()
    return data


def revision(node: Node) -> int:
    return int(ok(node, "maintenance/status")["header"]["revision"])


def put(node: Node, key: str, value: str = "", **extra: Any) -> dict[str, Any]:
    return ok(node, "kv/put", {"key": b64(key), "value": b64(value), **extra})


def rng(node: Node, key: str, end: str | bytes | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key), **extra}
    if end is not None:
        body["range_end"] = b64(end)
    return ok(node, "kv/range", body)


def keys(resp: dict[str, Any]) -> list[str]:
    return [unb64(kv["key"]).decode() for kv in resp.get("kvs", [])]


def values(resp: dict[str, Any]) -> list[str]:
    return [unb64(kv.get("value", "")).decode() for kv in resp.get("kvs", [])]


def prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def order_of(pairs: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in pairs]


def assert_in_order(names: list[str], reference: list[str]) -> None:
    assert all(n in reference for n in names), (names, reference)
    assert names == sorted(names, key=reference.index), (names, reference)


def assert_error(r: Response, status: int, code: int, message: str | None = None) -> dict[str, Any]:
    assert r.status == status, r
    assert r.headers["content-type"] == "application/json", r.headers
    # raftkv sends a Content-Length and no trailer on errors (API.md §1.4).
    assert "content-length" in r.headers and "trailer" not in r.headers, r.headers
    # etcd 3.5 field order: error, code, message (§1.6).
    assert order_of(r.json_pairs()) == ["error", "code", "message"], r
    body: dict[str, Any] = r.json()
    assert body["code"] == code and body["error"] == body["message"], body
    if message is not None:
        assert body["message"] == message, body
    return body


@contextmanager
def unchanged(node: Node, prefix: str) -> Iterator[None]:
    """The block must leave the store revision and the prefix's contents untouched."""
    before_rev = revision(node)
    before = rng(node, prefix, prefix_end(prefix))
    yield
    assert revision(node) == before_rev
    after = rng(node, prefix, prefix_end(prefix))
    assert after.get("kvs") == before.get("kvs")


# --- range -----------------------------------------------------------------------------------------


def test_range_single_key_shape_and_order(server: Node, prefix: str) -> None:
    k = prefix + "a"
    w = put(server, k, "v1")
    r = call(server, "kv/range", {"key": b64(k)})
    pairs = r.json_pairs()
    assert order_of(pairs) == ["header", "kvs", "count"]
    header = dict(pairs)["header"]
    assert order_of(header) == HEADER_ORDER
    kv = dict(pairs)["kvs"][0]
    assert order_of(kv) == ["key", "create_revision", "mod_revision", "version", "value"]
    body = r.json()
    rev = w["header"]["revision"]
    assert body["kvs"] == [
        {"key": b64(k), "create_revision": rev, "mod_revision": rev, "version": "1", "value": b64("v1")}
    ]
    assert body["count"] == "1" and "more" not in body
    # 64-bit integers are strings.
    assert all(isinstance(v, str) for v in body["header"].values())
    assert body["header"]["revision"] == rev


def test_range_missing_key_omits_kvs_and_count(server: Node, prefix: str) -> None:
    body = rng(server, prefix + "missing")
    assert set(body) == {"header"}, body
    # key "\0" alone is the single key 0x00, not everything.
    assert "kvs" not in ok(server, "kv/range", {"key": "AA=="})


def test_range_prefix_from_key_and_all(server: Node, prefix: str) -> None:
    for s in ("a", "b", "c", "d"):
        put(server, prefix + s, s)
    body = rng(server, prefix, prefix_end(prefix))
    assert keys(body) == [prefix + s for s in "abcd"] and body["count"] == "4"
    # [b, d)
    assert keys(rng(server, prefix + "b", prefix + "d")) == [prefix + "b", prefix + "c"]
    # range_end <= key: empty, not an error
    assert "kvs" not in rng(server, prefix + "c", prefix + "a")
    # from-key: every key >= key
    from_key = ok(server, "kv/range", {"key": b64(prefix + "b"), "range_end": "AA=="})
    got = keys(from_key)
    assert got[:3] == [prefix + "b", prefix + "c", prefix + "d"]
    assert all(k >= prefix + "b" for k in got) and got == sorted(got)
    # all keys
    everything = ok(server, "kv/range", {"key": "AA==", "range_end": "AA=="})
    assert {prefix + s for s in "abcd"} <= set(keys(everything))
    assert int(everything["count"]) == len(everything["kvs"])


def test_range_limit_more_count(server: Node, prefix: str) -> None:
    for i in range(5):
        put(server, f"{prefix}{i}", str(i))
    body = rng(server, prefix, prefix_end(prefix), limit=2)
    assert keys(body) == [f"{prefix}0", f"{prefix}1"]
    assert body["more"] is True and body["count"] == "5"
    body = rng(server, prefix, prefix_end(prefix), limit="5")  # int64 as a JSON string
    assert len(body["kvs"]) == 5 and "more" not in body
    # limit <= 0 means no limit
    assert len(rng(server, prefix, prefix_end(prefix), limit=-1)["kvs"]) == 5


def test_range_revision(server: Node, prefix: str) -> None:
    k = prefix + "k"
    r1 = int(put(server, k, "one")["header"]["revision"])
    r2 = int(put(server, k, "two")["header"]["revision"])
    old = rng(server, k, revision=r1)
    assert values(old) == ["one"]
    # header.revision is the store's current revision, not the one asked for
    assert int(old["header"]["revision"]) >= r2
    assert values(rng(server, k, revision=r2)) == ["two"]
    assert values(rng(server, k, revision=-5)) == ["two"]  # negative = current
    # before the key existed
    assert "kvs" not in rng(server, k, revision=r1 - 1)
    with unchanged(server, prefix):
        r = call(server, "kv/range", {"key": b64(k), "revision": revision(server) + 1000})
        assert_error(r, 400, 11, "etcdserver: mvcc: required revision is a future revision")


def test_range_sort(server: Node, prefix: str) -> None:
    put(server, prefix + "a", "3")
    put(server, prefix + "b", "1")
    put(server, prefix + "c", "2")
    put(server, prefix + "b", "1")  # b: version 2, latest mod
    end = prefix_end(prefix)
    assert keys(rng(server, prefix, end, sort_order="DESCEND")) == [prefix + s for s in "cba"]
    assert keys(rng(server, prefix, end, sort_order=2, sort_target="KEY")) == [prefix + s for s in "cba"]
    assert values(rng(server, prefix, end, sort_order="ASCEND", sort_target="VALUE")) == ["1", "2", "3"]
    # NONE order with a non-KEY target sorts ascending
    assert keys(rng(server, prefix, end, sort_target="VERSION"))[-1] == prefix + "b"
    assert keys(rng(server, prefix, end, sort_order="DESCEND", sort_target="MOD"))[0] == prefix + "b"
    assert keys(rng(server, prefix, end, sort_order="DESCEND", sort_target="CREATE")) == [
        prefix + s for s in "cba"
    ]
    with unchanged(server, prefix):
        r = call(server, "kv/range", {"key": b64(prefix), "sort_order": "SIDEWAYS"})
        assert_error(r, 400, 3)


def test_range_keys_only_count_only_serializable(server: Node, prefix: str) -> None:
    for s in "xyz":
        put(server, prefix + s, "val")
    end = prefix_end(prefix)
    body = rng(server, prefix, end, keys_only=True)
    assert keys(body) == [prefix + s for s in "xyz"]
    assert all("value" not in kv and "version" in kv for kv in body["kvs"])
    body = rng(server, prefix, end, count_only=True, limit=1)
    assert "kvs" not in body and body["count"] == "3" and "more" not in body
    assert rng(server, prefix, end, serializable=True)["kvs"] == rng(server, prefix, end)["kvs"]


def test_range_min_max_revisions(server: Node, prefix: str) -> None:
    r_a = int(put(server, prefix + "a", "1")["header"]["revision"])
    r_b = int(put(server, prefix + "b", "1")["header"]["revision"])
    r_a2 = int(put(server, prefix + "a", "2")["header"]["revision"])  # a: create r_a, mod r_a2
    end = prefix_end(prefix)
    body = rng(server, prefix, end, min_mod_revision=r_a2)
    assert keys(body) == [prefix + "a"] and body["count"] == "2"  # count is before the filters
    assert keys(rng(server, prefix, end, max_mod_revision=r_b)) == [prefix + "b"]
    assert keys(rng(server, prefix, end, min_create_revision=r_b)) == [prefix + "b"]
    assert keys(rng(server, prefix, end, max_create_revision=r_a)) == [prefix + "a"]
    assert "kvs" not in rng(server, prefix, end, max_mod_revision=-1)


def test_range_empty_key_is_an_error(server: Node, prefix: str) -> None:
    with unchanged(server, prefix):
        assert_error(call(server, "kv/range", {}), 400, 3, "etcdserver: key is not provided")
        assert_error(call(server, "kv/range", b""), 400, 3, "etcdserver: key is not provided")
        assert_error(call(server, "kv/range", b"null"), 400, 3, "etcdserver: key is not provided")
        r = call(server, "kv/range", {"range_end": b64("z")})
        assert_error(r, 400, 3, "etcdserver: key is not provided")


# --- put -------------------------------------------------------------------------------------------


def test_put_prev_kv_and_empty_value(server: Node, prefix: str) -> None:
    k = prefix + "k"
    first = put(server, k, "v1", prev_kv=True)
    assert set(first) == {"header"}  # new key: no prev_kv
    second = ok(server, "kv/put", {"key": b64(k), "value": b64("v2"), "prevKv": True})  # camelCase
    assert unb64(second["prev_kv"]["value"]) == b"v1"
    assert second["prev_kv"]["version"] == "1"
    assert int(second["header"]["revision"]) == int(first["header"]["revision"]) + 1
    put(server, k, "")
    kv = rng(server, k)["kvs"][0]
    assert "value" not in kv and kv["version"] == "3"


def test_put_ignore_value_and_ignore_lease(server: Node, prefix: str) -> None:
    k = prefix + "k"
    put(server, k, "keep")
    touched = ok(server, "kv/put", {"key": b64(k), "ignore_value": True, "prev_kv": True})
    assert unb64(touched["prev_kv"]["value"]) == b"keep"
    kv = rng(server, k)["kvs"][0]
    assert unb64(kv["value"]) == b"keep" and kv["version"] == "2"
    ok(server, "kv/put", {"key": b64(k), "value": b64("new"), "ignore_lease": True})
    ok(server, "kv/put", {"key": b64(k), "ignore_lease": True, "ignore_value": True})
    kv = rng(server, k)["kvs"][0]
    assert unb64(kv["value"]) == b"new" and kv["version"] == "4" and "lease" not in kv

    with unchanged(server, prefix):
        r = call(server, "kv/put", {"key": b64(k), "value": b64("x"), "ignore_value": True})
        assert_error(r, 400, 3, "etcdserver: value is provided")
        r = call(server, "kv/put", {"key": b64(prefix + "nope"), "ignore_value": True})
        assert_error(r, 400, 3, "etcdserver: key not found")
        r = call(server, "kv/put", {"key": b64(k), "lease": 5, "ignore_lease": True})
        assert_error(r, 400, 3, "etcdserver: lease is provided")
        r = call(server, "kv/put", {"key": b64(prefix + "nope"), "ignore_lease": True})
        assert_error(r, 400, 3, "etcdserver: key not found")
        r = call(server, "kv/put", {"value": b64("x")})
        assert_error(r, 400, 3, "etcdserver: key is not provided")


def test_put_unknown_lease_is_404(server: Node, prefix: str) -> None:
    with unchanged(server, prefix):
        r = call(server, "kv/put", {"key": b64(prefix + "k"), "value": b64("v"), "lease": 12345})
        assert_error(r, 404, 5, "etcdserver: requested lease not found")


# --- deleterange -----------------------------------------------------------------------------------


def test_deleterange(server: Node, prefix: str) -> None:
    for s in "abc":
        put(server, prefix + s, s)
    rev = revision(server)
    missing = ok(server, "kv/deleterange", {"key": b64(prefix + "zzz")})
    assert set(missing) == {"header"} and int(missing["header"]["revision"]) == rev  # no bump
    one = ok(server, "kv/deleterange", {"key": b64(prefix + "a")})
    assert one["deleted"] == "1" and "prev_kvs" not in one
    assert int(one["header"]["revision"]) == rev + 1
    rest = ok(
        server, "kv/deleterange", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "prev_kv": True}
    )
    assert rest["deleted"] == "2" and int(rest["header"]["revision"]) == rev + 2
    assert [unb64(kv["key"]).decode() for kv in rest["prev_kvs"]] == [prefix + "b", prefix + "c"]
    assert "kvs" not in rng(server, prefix, prefix_end(prefix))
    # a later put starts a new incarnation
    put(server, prefix + "b", "again")
    kv = rng(server, prefix + "b")["kvs"][0]
    assert kv["version"] == "1" and int(kv["create_revision"]) == rev + 3


# --- txn -------------------------------------------------------------------------------------------


def cmp(key: str, target: str, result: str, **value: Any) -> dict[str, Any]:
    return {"key": b64(key), "target": target, "result": result, **value}


def op_put(key: str, value: str) -> dict[str, Any]:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def op_range(key: str) -> dict[str, Any]:
    return {"request_range": {"key": b64(key)}}


def test_txn_compares(server: Node, prefix: str) -> None:
    k, missing = prefix + "k", prefix + "missing"
    w = put(server, k, "bar")
    rev = int(w["header"]["revision"])
    holds = [
        cmp(k, "VALUE", "EQUAL", value=b64("bar")),
        cmp(k, "VALUE", "GREATER", value=b64("ba")),
        cmp(k, "VALUE", "LESS", value=b64("bar2")),
        cmp(k, "VALUE", "NOT_EQUAL", value=b64("baz")),
        cmp(k, "VERSION", "EQUAL", version=1),
        cmp(k, "CREATE", "EQUAL", create_revision=rev),
        cmp(k, "MOD", "LESS", mod_revision=rev + 1),
        cmp(k, "MOD", "GREATER", mod_revision=str(rev - 1)),
        cmp(k, "LEASE", "EQUAL", lease=0),
        cmp(missing, "VERSION", "EQUAL", version=0),
        cmp(missing, "CREATE", "EQUAL", create_revision=0),
        {"key": b64(missing)},  # neither target nor value: VERSION EQUAL 0
        {"key": b64(k), "target": 3, "result": 0, "value": b64("bar")},  # enums as numbers
    ]
    fails = [
        cmp(k, "VALUE", "EQUAL", value=b64("nope")),
        cmp(k, "VERSION", "GREATER", version=1),
        cmp(missing, "VALUE", "NOT_EQUAL", value=b64("x")),  # missing key: VALUE always false
        cmp(k, "MOD", "EQUAL", version=rev),  # wrong union member: mod reads 0
    ]
    for c in holds:
        body = ok(server, "kv/txn", {"compare": [c]})
        assert body.get("succeeded") is True, (c, body)
    for c in fails:
        body = ok(server, "kv/txn", {"compare": [c]})
        assert "succeeded" not in body, (c, body)
    # all compares must hold
    body = ok(server, "kv/txn", {"compare": [holds[0], fails[0]]})
    assert "succeeded" not in body
    assert revision(server) == rev  # compare-only txns write nothing


def test_txn_branches_and_responses(server: Node, prefix: str) -> None:
    k = prefix + "k"
    put(server, k, "v0")
    rev = revision(server)
    body = ok(server, "kv/txn", {
        "compare": [cmp(k, "VALUE", "EQUAL", value=b64("v0"))],
        "success": [op_range(k), op_put(k, "v1"), op_range(k)],
        "failure": [op_put(prefix + "failure", "x")],
    })
    assert body["succeeded"] is True
    assert int(body["header"]["revision"]) == rev + 1
    before, put_resp, after = body["responses"]
    assert values(before["response_range"]) == ["v0"]
    assert before["response_range"]["header"] == {"revision": str(rev)}
    assert put_resp == {"response_put": {"header": {"revision": str(rev + 1)}}}
    assert values(after["response_range"]) == ["v1"]
    assert after["response_range"]["header"] == {"revision": str(rev + 1)}
    assert "kvs" not in rng(server, prefix + "failure")

    body = ok(server, "kv/txn", {
        "compare": [cmp(k, "VALUE", "EQUAL", value=b64("v0"))],
        "success": [op_put(prefix + "success", "x")],
        "failure": [{"request_delete_range": {"key": b64(k), "prev_kv": True}}],
    })
    assert "succeeded" not in body
    (resp,) = body["responses"]
    assert resp["response_delete_range"]["deleted"] == "1"
    assert int(body["header"]["revision"]) == rev + 2
    assert "kvs" not in rng(server, prefix + "success") and "kvs" not in rng(server, k)


def test_txn_nested(server: Node, prefix: str) -> None:
    a, b, c = prefix + "a", prefix + "b", prefix + "c"
    put(server, c, "here")
    body = ok(server, "kv/txn", {
        "success": [
            op_put(a, "1"),
            {"request_txn": {
                "compare": [cmp(c, "VALUE", "EQUAL", value=b64("here"))],
                "success": [op_put(b, "2"), op_range(a)],
            }},
        ],
    })
    assert body["succeeded"] is True
    nested = body["responses"][1]["response_txn"]
    assert nested["header"] == {} and nested["succeeded"] is True
    # a nested op sees the parent's earlier writes
    assert values(nested["responses"][1]["response_range"]) == ["1"]
    assert values(rng(server, b)) == ["2"]
    body = ok(server, "kv/txn", {"success": [{"request_txn": {
        "compare": [cmp(c, "VALUE", "EQUAL", value=b64("nope"))], "failure": [op_put(prefix + "d", "3")],
    }}]})
    assert body["responses"] == [{"response_txn": {"header": {}, "responses": [
        {"response_put": {"header": {"revision": body["header"]["revision"]}}}
    ]}}]
    # no compares and an empty body: succeeded, nothing written
    rev = revision(server)
    assert ok(server, "kv/txn", {}).get("succeeded") is True
    assert revision(server) == rev


def test_txn_nested_compare_sees_the_state_before_the_txn(server: Node, prefix: str) -> None:
    a, b = prefix + "a", prefix + "b"
    body = ok(server, "kv/txn", {"success": [
        op_put(a, "1"),
        {"request_txn": {"compare": [cmp(a, "VALUE", "EQUAL", value=b64("1"))], "success": [op_put(b, "2")]}},
    ]})
    # etcd 3.4.23 answers {"response_txn":{"header":{}}}: the nested compare saw no key a.
    assert body["responses"][1] == {"response_txn": {"header": {}}}
    assert "kvs" not in rng(server, b)


def test_txn_validation_errors(server: Node, prefix: str) -> None:
    k = prefix + "k"
    put(server, k, "v")
    with unchanged(server, prefix):
        r = call(server, "kv/txn", {"success": [op_put(k, "1"), op_put(k, "2")]})
        assert_error(r, 400, 3, "etcdserver: duplicate key given in txn request")
        r = call(server, "kv/txn", {"success": [
            {"request_delete_range": {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}},
            op_put(k, "1"),
        ]})
        assert_error(r, 400, 3, "etcdserver: duplicate key given in txn request")
        r = call(server, "kv/txn", {"success": [
            op_put(k, "1"), {"request_txn": {"success": [op_put(k, "2")]}},
        ]})
        assert_error(r, 400, 3, "etcdserver: duplicate key given in txn request")
        many = [op_put(f"{prefix}m{i}", "x") for i in range(129)]
        r = call(server, "kv/txn", {"success": many})
        assert_error(r, 400, 3, "etcdserver: too many operations in txn request")
        r = call(server, "kv/txn", {"compare": [cmp(k, "VERSION", "EQUAL")] * 129})
        assert_error(r, 400, 3, "etcdserver: too many operations in txn request")
        r = call(server, "kv/txn", {"success": [{}]})
        assert_error(r, 400, 3, "etcdserver: key not found")
        r = call(server, "kv/txn", {"compare": [{"target": "VALUE", "value": b64("v")}]})
        assert_error(r, 400, 3, "etcdserver: key is not provided")
        # a runtime error in the executed branch aborts the whole txn (the first put is not applied)
        r = call(server, "kv/txn", {"success": [
            op_put(prefix + "new", "x"),
            {"request_put": {"key": b64(prefix + "absent"), "ignore_value": True}},
        ]})
        assert_error(r, 400, 3, "etcdserver: key not found")
    # the same key in the two branches is fine, and 128 ops are allowed
    ok(server, "kv/txn", {"success": [op_put(k, "1")], "failure": [op_put(k, "2")]})
    ok(server, "kv/txn", {"success": [op_put(f"{prefix}m{i}", "x") for i in range(128)]})
    assert rng(server, prefix + "m", prefix + "n", count_only=True)["count"] == "128"


# --- compaction ------------------------------------------------------------------------------------


def test_compaction(server: Node, prefix: str) -> None:
    k = prefix + "k"
    r1 = int(put(server, k, "old")["header"]["revision"])
    r2 = int(put(server, k, "new")["header"]["revision"])
    current = revision(server)
    with unchanged(server, prefix):
        r = call(server, "kv/compaction", {"revision": current + 10})
        assert_error(r, 400, 11, "etcdserver: mvcc: required revision is a future revision")
    body = ok(server, "kv/compaction", {"revision": r2, "physical": True})
    assert set(body) == {"header"} and int(body["header"]["revision"]) == current
    assert values(rng(server, k, revision=r2)) == ["new"]  # the compact revision stays readable
    with unchanged(server, prefix):
        assert_error(
            call(server, "kv/range", {"key": b64(k), "revision": r1}),
            400, 11, "etcdserver: mvcc: required revision has been compacted",
        )
        assert_error(
            call(server, "kv/range", {"key": b64(k), "revision": r1, "serializable": True}),
            400, 11, "etcdserver: mvcc: required revision has been compacted",
        )
        for rev in (r2, r1, 0):
            assert_error(
                call(server, "kv/compaction", {"revision": rev}),
                400, 11, "etcdserver: mvcc: required revision has been compacted",
            )


# --- maintenance and cluster -----------------------------------------------------------------------


def test_status(server: Node) -> None:
    r = call(server, "maintenance/status")
    assert r.status == 200
    assert_in_order(order_of(r.json_pairs()), STATUS_ORDER)
    body = r.json()
    assert order_of(dict(r.json_pairs())["header"]) == HEADER_ORDER
    version = json.loads(server.post("/version", method="GET").body)["etcdserver"]
    assert body["version"] == version
    # single node: it is the leader; indices and term are 64-bit strings
    assert body["leader"] == body["header"]["member_id"]
    assert int(body["raftTerm"]) >= 1 and int(body["raftIndex"]) >= int(body["raftAppliedIndex"]) >= 1
    assert body["header"]["raft_term"] == body["raftTerm"]


def test_member_list(server: Node) -> None:
    r = call(server, "cluster/member/list")
    assert r.status == 200
    pairs = r.json_pairs()
    assert order_of(pairs) == ["header", "members"]
    header = dict(pairs)["header"]
    assert order_of(header) == ["cluster_id", "member_id", "raft_term"]  # no revision (§1.5)
    (member,) = r.json()["members"]
    assert_in_order(list(member), ["ID", "name", "peerURLs", "clientURLs", "isLearner"])
    assert member["ID"] == r.json()["header"]["member_id"] and member["name"] == server.name
    assert member["peerURLs"] == [server.peer_url] and member["clientURLs"] == [server.client_url]


def test_version_and_health(server: Node) -> None:
    r = server.post("/version", method="GET")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    # etcd's two fields (etcd3gw picks its API prefix from "etcdserver"), plus raftkv's own.
    assert set(body) == {"etcdserver", "etcdcluster", "raftkv"}
    assert tuple(int(p) for p in body["etcdserver"].split(".")[:2]) >= (3, 4)
    assert body["raftkv"] == raftkv.__version__
    r = server.post("/health", method="GET")
    assert r.status == 200 and r.json() == {"health": "true"}
    assert r.headers["content-type"].startswith("text/plain")


def test_v3beta_alias(server: Node, prefix: str) -> None:
    k = prefix + "k"
    w = server.post("/v3beta/kv/put", {"key": b64(k), "value": b64("beta")})
    assert w.status == 200, w
    r = server.post("/v3beta/kv/range", {"key": b64(k)})
    assert r.status == 200 and values(r.json()) == ["beta"]
    assert values(rng(server, k)) == ["beta"]


# --- decoding --------------------------------------------------------------------------------------


def test_decoding_leniency(server: Node, prefix: str) -> None:
    k = prefix + "k"
    put(server, k, "v")
    # Content-Type is ignored; unknown fields are ignored; null = absent; trailing bytes ignored;
    # the last duplicate key wins; int64 as string or number.
    for body in (
        f'{{"key":"{b64(k)}","bogus":1}}',
        f'{{"key":"{b64(k)}","range_end":null}}',
        f'{{"key":"{b64(k)}"}} trailing',
        f'{{"key":"{b64(prefix)}","key":"{b64(k)}","limit":"1"}}',
    ):
        r = server.post("/v3/kv/range", body, headers={"Content-Type": "text/plain"})
        assert r.status == 200 and values(r.json()) == ["v"], (body, r)


@pytest.mark.parametrize(
    ("body", "message", "method"),
    [
        ('{"key":"Zm9v!"}', "illegal base64 data at input byte 4", "kv/range"),
        ('{"key":"Zm9"}', None, "kv/range"),  # unpadded
        ('{"key":"-_-_"}', None, "kv/range"),  # URL-safe alphabet
        ('{"key":"Zm9v","serializable":"true"}', None, "kv/range"),
        ('{"key":"Zm9v","serializable":1}', None, "kv/range"),
        ('{"key":"Zm9v","limit":1.5}', None, "kv/range"),
        ('{"key":"Zm9v","limit":"five"}', None, "kv/range"),
        ('{"key":5}', None, "kv/range"),
        ('{"key":"Zm9v","sort_order":"NOPE"}', None, "kv/range"),
        ('{"key":"Zm9v"', None, "kv/range"),  # truncated JSON
        ("[1,2]", None, "kv/range"),
        ('{"key":"Zm9v","value":"eA","prev_kv":false}', None, "kv/put"),
        ('{"key":"Zm9v","value":"eA==","prev_kv":"true"}', None, "kv/put"),
        ('{"key":"Zm9v","value":"eA==","lease":1.5}', None, "kv/put"),
        ('{"key":"Zm9v","range_end":7}', None, "kv/deleterange"),
        ('{"compare":{}}', None, "kv/txn"),
        ('{"compare":[{"key":"Zm9v","result":"ALMOST"}]}', None, "kv/txn"),
        ('{"revision":"x"}', None, "kv/compaction"),
    ],
)
def test_decoding_errors_are_400_code_3(
    server: Node, prefix: str, body: str, message: str | None, method: str
) -> None:
    with unchanged(server, prefix):
        assert_error(server.post(f"/v3/{method}", body), 400, 3, message)


def test_put_invalid_base64_value(server: Node, prefix: str) -> None:
    with unchanged(server, prefix):
        r = call(server, "kv/put", {"key": b64(prefix + "k"), "value": "eA"})
        assert_error(r, 400, 3)
        r = call(server, "kv/txn", {"success": [{"request_put": {"key": "!!", "value": "eA=="}}]})
        assert_error(r, 400, 3)


# --- the mux ---------------------------------------------------------------------------------------


def test_mux_404_405_options_and_cors(server: Node) -> None:
    r = server.post("/v3/kv/nosuch", {})
    assert (r.status, r.body) == (404, b"Not Found\n") and r.headers["content-type"].startswith("text/plain")
    for path in ("/v3alpha/kv/range", "/nothing", "/v2/keys"):
        r = server.post(path, {})
        assert (r.status, r.body) == (404, b"404 page not found\n"), path
        assert r.headers["content-type"].startswith("text/plain")
    for method in ("GET", "PUT", "DELETE"):
        r = server.post("/v3/kv/range", method=method)
        assert (r.status, r.body) == (405, b"Method Not Allowed\n"), method
    r = server.post("/v3/kv/range", method="OPTIONS")
    assert (r.status, r.body) == (200, b"")
    r = server.post("/anything/at/all", method="OPTIONS")
    assert (r.status, r.body) == (200, b"")
    # CORS headers on every kind of response
    responses = [
        call(server, "kv/range", {"key": b64("x")}),
        call(server, "kv/range", {}),
        server.post("/v3/kv/nosuch", {}),
        server.post("/v3/kv/range", method="GET"),
        server.post("/v3/kv/range", method="OPTIONS"),
        server.post("/version", method="GET"),
        server.post("/health", method="GET"),
    ]
    for resp in responses:
        for name, value in CORS.items():
            assert resp.headers.get(name) == value, (resp, resp.headers)


# --- size limits -----------------------------------------------------------------------------------


def test_size_limits(small_server: Node, prefix: str) -> None:
    node = small_server
    k = prefix + "k"
    put(node, k, "small")
    with unchanged(node, prefix):
        # over max-request-bytes + 512 KiB at the receive path: 429, gRPC code 8
        # (a raw value over the limit: the limit counts decoded bytes, API.md §9)
        huge = json.dumps({"key": b64(k), "value": b64(b"x" * 600_000)})
        assert len(huge) > 65536 + 512 * 1024
        body = assert_error(node.post("/v3/kv/put", huge), 429, 8)
        assert body["message"].startswith("grpc: received message larger than max (")
        assert body["message"].endswith(f" vs. {65536 + 512 * 1024})")
        # under the receive limit but over max-request-bytes once proposed: 400 request is too large
        r = call(node, "kv/put", {"key": b64(k), "value": b64(b"y" * 70_000)})
        assert_error(r, 400, 3, "etcdserver: request is too large")
        r = call(node, "kv/txn", {"success": [
            op_put(prefix + "t1", "a" * 40_000), op_put(prefix + "t2", "b" * 40_000)
        ]})
        assert_error(r, 400, 3, "etcdserver: request is too large")
    # comfortably under the limit: stored whole
    put(node, k, "z" * 60_000)
    assert values(rng(node, k)) == ["z" * 60_000]


def test_receive_limit_counts_decoded_bytes(small_server: Node, prefix: str) -> None:
    # 460,000 raw bytes: under 65,536 + 512 KiB decoded, over it as base64 JSON.
    body = json.dumps({"key": b64(prefix + "k"), "value": b64(b"x" * 460_000)})
    assert_error(small_server.post("/v3/kv/put", body), 400, 3, "etcdserver: request is too large")
