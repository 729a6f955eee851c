"""The versioned-register model, step by step, and its history simplifications."""

from __future__ import annotations

import math

from raftkv.checker import (
    CasIn,
    CasOut,
    DeleteIn,
    DeleteOut,
    KeyState,
    Op,
    Outcome,
    PutIn,
    PutOut,
    ReadIn,
    ReadOut,
    RegisterModel,
)
from raftkv.checker.models import INITIAL, drop_dead_cas, resolve_observed, step_key

PRESENT = KeyState("a", 5, 2)


def test_missing_key_reads_none_with_zero_revision_and_version() -> None:
    assert step_key(INITIAL, ReadIn(), ReadOut(None, 0, 0, 1)) == [INITIAL]
    assert step_key(INITIAL, ReadIn(), ReadOut(None, 0, 1, 1)) == []
    assert step_key(PRESENT, ReadIn(), ReadOut(None, 0, 0, 9)) == []


def test_read_must_match_value_revision_and_version() -> None:
    assert step_key(PRESENT, ReadIn(), ReadOut("a", 5, 2, 9)) == [PRESENT]
    assert step_key(PRESENT, ReadIn(), ReadOut("b", 5, 2, 9)) == []
    assert step_key(PRESENT, ReadIn(), ReadOut("a", 6, 2, 9)) == []
    assert step_key(PRESENT, ReadIn(), ReadOut("a", 5, 3, 9)) == []
    # The header revision can never be below the key's last change.
    assert step_key(PRESENT, ReadIn(), ReadOut("a", 5, 2, 4)) == []


def test_put_needs_a_larger_revision_and_counts_versions() -> None:
    assert step_key(PRESENT, PutIn("b"), PutOut(6)) == [KeyState("b", 6, 3)]
    assert step_key(PRESENT, PutIn("b"), PutOut(5)) == []
    assert step_key(INITIAL, PutIn("b"), PutOut(2)) == [KeyState("b", 2, 1)]


def test_delete_resets_version_and_keeps_its_revision() -> None:
    gone = KeyState(None, 7, 0)
    assert step_key(PRESENT, DeleteIn(), DeleteOut(1, 7)) == [gone]
    assert step_key(PRESENT, DeleteIn(), DeleteOut(0, 7)) == []
    assert step_key(gone, DeleteIn(), DeleteOut(0, 9)) == [gone]
    assert step_key(gone, DeleteIn(), DeleteOut(1, 9)) == []
    assert step_key(gone, PutIn("c"), PutOut(7)) == []
    assert step_key(gone, PutIn("c"), PutOut(8)) == [KeyState("c", 8, 1)]


def test_cas_reports_success_consistently() -> None:
    by_rev = CasIn("mod_revision", 5, "b")
    assert step_key(PRESENT, by_rev, CasOut(True, 6)) == [KeyState("b", 6, 3)]
    assert step_key(PRESENT, by_rev, CasOut(False, 6)) == []
    assert step_key(PRESENT, CasIn("mod_revision", 4, "b"), CasOut(False, 6)) == [PRESENT]
    assert step_key(INITIAL, CasIn("mod_revision", 0, "b"), CasOut(True, 2)) == [KeyState("b", 2, 1)]
    assert step_key(PRESENT, CasIn("value", "a", "b"), CasOut(True, 8)) == [KeyState("b", 8, 3)]
    assert step_key(INITIAL, CasIn("value", "a", "b"), CasOut(False, 1)) == [INITIAL]


def test_unknown_write_leaves_revision_open_until_read() -> None:
    (opened,) = step_key(PRESENT, PutIn("b"), None)
    assert opened == KeyState("b", 6, 3, exact=False)
    assert step_key(opened, ReadIn(), ReadOut("b", 9, 3, 9)) == [KeyState("b", 9, 3)]
    assert step_key(opened, ReadIn(), ReadOut("b", 5, 3, 9)) == []
    # A known put after it only needs room for the unknown one's revision.
    assert step_key(opened, PutIn("c"), PutOut(7)) == [KeyState("c", 7, 4)]
    assert step_key(opened, PutIn("c"), PutOut(6)) == []


