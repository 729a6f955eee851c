"""The etcd v3 messages of the client API, with etcd's JSON rules (API.md §1.2, §1.3).

Owns: the request models (pydantic v2) and their decoding from request bodies with golang/protobuf
jsonpb semantics (``decode_request``, ``validate_request``, ``iter_json_values``); the response
types and their rendering into JSON-ready dicts exactly as etcd's gateway writes them; the error
bodies of API.md §1.6.

Must not: do I/O, know HTTP routes or statuses beyond the error table in ``raftkv.errors``, or
import anything but the stdlib, pydantic and ``raftkv.errors``. Byte encoding of the rendered dicts
is ``api.codec``'s job.

Invariants:
* Requests: field attributes carry the proto names (``range_end``, ``TTL``, ``ID``); a body may use
  the proto name or the lowerCamelCase JSON name (the JSON name wins when both appear, as in
  jsonpb); unknown fields are ignored; ``null`` means absent; every decoding failure is raised as
  ``raftkv.errors.InvalidArgument`` with a short, Go-like message. Enum fields hold plain ints
  because unknown numbers must survive decoding. Oneof groups hold at most one member.
* Responses: ``render()`` returns a dict whose keys are proto names in proto field-number order,
  with zero values omitted, 64-bit integers as decimal strings, 32-bit ones as numbers, enums as
  names and bytes as padded standard base64. A message field is omitted only when it is ``None``:
  an all-zero message renders as ``{}``.
"""

from __future__ import annotations

import binascii
import enum
import http
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, NoReturn, Self, TypeVar

