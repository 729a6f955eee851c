"""The simulated clients: what each operation is, its request id, and the recorded history.

Owns: ``ClientPool`` — per-client sequence numbers and request ids, the choice of the next
operation (put, linearizable get, serializable get, delete, CAS txn over a few keys, each with a
unique value ``f"{client}-{seq}"``; lease grant with a client-chosen id, put with a lease, revoke;
and the keepalives the world schedules for kept leases), each client's granted leases, pending
operations by request id and by read token, and the history of ``OpRecord``s.

Must not: talk to a ``Replica`` (the world submits operations and reports completions), or retry
an operation whose outcome is unknown.

Invariants: a request id is used by exactly one operation; within one (member_id, nonce) the
counters of committed operations increase, because a client takes a fresh nonce whenever an
operation ends unknown (as a restarted server does), so the state machine's counter-based dedup
never mistakes a late entry for a duplicate. Every operation ends ok, fail (certainly not applied)
or unknown exactly once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from raftkv.sim.checks import OpRecord
from raftkv.sim.leases import TTL_CHOICES
from raftkv.state.commands import (
    Command,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    KeyValue,
    LeaseGrant,
    LeaseRevoke,
    Put,
    Range,
    RangeResponse,
    RequestId,
    Txn,
    TxnResponse,
)

KEYS = tuple(f"k{i}".encode() for i in range(4))
_KINDS = (
    "put", "put", "put", "get", "get", "sget", "delete", "cas", "cas", "grant", "lput", "lput", "revoke",
)
MAX_LEASES_PER_CLIENT = 3


@dataclass(slots=True)
class ClientStats:
    ok: int = 0
    fail: int = 0
    unknown: int = 0


class ClientPool:
    def __init__(self, rng: random.Random, n_clients: int) -> None:
        self.rng = rng
        self.n_clients = n_clients
        self.history: list[OpRecord] = []
        self.by_request: dict[RequestId, OpRecord] = {}
        self.by_token: dict[int, OpRecord] = {}
        self.stats = ClientStats()
        self._seq = [0] * n_clients
        self._counter = [0] * n_clients
        self._nonce = [rng.getrandbits(32) for _ in range(n_clients)]
        # client -> key -> last mod_revision it observed, the CAS precondition it will use.
        self._seen_mod: list[dict[bytes, int]] = [{} for _ in range(n_clients)]
        # client -> leases it was told were granted and has not revoked; lease id -> TTL.
        self.leases: list[list[int]] = [[] for _ in range(n_clients)]
        self.ttls: dict[int, int] = {}
        self._grants = [0] * n_clients

    def new_op(self, client: int, node: int, now: int) -> tuple[OpRecord, Command | None]:
        """The client's next operation and, for a write, the command to propose."""
        self._seq[client] += 1
        kind = self.rng.choice(_KINDS)
        key = self.rng.choice(KEYS)
        owned = self.leases[client]
        if kind == "grant" and len(owned) >= MAX_LEASES_PER_CLIENT:
            kind = "lput"
        if kind in ("lput", "revoke") and not owned:
            kind = "grant"
        op = self._record(client, kind, key, node, now)
        if kind in ("get", "sget"):
            if kind == "get":
                self.by_token[op.op_id] = op
            return op, None
        self._counter[client] += 1
        op.request_id = RequestId(1000 + client, self._nonce[client], self._counter[client])
        self.by_request[op.request_id] = op
        cmd: Command
        if kind == "delete":
            cmd = DeleteRange(key)
        elif kind == "grant":
            self._grants[client] += 1
            op.lease = (client + 1) << 20 | self._grants[client]
            self.ttls[op.lease] = self.rng.choice(TTL_CHOICES)
            op.key = b""
            cmd = LeaseGrant(op.lease, self.ttls[op.lease])
        elif kind == "revoke":
            op.lease = owned.pop(self.rng.randrange(len(owned)))
            op.key = b""
            cmd = LeaseRevoke(op.lease)
        elif kind == "lput":
            op.lease = self.rng.choice(owned)
            op.value = f"{client}-{self._seq[client]}".encode()
            cmd = Put(key, op.value, lease=op.lease)
        else:
            op.value = f"{client}-{self._seq[client]}".encode()
            if kind == "put":
                cmd = Put(key, op.value)
            else:
                op.expect_mod = self._seen_mod[client].get(key, 0)
                cmd = Txn(
                    compare=(
                        Compare(CompareResult.EQUAL, CompareTarget.MOD, key, mod_revision=op.expect_mod),
                    ),
                    success=(Put(key, op.value),),
                    failure=(Range(key),),
                )
        return op, cmd

    def new_keepalive(self, client: int, lease: int, node: int, now: int) -> OpRecord:
        """A keepalive of ``lease`` by its owner (not a Raft write: no request id)."""
        op = self._record(client, "keepalive", b"", node, now)
        op.lease = lease
        self.by_token[op.op_id] = op
        return op

    def _record(self, client: int, kind: str, key: bytes, node: int, now: int) -> OpRecord:
        op = OpRecord(op_id=len(self.history), client=client, kind=kind, key=key, node=node, call_t=now)
        self.history.append(op)
        return op

    def read_request(self, op: OpRecord) -> Range:
        return Range(op.key, serializable=op.kind == "sget")

    def finish(self, op: OpRecord, now: int, outcome: str, response: object = None, error: str = "") -> None:
        """End ``op`` (once); later completions of the same op are ignored."""
        if op.outcome != "pending":
            return
        op.outcome = outcome
        op.return_t = now
        op.response = response
        op.error = error
        if op.request_id is not None:
            self.by_request.pop(op.request_id, None)
        self.by_token.pop(op.op_id, None)
        if outcome == "ok":
            self.stats.ok += 1
            self._observe(op)
            if op.kind == "grant":
                self.leases[op.client].append(op.lease)
        elif outcome == "fail":
            self.stats.fail += 1
        else:
            self.stats.unknown += 1
            self._nonce[op.client] = self.rng.getrandbits(32)
            self._counter[op.client] = 0

    def _observe(self, op: OpRecord) -> None:
        resp = op.response
        kv: KeyValue | None = None
        if isinstance(resp, TxnResponse):
            if resp.succeeded:
                self._seen_mod[op.client][op.key] = resp.revision
                return
            inner = resp.responses[0] if resp.responses else None
            if isinstance(inner, RangeResponse):
                kv = inner.kvs[0] if inner.kvs else None
            self._seen_mod[op.client][op.key] = kv.mod_revision if kv else 0
        elif isinstance(resp, RangeResponse):
            kv = resp.kvs[0] if resp.kvs else None
            self._seen_mod[op.client][op.key] = kv.mod_revision if kv else 0
        elif op.kind in ("put", "lput"):
            self._seen_mod[op.client][op.key] = getattr(resp, "revision", 0)
        elif op.kind == "delete":
            self._seen_mod[op.client][op.key] = 0

    def pending(self) -> list[OpRecord]:
        return [op for op in self.history if op.outcome == "pending"]
