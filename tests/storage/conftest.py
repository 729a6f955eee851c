"""Shared fixtures for the storage tests: a node identity and a bootstrapped data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.raft.types import ConfState
from raftkv.storage.disk import DiskStorage, NodeMeta


@pytest.fixture
def meta() -> NodeMeta:
    return NodeMeta(name="n1", member_id=0x11, cluster_id=0xC1)


@pytest.fixture
def conf() -> ConfState:
    return ConfState(voters=(0x11, 0x12, 0x13))


@pytest.fixture
def data_dir(tmp_path: Path, meta: NodeMeta, conf: ConfState) -> Path:
    """A freshly bootstrapped data directory."""
    d = tmp_path / "node"
    DiskStorage.bootstrap(d, meta, conf, b"initial state")
    return d
