"""``api.codec``: compact Go-compatible JSON, identical with and without orjson."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.api import codec

HAVE_ORJSON = importlib.util.find_spec("orjson") is not None

# Valid Unicode only: lone surrogates cannot be encoded as UTF-8 by either backend.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
# orjson encodes integers up to 64 bits, which covers every integer raftkv writes.
INT = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def test_dumps_is_compact_without_trailing_newline() -> None:
    assert (
        codec.dumps({"a": [1, "x"], "b": {"c": True, "d": None}}) == b'{"a":[1,"x"],"b":{"c":true,"d":null}}'
    )


def test_dumps_keeps_insertion_order() -> None:
    assert codec.dumps({"z": 1, "a": 2, "m": 3}) == b'{"z":1,"a":2,"m":3}'


def test_dumps_writes_utf8_and_escapes_like_go() -> None:
    assert codec.dumps({"s": 'é€<>&"\\\n\x01\u2028\u2029'}) == (
        '{"s":"é€\\u003c\\u003e\\u0026\\"\\\\\\n\\u0001\\u2028\\u2029"}'.encode()
    )


def test_ndjson_line_is_one_message_and_one_newline() -> None:
    line = codec.ndjson_line({"result": {"header": {}}})
    assert line == b'{"result":{"header":{}}}\n'
    assert line.count(b"\n") == 1


def test_loads_round_trip_and_rejects_nan() -> None:
    assert codec.loads(b'{"a":[1,"\\u003c"]}') == {"a": [1, "<"]}
    assert codec.loads('{"b":null}') == {"b": None}
    for bad in (b"NaN", b'{"a":Infinity}', b"{", b""):
        with pytest.raises(ValueError):
            codec.loads(bad)


@settings(derandomize=True, max_examples=300)
@given(JSON_VALUES)
def test_stdlib_dumps_round_trips_through_json(value: Any) -> None:
    assert json.loads(codec.dumps_stdlib(value)) == value
    assert codec.loads_stdlib(codec.dumps_stdlib(value)) == value


@pytest.mark.skipif(not HAVE_ORJSON, reason="orjson not installed")
@settings(derandomize=True, max_examples=300)
@given(JSON_VALUES)
def test_orjson_and_stdlib_give_identical_bytes(value: Any) -> None:
    assert codec.dumps(value) == codec.dumps_stdlib(value)
    assert codec.loads(codec.dumps(value)) == codec.loads_stdlib(codec.dumps_stdlib(value))


@pytest.mark.skipif(not HAVE_ORJSON, reason="orjson not installed")
def test_orjson_backend_is_the_one_in_use() -> None:
    assert codec.dumps is not codec.dumps_stdlib
