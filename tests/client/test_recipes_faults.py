"""Recipes under faults, checked from histories (TESTING.md §3 row 18).

Lock: three worker processes (``lock_worker.py``) take a lock in rounds and increment a counter
with a fenced CAS; the test SIGKILLs a worker while it holds the lock and SIGKILLs the Raft leader
midway. From the workers' logs (one system-wide monotonic clock): no two holding intervals overlap
(a killed holder's interval ends at its kill), fencing tokens increase in grant order, and the
counter equals the number of increments that were acknowledged (plus at most the unknown ones, which
include a hold cut short by the kill or an error before its increment logged an outcome).

Election: three in-process candidates campaign in rounds while the Raft leader is killed; their
leadership intervals never overlap and their revisions increase.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftkv import errors
from raftkv.client import Client
from raftkv.recipes import Election, LockLost, Session
from tests.client.conftest import endpoints_of
from tests.cluster.harness import Cluster, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

Factory = Callable[..., Cluster]
ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
ROUNDS = 6


@dataclass
class Hold:
    worker: int
    token: int
    start: int
    end: int | None


def read_log(path: Path) -> list[list[str]]:
    return [line.split(" ", 3) for line in path.read_text().splitlines()] if path.exists() else []


def holds_of(worker: int, lines: list[list[str]], killed_at: int | None) -> list[Hold]:
    holds: list[Hold] = []
    for kind, token, t, *_ in lines:
        if kind == "acquired":
            holds.append(Hold(worker, int(token), int(t), None))
        elif kind == "releasing":
            assert holds and holds[-1].token == int(token) and holds[-1].end is None
            holds[-1].end = int(t)
    if holds and holds[-1].end is None:
        assert killed_at is not None, f"worker {worker} never released token {holds[-1].token}"
        holds[-1].end = killed_at
    return holds


def increment_outcomes(lines: list[list[str]]) -> tuple[int, int]:
    """(acknowledged, unknown) increments of one worker. A hold whose increment logged no outcome
    (the worker was killed, or an error ended the round, after the txn may have been sent) counts
    as unknown: it may have applied."""
    acknowledged = unknown = 0
    pending = False
    for kind, *_ in lines:
        if kind in ("incremented", "fenced-out", "unknown"):
            acknowledged += kind == "incremented"
            unknown += kind == "unknown"
            pending = False
        else:
            unknown += pending
            pending = kind == "acquired"
    return acknowledged, unknown + pending


def test_increment_outcomes_count_a_hold_cut_short_as_unknown() -> None:
    lines = [["acquired"], ["incremented"], ["releasing"], ["acquired"], ["error"], ["acquired"]]
    assert increment_outcomes([[*line, "0", "0"] for line in lines]) == (1, 2)


def test_lock_history_with_a_killed_holder_and_a_killed_leader(own_cluster: Factory, tmp_path: Path) -> None:
    cluster = own_cluster(3)
    endpoints = ",".join(endpoints_of(cluster))
    logs = [tmp_path / f"worker{i}.log" for i in range(WORKERS)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.client.lock_worker",
                endpoints,
                "faults/lock",
                "faults/counter",
                str(ROUNDS),
                str(log),
            ],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        for log in logs
    ]
    killed_at: dict[int, int] = {}
    try:
        # Kill worker 0 while it holds the lock (its last line is "acquired" or its increment).
        def holding() -> bool:
            lines = read_log(logs[0])
            return bool(lines) and lines[-1][0] in ("acquired", "incremented")

        wait_until(holding, 90, "worker 0 to hold the lock")
        os.kill(procs[0].pid, signal.SIGKILL)
        killed_at[0] = time.monotonic_ns()
        procs[0].wait(timeout=30)

        def progressed() -> bool:
            return (
                sum(1 for log in logs[1:] for line in read_log(log) if line[0] == "acquired") >= ROUNDS // 2
            )

        wait_until(progressed, 90, "the other workers to take the lock")
        cluster.leader().kill()
        for proc in procs[1:]:
            assert proc.wait(timeout=180) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    holds = sorted(
        (hold for i, log in enumerate(logs) for hold in holds_of(i, read_log(log), killed_at.get(i))),
        key=lambda h: h.start,
    )
    assert len(holds) >= ROUNDS, holds
    for before, after in itertools.pairwise(holds):
        assert before.end is not None and before.end <= after.start, f"overlap: {before} and {after}"
        assert before.token < after.token, f"fencing tokens out of order: {before} then {after}"
    acknowledged = unknown = 0
    for log in logs:
        a, u = increment_outcomes(read_log(log))
        acknowledged += a
        unknown += u
    with_survivor = next(n for n in cluster.nodes if n.alive)
    final = int(cluster.get(with_survivor, "faults/counter") or b"0")
    assert acknowledged <= final <= acknowledged + unknown, (final, acknowledged, unknown)


async def test_election_has_one_leader_at_a_time_across_a_leader_kill(own_cluster: Factory) -> None:
    cluster = own_cluster(3)
    terms: list[tuple[float, float, int, int]] = []  # (start, end, candidate, revision)
    loop = asyncio.get_running_loop()
    leading: set[int] = set()

    async def candidate(i: int, rounds: int) -> None:
        async with Client(endpoints_of(cluster), timeout=10) as client:
            for _ in range(rounds):
                try:
                    async with Session(client, ttl=5) as session:
                        election = Election(session, "faults/election")
                        await election.campaign(f"c{i}")
                        start = loop.time()
                        leading.add(i)
                        assert leading == {i}, f"two leaders at once: {leading}"
                        await asyncio.sleep(0.05)  # the leader's work
                        leading.discard(i)
                        terms.append((start, loop.time(), i, election.revision))
                        await election.resign()
                except (errors.RaftkvError, LockLost):
                    leading.discard(i)

    tasks = [asyncio.create_task(candidate(i, 6)) for i in range(3)]
    end = loop.time() + 60
    while len(terms) < 4:
        assert loop.time() < end, "no progress before the leader kill"
        await asyncio.sleep(0.05)
    await loop.run_in_executor(None, lambda: cluster.leader().kill())
    await asyncio.wait_for(asyncio.gather(*tasks), 180)
    terms.sort()
    assert len(terms) >= 9
    for before, after in itertools.pairwise(terms):
        assert before[1] <= after[0] and before[3] < after[3], (before, after)
