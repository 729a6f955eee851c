"""Fixtures for the Jepsen-style tier c tests: the ``jepsen`` marker and the report root.

Every campaign stops its own processes by PID (``JepsenCluster.close``), so no fixture is needed
for teardown; reports go under ``test-reports/jepsen/`` (gitignored) and keep the history, the
nemesis timeline, node logs and data directories of any failing run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPORT_ROOT = Path(__file__).resolve().parents[2] / "test-reports" / "jepsen"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "jepsen: Jepsen-style campaigns on real raftkv processes (slow)")


@pytest.fixture
def report_root(request: pytest.FixtureRequest) -> Path:
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    root = REPORT_ROOT / f"pytest-{name}"
    root.mkdir(parents=True, exist_ok=True)
    return root
