"""Per-directed-link TCP proxies for peer traffic (TESTING.md §4.3).

Owns: one listening socket per directed link i→j (node i dials it instead of j's peer port via
``RAFTKV_TEST_PEER_DIAL``), the connections accepted on it, and the link mode: ``pass``, ``drop``
(blackhole: bytes are read and discarded, the connection is kept), ``delay`` (each chunk is held
for a while, order kept) and ``reset`` (connections are closed and new ones refused at once).

Runs its own asyncio loop in a daemon thread so that a test process busy with blocking calls
(process control, checkers) never stalls peer traffic by accident: a stall would be an unplanned
partition. The proxies are in-process, so stopping the thread's loop stops them all.

Invariants: a connection that was in ``drop`` mode has lost bytes in the middle of the peer
framing, so leaving ``drop`` closes it; the dialler then reconnects and re-handshakes cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
CHUNK = 65536


@dataclass
class Link:
    src: int
    dst: int
    target_port: int
    port: int = 0
    mode: str = "pass"
    delay_s: float = 0.0
    server: asyncio.base_events.Server | None = None
    conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = field(default_factory=set)
    tainted: set[asyncio.StreamWriter] = field(default_factory=set)


class ProxySet:
    """All links of one cluster; thread-safe control methods block until applied."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="jepsen-proxy", daemon=True)
        self._thread.start()
        self.links: dict[tuple[int, int], Link] = {}
        # (wall-clock s, src, dst, what): kept with a failing run's artifacts.
        self.events: list[tuple[float, int, int, str]] = []

    def _event(self, link: Link, what: str) -> None:
        self.events.append((round(time.time(), 3), link.src, link.dst, what))

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def add(self, src: int, dst: int, target_port: int) -> int:
        """Start the proxy for link src→dst forwarding to ``target_port``; returns its port."""
        link = Link(src, dst, target_port)
        self.links[(src, dst)] = link

        async def start() -> int:
            link.server = await asyncio.start_server(
                lambda r, w: self._accept(link, r, w), HOST, 0, reuse_address=True
            )
            return int(link.server.sockets[0].getsockname()[1])

        link.port = self._run(start())
        return link.port

    async def _accept(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if link.mode == "reset":
            writer.transport.abort()
            return
        up: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._event(link, "accept")
        # A target that is restarting refuses for a moment; retrying briefly makes the proxied
        # connection behave like a slow connect rather than an accepted-then-closed one.
        for _ in range(20):
            try:
                up = await asyncio.open_connection(HOST, link.target_port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        if up is None or link.mode == "reset":
            self._event(link, f"upstream failed, mode {link.mode}")
            writer.transport.abort()
            if up is not None:
                up[1].transport.abort()
            return
        up_r, up_w = up
        self._event(link, "upstream connected")
        pair = (writer, up_w)
        link.conns.add(pair)
        if link.mode == "drop":
            link.tainted.add(writer)
        try:
            await asyncio.gather(
                self._pump(link, reader, up_w, writer, forward=True),
                self._pump(link, up_r, writer, writer, forward=False),
            )
        finally:
            link.conns.discard(pair)
            link.tainted.discard(writer)
            for w in pair:
                w.transport.abort()

    async def _pump(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_writer: asyncio.StreamWriter,
        forward: bool,
    ) -> None:
        # Both directions obey the link's mode: the reverse direction carries only transport
        # acknowledgements (if any), and a partition must silence those too.
        graceful = False
        why = "error"
        with contextlib.suppress(OSError, asyncio.CancelledError, ConnectionError):
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    graceful = link.mode == "pass"
                    why = "eof"
                    break
                if link.mode == "drop":
                    link.tainted.add(client_writer)
                    continue
                if link.mode == "reset":
                    why = "reset"
                    break
                if link.mode == "delay" and link.delay_s > 0:
                    await asyncio.sleep(link.delay_s)
                writer.write(data)
                await writer.drain()
        self._event(link, f"{'forward' if forward else 'reverse'} pump ended: {why}")
        if graceful:
            # A clean end of stream (e.g. a finished snapshot transfer) must deliver what is still
            # buffered: close flushes, abort would drop up to the write buffer's high-water mark.
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 10)
        else:
            writer.transport.abort()

    def set_mode(self, src: int, dst: int, mode: str, delay_s: float = 0.0) -> None:
        link = self.links[(src, dst)]

        async def apply() -> None:
            old = link.mode
            link.mode, link.delay_s = mode, delay_s
            if mode == "reset" or (old == "drop" and mode != "drop"):
                # Close connections that lost bytes (or all, for reset) so the dialler reconnects.
                for client_w, up_w in list(link.conns):
                    if mode == "reset" or client_w in link.tainted:
                        client_w.transport.abort()
                        up_w.transport.abort()

        self._run(apply())

    def heal_all(self) -> None:
        for src, dst in list(self.links):
            self.set_mode(src, dst, "pass")

    def close(self) -> None:
        async def stop() -> None:
            for link in self.links.values():
                if link.server is not None:
                    link.server.close()
                for a, b in list(link.conns):
                    a.transport.abort()
                    b.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()

        with contextlib.suppress(Exception):
            self._run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
