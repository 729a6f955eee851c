"""The etcd v3 JSON gateway over aiohttp: routes, decoding, encoding, errors (API.md §1).

Owns: the HTTP surface of a node: ``POST /v3/<service>/<method>`` (and the ``/v3beta/``
alias), ``GET /version``, ``GET /health``; the streams of §1.7 and §4 (lease keepalive as
NDJSON, watch as NDJSON over a long-lived chunked response, or either as a websocket); the mux
behaviours of §1.1 (404 texts, 405, ``OPTIONS``, CORS headers on every response, 501 for known
etcd methods raftkv does not implement yet); the size limit of the gRPC receive path; error
rendering from the one error table (``raftkv.errors``).

Must not: know how a node works: it calls the ``KVService`` Protocol only. Handlers are thin:
decode, call, encode, map errors. No traceback ever reaches a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import WSMsgType, web

from raftkv import errors
from raftkv.api import codec
from raftkv.api import models as api
from raftkv.api.service import KVService
from raftkv.api.service import WatchSession as KVServiceWatch

log = logging.getLogger("raftkv.api")

SERVICE_KEY = web.AppKey("kv_service", KVService)
LIMIT_KEY = web.AppKey("max_request_bytes", int)
VERSION_KEY = web.AppKey("version_body", bytes)

GRPC_OVERHEAD = 512 * 1024
JSON_SLACK = 64 * 1024

CORS_HEADERS = {
    "Access-Control-Allow-Headers": "accept, content-type, authorization",
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
    "Access-Control-Allow-Origin": "*",
}
JSON_HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-Content-Type": "application/grpc"}

Unary = tuple[type[Any], Callable[[KVService, Any], Awaitable[Any]]]

UNARY: dict[str, Unary] = {
    "kv/range": (api.RangeRequest, lambda s, r: s.range(r)),
    "kv/put": (api.PutRequest, lambda s, r: s.put(r)),
    "kv/deleterange": (api.DeleteRangeRequest, lambda s, r: s.delete_range(r)),
    "kv/txn": (api.TxnRequest, lambda s, r: s.txn(r)),
    "kv/compaction": (api.CompactionRequest, lambda s, r: s.compact(r)),
    "maintenance/status": (api.StatusRequest, lambda s, r: s.status(r)),
    "cluster/member/list": (api.MemberListRequest, lambda s, r: s.member_list(r)),
    "lease/grant": (api.LeaseGrantRequest, lambda s, r: s.lease_grant(r)),
    "lease/revoke": (api.LeaseRevokeRequest, lambda s, r: s.lease_revoke(r)),
    "kv/lease/revoke": (api.LeaseRevokeRequest, lambda s, r: s.lease_revoke(r)),
    "lease/timetolive": (api.LeaseTimeToLiveRequest, lambda s, r: s.lease_time_to_live(r)),
    "kv/lease/timetolive": (api.LeaseTimeToLiveRequest, lambda s, r: s.lease_time_to_live(r)),
    "lease/leases": (api.LeaseLeasesRequest, lambda s, r: s.lease_leases(r)),
    "kv/lease/leases": (api.LeaseLeasesRequest, lambda s, r: s.lease_leases(r)),
}

STREAMS = {"watch", "lease/keepalive"}
# How often an idle stream checks whether its client went away.
DISCONNECT_POLL_SECONDS = 1.0

# Methods etcd serves that raftkv does not implement yet: 501 with gRPC code 12.
NOT_YET = {
    "cluster/member/add",
    "cluster/member/remove",
    "cluster/member/update",
    "cluster/member/promote",
    "maintenance/alarm",
    "maintenance/defragment",
    "maintenance/snapshot",
    "maintenance/transfer-leadership",
    "maintenance/hash",
    "maintenance/hashkv",
    "maintenance/downgrade",
    "auth/enable",
    "auth/disable",
    "auth/status",
    "auth/authenticate",
    *(f"auth/user/{m}" for m in ("add", "get", "list", "delete", "changepw", "grant", "revoke")),
    *(f"auth/role/{m}" for m in ("add", "get", "list", "delete", "grant", "revoke")),
    "lock/lock",
    "lock/unlock",
    *(f"election/{m}" for m in ("campaign", "proclaim", "leader", "observe", "resign")),
}


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=codec.dumps(body), status=status, headers=JSON_HEADERS)


def error_response(exc: errors.RaftkvError) -> web.Response:
    return web.Response(
        body=codec.dumps(api.error_body_for(exc)),
        status=exc.code.spec.http_status,
        headers={"Content-Type": "application/json"},
    )


def text_response(text: str, status: int) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/plain")


@web.middleware
async def cors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=200)
    else:
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            response = text_response("404 page not found\n", 404)
        except web.HTTPMethodNotAllowed:
            response = text_response("Method Not Allowed\n", 405)
    response.headers.update(CORS_HEADERS)
    return response


async def handle_v3(request: web.Request) -> web.StreamResponse:
    method = request.match_info["method"]
    if method in STREAMS:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _websocket(request, method)
        if request.method != "POST":
            return text_response("Method Not Allowed\n", 405)
        return await (_watch(request) if method == "watch" else _keepalive(request))
    spec = UNARY.get(method)
    if spec is None:
        if method in NOT_YET:
            return error_response(errors.Unimplemented(f"raftkv does not implement /v3/{method} yet"))
        return text_response("Not Found\n", 404)
    if request.method != "POST":
        return text_response("Method Not Allowed\n", 405)
    body = await request.read()
    # etcd's gRPC limit counts the raw message; base64 inflates it by 4/3 in JSON, so only a body
    # beyond that bound is refused unread (the exact check is on the decoded request).
    limit = request.app[LIMIT_KEY] + GRPC_OVERHEAD
    if len(body) > limit * 4 // 3 + JSON_SLACK:
        return error_response(
            errors.MessageTooLarge(f"grpc: received message larger than max ({len(body)} vs. {limit})")
        )
    model, call = spec
    try:
        decoded = api.decode_request(model, body)
        result = await call(request.app[SERVICE_KEY], decoded)
    except errors.RaftkvError as exc:
        return error_response(exc)
    except Exception:
        log.exception("internal error serving /v3/%s", method)
        return error_response(errors.Internal())
    return json_response(result.render())


def _result_line(response: Any) -> bytes:
    return codec.ndjson_line({"result": response.render()})


def _stream_error_line(exc: errors.RaftkvError) -> bytes:
    spec = exc.code.spec
    return codec.ndjson_line(api.stream_error_body(exc.message, spec.grpc_code, spec.http_status))


def _first_message_error(message: str) -> web.Response:
    """An undecodable first stream message: gRPC code 2 / HTTP 500 (API.md §4.8)."""
    return web.Response(
        body=codec.dumps(api.error_body(message, 2)),
        status=500,
        headers={"Content-Type": "application/json"},
    )


def _stream_response() -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers=JSON_HEADERS)
    response.enable_chunked_encoding()
    return response


async def _keepalive(request: web.Request) -> web.StreamResponse:
    """One ``{"result":...}`` line per request object; the response ends with the body."""
    service = request.app[SERVICE_KEY]
    body = await request.read()
    response: web.StreamResponse | None = None
    try:
        for value in api.iter_json_values(body):
            decoded = api.validate_request(api.LeaseKeepAliveRequest, value)
            result = await service.lease_keepalive(decoded)
            if response is None:
                response = _stream_response()
                await response.prepare(request)
            await response.write(_result_line(result))
    except errors.RaftkvError as exc:
        if response is None:
            if isinstance(exc, errors.InvalidArgument):
                return _first_message_error(exc.message)
            return error_response(exc)
        await response.write(_stream_error_line(exc))
    if response is None:
        return web.Response(status=200, headers=JSON_HEADERS)
    await response.write_eof()
    return response


def _split_fragments(message: api.WatchResponse, limit: int) -> list[api.WatchResponse]:
    """Split a large event message into parts under ``limit`` bytes (API.md §4.6)."""
    parts: list[api.WatchResponse] = []
    current: list[api.Event] = []
    size = 0
    for event in message.events:
        event_size = len(codec.dumps(event.render()))
        if current and size + event_size > limit:
            parts.append(replace(message, events=current, fragment=True))
            current, size = [], 0
        current.append(event)
        size += event_size
    parts.append(replace(message, events=current, fragment=False))
    return parts


async def _watch_responses(
    session: KVServiceWatch, limit: int
) -> list[api.WatchResponse]:
    responses: list[api.WatchResponse] = []
    for response in session.take():
        if len(response.events) > 1 and session.fragmenting(response.watch_id):
            encoded = len(codec.dumps(response.render()))
            if encoded > limit:
                responses.extend(_split_fragments(response, limit))
                continue
        responses.append(response)
    return responses


async def _watch(request: web.Request) -> web.StreamResponse:
    """The gateway's watch: requests from the body, then messages until the client leaves."""
    service = request.app[SERVICE_KEY]
    limit = request.app[LIMIT_KEY] + GRPC_OVERHEAD
    body = await request.read()
    session = service.watch_session()
    try:
        values = api.iter_json_values(body)
        try:
            first = next(values, None)
            if first is None:
                return _first_message_error("unexpected EOF")
            session.handle(api.validate_request(api.WatchRequest, first))
        except errors.RaftkvError as exc:
            return _first_message_error(exc.message)
        try:
            for value in values:
                session.handle(api.validate_request(api.WatchRequest, value))
        except errors.RaftkvError:
            pass  # a bad later message ends the request side; existing watchers keep delivering
        response: web.StreamResponse | None = None
        while True:
            for message in await _watch_responses(session, limit):
                if response is None:
                    response = _stream_response()
                    await response.prepare(request)
                await response.write(_result_line(message))
            if request.transport is None or request.transport.is_closing():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.wakeup.wait(), DISCONNECT_POLL_SECONDS)
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away: that cancels its watchers
    finally:
        session.close()
    return response if response is not None else web.Response(status=200)


