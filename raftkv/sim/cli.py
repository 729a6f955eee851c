"""``python -m raftkv.sim.cli``: run a range of simulator seeds and summarise them.

Owns: argument parsing, running seeds in-process or on a small process pool, the failure report
(seed, replay command, the notable-event trace) and the one-line JSON summary that is always
the last line printed. Exits 1 when any seed found a violation.

Must not: import asyncio, time, os, socket, threading, subprocess or datetime. Throughput is
therefore measured in CPU time (``resource``), as seeds per CPU-second of this process and its
workers: that is also what the CI budget on 2 cores is made of.

Invariants: a seed's result depends only on (seed, nodes, unsafe flags, fault duration), never on
the pool size or the order in which workers finish; the summary lists failed seeds in order.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
from collections.abc import Sequence

from raftkv.sim.world import ALL_FLAGS, DEFAULT_FAULT_MS, SeedResult, run_seed


def replay_command(seed: int, nodes: int, unsafe: Sequence[str], fault_ms: int) -> str:
    flags = "".join(f" --unsafe {f}" for f in unsafe)
    extra = "" if fault_ms == DEFAULT_FAULT_MS else f" --fault-ms {fault_ms}"
    return f"scripts/sim --seeds 1 --start {seed} --nodes {nodes}{flags}{extra} --verbose"


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run(args: tuple[int, int, frozenset[str], int]) -> SeedResult:
    seed, nodes, unsafe, fault_ms = args
    return run_seed(seed, nodes, unsafe, fault_ms)


def summarise(results: list[SeedResult], cpu_s: float) -> dict[str, object]:
    faults: dict[str, int] = {}
    ops: dict[str, int] = {"ok": 0, "fail": 0, "unknown": 0}
    rare: dict[str, int] = {}
    for r in results:
        for k, v in r.faults.items():
            faults[k] = faults.get(k, 0) + v
        for k, v in r.client_ops.items():
            ops[k] = ops.get(k, 0) + v
        for k, v in r.rare_paths.items():
            rare[k] = rare.get(k, 0) + v
    failed = [r.seed for r in results if r.violation is not None]
    return {
        "seeds": len(results),
        "violations": len(failed),
        "failed_seeds": failed,
        "seeds_per_s": round(len(results) / cpu_s, 3) if cpu_s > 0 else None,
        "faults": faults,
        "client_ops": ops,
        "rare_paths": rare,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/sim", description="Run deterministic simulator seeds.")
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    parser.add_argument("--unsafe", action="append", default=[], choices=sorted(ALL_FLAGS))
    parser.add_argument("--fault-ms", type=int, default=DEFAULT_FAULT_MS, help="simulated fault phase")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (1 = in-process)")
    parser.add_argument("--verbose", action="store_true", help="print every event of each seed")
    parser.add_argument("--trace", action="store_true", help="same as --verbose")
    ns = parser.parse_args(argv)
    unsafe = frozenset(ns.unsafe)
    verbose = ns.verbose or ns.trace
    work = [(s, ns.nodes, unsafe, ns.fault_ms) for s in range(ns.start, ns.start + ns.seeds)]
    cpu0 = _cpu_seconds()
    results: list[SeedResult]
    if verbose or ns.jobs <= 1:
        results = []
        for seed, nodes, flags, fault_ms in work:
            results.append(run_seed(seed, nodes, flags, fault_ms, log=print if verbose else None))
    else:
        with multiprocessing.get_context("fork").Pool(ns.jobs) as pool:
            results = pool.map(_run, work, chunksize=1)
    cpu_s = _cpu_seconds() - cpu0
    for r in results:
        if r.violation is None:
            continue
        print(f"seed {r.seed} ({r.nodes} nodes) FAILED: {r.violation}")
        print(f"  replay: {replay_command(r.seed, r.nodes, sorted(unsafe), ns.fault_ms)}")
        for line in r.trace:
            print(f"  | {line}")
    summary = summarise(results, cpu_s)
    print(json.dumps(summary, sort_keys=False))
    sys.stdout.flush()
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
