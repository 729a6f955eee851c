"""The versioned-register model of raftkv for oracle A (TESTING.md §5.2).

Owns: ``KeyState`` (one key: value or absence, revision, version, whether the revision is exact)
and ``RegisterModel``, which steps read, put, delete and cas operations and partitions a history by
key.

Must not: import from the rest of raftkv, or look at timestamps (the search owns time).

Invariants: a model state is a non-empty frozenset of ``KeyState`` alternatives, because an
unknown cas on a key whose revision is still open may or may not have matched; every other step
maps one alternative to at most one. Revisions of one key strictly increase with each write that
changes it. An unknown write always steps (placing it last is the same as "did not happen"), and
leaves its revision open: a range, narrowed by later response headers and fixed by the next read
that observes the key. A failed cas on an open revision only learns "not equal to expected", which
is kept only when it shrinks the range; this can accept a few illegal histories, never reject a
legal one.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

from raftkv.checker.history import (
    CasIn,
    CasOut,
    DeleteIn,
    DeleteOut,
    Input,
    Op,
    Outcome,
    Output,
    PutIn,
    PutOut,
    ReadIn,
    ReadOut,
    changed_something,
    header_revision,
)


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key. ``revision`` is the last change's revision (a put's mod_revision, a delete's
    revision, 0 before any). When ``exact`` is False it is only the least possible value, and
    ``ceiling`` the greatest (None: no bound yet), learnt from response headers, which can never
    be below the key's last change. An absent key has ``value`` None and version 0."""

    value: str | None
    revision: int
    version: int
    exact: bool = True
    ceiling: int | None = None

    def put(self, value: str, revision: int | None) -> KeyState:
        """After a put at ``revision``, or at an unknown later revision when it is None."""
        version = 1 if self.value is None else self.version + 1
        if revision is None:
            return KeyState(value, self.revision + 1, version, exact=False)
        return KeyState(value, revision, version)

    def narrowed(self, low: int, high: int | None) -> KeyState | None:
        """This state with its revision known to lie in [low, high] (None: impossible)."""
        if self.exact:
            fits = low <= self.revision and (high is None or self.revision <= high)
            return self if fits else None
        low = max(low, self.revision)
        if self.ceiling is not None:
            high = self.ceiling if high is None else min(high, self.ceiling)
        if high is not None and low > high:
            return None
        if low == high:
            return KeyState(self.value, low, self.version)
        return KeyState(self.value, low, self.version, exact=False, ceiling=high)

    def seen_at(self, header: int) -> KeyState | None:
        """After a response reporting store revision ``header`` (None: impossible)."""
        return self.narrowed(0, header)


ModelState = frozenset[KeyState]
INITIAL = KeyState(None, 0, 0)


class RegisterModel:
    """A map of independent versioned registers, checked one key at a time.

    With ``simplify`` (the default), ``partition`` first turns each unknown put or cas whose
    unique value an ok read returned into an ok op (it certainly took effect, at the revision the
    read reports as mod_revision, before that read returned), then drops each unknown cas that can
    no longer match when it is called. Both only remove search branches that cannot lead to a
    linearization, and cut the cost of unknown ops, which a search otherwise tries everywhere.
    """

    def __init__(self, simplify: bool = True) -> None:
        self.simplify = simplify

    def init(self) -> ModelState:
        return frozenset((INITIAL,))

    def step(self, state: ModelState, inp: Input, output: Output | None) -> tuple[bool, ModelState]:
        nexts: list[KeyState] = []
        for s in state:
            nexts.extend(step_key(s, inp, output))
        return bool(nexts), frozenset(nexts)

    def partition(self, ops: Sequence[Op]) -> list[list[Op]]:
        """Per key, in key order. Failed ops never happened and unknown reads say nothing."""
        if self.simplify:
            ops = resolve_observed(ops)
        by_key: dict[str, list[Op]] = {}
        for op in ops:
            if op.outcome is Outcome.FAIL:
                continue
            if op.outcome is Outcome.UNKNOWN and isinstance(op.input, ReadIn):
                continue
            by_key.setdefault(op.key, []).append(op)
        parts = [by_key[k] for k in sorted(by_key)]
        return [drop_dead_cas(part) for part in parts] if self.simplify else parts

    def symmetry(self, ops: Sequence[Op]) -> list[Hashable | None]:
        """Unknown deletes are interchangeable, and so are unknown puts whose value no op reads or
        compares: which one of them took effect changes nothing later steps can see."""
        mentioned: set[str | int | None] = {op.output.value for op in ops if isinstance(op.output, ReadOut)}
        mentioned |= {op.input.expected for op in ops if isinstance(op.input, CasIn)}
        classes: list[Hashable | None] = []
        for op in ops:
            cls: str | None = None
            if op.outcome is Outcome.UNKNOWN:
                if isinstance(op.input, DeleteIn):
                    cls = "delete"
                elif isinstance(op.input, PutIn) and op.input.value not in mentioned:
                    cls = "put"
            classes.append(cls)
        return classes


