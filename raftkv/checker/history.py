"""Client histories for the checkers: operations, a builder, and JSONL persistence.

Owns: the ``Op`` record (TESTING.md §5.1) with its typed inputs and outputs, the rules that make
an ``Op`` well formed, ``HistoryBuilder`` for recording a run, and the JSONL format.

Must not: import anything from the rest of raftkv, or interpret operations (that is the models'
job).

Invariants: an ``ok`` op has an output and a finite ``return_t >= call_t``; a ``fail`` op has no
output and a finite return time; an ``unknown`` op has no output and ``return_t == +inf`` (written
as ``null`` in JSON, which has no infinity). Intervals are closed, all times come from one clock.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CompareTarget = Literal["mod_revision", "value"]


class Outcome(enum.Enum):
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


class Kind(enum.Enum):
    READ = "read"
    PUT = "put"
    DELETE = "delete"
    CAS = "cas"


@dataclass(frozen=True, slots=True)
class ReadIn:
    """A linearizable single-key range at the current revision."""


@dataclass(frozen=True, slots=True)
class PutIn:
    value: str


@dataclass(frozen=True, slots=True)
class DeleteIn:
    """A single-key delete."""


@dataclass(frozen=True, slots=True)
class CasIn:
    """A txn: if ``compare`` of the key equals ``expected`` then put ``value``, else nothing.

    An absent key has mod_revision 0 and no value, so a value compare on it is false.
    """

    compare: CompareTarget
    expected: int | str
    value: str


@dataclass(frozen=True, slots=True)
class ReadOut:
    """``value`` is None for a missing key, which then reads mod_revision 0 and version 0."""

    value: str | None
    mod_revision: int
    version: int
    revision: int


@dataclass(frozen=True, slots=True)
class PutOut:
    revision: int


@dataclass(frozen=True, slots=True)
class DeleteOut:
    deleted: int
    revision: int


@dataclass(frozen=True, slots=True)
class CasOut:
    succeeded: bool
    revision: int


Input = ReadIn | PutIn | DeleteIn | CasIn
Output = ReadOut | PutOut | DeleteOut | CasOut

_KIND_OF_INPUT: dict[type[Any], Kind] = {
    ReadIn: Kind.READ,
    PutIn: Kind.PUT,
    DeleteIn: Kind.DELETE,
    CasIn: Kind.CAS,
}
_OUTPUT_OF_KIND: dict[Kind, type[Any]] = {
    Kind.READ: ReadOut,
    Kind.PUT: PutOut,
    Kind.DELETE: DeleteOut,
    Kind.CAS: CasOut,
}


@dataclass(frozen=True, slots=True)
class Op:
    client: int
    key: str
    input: Input
    call_t: float
    output: Output | None
    return_t: float
    outcome: Outcome

    def __post_init__(self) -> None:
        if self.outcome is Outcome.OK:
            if self.output is None or not math.isfinite(self.return_t):
                raise ValueError(f"ok op needs an output and a finite return time: {self}")
            if not isinstance(self.output, _OUTPUT_OF_KIND[self.kind]):
                raise ValueError(f"output does not match the input kind: {self}")
        elif self.output is not None:
            raise ValueError(f"only ok ops carry an output: {self}")
        elif (self.outcome is Outcome.UNKNOWN) != (self.return_t == math.inf):
            raise ValueError(f"exactly the unknown ops return at +inf: {self}")
        if not self.return_t >= self.call_t:
            raise ValueError(f"op returns before it is called: {self}")

    @property
    def kind(self) -> Kind:
        return _KIND_OF_INPUT[type(self.input)]

    @property
    def is_write(self) -> bool:
        return self.kind is not Kind.READ

    def describe(self) -> str:
        """One line for reports: ``[call, return] c<client> kind key input -> output``."""
        ret = "inf" if self.return_t == math.inf else f"{self.return_t:.6g}"
        args = _fields_text(self.input)
        out = self.outcome.value if self.output is None else _fields_text(self.output)
        return f"[{self.call_t:.6g}, {ret}] c{self.client} {self.kind.value} {self.key!r}{args} -> {out}"


def _fields_text(value: Input | Output) -> str:
    items = _as_dict(value)
    return "(" + ", ".join(f"{k}={v!r}" for k, v in items.items()) + ")"


def _as_dict(value: Input | Output) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def changed_something(op: Op) -> bool:
    """True when ``op`` is an ok write that created a new revision."""
    out = op.output
    if isinstance(out, PutOut):
        return True
    if isinstance(out, DeleteOut):
        return out.deleted > 0
    if isinstance(out, CasOut):
        return out.succeeded
    return False


def header_revision(op: Op) -> int:
    """The response's ``header.revision``; only ok ops have one."""
    if op.output is None:
        raise ValueError(f"op without an output has no revision: {op}")
    return op.output.revision


