"""Fixtures for tier c: clusters of real processes that are always stopped, logs shown on failure.

``cluster_factory`` builds ``harness.Cluster`` objects; its finalizer kills every process they
started (by PID) even when the test failed, and prints the node logs of a failed test so that the
failure report carries them (pytest shows teardown output for failing tests).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: tier c, real raftkv processes on 127.0.0.1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    # Remember each phase's report so fixtures can tell in teardown whether the test failed.
    setattr(item, f"rep_{report.when}", report)


def phase_failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"rep_{phase}", None), "failed", False) for phase in ("setup", "call")
    )


@pytest.fixture
def cluster_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Generator[Callable[..., Cluster], None, None]:
    clusters: list[Cluster] = []

    def make(size: int = 3, **kwargs: Any) -> Cluster:
        root = tmp_path / f"cluster{len(clusters)}"
        root.mkdir()
        cluster = Cluster(size, root=root, **kwargs)
        clusters.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()
        if phase_failed(request):
            for cluster in clusters:
                print(f"\n===== node logs of {cluster.root}\n{cluster.logs(20_000)}")