async def _websocket(request: web.Request, method: str) -> web.StreamResponse:
    """Bidirectional mode: each text frame in is one request, each frame out one message."""
    service = request.app[SERVICE_KEY]
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    if method != "watch":
        await _websocket_keepalive(ws, service)
        return ws
    limit = request.app[LIMIT_KEY] + GRPC_OVERHEAD
    session = service.watch_session()

    async def pump() -> None:
        while not ws.closed:
            for message in await _watch_responses(session, limit):
                await ws.send_str(codec.dumps({"result": message.render()}).decode())
            await session.wakeup.wait()

    sender = asyncio.create_task(pump())
    try:
        async for frame in ws:
            if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                session.handle(api.decode_request(api.WatchRequest, _frame_bytes(frame.data)))
            except errors.RaftkvError:
                # An undecodable message ends the request side; watchers keep delivering.
                await sender
                break
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        session.close()
    return ws


def _frame_bytes(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


async def _websocket_keepalive(ws: web.WebSocketResponse, service: KVService) -> None:
    async for frame in ws:
        if frame.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            break
        try:
            decoded = api.decode_request(api.LeaseKeepAliveRequest, _frame_bytes(frame.data))
            result = await service.lease_keepalive(decoded)
        except errors.RaftkvError as exc:
            await ws.send_str(_stream_error_line(exc).decode().rstrip("\n"))
            break
        await ws.send_str(codec.dumps({"result": result.render()}).decode())


async def handle_version(request: web.Request) -> web.Response:
    return web.Response(body=request.app[VERSION_KEY], headers={"Content-Type": "application/json"})


async def handle_health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"health":"true"}', content_type="text/plain")


def add_routes(
    app: web.Application,
    service: KVService,
    *,
    max_request_bytes: int,
    version: str,
    server_version: str,
) -> None:
    app[SERVICE_KEY] = service
    app[LIMIT_KEY] = max_request_bytes
    # etcd clients pick their API prefix from "etcdserver" (etcd3gw needs >= 3.4).
    app[VERSION_KEY] = codec.dumps(
        {"etcdserver": version, "etcdcluster": version, "raftkv": server_version}
    )
    app.middlewares.append(cors_middleware)
    for prefix in ("/v3/", "/v3beta/"):
        app.router.add_route("*", prefix + "{method:.+}", handle_v3)
    app.router.add_get("/version", handle_version)
    app.router.add_get("/health", handle_health)
