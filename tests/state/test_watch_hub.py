"""``WatchHub`` against a real ``KVStore`` (API.md §4, ARCHITECTURE.md §4.6, TESTING.md §6.1).

Each test drives the store like the replica does: apply a write, ``publish`` its events, then
``sync()``; consumers pop their stream's buffer with ``pop_all`` and call ``sync(stream)``. Covers
live delivery, start_revision replay and "from now", future starts, compaction cancels, filters,
prev_kv, watch ids, cancel, progress requests, the bounded buffer (a slow consumer never blocks
publish and later catches up with exactly the missed events, or is cancelled with
compact_revision), rebind after a store replacement, and a Hypothesis property test comparing every
watcher's delivered events with a filter over the committed event log.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkv.state import watch as watch_mod
from raftkv.state.commands import DeleteRange, Event, EventType, Put
from raftkv.state.mvcc import KVStore
from raftkv.state.watch import NODELETE, NOPUT, STREAM_BUFFER, WatchHub, WatchMessage, WatchStream


class Env:
    """A store, a hub and the committed event log (revision -> events), applied like a replica."""

    def __init__(self) -> None:
        self.kv = KVStore()
        self.woken: list[int] = []
        self.hub = WatchHub(self.kv, self.woken.append)
        self.log: dict[int, tuple[Event, ...]] = {}

    def _publish(self, events: tuple[Event, ...]) -> int:
        if events:
            rev = events[0].kv.mod_revision
            assert rev == self.kv.revision
            self.log[rev] = events
            self.hub.publish(rev, events)
        self.hub.sync()
        return self.kv.revision

    def put(self, key: bytes, value: bytes = b"v") -> int:
        _, events = self.kv.put(Put(key, value))
        return self._publish(events)

    def delete(self, key: bytes, range_end: bytes = b"") -> int:
        _, events = self.kv.delete_range(DeleteRange(key, range_end))
        return self._publish(events)

    def compact(self, revision: int) -> None:
        self.kv.compact(revision)
        self.hub.sync()


def events_of(messages: list[WatchMessage], watch_id: int) -> list[Event]:
    return [e for m in messages if m.watch_id == watch_id for e in m.events]


def revs(events: list[Event]) -> list[int]:
    return [e.kv.mod_revision for e in events]


def drain(env: Env, stream: WatchStream, rounds: int = 1000) -> list[WatchMessage]:
    """Pop and sync until the stream's buffer stays empty and every watcher is synced."""
    out: list[WatchMessage] = []
    for _ in range(rounds):
        got = stream.pop_all()
        out.extend(got)
        env.hub.sync(stream)
        if not got and not stream.buffer and all(w.synced for w in stream.watchers.values()):
            return out
    raise AssertionError(f"stream did not drain in {rounds} rounds")


def test_live_delivery_in_revision_order() -> None:
    env = Env()
    env.put(b"other")
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"a", range_end=b"b")
    r1 = env.put(b"a1", b"x")
    env.put(b"zz")  # outside the range: no message
    r2 = env.put(b"a2", b"y")
    r3 = env.delete(b"a1")
    msgs = s.pop_all()
    assert msgs[0] == WatchMessage(wid, 2, created=True)
    body = msgs[1:]
    assert [m.revision for m in body] == [r1, r2, r3]
    assert all(len(m.events) == 1 and m.watch_id == wid for m in body)
    assert [e.type for e in events_of(body, wid)] == [EventType.PUT, EventType.PUT, EventType.DELETE]
    assert events_of(body, wid)[2].kv.key == b"a1"
    assert env.woken, "publishing must wake the stream's consumer"


def test_multi_key_delete_is_one_atomic_message() -> None:
    env = Env()
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"p/", range_end=b"p0")
    for k in (b"p/a", b"p/b", b"p/c"):
        env.put(k)
    s.pop_all()
    rev = env.delete(b"p/", b"p0")
    (m,) = s.pop_all()
    assert m.revision == rev and m.watch_id == wid
    assert sorted(e.kv.key for e in m.events) == [b"p/a", b"p/b", b"p/c"]
    assert {e.type for e in m.events} == {EventType.DELETE}


