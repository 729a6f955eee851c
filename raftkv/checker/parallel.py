"""Optional: oracle A over a process pool, one partition per task (TESTING.md §5.2).

Owns: only the fan-out; the search itself is ``wgl.check_partition``.

Must not: be needed for correctness. ``wgl.check`` gives the same verdict in one process.

Invariants: the model must be picklable (a module-level class); all partitions share one
deadline; the pool is torn down at the first ILLEGAL partition, so later ones are not reported.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

from raftkv.checker.history import Op
from raftkv.checker.wgl import (
    DEFAULT_MAX_CACHE,
    CheckResult,
    Model,
    PartitionResult,
    Verdict,
    check_partition,
    combine,
)


def _search(task: tuple[Model[Any], list[Op], float, int]) -> PartitionResult:
    model, ops, deadline, max_cache = task
    return check_partition(model, ops, deadline, max_cache)


def check_parallel(
    model: Model[Any],
    ops: Sequence[Op],
    budget_s: float = 60.0,
    processes: int = 2,
    max_cache: int = DEFAULT_MAX_CACHE,
) -> CheckResult:
    """Like ``wgl.check``, with partitions searched in ``processes`` worker processes."""
    start = time.monotonic()
    # time.monotonic is system-wide on Linux, so workers can compare against the parent's clock.
    deadline = start + budget_s
    tasks = [(model, part, deadline, max_cache) for part in model.partition(ops)]
    results: list[PartitionResult] = []
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for result in pool.imap_unordered(_search, tasks):
            results.append(result)
            if result.verdict is Verdict.ILLEGAL:
                break
    return combine(results, time.monotonic() - start)