class HistoryBuilder:
    """Records invocations and completions as a client harness sees them.

    Ops still pending when ``build`` is called become ``unknown``: a client that never heard back
    cannot tell whether the operation took effect.
    """

    def __init__(self) -> None:
        self._pending: dict[int, tuple[int, str, Input, float]] = {}
        self._done: list[tuple[int, Op]] = []
        self._next = 0

    def invoke(self, client: int, key: str, inp: Input, t: float) -> int:
        handle = self._next
        self._next += 1
        self._pending[handle] = (client, key, inp, t)
        return handle

    def ok(self, handle: int, output: Output, t: float) -> None:
        self._finish(handle, output, t, Outcome.OK)

    def fail(self, handle: int, t: float) -> None:
        self._finish(handle, None, t, Outcome.FAIL)

    def unknown(self, handle: int) -> None:
        self._finish(handle, None, math.inf, Outcome.UNKNOWN)

    def _finish(self, handle: int, output: Output | None, t: float, outcome: Outcome) -> None:
        client, key, inp, call_t = self._pending.pop(handle)
        self._done.append((handle, Op(client, key, inp, call_t, output, t, outcome)))

    def build(self) -> list[Op]:
        """The history in invocation order; building does not consume the pending ops."""
        ops = list(self._done)
        for handle, (client, key, inp, call_t) in self._pending.items():
            ops.append((handle, Op(client, key, inp, call_t, None, math.inf, Outcome.UNKNOWN)))
        ops.sort(key=lambda pair: pair[0])
        return [op for _, op in ops]


def op_to_json(op: Op) -> dict[str, Any]:
    return {
        "client": op.client,
        "kind": op.kind.value,
        "key": op.key,
        "input": _as_dict(op.input),
        "call_t": op.call_t,
        "output": None if op.output is None else _as_dict(op.output),
        "return_t": None if op.return_t == math.inf else op.return_t,
        "outcome": op.outcome.value,
    }


_INPUT_OF_KIND: dict[Kind, type[Any]] = {kind: cls for cls, kind in _KIND_OF_INPUT.items()}


def op_from_json(obj: dict[str, Any]) -> Op:
    kind = Kind(obj["kind"])
    inp: Input = _INPUT_OF_KIND[kind](**obj["input"])
    raw_out = obj["output"]
    out: Output | None = None if raw_out is None else _OUTPUT_OF_KIND[kind](**raw_out)
    ret = obj["return_t"]
    return Op(
        client=int(obj["client"]),
        key=str(obj["key"]),
        input=inp,
        call_t=float(obj["call_t"]),
        output=out,
        return_t=math.inf if ret is None else float(ret),
        outcome=Outcome(obj["outcome"]),
    )


def save_jsonl(ops: Iterable[Op], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for op in ops:
            f.write(json.dumps(op_to_json(op), allow_nan=False) + "\n")


def iter_jsonl(path: str | Path) -> Iterator[Op]:
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield op_from_json(json.loads(line))


def load_jsonl(path: str | Path) -> list[Op]:
    return list(iter_jsonl(path))