def test_start_revision_replays_history_then_continues_live_without_gap_or_duplicate() -> None:
    env = Env()
    for i in range(6):
        env.put(b"k", str(i).encode())
    env.delete(b"k")
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", start_revision=3)
    created, *replay = s.pop_all()
    assert created.created and created.revision == env.kv.revision
    # Catch-up messages carry the store revision at send time.
    assert all(m.revision == env.kv.revision for m in replay)
    env.put(b"k", b"live1")
    env.put(b"k", b"live2")
    live = s.pop_all()
    got = events_of(replay + live, wid)
    assert revs(got) == list(range(3, env.kv.revision + 1))
    assert [(e.type, e.kv) for e in got] == [(e.type, e.kv) for r in range(3, 11) for e in env.log[r]]
    assert all(e.prev_kv is None for e in got), "prev_kv only on request"
    assert [m.revision for m in live] == [9, 10]


def test_start_revision_zero_is_from_now() -> None:
    env = Env()
    env.put(b"k", b"old1")
    env.put(b"k", b"old2")
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", start_revision=0)
    assert s.pop_all() == [WatchMessage(wid, env.kv.revision, created=True)]
    rev = env.put(b"k", b"new")
    (m,) = s.pop_all()
    assert m.revision == rev and revs(list(m.events)) == [rev]
    assert m.events[0].kv.value == b"new"


def test_future_start_revision_is_silent_until_reached() -> None:
    env = Env()
    s = env.hub.open_stream()
    start = env.kv.revision + 3
    wid = env.hub.create(s, key=b"k", start_revision=start)
    assert [m.created for m in s.pop_all()] == [True]
    env.put(b"k")
    env.put(b"k")
    assert s.pop_all() == []
    rev = env.put(b"k")
    assert rev == start
    (m,) = s.pop_all()
    assert m.watch_id == wid and revs(list(m.events)) == [start]


def test_compacted_start_gets_created_then_compaction_cancel() -> None:
    env = Env()
    for i in range(5):
        env.put(b"k", str(i).encode())
    env.compact(4)
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", start_revision=2, watch_id=3)
    created, cancel = s.pop_all()
    assert created == WatchMessage(3, env.kv.revision, created=True)
    assert cancel.watch_id == wid == 3 and cancel.canceled and cancel.compact_revision == 4
    assert cancel.revision == 0, "a compaction cancel has no revision in its header"
    assert not cancel.events and not cancel.created
    assert wid not in s.watchers
    env.put(b"k")
    assert s.pop_all() == []
    # Equal to the compact revision is fine.
    wid2 = env.hub.create(s, key=b"k", start_revision=4)
    msgs = s.pop_all()
    assert msgs[0].created and not any(m.canceled for m in msgs)
    assert revs(events_of(msgs, wid2)) == [4, 5, 6, 7]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [((NOPUT,), [EventType.DELETE]), ((NODELETE,), [EventType.PUT, EventType.PUT]), ((), None)],
)
def test_filters(filters: tuple[int, ...], expected: list[EventType] | None) -> None:
    env = Env()
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", filters=filters)
    env.put(b"k")
    env.put(b"k")
    env.delete(b"k")
    got = [e.type for e in events_of(s.pop_all(), wid)]
    assert got == (expected or [EventType.PUT, EventType.PUT, EventType.DELETE])
    # The same holds for history replay.
    wid2 = env.hub.create(s, key=b"k", start_revision=1, filters=filters)
    got2 = [e.type for e in events_of(s.pop_all(), wid2)]
    assert got2 == got


