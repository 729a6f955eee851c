"""Oracle B: revision-order replay (TESTING.md §5.3).

Owns: taking the revisions the server reported as a claimed serialization order and checking what
that order implies: unique write revisions, no gaps against the committed revisions, the real-time
rule, and a replay of the committed writes through a small multi-key reference store.

Must not: import from the rest of raftkv, or search for orders (that is oracle A); it runs in
O(n log n).

Invariants: only ok operations carry revisions; a write that changed something (a put, a delete
that deleted, a cas that succeeded) owns its header revision. Keys touched by an unresolved
unknown write are left out of the replay, since their committed state is not known; uniqueness and
real time are still checked on them. Each check reports every anomaly it sees and never stops
early, so one report shows the whole damage.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from raftkv.checker.history import (
    CasIn,
    CasOut,
    DeleteOut,
    Op,
    Outcome,
    PutIn,
    PutOut,
    ReadIn,
    ReadOut,
    changed_something,
    header_revision,
)

# A fresh store reports revision 1, so the first write creates revision 2 (API.md §2).
FIRST_WRITE_REVISION = 2


class AnomalyKind(enum.Enum):
    DUPLICATE_REVISION = "duplicate_revision"
    REVISION_GAP = "revision_gap"
    UNCOMMITTED_WRITE = "uncommitted_write"
    REAL_TIME = "real_time"
    REPLAY_MISMATCH = "replay_mismatch"


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: AnomalyKind
    ops: tuple[Op, ...]
    message: str

    def describe(self) -> str:
        return "\n".join([f"{self.kind.value}: {self.message}", *(f"  {op.describe()}" for op in self.ops)])


@dataclass(frozen=True, slots=True)
class Version:
    """A key as of some revision: absent (value None, 0, 0) or present."""

    value: str | None
    mod_revision: int
    version: int


ABSENT = Version(None, 0, 0)


class ReferenceStore:
    """A multi-key store fed writes in increasing revision order."""

    def __init__(self) -> None:
        self._keys: dict[str, Version] = {}

    def latest(self, key: str) -> Version:
        return self._keys.get(key, ABSENT)

    def put(self, key: str, value: str, revision: int) -> None:
        self._keys[key] = Version(value, revision, self.latest(key).version + 1)

    def delete(self, key: str) -> None:
        self._keys.pop(key, None)


def check_revision_order(
    ops: Sequence[Op],
    committed_revisions: Iterable[int] | None = None,
    first_revision: int = FIRST_WRITE_REVISION,
) -> list[Anomaly]:
    """All anomalies of ``ops`` (empty when the claimed order explains the history).

    ``committed_revisions``, when given, is every revision the store created (from a full watch),
    which enables the no-gaps check.
    """
    done = [op for op in ops if op.outcome is Outcome.OK]
    anomalies = _uniqueness(done)
    if committed_revisions is not None:
        anomalies += _gaps(done, set(committed_revisions), first_revision)
    anomalies += _real_time(done)
    anomalies += _replay(ops, done)
    return anomalies


def _uniqueness(done: Sequence[Op]) -> list[Anomaly]:
    owner: dict[int, Op] = {}
    anomalies: list[Anomaly] = []
    for op in done:
        if not changed_something(op):
            continue
        rev = header_revision(op)
        first = owner.setdefault(rev, op)
        if first is not op:
            anomalies.append(
                Anomaly(AnomalyKind.DUPLICATE_REVISION, (first, op), f"two writes at revision {rev}")
            )
    return anomalies


def _gaps(done: Sequence[Op], committed: set[int], first_revision: int) -> list[Anomaly]:
    anomalies: list[Anomaly] = []
    for op in done:
        if changed_something(op) and header_revision(op) not in committed:
            anomalies.append(
                Anomaly(
                    AnomalyKind.UNCOMMITTED_WRITE,
                    (op,),
                    f"acknowledged write at revision {header_revision(op)} is not in the committed stream",
                )
            )
    if committed:
        missing = [r for r in range(first_revision, max(committed) + 1) if r not in committed]
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            anomalies.append(
                Anomaly(AnomalyKind.REVISION_GAP, (), f"{len(missing)} revisions never committed: {shown}")
            )
    return anomalies


def _real_time(done: Sequence[Op]) -> list[Anomaly]:
    """Sweep by call time, tracking the largest revision among ops that already returned.

    Intervals are closed, so only a return strictly before a call orders two ops.
    """
    by_return = sorted(done, key=lambda op: op.return_t)
    anomalies: list[Anomaly] = []
    j = 0
    top: Op | None = None
    for op in sorted(done, key=lambda op: op.call_t):
        while j < len(by_return) and by_return[j].return_t < op.call_t:
            cand = by_return[j]
            if top is None or header_revision(cand) > header_revision(top):
                top = cand
            j += 1
        if top is None:
            continue
        rev, floor = header_revision(op), header_revision(top)
        strict = changed_something(op)
        if rev < floor or (strict and rev == floor):
            relation = ">" if strict else ">="
            anomalies.append(
                Anomaly(
                    AnomalyKind.REAL_TIME,
                    (top, op),
                    f"revision {rev} after an op that returned at revision {floor} (want {relation})",
                )
            )
    return anomalies


def _compare_holds(version: Version, inp: CasIn) -> bool:
    if inp.compare == "value":
        return version.value is not None and version.value == inp.expected
    return version.mod_revision == inp.expected


def _replay(ops: Sequence[Op], done: Sequence[Op]) -> list[Anomaly]:
    unsure = {op.key for op in ops if op.outcome is Outcome.UNKNOWN and not isinstance(op.input, ReadIn)}
    # Phases at one revision: a write's precondition sees the store before it, then the write
    # applies, then the reads and no-op writes reported at that revision see it.
    before, apply, after = 0, 1, 2
    items: list[tuple[int, int, int, Op]] = []
    for n, op in enumerate(done):
        if op.key in unsure:
            continue
        rev = header_revision(op)
        if changed_something(op):
            items.append((rev, before, n, op))
            items.append((rev, apply, n, op))
        else:
            items.append((rev, after, n, op))
    items.sort(key=lambda item: item[:3])

    store = ReferenceStore()
    anomalies: list[Anomaly] = []
    for rev, phase, _, op in items:
        now = store.latest(op.key)
        if phase == apply:
            if isinstance(op.input, PutIn | CasIn):
                store.put(op.key, op.input.value, rev)
            else:
                store.delete(op.key)
            continue
        problem = _replay_problem(op, now)
        if problem:
            anomalies.append(Anomaly(AnomalyKind.REPLAY_MISMATCH, (op,), f"at revision {rev}: {problem}"))
    return anomalies


def _replay_problem(op: Op, now: Version) -> str:
    """Why ``op``'s response contradicts the store ``now`` (the empty string when it does not)."""
    out = op.output
    if isinstance(out, ReadOut):
        seen = Version(out.value, out.mod_revision, out.version)
        return "" if seen == now else f"read {seen}, store has {now}"
    if isinstance(out, DeleteOut):
        if out.deleted > 1:
            return f"single-key delete reported {out.deleted} deleted"
        present = now.value is not None
        return "" if present == (out.deleted == 1) else f"deleted={out.deleted} but store has {now}"
    if isinstance(out, CasOut):
        assert isinstance(op.input, CasIn)
        holds = _compare_holds(now, op.input)
        return "" if holds == out.succeeded else f"succeeded={out.succeeded} but store has {now}"
    assert isinstance(out, PutOut)
    return ""
