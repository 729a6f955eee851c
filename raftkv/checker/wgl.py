"""Oracle A: a porcupine-style WGL linearizability search (TESTING.md §5.2).

Owns: the ``Model`` protocol, the search over one partition (``check_partition``), the search over
a whole history (``check``), the verdicts and the text report of a failure.

Must not: import from the rest of raftkv, start threads or processes (see ``parallel`` for that),
or reorder events other than by (time, calls before returns).

Invariants: intervals are closed, so a call at the same time as a return sorts first and the two
operations count as concurrent; unknown operations return at +inf; ``linearized`` is a bit set in
a Python int; unknown ops of one symmetry class are linearized in call order; a (linearized,
state) pair enters the cache once, so every search path is explored at most once; the event list
is restored exactly on backtracking (unlink call then return, relink return then call). The
result is OK or ILLEGAL only when the search finished; running out of time or cache gives
UNKNOWN, which callers must treat as a failed check.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from raftkv.checker.history import Input, Op, Output

S = TypeVar("S", bound=Hashable)

# Reading the clock on every step would slow the loop; a few thousand steps take a few
# milliseconds, so the budget is still honoured closely.
_CLOCK_EVERY = 4096
DEFAULT_MAX_CACHE = 2_000_000


class Model(Protocol[S]):
    """A sequential specification. ``step`` must be pure and states immutable and hashable."""

    def init(self) -> S: ...

    def step(self, state: S, inp: Input, output: Output | None) -> tuple[bool, S]:
        """Whether ``inp`` may return ``output`` in ``state`` (None: unknown, accept any result)."""
        ...

    def partition(self, ops: Sequence[Op]) -> list[list[Op]]:
        """Independent sub-histories, without the operations the model never checks."""
        ...

    def symmetry(self, ops: Sequence[Op]) -> list[Hashable | None]:
        """For each op of a partition, a class of interchangeable ops, or None.

        Two unknown ops of one class must be exchangeable in any linearization: same effect on
        every later step, so the search may place each class in call order only.
        """
        ...


class Verdict(enum.Enum):
    OK = "ok"
    ILLEGAL = "illegal"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PartitionResult:
    """The outcome for one partition.

    ``order`` is a linearization of all ops when OK; otherwise the longest linearizable prefix
    found, with ``state`` the model state after it and ``unplaced`` the ops pending at the point
    where the search got stuck (the op whose return could not be passed is among them).
    """

    verdict: Verdict
    ops: tuple[Op, ...]
    order: tuple[int, ...]
    state: object
    unplaced: tuple[int, ...]
    steps: int
    reason: str

    def report(self) -> str:
        lines = [
            f"{self.verdict.value.upper()}: linearized {len(self.order)} of {len(self.ops)} ops"
            f" in {self.steps} steps{' (' + self.reason + ')' if self.reason else ''}",
            f"last good state: {self.state!r}",
            "timeline (by call time):",
        ]
        position = {op_index: pos for pos, op_index in enumerate(self.order)}
        stuck = set(self.unplaced)
        for i in sorted(range(len(self.ops)), key=lambda j: (self.ops[j].call_t, j)):
            if i in position:
                mark = f"#{position[i] + 1:<5}"
            elif i in stuck:
                mark = "STUCK "
            else:
                mark = "      "
            lines.append(f"  {mark} {self.ops[i].describe()}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome for a history: ILLEGAL if any partition is, else UNKNOWN if any is, else OK.

    ``partitions`` holds every partition checked; the search stops at the first ILLEGAL one.
    """

    verdict: Verdict
    partitions: tuple[PartitionResult, ...]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def report(self) -> str:
        bad = [p for p in self.partitions if p.verdict is not Verdict.OK]
        head = (
            f"linearizability: {self.verdict.value} ({len(self.partitions)} partitions checked,"
            f" {self.elapsed_s:.3f} s)"
        )
        return "\n\n".join([head, *(p.report() for p in bad)])


def combine(partitions: Sequence[PartitionResult], elapsed_s: float) -> CheckResult:
    verdicts = {p.verdict for p in partitions}
    if Verdict.ILLEGAL in verdicts:
        verdict = Verdict.ILLEGAL
    elif Verdict.UNKNOWN in verdicts:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.OK
    return CheckResult(verdict, tuple(partitions), elapsed_s)


