"""``WatchHub``: one node's watchers, fed with committed events (not replicated state).

Owns: watch streams and their watchers; live delivery of each applied revision's events to the
synced watchers whose range they touch; catch-up of unsynced watchers from MVCC history; the
compaction cancel; progress responses; bounded per-stream buffers. Consumers (the HTTP stream
handlers) are woken through an injected callable and pop ``WatchMessage``s from their stream.

Must not: do I/O or read a clock, or block ``publish`` (it runs inside apply): a stream whose
buffer is full is not waited for; its watchers become unsynced and catch up from history later.

Invariants (per watcher, API.md §4): events are delivered in revision order (within a revision
in key order), each revision at most once and all of a revision's events in one message; no
committed event in the watcher's range at or after its start revision is skipped, unless the
watcher is cancelled with ``compact_revision`` because history it still needs was compacted; a
progress message for a stream is only sent when every watcher of that stream has delivered
everything up to its revision.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from raftkv import errors
from raftkv.state.commands import Event, EventType
from raftkv.state.mvcc import KVStore

STREAM_BUFFER = 128
CATCH_UP_EVENTS = 1000
# Catch-up messages also stop near this many key and value bytes (one revision is never split),
# so a replay of a long history reaches clients as lines a line reader can take.
CATCH_UP_BYTES = 1 << 20
NOPUT = 0
NODELETE = 1
PROGRESS_WATCH_ID = -1


@dataclass(frozen=True, slots=True)
class WatchMessage:
    """One message for a stream; ``revision`` 0 means "no revision in the header" (a compaction
    cancel). ``watch_id`` -1 answers a progress request or a refused create."""

    watch_id: int
    revision: int
    events: tuple[Event, ...] = ()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    progress: bool = False


@dataclass(slots=True)
class Watcher:
    watch_id: int
    key: bytes
    range_end: bytes
    next_revision: int  # the first revision not yet delivered
    prev_kv: bool = False
    no_put: bool = False
    no_delete: bool = False
    progress_notify: bool = False
    fragment: bool = False
    synced: bool = True
    idle: bool = True  # no event since the last progress notification
    # Created to start exactly at the compact revision, which API.md allows; any other watcher
    # that needs the compact revision itself is cancelled (its tombstones and prev_kv are gone).
    starts_at_compaction: bool = False

    def matches(self, key: bytes) -> bool:
        end = self.range_end
        if not end:
            return key == self.key
        if end == b"\x00":
            return key >= self.key
        return self.key <= key < end

    def select(self, events: tuple[Event, ...] | list[Event]) -> tuple[Event, ...]:
        chosen = []
        for ev in events:
            if not self.matches(ev.kv.key):
                continue
            if ev.type == EventType.PUT and self.no_put:
                continue
            if ev.type == EventType.DELETE and self.no_delete:
                continue
            chosen.append(ev if self.prev_kv or ev.prev_kv is None else Event(ev.type, ev.kv, None))
        return tuple(chosen)


@dataclass(slots=True)
class WatchStream:
    stream_id: int
    watchers: dict[int, Watcher] = field(default_factory=dict)
    buffer: deque[WatchMessage] = field(default_factory=deque)
    progress_pending: bool = False
    closed: bool = False
    _next_id: int = 0

    def full(self) -> bool:
        return len(self.buffer) >= STREAM_BUFFER

    def pop_all(self) -> list[WatchMessage]:
        messages = list(self.buffer)
        self.buffer.clear()
        return messages


class WatchHub:
    def __init__(self, kv: KVStore, wake: Callable[[int], None]) -> None:
        self._kv = kv
        self._wake = wake
        self._streams: dict[int, WatchStream] = {}
        self._next_stream = 1
        self.cancelled_compacted = 0  # a rare-path counter (TESTING.md G4)

    def set_waker(self, wake: Callable[[int], None]) -> None:
        self._wake = wake

    def rebind(self, kv: KVStore) -> None:
        """The store was replaced (snapshot restore): every watcher catches up from the new one."""
        self._kv = kv
        for stream in self._streams.values():
            for watcher in stream.watchers.values():
                watcher.synced = False
        self.sync()

    # --- streams and watchers ------------------------------------------------------------------

    def open_stream(self) -> WatchStream:
        stream = WatchStream(self._next_stream)
        self._next_stream += 1
        self._streams[stream.stream_id] = stream
        return stream

    def close_stream(self, stream: WatchStream) -> None:
        stream.closed = True
        stream.watchers.clear()
        self._streams.pop(stream.stream_id, None)

    def create(
        self,
        stream: WatchStream,
        *,
        key: bytes,
        range_end: bytes = b"",
        start_revision: int = 0,
        watch_id: int = 0,
        prev_kv: bool = False,
        filters: tuple[int, ...] = (),
        progress_notify: bool = False,
        fragment: bool = False,
    ) -> int:
        """Create a watcher; queues the created message (and a compaction cancel, if due).
        Returns the watch id, or -1 when ``watch_id`` is already in use on the stream."""
        current = self._kv.revision
        if watch_id == 0:
            while stream._next_id in stream.watchers:
                stream._next_id += 1
            watch_id = stream._next_id
        elif watch_id in stream.watchers:
            self._emit(
                stream,
                WatchMessage(
                    PROGRESS_WATCH_ID,
                    current,
                    created=True,
                    canceled=True,
                    cancel_reason="mvcc: duplicate watch ID provided on the WatchStream",
                ),
            )
            return -1
        # An empty key watches the single key "\0" (etcd's gateway rule).
        watcher = Watcher(
            watch_id=watch_id,
            key=key or b"\x00",
            range_end=range_end,
            next_revision=start_revision if start_revision > 0 else current + 1,
            prev_kv=prev_kv,
            no_put=NOPUT in filters,
            no_delete=NODELETE in filters,
            progress_notify=progress_notify,
            fragment=fragment,
        )
        watcher.starts_at_compaction = 0 < start_revision == self._kv.compact_revision
        stream.watchers[watch_id] = watcher
        self._emit(stream, WatchMessage(watch_id, current, created=True))
        if watcher.next_revision <= current:
            watcher.synced = False
            self._catch_up(stream, watcher)
        return watch_id

    def cancel(self, stream: WatchStream, watch_id: int) -> bool:
        """Cancel a watcher; an unknown id is ignored (no message), as etcd does."""
        if stream.watchers.pop(watch_id, None) is None:
            return False
        self._emit(stream, WatchMessage(watch_id, self._kv.revision, canceled=True))
        return True

    def request_progress(self, stream: WatchStream) -> None:
        stream.progress_pending = True
        self._maybe_progress(stream)

    def notify_idle(self) -> None:
        """Progress notifications for ``progress_notify`` watchers that saw no event since the
        last call (the caller decides the interval)."""
        current = self._kv.revision
        for stream in self._streams.values():
            for watcher in stream.watchers.values():
                if watcher.progress_notify and watcher.synced and watcher.idle and not stream.full():
                    self._emit(stream, WatchMessage(watcher.watch_id, current))
                watcher.idle = True

    # --- publishing ----------------------------------------------------------------------------

    def publish(self, revision: int, events: tuple[Event, ...]) -> None:
        """The events of one applied revision; call in revision order."""
        if not events:
            return
        if len(events) > 1:
            # Catch-up from history yields a revision's events in key order: use the same order
            # live, so a watcher sees the same sequence whichever path served it.
            events = tuple(sorted(events, key=lambda e: e.kv.key))
        for stream in self._streams.values():
            for watcher in stream.watchers.values():
                if not watcher.synced or watcher.next_revision > revision:
                    continue
                chosen = watcher.select(events)
                if not chosen:
                    continue
                if stream.full():
                    # Never wait for a slow consumer: catch up from history once it drains.
                    watcher.synced = False
                    continue
                self._emit(stream, WatchMessage(watcher.watch_id, revision, chosen))
                watcher.next_revision = revision + 1
                watcher.idle = False

    def sync(self, stream: WatchStream | None = None) -> None:
        """Catch up unsynced watchers whose streams have room, and answer due progress requests.
        Call after applying (every stream), and for one stream when its consumer drained it."""
        current = self._kv.revision
        targets = list(self._streams.values()) if stream is None else [stream]
        for target in targets:
            for watcher in list(target.watchers.values()):
                if not watcher.synced:
                    self._catch_up(target, watcher)
                elif watcher.next_revision <= current:
                    # Nothing in range happened since it was synced: it is up to date.
                    watcher.next_revision = current + 1
            self._maybe_progress(target)

    def _catch_up(self, stream: WatchStream, watcher: Watcher) -> None:
        current = self._kv.revision
        if stream.full():
            return
        compact = self._kv.compact_revision
        needs_compacted = watcher.next_revision < compact or (
            watcher.next_revision == compact and not watcher.starts_at_compaction
        )
        if needs_compacted:
            stream.watchers.pop(watcher.watch_id, None)
            self.cancelled_compacted += 1
            self._emit(stream, WatchMessage(watcher.watch_id, 0, canceled=True, compact_revision=compact))
            return
        try:
            # Read once and cut into messages: re-reading per message made a replay of N events
            # cost O(N^2) on the event loop, long enough for clients to time out and retry.
            history = self._kv.history(watcher.key, watcher.range_end, watcher.next_revision)
        except errors.Compacted:  # pragma: no cover - excluded by the check above
            raise errors.InvariantViolation("watch history below the compact revision") from None
        start = 0
        while not stream.full():
            end = _batch_end(history, start, CATCH_UP_EVENTS, CATCH_UP_BYTES)
            if end == start:
                # Never backwards: a watcher created ahead of this node (a client resuming on a
                # lagging node) and unsynced by a snapshot install must not get current+1.. again.
                watcher.next_revision = max(watcher.next_revision, current + 1)
                watcher.synced = True
                return
            batch = watcher.select(history[start:end])
            if batch:
                self._emit(stream, WatchMessage(watcher.watch_id, current, batch))
                watcher.idle = False
            watcher.next_revision = history[end - 1].kv.mod_revision + 1
            watcher.starts_at_compaction = False
            start = end

    def _maybe_progress(self, stream: WatchStream) -> None:
        if not stream.progress_pending or stream.full():
            return
        if all(w.synced for w in stream.watchers.values()):
            stream.progress_pending = False
            self._emit(stream, WatchMessage(PROGRESS_WATCH_ID, self._kv.revision, progress=True))

    def _emit(self, stream: WatchStream, message: WatchMessage) -> None:
        stream.buffer.append(message)
        self._wake(stream.stream_id)


def _batch_end(events: list[Event], start: int, limit: int, byte_limit: int) -> int:
    """The end of the next message from ``events[start:]``: about ``limit`` events or
    ``byte_limit`` key and value bytes (counting ``prev_kv``), never splitting a revision."""
    size = 0
    end = start
    n = len(events)
    while end < n:
        ev = events[end]
        end += 1
        size += len(ev.kv.key) + len(ev.kv.value)
        if ev.prev_kv is not None:
            size += len(ev.prev_kv.value)
        if end - start >= limit or size >= byte_limit:
            break
    if end > start:
        last_rev = events[end - 1].kv.mod_revision
        while end < n and events[end].kv.mod_revision == last_rev:
            end += 1
    return end