@pytest.mark.parametrize("historical", [False, True])
def test_prev_kv_on_and_off(historical: bool) -> None:
    env = Env()
    s = env.hub.open_stream()
    start = 1 if historical else 0
    if historical:
        env.put(b"k", b"one")
        env.put(b"k", b"two")
        env.delete(b"k")
    with_prev = env.hub.create(s, key=b"k", prev_kv=True, start_revision=start)
    without = env.hub.create(s, key=b"k", start_revision=start)
    if not historical:
        env.put(b"k", b"one")
        env.put(b"k", b"two")
        env.delete(b"k")
    msgs = s.pop_all()
    a, b = events_of(msgs, with_prev), events_of(msgs, without)
    assert [e.prev_kv for e in b] == [None, None, None]
    assert a[0].prev_kv is None  # a creation has no previous KeyValue
    assert a[1].prev_kv is not None and a[1].prev_kv.value == b"one"
    assert a[1].prev_kv.mod_revision == a[1].kv.mod_revision - 1
    assert a[2].prev_kv is not None and a[2].prev_kv.value == b"two"
    assert a[2].kv.key == b"k" and a[2].kv.mod_revision == 4 and a[2].kv.value == b""
    assert [e.kv for e in a] == [e.kv for e in b]


def test_several_watchers_on_one_stream_get_their_own_ids() -> None:
    env = Env()
    s = env.hub.open_stream()
    ids = [env.hub.create(s, key=k) for k in (b"a", b"b", b"a")]
    assert ids == [0, 1, 2]
    rev = env.put(b"a")
    env.put(b"b")
    msgs = [m for m in s.pop_all() if not m.created]
    assert [(m.watch_id, m.revision) for m in msgs] == [(0, rev), (2, rev), (1, rev + 1)]
    other = env.hub.open_stream()
    assert env.hub.create(other, key=b"a") == 0, "ids are per stream"


def test_explicit_and_duplicate_watch_ids() -> None:
    env = Env()
    s = env.hub.open_stream()
    assert env.hub.create(s, key=b"a", watch_id=1) == 1
    assert env.hub.create(s, key=b"a") == 0
    assert env.hub.create(s, key=b"a") == 2, "auto ids skip ids in use"
    assert env.hub.create(s, key=b"a", watch_id=7) == 7
    s.pop_all()
    assert env.hub.create(s, key=b"a", watch_id=7) == -1
    (m,) = s.pop_all()
    assert m.watch_id == -1 and m.created and m.canceled
    assert m.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
    assert set(s.watchers) == {0, 1, 2, 7}
    env.put(b"a")
    assert sorted(m.watch_id for m in s.pop_all()) == [0, 1, 2, 7]


def test_cancel_known_and_unknown() -> None:
    env = Env()
    s = env.hub.open_stream()
    w0 = env.hub.create(s, key=b"k")
    w1 = env.hub.create(s, key=b"k")
    s.pop_all()
    assert env.hub.cancel(s, w1) is True
    (m,) = s.pop_all()
    assert m == WatchMessage(w1, env.kv.revision, canceled=True)
    env.put(b"k")
    assert [m.watch_id for m in s.pop_all()] == [w0]
    assert env.hub.cancel(s, 42) is False
    assert env.hub.cancel(s, w1) is False
    assert s.pop_all() == []


def test_progress_request_answered_only_when_all_watchers_synced() -> None:
    env = Env()
    s = env.hub.open_stream()
    env.hub.create(s, key=b"k")
    env.put(b"k")
    s.pop_all()
    env.hub.request_progress(s)
    (m,) = s.pop_all()
    assert m.progress and m.watch_id == -1 and m.revision == env.kv.revision and not m.events

    # A stream with an unsynced watcher answers only after it caught up.
    slow = env.hub.open_stream()
    wid = env.hub.create(slow, key=b"k")
    for _ in range(STREAM_BUFFER + 5):
        env.put(b"k")
    assert not slow.watchers[wid].synced
    env.hub.request_progress(slow)
    assert not any(m.progress for m in slow.buffer)
    msgs = drain(env, slow)
    progress = [i for i, m in enumerate(msgs) if m.progress]
    assert len(progress) == 1, msgs[-3:]
    p = msgs[progress[0]]
    assert p.revision == env.kv.revision
    # Bookmarkable: no event at or below the progress revision comes after it.
    assert all(e.kv.mod_revision > p.revision for m in msgs[progress[0] + 1 :] for e in m.events)
    assert revs(events_of(msgs, wid))[-1] == env.kv.revision