from pydantic import (
    AliasChoices,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from raftkv.errors import InvalidArgument, RaftkvError

# ---------------------------------------------------------------------------------------------
# Enums (names and numbers from etcd's rpc.proto and kv.proto)


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


class FilterType(enum.IntEnum):
    NOPUT = 0
    NODELETE = 1


class EventType(enum.IntEnum):
    PUT = 0
    DELETE = 1


# ---------------------------------------------------------------------------------------------
# Request decoding: scalar rules

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# jsonpb strips the quotes of a quoted number and parses the rest as a JSON number, so JSON
# whitespace around the digits is allowed but signs, leading zeros and fractions are not.
_QUOTED_INT = re.compile(r"[ \t\n\r]*(-?(?:0|[1-9][0-9]*))[ \t\n\r]*\Z")
_NOT_JSON_WS = re.compile(r"[^ \t\n\r]")
_STD_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")
_BASE64_VALUES = {
    c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}
_NEWLINES = (0x0A, 0x0D)
_PAD = 0x3D


def _fail(message: str) -> NoReturn:
    # A "{message}" template keeps braces inside the message from being read as placeholders.
    raise PydanticCustomError("invalid_argument", "{message}", {"message": message})


def _json_kind(value: object) -> str:
    """The JSON kind word Go uses in ``cannot unmarshal <kind> into ...`` errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def _json_what(value: object) -> str:
    """Like ``_json_kind``, but numbers with their text, as Go reports numbers out of range."""
    kind = _json_kind(value)
    return f"{kind} {value}" if kind == "number" else kind


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _int64(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        match = _QUOTED_INT.match(value)
        if match is None:
            _fail(f"invalid int64 value {_go_quote(value)}")
        number = int(match.group(1))
    else:
        _fail(f"json: cannot unmarshal {_json_what(value)} into Go value of type int64")
    if not _INT64_MIN <= number <= _INT64_MAX:
        _fail(f"json: cannot unmarshal number {number} into Go value of type int64")
    return number


def _optional_int64(value: object) -> int | None:
    return None if value is None else _int64(value)


def _bool(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    kind = _json_kind(value)
    _fail(f"json: cannot unmarshal {kind} into Go value of type bool")


def _base64_error(offset: int) -> NoReturn:
    _fail(f"illegal base64 data at input byte {offset}")


def _decode_base64_go(src: bytes) -> bytes:
    """Go's ``base64.StdEncoding`` decoder, quantum by quantum, for its exact error offsets.

    The reference for ``_decode_base64``, which sends only invalid input here (a pure-Python loop
    is too slow for megabyte values).
    """
    out = bytearray()
    si, end = 0, len(src)
    while True:
        digits: list[int] = []
        while len(digits) < 4:
            if si == end:
                if not digits:
                    return bytes(out)
                _base64_error(si - len(digits))
            char = src[si]
            si += 1
            value = _BASE64_VALUES.get(char)
            if value is not None:
                digits.append(value)
                continue
            if char in _NEWLINES:
                continue
            if char != _PAD or len(digits) < 2:
                _base64_error(si - 1)
            if len(digits) == 2:
                while si < end and src[si] in _NEWLINES:
                    si += 1
                if si == end:
                    _base64_error(end)
                if src[si] != _PAD:
                    _base64_error(si - 1)
                si += 1
            while si < end and src[si] in _NEWLINES:
                si += 1
            if si < end:
                _base64_error(si)
            break
        count = len(digits)
        digits += [0] * (4 - count)
        word = digits[0] << 18 | digits[1] << 12 | digits[2] << 6 | digits[3]
        out += word.to_bytes(3, "big")[: count - 1]
        if count < 4:
            return bytes(out)


def _decode_base64(text: str) -> bytes:
    """Decode standard padded base64 as Go's ``encoding/json`` does for ``[]byte`` fields.

    Fails with ``illegal base64 data at input byte N``.
    """
    if _STD_BASE64.match(text):
        return binascii.a2b_base64(text)
    if "\n" in text or "\r" in text:
        # Go skips CR and LF anywhere, even between and after the padding characters.
        joined = text.replace("\r", "").replace("\n", "")
        if _STD_BASE64.match(joined):
            return binascii.a2b_base64(joined)
    return _decode_base64_go(text.encode("utf-8", "surrogatepass"))


def _bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _decode_base64(value)
    kind = _json_kind(value)
    _fail(f"json: cannot unmarshal {kind} into Go value of type []uint8")


def _optional_bytes(value: object) -> bytes | None:
    return None if value is None else _bytes(value)


_E = TypeVar("_E", bound=enum.IntEnum)


def _enum(enum_cls: type[_E], proto_name: str) -> Callable[[object], int]:
    by_name = {member.name: int(member) for member in enum_cls}

    def validate(value: object) -> int:
        if value is None:
            return 0
        if isinstance(value, str):
            if value not in by_name:
                _fail(f"unknown value {_go_quote(value)} for enum {proto_name}")
            return by_name[value]
        if isinstance(value, int) and not isinstance(value, bool) and _INT32_MIN <= value <= _INT32_MAX:
            return int(value)
        _fail(f"json: cannot unmarshal {_json_what(value)} into Go value of type {proto_name}")

    return validate


def _repeated(item: Callable[[object], Any]) -> Callable[[object], tuple[Any, ...]]:
    def validate(value: object) -> tuple[Any, ...]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            kind = _json_kind(value)
            _fail(f"json: cannot unmarshal {kind} into Go value of type []json.RawMessage")
        return tuple(item(element) for element in value)

    return validate


def _message(value: object) -> object:
    """A nested message: a JSON object (or, from Python, a model); ``null`` means absent."""
    if value is None or isinstance(value, dict | BaseModel):
        return value
    kind = _json_kind(value)
    _fail(f"json: cannot unmarshal {kind} into Go value of type map[string]json.RawMessage")


def _message_element(value: object) -> object:
    return {} if value is None else _message(value)


Int64 = Annotated[int, PlainValidator(_int64)]
OptionalInt64 = Annotated[int | None, PlainValidator(_optional_int64)]
Bool = Annotated[bool, PlainValidator(_bool)]
Bytes = Annotated[bytes, PlainValidator(_bytes)]
OptionalBytes = Annotated[bytes | None, PlainValidator(_optional_bytes)]
_Messages = BeforeValidator(_repeated(_message_element))
_Message = BeforeValidator(_message)


def _json_names(name: str) -> AliasChoices:
    # protoc's JSON name; listed first because jsonpb prefers it when both spellings are present.
    head, *rest = name.split("_")
    camel = head + "".join(part[:1].upper() + part[1:] for part in rest)
    return AliasChoices(camel, name)


class _Request(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=AliasGenerator(validation_alias=_json_names),
        hide_input_in_errors=True,
    )


_M = TypeVar("_M", bound=_Request)


def _keep_last_member(model: _M, members: Sequence[str]) -> _M:
    """Resolve a oneof that got several members: keep the highest field number (etcd keeps
    ``request_put`` over ``request_range``)."""
    present = [name for name in members if getattr(model, name) is not None]
    if len(present) <= 1:
        return model
    return model.model_copy(update=dict.fromkeys(present[:-1]))


# ---------------------------------------------------------------------------------------------
# Request models (fields in proto field-number order)


class RangeRequest(_Request):
    key: Bytes = b""
    range_end: Bytes = b""
    limit: Int64 = 0
    revision: Int64 = 0
    sort_order: Annotated[int, PlainValidator(_enum(SortOrder, "etcdserverpb.RangeRequest_SortOrder"))] = 0
    sort_target: Annotated[int, PlainValidator(_enum(SortTarget, "etcdserverpb.RangeRequest_SortTarget"))] = 0
    serializable: Bool = False
    keys_only: Bool = False
    count_only: Bool = False
    min_mod_revision: Int64 = 0
    max_mod_revision: Int64 = 0
    min_create_revision: Int64 = 0
    max_create_revision: Int64 = 0


class PutRequest(_Request):
    key: Bytes = b""
    value: Bytes = b""
    lease: Int64 = 0
    prev_kv: Bool = False
    ignore_value: Bool = False
    ignore_lease: Bool = False


class DeleteRangeRequest(_Request):
    key: Bytes = b""
    range_end: Bytes = b""
    prev_kv: Bool = False


class Compare(_Request):
    """``target_union`` members (version … lease) are ``None`` unless the client sent them."""

    TARGET_UNION: ClassVar[tuple[str, ...]] = ("version", "create_revision", "mod_revision", "value", "lease")

    result: Annotated[int, PlainValidator(_enum(CompareResult, "etcdserverpb.Compare_CompareResult"))] = 0
    target: Annotated[int, PlainValidator(_enum(CompareTarget, "etcdserverpb.Compare_CompareTarget"))] = 0
    key: Bytes = b""
    version: OptionalInt64 = None
    create_revision: OptionalInt64 = None
    mod_revision: OptionalInt64 = None
    value: OptionalBytes = None
    lease: OptionalInt64 = None
    range_end: Bytes = b""

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        return _keep_last_member(self, self.TARGET_UNION)


class TxnRequest(_Request):
    compare: Annotated[tuple[Compare, ...], _Messages] = ()
    success: Annotated[tuple[RequestOp, ...], _Messages] = ()
    failure: Annotated[tuple[RequestOp, ...], _Messages] = ()


class RequestOp(_Request):
    """At most one of the members is set; an empty op (``{}``) has none."""

    REQUEST: ClassVar[tuple[str, ...]] = (
        "request_range",
        "request_put",
        "request_delete_range",
        "request_txn",
    )

    request_range: Annotated[RangeRequest | None, _Message] = None
    request_put: Annotated[PutRequest | None, _Message] = None
    request_delete_range: Annotated[DeleteRangeRequest | None, _Message] = None
    request_txn: Annotated[TxnRequest | None, _Message] = None

    @model_validator(mode="after")
    def _one_request(self) -> Self:
        return _keep_last_member(self, self.REQUEST)


TxnRequest.model_rebuild()


class CompactionRequest(_Request):
    revision: Int64 = 0
    physical: Bool = False


class LeaseGrantRequest(_Request):
    TTL: Int64 = 0
    ID: Int64 = 0


class LeaseRevokeRequest(_Request):
    ID: Int64 = 0


class LeaseKeepAliveRequest(_Request):
    ID: Int64 = 0


class LeaseTimeToLiveRequest(_Request):
    ID: Int64 = 0
    keys: Bool = False


class LeaseLeasesRequest(_Request):
    pass


class WatchCreateRequest(_Request):
    key: Bytes = b""
    range_end: Bytes = b""
    start_revision: Int64 = 0
    progress_notify: Bool = False
    filters: Annotated[
        tuple[int, ...],
        PlainValidator(_repeated(_enum(FilterType, "etcdserverpb.WatchCreateRequest_FilterType"))),
    ] = ()
    prev_kv: Bool = False
    watch_id: Int64 = 0
    fragment: Bool = False


class WatchCancelRequest(_Request):
    watch_id: Int64 = 0


class WatchProgressRequest(_Request):
    pass


class WatchRequest(_Request):
    """At most one of the members is set; ``{}`` has none (and is ignored by the server)."""

    REQUEST: ClassVar[tuple[str, ...]] = ("create_request", "cancel_request", "progress_request")

    create_request: Annotated[WatchCreateRequest | None, _Message] = None
    cancel_request: Annotated[WatchCancelRequest | None, _Message] = None
    progress_request: Annotated[WatchProgressRequest | None, _Message] = None

    @model_validator(mode="after")
    def _one_request(self) -> Self:
        return _keep_last_member(self, self.REQUEST)


class StatusRequest(_Request):
    pass


class MemberListRequest(_Request):
    linearizable: Bool = False


# ---------------------------------------------------------------------------------------------
# Request bodies


class _BadConstant(ValueError):
    pass


def _reject_constant(name: str) -> NoReturn:
    raise _BadConstant(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _syntax_message(exc: json.JSONDecodeError) -> str:
    if exc.pos >= len(exc.doc) or exc.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    char = exc.doc[exc.pos]
    if exc.msg == "Expecting value":
        return f"invalid character {char!r} looking for beginning of value"
    return f"invalid character {char!r}: {exc.msg.lower()}"


def _parse_at(text: str, pos: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(_syntax_message(exc)) from None
    except RecursionError:
        raise InvalidArgument("exceeded max depth") from None
    except ValueError as exc:  # NaN/Infinity, or an integer literal too long to convert
        raise InvalidArgument(str(exc)) from None


def _body_text(body: bytes) -> str:
    # Go's decoder replaces invalid UTF-8 with U+FFFD rather than failing.
    return body.decode("utf-8", "replace")


def _skip_ws(text: str, pos: int) -> int:
    match = _NOT_JSON_WS.search(text, pos)
    return len(text) if match is None else match.start()


def iter_json_values(body: bytes) -> Iterator[Any]:
    """Yield the JSON values of a stream request body in order (``{...}{...}`` or one per line).

    Raises ``InvalidArgument`` when it reaches a value it cannot parse (after yielding the values
    before it); a body of only whitespace yields nothing.
    """
    text = _body_text(body)
    pos = _skip_ws(text, 0)
    while pos < len(text):
        value, pos = _parse_at(text, pos)
        yield value
        pos = _skip_ws(text, pos)


_R = TypeVar("_R", bound=_Request)


def validate_request(model_cls: type[_R], value: Any) -> _R:
    """Build ``model_cls`` from one parsed JSON value; ``None`` gives all defaults.

    Raises ``InvalidArgument`` with a short message when the value breaks a decoding rule.
    """
    if value is None:
        value = {}
    elif not isinstance(value, dict):
        kind = _json_kind(value)
        raise InvalidArgument(
            f"json: cannot unmarshal {kind} into Go value of type map[string]json.RawMessage"
        )
    try:
        return model_cls.model_validate(value)
    except ValidationError as exc:
        raise InvalidArgument(exc.errors(include_url=False)[0]["msg"]) from None


def decode_request(model_cls: type[_R], body: bytes) -> _R:
    """Decode a unary request body: only its first JSON value counts; empty means all defaults.

    Raises ``InvalidArgument`` on malformed JSON or a value that breaks a decoding rule.
    """
    text = _body_text(body)
    pos = _skip_ws(text, 0)
    value = None if pos == len(text) else _parse_at(text, pos)[0]
    return validate_request(model_cls, value)


# ---------------------------------------------------------------------------------------------
# Responses


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _enum_name(enum_cls: type[enum.IntEnum], value: int) -> str | int:
    # jsonpb writes the number for values the enum does not name.
    try:
        return enum_cls(value).name
    except ValueError:
        return value


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cluster_id:
            out["cluster_id"] = str(self.cluster_id)
        if self.member_id:
            out["member_id"] = str(self.member_id)
        if self.revision:
            out["revision"] = str(self.revision)
        if self.raft_term:
            out["raft_term"] = str(self.raft_term)
        return out


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.key:
            out["key"] = _b64(self.key)
        if self.create_revision:
            out["create_revision"] = str(self.create_revision)
        if self.mod_revision:
            out["mod_revision"] = str(self.mod_revision)
        if self.version:
            out["version"] = str(self.version)
        if self.value:
            out["value"] = _b64(self.value)
        if self.lease:
            out["lease"] = str(self.lease)
        return out


@dataclass(frozen=True, slots=True)
class Event:
    type: int = EventType.PUT
    kv: KeyValue | None = None
    prev_kv: KeyValue | None = None

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.type:
            out["type"] = _enum_name(EventType, self.type)
        if self.kv is not None:
            out["kv"] = self.kv.render()
        if self.prev_kv is not None:
            out["prev_kv"] = self.prev_kv.render()
        return out


def _with_header(header: ResponseHeader | None) -> dict[str, Any]:
    return {} if header is None else {"header": header.render()}


@dataclass(frozen=True, slots=True)
class RangeResponse:
    header: ResponseHeader | None = None
    kvs: Sequence[KeyValue] = ()
    more: bool = False
    count: int = 0

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.kvs:
            out["kvs"] = [kv.render() for kv in self.kvs]
        if self.more:
            out["more"] = True
        if self.count:
            out["count"] = str(self.count)
        return out


@dataclass(frozen=True, slots=True)
class PutResponse:
    header: ResponseHeader | None = None
    prev_kv: KeyValue | None = None

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.prev_kv is not None:
            out["prev_kv"] = self.prev_kv.render()
        return out


@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    header: ResponseHeader | None = None
    deleted: int = 0
    prev_kvs: Sequence[KeyValue] = ()

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.deleted:
            out["deleted"] = str(self.deleted)
        if self.prev_kvs:
            out["prev_kvs"] = [kv.render() for kv in self.prev_kvs]
        return out


@dataclass(frozen=True, slots=True)
class ResponseOp:
    """The oneof ``response``: the member name follows from the response's type."""

    response: RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse

    def render(self) -> dict[str, Any]:
        response = self.response
        if isinstance(response, RangeResponse):
            return {"response_range": response.render()}
        if isinstance(response, PutResponse):
            return {"response_put": response.render()}
        if isinstance(response, DeleteRangeResponse):
            return {"response_delete_range": response.render()}
        return {"response_txn": response.render()}


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """Top level: a full header. Nested in a txn: ``ResponseHeader()`` (renders ``{}``); the ops
    inside any txn carry ``ResponseHeader(revision=r)``."""

    header: ResponseHeader | None = None
    succeeded: bool = False
    responses: Sequence[ResponseOp] = ()

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.succeeded:
            out["succeeded"] = True
        if self.responses:
            out["responses"] = [op.render() for op in self.responses]
        return out


@dataclass(frozen=True, slots=True)
class CompactionResponse:
    header: ResponseHeader | None = None

    def render(self) -> dict[str, Any]:
        return _with_header(self.header)


@dataclass(frozen=True, slots=True)
class LeaseGrantResponse:
    header: ResponseHeader | None = None
    ID: int = 0
    TTL: int = 0
    error: str = ""

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.ID:
            out["ID"] = str(self.ID)
        if self.TTL:
            out["TTL"] = str(self.TTL)
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class LeaseRevokeResponse:
    header: ResponseHeader | None = None

    def render(self) -> dict[str, Any]:
        return _with_header(self.header)


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveResponse:
    """``TTL`` 0 (omitted) tells the client the lease is unknown or expired."""

    header: ResponseHeader | None = None
    ID: int = 0
    TTL: int = 0

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.ID:
            out["ID"] = str(self.ID)
        if self.TTL:
            out["TTL"] = str(self.TTL)
        return out


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveResponse:
    """An unknown lease is ``TTL=-1`` with no ``grantedTTL``."""

    header: ResponseHeader | None = None
    ID: int = 0
    TTL: int = 0
    grantedTTL: int = 0
    keys: Sequence[bytes] = ()

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.ID:
            out["ID"] = str(self.ID)
        if self.TTL:
            out["TTL"] = str(self.TTL)
        if self.grantedTTL:
            out["grantedTTL"] = str(self.grantedTTL)
        if self.keys:
            out["keys"] = [_b64(key) for key in self.keys]
        return out


@dataclass(frozen=True, slots=True)
class LeaseLeasesResponse:
    """``leases`` holds the lease ids; each renders as a ``LeaseStatus{ID}``."""

    header: ResponseHeader | None = None
    leases: Sequence[int] = ()

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.leases:
            out["leases"] = [{"ID": str(lease)} if lease else {} for lease in self.leases]
        return out


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """A compaction cancel carries a header without ``revision``; ``watch_id`` -1 answers a
    progress request or a duplicate id."""

    header: ResponseHeader | None = None
    watch_id: int = 0
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    fragment: bool = False
    events: Sequence[Event] = ()

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.watch_id:
            out["watch_id"] = str(self.watch_id)
        if self.created:
            out["created"] = True
        if self.canceled:
            out["canceled"] = True
        if self.compact_revision:
            out["compact_revision"] = str(self.compact_revision)
        if self.cancel_reason:
            out["cancel_reason"] = self.cancel_reason
        if self.fragment:
            out["fragment"] = True
        if self.events:
            out["events"] = [event.render() for event in self.events]
        return out


@dataclass(frozen=True, slots=True)
class StatusResponse:
    header: ResponseHeader | None = None
    version: str = ""
    dbSize: int = 0
    leader: int = 0
    raftIndex: int = 0
    raftTerm: int = 0
    raftAppliedIndex: int = 0
    errors: Sequence[str] = ()
    dbSizeInUse: int = 0
    isLearner: bool = False

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.version:
            out["version"] = self.version
        if self.dbSize:
            out["dbSize"] = str(self.dbSize)
        if self.leader:
            out["leader"] = str(self.leader)
        if self.raftIndex:
            out["raftIndex"] = str(self.raftIndex)
        if self.raftTerm:
            out["raftTerm"] = str(self.raftTerm)
        if self.raftAppliedIndex:
            out["raftAppliedIndex"] = str(self.raftAppliedIndex)
        if self.errors:
            out["errors"] = list(self.errors)
        if self.dbSizeInUse:
            out["dbSizeInUse"] = str(self.dbSizeInUse)
        if self.isLearner:
            out["isLearner"] = True
        return out


@dataclass(frozen=True, slots=True)
class Member:
    ID: int = 0
    name: str = ""
    peerURLs: Sequence[str] = ()
    clientURLs: Sequence[str] = ()
    isLearner: bool = False

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ID:
            out["ID"] = str(self.ID)
        if self.name:
            out["name"] = self.name
        if self.peerURLs:
            out["peerURLs"] = list(self.peerURLs)
        if self.clientURLs:
            out["clientURLs"] = list(self.clientURLs)
        if self.isLearner:
            out["isLearner"] = True
        return out


@dataclass(frozen=True, slots=True)
class MemberListResponse:
    """The header of cluster APIs has no ``revision``."""

    header: ResponseHeader | None = None
    members: Sequence[Member] = ()

    def render(self) -> dict[str, Any]:
        out = _with_header(self.header)
        if self.members:
            out["members"] = [member.render() for member in self.members]
        return out


# ---------------------------------------------------------------------------------------------
# Error bodies


def error_body(message: str, grpc_code: int) -> dict[str, Any]:
    """The unary error body in etcd 3.5's order: ``{"error","code","message"}``."""
    return {"error": message, "code": grpc_code, "message": message}


def error_body_for(exc: RaftkvError) -> dict[str, Any]:
    """``error_body`` for a client-visible error, with its gRPC code from the error table."""
    return error_body(exc.message, exc.code.spec.grpc_code)


def stream_error_body(message: str, grpc_code: int, http_status: int) -> dict[str, Any]:
    """The grpc-gateway v1 line for an error after a stream's first message."""
    return {
        "error": {
            "grpc_code": grpc_code,
            "http_code": http_status,
            "message": message,
            "http_status": http.HTTPStatus(http_status).phrase,
        }
    }
