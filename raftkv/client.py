"""The Python client of raftkv: an async ``Client`` over the etcd v3 JSON gateway and a ``SyncClient``.

Owns: request encoding (base64 bytes, int64 as strings, API.md §1.2) and response parsing into the
response types of ``raftkv.api.models``; the endpoint list with failover; the retry policy; mapping
error bodies back to ``raftkv.errors`` classes; the txn builder (``Compare``, ``Op``, ``Txn``); the
resuming ``Watch`` iterator; ``Lease`` with a background keepalive; status and member list; the
blocking ``SyncClient``, which runs one ``Client`` on a private event loop in a daemon thread.

Must not: import from raftkv anything but ``api.models``, ``api.codec`` and ``errors``
(ARCHITECTURE.md §3); retry a request whose outcome is unknown unless it is idempotent.

Invariants:
* A request is sent again (to the next endpoint) only if it certainly did not take effect: the
  connection was refused before anything was sent, or the server answered an error whose outcome is
  "not applied" and that another node may not give (no leader, leader changed, not leader, learner,
  too many requests). Reads, keepalives and other idempotent calls also retry after time-outs and
  dropped connections. A write whose outcome is unknown raises ``errors.Timeout`` (outcome unknown).
* ``timeout`` bounds a whole call, retries included; ``dial_timeout`` bounds each connection attempt.
* A ``Watch`` delivers every event of its range from its start revision in revision order, each
  once: after a broken stream it re-creates the watcher on the next endpoint from the last delivered
  revision + 1 (never from 0), and drops anything below that revision a node sends again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Self, TypeVar

import aiohttp

from raftkv import errors
from raftkv.api import codec
from raftkv.api.models import (
    CompareResult,
    CompareTarget,
    DeleteRangeResponse,
    Event,
    EventType,
    FilterType,
    KeyValue,
    LeaseTimeToLiveResponse,
    Member,
    MemberListResponse,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    ResponseOp,
    SortOrder,
    SortTarget,
    StatusResponse,
    TxnResponse,
)

__all__ = [
    "Client",
    "Cmp",
    "Compare",
    "CompareResult",
    "CompareTarget",
    "DeleteRangeResponse",
    "EndpointsUnavailable",
    "Event",
    "EventType",
    "FilterType",
    "KeyValue",
    "Lease",
    "LeaseTimeToLiveResponse",
    "Member",
    "MemberListResponse",
    "Op",
    "PutResponse",
    "RangeResponse",
    "ResponseHeader",
    "SortOrder",
    "SortTarget",
    "StatusResponse",
    "SyncClient",
    "SyncLease",
    "SyncWatch",
    "Txn",
    "TxnResponse",
    "Watch",
    "WatchCompacted",
    "collect",
    "error_from_body",
    "normalize_endpoint",
    "prefix_end",
    "to_bytes",
]

Key = str | bytes
Value = str | bytes

DEFAULT_TIMEOUT = 5.0
DEFAULT_DIAL_TIMEOUT = 2.0
# Pause after every endpoint failed once, doubling up to the cap: an election takes about one
# election timeout, so hammering the nodes meanwhile only adds load.
BACKOFF_START = 0.05
BACKOFF_CAP = 1.0
# The longest watch stream line read: one message carries at least one whole revision, which a
# txn of --max-request-bytes (1.5 MiB) with prev_kv and base64 can take to about 4 MiB.
WATCH_LINE_BYTES = 16 << 20

# ---------------------------------------------------------------------------------------------
# Encoding


def to_bytes(data: Key) -> bytes:
    """Keys and values are bytes on the wire; ``str`` is encoded as UTF-8."""
    return data.encode() if isinstance(data, str) else bytes(data)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with ``prefix`` (etcd's ``GetPrefixRangeEnd``):
    the last byte below 0xff incremented, trailing 0xff bytes dropped; ``b"\\0"`` (= to the end of
    the key space) if there is no such byte."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _key_range(key: Key, range_end: Key | None, prefix: bool, from_key: bool) -> dict[str, str]:
    raw = to_bytes(key)
    if (prefix or from_key) and not raw:
        # etcd: an empty key with --prefix or --from-key means the whole key space.
        return {"key": _b64(b"\0"), "range_end": _b64(b"\0")}
    out = {"key": _b64(raw)}
    if prefix:
        out["range_end"] = _b64(prefix_end(raw))
    elif from_key:
        out["range_end"] = _b64(b"\0")
    elif range_end is not None:
        out["range_end"] = _b64(to_bytes(range_end))
    return out


def normalize_endpoint(endpoint: str) -> str:
    """``host:port`` (etcdctl's form) or a URL → a base URL without a trailing slash."""
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if "://" in endpoint else f"http://{endpoint}"


# ---------------------------------------------------------------------------------------------
# Response parsing (the gateway JSON of API.md §1.3 back into the api.models response types)


def _int(data: dict[str, Any], name: str) -> int:
    return int(data.get(name, 0))


def _bytes(data: dict[str, Any], name: str) -> bytes:
    return base64.b64decode(data.get(name, ""))


def parse_header(data: dict[str, Any] | None) -> ResponseHeader | None:
    if data is None:
        return None
    return ResponseHeader(
        cluster_id=_int(data, "cluster_id"),
        member_id=_int(data, "member_id"),
        revision=_int(data, "revision"),
        raft_term=_int(data, "raft_term"),
    )


def parse_kv(data: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_bytes(data, "key"),
        create_revision=_int(data, "create_revision"),
        mod_revision=_int(data, "mod_revision"),
        version=_int(data, "version"),
        value=_bytes(data, "value"),
        lease=_int(data, "lease"),
    )


def _optional_kv(data: dict[str, Any] | None) -> KeyValue | None:
    return None if data is None else parse_kv(data)


def parse_range(data: dict[str, Any]) -> RangeResponse:
    return RangeResponse(
        header=parse_header(data.get("header")),
        kvs=tuple(parse_kv(kv) for kv in data.get("kvs", ())),
        more=bool(data.get("more", False)),
        count=_int(data, "count"),
    )


def parse_put(data: dict[str, Any]) -> PutResponse:
    return PutResponse(header=parse_header(data.get("header")), prev_kv=_optional_kv(data.get("prev_kv")))


def parse_delete(data: dict[str, Any]) -> DeleteRangeResponse:
    return DeleteRangeResponse(
        header=parse_header(data.get("header")),
        deleted=_int(data, "deleted"),
        prev_kvs=tuple(parse_kv(kv) for kv in data.get("prev_kvs", ())),
    )


def _parse_response_op(data: dict[str, Any]) -> ResponseOp:
    if "response_range" in data:
        return ResponseOp(parse_range(data["response_range"]))
    if "response_put" in data:
        return ResponseOp(parse_put(data["response_put"]))
    if "response_delete_range" in data:
        return ResponseOp(parse_delete(data["response_delete_range"]))
    return ResponseOp(parse_txn(data.get("response_txn", {})))


def parse_txn(data: dict[str, Any]) -> TxnResponse:
    return TxnResponse(
        header=parse_header(data.get("header")),
        succeeded=bool(data.get("succeeded", False)),
        responses=tuple(_parse_response_op(op) for op in data.get("responses", ())),
    )


def parse_event(data: dict[str, Any]) -> Event:
    kind = data.get("type", "PUT")
    return Event(
        type=EventType[kind] if isinstance(kind, str) else int(kind),
        kv=_optional_kv(data.get("kv")),
        prev_kv=_optional_kv(data.get("prev_kv")),
    )


def parse_status(data: dict[str, Any]) -> StatusResponse:
    return StatusResponse(
        header=parse_header(data.get("header")),
        version=data.get("version", ""),
        dbSize=_int(data, "dbSize"),
        leader=_int(data, "leader"),
        raftIndex=_int(data, "raftIndex"),
        raftTerm=_int(data, "raftTerm"),
        raftAppliedIndex=_int(data, "raftAppliedIndex"),
        errors=tuple(data.get("errors", ())),
        dbSizeInUse=_int(data, "dbSizeInUse"),
        isLearner=bool(data.get("isLearner", False)),
    )


def parse_members(data: dict[str, Any]) -> MemberListResponse:
    return MemberListResponse(
        header=parse_header(data.get("header")),
        members=tuple(
            Member(
                ID=_int(m, "ID"),
                name=m.get("name", ""),
                peerURLs=tuple(m.get("peerURLs", ())),
                clientURLs=tuple(m.get("clientURLs", ())),
                isLearner=bool(m.get("isLearner", False)),
            )
            for m in data.get("members", ())
        ),
    )


def parse_time_to_live(data: dict[str, Any]) -> LeaseTimeToLiveResponse:
    return LeaseTimeToLiveResponse(
        header=parse_header(data.get("header")),
        ID=_int(data, "ID"),
        TTL=_int(data, "TTL"),
        grantedTTL=_int(data, "grantedTTL"),
        keys=tuple(base64.b64decode(k) for k in data.get("keys", ())),
    )


# ---------------------------------------------------------------------------------------------
# Errors


class EndpointsUnavailable(errors.RaftkvError):
    """No endpoint could be reached before the deadline; nothing was sent, so nothing took effect."""

    code = errors.ErrorCode.NO_LEADER


_ERROR_CLASSES: dict[errors.ErrorCode, type[errors.RaftkvError]] = {
    cls.code: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.RaftkvError) and cls is not errors.RaftkvError
}
_BY_MESSAGE = {code.spec.message: code for code in errors.ErrorCode}
# etcd varies these messages (sizes, method names), so only their beginning identifies them.
_BY_PREFIX = (errors.ErrorCode.MESSAGE_TOO_LARGE, errors.ErrorCode.REQUEST_TOO_LARGE)
# Messages the table does not list (etcd's many INVALID_ARGUMENT texts, a newer server's additions):
# fall back on the gRPC code. An unrecognised UNAVAILABLE is treated as "outcome unknown" because
# only the table says which of them are safe to retry.
_BY_GRPC_CODE = {
    3: errors.ErrorCode.INVALID_ARGUMENT,
    5: errors.ErrorCode.LEASE_NOT_FOUND,
    8: errors.ErrorCode.TOO_MANY_REQUESTS,
    12: errors.ErrorCode.UNIMPLEMENTED,
    14: errors.ErrorCode.TIMEOUT,
    15: errors.ErrorCode.CORRUPT,
}


