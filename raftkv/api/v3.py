"""The etcd v3 JSON gateway over aiohttp: routes, decoding, encoding, errors (API.md §1).

Owns: the HTTP surface of a node: ``POST /v3/<service>/<method>`` (and the ``/v3beta/`` alias),
``GET /version``, ``GET /health``; the mux behaviours of §1.1 (404 texts, 405, ``OPTIONS``, CORS
headers on every response, 501 for known etcd methods raftkv does not implement yet); the size
limit of the gRPC receive path; error rendering from the one error table (``raftkv.errors``).

Must not: know how a node works: it calls the ``KVService`` Protocol only. Handlers are thin:
decode, call, encode, map errors. No traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from raftkv import errors
from raftkv.api import codec
from raftkv.api import models as api
from raftkv.api.service import KVService

log = logging.getLogger("raftkv.api")

SERVICE_KEY = web.AppKey("kv_service", KVService)
LIMIT_KEY = web.AppKey("max_request_bytes", int)
VERSION_KEY = web.AppKey("version_body", bytes)

GRPC_OVERHEAD = 512 * 1024

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
}

# Methods etcd serves that raftkv does not implement yet: 501 with gRPC code 12.
NOT_YET = {
    "watch",
    "lease/grant",
    "lease/revoke",
    "lease/keepalive",
    "lease/timetolive",
    "lease/leases",
    "kv/lease/revoke",
    "kv/lease/timetolive",
    "kv/lease/leases",
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
    spec = UNARY.get(method)
    if spec is None:
        if method in NOT_YET:
            return error_response(errors.Unimplemented(f"raftkv does not implement /v3/{method} yet"))
        return text_response("Not Found\n", 404)
    if request.method != "POST":
        return text_response("Method Not Allowed\n", 405)
    limit = request.app[LIMIT_KEY] + GRPC_OVERHEAD
    body = await request.read()
    if len(body) > limit:
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


async def handle_version(request: web.Request) -> web.Response:
    return web.Response(body=request.app[VERSION_KEY], headers={"Content-Type": "application/json"})


async def handle_health(request: web.Request) -> web.Response:
    return web.Response(body=b'{"health":"true"}', content_type="text/plain")


def add_routes(app: web.Application, service: KVService, *, max_request_bytes: int, version: str) -> None:
    app[SERVICE_KEY] = service
    app[LIMIT_KEY] = max_request_bytes
    app[VERSION_KEY] = codec.dumps({"etcdserver": version, "etcdcluster": version})
    app.middlewares.append(cors_middleware)
    for prefix in ("/v3/", "/v3beta/"):
        app.router.add_route("*", prefix + "{method:.+}", handle_v3)
    app.router.add_get("/version", handle_version)
    app.router.add_get("/health", handle_health)
