"""Safety checks of the simulator: online Raft invariants and the end-of-run history oracle.

Owns: ``SafetyChecker`` (fed by the world after every Ready step: election safety, leader
append-only, log matching, leader completeness, state-machine safety, commit/applied monotonicity,
one vote per (node, term) across restarts, and "no entry applied before it is synced on a
quorum"), ``OpRecord`` (one client operation of the history), ``RefModel`` (an independent, tiny
MVCC and lease model for the commands the simulated clients and leaders send, with the event
sequence a watcher must see) and ``check_history`` (oracle B light).

Must not: touch a ``Replica`` or the network, or trust the state machine under test: the oracle
replays the committed log through ``RefModel``, never through ``StateMachine``.

Invariants stated precisely:
- commit and applied never decrease within one life of a node; across a restart, applied restarts
  at the durable snapshot's index and that index never decreases. Re-applied entries must equal
  the first application (state-machine safety covers that).
- every durable hard state's commit never decreases within a life.
Every violation raises ``Violation`` with a one-line reason; the world adds seed and trace.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from raftkv.raft.types import Entry, EntryType, HardState, Message, MessageType
from raftkv.state.commands import (
    Command,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRange,
    DeleteRangeResponse,
    Event,
    EventType,
    KeyValue,
    LeaseGrant,
    LeaseGrantResponse,
    LeaseRevoke,
    LeaseRevokeResponse,
    Put,
    PutResponse,
    Range,
    RangeResponse,
    RequestId,
    Txn,
    TxnResponse,
    decode_command,
)


class Violation(Exception):
    """A safety or liveness property broke."""


# ---------------------------------------------------------------------------------------------
# Online Raft invariants


@dataclass(slots=True)
class _Life:
    commit: int = 0
    applied: int = 0
    durable_commit: int = 0


class SafetyChecker:
    """Online Raft invariants across all nodes of one simulated cluster."""

    def __init__(self, quorum: int) -> None:
        self.quorum = quorum
        self.leader_of_term: dict[int, int] = {}
        # index -> (term, type, data) of every entry applied anywhere: the committed log.
        self.committed: dict[int, tuple[int, EntryType, bytes]] = {}
        self.max_committed = 0
        self.votes: dict[tuple[int, int], int] = {}
        self._leader_last: dict[tuple[int, int], int] = {}
        self._completeness_done: set[tuple[int, int]] = set()
        self._life: dict[int, _Life] = {}
        self._snapshot_floor: dict[int, int] = {}

    # -- elections and votes ---------------------------------------------------------------

    def on_leader(self, node: int, term: int) -> bool:
        """Election safety; returns True the first time ``node`` is seen leading ``term``."""
        other = self.leader_of_term.setdefault(term, node)
        if other != node:
            raise Violation(f"election safety: nodes {other} and {node} both lead term {term}")
        key = (node, term)
        if key in self._completeness_done:
            return False
        self._completeness_done.add(key)
        return True

    def on_vote(self, voter: int, term: int, candidate: int, how: str) -> None:
        """One vote per (node, term), from granted vote responses and durable hard states."""
        if candidate == 0:
            return
        prev = self.votes.setdefault((voter, term), candidate)
        if prev != candidate:
            raise Violation(
                f"one vote per term: node {voter} voted for {prev} and {candidate} in term {term} ({how})"
            )

    def on_ack_sent(self, m: Message, durable_hs: HardState | None, covers: Callable[[int], bool]) -> None:
        """Durable before acknowledged: a granted vote leaves only once that vote is synced, and an
        append acknowledgement only once the acknowledged index is synced (thesis §3.8)."""
        if m.reject:
            return
        if m.type == MessageType.VOTE_RESP:
            if durable_hs is None or durable_hs.term != m.term or durable_hs.vote != m.to:
                raise Violation(f"vote sent before it was durable: {m} (durable: {durable_hs})")
        elif m.type == MessageType.APP_RESP and not covers(m.index):
            raise Violation(f"append acknowledged before it was durable: {m}")

    # -- the log ---------------------------------------------------------------------------

    def on_persist_entries(
        self, node: int, leader_term: int | None, entries: Iterable[Entry], last_before: int
    ) -> None:
        """Leader append-only and log matching against the committed log, for one persisted batch.

        ``leader_term`` is the term ``node`` leads (None if it is not leader); ``last_before`` is
        its last durable index before this batch.
        """
        first: int | None = None
        last = last_before
        for e in entries:
            if first is None:
                first = e.index
            last = e.index
            c = self.committed.get(e.index)
            if c is not None and c[0] == e.term and c[2] != e.data:
                raise Violation(
                    f"log matching: node {node} entry {e.index} term {e.term} differs from the committed one"
                )
        if leader_term is None or first is None:
            return
        key = (node, leader_term)
        prev = self._leader_last.get(key)
        # The first batch seen from a new leader may still carry entries it took as a follower.
        if prev is not None and first <= prev:
            raise Violation(
                f"leader append-only: leader {node} of term {leader_term} rewrote index {first} (had {prev})"
            )
        self._leader_last[key] = last

    def check_leader_completeness(self, node: int, term: int, term_at: Callable[[int], int | None]) -> None:
        """A new leader's log holds every committed entry. ``term_at`` returns None when compacted."""
        for index in range(self.max_committed, 0, -1):
            t = term_at(index)
            if t is None:
                return  # at or below its snapshot: covered by the snapshot's state
            c = self.committed.get(index)
            if c is not None and c[0] != t:
                raise Violation(
                    f"leader completeness: leader {node} of term {term} has {t}/{index}, "
                    f"committed {c[0]}/{index}"
                )

    def on_apply(self, node: int, entry: Entry, synced_on: int) -> None:
        """State-machine safety and durability before apply, for one applied entry."""
        c = self.committed.get(entry.index)
        if c is None:
            self.committed[entry.index] = (entry.term, entry.type, entry.data)
            self.max_committed = max(self.max_committed, entry.index)
        elif c[0] != entry.term or c[2] != entry.data:
            raise Violation(
                f"state-machine safety: node {node} applied {entry.term}/{entry.index}, "
                f"another node applied {c[0]}/{entry.index}"
            )
        if synced_on < self.quorum:
            raise Violation(
                f"applied before durable on a quorum: node {node} applied {entry.term}/{entry.index}, "
                f"synced on {synced_on} node(s), quorum {self.quorum}"
            )

    # -- per-node monotonicity -------------------------------------------------------------

    def on_start(self, node: int, snapshot_index: int, durable_commit: int) -> None:
        """A node (re)started from durable state with this snapshot index and hard-state commit."""
        floor = self._snapshot_floor.get(node, 0)
        if snapshot_index < floor:
            raise Violation(
                f"durable snapshot went back: node {node} restarted at {snapshot_index}, had {floor}"
            )
        self._snapshot_floor[node] = snapshot_index
        self._life[node] = _Life(commit=0, applied=snapshot_index, durable_commit=durable_commit)

    def on_snapshot_saved(self, node: int, index: int) -> None:
        self._snapshot_floor[node] = max(self._snapshot_floor.get(node, 0), index)

    def on_status(
        self, node: int, commit: int, applied: int, leader_term: int = 0, commit_term: int | None = None
    ) -> None:
        """Monotonic commit and applied; for a leader (``leader_term`` != 0) whose commit index
        moved, the Figure 8 rule: the newly committed index holds an entry of its own term."""
        life = self._life.setdefault(node, _Life())
        if leader_term and commit > life.commit and commit_term is not None and commit_term != leader_term:
            raise Violation(
                f"leader {node} of term {leader_term} advanced commit to {commit}, an entry of term "
                f"{commit_term}, by counting replicas (Figure 8)"
            )
        if commit < life.commit:
            raise Violation(f"commit went back on node {node}: {life.commit} -> {commit}")
        if applied < life.applied:
            raise Violation(f"applied went back on node {node}: {life.applied} -> {applied}")
        if applied > commit:
            raise Violation(f"node {node} applied {applied} beyond its commit {commit}")
        life.commit = commit
        life.applied = applied

    def on_hard_state(self, node: int, hs: HardState) -> None:
        life = self._life.setdefault(node, _Life())
        if hs.commit < life.durable_commit:
            raise Violation(f"durable commit went back on node {node}: {life.durable_commit} -> {hs.commit}")
        life.durable_commit = hs.commit