def error_from_body(message: str, grpc_code: int) -> errors.RaftkvError:
    """The ``raftkv.errors`` exception for an error body ``{"error","code","message"}``."""
    code = _BY_MESSAGE.get(message)
    if code is None:
        code = next((c for c in _BY_PREFIX if message.startswith(c.spec.message)), None)
    if code is None:
        code = _BY_GRPC_CODE.get(grpc_code, errors.ErrorCode.INTERNAL)
    return _ERROR_CLASSES[code](message)


def _error_from_response(status: int, body: bytes) -> errors.RaftkvError:
    try:
        data = codec.loads(body)
        return error_from_body(str(data["message"]), int(data["code"]))
    except (ValueError, KeyError, TypeError):
        # Not a gateway error (e.g. the mux's "404 page not found"): the path is not served.
        text = body.decode(errors="replace").strip()
        if status in (404, 405, 501):
            return errors.Unimplemented(f"HTTP {status}: {text}")
        return errors.Internal(f"HTTP {status}: {text}")


# Errors that say "this node cannot serve it now" and that another node (or a moment later) may
# not give; all are "not applied" in the error table, so even writes may be sent again.
_FAILOVER_CODES = frozenset(
    {
        errors.ErrorCode.NO_LEADER,
        errors.ErrorCode.LEADER_CHANGED,
        errors.ErrorCode.NOT_LEADER,
        errors.ErrorCode.LEARNER_UNSUPPORTED,
        errors.ErrorCode.TOO_MANY_REQUESTS,
    }
)
# An idempotent call may also be repeated after these, whose outcome for a write would be unknown.
_IDEMPOTENT_RETRY_CODES = frozenset({errors.ErrorCode.TIMEOUT, errors.ErrorCode.STOPPED})


