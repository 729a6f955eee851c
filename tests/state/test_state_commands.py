"""The command codec: round trips for every command, and ValueError for malformed data."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.state.commands import (
    Command,
    Compact,
    Compare,
    DeleteRange,
    LeaseGrant,
    LeaseRevoke,
    Put,
    Range,
    RequestId,
    Txn,
    decode_command,
    encode_command,
    is_read_only,
)

i64 = st.integers(-(2**63), 2**63 - 1)
u64 = st.integers(0, 2**64 - 1)
small_bytes = st.binary(max_size=8)

ranges = st.builds(
    Range,
    key=small_bytes,
    range_end=small_bytes,
    limit=i64,
    revision=i64,
    sort_order=st.integers(0, 5),
    sort_target=st.integers(0, 6),
    serializable=st.booleans(),
    keys_only=st.booleans(),
    count_only=st.booleans(),
    min_mod_revision=i64,
    max_mod_revision=i64,
    min_create_revision=i64,
    max_create_revision=i64,
)
puts = st.builds(Put, small_bytes, small_bytes, i64, st.booleans(), st.booleans(), st.booleans())
deletes = st.builds(DeleteRange, small_bytes, small_bytes, st.booleans())
compares = st.builds(
    Compare, st.integers(0, 4), st.integers(0, 5), small_bytes, small_bytes, i64, i64, i64, small_bytes, i64
)
ops: st.SearchStrategy[Any] = st.recursive(
    st.one_of(ranges, puts, deletes),
    lambda inner: st.builds(
        Txn,
        st.lists(compares, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=8,
)
commands = st.one_of(
    ops,
    st.builds(Compact, i64, st.booleans()),
    st.builds(LeaseGrant, i64, i64),
    st.builds(LeaseRevoke, i64, u64),
)
request_ids = st.builds(RequestId, u64, u64, u64)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(request_ids, commands)
def test_round_trip(rid: RequestId, cmd: Command) -> None:
    assert decode_command(encode_command(rid, cmd)) == (rid, cmd)


def test_encoding_is_compact() -> None:
    data = encode_command(RequestId(1, 2, 3), Put(b"key", b"value"))
    assert len(data) < 25


def test_encode_refuses_non_commands() -> None:
    with pytest.raises(TypeError):
        encode_command(RequestId(1, 2, 3), "put")  # type: ignore[arg-type]


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


GOOD_PUT = [2, 1, 2, 3, b"k", b"v", 0, False, False, False]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a reserved msgpack byte
        _pack(GOOD_PUT)[:-1],  # truncated
        _pack(GOOD_PUT) + b"\x00",  # trailing bytes
        _pack({"a": 1}),
        _pack([2, 1, 2]),
        _pack([99, 1, 2, 3]),  # unknown tag
        _pack(["2", 1, 2, 3, b"k", b"v", 0, False, False, False]),
        _pack([2, 1, 2, 3, "k", b"v", 0, False, False, False]),  # str where bytes belong
        _pack([2, 1, 2, 3, b"k", b"v", True, False, False, False]),  # bool where an int belongs
        _pack([2, 1, 2, 3, b"k", b"v", 0, 0, False, False]),  # int where a bool belongs
        _pack([2, 1, 2, 3, b"k", b"v", 0, False, False]),  # a field missing
        _pack([2, 1.5, 2, 3, b"k", b"v", 0, False, False, False]),
        _pack([4, 1, 2, 3, [], [[5, 7, False]], []]),  # Compact is not a txn op
        _pack([4, 1, 2, 3, [[0, 0]], [], []]),  # short compare
        _pack([4, 1, 2, 3, [], "ops", []]),
        _pack([4, 1, 2, 3, [], [[]], []]),
    ],
)
def test_malformed_data_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_command(data)


def test_deep_nesting_is_refused() -> None:
    obj: list[Any] = [2, b"k", b"v", 0, False, False, False]
    for _ in range(100):
        obj = [4, [], [obj], []]
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_command(_pack([obj[0], 1, 2, 3, *obj[1:]]))


def test_is_read_only() -> None:
    assert is_read_only(Range(b"a"))
    assert is_read_only(Txn((), (Range(b"a"), Txn((), (Range(b"b"),), ())), (Range(b"c"),)))
    assert not is_read_only(Txn((), (Range(b"a"),), (Txn((), (), (DeleteRange(b"x"),)),)))
    assert not is_read_only(Put(b"a"))