# ---------------------------------------------------------------------------------------------
# History and oracle B


@dataclass(slots=True)
class OpRecord:
    """One client operation. ``outcome`` is pending, ok, fail (certainly not applied) or unknown."""

    op_id: int
    client: int
    kind: str  # put | get | sget | delete | cas | grant | lput | revoke | keepalive
    key: bytes
    node: int
    call_t: int
    value: bytes = b""
    expect_mod: int = 0
    lease: int = 0  # grant, revoke, keepalive: the lease; lput: the lease the key is put with
    request_id: RequestId | None = None
    return_t: int = -1
    outcome: str = "pending"
    response: object = None
    error: str = ""

    def __str__(self) -> str:
        lease = f" lease={self.lease:x}" if self.lease else ""
        return (
            f"op#{self.op_id} c{self.client} {self.kind} {self.key!r} {self.value!r}{lease} @n{self.node} "
            f"[{self.call_t},{self.return_t}] {self.outcome} {self.response or self.error}"
        )

    @property
    def is_write(self) -> bool:
        return self.kind in WRITE_KINDS


WRITE_KINDS = frozenset({"put", "delete", "cas", "grant", "lput", "revoke"})


@dataclass(slots=True)
class _Applied:
    """The model's result of one committed command."""

    revision: int
    changed: bool
    succeeded: bool = True
    deleted: int = 0
    error: bool = False  # refused at apply (e.g. an unknown lease): nothing changed
    stale: bool = False  # an expiry revoke of another leader's term, ignored


