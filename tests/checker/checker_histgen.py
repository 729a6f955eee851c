"""Test support for the checkers: simulated legal histories, guaranteed-illegal mutations, and a
brute-force linearizability checker.

Owns: ``generate`` (clients issuing ops against one strictly serializable store, each op taking
effect at a random point inside its interval), the single mutations of TESTING.md §4.1 (each one
makes the history non-linearizable by construction), and ``brute_force``, which tries every
real-time-consistent order and shares nothing with the WGL search except the model.

Must not: depend on the WGL code it is used to test.

Invariants: values are unique (``f"{client}-{seq}"``); an op that is ``unknown`` may or may not
have taken effect, possibly after its client gave up; a ``fail`` op never takes effect; the store
revision starts at 1, so the first write creates revision 2.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

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
from raftkv.checker.wgl import Model

S = TypeVar("S", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Plan:
    """An op before it runs: when it is called, takes effect (if ever) and returns."""

    index: int
    client: int
    key: str
    kind: str
    call_t: float
    effect_t: float
    return_t: float
    outcome: Outcome
    applied: bool
    value: str
    by_value: bool


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change of one key: the state after it and the history index of its op."""

    revision: int
    state: ReadOut
    op_index: int


@dataclass(frozen=True, slots=True)
class Generated:
    ops: list[Op]
    changes: dict[str, list[Change]]
    committed: list[int]


def _plans(
    rng: random.Random,
    n_ops: int,
    n_clients: int,
    keys: Sequence[str],
    unknown_rate: float,
    fail_rate: float,
    integer_times: bool,
) -> list[Plan]:
    clock = [rng.uniform(0, 2) for _ in range(n_clients)]
    seq = [0] * n_clients
    plans: list[Plan] = []
    for index in range(n_ops):
        client = rng.randrange(n_clients)
        call_t = clock[client]
        duration = rng.uniform(0.5, 3)
        if integer_times:
            call_t = float(round(call_t))
            duration = float(round(duration))
        return_t = call_t + duration
        roll = rng.random()
        if roll < unknown_rate:
            outcome = Outcome.UNKNOWN
            applied = rng.random() < 0.5
            # The client gave up at return_t; the op may still take effect well after that.
            effect_t = rng.uniform(call_t, call_t + 3 * duration)
        elif roll < unknown_rate + fail_rate:
            outcome, applied, effect_t = Outcome.FAIL, False, call_t
        else:
            outcome, applied = Outcome.OK, True
            effect_t = rng.uniform(call_t, return_t)
        seq[client] += 1
        clock[client] = return_t + rng.uniform(0, 1.5)
        if integer_times:
            clock[client] = float(round(clock[client]))
        kind = rng.choices(["read", "put", "delete", "cas"], weights=[4, 4, 1, 2])[0]
        plans.append(
            Plan(
                index=index,
                client=client,
                key=rng.choice(keys),
                kind=kind,
                call_t=call_t,
                effect_t=effect_t,
                return_t=return_t,
                outcome=outcome,
                applied=applied,
                value=f"{client}-{seq[client]}",
                by_value=rng.random() < 0.5,
            )
        )
    return plans


def generate(
    rng: random.Random,
    n_ops: int,
    n_clients: int,
    keys: Sequence[str],
    unknown_rate: float = 0.0,
    fail_rate: float = 0.0,
    final_reads: bool = True,
    integer_times: bool = False,
) -> Generated:
    """A legal history; with ``final_reads`` a last client reads every key after everything."""
    plans = _plans(rng, n_ops, n_clients, keys, unknown_rate, fail_rate, integer_times)
    end = max([p.return_t for p in plans if p.outcome is not Outcome.UNKNOWN] + [p.effect_t for p in plans])
    end = math.floor(end) + 1.0
    if final_reads:
        for n, key in enumerate(sorted(set(keys))):
            t = end + 2 * n
            plans.append(
                Plan(len(plans), n_clients, key, "read", t, t + 0.5, t + 1, Outcome.OK, True, "", False)
            )

    store: dict[str, ReadOut] = {}
    revision = 1
    seen: dict[tuple[int, str], ReadOut] = {}
    outputs: dict[int, Output] = {}
    inputs: dict[int, Input] = {}
    changes: dict[str, list[Change]] = {}
    committed: list[int] = []
    for p in sorted(plans, key=lambda p: (p.effect_t, p.index)):
        current = store.get(p.key, ReadOut(None, 0, 0, 0))
        known = seen.get((p.client, p.key), ReadOut(None, 0, 0, 0))
        inp, out, new = _run(p, current, known, revision + 1)
        inputs[p.index] = inp
        if not p.applied:
            continue
        if new is not None:
            revision += 1
            committed.append(revision)
            if new.value is None:
                store.pop(p.key, None)
            else:
                store[p.key] = new
            changes.setdefault(p.key, []).append(Change(revision, new, p.index))
        outputs[p.index] = replace(out, revision=revision) if isinstance(out, ReadOut) else out
        if p.outcome is Outcome.OK and isinstance(out, ReadOut):
            seen[(p.client, p.key)] = out
        elif p.outcome is Outcome.OK and new is not None:
            seen[(p.client, p.key)] = new

    ops = []
    for p in plans:
        ok = p.outcome is Outcome.OK
        ops.append(
            Op(
                client=p.client,
                key=p.key,
                input=inputs[p.index],
                call_t=p.call_t,
                output=outputs[p.index] if ok else None,
                return_t=math.inf if p.outcome is Outcome.UNKNOWN else p.return_t,
                outcome=p.outcome,
            )
        )
    return Generated(ops, changes, committed)


