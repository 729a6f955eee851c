"""Simulated lease users and the lease properties checked at the end of a seed.

Owns: ``LeaseBook`` — which leases are kept alive and where their owner last found the leader,
the expiry revokes leaders decided (decision time, node, term), the first time each revoke was
applied anywhere, and ``check``.

Must not: talk to a ``Replica`` (the world runs keepalives and expiry rounds) or read anything but
the operation history, the reference model and what the world reports.

The properties, in virtual milliseconds and with ``rate_max`` the fastest node clock (a node whose
clock runs fast ends a TTL sooner in real time):
- no kept-alive lease expires early: no expiry revoke that took effect in the committed order
  was decided at a ``t`` with ``c <= t < c + TTL / rate_max``, where ``c`` is the call time of an
  ok grant, or of a keepalive that answered alive, of that lease. Such a refresh happened after
  ``c`` on a leader whose quorum confirmed it with acknowledgements sent after ``c``: that leader
  itself no longer refreshes a lease it decided to expire, a later leader was elected after those
  acknowledgements and gives every lease a full TTL on promotion, and an earlier leader's revoke
  can only take effect if its entry carries that leader's term, so it precedes the refresher's
  first entry of its own term and is applied before the refresh, which then answers "not alive";
- keepalives are linearizable: none answers "alive" (TTL > 0) if a revoke of its lease had been
  applied anywhere before the keepalive was called.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftkv.sim.checks import OpRecord, RefModel, Violation
from raftkv.state.commands import RequestId

TTL_CHOICES = (2,)  # seconds, in each node's own clock


@dataclass(frozen=True, slots=True)
class ExpiryDecision:
    lease: int
    t: int
    node: int
    term: int


@dataclass(slots=True)
class LeaseBook:
    kept: set[int] = field(default_factory=set)
    hint: dict[int, int] = field(default_factory=dict)  # lease -> node believed to lead
    decisions: dict[RequestId, ExpiryDecision] = field(default_factory=dict)
    client_revokes: dict[RequestId, int] = field(default_factory=dict)  # request id -> lease
    applied_at: dict[RequestId, int] = field(default_factory=dict)
    active: bool = True

    def effective_expiries(self, model: RefModel) -> int:
        """How many expiry revokes took effect (a rare-path counter)."""
        return sum(1 for rid in self.decisions if _effective(model, rid))

    def track_revoke(self, rid: RequestId, lease: int) -> None:
        self.client_revokes[rid] = lease
        self.kept.discard(lease)

    def decided(self, rid: RequestId, decision: ExpiryDecision) -> None:
        self.decisions[rid] = decision

    def on_applied(self, rid: RequestId, now: int) -> None:
        if (rid in self.decisions or rid in self.client_revokes) and rid not in self.applied_at:
            self.applied_at[rid] = now

    def check(self, ops: list[OpRecord], model: RefModel, ttls: dict[int, int], rate_max: float) -> None:
        """Both lease properties of the module docstring (``ttls``: lease -> granted TTL in
        seconds); raises ``Violation``."""
        refreshes: dict[int, list[OpRecord]] = {}
        for op in ops:
            if op.outcome == "ok" and (op.kind == "grant" or (op.kind == "keepalive" and op.response)):
                refreshes.setdefault(op.lease, []).append(op)
        revoked_at: dict[int, int] = {}
        effective = [(rid, d.lease) for rid, d in self.decisions.items()]
        effective += list(self.client_revokes.items())
        for rid, lease in effective:
            if not _effective(model, rid):
                continue
            t = self.applied_at.get(rid)
            if t is not None and t < revoked_at.get(lease, t + 1):
                revoked_at[lease] = t
            decision = self.decisions.get(rid)
            if decision is None:
                continue
            ttl_ms = ttls.get(lease, 0) * 1000 / rate_max
            for op in refreshes.get(lease, ()):
                if op.call_t <= decision.t < op.call_t + ttl_ms:
                    raise Violation(
                        f"kept-alive lease {lease:x} expired early: n{decision.node} (term "
                        f"{decision.term}) decided its expiry at {decision.t}, but {op} refreshed "
                        f"it for {ttls[lease]}s"
                    )
        for op in ops:
            if op.kind == "keepalive" and op.outcome == "ok" and op.response:
                t = revoked_at.get(op.lease)
                if t is not None and t < op.call_t:
                    raise Violation(f"keepalive answered alive for lease {op.lease:x} revoked at {t}: {op}")


def _effective(model: RefModel, rid: RequestId) -> bool:
    res = model.results.get(rid)
    return res is not None and not res.error and not res.stale