@dataclass(slots=True)
class RefModel:
    """An independent MVCC model of single-key put, delete, range and txn with compares, and of
    leases: a lease's keys are the live keys put with it; a revoke deletes them in key order at
    one revision; an expiry revoke (``leader_term`` set) committed in another term is ignored."""

    revision: int = 1  # etcd starts at revision 1 with an empty store
    live: dict[bytes, KeyValue] = field(default_factory=dict)
    # key -> parallel lists: revisions at which it changed, and its value from then (None = absent)
    changes: dict[bytes, tuple[list[int], list[KeyValue | None]]] = field(default_factory=dict)
    results: dict[RequestId, _Applied] = field(default_factory=dict)
    # (member, nonce) -> highest counter applied: the state machine's dedup rule, so a proposer
    # with several commands in flight (a leader's expiry revokes) is modelled exactly.
    applied_counters: dict[tuple[int, int], int] = field(default_factory=dict)
    leases: dict[int, int] = field(default_factory=dict)  # id -> granted TTL
    # Every event in commit order, as a watcher from revision 1 must see it (prev_kv omitted).
    events: list[Event] = field(default_factory=list)
    duplicates: int = 0

    def apply(self, rid: RequestId, cmd: Command, term: int = 0) -> None:
        """Apply one committed command of entry term ``term``."""
        client = (rid.member_id, rid.nonce)
        last = self.applied_counters.get(client)
        if last is not None and rid.counter <= last:
            self.duplicates += 1
            return
        self.applied_counters[client] = rid.counter
        rev = self.revision + 1
        if isinstance(cmd, LeaseGrant | LeaseRevoke):
            self.results[rid] = self._lease_op(cmd, term, rev)
            return
        if isinstance(cmd, Txn):
            succeeded = all(self._compare(c) for c in cmd.compare)
            ops = cmd.success if succeeded else cmd.failure
            if any(isinstance(op, Put) and op.lease and op.lease not in self.leases for op in ops):
                self.results[rid] = _Applied(self.revision, False, error=True)
                return
            changed = False
            for op in ops:
                changed |= self._write(op, rev)
            self.results[rid] = _Applied(rev if changed else self.revision, changed, succeeded)
        else:
            if isinstance(cmd, Put) and cmd.lease and cmd.lease not in self.leases:
                self.results[rid] = _Applied(self.revision, False, error=True)
                return
            before = len(self.live)
            changed = self._write(cmd, rev)
            self.results[rid] = _Applied(
                rev if changed else self.revision, changed, deleted=max(0, before - len(self.live))
            )
        if changed:
            self.revision = rev

    def _lease_op(self, cmd: LeaseGrant | LeaseRevoke, term: int, rev: int) -> _Applied:
        if isinstance(cmd, LeaseGrant):
            if cmd.id == 0 or cmd.id in self.leases:
                return _Applied(self.revision, False, error=True)
            self.leases[cmd.id] = cmd.ttl
            return _Applied(self.revision, False)
        if cmd.leader_term and cmd.leader_term != term:
            return _Applied(self.revision, False, stale=True)
        if cmd.id not in self.leases:
            return _Applied(self.revision, False, error=True)
        del self.leases[cmd.id]
        held = sorted(k for k, kv in self.live.items() if kv.lease == cmd.id)
        for key in held:
            self._write(DeleteRange(key), rev)
        if held:
            self.revision = rev
        return _Applied(self.revision, bool(held), deleted=len(held))

    def _write(self, op: object, rev: int) -> bool:
        if isinstance(op, Put):
            old = self.live.get(op.key)
            kv = KeyValue(
                key=op.key,
                create_revision=old.create_revision if old else rev,
                mod_revision=rev,
                version=old.version + 1 if old else 1,
                value=op.value,
                lease=op.lease,
            )
            self.live[op.key] = kv
            self._record(op.key, rev, kv)
            self.events.append(Event(EventType.PUT, kv, None))
            return True
        if isinstance(op, DeleteRange):
            if op.range_end:
                raise ValueError("RefModel supports single-key deletes only")
            if op.key not in self.live:
                return False
            del self.live[op.key]
            self._record(op.key, rev, None)
            self.events.append(Event(EventType.DELETE, KeyValue(op.key, 0, rev, 0, b"", 0), None))
            return True
        if isinstance(op, Range):
            return False
        raise ValueError(f"RefModel cannot apply {type(op).__name__}")

    def _record(self, key: bytes, rev: int, kv: KeyValue | None) -> None:
        revs, vals = self.changes.setdefault(key, ([], []))
        if revs and revs[-1] == rev:
            vals[-1] = kv
        else:
            revs.append(rev)
            vals.append(kv)

    def _compare(self, c: Compare) -> bool:
        kv = self.live.get(c.key)
        if kv is None and c.target == CompareTarget.VALUE:
            return False
        actual: int | bytes
        expected: int | bytes
        if c.target == CompareTarget.VALUE:
            assert kv is not None
            actual, expected = kv.value, c.value
        elif c.target == CompareTarget.VERSION:
            actual, expected = (kv.version if kv else 0), c.version
        elif c.target == CompareTarget.CREATE:
            actual, expected = (kv.create_revision if kv else 0), c.create_revision
        elif c.target == CompareTarget.MOD:
            actual, expected = (kv.mod_revision if kv else 0), c.mod_revision
        else:
            raise ValueError(f"RefModel cannot compare target {c.target}")
        if c.result == CompareResult.EQUAL:
            return actual == expected
        if c.result == CompareResult.NOT_EQUAL:
            return actual != expected
        if c.result == CompareResult.GREATER:
            return actual > expected  # type: ignore[operator]
        return actual < expected  # type: ignore[operator]

    def at(self, key: bytes, revision: int) -> KeyValue | None:
        """The key's value in the store at ``revision``."""
        revs, vals = self.changes.get(key, ([], []))
        i = bisect.bisect_right(revs, revision)
        return vals[i - 1] if i else None


