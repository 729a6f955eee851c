"""The running node: wires storage, replica, driver, peer transport and the HTTP API together.

Owns: the node's lifetime: boot (``bootstrap.open_node``), the peer listener and connections,
the driver task, the client listeners (aiohttp), signal handling (SIGTERM and SIGINT stop the node
cleanly) and shutdown in reverse order. A driver failure (e.g. a failed fsync) stops the node
with a non-zero exit status.

Test hooks (honoured only with ``RAFTKV_TEST=1``): ``RAFTKV_TEST_PEER_DIAL=<id-hex>=host:port,...``
makes this node dial those addresses instead of the peers' advertised URLs (the fault harness's
proxies; member ids and URLs stay unchanged); ``RAFTKV_TEST_CLOCK_RATE`` / ``_OFFSET`` scale and
shift the driver's clock; ``RAFTKV_TEST_DISK`` is read by ``bootstrap``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

from aiohttp import web

from raftkv.api import v3
from raftkv.server.bootstrap import open_node
from raftkv.server.config import ServerConfig, host_port
from raftkv.server.driver import DriverSettings, NodeDriver
from raftkv.server.service import RAFTKV_VERSION, VERSION, NodeService
from raftkv.transport.peer import Address, PeerTransport

log = logging.getLogger("raftkv.server")


def driver_clock() -> Callable[[], float]:
    """The driver's monotonic clock; the fault harness may scale and shift it
    (``RAFTKV_TEST_CLOCK_RATE``, ``RAFTKV_TEST_CLOCK_OFFSET``, with ``RAFTKV_TEST=1``)."""
    if os.environ.get("RAFTKV_TEST") != "1":
        return time.monotonic
    rate = float(os.environ.get("RAFTKV_TEST_CLOCK_RATE", "1"))
    offset = float(os.environ.get("RAFTKV_TEST_CLOCK_OFFSET", "0"))
    start = time.monotonic()
    return lambda: start + offset + (time.monotonic() - start) * rate


def peer_addresses(config: ServerConfig) -> dict[int, Address]:
    ids = config.member_ids()
    addresses = {ids[name]: host_port(urls[0]) for name, urls in config.members.items()}
    if os.environ.get("RAFTKV_TEST") == "1" and os.environ.get("RAFTKV_TEST_PEER_DIAL"):
        for item in os.environ["RAFTKV_TEST_PEER_DIAL"].split(","):
            peer, _, address = item.partition("=")
            host, _, port = address.rpartition(":")
            addresses[int(peer, 16)] = (host, int(port))
    return addresses


async def serve(config: ServerConfig) -> int:
    """Run one node until SIGTERM/SIGINT (exit 0) or a fatal driver error (exit 1)."""
    node = open_node(config)
    loop = asyncio.get_running_loop()
    driver_box: list[NodeDriver] = []

    transport = PeerTransport(
        node_id=config.member_id,
        cluster_id=config.cluster_id,
        listen=host_port(config.listen_peer_urls[0]),
        peers=peer_addresses(config),
        on_messages=lambda msgs: driver_box[0].deliver(msgs),
        on_unreachable=lambda peer: driver_box[0].report_unreachable(peer),
        on_snapshot_status=lambda peer, ok: driver_box[0].report_snapshot(peer, ok),
        on_lease_call=lambda kind, lease_id: driver_box[0].answer_lease_call(kind, lease_id),
    )
    driver = NodeDriver(
        replica=node.replica,
        disk=node.disk,
        send=transport.send,
        clock=driver_clock(),
        settings=DriverSettings(
            tick_seconds=config.heartbeat_interval / 1000,
            request_timeout=config.request_timeout,
            initial_ticks=config.election_ticks - 1,
            member_id=config.member_id,
            max_request_bytes=config.max_request_bytes,
            keepalive_confirm="keepalive_no_confirm" not in config.unsafe,
            progress_notify_seconds=float(os.environ.get("RAFTKV_WATCH_PROGRESS_NOTIFY_INTERVAL", 600)),
            lease_forward_timeout=2 * config.election_timeout / 1000,
        ),
    )
    driver.forward_lease_call = lambda peer, kind, lease_id, timeout: transport.call(
        peer, kind, lease_id, timeout=timeout
    )
    driver_box.append(driver)
    service = NodeService(config=config, driver=driver, machine=node.machine)

    app = web.Application(client_max_size=2 * (config.max_request_bytes + v3.GRPC_OVERHEAD))
    v3.add_routes(
        app,
        service,
        max_request_bytes=config.max_request_bytes,
        version=VERSION,
        server_version=RAFTKV_VERSION,
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    driver.start()
    await transport.start()
    await runner.setup()
    for url in config.listen_client_urls:
        host, port = host_port(url)
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    log.info(
        "member %x (%s) of cluster %x serving clients on %s",
        config.member_id,
        config.name,
        config.cluster_id,
        ",".join(config.listen_client_urls),
    )

    stopped = asyncio.create_task(driver.stopped.wait())
    requested = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, requested}, return_when=asyncio.FIRST_COMPLETED)
    for task in (stopped, requested):
        task.cancel()
    await runner.cleanup()
    await transport.stop()
    await driver.stop()
    with contextlib.suppress(Exception):
        node.disk.close()
    if driver.failure is not None:
        log.critical("node stopped: %s", driver.failure)
        return 1
    return 0
