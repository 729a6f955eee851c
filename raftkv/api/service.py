"""``KVService``: what the HTTP handlers need from a node, as a Protocol over the API models.

Owns: the boundary between ``api/`` and ``server/``: handlers depend on this Protocol only, and
``server/service.py`` satisfies it. Methods raise ``raftkv.errors.RaftkvError`` for every
client-visible failure.
"""

from __future__ import annotations

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