def test_slow_consumer_never_blocks_publish_and_catches_up_exactly() -> None:
    env = Env()
    s = env.hub.open_stream()
    fast = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", range_end=b"l", prev_kv=True)
    fid = env.hub.create(fast, key=b"k", range_end=b"l")
    start = env.kv.revision + 1
    fast_msgs: list[WatchMessage] = []
    n = 3 * STREAM_BUFFER
    for i in range(n):
        if i % 7 == 3:
            env.delete(b"k")
        else:
            env.put(b"k" + bytes([97 + i % 3]), str(i).encode())
        env.put(b"zzz")  # out of range writes in between
        fast_msgs.extend(fast.pop_all())
        assert len(s.buffer) <= STREAM_BUFFER
    assert len(s.buffer) == STREAM_BUFFER
    assert not s.watchers[wid].synced
    missed_from = max(e.kv.mod_revision for m in s.buffer for e in m.events) + 1
    msgs = drain(env, s)
    assert s.watchers[wid].synced
    got = events_of(msgs, wid)
    expected = [e for r in sorted(env.log) if r >= start for e in env.log[r] if e.kv.key < b"l"]
    # Exactly the committed events, in order, each once, with prev_kv as the live events had it.
    assert [(e.kv.mod_revision, e.kv.key) for e in got] == [(e.kv.mod_revision, e.kv.key) for e in expected]
    assert got == expected
    assert any(e.kv.mod_revision >= missed_from for e in got)
    # The fast stream's watcher was never affected.
    assert revs(events_of(fast_msgs, fid)) == revs(expected)
    # And the slow one is live again afterwards.
    rev = env.put(b"k")
    assert [(m.watch_id, m.revision) for m in s.pop_all()] == [(wid, rev)]


def test_slow_watcher_whose_history_is_compacted_is_cancelled() -> None:
    env = Env()
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k")
    for _ in range(STREAM_BUFFER + 10):
        env.put(b"k")
    assert not s.watchers[wid].synced
    delivered = events_of(s.pop_all(), wid)  # the consumer drains once, but does not sync yet
    env.compact(env.kv.revision - 2)
    env.put(b"k")
    msgs = drain(env, s)
    cancels = [m for m in msgs if m.canceled]
    assert len(cancels) == 1
    (c,) = cancels
    assert c.watch_id == wid and c.compact_revision == env.kv.compact_revision and c.revision == 0
    assert wid not in s.watchers
    delivered += events_of(msgs, wid)
    # What it got before the cancel is a gap-free prefix of the log.
    assert revs(delivered) == list(range(2, 2 + len(delivered)))
    assert revs(delivered)[-1] + 1 < c.compact_revision
    assert env.hub.cancelled_compacted == 1


def test_slow_watcher_never_silently_skips_a_delete_at_the_compact_revision() -> None:
    env = Env()
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k")
    for _ in range(STREAM_BUFFER):
        if s.full():
            break
        env.put(b"k")
    assert s.full() and s.watchers[wid].synced
    # The buffer is full: the DELETE makes the watcher unsynced, and it is the first event it needs.
    del_rev = env.delete(b"k")
    assert not s.watchers[wid].synced and s.watchers[wid].next_revision == del_rev
    env.put(b"k", b"again")
    env.compact(del_rev)
    msgs = drain(env, s)
    got = events_of(msgs, wid)
    cancelled = [m for m in msgs if m.canceled]
    assert cancelled or del_rev in revs(got), (
        f"the DELETE at {del_rev} was neither delivered nor reported as compacted"
    )
    assert all(m.watch_id == wid and m.compact_revision == del_rev and m.revision == 0 for m in cancelled)


def test_slow_prev_kv_watcher_never_gets_an_incomplete_event_at_the_compact_revision() -> None:
    env = Env()
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", prev_kv=True)
    env.hub.create(s, key=b"other")  # fills the shared buffer
    env.put(b"k", b"first")
    for _ in range(STREAM_BUFFER):
        if s.full():
            break
        env.put(b"other")
    assert s.full()
    needed = env.put(b"k", b"second")
    assert not s.watchers[wid].synced and s.watchers[wid].next_revision == needed
    env.compact(needed)
    msgs = drain(env, s)
    got = [e for e in events_of(msgs, wid) if e.kv.mod_revision == needed]
    cancelled = [m for m in msgs if m.canceled]
    assert cancelled or (got and got[0].prev_kv is not None and got[0].prev_kv.value == b"first"), got
    assert all(m.watch_id == wid and m.compact_revision == needed for m in cancelled)