def _run(p: Plan, current: ReadOut, known: ReadOut, next_rev: int) -> tuple[Input, Output, ReadOut | None]:
    """The input, the output, and the key's new state if the op changes it."""
    present = current.value is not None
    if p.kind == "read":
        return ReadIn(), current, None
    if p.kind == "put":
        version = current.version + 1 if present else 1
        return PutIn(p.value), PutOut(next_rev), ReadOut(p.value, next_rev, version, next_rev)
    if p.kind == "delete":
        if present:
            return DeleteIn(), DeleteOut(1, next_rev), ReadOut(None, 0, 0, next_rev)
        return DeleteIn(), DeleteOut(0, next_rev - 1), None
    if p.by_value:
        inp = CasIn("value", known.value if known.value is not None else "never-written", p.value)
        holds = present and current.value == inp.expected
    else:
        inp = CasIn("mod_revision", known.mod_revision, p.value)
        holds = current.mod_revision == inp.expected
    if holds:
        version = current.version + 1 if present else 1
        return inp, CasOut(True, next_rev), ReadOut(p.value, next_rev, version, next_rev)
    return inp, CasOut(False, next_rev - 1), None


# Mutations. Each returns a history that no linearization explains, or None if it does not apply.


def _final_read(ops: Sequence[Op], key: str, state: ReadOut) -> Op:
    t = max(op.return_t for op in ops if op.outcome is not Outcome.UNKNOWN) + 1
    return Op(10_000, key, ReadIn(), t, state, t + 1, Outcome.OK)


def _state_before(gen: Generated, key: str, revision: int) -> ReadOut | None:
    """The latest present state of ``key`` committed below ``revision``."""
    found = None
    for change in gen.changes.get(key, []):
        if change.revision < revision and change.state.value is not None:
            found = change.state
    return found


def stale_read(gen: Generated, rng: random.Random) -> list[Op] | None:
    """An ok read returns a version older than a write that returned before the read began."""
    ops = gen.ops
    candidates: list[tuple[int, ReadOut]] = []
    for i, op in enumerate(ops):
        if op.outcome is not Outcome.OK or not isinstance(op.output, ReadOut):
            continue
        done = [
            w
            for w in ops
            if w.key == op.key and w.outcome is Outcome.OK and changed_something(w) and w.return_t < op.call_t
        ]
        if not done:
            continue
        newest = max(header_revision(w) for w in done)
        old = _state_before(gen, op.key, newest)
        if old is not None:
            candidates.append((i, replace(old, revision=op.output.revision)))
    if not candidates:
        return None
    i, old = rng.choice(candidates)
    return [*ops[:i], replace(ops[i], output=old), *ops[i + 1 :]]


def lost_write(gen: Generated, rng: random.Random) -> list[Op] | None:
    """The newest acknowledged write of a key is lost: later reads show the state before it."""
    candidates: list[tuple[Op, ReadOut, ReadOut]] = []
    for key, changes in gen.changes.items():
        acked = [c for c in changes if gen.ops[c.op_index].outcome is Outcome.OK]
        if not acked:
            continue
        last = acked[-1]
        before = _state_before(gen, key, last.revision)
        if before is None:
            if any(op.key == key and op.outcome is Outcome.UNKNOWN for op in gen.ops):
                # An unknown delete could explain reading the key as absent again.
                continue
            before = ReadOut(None, 0, 0, 0)
        candidates.append((gen.ops[last.op_index], last.state, before))
    if not candidates:
        return None
    lost, after, before = rng.choice(candidates)
    ops = []
    for op in gen.ops:
        out = op.output
        if (
            op.key == lost.key
            and isinstance(out, ReadOut)
            and replace(out, revision=0) == replace(after, revision=0)
        ):
            op = replace(op, output=replace(before, revision=out.revision))
        ops.append(op)
    ops.append(_final_read(ops, lost.key, replace(before, revision=header_revision(lost))))
    return ops


