"""Canaries (TESTING.md §7, G6): each unsafe flag must be caught within a fixed seed budget.

A flag is caught when some seed of the budget reports a violation. ``commit_old_term`` needs a
lagging follower to acknowledge exactly an older-term index, which random runs rarely produce, so
besides the seed budget it is caught by the scripted Figure 8 scenario (``test_script.py``), the
golden test TESTING.md names for it.
"""

from __future__ import annotations

import pytest

from raftkv.sim.checks import Violation
from raftkv.sim.world import ALL_FLAGS, run_seed
from tests.sim.helpers import FAULT_MS, failure_text, figure8

BUDGET = 30
SEED_CAUGHT_FLAGS = sorted(ALL_FLAGS - {"commit_old_term"})


@pytest.mark.parametrize("flag", SEED_CAUGHT_FLAGS)
def test_canary_is_caught(flag: str) -> None:
    for seed in range(BUDGET):
        nodes = 3 if seed % 3 else 5
        result = run_seed(seed, nodes, frozenset({flag}), fault_ms=FAULT_MS)
        if result.violation is not None:
            print(f"canary {flag} caught by {failure_text(result, [flag])}")
            return
    pytest.fail(
        f"canary {flag} survived seeds 0..{BUDGET - 1} (scripts/sim --seeds {BUDGET} --unsafe {flag})"
    )


def test_commit_old_term_canary_is_caught() -> None:
    with pytest.raises(Violation, match="Figure 8"):
        figure8(frozenset({"commit_old_term"}))
