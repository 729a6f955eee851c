"""Differential tests: the same request sequences against raftkv and a real etcd 3.4.

Each test starts a fresh single-node raftkv and a fresh single-node etcd (Debian's ``etcd-server``,
``/usr/bin/etcd``, installed by ``scripts/install-etcd`` when missing; the tests skip with the
reason when that is impossible) on free 127.0.0.1 ports with temp data dirs, sends both the same
requests in the same order, and compares status codes and parsed JSON bodies after normalising
what legitimately differs between two independent clusters: cluster and member ids, raft terms,
member names and URLs. Both stores start at revision 1 and receive identical writes, so revisions,
versions and keys must match exactly.

Deliberate differences are normalised in one place (``normalise``) with the reason beside each:
  * error field order (etcd 3.4: error, message, code; raftkv follows 3.5: error, code, message):
    bodies are compared parsed, so order is ignored here (test_api.py checks raftkv's order);
  * FAILED_PRECONDITION (gRPC 9): Debian's 3.4 answers 412, raftkv 400 like upstream 3.5 (API.md
    §1.6); the sequences below avoid code 9 paths, and ``same_status`` accepts either anyway;
  * the ``N`` in ``received message larger than max (N vs. M)``: etcd counts the protobuf size,
    raftkv the JSON body size;
  * JSON decoding error texts come from Go's decoder in etcd; only status and code are compared;
  * status: version, db sizes and raft indices are implementation details.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import HOST, Cluster, Node, Response, b64, free_ports, wait_until

ETCD = "/usr/bin/etcd"
INSTALL = Path(__file__).resolve().parents[2] / "scripts" / "install-etcd"
MAX_REQUEST_BYTES = 65536  # small, so the size-limit paths are cheap to reach on both servers


def ensure_etcd() -> None:
    if os.access(ETCD, os.X_OK):
        return
    try:
        done = subprocess.run([str(INSTALL)], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"etcd is not installed and scripts/install-etcd could not run: {exc!r}")
    if done.returncode != 0 or not os.access(ETCD, os.X_OK):
        pytest.skip(
            f"etcd is not installed and scripts/install-etcd failed ({done.returncode}): "
            f"{(done.stdout + done.stderr)[-500:]}"
        )


class EtcdNode(Node):
    """A real etcd process, reusing ``Node``'s start/kill/log/registry by overriding the command."""

    def args(self) -> list[str]:
        return [
            ETCD,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            *self.extra_args,
        ]


def wait_single_leader(node: Node) -> None:
    def ready() -> bool:
        assert node.alive, f"{node.name} exited:\n{node.log_text()}"
        return node.healthy() and node.status().get("leader") == node.member_id

    wait_until(ready, 60, f"{node.name} to lead itself", node.log_text)


@dataclass
class Pair:
    raftkv: Node
    etcd: Node


