"""Every program in ``examples/`` runs against a real cluster and exits 0 (each is bounded)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_and_exits_0(example: Path, endpoints: list[str]) -> None:
    env = dict(os.environ, RAFTKV_ENDPOINTS=",".join(endpoints), PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, f"{example.name}:\n{result.stdout}\n{result.stderr}"
    assert "Run against the dev cluster" in (example.read_text())
