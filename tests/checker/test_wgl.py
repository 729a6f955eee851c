"""Oracle A: the WGL search agrees with brute force, passes legal histories, refutes mutations,
and reports UNKNOWN when out of budget."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from raftkv.checker import (
    Op,
    Outcome,
    PutIn,
    PutOut,
    ReadIn,
    ReadOut,
    RegisterModel,
    Verdict,
    check,
    check_partition,
)
from raftkv.checker.parallel import check_parallel
from tests.checker.checker_histgen import MUTATIONS, brute_force, generate, perturb

MODEL = RegisterModel()
# Brute force sees the raw history, so agreement also covers the model's simplifications.
RAW = RegisterModel(simplify=False)
FAST = settings(derandomize=True, deadline=None, max_examples=300)
SLOW = settings(derandomize=True, deadline=None, max_examples=25)


def small_history(rng: random.Random) -> list[Op]:
    gen = generate(
        rng,
        n_ops=rng.randint(2, 6),
        n_clients=rng.randint(1, 3),
        keys=["a", "b"][: rng.randint(1, 2)],
        unknown_rate=0.2,
        fail_rate=0.1,
        final_reads=rng.random() < 0.3,
        integer_times=True,
    )
    ops = gen.ops
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        ops = perturb(ops, rng)
    return ops[:7]


@FAST
@given(st.randoms(use_true_random=False))
def test_wgl_agrees_with_brute_force(rng: random.Random) -> None:
    ops = small_history(rng)
    assert check(MODEL, ops).ok == brute_force(RAW, ops)


def test_agreement_covers_both_verdicts() -> None:
    # The generator must produce plenty of both kinds, or agreement proves little.
    rng = random.Random(7)
    verdicts = {True: 0, False: 0}
    for _ in range(1500):
        ops = small_history(rng)
        expected = brute_force(RAW, ops)
        assert check(MODEL, ops).ok == expected, "\n".join(op.describe() for op in ops)
        verdicts[expected] += 1
    assert verdicts[True] > 200
    assert verdicts[False] > 200


def history_params(min_keys: int) -> st.SearchStrategy[tuple[random.Random, int, int, int, float]]:
    return st.tuples(
        st.integers(0, 2**32).map(random.Random),
        st.integers(1, 500),
        st.integers(1, 10),
        st.integers(min_keys, 10),
        st.sampled_from([0.0, 0.05, 0.1]),
    )


@SLOW
@given(history_params(min_keys=1))
@example((random.Random(0), 500, 10, 3, 0.1))
def test_generated_legal_histories_pass(params: tuple[random.Random, int, int, int, float]) -> None:
    rng, n_ops, n_clients, n_keys, unknown = params
    gen = generate(rng, n_ops, n_clients, [f"k{i}" for i in range(n_keys)], unknown, 0.05)
    result = check(MODEL, gen.ops, budget_s=20)
    assert result.verdict is Verdict.OK, result.report()


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@settings(derandomize=True, deadline=None, max_examples=12)
# Refuting costs far more than confirming while unknown ops are pending (TESTING.md §5.2), hence
# at most ~100 operations per key here.
@given(params=history_params(min_keys=5))
@example(params=(random.Random(1), 500, 10, 5, 0.1))
def test_single_mutations_fail(mutation: str, params: tuple[random.Random, int, int, int, float]) -> None:
    rng, n_ops, n_clients, n_keys, unknown = params
    gen = generate(rng, max(n_ops, 20), n_clients, [f"k{i}" for i in range(n_keys)], unknown, 0.05)
    ops = MUTATIONS[mutation](gen, rng)
    if ops is None:
        return
    result = check(MODEL, ops, budget_s=20)
    assert result.verdict is Verdict.ILLEGAL, result.report()


def test_mutations_apply_to_typical_histories() -> None:
    # Guards the test above against silently skipping every example.
    gen = generate(random.Random(3), 300, 8, ["k0", "k1", "k2", "k3", "k4"], 0.1, 0.05)
    for mutation in MUTATIONS.values():
        ops = mutation(gen, random.Random(4))
        assert ops is not None
        assert check(MODEL, ops, budget_s=20).verdict is Verdict.ILLEGAL


def sequential_puts(n: int) -> list[Op]:
    return [Op(0, "k", PutIn(f"0-{i}"), 2.0 * i, PutOut(i + 2), 2.0 * i + 1, Outcome.OK) for i in range(n)]


def test_time_budget_gives_unknown() -> None:
    # Fourteen concurrent reads, then one that nothing explains: refuting it visits every subset
    # of the reads, more steps than the few thousand between two looks at the clock.
    reads = [Op(c, "k", ReadIn(), 0.0, ReadOut(None, 0, 0, 1), 1.0, Outcome.OK) for c in range(14)]
    bogus = Op(99, "k", ReadIn(), 2.0, ReadOut("nobody", 2, 1, 2), 3.0, Outcome.OK)
    assert check(MODEL, [*reads, bogus], budget_s=60).verdict is Verdict.ILLEGAL
    result = check(MODEL, [*reads, bogus], budget_s=0)
    assert result.verdict is Verdict.UNKNOWN
    assert "time budget" in result.report()


def test_cache_cap_gives_unknown() -> None:
    ops = sequential_puts(50)
    assert check_partition(MODEL, ops, max_cache=50).verdict is Verdict.OK
    result = check_partition(MODEL, ops, max_cache=49)
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason == "cache cap reached"


def test_equal_timestamps_are_concurrent() -> None:
    # The read is called exactly when the put returns: closed intervals make them concurrent, so
    # the read may be linearized first and see the initial absence.
    put = Op(0, "k", PutIn("0-1"), 0.0, PutOut(2), 5.0, Outcome.OK)
    read = Op(1, "k", ReadIn(), 5.0, ReadOut(None, 0, 0, 1), 6.0, Outcome.OK)
    assert check(MODEL, [put, read]).ok
    later = Op(1, "k", ReadIn(), 5.5, ReadOut(None, 0, 0, 1), 6.0, Outcome.OK)
    assert not check(MODEL, [put, later]).ok


def test_unknown_write_may_or_may_not_happen() -> None:
    put = Op(0, "k", PutIn("0-1"), 0.0, None, math.inf, Outcome.UNKNOWN)
    absent = Op(1, "k", ReadIn(), 1.0, ReadOut(None, 0, 0, 1), 2.0, Outcome.OK)
    present = Op(1, "k", ReadIn(), 3.0, ReadOut("0-1", 7, 1, 7), 4.0, Outcome.OK)
    assert check(MODEL, [put, absent, present]).ok
    assert check(MODEL, [put, absent]).ok
    back = Op(1, "k", ReadIn(), 5.0, ReadOut(None, 0, 0, 7), 6.0, Outcome.OK)
    assert not check(MODEL, [put, absent, present, back]).ok


def test_illegal_report_shows_prefix_and_stuck_ops() -> None:
    put = Op(0, "k", PutIn("0-1"), 0.0, PutOut(2), 1.0, Outcome.OK)
    stale = Op(1, "k", ReadIn(), 2.0, ReadOut(None, 0, 0, 2), 3.0, Outcome.OK)
    result = check(MODEL, [put, stale])
    assert result.verdict is Verdict.ILLEGAL
    (part,) = result.partitions
    assert part.order == (0,)
    assert part.unplaced == (1,)
    report = result.report()
    assert "linearized 1 of 2" in report
    assert "STUCK" in report and "'0-1'" in report


def test_search_stops_at_first_illegal_partition() -> None:
    bad = [
        Op(0, "a", PutIn("0-1"), 0.0, PutOut(2), 1.0, Outcome.OK),
        Op(1, "a", ReadIn(), 2.0, ReadOut(None, 0, 0, 2), 3.0, Outcome.OK),
    ]
    good = [Op(0, "b", PutIn("0-2"), 4.0, PutOut(3), 5.0, Outcome.OK)]
    result = check(MODEL, bad + good)
    assert result.verdict is Verdict.ILLEGAL
    assert len(result.partitions) == 1
    assert check(MODEL, good).ok


def test_parallel_matches_serial() -> None:
    gen = generate(random.Random(11), 400, 8, [f"k{i}" for i in range(6)], 0.1, 0.05)
    assert check_parallel(MODEL, gen.ops, budget_s=20).verdict is Verdict.OK
    ops = MUTATIONS["stale_read"](gen, random.Random(12))
    assert ops is not None
    result = check_parallel(MODEL, ops, budget_s=20)
    assert result.verdict is Verdict.ILLEGAL
    assert check(MODEL, ops, budget_s=20).verdict is Verdict.ILLEGAL