@pytest.fixture
def pair(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    ensure_etcd()
    limit = ["--max-request-bytes", str(MAX_REQUEST_BYTES)]
    cluster = Cluster(1, root=tmp_path / "raftkv", extra_args=limit)
    (tmp_path / "etcd").mkdir()
    client_port, peer_port = free_ports(2)
    etcd = EtcdNode(
        name="e1",
        client_port=client_port,
        peer_port=peer_port,
        data_dir=tmp_path / "etcd" / "data",
        log_path=tmp_path / "etcd" / "etcd.log",
        extra_args=limit,
    )
    etcd.initial_cluster = f"e1={etcd.peer_url}"
    try:
        etcd.start()
        cluster.start()
        wait_single_leader(etcd)
        yield Pair(cluster.nodes[0], etcd)
    finally:
        cluster.stop()
        if etcd.alive:
            etcd.kill()
        reports = (getattr(request.node, f"rep_{p}", None) for p in ("setup", "call"))
        if any(getattr(r, "failed", False) for r in reports):
            print(f"\n{cluster.logs()}\n----- etcd log:\n{etcd.log_text()}")


# --- normalisation -----------------------------------------------------------------------------------

GO_DECODE_PREFIXES = ("json: ", "unexpected EOF", "invalid character", "unknown value", "illegal base64")
EXACT_DECODE_PREFIXES = ("illegal base64", "unknown value")


def normalise(path: str, r: Response) -> Any:
    if not r.headers.get("content-type", "").startswith("application/json"):
        return r.body.decode(errors="replace")
    body = r.json()
    if isinstance(body, dict) and "error" in body and "code" in body:
        message = body["message"]
        if message.startswith("grpc: received message larger than max ("):
            message = "grpc: received message larger than max (N vs. M)"  # see the module docstring
        elif message.startswith(GO_DECODE_PREFIXES) and not message.startswith(EXACT_DECODE_PREFIXES):
            message = "<decode error>"  # Go's decoder wording (base64 and enum texts are matched exactly)
        return {"error": "<same as message>" if body["error"] == body["message"] else body["error"],
                "code": body["code"], "message": message}
    return _ids(body, path)


STATUS_DETAILS = ("version", "dbSize", "dbSizeInUse", "raftIndex", "raftAppliedIndex", "raftTerm", "leader")


def _ids(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "header":
                v = {hk: (f"<{hk}>" if hk in ("cluster_id", "member_id", "raft_term") else hv)
                     for hk, hv in v.items()}
            elif k == "members":
                v = [{mk: f"<{mk}>" if mk in ("ID", "name", "peerURLs", "clientURLs") else mv
                      for mk, mv in m.items()} for m in v]
            else:
                v = _ids(v, path)
            out[k] = v
        if path.endswith("maintenance/status"):
            # Implementation details (module docstring); the shape of the rest must agree.
            for k in STATUS_DETAILS:
                out.pop(k, None)
        return out
    if isinstance(value, list):
        return [_ids(v, path) for v in value]
    return value


def same_status(a: int, b: int) -> bool:
    # gRPC code 9 is 400 in raftkv (etcd 3.5) and 412 in Debian's etcd 3.4 (API.md §1.6).
    return a == b or {a, b} == {400, 412}


Step = tuple[str, Any] | tuple[str, Any, str]


def run(pair: Pair, steps: list[Step]) -> None:
    """Send every step to both servers; fail with every mismatch listed."""
    mismatches = []
    for i, step in enumerate(steps):
        path, body = step[0], step[1]
        method = step[2] if len(step) > 2 else "POST"  # type: ignore[misc]
        a = pair.raftkv.post(path, body, method=method)
        b = pair.etcd.post(path, body, method=method)
        na, nb = normalise(path, a), normalise(path, b)
        if not same_status(a.status, b.status) or na != nb:
            shown = body[:80] if isinstance(body, bytes) else json.dumps(body)[:300]
            mismatches.append(
                f"step {i}: {method} {path} {shown!r}\n"
                f"  raftkv {a.status}: {json.dumps(na)[:600]}\n  etcd   {b.status}: {json.dumps(nb)[:600]}"
            )
    assert not mismatches, "raftkv and etcd differ:\n" + "\n".join(mismatches)


# --- sequences ---------------------------------------------------------------------------------------


def put(k: str, v: str = "", **kw: Any) -> Step:
    return ("/v3/kv/put", {"key": b64(k), "value": b64(v), **kw})


def rng(k: str, end: str | None = None, **kw: Any) -> Step:
    body: dict[str, Any] = {"key": b64(k), **kw}
    if end is not None:
        body["range_end"] = "AA==" if end == "\0" else b64(end)
    return ("/v3/kv/range", body)


def delete(k: str, end: str | None = None, **kw: Any) -> Step:
    body: dict[str, Any] = {"key": b64(k), **kw}
    if end is not None:
        body["range_end"] = "AA==" if end == "\0" else b64(end)
    return ("/v3/kv/deleterange", body)


def txn(compare: list[Any] | None = None, success: list[Any] | None = None,
        failure: list[Any] | None = None) -> Step:
    body: dict[str, Any] = {}
    if compare is not None:
        body["compare"] = compare
    if success is not None:
        body["success"] = success
    if failure is not None:
        body["failure"] = failure
    return ("/v3/kv/txn", body)


def cmp(k: str, target: str, result: str, **v: Any) -> dict[str, Any]:
    return {"key": b64(k), "target": target, "result": result, **v}


def rput(k: str, v: str, **kw: Any) -> dict[str, Any]:
    return {"request_put": {"key": b64(k), "value": b64(v), **kw}}


def rrange(k: str) -> dict[str, Any]:
    return {"request_range": {"key": b64(k)}}


def test_put_range_delete_sequence(pair: Pair) -> None:
    steps: list[Step] = [
        rng("a"),
        put("a", "1"), put("b", "2"), put("c", "3"), put("d", "4"),
        put("a", "1b", prev_kv=True), put("e", ""), put("b", "2b", prev_kv=True),
        rng("a"), rng("e"), rng("zz"), rng("\0"),
        rng("a", "c"), rng("b", "\0"), rng("\0", "\0"), rng("c", "a"),
        rng("a", "z", limit=2), rng("a", "z", limit=-1), rng("a", "z", count_only=True, limit=1),
        rng("a", "z", keys_only=True),
        rng("a", "z", sort_order="DESCEND"), rng("a", "z", sort_target="VALUE", sort_order="DESCEND"),
        rng("a", "z", sort_target="VERSION"), rng("a", "z", sort_target="MOD", sort_order="ASCEND"),
        rng("a", "z", sort_target="CREATE", sort_order=2), rng("a", "z", sort_order=7),
        rng("a", revision=2), rng("a", revision=1), rng("a", "z", revision=4), rng("a", revision=-1),
        rng("a", "z", min_mod_revision=6), rng("a", "z", max_mod_revision=4),
        rng("a", "z", min_create_revision=3, max_create_revision=4), rng("a", "z", max_mod_revision=-1),
        rng("a", serializable=True),
        delete("zz"), delete("a", prev_kv=True), delete("b", "d"), delete("c", "\0", prev_kv=True),
        rng("\0", "\0"), rng("a", "z", revision=5),
        put("a", "again"), rng("a"),
        ("/v3beta/kv/range", {"key": b64("a")}),
        ("/v3/kv/put", {"key": b64("f"), "value": b64("x"), "ignore_value": False, "lease": "0"}),
        ("/v3/kv/put", {"key": b64("f"), "ignore_value": True, "prevKv": True}),
        ("/v3/kv/put", {"key": b64("f"), "ignore_lease": True, "value": b64("y")}),
        ("/v3/kv/put", {"key": b64("f"), "ignore_lease": True, "ignore_value": True}),
        rng("f"),
    ]
    run(pair, steps)


def test_txn_sequence(pair: Pair) -> None:
    steps: list[Step] = [
        put("k", "bar"), put("n", "1"),
        txn(),
        txn([cmp("k", "VALUE", "EQUAL", value=b64("bar"))],
            [rrange("k"), rput("k", "baz"), rrange("k")], [rput("x", "no")]),
        txn([cmp("k", "VALUE", "EQUAL", value=b64("bar"))], [rput("x", "no")],
            [rrange("k"), {"request_delete_range": {"key": b64("n"), "prev_kv": True}}]),
        txn([cmp("k", "VALUE", "GREATER", value=b64("bar"))]),
        txn([cmp("k", "VALUE", "LESS", value=b64("bar"))]),
        txn([cmp("missing", "VALUE", "NOT_EQUAL", value=b64("bar"))]),
        txn([cmp("missing", "VERSION", "EQUAL", version=0),
             cmp("missing", "CREATE", "EQUAL", create_revision="0")]),
        txn([cmp("k", "VERSION", "EQUAL", version=2)]),
        txn([cmp("k", "MOD", "GREATER", mod_revision=3)]),
        txn([cmp("k", "CREATE", "EQUAL", create_revision=2)]),
        txn([cmp("k", "MOD", "EQUAL", version=4)]),  # wrong union member
        txn([cmp("k", "LEASE", "EQUAL", lease=0)]),
        txn([{"key": b64("missing")}]),
        # compares over a range hold only if they hold for every key in it
        txn([{**cmp("a", "VERSION", "GREATER", version=0), "range_end": b64("z")}]),
        txn([{**cmp("a", "VALUE", "EQUAL", value=b64("baz")), "range_end": b64("z")}]),
        txn([{**cmp("k", "VALUE", "EQUAL", value=b64("baz")), "range_end": b64("l")}]),
        # nested txns whose compares do not depend on the parent's own writes (see
        # test_nested_txn_compare_sees_the_state_before_the_txn for the case that does)
        txn(None, [rput("p", "1"), {"request_txn": {
            "compare": [cmp("k", "VALUE", "EQUAL", value=b64("baz"))],
            "success": [rput("q", "2"), rrange("p")],
            "failure": [],
        }}]),
        txn(None, [{"request_txn": {"compare": [cmp("k", "VALUE", "EQUAL", value=b64("no"))],
                                    "failure": [rput("r", "3")]}}]),
        txn(None, [{"request_txn": {}}]),
        rng("\0", "\0"),
        # validation errors: nothing written
        txn(None, [rput("k", "1"), rput("k", "2")]),
        txn(None, [{"request_delete_range": {"key": b64("a"), "range_end": b64("z")}}, rput("k", "1")]),
        txn(None, [rput("k", "1"), {"request_txn": {"success": [rput("k", "2")]}}]),
        txn(None, [rput("k", "1")], [rput("k", "2")]),
        txn(None, [rput(f"m{i}", "x") for i in range(129)]),
        txn([cmp("k", "VERSION", "EQUAL")] * 129),
        txn(None, [{}]),
        txn([{"target": "VALUE", "value": b64("v")}]),
        txn(None, [rput("new", "x"), {"request_put": {"key": b64("absent"), "ignore_value": True}}]),
        txn(None, [rput("new", "x"), {"request_range": {"key": b64("k"), "revision": 1000}}]),
        txn(None, [{"request_put": {"key": b64("new"), "value": b64("x"), "lease": 99}}]),
        # problems in the branch not taken are not raised
        txn([cmp("k", "VALUE", "EQUAL", value=b64("nope"))], [rput("dup", "1"), rput("dup", "2")],
            [{"request_range": {"key": b64("k")}}]),
        txn(None, [rput(f"m{i}", "x") for i in range(128)]),
        rng("\0", "\0", count_only=True),
    ]
    run(pair, steps)


def test_compaction_sequence(pair: Pair) -> None:
    # Note: a compaction at revision 0 on a never-compacted etcd 3.4 store succeeds (its compact
    # revision starts at -1), while API.md §3.5 and raftkv reject it; the sequence compacts first.
    steps: list[Step] = [
        put("k", "1"), put("k", "2"), put("k", "3"), delete("k"), put("k", "4"),
        ("/v3/kv/compaction", {"revision": 100}),
        ("/v3/kv/compaction", {"revision": 3}),
        rng("k", revision=2), rng("k", revision=2, serializable=True), rng("k", revision=3), rng("k"),
        ("/v3/kv/compaction", {"revision": 3}),
        ("/v3/kv/compaction", {"revision": 2}),
        ("/v3/kv/compaction", {}),
        ("/v3/kv/compaction", {"revision": "6", "physical": True}),
        rng("k", revision=5), rng("k", revision=6),
        txn(None, [{"request_range": {"key": b64("k"), "revision": 4}}]),
        put("k", "5"), rng("k"),
    ]
    run(pair, steps)


def test_error_sequence(pair: Pair) -> None:
    big = b64(b"v" * 70_000)
    steps: list[Step] = [
        put("k", "v"),
        ("/v3/kv/range", {}), ("/v3/kv/range", b""), ("/v3/kv/range", b"null"),
        ("/v3/kv/range", {"range_end": b64("z")}),
        ("/v3/kv/put", {"value": b64("v")}),
        ("/v3/kv/deleterange", {}),
        ("/v3/kv/put", {"key": b64("k"), "value": b64("x"), "ignore_value": True}),
        ("/v3/kv/put", {"key": b64("nope"), "ignore_value": True}),
        ("/v3/kv/put", {"key": b64("k"), "lease": 5, "ignore_lease": True}),
        ("/v3/kv/put", {"key": b64("nope"), "ignore_lease": True}),
        ("/v3/kv/put", {"key": b64("k"), "value": b64("x"), "lease": 5}),
        ("/v3/kv/range", b'{"key":"Zm9v!"}'),
        ("/v3/kv/range", b'{"key":"Zm9"}'),
        ("/v3/kv/range", b'{"key":"-_-_"}'),
        ("/v3/kv/range", b'{"key":"Zm9v","serializable":"true"}'),
        ("/v3/kv/range", b'{"key":"Zm9v","limit":1.5}'),
        ("/v3/kv/range", b'{"key":"Zm9v","limit":"5"}'),
        ("/v3/kv/range", b'{"key":"Zm9v","sort_order":"NOPE"}'),
        ("/v3/kv/range", b'{"key":"Zm9v","bogus":[1,2],"range_end":null}'),
        ("/v3/kv/range", b'{"key":"Zm9v"} trailing'),
        ("/v3/kv/range", b'{"key":"Zm9v"'),
        ("/v3/kv/range", {"key": b64("k"), "revision": 99}),
        ("/v3/kv/put", {"key": b64("big"), "value": big}),
        # raw value over max-request-bytes + 512 KiB: the gRPC receive limit (429 on both)
        ("/v3/kv/put", json.dumps({"key": b64("huge"), "value": b64(b"h" * 600_000)}).encode()),
        ("/v3/kv/put", {"key": b64("fits"), "value": b64(b"f" * 60_000)}),
        ("/v3/kv/nosuch", {}),
        ("/v3alpha/kv/range", {"key": b64("k")}),
        ("/nothing", {}),
        ("/v3/kv/range", None, "GET"),
        ("/v3/kv/range", None, "OPTIONS"),
        ("/health", None, "GET"),
        rng("\0", "\0", keys_only=True),
    ]
    run(pair, steps)


def test_status_and_member_list_shapes(pair: Pair) -> None:
    run(pair, [("/v3/maintenance/status", {}), ("/v3/cluster/member/list", {}), put("k", "v"),
               ("/v3/maintenance/status", {})])
    for node in (pair.raftkv, pair.etcd):
        status = node.status()
        assert status["leader"] == status["header"]["member_id"]
        members = node.post("/v3/cluster/member/list", {}).json()["members"]
        assert [m["clientURLs"] for m in members] == [[f"http://{HOST}:{node.client_port}"]]
        version = node.post("/version", method="GET").json()
        assert tuple(int(p) for p in version["etcdserver"].split(".")[:2]) >= (3, 4)


def test_nested_txn_compare_sees_the_state_before_the_txn(pair: Pair) -> None:
    run(pair, [
        txn(None, [rput("p", "1"), {"request_txn": {"compare": [cmp("p", "VALUE", "EQUAL", value=b64("1"))],
                                                    "success": [rput("q", "2")], "failure": []}}]),
        rng("\0", "\0"),
    ])


def test_receive_limit_counts_raw_bytes_not_json(pair: Pair) -> None:
    # 460,000 raw bytes: under 589,824 as protobuf, ~613,000 as base64 JSON; over 65,536 once proposed.
    run(pair, [("/v3/kv/put", json.dumps({"key": b64("huge"), "value": b64(b"h" * 460_000)}).encode())])