def _may_retry(exc: errors.RaftkvError, idempotent: bool) -> bool:
    if exc.code in _FAILOVER_CODES:
        return exc.retryable
    return idempotent and exc.code in _IDEMPOTENT_RETRY_CODES


# errors.Compacted is built with type(), which mypy cannot use as a base class; at run time the
# subclass is a real errors.Compacted, so ``except errors.Compacted`` catches it.
if TYPE_CHECKING:
    _CompactedBase = errors.RaftkvError
else:
    _CompactedBase = errors.Compacted


class WatchCompacted(_CompactedBase):
    """The revisions a watch still had to deliver were compacted; re-read the state and watch again
    from ``compact_revision`` or later."""

    code = errors.ErrorCode.COMPACTED

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


class _NotSent(Exception):
    """The connection failed before the request was written: safe to send elsewhere."""


class _NoAnswer(Exception):
    """The request may have been delivered but no answer came (time-out or dropped connection)."""


# ---------------------------------------------------------------------------------------------
# Txn builder


@dataclass(frozen=True, slots=True)
class Cmp:
    """One compare of a txn; build it with ``Compare``."""

    target: CompareTarget
    result: CompareResult
    key: bytes
    operand: int | bytes
    range_end: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        field = {
            CompareTarget.VERSION: "version",
            CompareTarget.CREATE: "create_revision",
            CompareTarget.MOD: "mod_revision",
            CompareTarget.VALUE: "value",
            CompareTarget.LEASE: "lease",
        }[self.target]
        out: dict[str, Any] = {"result": self.result.name, "target": self.target.name, "key": _b64(self.key)}
        out[field] = _b64(self.operand) if isinstance(self.operand, bytes) else str(self.operand)
        if self.range_end is not None:
            out["range_end"] = _b64(self.range_end)
        return out


class _CompareSide:
    """The left side of a compare; the comparison operators produce a ``Cmp``."""

    __hash__ = None  # type: ignore[assignment]  # == builds a Cmp, so instances are not hashable

    def __init__(self, target: CompareTarget, key: Key, range_end: bytes | None) -> None:
        self._target = target
        self._key = to_bytes(key)
        self._range_end = range_end

    def _cmp(self, result: CompareResult, operand: object) -> Cmp:
        if self._target is CompareTarget.VALUE:
            if not isinstance(operand, str | bytes):
                raise TypeError("a value compare takes str or bytes")
            value: int | bytes = to_bytes(operand)
        else:
            if not isinstance(operand, int):
                raise TypeError(f"a {self._target.name} compare takes an int")
            value = operand
        return Cmp(self._target, result, self._key, value, self._range_end)

    def __eq__(self, other: object) -> Cmp:  # type: ignore[override]
        return self._cmp(CompareResult.EQUAL, other)

    def __ne__(self, other: object) -> Cmp:  # type: ignore[override]
        return self._cmp(CompareResult.NOT_EQUAL, other)

    def __lt__(self, other: object) -> Cmp:
        return self._cmp(CompareResult.LESS, other)

    def __gt__(self, other: object) -> Cmp:
        return self._cmp(CompareResult.GREATER, other)