def build_model(committed: dict[int, tuple[int, EntryType, bytes]], upto: int) -> RefModel:
    """Replay the committed log (indexes 1..upto) through ``RefModel``."""
    model = RefModel()
    for index in range(1, upto + 1):
        item = committed.get(index)
        if item is None:
            raise Violation(f"committed log has a hole at index {index} (up to {upto})")
        term, etype, data = item
        if etype is not EntryType.NORMAL or not data:
            continue
        rid, cmd = decode_command(data)
        model.apply(rid, cmd, term)
    return model


def _response_revision(op: OpRecord) -> int | None:
    resp = op.response
    if isinstance(
        resp,
        RangeResponse
        | PutResponse
        | DeleteRangeResponse
        | TxnResponse
        | LeaseGrantResponse
        | LeaseRevokeResponse,
    ):
        return resp.revision
    return None


def check_history(ops: list[OpRecord], model: RefModel) -> None:
    """Oracle B light: acknowledged writes committed, matching revisions, uniqueness, real-time
    order, and every ok read equal to the model at its revision. Raises ``Violation``."""
    seen_revs: dict[int, int] = {}
    for op in ops:
        if op.is_write:
            _check_write(op, model, seen_revs)
        elif op.outcome == "ok" and op.kind in ("get", "sget"):
            _check_read(op, model)
    _check_real_time(ops, model)


