"""Tier c: watches on a 3-node raftkv cluster of real processes (API.md §4, TESTING.md §6.1).

Covers: ordering and completeness across a leader kill and a client reconnect to another node
with ``start_revision`` = last seen + 1 (every event exactly once, in revision order, equal to a
full watch from revision 1 and to ranges at each revision); historical replay; the
compacted-start cancel; filters; prev_kv; progress requests (HTTP body and websocket); cancel via
websocket; progress notifications; fragmentation with ``--max-request-bytes 65536``; a slow
watcher (a raw socket that stops reading) does not stop writes and later recovers or is cancelled
cleanly with ``compact_revision``; odd bodies (``{}`` ignored, create + cancel in one body, an
undecodable first message is 500 code 2).

The watch clients here read the NDJSON stream from a raw socket (chunked transfer decoded by hand)
in a reader thread that puts each message on a queue; tests wait on that queue with deadlines.
Nothing sleeps to synchronise, and no assertion depends on timing. Every process is stopped by PID
in fixture finalizers, and node logs are printed when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster.harness import HOST, Cluster, Node, b64, unb64, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

Factory = Callable[..., Cluster]
DEADLINE = 60.0
ELECTION_MS = 500
MAX_REQUEST_BYTES = 65536
FRAGMENT_LIMIT = MAX_REQUEST_BYTES + 512 * 1024

Msg = dict[str, Any]


def prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def create_req(prefix: str, **fields: Any) -> Msg:
    return {"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), **fields}}


class RawWatch:
    """``POST /v3/watch`` over a raw socket; messages are decoded from the chunked NDJSON body.

    ``start_reading()`` starts the reader thread (a slow consumer simply does not start it).
    ``close()`` shuts the socket down, which also cancels the server-side watchers."""

    def __init__(self, port: int, *requests: Msg, rcvbuf: int | None = None) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEADLINE)
        self.sock.connect((HOST, port))
        body = "".join(json.dumps(r) for r in requests).encode()
        head = (
            f"POST /v3/watch HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body)
        self.messages: queue.Queue[Msg | BaseException | None] = queue.Queue()
        self.status: int | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- reading ---------------------------------------------------------------------------------

    def start_reading(self) -> RawWatch:
        self._thread = threading.Thread(target=self._read_loop, daemon=True)
        self._thread.start()
        return self

    def _read_loop(self) -> None:
        f = self.sock.makefile("rb")
        try:
            status_line = f.readline()
            if not status_line:
                self.messages.put(None)
                return
            self.status = int(status_line.split()[1])
            chunked = False
            while True:
                line = f.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            assert chunked, f"watch response is not chunked (status {self.status})"
            pending = b""
            while True:
                size_line = f.readline()
                if not size_line:
                    break
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                data = f.read(size)
                f.readline()  # CRLF after the chunk
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        self.messages.put(json.loads(line))
            self.messages.put(None)
        except BaseException as exc:
            if not self._closed:
                self.messages.put(exc)
            else:
                self.messages.put(None)
        finally:
            with contextlib.suppress(OSError):
                f.close()

    def next(self, deadline: float = DEADLINE) -> Msg:
        """The next message (``result`` unwrapped); fails after ``deadline`` s or at end of stream."""
        try:
            item = self.messages.get(timeout=deadline)
        except queue.Empty:
            raise AssertionError(f"no watch message within {deadline:.0f}s") from None
        if item is None:
            raise AssertionError("the watch stream ended")
        if isinstance(item, BaseException):
            raise AssertionError(f"watch reader failed: {item!r}") from item
        assert "result" in item, item
        result: Msg = item["result"]
        return result

    def until(self, done: Callable[[list[Msg]], bool], deadline: float = DEADLINE) -> list[Msg]:
        """Collect messages until ``done(collected)``; fails if that takes longer than ``deadline``."""
        end = time.monotonic() + deadline
        got: list[Msg] = []
        while not done(got):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"condition not reached in {deadline:.0f}s; last messages {got[-3:]}")
            got.append(self.next(left))
        return got

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> RawWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def events(messages: list[Msg], watch_id: str | None = None) -> list[Msg]:
    return [
        e
        for m in messages
        if watch_id is None or m.get("watch_id") == watch_id or (watch_id == "0" and "watch_id" not in m)
        for e in m.get("events", [])
    ]


def ev_rev(e: Msg) -> int:
    return int(e["kv"]["mod_revision"])


def ev_key(e: Msg) -> str:
    return unb64(e["kv"]["key"]).decode()


def last_rev(messages: list[Msg]) -> int:
    revs = [ev_rev(e) for e in events(messages)]
    return max(revs) if revs else 0


def seen_rev(rev: int) -> Callable[[list[Msg]], bool]:
    return lambda got: last_rev(got) >= rev


def put(node: Node, key: str, value: str = "v", **extra: Any) -> int:
    r = node.post("/v3/kv/put", {"key": b64(key), "value": b64(value), **extra})
    assert r.status == 200, r
    return int(r.json()["header"]["revision"])


def delete(node: Node, key: str, range_end: str | None = None) -> int:
    body = {"key": b64(key)}
    if range_end is not None:
        body["range_end"] = b64(range_end)
    r = node.post("/v3/kv/deleterange", body)
    assert r.status == 200, r
    return int(r.json()["header"]["revision"])


def current_revision(node: Node) -> int:
    r = node.post("/v3/kv/range", {"key": b64("\0")})
    assert r.status == 200, r
    return int(r.json()["header"]["revision"])


def write_retrying(cluster: Cluster, nodes: list[Node], key: str, value: str) -> int:
    """A put that tolerates an election: 503 and connection errors are retried on the next node."""
    attempt = [0]

    def once() -> int | None:
        node = nodes[attempt[0] % len(nodes)]
        attempt[0] += 1
        r = node.post("/v3/kv/put", {"key": b64(key), "value": b64(value)}, timeout=10)
        if r.status in (503, 504, 408):
            return None
        assert r.status == 200, r
        return int(r.json()["header"]["revision"])

    return wait_until(once, DEADLINE, f"put {key}", cluster.logs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A shared 3-node cluster with a small request limit and a 1 s progress notify interval."""
    root: Path = tmp_path_factory.mktemp("watch-cluster")
    c = Cluster(
        3,
        root=root,
        election_ms=ELECTION_MS,
        extra_args=["--max-request-bytes", str(MAX_REQUEST_BYTES)],
    )
    old = os.environ.get("RAFTKV_WATCH_PROGRESS_NOTIFY_INTERVAL")
    os.environ["RAFTKV_WATCH_PROGRESS_NOTIFY_INTERVAL"] = "1"
    failed_before = request.session.testsfailed
    try:
        try:
            c.start()
        finally:
            if old is None:
                os.environ.pop("RAFTKV_WATCH_PROGRESS_NOTIFY_INTERVAL", None)
            else:
                os.environ["RAFTKV_WATCH_PROGRESS_NOTIFY_INTERVAL"] = old
        yield c
    finally:
        c.stop()
        if request.session.testsfailed > failed_before:
            print(f"\n===== node logs of {root}\n{c.logs(20_000)}")


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:30]}/"