def test_rebind_after_store_replacement_catches_up_from_the_new_store() -> None:
    env = Env()
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", range_end=b"l")
    env.put(b"k1", b"a")
    env.put(b"k2", b"b")
    before = events_of(s.pop_all(), wid)
    # Another replica went further; this one installs its snapshot (a new KVStore object).
    other = KVStore.from_obj(env.kv.to_obj())
    extra: list[Event] = []
    for k, v in ((b"k1", b"c"), (b"x", b"y"), (b"k3", b"d")):
        extra.extend(other.put(Put(k, v))[1])
    extra.extend(other.delete_range(DeleteRange(b"k2"))[1])
    env.kv = other
    env.hub.rebind(other)
    msgs = drain(env, s)
    got = events_of(msgs, wid)
    assert [(e.type, e.kv) for e in got] == [(e.type, e.kv) for e in extra if e.kv.key < b"l"]
    assert [m.revision for m in msgs] == [other.revision] * len(msgs)
    assert s.watchers[wid].synced
    # Live publishing continues from the new store.
    rev = env.put(b"k9")
    assert revs(events_of(s.pop_all(), wid)) == [rev]
    assert revs(before + got)[-1] < rev


def test_rebind_to_a_store_below_a_future_start_revision_never_moves_the_watcher_back() -> None:
    # A client resumes on a lagging node with start_revision above that node's revision; the node
    # then installs a snapshot still below that start (found by the fault suite: crashes-disk).
    env = Env()
    for i in range(3):
        env.put(b"k", str(i).encode())
    snapshot = KVStore.from_obj(env.kv.to_obj())
    start = env.kv.revision + 4
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", start_revision=start)
    s.pop_all()
    ahead = KVStore.from_obj(snapshot.to_obj())
    ahead.put(Put(b"k", b"snap"))
    env.kv = ahead
    env.hub.rebind(ahead)
    assert s.pop_all() == []
    assert s.watchers[wid].next_revision == start
    while env.kv.revision < start:
        env.put(b"k")
    assert revs(events_of(drain(env, s), wid)) == [start]


def test_catch_up_messages_stay_near_the_byte_limit_without_splitting_a_revision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(watch_mod, "CATCH_UP_BYTES", 100)
    env = Env()
    for i in range(30):
        env.put(f"k{i % 7}".encode(), b"v" * 20)
    env.delete(b"k", b"l")  # one revision deleting seven keys: never split
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", range_end=b"l", start_revision=1)
    msgs = [m for m in drain(env, s) if m.events]
    assert len(msgs) > 3
    got = events_of(msgs, wid)
    assert revs(got) == sorted(revs(got)) and len(got) == 37
    for m in msgs:
        assert sum(len(e.kv.key) + len(e.kv.value) for e in m.events[:-1]) < 100 + 40
        assert len({e.kv.mod_revision for e in m.events} & {e.kv.mod_revision for n in msgs
                                                            if n is not m for e in n.events}) == 0


def test_a_long_replay_reads_history_once_per_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # Re-reading the history for every message made a replay quadratic: 3.5 s on the event loop
    # for 25k events, long enough for clients to time out before the first message.
    monkeypatch.setattr(watch_mod, "CATCH_UP_EVENTS", 10)
    env = Env()
    for i in range(200):
        env.put(f"k{i % 13}".encode())
    s = env.hub.open_stream()
    with mock.patch.object(KVStore, "history", autospec=True, side_effect=KVStore.history) as history:
        wid = env.hub.create(s, key=b"k", range_end=b"l", start_revision=1)
    assert history.call_count == 1
    assert revs(events_of(drain(env, s), wid)) == list(range(2, 202))


