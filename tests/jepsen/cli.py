"""``scripts/jepsen``: run one campaign and print its JSON report as the last line.

Exit status 0 only when the report shows no anomaly and no acknowledged write lost.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from tests.jepsen.campaign import Config, run_campaign


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/jepsen", description=__doc__)
    p.add_argument("--time", type=float, default=60.0, help="seconds of faults (then a heal phase)")
    p.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--nemesis", default="all",
        help="all|kill|pause|partition|disk|torn|enospc|clock|none, or kinds (comma-separated)",
    )
    p.add_argument("--workload", default="all", help="all|register|bank|watch|lease|lock (comma-separated)")
    p.add_argument("--report-dir", type=Path, default=None)
    p.add_argument("--election-timeout", type=int, default=600)
    p.add_argument("--no-lazy-disk", action="store_true")
    p.add_argument("--unsafe", default="", help="comma-separated canary switches (test only)")
    p.add_argument("--snapshot-count", type=int, default=None)
    p.add_argument("--rate", type=float, default=100.0)
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    cfg = Config(
        seconds=args.time, nodes=args.nodes, seed=seed, nemesis=args.nemesis, workload=args.workload,
        report_dir=args.report_dir, election_ms=args.election_timeout, lazy_disk=not args.no_lazy_disk,
        unsafe=tuple(u for u in args.unsafe.split(",") if u), snapshot_count=args.snapshot_count,
        rate=args.rate, name=f"seed{seed}",
    )
    print(f"jepsen: seed {seed}, report dir {cfg.report_dir or '(default)'}", file=sys.stderr)
    report = run_campaign(cfg)
    print(json.dumps(report, default=str))
    bad = report.get("anomalies", 1) != 0 or report.get("acked_lost", 1) != 0
    if bad:
        print(f"jepsen: FAILED (seed {seed}); artifacts in {report['report_dir']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