# --- failover and resume ---------------------------------------------------------------------------


def test_watch_is_ordered_and_complete_across_leader_kill_and_reconnect(cluster_factory: Factory) -> None:
    c = cluster_factory(3, election_ms=ELECTION_MS).start()
    p = "fo/"
    leader = c.leader()
    a, b = [n for n in c.nodes if n is not leader]
    seen: list[Msg] = []
    w = RawWatch(a.client_port, create_req(p, start_revision=1, prev_kv=True)).start_reading()
    try:
        assert w.next().get("created") is True
        for i in range(15):
            if i % 5 == 4:
                delete(leader, f"{p}k{i % 3}")
            else:
                put(leader, f"{p}k{i % 3}", f"a{i}")
        target = current_revision(a)
        seen += w.until(seen_rev(target))
        leader.kill()
        for i in range(15):
            write_retrying(c, [a, b], f"{p}k{i % 4}", f"b{i}")
        # The client moves to the other node mid-stream and resumes from the last revision seen + 1.
        target = current_revision(a)
        seen += w.until(seen_rev(target - 5))
    finally:
        w.close()
    resume_from = last_rev(seen) + 1
    w2 = RawWatch(b.client_port, create_req(p, start_revision=resume_from, prev_kv=True)).start_reading()
    try:
        assert w2.next().get("created") is True
        for i in range(10):
            write_retrying(c, [b, a], f"{p}k{i % 2}", f"c{i}")
        final = current_revision(b)
        seen += w2.until(seen_rev(final))
    finally:
        w2.close()

    got = events(seen)
    revs = [ev_rev(e) for e in got]
    assert revs == sorted(revs), "events out of revision order"
    pairs = [(ev_rev(e), ev_key(e)) for e in got]
    assert len(pairs) == len(set(pairs)), "an event was delivered twice"
    # Reference 1: a full watch from revision 1 on a third connection.
    with RawWatch(b.client_port, create_req(p, start_revision=1)).start_reading() as ref:
        full = events(ref.until(seen_rev(final)))
    assert [(ev_rev(e), ev_key(e), e.get("type", "PUT")) for e in full if ev_rev(e) <= final] == [
        (ev_rev(e), ev_key(e), e.get("type", "PUT")) for e in got if ev_rev(e) <= final
    ]
    # Reference 2: every PUT's value is what a range at its revision returns, and prev_kv matches
    # the value at revision - 1.
    for e in got:
        rev, key = ev_rev(e), ev_key(e)
        r = b.post("/v3/kv/range", {"key": b64(key), "revision": rev})
        assert r.status == 200, r
        kvs = r.json().get("kvs", [])
        if e.get("type") == "DELETE":
            assert kvs == [], (e, kvs)
        else:
            assert kvs and kvs[0].get("value", "") == e["kv"].get("value", ""), (e, kvs)
        before = b.post("/v3/kv/range", {"key": b64(key), "revision": rev - 1}).json().get("kvs", [])
        if before:
            assert e.get("prev_kv", {}).get("value", "") == before[0].get("value", ""), e
        else:
            assert "prev_kv" not in e, e


