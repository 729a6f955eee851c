"""Commands carried in Raft entries, their responses, and the msgpack codec for entry data.

Owns: the frozen request values (``Range``, ``Put``, ``DeleteRange``, ``Compare``, ``Txn``,
``Compact``, ``LeaseGrant``, ``LeaseRevoke``), the response values, ``KeyValue`` and ``Event``,
``RequestId``, and the byte layout of an entry's data.

Must not: validate against the store (that is apply's job) or do I/O.

Invariants: ``decode_command(encode_command(rid, cmd)) == (rid, cmd)`` for every command; decoding
malformed bytes raises ``ValueError`` and nothing else. The layout is positional: an entry is the
msgpack array ``[tag, member_id, nonce, counter, *fields]``; a nested op is ``[tag, *fields]`` and
a compare is ``[*fields]``, fields in dataclass declaration order. Enum-valued request fields are
plain ints so unknown numeric values (which etcd accepts) survive the round trip.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any

import msgpack

# ---------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class RequestId:
    """Identifies a proposal for completion and dedup: (member, per-boot nonce, counter)."""

    member_id: int
    nonce: int
    counter: int


class EventType(enum.IntEnum):
    PUT = 0
    DELETE = 1


class CompareResult(enum.IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(enum.IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class SortOrder(enum.IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    value: bytes
    lease: int


@dataclass(frozen=True, slots=True)
class Event:
    """One changed key at one revision; a DELETE's ``kv`` has only key and mod_revision set."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class Range:
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: int = 0
    sort_target: int = 0
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRange:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class Compare:
    """``result`` is a ``CompareResult`` and ``target`` a ``CompareTarget`` (kept as ints)."""

    result: int
    target: int
    key: bytes
    range_end: bytes = b""
    version: int = 0
    create_revision: int = 0
    mod_revision: int = 0
    value: bytes = b""
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Txn:
    compare: tuple[Compare, ...] = ()
    success: tuple[Op, ...] = ()
    failure: tuple[Op, ...] = ()


Op = Range | Put | DeleteRange | Txn


@dataclass(frozen=True, slots=True)
class Compact:
    revision: int
    physical: bool = False


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """``leader_term`` != 0 marks an expiry revoke proposed by the leader of that term."""

    id: int
    leader_term: int = 0


Command = Range | Put | DeleteRange | Txn | Compact | LeaseGrant | LeaseRevoke

# ---------------------------------------------------------------------------------------------
# Responses. ``revision`` is the store revision after the operation (the header revision).


@dataclass(frozen=True, slots=True)
class RangeResponse:
    revision: int
    kvs: tuple[KeyValue, ...]
    more: bool
    count: int


@dataclass(frozen=True, slots=True)
class PutResponse:
    revision: int
    prev_kv: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    revision: int
    deleted: int
    prev_kvs: tuple[KeyValue, ...]


@dataclass(frozen=True, slots=True)
class TxnResponse:
    revision: int
    succeeded: bool
    responses: tuple[RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse, ...]


@dataclass(frozen=True, slots=True)
class CompactResponse:
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseGrantResponse:
    revision: int
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseRevokeResponse:
    revision: int


# ---------------------------------------------------------------------------------------------
# Codec

_TAGS: dict[type[Any], int] = {
    Range: 1,
    Put: 2,
    DeleteRange: 3,
    Txn: 4,
    Compact: 5,
    LeaseGrant: 6,
    LeaseRevoke: 7,
}
_BY_TAG: dict[int, type[Any]] = {tag: cls for cls, tag in _TAGS.items()}
_OP_TAGS = frozenset({_TAGS[Range], _TAGS[Put], _TAGS[DeleteRange], _TAGS[Txn]})

# A txn nests at most this deep; deeper data is refused rather than risking Python's recursion limit.
_MAX_DEPTH = 64


def _field_kinds(cls: type[Any]) -> tuple[str, ...]:
    # Annotations are strings under ``from __future__ import annotations``; map them to checks.
    kinds = []
    for f in fields(cls):
        ann = str(f.type)
        if ann.startswith("tuple[Compare"):
            kinds.append("compares")
        elif ann.startswith("tuple[Op"):
            kinds.append("ops")
        elif ann in ("int", "bytes", "bool"):
            kinds.append(ann)
        else:  # pragma: no cover - a new field type must be taught to the codec
            raise TypeError(f"codec cannot handle {cls.__name__}.{f.name}: {ann}")
    return tuple(kinds)


