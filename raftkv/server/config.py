"""``ServerConfig``: one node's validated settings, with etcd's flag names and defaults.

Owns: the settings of ARCHITECTURE.md §4.12 and their validation (pydantic v2), the parsing of
URLs and ``--initial-cluster``, member and cluster ids (etcd's rule: SHA-1 of the sorted peer URLs
and the cluster token; the cluster id over the sorted member ids), and the test-only switches
(``RAFTKV_UNSAFE_*`` canaries), which are refused unless ``RAFTKV_TEST=1``.

Invariants: a config that validates can start a node: election timeout ≥ 5 × heartbeat, every
URL is ``http://`` or ``tcp://`` with a host and port, this member appears in the initial cluster
with the peer URLs it advertises.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_CLIENT_URL = "http://localhost:2379"
DEFAULT_PEER_URL = "http://localhost:2380"

UNSAFE_SWITCHES = (
    "no_fsync",
    "no_noop",
    "local_reads",
    "no_prevote_checkquorum",
    "no_dedup",
    "commit_old_term",
    "stale_revoke",
    "keepalive_no_confirm",
)


def split_urls(value: str | list[str]) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [u.strip() for u in value if u.strip()]


def host_port(url: str) -> tuple[str, int]:
    """``http://host:port`` → (host, port); raises ``ValueError`` for anything else."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        raise ValueError(f"{url}: https is not supported yet")
    if parts.scheme not in ("http", "tcp") or not parts.hostname or parts.port is None:
        raise ValueError(f"{url}: expected http://host:port")
    return parts.hostname, parts.port


def parse_initial_cluster(value: str) -> dict[str, list[str]]:
    """``a=http://h:1,b=http://h:2,a=http://h:3`` → {name: [peer urls]} (a name may repeat)."""
    members: dict[str, list[str]] = {}
    for item in split_urls(value):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"{item!r}: expected name=url")
        host_port(url)
        members.setdefault(name.strip(), []).append(url.strip())
    if not members:
        raise ValueError("the initial cluster is empty")
    return members


def _sha1_u64(data: bytes) -> int:
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big")


def member_id(peer_urls: list[str], token: str) -> int:
    return _sha1_u64(("".join(sorted(peer_urls)) + token).encode())


def cluster_id(member_ids: list[int]) -> int:
    return _sha1_u64(b"".join(m.to_bytes(8, "big") for m in sorted(member_ids)))


class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    data_dir: str = ""
    listen_client_urls: list[str] = Field(default_factory=lambda: [DEFAULT_CLIENT_URL])
    advertise_client_urls: list[str] = Field(default_factory=lambda: [DEFAULT_CLIENT_URL])
    listen_peer_urls: list[str] = Field(default_factory=lambda: [DEFAULT_PEER_URL])
    initial_advertise_peer_urls: list[str] = Field(default_factory=lambda: [DEFAULT_PEER_URL])
    initial_cluster: str = f"default={DEFAULT_PEER_URL}"
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "raftkv-cluster"
    heartbeat_interval: int = Field(100, ge=1, description="milliseconds")
    election_timeout: int = Field(1000, ge=1, description="milliseconds")
    snapshot_count: int = Field(100_000, ge=1)
    max_request_bytes: int = Field(1_572_864, ge=1)
    max_txn_ops: int = Field(128, ge=1)
    quota_backend_bytes: int = Field(2 << 30, ge=0)
    unsafe: tuple[str, ...] = ()

    @field_validator(
        "listen_client_urls",
        "advertise_client_urls",
        "listen_peer_urls",
        "initial_advertise_peer_urls",
        mode="before",
    )
    @classmethod
    def _urls(cls, value: Any) -> list[str]:
        urls = split_urls(value)
        if not urls:
            raise ValueError("at least one URL is needed")
        for url in urls:
            host_port(url)
        return urls

    @field_validator("initial_cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        parse_initial_cluster(value)
        return value

    @field_validator("initial_cluster_state")
    @classmethod
    def _state(cls, value: str) -> str:
        if value not in ("new", "existing"):
            raise ValueError("must be 'new' or 'existing'")
        if value == "existing":
            raise ValueError("'existing' is reserved for runtime membership, not supported yet")
        return value

    @field_validator("unsafe", mode="before")
    @classmethod
    def _unsafe(cls, value: Any) -> tuple[str, ...]:
        flags = tuple(split_urls(value)) if isinstance(value, str) else tuple(value)
        unknown = [f for f in flags if f not in UNSAFE_SWITCHES]
        if unknown:
            raise ValueError(f"unknown unsafe switches {unknown}")
        return flags

    @model_validator(mode="after")
    def _consistent(self) -> ServerConfig:
        if self.election_timeout < 5 * self.heartbeat_interval:
            raise ValueError("--election-timeout must be at least 5 times --heartbeat-interval")
        members = parse_initial_cluster(self.initial_cluster)
        if self.name not in members:
            raise ValueError(f"--initial-cluster has no member named {self.name!r}")
        if sorted(members[self.name]) != sorted(self.initial_advertise_peer_urls):
            raise ValueError(
                f"--initial-cluster gives {self.name!r} peer URLs {members[self.name]}, but "
                f"--initial-advertise-peer-urls is {self.initial_advertise_peer_urls}"
            )
        return self

    # --- derived values ------------------------------------------------------------------------

    @property
    def data_path(self) -> str:
        return self.data_dir or f"{self.name}.raftkv"

    @property
    def members(self) -> dict[str, list[str]]:
        return parse_initial_cluster(self.initial_cluster)

    def member_ids(self) -> dict[str, int]:
        return {
            name: member_id(urls, self.initial_cluster_token) for name, urls in self.members.items()
        }

    @property
    def member_id(self) -> int:
        return self.member_ids()[self.name]

    @property
    def cluster_id(self) -> int:
        return cluster_id(list(self.member_ids().values()))

    @property
    def election_ticks(self) -> int:
        return max(2, round(self.election_timeout / self.heartbeat_interval))

    @property
    def request_timeout(self) -> float:
        """etcd's request timeout: 5 s plus two election timeouts."""
        return 5.0 + 2 * self.election_timeout / 1000

    @property
    def min_lease_ttl(self) -> int:
        return math.ceil(1.5 * self.election_timeout / 1000)
