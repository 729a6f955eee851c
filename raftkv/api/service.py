"""``KVService``: what the HTTP handlers need from a node, as a Protocol over the API models.

Owns: the boundary between ``api/`` and ``server/``: handlers depend on this Protocol only, and
``server/service.py`` satisfies it. Methods raise ``raftkv.errors.RaftkvError`` for every
client-visible failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from raftkv.api import models as api


class KVService(Protocol):
    async def range(self, request: api.RangeRequest) -> api.RangeResponse: ...

    async def put(self, request: api.PutRequest) -> api.PutResponse: ...

    async def delete_range(self, request: api.DeleteRangeRequest) -> api.DeleteRangeResponse: ...

    async def txn(self, request: api.TxnRequest) -> api.TxnResponse: ...

    async def compact(self, request: api.CompactionRequest) -> api.CompactionResponse: ...

    async def member_list(self, request: api.MemberListRequest) -> api.MemberListResponse: ...

    async def status(self, request: api.StatusRequest) -> api.StatusResponse: ...

    async def lease_grant(self, request: api.LeaseGrantRequest) -> api.LeaseGrantResponse: ...

    async def lease_revoke(self, request: api.LeaseRevokeRequest) -> api.LeaseRevokeResponse: ...

    async def lease_keepalive(self, request: api.LeaseKeepAliveRequest) -> api.LeaseKeepAliveResponse: ...

    async def lease_time_to_live(
        self, request: api.LeaseTimeToLiveRequest
    ) -> api.LeaseTimeToLiveResponse: ...

    async def lease_leases(self, request: api.LeaseLeasesRequest) -> api.LeaseLeasesResponse: ...

    def watch_session(self) -> WatchSession: ...


class WatchSession(Protocol):
    """One watch stream: requests in, queued responses out; ``wakeup`` is set when some wait."""

    wakeup: asyncio.Event

    def handle(self, request: api.WatchRequest) -> None: ...

    def fragmenting(self, watch_id: int) -> bool: ...

    def take(self) -> Sequence[api.WatchResponse]: ...

    def close(self) -> None: ...