def _check_write(op: OpRecord, model: RefModel, seen_revs: dict[int, int]) -> None:
    assert op.request_id is not None
    applied = model.results.get(op.request_id)
    if op.outcome == "fail" and applied is not None and not applied.error:
        raise Violation(f"a write reported as not applied was committed: {op}")
    if op.outcome != "ok":
        return
    if applied is None:
        raise Violation(f"acknowledged write lost (not in the committed log): {op}")
    if applied.error:
        raise Violation(f"write acknowledged, but the committed order refuses it: {op}")
    rev = _response_revision(op)
    if rev != applied.revision:
        raise Violation(f"write revision {rev} differs from the committed order's {applied.revision}: {op}")
    if isinstance(op.response, TxnResponse) and op.response.succeeded != applied.succeeded:
        raise Violation(
            f"txn succeeded={op.response.succeeded}, committed order says {applied.succeeded}: {op}"
        )
    if isinstance(op.response, DeleteRangeResponse) and op.response.deleted != applied.deleted:
        raise Violation(f"delete count {op.response.deleted}, committed order says {applied.deleted}: {op}")
    if applied.changed:
        other = seen_revs.setdefault(applied.revision, op.op_id)
        if other != op.op_id:
            raise Violation(f"two writes share revision {applied.revision}: op#{other} and {op}")


def _check_read(op: OpRecord, model: RefModel) -> None:
    resp = op.response
    if isinstance(resp, TxnResponse):
        # A failed CAS answers with its failure branch's single range.
        if op.kind != "cas" or not resp.responses:
            return
        inner = resp.responses[0]
        if not isinstance(inner, RangeResponse):
            return
        resp = inner
    if not isinstance(resp, RangeResponse):
        raise Violation(f"read answered with {type(resp).__name__}: {op}")
    if resp.revision > model.revision:
        raise Violation(f"read at future revision {resp.revision} (committed {model.revision}): {op}")
    want = model.at(op.key, resp.revision)
    got = resp.kvs[0] if resp.kvs else None
    if want != got:
        raise Violation(f"read at revision {resp.revision} returned {got}, committed state has {want}: {op}")


def _check_real_time(ops: list[OpRecord], model: RefModel) -> None:
    """If A returned before B was invoked, rev(B) >= rev(A), strictly when B changed something.

    Serializable reads may be stale and are exempt; only ok operations carry a revision.
    """
    timed: list[tuple[int, int, OpRecord]] = []
    for op in ops:
        if op.outcome != "ok" or op.kind == "sget":
            continue
        rev = _response_revision(op)
        if rev is not None:
            timed.append((op.call_t, rev, op))
    by_return = sorted((op.return_t, rev, op.op_id) for _call, rev, op in timed)
    timed.sort(key=lambda t: (t[0], t[2].op_id))
    j = 0
    best = 0
    best_op = -1
    for call_t, rev, op in timed:
        while j < len(by_return) and by_return[j][0] < call_t:
            if by_return[j][1] > best:
                best, best_op = by_return[j][1], by_return[j][2]
            j += 1
        changed = False
        if op.is_write and op.request_id is not None:
            applied = model.results.get(op.request_id)
            changed = applied is not None and applied.changed
        if rev < best or (changed and rev <= best):
            raise Violation(
                f"real-time order: {op} has revision {rev} but op#{best_op} "
                f"returned revision {best} before it"
            )
