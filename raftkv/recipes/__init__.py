"""Coordination recipes on top of ``raftkv.client``, with etcd's semantics where etcd has them.

Re-exports only: ``Session`` and ``SessionStore`` (``session``), ``Lock`` (``lock``), ``Election``
(``election``), ``ServiceRegistry`` (``registry``), ``RateLimiter`` (``ratelimit``) and
``FeatureFlags`` (``flags``).
"""

from raftkv.recipes.election import Election, NotLeader
from raftkv.recipes.flags import FeatureFlags
from raftkv.recipes.lock import Lock, LockLost, wait_deletes
from raftkv.recipes.ratelimit import RateLimiter
from raftkv.recipes.registry import Change, Instance, ServiceRegistry, Snapshot
from raftkv.recipes.session import Session, SessionStore, repeat_until_known

__all__ = [
    "Change",
    "Election",
    "FeatureFlags",
    "Instance",
    "Lock",
    "LockLost",
    "NotLeader",
    "RateLimiter",
    "ServiceRegistry",
    "Session",
    "SessionStore",
    "Snapshot",
    "repeat_until_known",
    "wait_deletes",
]
