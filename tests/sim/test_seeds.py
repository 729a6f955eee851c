"""Tier b: the CI batch of simulator seeds (TESTING.md §4.2), one test per seed.

``pytest tests/sim -k seed_123`` runs one seed; ``RAFTKV_TEST_SCALE=nightly`` runs 20,000. Seeds
listed in ``regressions.txt`` (one ``seed nodes`` pair a line) always run. Every failure names
its seed and the replay command. ``test_fault_and_rare_path_coverage`` checks that a fixed batch
still exercises every fault class and rare path (G3/G4): a zero means the suite lost its teeth.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.sim.world import run_seed
from tests.sim.helpers import FAULT_MS, SCALE, failure_text

COUNTS = {"ci": (200, 100), "nightly": (13_000, 7_000)}[SCALE]
REGRESSIONS = Path(__file__).with_name("regressions.txt")


def _regressions() -> list[tuple[int, int]]:
    out = []
    for line in REGRESSIONS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            seed, nodes = line.split()
            out.append((int(seed), int(nodes)))
    return out


CASES = [(s, 3) for s in range(COUNTS[0])] + [(s, 5) for s in range(COUNTS[1])]


@pytest.mark.parametrize(("seed", "nodes"), CASES, ids=[f"seed_{s}-n{n}" for s, n in CASES])
def test_seed(seed: int, nodes: int) -> None:
    result = run_seed(seed, nodes, fault_ms=FAULT_MS)
    assert result.violation is None, failure_text(result)


@pytest.mark.parametrize(
    ("seed", "nodes"), _regressions(), ids=[f"regression_seed_{s}-n{n}" for s, n in _regressions()]
)
def test_regression_seed(seed: int, nodes: int) -> None:
    result = run_seed(seed, nodes, fault_ms=FAULT_MS)
    assert result.violation is None, failure_text(result)


def test_seeds_replay_exactly() -> None:
    a = run_seed(7, 3, fault_ms=2000)
    b = run_seed(7, 3, fault_ms=2000)
    assert (a.trace, a.faults, a.client_ops, a.rare_paths, a.sim_ms) == (
        b.trace,
        b.faults,
        b.client_ops,
        b.rare_paths,
        b.sim_ms,
    )
    assert run_seed(8, 3, fault_ms=2000).client_ops != a.client_ops


# Fault classes and rare paths (TESTING.md §1 G3, G4) that this fixed batch must exercise.
MUST_HAPPEN = (
    "partitions", "one_way", "crashes", "crash_points", "lost_unsynced", "torn_tail", "pauses",
    "leader_pauses", "snapshots_installed", "snapshots_taken", "leader_changes", "clock_drift",
    "drops", "duplicates",
)  # fmt: skip
RARE_PATHS = (
    "conflict_truncation", "prev_log_below_snapshot", "follower_snapshot_install", "prevote_rejected",
    "checkquorum_stepdown", "read_index_failed", "dedup_hit", "lease_expiry_revoked",
    "stale_revoke_ignored", "keepalive_ok", "keepalive_not_leader", "watch_resumed",
)  # fmt: skip


def test_fault_and_rare_path_coverage() -> None:
    faults: dict[str, int] = {}
    rare: dict[str, int] = {}
    ops: dict[str, int] = {}
    batch = [(s, 3) for s in range(1000, 1020)] + [(s, 5) for s in range(1000, 1010)]
    for seed, nodes in batch:
        r = run_seed(seed, nodes, fault_ms=FAULT_MS)
        assert r.violation is None, failure_text(r)
        for src, dst in ((r.faults, faults), (r.rare_paths, rare), (r.client_ops, ops)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
    missing = [k for k in MUST_HAPPEN if not faults.get(k)] + [k for k in RARE_PATHS if not rare.get(k)]
    assert not missing, f"never exercised in seeds 1000..: {missing}; faults={faults} rare={rare}"
    assert ops["ok"] > 1000 and ops["unknown"] > 0 and ops["fail"] > 0, ops