def test_unknown_cas_on_open_revision_keeps_both_outcomes() -> None:
    (opened,) = step_key(PRESENT, PutIn("b"), None)
    after = set(step_key(opened, CasIn("mod_revision", 8, "c"), None))
    assert after == {KeyState("c", 9, 4, exact=False), opened}
    ok, state = RegisterModel().step(frozenset((opened,)), CasIn("mod_revision", 8, "c"), None)
    assert ok and state == frozenset(after)
    # A failed compare against the least possible revision raises it; the header caps it.
    assert step_key(opened, CasIn("mod_revision", 6, "c"), CasOut(False, 9)) == [
        KeyState("b", 7, 3, exact=False, ceiling=9)
    ]


def test_headers_bound_an_open_revision() -> None:
    # A response at store revision 7 means the unknown put committed at 7 at the latest.
    (opened,) = step_key(PRESENT, PutIn("b"), None)
    (capped,) = step_key(opened, CasIn("value", "zz", "c"), CasOut(False, 7))
    assert capped == KeyState("b", 6, 3, exact=False, ceiling=7)
    assert step_key(capped, ReadIn(), ReadOut("b", 8, 3, 9)) == []
    assert step_key(capped, ReadIn(), ReadOut("b", 7, 3, 9)) == [KeyState("b", 7, 3)]
    # Down to one possible revision, the state is exact again.
    assert step_key(capped, CasIn("mod_revision", 7, "c"), CasOut(False, 8)) == [KeyState("b", 6, 3)]


def test_unknown_ops_always_step() -> None:
    for state in (INITIAL, PRESENT, KeyState("x", 3, 1, exact=False)):
        for inp in (ReadIn(), PutIn("z"), DeleteIn(), CasIn("value", "x", "z")):
            assert step_key(state, inp, None)


def op(inp: ReadIn | PutIn | CasIn, out: ReadOut | PutOut | CasOut | None, call: float, ret: float) -> Op:
    outcome = Outcome.UNKNOWN if out is None else Outcome.OK
    return Op(0, "k", inp, call, out, math.inf if out is None else ret, outcome)


def test_resolve_observed_fixes_revision_and_return() -> None:
    unknown = op(PutIn("v"), None, 0, 0)
    read = op(ReadIn(), ReadOut("v", 4, 1, 6), 1, 2)
    resolved = resolve_observed([unknown, read])
    assert resolved[0] == Op(0, "k", PutIn("v"), 0, PutOut(4), 2, Outcome.OK)
    assert resolve_observed([unknown]) == [unknown]


def test_drop_dead_cas() -> None:
    put = op(PutIn("v"), PutOut(4), 0, 1)
    stale = op(CasIn("mod_revision", 3, "w"), None, 2, 0)
    live = op(CasIn("mod_revision", 4, "w"), None, 2, 0)
    early = op(CasIn("mod_revision", 3, "w"), None, 0.5, 0)
    never = op(CasIn("value", "nobody", "w"), None, 0.5, 0)
    assert drop_dead_cas([put, stale, live, early, never]) == [put, live, early]


def test_partition_by_key_drops_failed_ops_and_unknown_reads() -> None:
    a = Op(0, "a", PutIn("0-1"), 0, PutOut(2), 1, Outcome.OK)
    b = Op(1, "b", ReadIn(), 0, ReadOut(None, 0, 0, 1), 1, Outcome.OK)
    failed = Op(1, "a", PutIn("1-1"), 0, None, 1, Outcome.FAIL)
    unknown_read = Op(2, "a", ReadIn(), 0, None, math.inf, Outcome.UNKNOWN)
    assert RegisterModel().partition([b, failed, a, unknown_read]) == [[a], [b]]
