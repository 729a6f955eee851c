"""Histories: well-formedness rules, the builder, and the JSONL round trip."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from raftkv.checker import (
    CasIn,
    HistoryBuilder,
    Kind,
    Op,
    Outcome,
    PutIn,
    PutOut,
    ReadIn,
    ReadOut,
    load_jsonl,
    save_jsonl,
)
from tests.checker.checker_histgen import generate


def test_op_rules() -> None:
    with pytest.raises(ValueError, match="ok op needs"):
        Op(0, "k", PutIn("v"), 0, None, 1, Outcome.OK)
    with pytest.raises(ValueError, match="does not match"):
        Op(0, "k", PutIn("v"), 0, ReadOut(None, 0, 0, 1), 1, Outcome.OK)
    with pytest.raises(ValueError, match=r"\+inf"):
        Op(0, "k", PutIn("v"), 0, None, 1, Outcome.UNKNOWN)
    with pytest.raises(ValueError, match="returns before"):
        Op(0, "k", PutIn("v"), 2, PutOut(2), 1, Outcome.OK)
    assert Op(0, "k", CasIn("value", "a", "b"), 0, None, math.inf, Outcome.UNKNOWN).kind is Kind.CAS


def test_builder_marks_pending_ops_unknown() -> None:
    b = HistoryBuilder()
    put = b.invoke(1, "k", PutIn("1-1"), 0.0)
    read = b.invoke(2, "k", ReadIn(), 0.5)
    lost = b.invoke(3, "k", PutIn("3-1"), 0.7)
    b.ok(read, ReadOut(None, 0, 0, 1), 1.0)
    b.fail(lost, 1.1)
    ops = b.build()
    assert [op.client for op in ops] == [1, 2, 3]
    assert ops[0].outcome is Outcome.UNKNOWN and ops[0].return_t == math.inf
    assert ops[1].outcome is Outcome.OK and ops[2].outcome is Outcome.FAIL
    b.ok(put, PutOut(2), 2.0)
    assert b.build()[0].outcome is Outcome.OK


def test_jsonl_round_trip(tmp_path: Path) -> None:
    ops = generate(random.Random(5), 200, 5, ["a", "b"], unknown_rate=0.1, fail_rate=0.1).ops
    kinds = {(op.kind, op.outcome) for op in ops}
    assert len(kinds) >= 10
    path = tmp_path / "history.jsonl"
    save_jsonl(ops, path)
    assert load_jsonl(path) == ops
    # JSON has no infinity: unknown ops are written with a null return time.
    assert '"return_t": null' in path.read_text()