_KINDS: dict[type[Any], tuple[str, ...]] = {cls: _field_kinds(cls) for cls in (*_TAGS, Compare)}
_SCALAR: dict[str, type[Any]] = {"int": int, "bytes": bytes, "bool": bool}
# Exact field types of the classes whose fields are all scalars (all but Txn). ``type(v) is int``
# refuses bools, which msgpack keeps distinct from ints.
_SCALAR_TYPES: dict[type[Any], tuple[type[Any], ...]] = {
    cls: tuple(_SCALAR[k] for k in kinds) for cls, kinds in _KINDS.items() if all(k in _SCALAR for k in kinds)
}


def _to_obj(value: Any) -> list[Any]:
    """Positional fields of a request or compare, recursing into txn branches."""
    out: list[Any] = []
    for kind, f in zip(_KINDS[type(value)], fields(value), strict=True):
        v = getattr(value, f.name)
        if kind == "compares":
            out.append([_to_obj(c) for c in v])
        elif kind == "ops":
            out.append([[_TAGS[type(op)], *_to_obj(op)] for op in v])
        elif kind == "int":
            out.append(int(v))
        else:
            out.append(v)
    return out


def encode_command(request_id: RequestId, cmd: Command) -> bytes:
    """Entry data for ``cmd``. Raises ``TypeError`` for a value that is not a command."""
    tag = _TAGS.get(type(cmd))
    if tag is None:
        raise TypeError(f"not a command: {type(cmd).__name__}")
    obj = [tag, request_id.member_id, request_id.nonce, request_id.counter, *_to_obj(cmd)]
    return msgpack.packb(obj, use_bin_type=True)


def _check_int(v: Any) -> int:
    # bool is an int subclass but a different msgpack type; a bool where an int belongs is malformed.
    if type(v) is not int:
        raise ValueError(f"expected int, got {type(v).__name__}")
    return v


def _from_obj(cls: type[Any], items: Any, depth: int) -> Any:
    kinds = _KINDS[cls]
    if not isinstance(items, list) or len(items) != len(kinds):
        raise ValueError(f"malformed {cls.__name__}: expected {len(kinds)} fields")
    if cls in _SCALAR_TYPES:
        # Hot path (every put): all fields are scalars, so check exact types and build directly.
        for t, v in zip(_SCALAR_TYPES[cls], items, strict=True):
            if type(v) is not t:
                raise ValueError(f"malformed {cls.__name__}: expected {t.__name__}")
        return cls(*items)
    args: list[Any] = []
    for kind, v in zip(kinds, items, strict=True):
        if kind == "compares":
            if not isinstance(v, list):
                raise ValueError("malformed compare list")
            args.append(tuple(_from_obj(Compare, c, depth) for c in v))
        else:  # only Txn gets here, and its other fields are op lists
            if not isinstance(v, list):
                raise ValueError("malformed op list")
            args.append(tuple(_op_from_obj(op, depth + 1) for op in v))
    return cls(*args)


def _op_from_obj(obj: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("txn nested too deeply")
    if not isinstance(obj, list) or not obj or type(obj[0]) is not int or obj[0] not in _OP_TAGS:
        raise ValueError("malformed txn op")
    return _from_obj(_BY_TAG[obj[0]], obj[1:], depth)


def decode_command(data: bytes) -> tuple[RequestId, Command]:
    """Inverse of ``encode_command``. Raises ``ValueError`` on anything malformed."""
    try:
        obj = msgpack.unpackb(data, use_list=True, raw=False)
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise ValueError(f"undecodable command: {e}") from e
    if not isinstance(obj, list) or len(obj) < 4:
        raise ValueError("malformed command envelope")
    tag = obj[0]
    if type(tag) is not int or tag not in _BY_TAG:
        raise ValueError(f"unknown command tag {tag!r}")
    rid = RequestId(_check_int(obj[1]), _check_int(obj[2]), _check_int(obj[3]))
    return rid, _from_obj(_BY_TAG[tag], obj[4:], 0)


def is_read_only(op: Op) -> bool:
    """True if ``op`` is a Range, or a Txn whose branches (recursively) hold only reads; such a txn
    can be served on the read path because it can never change the store."""
    if isinstance(op, Range):
        return True
    if isinstance(op, Txn):
        return all(is_read_only(o) for o in (*op.success, *op.failure))
    return False
