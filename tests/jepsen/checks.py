"""Checks run after a campaign: oracles A and B from ``raftkv.checker``, acknowledged-write loss,
bank totals, watch properties (TESTING.md §6.1), lease properties (§6.2) and the lock recipe's
properties (mutual exclusion, fencing tokens, the fenced counter).

Owns: turning the final committed history (a full watch from revision 1, read after healing) into
resolutions of unknown writes, the committed revision set, and per-check anomaly lists. Every
function is pure over recorded data; nothing here talks to the cluster.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from raftkv.checker import (
    CasIn,
    CasOut,
    Op,
    Outcome,
    PutIn,
    PutOut,
    RegisterModel,
    check,
    check_revision_order,
)
from raftkv.checker.history import changed_something
from tests.jepsen.workloads import Bank, LeaseRecord, LockHold, Watcher

Event = tuple[int, str, str, str]  # revision, key, PUT|DELETE, value
AddAnomaly = Callable[[str, str], None]  # kind, description


def resolve_unknowns(ops: Sequence[Op], final: Sequence[Event], seen_t: float) -> tuple[list[Op], int, int]:
    """Unknown puts / cas whose unique value the final history shows become ok at that revision
    (returning by ``seen_t``, when the history was read); the others certainly never applied and
    are dropped. Returns the new ops, resolved-as-applied and resolved-as-absent counts."""
    where = {(key, value): rev for rev, key, typ, value in final if typ == "PUT"}
    out: list[Op] = []
    applied = absent = 0
    for op in ops:
        inp = op.input
        if op.outcome is Outcome.UNKNOWN and isinstance(inp, PutIn | CasIn):
            rev = where.get((op.key, inp.value))
            if rev is None:
                absent += 1
                op = dataclasses.replace(op, return_t=seen_t, outcome=Outcome.FAIL)
            else:
                applied += 1
                res = PutOut(rev) if isinstance(inp, PutIn) else CasOut(True, rev)
                op = dataclasses.replace(op, output=res, return_t=max(seen_t, op.call_t), outcome=Outcome.OK)
        out.append(op)
    return out, applied, absent


def acked_lost(ops: Sequence[Op], final: Sequence[Event]) -> list[str]:
    """Acknowledged register writes missing from the committed history at their revision."""
    have = {(rev, key, value) for rev, key, typ, value in final if typ == "PUT"}
    lost = []
    for op in ops:
        if op.outcome is Outcome.OK and changed_something(op) and isinstance(op.input, PutIn | CasIn):
            assert op.output is not None
            if (op.output.revision, op.key, op.input.value) not in have:
                lost.append(op.describe())
    return lost


def check_registers(
    ops: Sequence[Op], final: Sequence[Event], seen_t: float, budget_s: float
) -> dict[str, Any]:
    """Oracle A (WGL per key) and oracle B (revision order) over the register history."""
    resolved, applied, absent = resolve_unknowns(ops, final, seen_t)
    anomalies: dict[str, list[str]] = {}
    t0 = time.monotonic()
    result = check(RegisterModel(), resolved, budget_s=budget_s)
    wgl_s = time.monotonic() - t0
    if result.verdict.value != "ok":
        anomalies[f"wgl_{result.verdict.value}"] = [result.report()[:20000]]
    t0 = time.monotonic()
    committed = sorted({rev for rev, *_ in final})
    for a in check_revision_order(resolved, committed_revisions=committed):
        anomalies.setdefault(a.kind.value, []).append(a.describe())
    revorder_s = time.monotonic() - t0
    lost = acked_lost(resolved, final)
    if lost:
        anomalies["acked_lost"] = lost
    return {
        "anomalies": anomalies,
        "acked_lost": len(lost),
        "unknown_resolved_applied": applied,
        "unknown_resolved_absent": absent,
        "wgl": result.verdict.value,
        "wgl_s": round(wgl_s, 3),
        "revorder_s": round(revorder_s, 3),
        "resolved_ops": resolved,
    }


def check_bank(bank: Bank, final_total: int | None) -> dict[str, list[str]]:
    anomalies: dict[str, list[str]] = {}
    if bank.bad_reads:
        anomalies["bank_total"] = [str(r) for r in bank.bad_reads[:50]]
    if bank.ready and final_total is not None and final_total != bank.total:
        anomalies.setdefault("bank_total", []).append(f"final total {final_total} != {bank.total}")
    return anomalies


def check_watchers(watchers: Sequence[Watcher], final: Sequence[Event]) -> dict[str, list[str]]:
    """Ordered, unique, atomic and gap-free against the committed history, per watcher."""
    anomalies: dict[str, list[str]] = {}

    def add(kind: str, msg: str) -> None:
        anomalies.setdefault(kind, []).append(msg)

    truth = Counter(final)
    for n, w in enumerate(watchers):
        last = 0
        for ev in w.events:
            if ev[0] < last:
                add("watch_out_of_order", f"watcher {n}: revision {ev[0]} after {last}")
                break
            last = ev[0]
        dups = [ev for ev, c in Counter((ev[0], ev[1]) for ev in w.events).items() if c > 1]
        if dups:
            add("watch_duplicate", f"watcher {n}: {len(dups)} duplicated (revision, key), e.g. {dups[:5]}")
        owner: dict[int, int] = {}
        for m, revs in enumerate(w.messages):
            for r in set(revs):
                if owner.setdefault(r, m) != m:
                    add("watch_not_atomic", f"watcher {n}: revision {r} split over messages")
                    break
        mine = Counter(w.events)
        upto = w.last_rev
        expected = Counter({ev: c for ev, c in truth.items() if ev[0] <= upto})
        missing = expected - mine
        extra = mine - expected
        if missing:
            add("watch_gap", f"watcher {n}: {sum(missing.values())} committed events missing,"
                f" e.g. {sorted(missing)[:5]}")
        if extra:
            add("watch_phantom", f"watcher {n}: {sum(extra.values())} events not committed,"
                f" e.g. {sorted(extra)[:5]}")
        if w.compacted:
            add("watch_compacted",
                f"watcher {n}: cancelled as compacted {w.compacted} times without compaction")
    return anomalies


def check_leases(
    records: Sequence[LeaseRecord], ttl: float, max_rate: float, final_present: set[str] | None
) -> dict[str, list[str]]:
    """No premature expiry of kept-alive keys, no keepalive success after the keys were seen gone,
    and every key of an unkept lease gone at the end (``final_present``: keys present then)."""
    anomalies: dict[str, list[str]] = {}
    eps = 0.05
    for rec in records:
        if rec.put_ok is None:
            continue
        refreshes = sorted([rec.granted[0]] + [k[0] for k in rec.keepalives])
        for call, ret, present, rev in rec.reads:
            if present or call < rec.put_ok[1]:
                continue
            before = [k for k in refreshes if k < ret]
            if before and ret < before[-1] + ttl / max_rate - eps:
                anomalies.setdefault("lease_premature_expiry", []).append(
                    f"lease {rec.lease_id}: key {rec.key} missing in a read [{call:.3f}, {ret:.3f}]"
                    f" (rev {rev}),"
                    f" refreshed at {before[-1]:.3f} with TTL {ttl}s (clock rate <= {max_rate})"
                )
            later = [k for k in rec.keepalives if k[0] > ret]
            if later:
                anomalies.setdefault("lease_alive_after_expiry", []).append(
                    f"lease {rec.lease_id}: key {rec.key} missing in a read returning at {ret:.3f}"
                    f" (rev {rev}),"
                    f" but a keepalive invoked at {later[0][0]:.3f} succeeded (TTL {later[0][2]})"
                )
    if final_present is not None:
        stale = [r.key for r in records if not r.kept and r.key in final_present]
        if stale:
            anomalies["lease_not_expired"] = [
                f"{len(stale)} keys of unkept leases outlived their TTL: {stale[:10]}"
            ]
    return anomalies


def check_locks(
    holds: Sequence[LockHold], counters: dict[str, int] | None, final: Sequence[Event] | None
) -> dict[str, Any]:
    """The lock recipe's properties over the recorded holds (``counters``: the final value of each
    counter key, read after healing; ``final``: the committed history, when it was read).

    * Mutual exclusion: the holds ``[acquire returned, release called]`` of two clients on one lock
      overlap only if the lower token's session lease died during that hold (it was the session's
      last hold, and the end of the session did not show the lease alive). Leases expire on the
      server's clock, so a holder learns of it only afterwards: that overlap is the recipe's
      documented behaviour, and fencing is what must make it harmless.
    * Fencing: no fenced increment succeeds if invoked after a hold with a higher token was
      acquired (the guard names a key incarnation that was gone by then); a counter that moved
      under a holder whose guard still held is only explained by that holder's own earlier
      increment of unknown outcome.
    * Token order: if X's acquire returned before Y's was invoked, X's token is lower (equal only
      when Y's session re-entered its own key, left by a release of unknown outcome).
    * Counter: ok <= final <= ok + unknown per counter, and every ok increment is in the committed
      history at its revision.
    """
    anomalies: dict[str, list[str]] = {}

    def add(kind: str, msg: str) -> None:
        anomalies.setdefault(kind, []).append(msg)

    by_lock: dict[str, list[LockHold]] = {}
    for h in holds:
        by_lock.setdefault(h.lock, []).append(h)
    excused = 0
    for name, hs in sorted(by_lock.items()):
        excused += _lock_exclusion(name, hs, add)
        _lock_fencing(name, hs, add)
        _lock_token_order(name, hs, add)
    _lock_counters(holds, counters, final, add)
    return {"anomalies": anomalies, "lock_overlaps_excused": excused}


def _hold_str(h: LockHold) -> str:
    rel = f"{h.release[0]:.3f}" if h.release else "-"
    return (f"client {h.client} (session {h.session}) token {h.token} held [{h.acquire[1]:.3f}, {rel}]"
            f" lease_died={h.lease_died} lost_t={h.lost_t} zombie={h.zombie}")


def _lock_exclusion(name: str, hs: Sequence[LockHold], add: AddAnomaly) -> int:
    excused = 0
    active: list[LockHold] = []
    for h in sorted(hs, key=lambda h: h.acquire[1]):
        active = [a for a in active if a.end > h.acquire[1]]
        for a in active:
            if a.client == h.client:
                continue
            if a.token == h.token:
                add("lock_token_reused", f"{name}: {_hold_str(a)} and {_hold_str(h)}")
                continue
            low = a if a.token < h.token else h
            if low.lease_died is not False:
                excused += 1
            else:
                add("lock_mutual_exclusion", f"{name}: {_hold_str(a)} overlaps {_hold_str(h)}")
        active.append(h)
    return excused


def _lock_fencing(name: str, hs: Sequence[LockHold], add: AddAnomaly) -> None:
    # For each hold, the earliest acquire return among holds with a strictly higher token.
    first_ret: dict[int, float] = {}
    for h in hs:
        first_ret[h.token] = min(first_ret.get(h.token, math.inf), h.acquire[1])
    successor_t: dict[int, float] = {}
    first = math.inf
    for token in sorted(first_ret, reverse=True):
        successor_t[token] = first
        first = min(first, first_ret[token])
    unknown_before: dict[tuple[int, int], float] = {}  # (client, token) -> first unknown increment call
    for h in sorted(hs, key=lambda h: h.acquire[1]):
        for inc in h.increments:
            if inc.outcome == "ok" and inc.call > successor_t[h.token]:
                add("lock_fenced_write_after_successor",
                    f"{name}: increment to {inc.value} invoked at {inc.call:.3f} succeeded"
                    f" (rev {inc.revision}) after a higher token acquired at {successor_t[h.token]:.3f};"
                    f" {_hold_str(h)}")
            if inc.outcome == "conflict" and unknown_before.get((h.client, h.token), math.inf) > inc.call:
                add("lock_fence_conflict",
                    f"{name}: the counter moved under a holder whose guard held (increment invoked at"
                    f" {inc.call:.3f}), with no earlier increment of unknown outcome; {_hold_str(h)}")
            if inc.outcome == "unknown":
                unknown_before.setdefault((h.client, h.token), inc.call)


def _lock_token_order(name: str, hs: Sequence[LockHold], add: AddAnomaly) -> None:
    by_ret = sorted(hs, key=lambda h: h.acquire[1])
    j = 0
    best: LockHold | None = None  # the highest token among holds acquired before the current call
    for y in sorted(hs, key=lambda h: h.acquire[0]):
        while j < len(by_ret) and by_ret[j].acquire[1] < y.acquire[0]:
            if best is None or by_ret[j].token > best.token:
                best = by_ret[j]
            j += 1
        if best is None:
            continue
        if best.token > y.token or (best.token == y.token and best.session != y.session):
            add("lock_token_order",
                f"{name}: token {y.token} acquired (invoked {y.acquire[0]:.3f}) after token {best.token}"
                f" was returned ({best.acquire[1]:.3f}); {_hold_str(best)}; {_hold_str(y)}")


def _lock_counters(
    holds: Sequence[LockHold], counters: dict[str, int] | None, final: Sequence[Event] | None, add: AddAnomaly
) -> None:
    ok: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    for h in holds:
        for inc in h.increments:
            if inc.outcome == "ok":
                ok[h.counter] += 1
            elif inc.outcome == "unknown":
                unknown[h.counter] += 1
    if counters is None:
        if ok:
            add("lock_counter_unread", "the final counter values could not be read")
    else:
        for key in sorted(set(ok) | set(unknown) | set(counters)):
            value = counters.get(key, 0)
            if not ok[key] <= value <= ok[key] + unknown[key]:
                add("lock_counter",
                    f"{key}: final value {value}, but {ok[key]} fenced increments were acknowledged"
                    f" and {unknown[key]} had an unknown outcome")
    if final is not None:
        have = {(rev, key, value) for rev, key, typ, value in final if typ == "PUT"}
        for h in holds:
            for inc in h.increments:
                if inc.outcome == "ok" and (inc.revision, h.counter, str(inc.value)) not in have:
                    add("lock_increment_lost",
                        f"{h.counter}: acknowledged increment to {inc.value} at revision {inc.revision}"
                        f" missing from the committed history; {_hold_str(h)}")