def resolve_observed(ops: Sequence[Op]) -> list[Op]:
    """Unknown puts and cas ops whose value a read returned, made ok (see ``RegisterModel``)."""
    first_read: dict[tuple[str, str], tuple[float, int]] = {}
    for op in ops:
        out = op.output
        if op.outcome is Outcome.OK and isinstance(out, ReadOut) and out.value is not None:
            seen = first_read.get((op.key, out.value))
            if seen is None or op.return_t < seen[0]:
                first_read[(op.key, out.value)] = (op.return_t, out.mod_revision)
    resolved: list[Op] = []
    for op in ops:
        inp = op.input
        if op.outcome is Outcome.UNKNOWN and isinstance(inp, PutIn | CasIn):
            seen = first_read.get((op.key, inp.value))
            # A read that returned before the write was called makes the history illegal
            # anyway; leaving the op unknown lets the search report it.
            if seen is not None and seen[0] >= op.call_t:
                t, revision = seen
                known: Output = PutOut(revision) if isinstance(inp, PutIn) else CasOut(True, revision)
                op = replace(op, output=known, return_t=t, outcome=Outcome.OK)
        resolved.append(op)
    return resolved


def drop_dead_cas(ops: Sequence[Op]) -> list[Op]:
    """One key's ops without the unknown cas ops that cannot match when called.

    A cas expecting mod_revision X > 0, or the value an ok op wrote at revision X (or a value no op
    writes), is dead once an ok write at a revision above X returned before the cas was called:
    that write precedes it in every linearization, and revisions only grow.
    """
    changes = sorted((op.return_t, header_revision(op)) for op in ops if changed_something(op))
    returns = [t for t, _ in changes]
    newest = list(itertools.accumulate((rev for _, rev in changes), max))
    written: dict[str, int | None] = {}
    for op in ops:
        if isinstance(op.input, PutIn | CasIn) and (op.outcome is Outcome.UNKNOWN or changed_something(op)):
            written[op.input.value] = None if op.output is None else op.output.revision

    def dead(op: Op) -> bool:
        inp = op.input
        if op.outcome is not Outcome.UNKNOWN or not isinstance(inp, CasIn):
            return False
        n = bisect.bisect_left(returns, op.call_t)
        seen = newest[n - 1] if n else 0
        if inp.compare == "mod_revision":
            return isinstance(inp.expected, int) and 0 < inp.expected < seen
        if not isinstance(inp.expected, str) or inp.expected not in written:
            return True
        at = written[inp.expected]
        return at is not None and at < seen

    return [op for op in ops if not dead(op)]


def step_key(s: KeyState, inp: Input, out: Output | None) -> list[KeyState]:
    """The possible states after ``inp`` returned ``out`` in ``s`` (empty: not allowed)."""
    if isinstance(inp, ReadIn):
        return _read(s, out)
    if isinstance(inp, PutIn):
        if out is None:
            return [s.put(inp.value, None)]
        assert isinstance(out, PutOut)
        return [s.put(inp.value, out.revision)] if out.revision > s.revision else []
    if isinstance(inp, DeleteIn):
        return _delete(s, out)
    return _cas(s, inp, out)


def _read(s: KeyState, out: Output | None) -> list[KeyState]:
    if out is None:
        return [s]
    assert isinstance(out, ReadOut)
    if out.value is None:
        ok = s.value is None and out.mod_revision == 0 and out.version == 0
        return _some(s.seen_at(out.revision) if ok else None)
    if out.value != s.value or out.version != s.version or out.revision < out.mod_revision:
        return []
    return _some(s.narrowed(out.mod_revision, out.mod_revision))


def _some(s: KeyState | None) -> list[KeyState]:
    return [] if s is None else [s]


def _delete(s: KeyState, out: Output | None) -> list[KeyState]:
    if out is None:
        if s.value is None:
            return [s]
        return [KeyState(None, s.revision + 1, 0, exact=False)]
    assert isinstance(out, DeleteOut)
    if s.value is None:
        # Deleting nothing creates no revision; the header is just the current store revision.
        return _some(s.seen_at(out.revision)) if out.deleted == 0 else []
    return [KeyState(None, out.revision, 0)] if out.deleted == 1 and out.revision > s.revision else []


def _compare(s: KeyState, inp: CasIn) -> list[tuple[bool, KeyState]]:
    """Possible compare results, each with the state refined by what the result implies."""
    if inp.compare == "value":
        return [(s.value is not None and s.value == inp.expected, s)]
    if not isinstance(inp.expected, int):
        return [(False, s)]
    if s.value is None:
        return [(inp.expected == 0, s)]
    matched = s.narrowed(inp.expected, inp.expected)
    if s.exact or matched is None:
        return [(matched is not None, s)]
    # Only an expected value at either end of the range can be excluded from it.
    differs: KeyState | None = s
    if inp.expected == s.revision:
        differs = s.narrowed(s.revision + 1, None)
    elif inp.expected == s.ceiling:
        differs = s.narrowed(s.revision, inp.expected - 1)
    results = [(True, matched)]
    if differs is not None:
        results.append((False, differs))
    return results


def _cas(s: KeyState, inp: CasIn, out: Output | None) -> list[KeyState]:
    results: list[KeyState] = []
    for matched, refined in _compare(s, inp):
        if out is None:
            results.append(refined.put(inp.value, None) if matched else refined)
            continue
        assert isinstance(out, CasOut)
        if matched != out.succeeded:
            continue
        if matched:
            if out.revision > refined.revision:
                results.append(refined.put(inp.value, out.revision))
        else:
            results += _some(refined.seen_at(out.revision))
    return results