def duplicate_revision(gen: Generated, rng: random.Random) -> list[Op] | None:
    """An acknowledged write reuses the revision of the key's previous acknowledged write."""
    pairs: list[tuple[int, int]] = []
    for changes in gen.changes.values():
        acked = [c for c in changes if gen.ops[c.op_index].outcome is Outcome.OK]
        pairs += [(a.revision, b.op_index) for a, b in itertools.pairwise(acked)]
    if not pairs:
        return None
    rev, i = rng.choice(pairs)
    ops = list(gen.ops)
    out = ops[i].output
    assert out is not None
    ops[i] = replace(ops[i], output=replace(out, revision=rev))
    return ops


def failed_write_observed(gen: Generated, rng: random.Random) -> list[Op] | None:
    """A write reported as a definite failure, whose value a read nevertheless returns."""
    observed = {
        (op.key, op.output.value)
        for op in gen.ops
        if op.outcome is Outcome.OK and isinstance(op.output, ReadOut)
    }
    candidates = [
        i
        for i, op in enumerate(gen.ops)
        if op.outcome is Outcome.OK
        and isinstance(op.input, PutIn | CasIn)
        and changed_something(op)
        and (op.key, op.input.value) in observed
    ]
    if not candidates:
        return None
    i = rng.choice(candidates)
    ops = list(gen.ops)
    ops[i] = replace(ops[i], output=None, outcome=Outcome.FAIL)
    return ops


MUTATIONS = {
    "stale_read": stale_read,
    "lost_write": lost_write,
    "duplicate_revision": duplicate_revision,
    "failed_write_observed": failed_write_observed,
}


def brute_force(model: Model[S], ops: Sequence[Op]) -> bool:
    """Whether some order of each partition respects real time and the model.

    Every ok op must be placed; an unknown op may be placed anywhere after the ops that returned
    before its call, or left out.
    """
    return all(_brute_partition(model, part) for part in model.partition(ops))


def _brute_partition(model: Model[S], ops: Sequence[Op]) -> bool:
    n = len(ops)
    before = [sum(1 << i for i in range(n) if ops[i].return_t < ops[j].call_t) for j in range(n)]
    required = sum(1 << i for i in range(n) if ops[i].outcome is Outcome.OK)

    def extend(placed: int, state: S) -> bool:
        if placed & required == required:
            return True
        for j in range(n):
            if placed >> j & 1 or before[j] & ~placed:
                continue
            ok, nxt = model.step(state, ops[j].input, ops[j].output)
            if ok and extend(placed | 1 << j, nxt):
                return True
        return False

    return extend(0, model.init())


def perturb(ops: Sequence[Op], rng: random.Random) -> list[Op]:
    """A random small change that may or may not break linearizability."""
    ops = list(ops)
    done = [i for i, op in enumerate(ops) if op.outcome is Outcome.OK]
    # Changing an op that has an output is far more likely to break the history.
    i = rng.choice(done) if done and rng.random() < 0.8 else rng.randrange(len(ops))
    op = ops[i]
    out = op.output
    choice = rng.randrange(6)
    if choice == 0 or out is None:
        t = op.call_t + rng.choice([-3.0, -1.0, 1.0, 3.0])
        op = replace(op, call_t=t, return_t=max(t, op.return_t) if op.return_t != math.inf else math.inf)
    elif choice == 1:
        op = replace(op, output=replace(out, revision=out.revision + rng.choice([-1, 1])))
    elif choice == 2 and isinstance(out, ReadOut):
        other = rng.choice([o.output for o in ops if isinstance(o.output, ReadOut)])
        assert other is not None
        op = replace(op, output=replace(other, revision=out.revision))
    elif choice == 3 and isinstance(out, ReadOut | DeleteOut):
        if isinstance(out, ReadOut):
            op = replace(op, output=replace(out, version=out.version + rng.choice([-1, 1])))
        else:
            op = replace(op, output=replace(out, deleted=1 - out.deleted))
    elif choice == 4 and isinstance(out, CasOut):
        op = replace(op, output=replace(out, succeeded=not out.succeeded))
    else:
        op = replace(op, output=None, return_t=math.inf, outcome=Outcome.UNKNOWN)
    ops[i] = op
    return ops