def test_notify_idle_only_for_idle_progress_notify_watchers() -> None:
    env = Env()
    s = env.hub.open_stream()
    wid = env.hub.create(s, key=b"k", progress_notify=True)
    quiet = env.hub.create(s, key=b"q")
    s.pop_all()
    env.hub.notify_idle()
    assert s.pop_all() == [WatchMessage(wid, env.kv.revision)]
    env.put(b"k")
    s.pop_all()
    env.hub.notify_idle()  # it saw an event in this interval
    assert s.pop_all() == []
    env.hub.notify_idle()
    assert [m.watch_id for m in s.pop_all()] == [wid]
    assert quiet in s.watchers


def test_close_stream_stops_delivery() -> None:
    env = Env()
    s = env.hub.open_stream()
    env.hub.create(s, key=b"k")
    env.hub.close_stream(s)
    env.put(b"k")
    assert s.pop_all() == [WatchMessage(0, 1, created=True)]


# --- property test ------------------------------------------------------------------------------

KEYS = [b"a", b"ab", b"b", b"c"]
RANGES = [(b"a", b""), (b"a", b"b"), (b"a", b"\x00"), (b"b", b"d"), (b"", b"")]


@dataclass
class Rec:
    """One watcher as the test saw it created."""

    stream: int
    key: bytes
    range_end: bytes
    start: int
    filters: tuple[int, ...]
    prev_kv: bool
    delivered: list[list[Event]] = field(default_factory=list)
    created: bool = False
    cancelled_by_user: bool = False
    compact_cancel: int = 0

    def expected(self, log: dict[int, tuple[Event, ...]]) -> list[Event]:
        key = self.key or b"\x00"
        out = []
        for rev in sorted(log):
            if rev < self.start:
                continue
            for e in log[rev]:
                k = e.kv.key
                if self.range_end == b"":
                    inside = k == key
                elif self.range_end == b"\x00":
                    inside = k >= key
                else:
                    inside = key <= k < self.range_end
                if not inside:
                    continue
                if (e.type == EventType.PUT and NOPUT in self.filters) or (
                    e.type == EventType.DELETE and NODELETE in self.filters
                ):
                    continue
                out.append(e if self.prev_kv else Event(e.type, e.kv, None))
        return out


def canonical(events: list[Event]) -> list[Event]:
    """Order within one revision is not specified: sort by (revision, key)."""
    return sorted(events, key=lambda e: (e.kv.mod_revision, e.kv.key))


ops = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.sampled_from([b"x", b"y"])),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.sampled_from([b"", b"b", b"\x00"])),
    st.tuples(st.just("compact"), st.integers(0, 3)),
    st.tuples(st.just("pop"), st.integers(0, 1), st.booleans()),
    st.tuples(
        st.just("create"),
        st.integers(0, 1),
        st.sampled_from(RANGES),
        st.sampled_from(["now", "past", "future", "one"]),
        st.sampled_from([(), (NOPUT,), (NODELETE,)]),
        st.booleans(),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 1), st.integers(0, 3)),
    st.tuples(st.just("progress"), st.integers(0, 1)),
)


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(st.lists(ops, min_size=1, max_size=80), st.integers(1, 4))
def test_property_watchers_see_exactly_the_filtered_committed_log(
    script: list[tuple[object, ...]], buffer_size: int
) -> None:
    with mock.patch.object(watch_mod, "STREAM_BUFFER", buffer_size):
        run_script(script)