def check(
    model: Model[S],
    ops: Sequence[Op],
    budget_s: float = 60.0,
    max_cache: int = DEFAULT_MAX_CACHE,
) -> CheckResult:
    """Check a whole history, partition by partition, sharing one time budget."""
    start = time.monotonic()
    deadline = start + budget_s
    results: list[PartitionResult] = []
    for part in model.partition(ops):
        result = check_partition(model, part, deadline, max_cache)
        results.append(result)
        if result.verdict is not Verdict.OK:
            break
    return combine(results, time.monotonic() - start)


def check_partition(
    model: Model[S],
    ops: Sequence[Op],
    deadline: float = math.inf,
    max_cache: int = DEFAULT_MAX_CACHE,
) -> PartitionResult:
    """The WGL search of §5.2 over one partition; ``deadline`` is a ``time.monotonic()`` value."""
    ops = tuple(ops)
    n = len(ops)
    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    # Event 2i is the call of op i, 2i+1 its return; node 2n is the head sentinel, -1 the end.
    events = sorted(
        range(2 * n),
        key=lambda e: (ops[e >> 1].return_t if e & 1 else ops[e >> 1].call_t, e & 1, e >> 1),
    )
    head = 2 * n
    nxt = [-1] * (2 * n + 1)
    prv = [-1] * (2 * n + 1)
    last = head
    for e in events:
        nxt[last] = e
        prv[e] = last
        last = e

    # Unknown ops of one symmetry class are placed in call order: swapping two of them in a
    # linearization gives another one (both are pending, neither ever returns), so nothing is
    # lost, and k pending ops of a class give k + 1 search states instead of 2**k.
    waits_for = [-1] * n
    newest: dict[Hashable, int] = {}
    for i, cls in sorted(enumerate(model.symmetry(ops)), key=lambda pair: (ops[pair[0]].call_t, pair[0])):
        if cls is not None and ops[i].return_t == math.inf:
            waits_for[i] = newest.get(cls, -1)
            newest[cls] = i

    step = model.step
    state = model.init()
    linearized = 0
    cache: set[tuple[int, S]] = set()
    stack: list[tuple[int, S]] = []
    best: tuple[list[int], S] = ([], state)
    steps = 0

    def stopped(reason: str) -> PartitionResult:
        return _unfinished(Verdict.UNKNOWN, ops, events, best, steps, reason)

    e = nxt[head]
    while nxt[head] != -1:
        steps += 1
        if steps % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
            return stopped("time budget exhausted")
        if not e & 1:
            i = e >> 1
            w = waits_for[i]
            if w >= 0 and not linearized >> w & 1:
                e = nxt[e]
                continue
            ok, s2 = step(state, inputs[i], outputs[i])
            if ok:
                lin2 = linearized | (1 << i)
                key = (lin2, s2)
                if key not in cache:
                    if len(cache) >= max_cache:
                        return stopped("cache cap reached")
                    cache.add(key)
                    stack.append((e, state))
                    state, linearized = s2, lin2
                    r = e + 1
                    p, q = prv[e], nxt[e]
                    nxt[p] = q
                    prv[q] = p  # q != -1: the op's own return follows its call
                    p, q = prv[r], nxt[r]
                    nxt[p] = q
                    if q != -1:
                        prv[q] = p
                    if len(stack) > len(best[0]):
                        best = ([ev >> 1 for ev, _ in stack], state)
                    e = nxt[head]
                    continue
            e = nxt[e]
        else:
            if not stack:
                return _unfinished(Verdict.ILLEGAL, ops, events, best, steps, "")
            e, state = stack.pop()
            linearized &= ~(1 << (e >> 1))
            r = e + 1
            nxt[prv[r]] = r
            if nxt[r] != -1:
                prv[nxt[r]] = r
            nxt[prv[e]] = e
            prv[nxt[e]] = e
            e = nxt[e]
    order = tuple(ev >> 1 for ev, _ in stack)
    return PartitionResult(Verdict.OK, ops, order, state, (), steps, "")


def _unfinished(
    verdict: Verdict,
    ops: tuple[Op, ...],
    events: list[int],
    best: tuple[list[int], object],
    steps: int,
    reason: str,
) -> PartitionResult:
    order, state = best
    placed = set(order)
    # Replaying the event order past the best prefix: every call seen before the first return of
    # an unplaced op was a candidate there, and none of them could be linearized next.
    unplaced: list[int] = []
    for e in events:
        i = e >> 1
        if i in placed:
            continue
        if e & 1:
            break
        unplaced.append(i)
    return PartitionResult(verdict, ops, tuple(order), state, tuple(unplaced), steps, reason)
