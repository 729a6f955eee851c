"""The lock workload's checker (``checks.check_locks``) on synthetic histories: no cluster, fast.

A correct history (handovers, a lease that died under a zombie holder whose late write was fenced
off, an increment of unknown outcome) passes; overlapping holds, a fenced write accepted after a
successor acquired, tokens out of order, and a lost or invented increment are each flagged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.jepsen.checks import Event, check_locks
from tests.jepsen.workloads import Increment, LockHold

CTR = "lockctr/0"


def hold(client: int, token: int, acquired: tuple[float, float], released: float,
         incs: list[tuple[float, str, int, int]], **kw: Any) -> LockHold:
    """``incs``: (call time, outcome, value written, revision); each returns 0.01 s later."""
    return LockHold(
        client=client, session=kw.pop("session", client), lock="lock/0", counter=CTR,
        key=f"lock/0/{client:x}", token=token, acquire=acquired,
        increments=[Increment(t, t + 0.01, o, v, r) for t, o, v, r in incs],
        release=(released, released + 0.01), release_outcome="ok", **kw,
    )


def history() -> tuple[list[LockHold], dict[str, int], list[Event]]:
    holds = [
        hold(1, 10, (0.0, 0.1), 0.5, [(0.2, "ok", 1, 11), (0.3, "ok", 2, 12)]),
        hold(2, 11, (0.05, 0.6), 0.9, [(0.7, "ok", 3, 14)]),  # waited behind client 1 (token 11 < 13)
        # Client 3's zombie hold: its lease died at ~2.0, client 1 took over at 2.1 (overlap, excused),
        # and its late increment was refused by the fencing compare.
        hold(3, 15, (1.0, 1.1), 3.5, [(1.2, "ok", 4, 16), (3.4, "lost", 6, 0)], zombie=True,
             lease_died=True, lost_t=3.41),
        hold(1, 18, (2.0, 2.1), 2.6, [(2.2, "ok", 5, 19), (2.4, "unknown", 6, 0)]),
        hold(2, 22, (2.7, 2.8), 3.0, []),
    ]
    events: list[Event] = [(11, CTR, "PUT", "1"), (12, CTR, "PUT", "2"), (14, CTR, "PUT", "3"),
                           (16, CTR, "PUT", "4"), (19, CTR, "PUT", "5"), (21, CTR, "PUT", "6")]
    return holds, {CTR: 6}, events


def kinds(holds: list[LockHold], counters: dict[str, int] | None, events: list[Event] | None) -> set[str]:
    return set(check_locks(holds, counters, events)["anomalies"])


def test_correct_history_passes() -> None:
    holds, counters, events = history()
    result = check_locks(holds, counters, events)
    assert result["anomalies"] == {}
    assert result["lock_overlaps_excused"] == 2  # the zombie with both later holds
    # The unknown increment may or may not have applied.
    assert kinds(holds, {CTR: 5}, events[:-1]) == set()


def test_overlap_of_live_holds_is_flagged() -> None:
    holds, counters, events = history()
    # Client 3's lease stayed alive (a later hold of its session followed), yet client 1 acquired.
    holds[2] = dataclasses.replace(holds[2], lease_died=False, zombie=False, lost_t=None,
                                   increments=holds[2].increments[:1])
    assert "lock_mutual_exclusion" in kinds(holds, counters, events)


def test_fenced_write_after_successor_is_flagged() -> None:
    holds, _, events = history()
    # The zombie's late increment succeeded after client 1 acquired with a higher token.
    holds[2].increments[1] = Increment(3.4, 3.41, "ok", 6, 23)
    found = kinds(holds, {CTR: 6}, [*events[:-1], (23, CTR, "PUT", "6")])
    assert "lock_fenced_write_after_successor" in found


def test_token_order_is_checked() -> None:
    holds, counters, events = history()
    # A hold invoked after token 22 was returned cannot have a lower token.
    holds.append(hold(3, 20, (3.6, 3.7), 3.8, [], session=9))
    assert "lock_token_order" in kinds(holds, counters, events)


def test_lost_increment_is_flagged() -> None:
    holds, _, events = history()
    assert "lock_counter" in kinds(holds, {CTR: 4}, events)  # 5 acknowledged
    assert "lock_increment_lost" in kinds(holds, {CTR: 6}, [e for e in events if e[0] != 14])
    assert "lock_counter" in kinds(holds, {CTR: 7}, events)  # more than 5 ok + 1 unknown
    assert "lock_counter_unread" in kinds(holds, None, events)


def test_conflict_needs_an_earlier_unknown_of_the_same_holder() -> None:
    holds, counters, events = history()
    holds[4].increments.append(Increment(2.9, 2.91, "conflict", 7, 0))
    assert "lock_fence_conflict" in kinds(holds, counters, events)
    # Client 1 re-entered its own key (same token, after a release of unknown outcome): its earlier
    # unknown increment may land under the new hold and explain the conflict.
    holds[4] = dataclasses.replace(holds[4], client=1, session=1, token=18)
    assert "lock_fence_conflict" not in kinds(holds, counters, events)