# --- features on the shared cluster ----------------------------------------------------------------


def test_historical_replay_filters_prev_kv_and_compacted_start(cluster: Cluster, prefix: str) -> None:
    node = cluster.nodes[0]
    first = put(node, prefix + "a", "1")
    put(node, prefix + "b", "2")
    put(node, prefix + "a", "3")
    last = delete(node, prefix + "a")
    current_revision(cluster.nodes[1])  # a linearizable read: node 2 has applied ``last``
    reqs = [
        create_req(prefix, start_revision=first),
        create_req(prefix, start_revision=first, filters=["NOPUT"]),
        create_req(prefix, start_revision=first, filters=[1]),  # NODELETE as a number
        create_req(prefix, start_revision=first, prev_kv=True),
    ]
    with RawWatch(cluster.nodes[1].client_port, *reqs).start_reading() as w:
        msgs = w.until(lambda got: sum(1 for m in got if m.get("created")) == 4 and last_rev(got) >= last
                       and all(any(ev_rev(e) == last for e in events(got, wid)) for wid in ("0", "1", "3"))
                       and any(ev_rev(e) == first + 2 for e in events(got, "2")))
    created = [m for m in msgs if m.get("created")]
    assert [m.get("watch_id", "0") for m in created] == ["0", "1", "2", "3"]
    assert all(int(m["header"]["revision"]) >= last for m in created)
    plain = events(msgs, "0")
    assert [(ev_key(e), e.get("type", "PUT")) for e in plain] == [
        (prefix + "a", "PUT"), (prefix + "b", "PUT"), (prefix + "a", "PUT"), (prefix + "a", "DELETE")
    ]
    assert [ev_rev(e) for e in plain] == [first, first + 1, first + 2, last]
    assert all("prev_kv" not in e for e in plain)
    assert [e.get("type") for e in events(msgs, "1")] == ["DELETE"]
    assert [e.get("type", "PUT") for e in events(msgs, "2")] == ["PUT", "PUT", "PUT"]
    with_prev = events(msgs, "3")
    assert "prev_kv" not in with_prev[0]
    assert unb64(with_prev[2]["prev_kv"]["value"]) == b"1"
    assert unb64(with_prev[3]["prev_kv"]["value"]) == b"3"
    assert with_prev[3]["kv"] == {"key": b64(prefix + "a"), "mod_revision": str(last)}

    # Compact, then watch from below the compact revision: created, then a cancel without revision.
    r = node.post("/v3/kv/compaction", {"revision": last})
    assert r.status == 200, r
    current_revision(cluster.nodes[2])
    w = RawWatch(cluster.nodes[2].client_port, create_req(prefix, start_revision=first))
    with w.start_reading():
        created_msg, cancel = w.next(), w.next()
    assert created_msg.get("created") is True
    assert cancel.get("canceled") is True and cancel["compact_revision"] == str(last)
    assert "revision" not in cancel["header"] and "events" not in cancel
    assert set(cancel["header"]) == {"cluster_id", "member_id", "raft_term"}
    # At the compact revision itself it works.
    with RawWatch(cluster.nodes[2].client_port, create_req(prefix, start_revision=last + 1),
                  {"progress_request": {}}).start_reading() as w:
        got = w.until(lambda g: any(m.get("watch_id") == "-1" for m in g))
    assert not any(m.get("canceled") for m in got)


