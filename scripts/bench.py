"""raftkv micro-benchmarks; run through ``scripts/bench``. Not a test: numbers depend on the machine.

Each benchmark is an argparse subcommand registered in ``COMMANDS``; add one by writing a
``add_<name>_parser`` function that sets ``func`` on its subparser.

``storage``: records/s and fsyncs/s of ``DiskStorage.save`` for several entry sizes, with one
fsync per record and with group commit (one ``save`` of N entries plus a hard state, synced).
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from raftkv.raft.types import ConfState, Entry, HardState
from raftkv.storage.disk import DiskStorage, FileOps, NodeMeta

ENTRY_SIZES = (100, 1024, 16 * 1024)
BATCHES = (1, 16, 128)


class CountingOps(FileOps):
    """Counts fsyncs so the table reports what the storage really did; can skip them to show
    the CPU cost (encoding, write) alone."""

    def __init__(self, real_fsync: bool) -> None:
        self.fsyncs = 0
        self.real_fsync = real_fsync

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        if self.real_fsync:
            super().fsync(fd)


@dataclass(frozen=True, slots=True)
class Cell:
    label: str
    size: int
    records: int
    fsyncs: int
    seconds: float

    def row(self) -> str:
        rate = self.records / self.seconds
        return (
            f"{self.label:<22} {self.size:>8} {rate:>12,.0f} {self.fsyncs / self.seconds:>11,.0f}"
            f" {rate * self.size / 1e6:>8.1f}"
        )


def run_storage_cell(
    base: Path, label: str, size: int, batch: int, group: bool, seconds: float, real_fsync: bool
) -> Cell:
    data_dir = Path(tempfile.mkdtemp(prefix="raftkv-bench-", dir=base))
    shutil.rmtree(data_dir)
    meta = NodeMeta(name="bench", member_id=1, cluster_id=1)
    DiskStorage.bootstrap(data_dir, meta, ConfState(voters=(1,)), b"")
    ops = CountingOps(real_fsync)
    disk, _ = DiskStorage.open(data_dir, expect=meta, file_ops=ops)
    payload = b"x" * size
    index = 0
    start = time.perf_counter()
    elapsed = 0.0
    try:
        while elapsed < seconds:
            entries = [Entry(term=1, index=index + i + 1, data=payload) for i in range(batch)]
            index += batch
            hard_state = HardState(term=1, vote=1, commit=index - batch) if group else None
            disk.save(hard_state, entries, None, True)
            elapsed = time.perf_counter() - start
    finally:
        disk.close()
        shutil.rmtree(data_dir)
    return Cell(label, size, index, ops.fsyncs, elapsed)


def storage(args: argparse.Namespace) -> int:
    base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    fsync = "fsyncs skipped (CPU cost only)" if args.no_fsync else "real fsyncs"
    print(f"DiskStorage.save, {args.seconds:g} s per cell, {fsync}, data under {base}")
    print(f"{'mode':<22} {'entry B':>8} {'records/s':>12} {'fsyncs/s':>11} {'MB/s':>8}")
    for size in ENTRY_SIZES:
        cells = [("fsync per record", 1, False)] + [(f"group commit, batch {n}", n, True) for n in BATCHES]
        for label, batch, group in cells:
            cell = run_storage_cell(base, label, size, batch, group, args.seconds, not args.no_fsync)
            print(cell.row(), flush=True)
    return 0


def add_storage_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("storage", help="WAL append and fsync throughput")
    p.add_argument("--seconds", type=float, default=1.5, help="time per cell (default 1.5)")
    p.add_argument("--dir", default=None, help="parent directory for the temporary data dirs")
    p.add_argument("--no-fsync", action="store_true", help="skip fsyncs to measure the CPU cost alone")
    p.set_defaults(func=storage)


def _add_delegated(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, module: str, help_text: str
) -> None:
    p = sub.add_parser(name, help=f"{help_text} (options: scripts/bench {name} --help)", add_help=False)
    p.set_defaults(func=lambda args: _delegate(module, args.rest), takes_rest=True)


def add_kv_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_delegated(sub, "kv", "bench_kv", "put and linearizable range vs etcd 3.4 with wrk")


def add_watch_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_delegated(sub, "watch", "bench_watch", "watch fan-out and 10k kept-alive leases vs etcd 3.4")


def _delegate(module: str, argv: list[str]) -> int:
    """Run a benchmark that lives in its own script (scripts/<module>.py) with its own options."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    result: int = importlib.import_module(module).main(argv)
    return result


COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    add_storage_parser,
    add_kv_parser,
    add_watch_parser,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "takes_rest", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