def run_script(script: list[tuple[object, ...]]) -> None:
    env = Env()
    streams = [env.hub.open_stream(), env.hub.open_stream()]
    recs: list[Rec] = []
    # Per stream: watch id -> the records created with that id, not yet confirmed by a created message.
    pending: list[dict[int, list[Rec]]] = [defaultdict(list), defaultdict(list)]
    active: list[dict[int, Rec]] = [{}, {}]
    progress_asked: list[int] = [0, 0]

    def consume(i: int, msgs: list[WatchMessage]) -> None:
        for m in msgs:
            if m.progress:
                assert progress_asked[i] > 0, "unsolicited progress message"
                progress_asked[i] -= 1
                # Bookmark: every watcher of the stream has delivered everything up to m.revision.
                for rec in active[i].values():
                    got = [e for batch in rec.delivered for e in batch]
                    exp = [e for e in rec.expected(env.log) if e.kv.mod_revision <= m.revision]
                    assert canonical(got[: len(exp)]) == canonical(exp), "progress before catch-up"
                continue
            if m.watch_id == -1:
                continue  # a refused duplicate id (not generated here)
            if m.created:
                rec = pending[i][m.watch_id].pop(0)
                rec.created = True
                active[i][m.watch_id] = rec
                continue
            rec = active[i][m.watch_id]
            if m.canceled:
                if m.compact_revision:
                    assert m.revision == 0
                    rec.compact_cancel = m.compact_revision
                else:
                    assert rec.cancelled_by_user
                del active[i][m.watch_id]
                continue
            assert m.events, m
            rec.delivered.append(list(m.events))

    for op in script:
        kind = op[0]
        if kind == "put":
            env.put(op[1], op[2])  # type: ignore[arg-type]
        elif kind == "delete":
            end = op[2]
            if end and end <= op[1]:  # type: ignore[operator]
                end = b"\x00"
            env.delete(op[1], end)  # type: ignore[arg-type]
        elif kind == "compact":
            target = env.kv.revision - int(op[1])  # type: ignore[call-overload]
            if target > env.kv.compact_revision:
                env.compact(target)
        elif kind == "pop":
            i = int(op[1])  # type: ignore[call-overload]
            consume(i, streams[i].pop_all())
            if op[2]:
                env.hub.sync(streams[i])
        elif kind == "create":
            i = int(op[1])  # type: ignore[call-overload]
            (key, end), when, filters, prev = op[2], op[3], op[4], op[5]  # type: ignore[misc]
            cur, low = env.kv.revision, env.kv.compact_revision + 1
            start = {"now": 0, "past": max(low, cur - 3), "future": cur + 2, "one": 1}[when]  # type: ignore[index]
            wid = env.hub.create(
                streams[i], key=key, range_end=end, start_revision=start, filters=filters, prev_kv=prev
            )
            assert wid >= 0
            rec = Rec(i, key, end, start if start > 0 else cur + 1, filters, prev)
            recs.append(rec)
            pending[i][wid].append(rec)
        elif kind == "cancel":
            i = int(op[1])  # type: ignore[call-overload]
            ids = sorted(streams[i].watchers)
            if ids:
                wid = ids[int(op[2]) % len(ids)]  # type: ignore[call-overload]
                # The record is the newest one created with that id on the stream.
                rec = (pending[i][wid] or [active[i].get(wid)])[-1]
                assert rec is not None
                rec.cancelled_by_user = True
                assert env.hub.cancel(streams[i], wid)
        elif kind == "progress":
            i = int(op[1])  # type: ignore[call-overload]
            if progress_asked[i] == 0:
                progress_asked[i] += 1
                env.hub.request_progress(streams[i])

    for i, s in enumerate(streams):
        consume(i, drain(env, s))
        assert progress_asked[i] == 0, "a progress request was never answered"

    for rec in recs:
        assert rec.created
        for batch in rec.delivered:
            # Live or catch-up: whole revisions, increasing.
            assert revs(batch) == sorted(revs(batch))
        got = [e for batch in rec.delivered for e in batch]
        batch_revs = [set(revs(b)) for b in rec.delivered]
        for a, b in itertools.pairwise(batch_revs):
            assert max(a) < min(b), "a revision split over messages, or out of order"
        expected = rec.expected(env.log)
        if rec.compact_cancel or rec.cancelled_by_user:
            assert canonical(got) == canonical(expected[: len(got)]), rec
            if got and len(got) < len(expected):
                # A prefix of whole revisions.
                assert expected[len(got)].kv.mod_revision > got[-1].kv.mod_revision
            if rec.compact_cancel:
                nxt = got[-1].kv.mod_revision + 1 if got else rec.start
                # At the compact revision itself tombstones and prev_kv are gone, so a watcher that
                # needs it is cancelled too; above it the history is complete.
                assert nxt <= rec.compact_cancel, "cancelled although its history was still there"
        else:
            assert canonical(got) == canonical(expected), rec