def test_progress_request_in_the_body_and_progress_notify(cluster: Cluster, prefix: str) -> None:
    node = cluster.nodes[1]
    rev = put(node, prefix + "x")
    with RawWatch(node.client_port, create_req(prefix), {"progress_request": {}}).start_reading() as w:
        created = w.next()
        progress = w.next()
    assert created.get("created") is True
    assert progress["watch_id"] == "-1" and "events" not in progress and "created" not in progress
    assert int(progress["header"]["revision"]) >= rev
    # progress_notify: with the 1 s interval of this cluster, an idle watcher gets a header-only
    # message with its own id.
    w = RawWatch(node.client_port, create_req(prefix, progress_notify=True, watch_id=5))
    with w.start_reading():
        assert w.next()["watch_id"] == "5"
        notify = w.next(30)
    assert notify["watch_id"] == "5" and "events" not in notify and "created" not in notify
    assert int(notify["header"]["revision"]) >= rev


def test_websocket_create_progress_cancel(cluster: Cluster, prefix: str) -> None:
    asyncio.run(_websocket_flow(cluster, prefix))


async def _next_ws(ws: aiohttp.ClientWebSocketResponse, deadline: float = DEADLINE) -> Msg:
    frame = await asyncio.wait_for(ws.receive(), deadline)
    assert frame.type == aiohttp.WSMsgType.TEXT, frame
    msg = json.loads(frame.data)
    result: Msg = msg["result"]
    return result


async def _websocket_flow(cluster: Cluster, prefix: str) -> None:
    node = cluster.nodes[2]
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session, session.ws_connect(
        f"http://{HOST}:{node.client_port}/v3/watch", timeout=aiohttp.ClientWSTimeout(ws_close=10)
    ) as ws:
        await ws.send_str(json.dumps(create_req(prefix)))
        created = await _next_ws(ws)
        assert created.get("created") is True and "watch_id" not in created
        await ws.send_str(json.dumps(create_req(prefix + "sub/", watch_id=9, prev_kv=True)))
        assert (await _next_ws(ws))["watch_id"] == "9"
        rev = await loop.run_in_executor(None, put, cluster.nodes[0], prefix + "sub/k", "v1")
        got = [await _next_ws(ws), await _next_ws(ws)]
        assert sorted(m.get("watch_id", "0") for m in got) == ["0", "9"]
        assert all(ev_rev(m["events"][0]) == rev for m in got)
        # Interactive progress request.
        await ws.send_str(json.dumps({"progress_request": {}}))
        progress = await _next_ws(ws)
        assert progress["watch_id"] == "-1" and int(progress["header"]["revision"]) >= rev
        # Cancel 9, then unknown 77 (no answer); a write afterwards reaches watcher 0 only.
        await ws.send_str(json.dumps({"cancel_request": {"watch_id": 9}}))
        cancel = await _next_ws(ws)
        assert cancel["watch_id"] == "9" and cancel.get("canceled") is True
        await ws.send_str(json.dumps({"cancel_request": {"watch_id": 77}}))
        rev2 = await loop.run_in_executor(None, put, cluster.nodes[0], prefix + "sub/k", "v2")
        # The watch node applies rev2 on its own schedule: ask for progress until it reports rev2;
        # by then every event up to rev2 has been delivered (bookmark semantics).
        rest: list[Msg] = []
        end = loop.time() + DEADLINE
        while not any(m.get("watch_id") == "-1" and int(m["header"]["revision"]) >= rev2 for m in rest):
            assert loop.time() < end, f"no progress at {rev2}: {rest[-3:]}"
            await ws.send_str(json.dumps({"progress_request": {}}))
            while True:
                rest.append(await _next_ws(ws))
                if rest[-1].get("watch_id") == "-1":
                    break
        delivered = [(m.get("watch_id", "0"), ev_rev(m["events"][0])) for m in rest if "events" in m]
        assert delivered == [("0", rev2)]
        assert not any(m.get("watch_id") == "77" for m in rest)
        # A duplicate id is refused in band.
        await ws.send_str(json.dumps(create_req(prefix, watch_id=0)))  # 0 = auto: gets a new id
        auto = await _next_ws(ws)
        assert auto.get("created") is True and auto["watch_id"] not in ("0", "-1")
        await ws.send_str(json.dumps(create_req(prefix, watch_id=int(auto["watch_id"]))))
        dup = await _next_ws(ws)
        assert dup["watch_id"] == "-1" and dup.get("canceled") is True and dup.get("created") is True


