"""Response rendering as etcd's gateway writes it (API.md §1.3, §1.5, §1.6, §4, §5)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.api import codec
from raftkv.api.models import (
    CompactionResponse,
    DeleteRangeResponse,
    Event,
    EventType,
    KeyValue,
    LeaseGrantResponse,
    LeaseKeepAliveResponse,
    LeaseLeasesResponse,
    LeaseRevokeResponse,
    LeaseTimeToLiveResponse,
    Member,
    MemberListResponse,
    PutResponse,
    RangeResponse,
    ResponseHeader,
    ResponseOp,
    StatusResponse,
    TxnResponse,
    WatchResponse,
    error_body,
    error_body_for,
    stream_error_body,
)
from raftkv.errors import Compacted, InvalidArgument, LeaseNotFound, NoLeader

HEADER = ResponseHeader(
    cluster_id=14841639068965178418, member_id=10276657743932975437, revision=7, raft_term=2
)
HEADER_JSON = (
    '"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437",'
    '"revision":"7","raft_term":"2"}'
)
KV = KeyValue(key=b"foo", create_revision=2, mod_revision=7, version=3, value=b"bar", lease=9)
KV_JSON = '{"key":"Zm9v","create_revision":"2","mod_revision":"7","version":"3","value":"YmFy","lease":"9"}'


def text(obj: Any) -> str:
    return codec.dumps(obj.render()).decode()


# --- header and key-value


def test_header_field_order_and_int64_strings() -> None:
    assert text(HEADER) == HEADER_JSON[len('"header":') :]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (ResponseHeader(), "{}"),
        (ResponseHeader(revision=6), '{"revision":"6"}'),
        (
            ResponseHeader(cluster_id=1, member_id=2, raft_term=3),
            '{"cluster_id":"1","member_id":"2","raft_term":"3"}',
        ),
    ],
)
def test_header_omits_zero_fields(header: ResponseHeader, expected: str) -> None:
    assert text(header) == expected


def test_key_value_field_order() -> None:
    assert text(KV) == KV_JSON


def test_key_value_zero_omission_empty_value_and_no_lease() -> None:
    assert text(KeyValue(key=b"k", create_revision=2, mod_revision=2, version=1)) == (
        '{"key":"aw==","create_revision":"2","mod_revision":"2","version":"1"}'
    )
    assert text(KeyValue()) == "{}"


def test_negative_and_large_int64s_are_strings() -> None:
    kv = KeyValue(key=b"k", lease=-5, mod_revision=(1 << 63) - 1)
    assert json.loads(text(kv)) == {"key": "aw==", "mod_revision": "9223372036854775807", "lease": "-5"}


@settings(derandomize=True, max_examples=200)
@given(st.binary(min_size=1, max_size=80), st.binary(max_size=80))
def test_key_and_value_base64_round_trip(key: bytes, value: bytes) -> None:
    rendered = json.loads(text(KeyValue(key=key, value=value)))
    assert base64.b64decode(rendered["key"], validate=True) == key
    assert base64.b64decode(rendered.get("value", ""), validate=True) == value
    assert rendered["key"] == base64.b64encode(key).decode()


# --- KV responses


def test_range_response_order_and_omissions() -> None:
    full = RangeResponse(header=HEADER, kvs=[KV, KV], more=True, count=5)
    assert text(full) == f'{{{HEADER_JSON},"kvs":[{KV_JSON},{KV_JSON}],"more":true,"count":"5"}}'
    assert text(RangeResponse(header=HEADER)) == f"{{{HEADER_JSON}}}"
    assert text(RangeResponse(header=HEADER, count=3)) == f'{{{HEADER_JSON},"count":"3"}}'


def test_put_response() -> None:
    assert text(PutResponse(header=HEADER)) == f"{{{HEADER_JSON}}}"
    assert text(PutResponse(header=HEADER, prev_kv=KV)) == f'{{{HEADER_JSON},"prev_kv":{KV_JSON}}}'


def test_delete_range_response() -> None:
    assert text(DeleteRangeResponse(header=HEADER)) == f"{{{HEADER_JSON}}}"
    assert text(DeleteRangeResponse(header=HEADER, deleted=2, prev_kvs=[KV])) == (
        f'{{{HEADER_JSON},"deleted":"2","prev_kvs":[{KV_JSON}]}}'
    )


def test_txn_response_with_nested_txn_headers() -> None:
    nested_rev = ResponseHeader(revision=6)
    txn = TxnResponse(
        header=HEADER,
        succeeded=True,
        responses=[
            ResponseOp(RangeResponse(header=nested_rev, kvs=[KV], count=1)),
            ResponseOp(PutResponse(header=nested_rev)),
            ResponseOp(DeleteRangeResponse(header=nested_rev, deleted=1)),
            ResponseOp(
                TxnResponse(header=ResponseHeader(), responses=[ResponseOp(PutResponse(header=nested_rev))])
            ),
        ],
    )
    assert text(txn) == (
        f'{{{HEADER_JSON},"succeeded":true,"responses":['
        f'{{"response_range":{{"header":{{"revision":"6"}},"kvs":[{KV_JSON}],"count":"1"}}}},'
        '{"response_put":{"header":{"revision":"6"}}},'
        '{"response_delete_range":{"header":{"revision":"6"},"deleted":"1"}},'
        '{"response_txn":{"header":{},"responses":[{"response_put":{"header":{"revision":"6"}}}]}}]}'
    )


def test_txn_response_omits_false_succeeded_and_empty_responses() -> None:
    assert text(TxnResponse(header=HEADER)) == f"{{{HEADER_JSON}}}"


def test_compaction_response() -> None:
    assert text(CompactionResponse(header=HEADER)) == f"{{{HEADER_JSON}}}"
    assert text(CompactionResponse()) == "{}"


# --- leases


def test_lease_grant_response() -> None:
    assert (
        text(LeaseGrantResponse(header=HEADER, ID=100, TTL=30)) == f'{{{HEADER_JSON},"ID":"100","TTL":"30"}}'
    )
    assert text(LeaseGrantResponse(ID=1, TTL=2, error="x")) == '{"ID":"1","TTL":"2","error":"x"}'


def test_lease_revoke_response() -> None:
    assert text(LeaseRevokeResponse(header=HEADER)) == f"{{{HEADER_JSON}}}"


def test_lease_keepalive_response_omits_ttl_for_dead_lease() -> None:
    assert text(LeaseKeepAliveResponse(header=HEADER, ID=100, TTL=30)) == (
        f'{{{HEADER_JSON},"ID":"100","TTL":"30"}}'
    )
    assert text(LeaseKeepAliveResponse(header=HEADER, ID=100)) == f'{{{HEADER_JSON},"ID":"100"}}'


def test_lease_time_to_live_response() -> None:
    live = LeaseTimeToLiveResponse(header=HEADER, ID=5, TTL=29, grantedTTL=30, keys=[b"a", b"bc"])
    assert text(live) == f'{{{HEADER_JSON},"ID":"5","TTL":"29","grantedTTL":"30","keys":["YQ==","YmM="]}}'
    unknown = LeaseTimeToLiveResponse(header=HEADER, ID=5, TTL=-1)
    assert text(unknown) == f'{{{HEADER_JSON},"ID":"5","TTL":"-1"}}'


def test_lease_leases_response() -> None:
    assert text(LeaseLeasesResponse(header=HEADER, leases=[1, 22])) == (
        f'{{{HEADER_JSON},"leases":[{{"ID":"1"}},{{"ID":"22"}}]}}'
    )
    assert text(LeaseLeasesResponse(header=HEADER)) == f"{{{HEADER_JSON}}}"


# --- watch


def test_event_put_has_no_type_delete_has_name() -> None:
    assert text(Event(kv=KV)) == f'{{"kv":{KV_JSON}}}'
    tombstone = KeyValue(key=b"foo", mod_revision=8)
    assert text(Event(type=EventType.DELETE, kv=tombstone, prev_kv=KV)) == (
        f'{{"type":"DELETE","kv":{{"key":"Zm9v","mod_revision":"8"}},"prev_kv":{KV_JSON}}}'
    )


def test_event_unknown_type_number_is_written_as_number() -> None:
    assert text(Event(type=5)) == '{"type":5}'


def test_watch_created_and_canceled_messages() -> None:
    assert text(WatchResponse(header=HEADER, created=True)) == f'{{{HEADER_JSON},"created":true}}'
    assert text(WatchResponse(header=HEADER, watch_id=3, canceled=True)) == (
        f'{{{HEADER_JSON},"watch_id":"3","canceled":true}}'
    )
    duplicate = WatchResponse(
        header=HEADER,
        watch_id=-1,
        created=True,
        canceled=True,
        cancel_reason="mvcc: duplicate watch ID provided on the WatchStream",
    )
    assert text(duplicate) == (
        f'{{{HEADER_JSON},"watch_id":"-1","created":true,"canceled":true,'
        '"cancel_reason":"mvcc: duplicate watch ID provided on the WatchStream"}'
    )


def test_watch_compaction_cancel_header_without_revision() -> None:
    header = ResponseHeader(cluster_id=1, member_id=2, raft_term=3)
    assert text(WatchResponse(header=header, watch_id=1, canceled=True, compact_revision=5)) == (
        '{"header":{"cluster_id":"1","member_id":"2","raft_term":"3"},'
        '"watch_id":"1","canceled":true,"compact_revision":"5"}'
    )


def test_watch_events_last_and_fragment_before_them() -> None:
    message = WatchResponse(header=HEADER, watch_id=2, fragment=True, events=[Event(kv=KV)])
    assert text(message) == f'{{{HEADER_JSON},"watch_id":"2","fragment":true,"events":[{{"kv":{KV_JSON}}}]}}'


# --- maintenance and cluster


def test_status_response_order() -> None:
    status = StatusResponse(
        header=HEADER,
        version="3.5.0",
        dbSize=24576,
        leader=10276657743932975437,
        raftIndex=9,
        raftTerm=2,
        raftAppliedIndex=9,
        errors=["memberID:1 alarm:NOSPACE "],
        dbSizeInUse=16384,
        isLearner=True,
    )
    assert text(status) == (
        f'{{{HEADER_JSON},"version":"3.5.0","dbSize":"24576","leader":"10276657743932975437",'
        '"raftIndex":"9","raftTerm":"2","raftAppliedIndex":"9","errors":["memberID:1 alarm:NOSPACE "],'
        '"dbSizeInUse":"16384","isLearner":true}'
    )
    assert text(StatusResponse(header=HEADER, version="3.5.0")) == f'{{{HEADER_JSON},"version":"3.5.0"}}'


def test_member_and_member_list() -> None:
    started = Member(
        ID=10276657743932975437,
        name="n1",
        peerURLs=["http://10.0.0.1:2380"],
        clientURLs=["http://10.0.0.1:2379"],
    )
    unstarted = Member(ID=2, peerURLs=["http://10.0.0.2:2380"], isLearner=True)
    header = ResponseHeader(cluster_id=1, member_id=2, raft_term=2)
    assert text(MemberListResponse(header=header, members=[started, unstarted])) == (
        '{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"members":['
        '{"ID":"10276657743932975437","name":"n1","peerURLs":["http://10.0.0.1:2380"],'
        '"clientURLs":["http://10.0.0.1:2379"]},'
        '{"ID":"2","peerURLs":["http://10.0.0.2:2380"],"isLearner":true}]}'
    )


# --- errors


def test_error_body_uses_35_order_and_numeric_code() -> None:
    assert codec.dumps(error_body("etcdserver: key is not provided", 3)) == (
        b'{"error":"etcdserver: key is not provided","code":3,"message":"etcdserver: key is not provided"}'
    )


@pytest.mark.parametrize(
    ("exc", "code"),
    [(Compacted(), 11), (LeaseNotFound(), 5), (NoLeader(), 14), (InvalidArgument("unexpected EOF"), 3)],
)
def test_error_body_for_client_errors(exc: Any, code: int) -> None:
    assert error_body_for(exc) == {"error": exc.message, "code": code, "message": exc.message}
    assert list(error_body_for(exc)) == ["error", "code", "message"]


def test_stream_error_body_shape() -> None:
    assert codec.dumps(stream_error_body("etcdserver: no leader", 14, 503)) == (
        b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader",'
        b'"http_status":"Service Unavailable"}}'
    )
