"""Fixtures for the client, CLI, recipe and example tests: real raftkv clusters (tier c processes,
``tests.cluster.harness``) on free ports, stopped by PID.

``cluster`` is one 3-node cluster per test module for tests that do not hurt it (each test works
under its own key prefix); ``own_cluster`` is a fresh cluster per test for tests that kill nodes.
Node logs are printed when a test fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster

# Must match the deadline the harness waits for readiness: a loaded 2-core machine is slow to start.
DEADLINE = 60.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: tier c, real raftkv processes on 127.0.0.1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(node: pytest.Item) -> bool:
    return any(getattr(getattr(node, f"rep_{p}", None), "failed", False) for p in ("setup", "call"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(3, root=tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def own_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """A factory of fresh clusters for this test only (killed nodes do not leak into others)."""
    made: list[Cluster] = []

    def make(size: int = 3, **kwargs: Any) -> Cluster:
        root = tmp_path / f"cluster{len(made)}"
        root.mkdir()
        c = Cluster(size, root=root, **kwargs)
        made.append(c)
        return c.start()

    try:
        yield make
    finally:
        for c in made:
            c.stop()
        if _failed(request.node):
            for c in made:
                print(f"\n===== node logs of {c.root}\n{c.logs(20_000)}")


def endpoints_of(c: Cluster) -> list[str]:
    return [n.client_url for n in c.nodes]


@pytest.fixture
def endpoints(cluster: Cluster) -> list[str]:
    return endpoints_of(cluster)


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, so that tests sharing a cluster do not see each other."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name) + "/"