def test_fragmented_catch_up(cluster: Cluster, prefix: str) -> None:
    node = cluster.nodes[0]
    value = "x" * 60_000
    first = 0
    for i in range(12):
        rev = put(node, f"{prefix}{i:02}", value)
        first = first or rev
    last = rev
    reqs = [create_req(prefix, start_revision=first, fragment=True), create_req(prefix, start_revision=first)]
    with RawWatch(node.client_port, *reqs).start_reading() as w:
        msgs = w.until(lambda got: all(any(ev_rev(e) == last for e in events(got, i)) for i in ("0", "1")))
    frag = [m for m in msgs if "watch_id" not in m and "events" in m]
    whole = [m for m in msgs if m.get("watch_id") == "1" and "events" in m]
    assert len(frag) > 1, "a catch-up over the fragment threshold must be split"
    assert all(m.get("fragment") is True for m in frag[:-1]) and "fragment" not in frag[-1]
    assert all(len(json.dumps({"result": m})) <= FRAGMENT_LIMIT + 1024 for m in frag)
    assert len({json.dumps(m["header"]) for m in frag}) == 1, "fragments share one header"
    assert [ev_rev(e) for e in events(frag)] == list(range(first, last + 1))
    assert [ev_rev(e) for e in events(whole)] == list(range(first, last + 1))
    assert all("fragment" not in m for m in whole)


def test_slow_watcher_does_not_stop_writes_and_recovers_or_is_cancelled(
    cluster: Cluster, prefix: str
) -> None:
    node, writer = cluster.nodes[1], cluster.nodes[0]
    start = current_revision(node) + 1
    slow = RawWatch(node.client_port, create_req(prefix, start_revision=start), rcvbuf=4096)
    slow2 = RawWatch(node.client_port, create_req(prefix, start_revision=start), rcvbuf=4096)
    healthy = RawWatch(node.client_port, create_req(prefix, start_revision=start)).start_reading()
    try:
        value = "y" * 40_000
        n = 240
        with ThreadPoolExecutor(8) as pool:
            revs = list(pool.map(lambda i: put(writer, f"{prefix}{i % 16:02}", value), range(n)))
        last = max(revs)
        assert len(set(revs)) == n, "every write succeeded with its own revision"
        # A watcher that reads keeps up while the slow ones do not read at all.
        got = healthy.until(seen_rev(last))
        assert [ev_rev(e) for e in events(got)] == list(range(start, last + 1))
        # Now the first slow consumer reads: it must catch up with every event exactly once.
        slow.start_reading()
        got = slow.until(lambda g: seen_rev(last)(g) or any(m.get("canceled") for m in g))
        assert not any(m.get("canceled") for m in got), "nothing was compacted, so no cancel"
        assert [ev_rev(e) for e in events(got)] == list(range(start, last + 1))
        # The second one falls behind a compaction: it either still had everything buffered, or it is
        # cancelled with compact_revision after a gap-free prefix.
        r = writer.post("/v3/kv/compaction", {"revision": last})
        assert r.status == 200, r
        after = put(writer, prefix + "after")
        slow2.start_reading()
        got = slow2.until(lambda g: seen_rev(after)(g) or any(m.get("canceled") for m in g))
        delivered = [ev_rev(e) for e in events(got)]
        assert delivered == list(range(start, start + len(delivered)))
        cancels = [m for m in got if m.get("canceled")]
        print(f"slow watcher after compaction: {len(delivered)} events, cancelled={bool(cancels)}")
        if cancels:
            assert cancels[0]["compact_revision"] == str(last)
            assert "revision" not in cancels[0]["header"]
            assert delivered[-1] < last if delivered else True
        else:
            assert delivered[-1] == after
    finally:
        for w in (slow, slow2, healthy):
            w.close()


def test_odd_bodies_empty_message_create_plus_cancel_and_undecodable(cluster: Cluster, prefix: str) -> None:
    node = cluster.nodes[0]
    r = node.post("/v3/watch", b"{", timeout=10)
    assert r.status == 500 and r.json()["code"] == 2, r
    # ``{}`` is ignored; create + cancel in one body gives a created line, then a canceled line.
    body = [{}, create_req(prefix, watch_id=3), {"cancel_request": {"watch_id": 3}}, {"progress_request": {}}]
    with RawWatch(node.client_port, *body).start_reading() as w:
        first, second, third = w.next(), w.next(), w.next()
    assert w.status == 200
    assert first["watch_id"] == "3" and first.get("created") is True
    assert second["watch_id"] == "3" and second.get("canceled") is True and "compact_revision" not in second
    assert third["watch_id"] == "-1", "the progress request is answered for the (now empty) stream"