class Compare:
    """Compare targets, as in the etcd Go client: ``Compare.value("k") == "v"``,
    ``Compare.create_revision("lock/a") == 0``, ``Compare.mod_revision("k") < 7``. ``prefix=True``
    makes the compare hold only if it holds for every key under ``key``."""

    @staticmethod
    def _side(target: CompareTarget, key: Key, prefix: bool) -> _CompareSide:
        return _CompareSide(target, key, prefix_end(to_bytes(key)) if prefix else None)

    @staticmethod
    def version(key: Key, *, prefix: bool = False) -> _CompareSide:
        return Compare._side(CompareTarget.VERSION, key, prefix)

    @staticmethod
    def create_revision(key: Key, *, prefix: bool = False) -> _CompareSide:
        return Compare._side(CompareTarget.CREATE, key, prefix)

    @staticmethod
    def mod_revision(key: Key, *, prefix: bool = False) -> _CompareSide:
        return Compare._side(CompareTarget.MOD, key, prefix)

    @staticmethod
    def value(key: Key, *, prefix: bool = False) -> _CompareSide:
        return Compare._side(CompareTarget.VALUE, key, prefix)

    @staticmethod
    def lease(key: Key, *, prefix: bool = False) -> _CompareSide:
        return Compare._side(CompareTarget.LEASE, key, prefix)


def _sort_fields(sort_order: SortOrder | str | None, sort_target: SortTarget | str | None) -> dict[str, str]:
    out = {}
    if sort_order is not None:
        out["sort_order"] = (
            SortOrder[sort_order.upper()].name if isinstance(sort_order, str) else sort_order.name
        )
    if sort_target is not None:
        out["sort_target"] = (
            SortTarget[sort_target.upper()].name if isinstance(sort_target, str) else sort_target.name
        )
    return out


