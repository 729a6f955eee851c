"""``ExpiryTracker`` with a fake ``now`` (ARCHITECTURE.md §4.5, TESTING.md §6.2).

Covers: nothing is tracked before ``promote``; promotion gives every lease a full TTL from the
promotion time; ``granted`` while active sets a full TTL; ``refresh`` resets to a full TTL only for
a live lease (never one at or past its deadline, never an unknown one); ``remaining`` counts down
and floors at 0; ``expired`` lists due leases earliest first, bounded by ``limit``; ``forget`` and
``demote`` drop deadlines; a re-promotion starts every lease afresh. Plus a Hypothesis comparison
with a reference model of deadlines.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.state.lease import ExpiryTracker


def test_inactive_tracker_tracks_nothing() -> None:
    t = ExpiryTracker()
    t.granted(1, 5, now=0.0)
    assert not t.active
    assert t.remaining(1, 0.0) is None
    assert t.refresh(1, 0.0) is None
    assert t.expired(1e9, 10) == []


def test_promote_gives_every_lease_a_full_ttl_from_now() -> None:
    t = ExpiryTracker()
    t.promote(100.0, {1: 5, 2: 10})
    assert t.active
    assert t.remaining(1, 100.0) == pytest.approx(5.0)
    assert t.remaining(2, 103.0) == pytest.approx(7.0)
    assert t.expired(104.9, 10) == []
    assert t.expired(105.0, 10) == [1]
    assert t.expired(200.0, 10) == [1, 2]
    assert t.remaining(1, 300.0) == 0.0, "remaining floors at 0"


def test_granted_while_active_sets_a_full_ttl() -> None:
    t = ExpiryTracker()
    t.promote(0.0, {})
    t.granted(7, 3, now=10.0)
    assert t.remaining(7, 11.0) == pytest.approx(2.0)
    assert t.expired(12.99, 5) == []
    assert t.expired(13.0, 5) == [7]


def test_refresh_resets_a_live_lease_only() -> None:
    t = ExpiryTracker()
    t.promote(0.0, {1: 4})
    assert t.refresh(1, 3.0) == 4
    assert t.remaining(1, 3.0) == pytest.approx(4.0)
    assert t.expired(6.9, 5) == []
    # At or past its deadline a lease is not revived: its revoke may already be in flight.
    assert t.refresh(1, 7.0) is None
    assert t.expired(7.0, 5) == [1]
    assert t.refresh(1, 8.0) is None
    assert t.refresh(99, 1.0) is None, "unknown lease"


def test_expired_is_earliest_first_and_bounded() -> None:
    t = ExpiryTracker()
    t.promote(0.0, {10: 3, 11: 1, 12: 2, 13: 50})
    assert t.expired(10.0, 10) == [11, 12, 10]
    assert t.expired(10.0, 2) == [11, 12]
    assert t.expired(10.0, 0) == []


def test_forget_and_demote() -> None:
    t = ExpiryTracker()
    t.promote(0.0, {1: 1, 2: 1})
    t.forget(1)
    t.forget(1)  # idempotent
    assert t.expired(5.0, 10) == [2]
    assert t.remaining(1, 0.0) is None
    t.demote()
    assert not t.active
    assert t.expired(5.0, 10) == []
    assert t.refresh(2, 0.5) is None
    t.granted(3, 1, now=0.0)  # ignored while not leader
    assert t.remaining(3, 0.0) is None


def test_repromotion_starts_every_lease_afresh() -> None:
    t = ExpiryTracker()
    t.promote(0.0, {1: 5})
    assert t.expired(6.0, 10) == [1]
    t.demote()
    # A new term of leadership: no lease expires early because leadership moved.
    t.promote(6.0, {1: 5})
    assert t.expired(10.9, 10) == []
    assert t.remaining(1, 6.0) == pytest.approx(5.0)


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["advance", "grant", "refresh", "forget", "promote", "demote"]),
        st.integers(1, 4),  # lease id
        st.integers(1, 6),  # ttl or time step (tenths of a second x 10)
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(ACTIONS)
def test_property_against_a_deadline_model(actions: list[tuple[str, int, int]]) -> None:
    t = ExpiryTracker()
    now = 0.0
    ttls: dict[int, int] = {}  # the replicated table (grant adds, forget = revoke removes)
    deadlines: dict[int, float] = {}
    active = False
    for kind, lease_id, n in actions:
        if kind == "advance":
            now += n / 2
        elif kind == "grant":
            ttls[lease_id] = n
            t.granted(lease_id, n, now)
            if active:
                deadlines[lease_id] = now + n
        elif kind == "refresh":
            got = t.refresh(lease_id, now)
            live = active and lease_id in deadlines and deadlines[lease_id] > now
            assert got == (ttls[lease_id] if live else None)
            if live:
                deadlines[lease_id] = now + ttls[lease_id]
        elif kind == "forget":
            ttls.pop(lease_id, None)
            deadlines.pop(lease_id, None)
            t.forget(lease_id)
        elif kind == "promote":
            active = True
            t.promote(now, dict(ttls))
            deadlines = {i: now + ttl for i, ttl in ttls.items()}
        elif kind == "demote":
            active = False
            t.demote()
            deadlines = {}
        due = sorted((d, i) for i, d in deadlines.items() if d <= now)
        assert t.expired(now, 10) == [i for _, i in due]
        for i in range(1, 5):
            want = None if i not in deadlines else max(0.0, deadlines[i] - now)
            got_rem = t.remaining(i, now)
            assert (got_rem is None) == (want is None)
            if want is not None:
                assert got_rem == pytest.approx(want)
