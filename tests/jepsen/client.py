"""The workload's HTTP client: one aiohttp session, outcomes classified by the error table.

Owns: sending one etcd v3 JSON request to one node and classifying the result as ``ok`` (with the
body), ``fail`` (certainly not applied: a refused connection, a 4xx, or a 503 whose message the
error table marks not-applied) or ``unknown`` (anything else after the request may have left).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from raftkv.errors import ErrorCode, Outcome

HOST = "127.0.0.1"
_NOT_APPLIED = {c.spec.message for c in ErrorCode if c.spec.outcome is Outcome.NOT_APPLIED}


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def unb64(s: str | None) -> str:
    return base64.b64decode(s or "").decode()


@dataclass
class Result:
    outcome: str  # "ok" | "fail" | "unknown"
    body: Any = None
    status: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class Api:
    def __init__(self, session: aiohttp.ClientSession, timeout_s: float = 5.0) -> None:
        self.session = session
        self.timeout_s = timeout_s

    async def call(
        self, port: int, path: str, body: dict[str, Any], timeout_s: float | None = None
    ) -> Result:
        url = f"http://{HOST}:{port}{path}"
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        try:
            async with self.session.post(url, data=json.dumps(body), timeout=timeout) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            # The connection was never established, so the request never left.
            return Result("fail", error=f"connect: {exc}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Result("unknown", error=f"{type(exc).__name__}: {exc}")
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        if status == 200:
            return Result("ok", parsed, status)
        message = parsed.get("message", "") if isinstance(parsed, dict) else ""
        if 400 <= status < 500 or message in _NOT_APPLIED:
            return Result("fail", parsed, status, message)
        return Result("unknown", parsed, status, message)


def header_rev(body: dict[str, Any]) -> int:
    return int(body.get("header", {}).get("revision", 0))
