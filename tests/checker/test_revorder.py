"""Oracle B: uniqueness, gaps, real time and replay."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.checker import (
    AnomalyKind,
    CasIn,
    CasOut,
    DeleteIn,
    DeleteOut,
    Op,
    Outcome,
    PutIn,
    PutOut,
    ReadIn,
    ReadOut,
    check_revision_order,
)
from tests.checker.checker_histgen import MUTATIONS, Generated, generate


def kinds(ops: list[Op], committed: list[int] | None = None) -> set[AnomalyKind]:
    return {a.kind for a in check_revision_order(ops, committed)}


@settings(derandomize=True, deadline=None, max_examples=40)
@given(
    st.integers(0, 2**32).map(random.Random),
    st.integers(1, 500),
    st.integers(1, 10),
    st.integers(1, 10),
    st.sampled_from([0.0, 0.1]),
)
def test_legal_histories_pass(
    rng: random.Random, n_ops: int, clients: int, keys: int, unknown: float
) -> None:
    gen = generate(rng, n_ops, clients, [f"k{i}" for i in range(keys)], unknown, 0.05)
    assert check_revision_order(gen.ops, gen.committed) == []


def legal(seed: int) -> Generated:
    # No unknown ops, so every key takes part in the replay.
    return generate(random.Random(seed), 300, 8, ["a", "b", "c"], 0.0, 0.05)


def test_duplicate_revision() -> None:
    for seed in range(5):
        gen = legal(seed)
        ops = MUTATIONS["duplicate_revision"](gen, random.Random(seed))
        assert ops is not None
        assert AnomalyKind.DUPLICATE_REVISION in kinds(ops)


def test_stale_read_breaks_real_time() -> None:
    # A lagging node serves an old version and reports its own, older revision.
    for seed in range(5):
        gen = legal(seed)
        ops = MUTATIONS["stale_read"](gen, random.Random(seed))
        assert ops is not None
        stale = next(op for op, orig in zip(ops, gen.ops, strict=True) if op != orig)
        assert isinstance(stale.output, ReadOut)
        lagging = replace(stale, output=replace(stale.output, revision=stale.output.mod_revision))
        ops = [lagging if op is stale else op for op in ops]
        found = kinds(ops)
        assert AnomalyKind.REAL_TIME in found
        assert AnomalyKind.REPLAY_MISMATCH not in found


def test_stale_read_at_current_revision_breaks_replay() -> None:
    for seed in range(5):
        ops = MUTATIONS["stale_read"](legal(seed), random.Random(seed))
        assert ops is not None
        assert kinds(ops) == {AnomalyKind.REPLAY_MISMATCH}


def op(client: int, inp: ReadIn | PutIn | DeleteIn | CasIn, out: object, call: float, ret: float) -> Op:
    assert isinstance(out, ReadOut | PutOut | DeleteOut | CasOut)
    return Op(client, "k", inp, call, out, ret, Outcome.OK)


def test_real_time_is_strict_for_writes_only() -> None:
    read = op(0, ReadIn(), ReadOut("v", 2, 1, 5), 0, 1)
    same_rev_read = op(1, ReadIn(), ReadOut("v", 2, 1, 5), 2, 3)
    same_rev_put = op(1, PutIn("w"), PutOut(5), 2, 3)
    assert AnomalyKind.REAL_TIME not in kinds([read, same_rev_read])
    assert AnomalyKind.REAL_TIME in kinds([read, same_rev_put])
    # Touching intervals are concurrent: no real-time order between them.
    touching = op(1, PutIn("w"), PutOut(5), 1, 3)
    assert AnomalyKind.REAL_TIME not in kinds([read, touching])


def test_replay_checks_cas_and_delete_responses() -> None:
    put = op(0, PutIn("v"), PutOut(2), 0, 1)
    good = [
        put,
        op(1, CasIn("value", "v", "w"), CasOut(True, 3), 2, 3),
        op(1, CasIn("mod_revision", 2, "x"), CasOut(False, 3), 4, 5),
        op(1, DeleteIn(), DeleteOut(1, 4), 6, 7),
        op(1, DeleteIn(), DeleteOut(0, 4), 8, 9),
        op(1, ReadIn(), ReadOut(None, 0, 0, 4), 10, 11),
    ]
    assert check_revision_order(good, [2, 3, 4]) == []
    # Flipping a no-op into a change makes it claim a revision another write already owns.
    replay, duplicate = AnomalyKind.REPLAY_MISMATCH, AnomalyKind.DUPLICATE_REVISION
    expected = [replay, duplicate, replay, duplicate, replay]
    for i in range(1, len(good)):
        out = good[i].output
        bad: ReadOut | DeleteOut | CasOut
        if isinstance(out, CasOut):
            bad = replace(out, succeeded=not out.succeeded)
        elif isinstance(out, DeleteOut):
            bad = replace(out, deleted=1 - out.deleted)
        else:
            bad = ReadOut("w", 3, 2, 4)
        ops = [*good[:i], replace(good[i], output=bad), *good[i + 1 :]]
        assert expected[i - 1] in kinds(ops), i


def test_gaps_and_uncommitted_writes() -> None:
    gen = legal(1)
    assert kinds(gen.ops, gen.committed) == set()
    assert kinds(gen.ops, gen.committed[:3] + gen.committed[4:]) == {
        AnomalyKind.REVISION_GAP,
        AnomalyKind.UNCOMMITTED_WRITE,
    }


def test_keys_with_unknown_writes_skip_replay() -> None:
    unknown = Op(0, "k", PutIn("u"), 0, None, float("inf"), Outcome.UNKNOWN)
    read = op(1, ReadIn(), ReadOut("u", 2, 1, 2), 1, 2)
    assert check_revision_order([unknown, read]) == []
    assert kinds([read]) == {AnomalyKind.REPLAY_MISMATCH}
