"""``NodeService``: the etcd KV API of one node, on top of its ``NodeDriver``.

Owns: request validation (API.md §3 rules and the limits of §9) before anything is proposed;
translation between the API models (``raftkv.api.models``) and the replicated commands
(``raftkv.state.commands``); request ids; the write path (propose, await the apply result) and
the read path (ReadIndex barrier, then the local MVCC; read-only txns take the read path);
response headers.

Must not: touch the replica or storage except through the driver and the state machine's
read-only ``read``; let an exception other than ``RaftkvError`` escape for bad input.

Invariants: a request that fails validation changes nothing and consumes no revision; a write's
response header carries the revision the write created; every response to one request reads one
revision of the store.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import raftkv
from raftkv import errors
from raftkv.api import models as api
from raftkv.server.config import ServerConfig
from raftkv.server.driver import NodeDriver
from raftkv.state import commands as cmd
from raftkv.state.machine import StateMachine
from raftkv.state.watch import WatchMessage, WatchStream

VERSION = "3.5.0"  # the etcd API level served
RAFTKV_VERSION = raftkv.__version__
MAX_LEASE_TTL = 9_000_000_000

Op = cmd.Range | cmd.Put | cmd.DeleteRange | cmd.Txn


# --- API model → command --------------------------------------------------------------------


def _require_key(key: bytes) -> None:
    if not key:
        raise errors.InvalidArgument("etcdserver: key is not provided")


def to_range(r: api.RangeRequest) -> cmd.Range:
    _require_key(r.key)
    return cmd.Range(
        key=r.key,
        range_end=r.range_end,
        limit=r.limit,
        revision=r.revision,
        sort_order=r.sort_order,
        sort_target=r.sort_target,
        serializable=r.serializable,
        keys_only=r.keys_only,
        count_only=r.count_only,
        min_mod_revision=r.min_mod_revision,
        max_mod_revision=r.max_mod_revision,
        min_create_revision=r.min_create_revision,
        max_create_revision=r.max_create_revision,
    )


def to_put(r: api.PutRequest) -> cmd.Put:
    _require_key(r.key)
    if r.ignore_value and r.value:
        raise errors.InvalidArgument("etcdserver: value is provided")
    if r.ignore_lease and r.lease:
        raise errors.InvalidArgument("etcdserver: lease is provided")
    return cmd.Put(
        key=r.key,
        value=r.value,
        lease=r.lease,
        prev_kv=r.prev_kv,
        ignore_value=r.ignore_value,
        ignore_lease=r.ignore_lease,
    )


def to_delete(r: api.DeleteRangeRequest) -> cmd.DeleteRange:
    _require_key(r.key)
    return cmd.DeleteRange(key=r.key, range_end=r.range_end, prev_kv=r.prev_kv)


def to_compare(c: api.Compare) -> cmd.Compare:
    _require_key(c.key)
    return cmd.Compare(
        result=c.result,
        target=c.target,
        key=c.key,
        range_end=c.range_end,
        version=c.version or 0,
        create_revision=c.create_revision or 0,
        mod_revision=c.mod_revision or 0,
        value=c.value or b"",
        lease=c.lease or 0,
    )


def to_op(op: api.RequestOp, budget: int) -> Op:
    if op.request_range is not None:
        return to_range(op.request_range)
    if op.request_put is not None:
        return to_put(op.request_put)
    if op.request_delete_range is not None:
        return to_delete(op.request_delete_range)
    if op.request_txn is not None:
        return to_txn(op.request_txn, budget)
    raise errors.InvalidArgument("etcdserver: key not found")


def to_txn(t: api.TxnRequest, max_ops: int) -> cmd.Txn:
    longest = max(len(t.compare), len(t.success), len(t.failure))
    if longest > max_ops:
        raise errors.InvalidArgument("etcdserver: too many operations in txn request")
    # A nested txn gets the budget its parent leaves (etcd's checkTxnReqsPermission rule).
    budget = max_ops - longest
    txn = cmd.Txn(
        compare=tuple(to_compare(c) for c in t.compare),
        success=tuple(to_op(op, budget) for op in t.success),
        failure=tuple(to_op(op, budget) for op in t.failure),
    )
    for branch in (txn.success, txn.failure):
        _check_duplicate_writes(branch)
    return txn


def _writes(ops: tuple[Op, ...]) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """The single keys put and the ranges deleted by a branch (nested txns included)."""
    puts: set[bytes] = set()
    deletes: list[tuple[bytes, bytes]] = []
    for op in ops:
        if isinstance(op, cmd.Put):
            if op.key in puts:
                raise errors.InvalidArgument("etcdserver: duplicate key given in txn request")
            puts.add(op.key)
        elif isinstance(op, cmd.DeleteRange):
            deletes.append((op.key, op.range_end))
        elif isinstance(op, cmd.Txn):
            for branch in (op.success, op.failure):
                nested_puts, nested_deletes = _writes(branch)
                if nested_puts & puts:
                    raise errors.InvalidArgument("etcdserver: duplicate key given in txn request")
                puts |= nested_puts
                deletes.extend(nested_deletes)
    return puts, deletes


def _in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end


def _check_duplicate_writes(ops: tuple[Op, ...]) -> None:
    puts, deletes = _writes(ops)
    for key in puts:
        if any(_in_range(key, start, end) for start, end in deletes):
            raise errors.InvalidArgument("etcdserver: duplicate key given in txn request")


def is_read_only(txn: cmd.Txn) -> bool:
    return all(
        isinstance(op, cmd.Range) or (isinstance(op, cmd.Txn) and is_read_only(op))
        for op in (*txn.success, *txn.failure)
    )


# --- command response → API model ------------------------------------------------------------


def to_api_kv(kv: cmd.KeyValue) -> api.KeyValue:
    return api.KeyValue(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    )


def _opt_kv(kv: cmd.KeyValue | None) -> api.KeyValue | None:
    return None if kv is None else to_api_kv(kv)


class NodeService:
    def __init__(self, *, config: ServerConfig, driver: NodeDriver, machine: StateMachine) -> None:
        self.config = config
        self.driver = driver
        self.machine = machine
        self.member_id = config.member_id
        self.cluster_id = config.cluster_id
        self._lease_ids = random.Random(random.SystemRandom().getrandbits(64))

    # --- headers -------------------------------------------------------------------------------

    def raft_term(self) -> int:
        return self.driver.replica.raw.raft.term

    def header(self, revision: int | None = None) -> api.ResponseHeader:
        rev = self.machine.kv.revision if revision is None else revision
        return api.ResponseHeader(
            cluster_id=self.cluster_id, member_id=self.member_id, revision=rev, raft_term=self.raft_term()
        )

    def _convert(self, response: Any, nested: bool = False) -> Any:
        header = api.ResponseHeader(revision=response.revision) if nested else self.header(response.revision)
        if isinstance(response, cmd.RangeResponse):
            return api.RangeResponse(
                header=header,
                kvs=[to_api_kv(kv) for kv in response.kvs],
                more=response.more,
                count=response.count,
            )
        if isinstance(response, cmd.PutResponse):
            return api.PutResponse(header=header, prev_kv=_opt_kv(response.prev_kv))
        if isinstance(response, cmd.DeleteRangeResponse):
            return api.DeleteRangeResponse(
                header=header,
                deleted=response.deleted,
                prev_kvs=[to_api_kv(kv) for kv in response.prev_kvs],
            )
        if isinstance(response, cmd.TxnResponse):
            return api.TxnResponse(
                header=api.ResponseHeader() if nested else header,
                succeeded=response.succeeded,
                responses=[api.ResponseOp(self._convert(r, nested=True)) for r in response.responses],
            )
        if isinstance(response, cmd.CompactResponse):
            return api.CompactionResponse(header=header)
        raise TypeError(f"unexpected response {type(response).__name__}")

    # --- the write and read paths --------------------------------------------------------------

    async def _propose(self, command: cmd.Command) -> Any:
        result = await self.driver.propose_command(command)
        if result.error is not None:
            raise result.error
        return result.response

    async def _read(self, request: cmd.Range | cmd.Txn, serializable: bool) -> Any:
        if not serializable:
            await self.driver.read_barrier()
        return self.machine.read(request)

    # --- KV ------------------------------------------------------------------------------------

    async def range(self, request: api.RangeRequest) -> api.RangeResponse:
        command = to_range(request)
        response = await self._read(command, request.serializable)
        converted: api.RangeResponse = self._convert(response)
        return converted

    async def put(self, request: api.PutRequest) -> api.PutResponse:
        response = await self._propose(to_put(request))
        converted: api.PutResponse = self._convert(response)
        return converted

    async def delete_range(self, request: api.DeleteRangeRequest) -> api.DeleteRangeResponse:
        response = await self._propose(to_delete(request))
        converted: api.DeleteRangeResponse = self._convert(response)
        return converted

    async def txn(self, request: api.TxnRequest) -> api.TxnResponse:
        command = to_txn(request, self.config.max_txn_ops)
        if is_read_only(command):
            response = await self._read(command, serializable=False)
        else:
            response = await self._propose(command)
        converted: api.TxnResponse = self._convert(response)
        return converted

    async def compact(self, request: api.CompactionRequest) -> api.CompactionResponse:
        response = await self._propose(cmd.Compact(revision=request.revision, physical=request.physical))
        converted: api.CompactionResponse = self._convert(response)
        return converted

    # --- leases ------------------------------------------------------------------------------

    async def lease_grant(self, request: api.LeaseGrantRequest) -> api.LeaseGrantResponse:
        if request.TTL > MAX_LEASE_TTL:
            raise errors.LeaseTTLTooLarge()
        ttl = max(request.TTL, self.config.min_lease_ttl)
        # For ID 0 the proposing node picks the id before proposing, so every replica agrees.
        lease_id = request.ID or self._lease_ids.randrange(1, 1 << 63)
        response = await self._propose(cmd.LeaseGrant(id=lease_id, ttl=ttl))
        return api.LeaseGrantResponse(header=self.header(response.revision), ID=lease_id, TTL=ttl)

    async def lease_revoke(self, request: api.LeaseRevokeRequest) -> api.LeaseRevokeResponse:
        response = await self._propose(cmd.LeaseRevoke(id=request.ID))
        return api.LeaseRevokeResponse(header=self.header(response.revision))

    async def lease_keepalive(self, request: api.LeaseKeepAliveRequest) -> api.LeaseKeepAliveResponse:
        ttl = await self.driver.keepalive(request.ID) if request.ID else 0
        return api.LeaseKeepAliveResponse(header=self.header(), ID=request.ID, TTL=ttl)

    async def lease_time_to_live(
        self, request: api.LeaseTimeToLiveRequest
    ) -> api.LeaseTimeToLiveResponse:
        remaining, granted, keys = await self.driver.time_to_live(request.ID)
        if remaining < 0:
            return api.LeaseTimeToLiveResponse(header=self.header(), ID=request.ID, TTL=-1)
        if not request.keys:
            keys = []
        return api.LeaseTimeToLiveResponse(
            header=self.header(), ID=request.ID, TTL=int(remaining), grantedTTL=granted, keys=keys
        )

    async def lease_leases(self, request: api.LeaseLeasesRequest) -> api.LeaseLeasesResponse:
        return api.LeaseLeasesResponse(header=self.header(), leases=self.machine.leases.ids())

    # --- watches -------------------------------------------------------------------------------

    def watch_session(self) -> WatchSession:
        return WatchSession(self)

    # --- cluster and maintenance ---------------------------------------------------------------

    def members(self) -> list[api.Member]:
        ids = self.config.member_ids()
        own_clients = self.config.advertise_client_urls
        return sorted(
            (
                api.Member(
                    ID=ids[name],
                    name=name,
                    peerURLs=urls,
                    clientURLs=own_clients if name == self.config.name else (),
                )
                for name, urls in self.config.members.items()
            ),
            key=lambda m: m.ID,
        )

    async def member_list(self, request: api.MemberListRequest) -> api.MemberListResponse:
        header = api.ResponseHeader(
            cluster_id=self.cluster_id, member_id=self.member_id, raft_term=self.raft_term()
        )
        return api.MemberListResponse(header=header, members=self.members())

    async def status(self, request: api.StatusRequest) -> api.StatusResponse:
        status = self.driver.replica.status()
        return api.StatusResponse(
            header=self.header(),
            version=VERSION,
            leader=status.lead,
            raftIndex=status.commit,
            raftTerm=status.term,
            raftAppliedIndex=status.applied,
        )


def to_api_event(event: cmd.Event) -> api.Event:
    return api.Event(
        type=int(event.type), kv=to_api_kv(event.kv), prev_kv=_opt_kv(event.prev_kv)
    )


class WatchSession:
    """One watch stream (an HTTP response or a websocket) on this node's ``WatchHub``.

    Every call runs on the event loop thread, like the driver, so it never races an apply."""

    def __init__(self, service: NodeService) -> None:
        self._service = service
        self._hub = service.driver.replica.watches
        self._stream: WatchStream = self._hub.open_stream()
        self.wakeup: asyncio.Event = service.driver.watch_wakeup(self._stream.stream_id)

    def handle(self, request: api.WatchRequest) -> None:
        """Apply one WatchRequest; ``{}`` is ignored."""
        if request.create_request is not None:
            c = request.create_request
            self._hub.create(
                self._stream,
                key=c.key,
                range_end=c.range_end,
                start_revision=c.start_revision,
                watch_id=c.watch_id,
                prev_kv=c.prev_kv,
                filters=tuple(c.filters),
                progress_notify=c.progress_notify,
                fragment=c.fragment,
            )
        elif request.cancel_request is not None:
            self._hub.cancel(self._stream, request.cancel_request.watch_id)
        elif request.progress_request is not None:
            self._hub.request_progress(self._stream)

    def fragmenting(self, watch_id: int) -> bool:
        watcher = self._stream.watchers.get(watch_id)
        return watcher is not None and watcher.fragment

    def take(self) -> list[api.WatchResponse]:
        """The messages queued for this stream, as API responses; drains its buffer."""
        self.wakeup.clear()
        messages = self._stream.pop_all()
        if messages:
            # The buffer has room again: watchers that fell behind may catch up now.
            self._hub.sync(self._stream)
        return [self._render(m) for m in messages]

    def _render(self, m: WatchMessage) -> api.WatchResponse:
        service = self._service
        if m.revision:
            header = service.header(m.revision)
        else:
            header = api.ResponseHeader(
                cluster_id=service.cluster_id, member_id=service.member_id, raft_term=service.raft_term()
            )
        return api.WatchResponse(
            header=header,
            watch_id=m.watch_id,
            created=m.created,
            canceled=m.canceled,
            compact_revision=m.compact_revision,
            cancel_reason=m.cancel_reason,
            events=[to_api_event(e) for e in m.events],
        )

    def close(self) -> None:
        self._hub.close_stream(self._stream)
        self._service.driver.forget_watch_stream(self._stream.stream_id)
