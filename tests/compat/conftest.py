"""Fixtures for the API compatibility tests: raftkv servers (and a real etcd) as real processes.

Servers are session-scoped (one per xdist worker), listen on free 127.0.0.1 ports, and are stopped
by PID in the fixture finalizer even when tests fail; their logs are printed at teardown when any
test of the session failed. Tests share a server, so each test works under its own key prefix.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster, Node

_counter = itertools.count()


def _serve(tmp_root: Path, request: pytest.FixtureRequest, extra: list[str]) -> Generator[Node, None, None]:
    cluster = Cluster(1, root=tmp_root, extra_args=extra)
    try:
        cluster.start()
        yield cluster.nodes[0]
    finally:
        cluster.stop()
        if request.session.testsfailed:
            print(f"\n===== raftkv log ({tmp_root})\n{cluster.logs(20_000)}")


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Generator[Node, None, None]:
    """A single-node raftkv with default limits."""
    yield from _serve(tmp_path_factory.mktemp("raftkv"), request, [])


@pytest.fixture(scope="session")
def small_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Generator[Node, None, None]:
    """A single-node raftkv with ``--max-request-bytes 65536`` (cheap size-limit tests)."""
    yield from _serve(tmp_path_factory.mktemp("raftkv-small"), request, ["--max-request-bytes", "65536"])


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix no other test uses on the shared server."""
    return f"{request.node.name[:40]}-{next(_counter)}/"
