"""Tier c: leases on a 3-node raftkv cluster of real processes (API.md §5, TESTING.md §6.2).

Covers: expiry deletes the attached keys at one revision and emits DELETE events; revoke does the
same at once (a linearizable read right after it sees no key); a lease kept alive through a
follower across a leader SIGKILL never expires while one that is not kept alive expires
eventually, also when its leader dies; keepalive sent to a follower is forwarded to the leader;
the keepalive and TimeToLive shapes (-1 and no TTL for unknown leases, grantedTTL, keys); the
minimum TTL is raised to ceil(1.5 x election timeout); TTL > 9e9 is 400 code 11; duplicate ids
are 400 code 9; puts with an expired lease fail with 404.

Expiry is asserted as "eventually, within a generous deadline", never with tight timings: the
machine is shared. Waits poll conditions with deadlines; processes are stopped by PID in the
fixture finalizers.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, Node, b64, request, unb64, wait_until
from tests.cluster.test_watch import (
    ELECTION_MS,
    RawWatch,
    create_req,
    current_revision,
    ev_key,
    ev_rev,
    events,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

Factory = Callable[..., Cluster]
DEADLINE = 60.0
MIN_TTL = math.ceil(1.5 * ELECTION_MS / 1000)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("lease-cluster")
    c = Cluster(3, root=root, election_ms=ELECTION_MS)
    failed_before = request.session.testsfailed
    try:
        c.start()
        yield c
    finally:
        c.stop()
        if request.session.testsfailed > failed_before:
            print(f"\n===== node logs of {root}\n{c.logs(20_000)}")


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:30]}/"


def post_ok(node: Node, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = node.post(path, body)
    assert r.status == 200, (path, body, r)
    out: dict[str, Any] = r.json()
    return out


def grant(node: Node, ttl: int, lease_id: int = 0) -> int:
    return int(post_ok(node, "/v3/lease/grant", {"TTL": ttl, "ID": lease_id})["ID"])


def keepalive(node: Node, lease_id: int, timeout: float = 10.0) -> dict[str, Any] | None:
    """One keepalive; the ``result`` object, or None on 503/504 (no leader, election)."""
    r = node.post("/v3/lease/keepalive", {"ID": lease_id}, timeout=timeout)
    if r.status in (503, 504, 408):
        return None
    assert r.status == 200, r
    lines = [line for line in r.body.split(b"\n") if line.strip()]
    assert len(lines) == 1, r
    doc = json.loads(lines[0])
    result: dict[str, Any] = doc["result"]
    return result


def ttl_of(node: Node, lease_id: int, keys: bool = False) -> dict[str, Any]:
    return post_ok(node, "/v3/lease/timetolive", {"ID": lease_id, "keys": keys})


def put_with_lease(node: Node, key: str, lease_id: int) -> int:
    r = node.post("/v3/kv/put", {"key": b64(key), "value": b64("held"), "lease": lease_id})
    assert r.status == 200, r
    return int(r.json()["header"]["revision"])


def keys_under(node: Node, prefix: str) -> list[str]:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    r = node.post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "keys_only": True})
    if r.status != 200:
        raise ValueError(f"range failed: {r!r}")
    return [unb64(kv["key"]).decode() for kv in r.json().get("kvs", [])]


def test_expiry_deletes_attached_keys_at_one_revision_with_delete_events(
    cluster: Cluster, prefix: str
) -> None:
    node = cluster.nodes[0]
    lease = grant(node, MIN_TTL + 1)  # short, but the puts below must still find it alive
    put_with_lease(node, prefix + "a", lease)
    put_with_lease(node, prefix + "b", lease)
    put_with_lease(node, prefix + "c", 0)  # a key without a lease stays
    watch_node = cluster.nodes[1]
    current_revision(watch_node)
    with RawWatch(watch_node.client_port, create_req(prefix, start_revision=1)).start_reading() as w:
        msgs = w.until(lambda got: len([e for e in events(got) if e.get("type") == "DELETE"]) >= 2, DEADLINE)
    deletes = [e for e in events(msgs) if e.get("type") == "DELETE"]
    assert sorted(ev_key(e) for e in deletes) == [prefix + "a", prefix + "b"]
    assert len({ev_rev(e) for e in deletes}) == 1, "all keys of a lease go at one revision"
    (del_msg,) = [m for m in msgs if any(e.get("type") == "DELETE" for e in m.get("events", []))]
    assert len(del_msg["events"]) == 2, "one atomic message"
    assert keys_under(node, prefix) == [prefix + "c"]
    assert ttl_of(cluster.nodes[2], lease)["TTL"] == "-1"
    r = node.post("/v3/kv/put", {"key": b64(prefix + "late"), "value": b64("x"), "lease": lease})
    assert r.status == 404 and r.json()["code"] == 5, r
    ka = keepalive(cluster.nodes[2], lease)
    assert ka is not None and "TTL" not in ka and ka["ID"] == str(lease)


def test_revoke_deletes_keys_at_once(cluster: Cluster, prefix: str) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    lease = grant(follower, 600)
    revs = [put_with_lease(leader, prefix + k, lease) for k in ("x", "y", "z")]
    current_revision(follower)
    w = RawWatch(follower.client_port, create_req(prefix, start_revision=max(revs) + 1))
    with w.start_reading():
        assert w.next().get("created") is True
        r = follower.post("/v3/kv/lease/revoke", {"ID": lease})
        assert r.status == 200, r
        rev = int(r.json()["header"]["revision"])
        # Linearizable: a read that starts after the revoke returned sees no key.
        assert keys_under(leader, prefix) == []
        assert keys_under(follower, prefix) == []
        msg = w.next()
    assert int(msg["header"]["revision"]) == rev
    assert sorted(ev_key(e) for e in msg["events"]) == [prefix + k for k in ("x", "y", "z")]
    assert {e.get("type") for e in msg["events"]} == {"DELETE"}
    again = leader.post("/v3/lease/revoke", {"ID": lease})
    assert again.status == 404 and again.json()["code"] == 5, again
    zero = leader.post("/v3/lease/revoke", {"ID": 0})
    assert zero.status == 404, zero


def test_keepalive_and_time_to_live_shapes_and_forwarding(cluster: Cluster, prefix: str) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    lease = grant(leader, 300)
    put_with_lease(leader, prefix + "k1", lease)
    put_with_lease(leader, prefix + "k2", lease)
    # Keepalive through a follower: forwarded to the leader, answered with the granted TTL.
    ka = wait_until(lambda: keepalive(follower, lease), DEADLINE, "keepalive via follower", cluster.logs)
    assert ka["ID"] == str(lease) and ka["TTL"] == "300"
    assert set(ka["header"]) >= {"cluster_id", "member_id", "raft_term"}
    unknown = keepalive(follower, 123456789)
    assert unknown is not None and "TTL" not in unknown and unknown["ID"] == "123456789"
    empty = keepalive(follower, 0)
    assert empty is not None and "ID" not in empty and "TTL" not in empty
    # Several request objects in one body: one result line each.
    r = follower.post("/v3/lease/keepalive", f'{{"ID":{lease}}}{{"ID":{lease}}}')
    assert r.status == 200 and len([x for x in r.body.split(b"\n") if x.strip()]) == 2, r
    for node in cluster.nodes:
        t = ttl_of(node, lease, keys=True)
        assert t["ID"] == str(lease) and t["grantedTTL"] == "300"
        assert 0 < int(t["TTL"]) <= 300
        assert sorted(unb64(k).decode() for k in t["keys"]) == [prefix + "k1", prefix + "k2"]
        assert "keys" not in ttl_of(node, lease)
        missing = ttl_of(node, 987654321)
        assert missing["TTL"] == "-1" and "grantedTTL" not in missing
    via_alias = post_ok(follower, "/v3/kv/lease/timetolive", {"ID": lease, "keys": True})
    assert via_alias["grantedTTL"] == "300"
    listed = post_ok(follower, "/v3/lease/leases", {})
    assert {"ID": str(lease)} in listed["leases"]
    assert {"ID": str(lease)} in post_ok(leader, "/v3/kv/lease/leases", {})["leases"]
    post_ok(leader, "/v3/lease/revoke", {"ID": lease})


def test_grant_ttl_limits_and_explicit_ids(cluster: Cluster) -> None:
    node = cluster.nodes[2]
    for ttl in (0, -5, MIN_TTL - 1):
        g = post_ok(node, "/v3/lease/grant", {"TTL": ttl})
        assert g["TTL"] == str(MIN_TTL), g
        post_ok(node, "/v3/lease/revoke", {"ID": int(g["ID"])})
    r = node.post("/v3/lease/grant", {"TTL": 9_000_000_001})
    assert r.status == 400 and r.json()["code"] == 11, r
    assert "too large lease TTL" in r.json()["message"]
    big = post_ok(node, "/v3/lease/grant", {"TTL": 9_000_000_000, "ID": 777_001})
    assert big["ID"] == "777001" and big["TTL"] == "9000000000"
    dup = node.post("/v3/lease/grant", {"TTL": 5, "ID": 777_001})
    assert dup.status in (400, 412) and dup.json()["code"] == 9, dup
    neg = post_ok(node, "/v3/lease/grant", {"TTL": 60, "ID": -42})
    assert neg["ID"] == "-42"
    for lease in (777_001, -42):
        post_ok(node, "/v3/lease/revoke", {"ID": lease})


class KeepAliver:
    """Sends keepalives for one lease to a list of nodes (first that answers) until stopped."""

    def __init__(self, nodes: list[Node], lease_id: int, every: float) -> None:
        self.nodes = nodes
        self.lease_id = lease_id
        self.every = every
        self.stop_event = threading.Event()
        self.answers: list[dict[str, Any]] = []
        self.lost: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.log: list[str] = []  # (time, node, outcome) for failure reports
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            node = self.nodes[i % len(self.nodes)]
            i += 1
            sent = time.monotonic()
            try:
                # A short client timeout, as a client library would use: a keepalive that takes too
                # long is sent to the next node instead (keepalives are idempotent).
                r = request(node.client_port, "/v3/lease/keepalive", {"ID": self.lease_id}, timeout=1)
            except (OSError, ValueError) as exc:
                self.errors.append(f"{node.name}: {exc!r}")
                self.log.append(f"{sent:.2f}+{time.monotonic() - sent:.2f} {node.name} {exc!r}")
            else:
                self.log.append(f"{sent:.2f}+{time.monotonic() - sent:.2f} {node.name} {r.status} {r.body!r}")
                if r.status != 200:
                    self.errors.append(f"{node.name}: {r!r}")
                else:
                    result = json.loads(r.body.split(b"\n")[0])["result"]
                    if "TTL" in result:
                        self.answers.append(result)
                        i -= 1  # stay on a node that works
                    else:
                        self.lost.append(result)
            # Pacing, not synchronisation: the lease tolerates several missed rounds.
            self.stop_event.wait(self.every)

    def __enter__(self) -> KeepAliver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=15)


def test_kept_alive_lease_survives_leader_kill_and_neglected_one_expires(cluster_factory: Factory) -> None:
    c = cluster_factory(3, election_ms=ELECTION_MS).start()
    leader = c.leader()
    followers = [n for n in c.nodes if n is not leader]
    kept = grant(leader, 5)
    neglected = grant(leader, 3)
    put_with_lease(leader, "fo/kept", kept)
    put_with_lease(leader, "fo/neglected", neglected)
    with KeepAliver(followers, kept, every=0.4) as ka:
        wait_until(lambda: ka.answers, DEADLINE, "a first forwarded keepalive answer", c.logs)
        old_term = int(followers[0].status()["header"]["raft_term"])
        leader.kill()
        new_leader = c.wait_leader(DEADLINE, nodes=followers)
        assert int(new_leader.status()["header"]["raft_term"]) > old_term
        # The neglected lease expires eventually under the new leader (TTL + election + slack).
        wait_until(
            lambda: "fo/neglected" not in keys_under(new_leader, "fo/"),
            DEADLINE,
            "the neglected lease to expire after the leader died",
            c.logs,
        )
        # Keep going for well over a TTL after the failover; the kept lease must still be there.
        answered = len(ka.answers)
        end = time.monotonic() + 3 * 5
        wait_until(
            lambda: (time.monotonic() >= end and len(ka.answers) > answered + 3) or ka.lost,
            DEADLINE,
            "keepalives to continue after the failover",
            lambda: f"answers {len(ka.answers)} (before {answered}), lost {ka.lost[:2]}, errors "
            f"{ka.errors[-3:]}\n{c.logs()}",
        )
        assert not ka.lost, f"a kept-alive lease was reported expired: {ka.lost}; {ka.log[-12:]}"
        assert keys_under(new_leader, "fo/") == ["fo/kept"]
        t = ttl_of(new_leader, kept, keys=True)
        assert t["grantedTTL"] == "5" and [unb64(k).decode() for k in t["keys"]] == ["fo/kept"]
        assert ttl_of(new_leader, neglected)["TTL"] == "-1"
    # Without keepalives it expires eventually too.
    wait_until(lambda: keys_under(new_leader, "fo/") == [], DEADLINE, "the kept lease to expire", c.logs)


def test_lease_expires_when_its_leader_dies_without_keepalives(cluster_factory: Factory) -> None:
    c = cluster_factory(3, election_ms=ELECTION_MS).start()
    leader = c.leader()
    lease = grant(leader, 2)
    put_with_lease(leader, "ex/k", lease)
    followers = [n for n in c.nodes if n is not leader]
    leader.kill()
    new_leader = c.wait_leader(DEADLINE, nodes=followers)
    wait_until(lambda: keys_under(new_leader, "ex/") == [], DEADLINE, "expiry under the new leader", c.logs)
    for node in followers:
        assert keys_under(node, "ex/") == []
        assert ttl_of(node, lease)["TTL"] == "-1"
    # The survivors agree on the revision of the delete.
    revs = {current_revision(n) for n in followers}
    assert len(revs) == 1


def test_keepalive_forwarded_during_failover_reaches_the_new_leader(cluster_factory: Factory) -> None:
    c = cluster_factory(3, election_ms=ELECTION_MS).start()
    leader = c.leader()
    follower = next(n for n in c.nodes if n is not leader)
    lease = grant(leader, 120)
    wait_until(lambda: keepalive(follower, lease), DEADLINE, "a forwarded keepalive", c.logs)
    leader.kill()
    # Sent at once, while the follower still believes in the dead leader. etcd keeps retrying the
    # leader until its request timeout, so the answer comes from the new leader.
    r = follower.post("/v3/lease/keepalive", {"ID": lease}, timeout=DEADLINE)
    assert r.status == 200, r
    assert json.loads(r.body)["result"].get("TTL") == "120", r