@dataclass(frozen=True, slots=True)
class Op:
    """One request of a txn branch, in the gateway's JSON (``request_range`` etc.)."""

    kind: str
    body: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {self.kind: self.body}

    @staticmethod
    def get(
        key: Key,
        range_end: Key | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_order: SortOrder | str | None = None,
        sort_target: SortTarget | str | None = None,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> Op:
        body: dict[str, Any] = _key_range(key, range_end, prefix, from_key)
        numbers = {
            "limit": limit,
            "revision": revision,
            "min_mod_revision": min_mod_revision,
            "max_mod_revision": max_mod_revision,
            "min_create_revision": min_create_revision,
            "max_create_revision": max_create_revision,
        }
        body.update({name: str(n) for name, n in numbers.items() if n})
        body.update(_sort_fields(sort_order, sort_target))
        flags = {"serializable": serializable, "keys_only": keys_only, "count_only": count_only}
        body.update({name: True for name, on in flags.items() if on})
        return Op("request_range", body)

    @staticmethod
    def put(
        key: Key,
        value: Value = b"",
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> Op:
        body: dict[str, Any] = {"key": _b64(to_bytes(key))}
        if value:
            body["value"] = _b64(to_bytes(value))
        if lease:
            body["lease"] = str(lease)
        flags = {"prev_kv": prev_kv, "ignore_value": ignore_value, "ignore_lease": ignore_lease}
        body.update({name: True for name, on in flags.items() if on})
        return Op("request_put", body)

    @staticmethod
    def delete(
        key: Key,
        range_end: Key | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
    ) -> Op:
        body: dict[str, Any] = _key_range(key, range_end, prefix, from_key)
        if prev_kv:
            body["prev_kv"] = True
        return Op("request_delete_range", body)

    @staticmethod
    def txn(compares: Iterable[Cmp] = (), success: Iterable[Op] = (), failure: Iterable[Op] = ()) -> Op:
        return Op("request_txn", _txn_body(compares, success, failure))


def _txn_body(compares: Iterable[Cmp], success: Iterable[Op], failure: Iterable[Op]) -> dict[str, Any]:
    return {
        "compare": [c.to_json() for c in compares],
        "success": [op.to_json() for op in success],
        "failure": [op.to_json() for op in failure],
    }


R = TypeVar("R")


class Txn(Generic[R]):
    """``client.txn().if_(cmp, ...).then(op, ...).else_(op, ...).commit()``; each part may be
    called several times (the lists grow). ``commit()`` returns what the owning client returns:
    an awaitable ``TxnResponse`` for ``Client``, the response itself for ``SyncClient``."""

    def __init__(self, submit: Callable[[dict[str, Any]], R]) -> None:
        self._submit = submit
        self.compares: list[Cmp] = []
        self.success: list[Op] = []
        self.failure: list[Op] = []

    def if_(self, *compares: Cmp) -> Self:
        self.compares.extend(compares)
        return self

    def then(self, *ops: Op) -> Self:
        self.success.extend(ops)
        return self

    def else_(self, *ops: Op) -> Self:
        self.failure.extend(ops)
        return self

    def commit(self) -> R:
        return self._submit(_txn_body(self.compares, self.success, self.failure))


def _txn_is_read_only(body: dict[str, Any]) -> bool:
    return all(
        "request_range" in op or ("request_txn" in op and _txn_is_read_only(op["request_txn"]))
        for branch in ("success", "failure")
        for op in body[branch]
    )


# ---------------------------------------------------------------------------------------------
# The async client


class Client:
    """An async client for a raftkv (or etcd v3 gateway) cluster.

    ``endpoints``: ``host:port`` or URLs, a list or a comma-separated string. The client sends to
    one endpoint at a time and moves to the next when it is unreachable or cannot serve the request.
    Use as ``async with Client([...]) as c:`` or call ``close()``.
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        dial_timeout: float = DEFAULT_DIAL_TIMEOUT,
    ) -> None:
        raw = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
        self.endpoints = [normalize_endpoint(e) for e in raw if e.strip()]
        if not self.endpoints:
            raise ValueError("at least one endpoint is required")
        self.timeout = timeout
        self.dial_timeout = dial_timeout
        self._current = 0
        self._session: aiohttp.ClientSession | None = None
        self._write_session: aiohttp.ClientSession | None = None
        self._leases: set[Lease] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every lease keepalive this client runs, then close the connections."""
        for lease in list(self._leases):
            await lease.stop_keepalive()
        for session in (self._session, self._write_session):
            if session is not None:
                await session.close()
        self._session = self._write_session = None

    # --- transport -------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        """Pooled connections, for idempotent calls and streams."""
        # Created lazily so that the session binds to the loop that uses the client.
        if self._session is None:
            # A watch message is one line, and a revision's events are never split: read lines of
            # up to twice this (aiohttp's default stops at 128 KiB with ValueError).
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), read_bufsize=WATCH_LINE_BYTES // 2
            )
        return self._session

    @property
    def write_session(self) -> aiohttp.ClientSession:
        """A fresh connection per request, for writes. A pooled connection may have been closed by a
        node that died since its last use, and then a write fails as "disconnected" although it was
        never delivered; a fresh connection makes a disconnect mean what it says (outcome unknown)
        and a refused connection mean "not sent"."""
        if self._write_session is None:
            self._write_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=True)
            )
        return self._write_session

    @property
    def endpoint(self) -> str:
        """The endpoint the next request goes to."""
        return self.endpoints[self._current]

    def _fail_over(self, failed: str) -> None:
        # Only the first caller to see this endpoint fail moves the cursor; concurrent requests
        # that failed on the same endpoint must not skip the next one.
        if self.endpoints[self._current] == failed:
            self._current = (self._current + 1) % len(self.endpoints)

    async def _retry_pause(self, attempt: int) -> None:
        # A full round over the endpoints failed: wait before the next round (bounded backoff).
        if attempt % len(self.endpoints) == 0:
            await asyncio.sleep(min(BACKOFF_CAP, BACKOFF_START * 2 ** (attempt // len(self.endpoints) - 1)))

    async def _post_once(
        self, base: str, path: str, body: dict[str, Any], budget: float, idempotent: bool
    ) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=budget, sock_connect=min(self.dial_timeout, budget))
        session = self.session if idempotent else self.write_session
        try:
            async with session.post(base + path, data=codec.dumps(body), timeout=timeout) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _NotSent(f"{base}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _NoAnswer(f"{base}: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise _error_from_response(status, data)
        try:
            parsed: dict[str, Any] = codec.loads(data)
        except ValueError as exc:
            raise errors.Internal(f"{base}: undecodable response: {data[:200]!r}") from exc
        return parsed

    async def call(
        self, path: str, body: dict[str, Any], *, idempotent: bool, timeout: float | None = None
    ) -> dict[str, Any]:
        """POST ``body`` to ``path`` (e.g. ``/v3/kv/range``) with failover; returns the JSON reply.

        ``idempotent`` calls are repeated after time-outs and dropped connections; others only
        after errors that certainly left nothing applied. ``timeout`` overrides the client's."""
        timeout = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Exception | None = None
        for attempt in itertools.count(1):
            budget = deadline - loop.time()
            if budget <= 0:
                break
            if idempotent and len(self.endpoints) > 1:
                # A hung node (paused, partitioned) must not use up the whole deadline of a call
                # that another node could serve.
                budget = min(budget, timeout / 2)
            base = self.endpoint
            try:
                return await self._post_once(base, path, body, budget, idempotent)
            except _NotSent as exc:
                last = exc
            except _NoAnswer as exc:
                if not idempotent:
                    raise errors.Timeout(f"client: no answer from {exc}; the outcome is unknown") from exc
                last = exc
            except errors.RaftkvError as exc:
                if not _may_retry(exc, idempotent):
                    raise
                last = exc
            self._fail_over(base)
            await self._retry_pause(attempt)
        if isinstance(last, errors.RaftkvError):
            raise last
        if isinstance(last, _NoAnswer):
            raise errors.Timeout(f"client: deadline exceeded; last error: {last}")
        raise EndpointsUnavailable(f"client: no endpoint reachable within {timeout}s: {last}")

    # --- KV --------------------------------------------------------------------------------------

    async def get(
        self,
        key: Key,
        range_end: Key | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        sort_order: SortOrder | str | None = None,
        sort_target: SortTarget | str | None = None,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResponse:
        """Range over ``key`` (or ``[key, range_end)``, a prefix, or from ``key`` on)."""
        op = Op.get(
            key,
            range_end,
            prefix=prefix,
            from_key=from_key,
            limit=limit,
            revision=revision,
            sort_order=sort_order,
            sort_target=sort_target,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
            min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
        )
        return parse_range(await self.call("/v3/kv/range", op.body, idempotent=True))

    range = get

    async def get_value(self, key: Key, *, serializable: bool = False) -> bytes | None:
        """The value of ``key``, or None if it does not exist."""
        resp = await self.get(key, serializable=serializable)
        return resp.kvs[0].value if resp.kvs else None

    async def get_str(self, key: Key, *, serializable: bool = False) -> str | None:
        """The value of ``key`` decoded as UTF-8, or None if it does not exist."""
        value = await self.get_value(key, serializable=serializable)
        return None if value is None else value.decode()

    async def put(
        self,
        key: Key,
        value: Value = b"",
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResponse:
        op = Op.put(
            key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value, ignore_lease=ignore_lease
        )
        return parse_put(await self.call("/v3/kv/put", op.body, idempotent=False))

    async def delete(
        self,
        key: Key,
        range_end: Key | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        prev_kv: bool = False,
    ) -> DeleteRangeResponse:
        op = Op.delete(key, range_end, prefix=prefix, from_key=from_key, prev_kv=prev_kv)
        return parse_delete(await self.call("/v3/kv/deleterange", op.body, idempotent=False))

    def txn(self) -> Txn[Coroutine[Any, Any, TxnResponse]]:
        """A txn builder; ``await client.txn().if_(...).then(...).else_(...).commit()``."""
        return Txn(self.txn_raw)

    async def txn_raw(self, body: dict[str, Any]) -> TxnResponse:
        """Send a txn given as gateway JSON (``{"compare","success","failure"}``)."""
        return parse_txn(await self.call("/v3/kv/txn", body, idempotent=_txn_is_read_only(body)))

    async def compact(self, revision: int, *, physical: bool = False) -> ResponseHeader | None:
        body: dict[str, Any] = {"revision": str(revision)}
        if physical:
            body["physical"] = True
        # Repeating a compaction that happened fails with "compacted" instead of doing it twice.
        return parse_header((await self.call("/v3/kv/compaction", body, idempotent=False)).get("header"))

    # --- watch -----------------------------------------------------------------------------------

    def watch(
        self,
        key: Key,
        range_end: Key | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        filters: Iterable[FilterType | str] = (),
        progress_notify: bool = False,
    ) -> Watch:
        """An async iterator of the events of a key range; see ``Watch``."""
        create: dict[str, Any] = _key_range(key, range_end, prefix, from_key)
        if prev_kv:
            create["prev_kv"] = True
        if progress_notify:
            create["progress_notify"] = True
        names = [FilterType[f.upper()].name if isinstance(f, str) else f.name for f in filters]
        if names:
            create["filters"] = names
        return Watch(self, create, start_revision)

    # --- leases ----------------------------------------------------------------------------------

    async def grant(self, ttl: int, lease_id: int = 0) -> Lease:
        """Grant a lease of ``ttl`` seconds (the server raises it to its minimum); not kept alive
        until ``keepalive()`` or ``async with``."""
        body = {"TTL": str(ttl), "ID": str(lease_id)}
        data = await self.call("/v3/lease/grant", body, idempotent=False)
        return Lease(self, _int(data, "ID"), _int(data, "TTL"))

    async def revoke(self, lease_id: int) -> ResponseHeader | None:
        data = await self.call("/v3/lease/revoke", {"ID": str(lease_id)}, idempotent=False)
        return parse_header(data.get("header"))

    async def keepalive_once(self, lease_id: int, *, timeout: float | None = None) -> int:
        """Refresh a lease once; the granted TTL, or 0 if the lease is unknown or expired."""
        data = await self.call("/v3/lease/keepalive", {"ID": str(lease_id)}, idempotent=True, timeout=timeout)
        return _int(data.get("result", {}), "TTL")

    async def time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseTimeToLiveResponse:
        """Remaining and granted TTL (``TTL == -1`` for an unknown lease), and the keys."""
        body: dict[str, Any] = {"ID": str(lease_id)}
        if keys:
            body["keys"] = True
        return parse_time_to_live(await self.call("/v3/lease/timetolive", body, idempotent=True))

    async def leases(self) -> list[int]:
        data = await self.call("/v3/lease/leases", {}, idempotent=True)
        return [_int(item, "ID") for item in data.get("leases", ())]

    # --- cluster ---------------------------------------------------------------------------------

    async def status(self) -> StatusResponse:
        """The status of the endpoint that answers (the current one, or the next reachable)."""
        return parse_status(await self.call("/v3/maintenance/status", {}, idempotent=True))

    async def member_list(self) -> MemberListResponse:
        return parse_members(await self.call("/v3/cluster/member/list", {}, idempotent=True))


# ---------------------------------------------------------------------------------------------
# Watch


class Watch:
    """The events of one key range, in revision order, each exactly once.

    Iterate with ``async for event in watch``; ``await watch.start()`` (or ``async with``) waits
    until the server confirmed the watcher, so that later writes are certainly seen even with the
    default start revision (0 = after the current revision). A broken stream is re-created on the
    next endpoint from ``next_revision``. Raises ``WatchCompacted`` (an ``errors.Compacted``
    with ``compact_revision``) when the revisions still to deliver were compacted, and the mapped
    error if the server cancels the watcher. ``close()`` ends the stream.
    """

    def __init__(self, client: Client, create: dict[str, Any], start_revision: int) -> None:
        self.client = client
        self._create = create
        # The revision the next delivered event must have at least; 0 until the server told us
        # the current revision (for a watch "from now").
        self.next_revision = start_revision
        self._pending: deque[Event] = deque()
        self._response: aiohttp.ClientResponse | None = None
        self._closed = False
        self._base = ""
        # A read that next_event() stopped waiting for; it goes on in the background, because
        # cancelling a read halfway through a line would lose the part already consumed.
        self._next: asyncio.Future[Event] | None = None
        self.reconnects = 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def close(self) -> None:
        self._closed = True
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self._drop_stream()

    async def start(self) -> None:
        """Open the stream (on the first endpoint that accepts it) and wait for ``created``.

        The first opening gives up after the client's ``timeout`` (``EndpointsUnavailable`` or the
        last error); once the watch ran, re-opening after a broken stream retries without limit,
        since giving up would lose the events to come."""
        if self._response is not None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.client.timeout if not self._base else None
        last: Exception | None = None
        attempt = 0
        while not self._closed:
            attempt += 1
            base = self.client.endpoint
            try:
                await self._open(base)
                self._base = base
                return
            except (_NotSent, _NoAnswer) as exc:
                last = exc
            except errors.RaftkvError as exc:
                if not _may_retry(exc, idempotent=True):
                    raise
                last = exc
            if deadline is not None and loop.time() >= deadline:
                if isinstance(last, errors.RaftkvError):
                    raise last
                raise EndpointsUnavailable(f"watch: no endpoint accepted the watch: {last}")
            self.client._fail_over(base)
            await self.client._retry_pause(attempt)

    async def _open(self, base: str) -> None:
        create = dict(self._create)
        if self.next_revision:
            create["start_revision"] = str(self.next_revision)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.client.dial_timeout)
        session = self.client.session
        try:
            resp = await asyncio.wait_for(
                session.post(
                    base + "/v3/watch", data=codec.dumps({"create_request": create}), timeout=timeout
                ),
                self.client.timeout,
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _NotSent(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _NoAnswer(str(exc)) from exc
        if resp.status != 200:
            body = await resp.read()
            resp.close()
            raise _error_from_response(resp.status, body)
        self._response = resp
        try:
            # The first message answers the create request; it tells the current revision.
            while self._response is resp and not await self._read_message(created_only=True):
                pass
        except BaseException:
            resp.close()
            self._response = None
            raise

    async def _read_message(self, *, created_only: bool = False) -> bool:
        """Read one stream message into the pending events; True once it was the ``created`` one
        (with ``created_only``) or any message otherwise. Raises ``_NoAnswer`` on a broken stream."""
        assert self._response is not None
        try:
            line = await asyncio.wait_for(
                self._response.content.readline(), self.client.timeout if created_only else None
            )
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise _NoAnswer(str(exc)) from exc
        if not line:
            raise _NoAnswer("stream ended")
        if not line.strip():
            return False
        message = codec.loads(line)
        if "error" in message:
            err = message["error"]
            raise error_from_body(str(err.get("message", "")), int(err.get("grpc_code", 2)))
        result = message.get("result", {})
        header = parse_header(result.get("header"))
        if result.get("created"):
            if self.next_revision == 0 and header is not None:
                self.next_revision = header.revision + 1
            if not result.get("canceled"):
                return True
        if result.get("canceled"):
            # The server ended this watcher: the stream is of no further use.
            self._closed = True
            self._drop_stream()
            compact = _int(result, "compact_revision")
            if compact:
                raise WatchCompacted(f"watch: revision {self.next_revision} has been compacted", compact)
            raise error_from_body(result.get("cancel_reason", "watch canceled"), 2)
        for raw in result.get("events", ()):
            event = parse_event(raw)
            revision = event.kv.mod_revision if event.kv is not None else 0
            # A resumed watcher may be sent again what was already delivered; drop it.
            if revision >= self.next_revision:
                self._pending.append(event)
        if self._pending:
            last = self._pending[-1].kv
            self.next_revision = (last.mod_revision if last is not None else self.next_revision - 1) + 1
        return not created_only

    async def __anext__(self) -> Event:
        if self._next is not None:
            pending, self._next = self._next, None
            return await pending
        return await self._read_event()

    async def _read_event(self) -> Event:
        while not self._pending:
            await self.start()
            if self._closed or self._response is None:
                raise StopAsyncIteration
            try:
                await self._read_message()
            except _NoAnswer:
                self._resume_elsewhere()
            except errors.RaftkvError as exc:
                if self._closed or not _may_retry(exc, idempotent=True):
                    raise
                self._resume_elsewhere()
        return self._pending.popleft()

    def _drop_stream(self) -> None:
        broken, self._response = self._response, None
        if broken is not None:
            broken.close()

    def _resume_elsewhere(self) -> None:
        # The node died or dropped the stream: the next start() re-creates the watcher on the next
        # endpoint from next_revision.
        self._drop_stream()
        if not self._closed:
            self.reconnects += 1
            self.client._fail_over(self._base)

    async def next_event(self, timeout: float) -> Event:
        """The next event, or ``TimeoutError`` after ``timeout`` seconds; the watch stays usable
        (nothing is lost when the wait times out)."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._read_event())
        reading = self._next
        done, _ = await asyncio.wait({reading}, timeout=timeout)
        if not done:
            raise TimeoutError(f"no event within {timeout}s")
        self._next = None
        return reading.result()


# ---------------------------------------------------------------------------------------------
# Leases


class Lease:
    """A granted lease. ``keepalive()`` starts a background task that refreshes it every TTL/3;
    ``lost`` is set when the server says the lease is gone or no keepalive succeeded for a whole
    TTL. ``async with lease:`` keeps it alive inside the block and revokes it on exit."""

    def __init__(self, client: Client, lease_id: int, ttl: int) -> None:
        self.client = client
        self.id = lease_id
        self.ttl = ttl
        self.lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Lease(id={self.id:x}, ttl={self.ttl})"

    async def __aenter__(self) -> Self:
        await self.keepalive()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def keepalive(self) -> None:
        """Start the background keepalive (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._keepalive_loop(), name=f"keepalive-{self.id:x}"
            )
            self.client._leases.add(self)

    async def _keepalive_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        interval = max(self.ttl / 3, 0.2)
        while True:
            try:
                # Bounded by the interval: a node stuck forwarding to a dead leader must not hold
                # the one keepalive of this period while the lease runs out; the next try goes to
                # another node.
                ttl = await self.client.keepalive_once(self.id, timeout=interval)
            except errors.RaftkvError:
                ttl = -1
            now = loop.time()
            if ttl == 0 or (ttl < 0 and now - last_ok > self.ttl):
                self.lost.set()
                return
            if ttl > 0:
                last_ok = now
            await asyncio.sleep(interval if ttl > 0 else min(interval, 0.2))

    async def stop_keepalive(self) -> None:
        task, self._task = self._task, None
        self.client._leases.discard(self)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def revoke(self) -> None:
        await self.stop_keepalive()
        await self.client.revoke(self.id)
        self.lost.set()

    async def close(self) -> None:
        """Stop the keepalive and revoke the lease (a lease already gone is fine)."""
        await self.stop_keepalive()
        with contextlib.suppress(errors.LeaseNotFound):
            await self.client.revoke(self.id)
        self.lost.set()

    async def time_to_live(self, *, keys: bool = False) -> LeaseTimeToLiveResponse:
        return await self.client.time_to_live(self.id, keys=keys)


# ---------------------------------------------------------------------------------------------
# The blocking client

P = ParamSpec("P")
T = TypeVar("T")


class _Blocking:
    """Runs coroutines of an async object on a loop in another thread and waits for them."""

    _loop: asyncio.AbstractEventLoop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


def _blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Any, P], T]:
    """Turn an async method of the wrapped object (``self._target``) into a blocking one."""

    def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = self._run(method(self._target, *args, **kwargs))
        return result

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


class SyncWatch(_Blocking):
    """A ``Watch`` as a blocking iterator (``for event in watch``)."""

    def __init__(self, watch: Watch, loop: asyncio.AbstractEventLoop) -> None:
        self._target = watch
        self._loop = loop

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            return self._run(self._target.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    @property
    def next_revision(self) -> int:
        return self._target.next_revision

    start = _blocking(Watch.start)
    close = _blocking(Watch.close)
    next_event = _blocking(Watch.next_event)


class SyncLease(_Blocking):
    """A ``Lease`` with blocking methods; ``with lease:`` keeps it alive and revokes it on exit."""

    def __init__(self, lease: Lease, loop: asyncio.AbstractEventLoop) -> None:
        self._target = lease
        self._loop = loop
        self.id = lease.id
        self.ttl = lease.ttl

    def __enter__(self) -> Self:
        self.keepalive()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def lost(self) -> bool:
        return self._target.lost.is_set()

    keepalive = _blocking(Lease.keepalive)
    stop_keepalive = _blocking(Lease.stop_keepalive)
    revoke = _blocking(Lease.revoke)
    close = _blocking(Lease.close)
    time_to_live = _blocking(Lease.time_to_live)


class SyncClient(_Blocking):
    """The blocking client: the same operations as ``Client``, run on a private event loop in a
    daemon thread. Use as ``with SyncClient([...]) as c:`` or call ``close()``."""

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        dial_timeout: float = DEFAULT_DIAL_TIMEOUT,
    ) -> None:
        self._target = Client(endpoints, timeout=timeout, dial_timeout=dial_timeout)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raftkv-client", daemon=True)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> Client:
        return self._target

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._target.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    get = _blocking(Client.get)
    range = get
    get_value = _blocking(Client.get_value)
    get_str = _blocking(Client.get_str)
    put = _blocking(Client.put)
    delete = _blocking(Client.delete)
    txn_raw = _blocking(Client.txn_raw)
    compact = _blocking(Client.compact)
    revoke = _blocking(Client.revoke)
    keepalive_once = _blocking(Client.keepalive_once)
    time_to_live = _blocking(Client.time_to_live)
    leases = _blocking(Client.leases)
    status = _blocking(Client.status)
    member_list = _blocking(Client.member_list)

    def txn(self) -> Txn[TxnResponse]:
        return Txn(self.txn_raw)

    def grant(self, ttl: int, lease_id: int = 0) -> SyncLease:
        return SyncLease(self._run(self._target.grant(ttl, lease_id)), self._loop)

    def watch(
        self,
        key: Key,
        range_end: Key | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        filters: Iterable[FilterType | str] = (),
    ) -> SyncWatch:
        watch = self._target.watch(
            key,
            range_end,
            prefix=prefix,
            from_key=from_key,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=filters,
        )
        return SyncWatch(watch, self._loop)


async def collect(watch: AsyncIterator[Event], count: int, timeout: float) -> list[Event]:
    """The next ``count`` events of ``watch``; ``TimeoutError`` if they do not arrive in time."""

    async def take() -> list[Event]:
        out: list[Event] = []
        async for event in watch:
            out.append(event)
            if len(out) == count:
                break
        return out

    return await asyncio.wait_for(take(), timeout)
