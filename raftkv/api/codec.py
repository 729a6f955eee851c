"""JSON bytes in and out for the client API, and NDJSON stream framing.

Owns: ``dumps`` (compact JSON as etcd's Go encoder writes it), ``loads`` (one whole JSON document),
``ndjson_line`` (one stream message plus its newline).

Must not: know any etcd message (that is ``api.models``), parse request bodies leniently (request
decoding with jsonpb's rules lives in ``api.models``), or import anything but the stdlib and the
optional ``orjson``.

Invariants: ``dumps`` returns the same bytes whether or not orjson is installed: compact
separators, UTF-8 without ``\\uXXXX`` escapes except where Go's ``encoding/json`` escapes too
(``<``, ``>``, ``&``, U+2028, U+2029, control characters), no trailing newline. ``loads`` rejects
``NaN`` and ``Infinity`` either way, as Go does.
"""

from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson as _orjson  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # orjson is an optional speed-up; the stdlib path gives the same bytes
    _orjson = None  # type: ignore[assignment, unused-ignore]

__all__ = ["dumps", "dumps_stdlib", "loads", "loads_stdlib", "ndjson_line"]

# Go's encoder escapes these even inside otherwise plain strings (HTML safety); they can only occur
# inside JSON strings, so replacing them in the encoded bytes never touches the JSON structure.
_GO_ESCAPES = re.compile(rb"[<>&]|\xe2\x80[\xa8\xa9]")
# One byte class is much faster to search than the alternation; 0xE2 also leads other characters,
# so a hit only means the exact pattern has to be applied.
_GO_ESCAPE_CANDIDATE = re.compile(rb"[<>&\xe2]")
_GO_ESCAPE_TEXT = {
    b"<": b"\\u003c",
    b">": b"\\u003e",
    b"&": b"\\u0026",
    "\u2028".encode(): b"\\u2028",
    "\u2029".encode(): b"\\u2029",
}

_STDLIB_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _go_escape(data: bytes) -> bytes:
    if _GO_ESCAPE_CANDIDATE.search(data) is None:
        return data
    return _GO_ESCAPES.sub(lambda m: _GO_ESCAPE_TEXT[m.group()], data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def dumps_stdlib(obj: Any) -> bytes:
    """Encode ``obj`` with the stdlib only (the reference for ``dumps``)."""
    return _go_escape(_STDLIB_ENCODER.encode(obj).encode("utf-8"))


def loads_stdlib(data: bytes | str) -> Any:
    """Decode one whole JSON document with the stdlib only; raises ``ValueError``."""
    return json.loads(data, parse_constant=_reject_constant)


if _orjson is not None:
    _orjson_dumps = _orjson.dumps
    _orjson_loads = _orjson.loads

    def dumps(obj: Any) -> bytes:
        """Encode ``obj`` as compact JSON bytes, Go-style escaping, no trailing newline."""
        return _go_escape(_orjson_dumps(obj))

    def loads(data: bytes | str) -> Any:
        """Decode one whole JSON document; raises ``ValueError`` on malformed input."""
        return _orjson_loads(data)

else:
    dumps = dumps_stdlib
    loads = loads_stdlib


def ndjson_line(obj: Any) -> bytes:
    """One stream message: the compact JSON of ``obj`` followed by exactly one ``\\n``."""
    return dumps(obj) + b"\n"
