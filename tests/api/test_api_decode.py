"""Request decoding with golang/protobuf jsonpb semantics (API.md §1.2)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from raftkv.api.models import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    FilterType,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    MemberListRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    SortOrder,
    SortTarget,
    StatusRequest,
    TxnRequest,
    WatchCancelRequest,
    WatchCreateRequest,
    WatchProgressRequest,
    WatchRequest,
    _decode_base64,
    _decode_base64_go,
    decode_request,
    iter_json_values,
    validate_request,
)
from raftkv.errors import ErrorCode, InvalidArgument


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def reject(model: type[Any], raw: bytes) -> str:
    with pytest.raises(InvalidArgument) as info:
        decode_request(model, raw)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    return info.value.message


# --- empty bodies, null, trailing bytes, syntax errors


@pytest.mark.parametrize("raw", [b"", b"   \n\t", b"null", b"{}", b" {} "])
def test_empty_body_and_null_mean_all_defaults(raw: bytes) -> None:
    assert decode_request(RangeRequest, raw) == RangeRequest()


def test_only_the_first_json_value_is_read() -> None:
    request = decode_request(PutRequest, b'{"key":"YQ=="} {"key":"Yg=="} trailing garbage {')
    assert request.key == b"a"


@pytest.mark.parametrize("raw", [b'{"key":', b'{"key":"YQ==', b"{", b'{"key":"YQ==",', b"[1,"])
def test_truncated_json_is_unexpected_eof(raw: bytes) -> None:
    assert reject(PutRequest, raw) == "unexpected EOF"


@pytest.mark.parametrize("raw", [b"x", b'{"key" "YQ=="}', b"{'key':1}", b"NaN", b'{"limit":Infinity}'])
def test_invalid_json_is_rejected(raw: bytes) -> None:
    assert reject(RangeRequest, raw).startswith("invalid character")


@pytest.mark.parametrize(("raw", "kind"), [(b"[]", "array"), (b'"x"', "string"), (b"5", "number")])
def test_top_level_value_must_be_an_object(raw: bytes, kind: str) -> None:
    assert reject(RangeRequest, raw) == (
        f"json: cannot unmarshal {kind} into Go value of type map[string]json.RawMessage"
    )


def test_invalid_utf8_is_replaced_not_rejected() -> None:
    assert decode_request(RangeRequest, b'{"x":"\xff","limit":3}').limit == 3


def test_very_deep_nesting_is_rejected_not_crashing() -> None:
    assert reject(RangeRequest, b'{"x":' + b"[" * 100_000) == "exceeded max depth"


# --- field names


@pytest.mark.parametrize(
    ("model", "proto", "camel", "value", "expected"),
    [
        (RangeRequest, "range_end", "rangeEnd", "YQ==", b"a"),
        (RangeRequest, "sort_order", "sortOrder", "DESCEND", SortOrder.DESCEND),
        (RangeRequest, "sort_target", "sortTarget", 3, SortTarget.MOD),
        (RangeRequest, "keys_only", "keysOnly", True, True),
        (RangeRequest, "count_only", "countOnly", True, True),
        (RangeRequest, "min_mod_revision", "minModRevision", "4", 4),
        (RangeRequest, "max_mod_revision", "maxModRevision", 4, 4),
        (RangeRequest, "min_create_revision", "minCreateRevision", 4, 4),
        (RangeRequest, "max_create_revision", "maxCreateRevision", 4, 4),
        (PutRequest, "prev_kv", "prevKv", True, True),
        (PutRequest, "ignore_value", "ignoreValue", True, True),
        (PutRequest, "ignore_lease", "ignoreLease", True, True),
        (DeleteRangeRequest, "range_end", "rangeEnd", "YQ==", b"a"),
        (Compare, "create_revision", "createRevision", 9, 9),
        (Compare, "mod_revision", "modRevision", 9, 9),
        (Compare, "range_end", "rangeEnd", "YQ==", b"a"),
        (WatchCreateRequest, "start_revision", "startRevision", "12", 12),
        (WatchCreateRequest, "progress_notify", "progressNotify", True, True),
        (WatchCreateRequest, "watch_id", "watchId", 3, 3),
        (WatchCancelRequest, "watch_id", "watchId", 3, 3),
    ],
)
def test_proto_and_json_names_are_both_accepted(
    model: type[Any], proto: str, camel: str, value: Any, expected: Any
) -> None:
    assert getattr(decode_request(model, body({proto: value})), proto) == expected
    assert getattr(decode_request(model, body({camel: value})), proto) == expected


def test_json_name_wins_when_both_spellings_are_present() -> None:
    for raw in (b'{"range_end":"YQ==","rangeEnd":"Yg=="}', b'{"rangeEnd":"Yg==","range_end":"YQ=="}'):
        assert decode_request(RangeRequest, raw).range_end == b"b"


def test_names_are_case_sensitive_ttl_and_id_are_unknown_for_leases() -> None:
    assert decode_request(LeaseGrantRequest, b'{"ttl":5,"id":7}') == LeaseGrantRequest()
    assert decode_request(LeaseGrantRequest, b'{"TTL":5,"ID":7}') == LeaseGrantRequest(TTL=5, ID=7)
    assert decode_request(RangeRequest, b'{"Key":"YQ==","RANGE_END":"YQ=="}') == RangeRequest()


def test_unknown_fields_are_ignored_whatever_their_value() -> None:
    raw = b'{"bogus":{"deep":[1,2,"x"]},"key":"YQ==","other":1.5,"x":null}'
    assert decode_request(PutRequest, raw) == PutRequest(key=b"a")


def test_null_field_means_absent() -> None:
    raw = b'{"key":null,"range_end":null,"limit":null,"sort_order":null,"serializable":null}'
    assert decode_request(RangeRequest, raw) == RangeRequest()
    assert decode_request(TxnRequest, b'{"compare":null,"success":null,"failure":null}') == TxnRequest()
    assert decode_request(RequestOp, b'{"request_put":null}') == RequestOp()


def test_duplicate_keys_last_one_wins() -> None:
    assert decode_request(RangeRequest, b'{"limit":1,"limit":2}').limit == 2


# --- int64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5, 5),
        ("5", 5),
        (-7, -7),
        ("-7", -7),
        (0, 0),
        ("0", 0),
        (" 12 ", 12),
        ((1 << 63) - 1, (1 << 63) - 1),
        (str(-(1 << 63)), -(1 << 63)),
    ],
)
def test_int64_from_string_or_integer(value: Any, expected: int) -> None:
    assert decode_request(RangeRequest, body({"revision": value})).revision == expected


@pytest.mark.parametrize(
    "value", [1.0, 2.5, 1e3, "1.0", "abc", "", "+5", "05", "0x10", "1e3", True, False, [1], {"a": 1}]
)
def test_int64_rejects_floats_bools_and_non_numeric_strings(value: Any) -> None:
    reject(RangeRequest, body({"limit": value}))


@pytest.mark.parametrize("value", [1 << 63, str(1 << 63), -(1 << 63) - 1])
def test_int64_rejects_out_of_range(value: Any) -> None:
    assert "int64" in reject(LeaseGrantRequest, body({"TTL": value}))


def test_int64_error_texts_follow_go() -> None:
    assert reject(RangeRequest, b'{"limit":1.0}') == (
        "json: cannot unmarshal number 1.0 into Go value of type int64"
    )
    assert reject(RangeRequest, b'{"limit":true}') == (
        "json: cannot unmarshal bool into Go value of type int64"
    )


@settings(derandomize=True, max_examples=200)
@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1), st.booleans())
def test_int64_round_trips_any_value_in_range(number: int, as_string: bool) -> None:
    value: Any = str(number) if as_string else number
    request = decode_request(LeaseGrantRequest, body({"ID": value}))
    assert number == request.ID


# --- bool


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False)])
def test_bool_accepts_true_false(value: bool, expected: bool) -> None:
    assert decode_request(RangeRequest, body({"serializable": value})).serializable is expected


@pytest.mark.parametrize(
    ("value", "kind"), [("true", "string"), (1, "number"), (0, "number"), ([], "array"), ({}, "object")]
)
def test_bool_rejects_everything_else(value: Any, kind: str) -> None:
    assert reject(PutRequest, body({"prev_kv": value})) == (
        f"json: cannot unmarshal {kind} into Go value of type bool"
    )


# --- enums


@pytest.mark.parametrize(
    ("value", "expected"),
    [("NONE", 0), ("ASCEND", 1), ("DESCEND", 2), (0, 0), (2, 2), (7, 7), (-1, -1)],
)
def test_enum_by_name_or_number_unknown_number_kept(value: Any, expected: int) -> None:
    assert decode_request(RangeRequest, body({"sort_order": value})).sort_order == expected


def test_enum_unknown_name_uses_etcds_text() -> None:
    assert reject(RangeRequest, b'{"sort_order":"X"}') == (
        'unknown value "X" for enum etcdserverpb.RangeRequest_SortOrder'
    )
    assert reject(RangeRequest, b'{"sort_target":"descend"}') == (
        'unknown value "descend" for enum etcdserverpb.RangeRequest_SortTarget'
    )
    assert reject(Compare, b'{"result":"2"}') == (
        'unknown value "2" for enum etcdserverpb.Compare_CompareResult'
    )
    assert reject(WatchCreateRequest, b'{"filters":["NOPUT","BAD"]}') == (
        'unknown value "BAD" for enum etcdserverpb.WatchCreateRequest_FilterType'
    )


@pytest.mark.parametrize("value", [1.0, True, 1 << 31, -(1 << 31) - 1, [1]])
def test_enum_rejects_non_int32_numbers_and_other_kinds(value: Any) -> None:
    assert "etcdserverpb.Compare_CompareTarget" in reject(Compare, body({"target": value}))


def test_every_compare_enum_name_decodes() -> None:
    for result in CompareResult:
        for target in CompareTarget:
            compare = decode_request(Compare, body({"result": result.name, "target": target.name}))
            assert (compare.result, compare.target) == (result, target)


# --- bytes


@settings(derandomize=True, max_examples=200)
@given(st.binary(max_size=64))
def test_bytes_round_trip_standard_padded_base64(data: bytes) -> None:
    encoded = base64.b64encode(data).decode()
    assert decode_request(PutRequest, body({"value": encoded})).value == data


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("Zm8", 0),  # unpadded, single short quantum
        ("Zm9vYg", 4),  # unpadded tail after a full quantum
        ("Zm9vYmE", 4),
        ("Zm9vYg=", 7),  # "==" expected, input ends
        ("-_8=", 0),  # URL-safe alphabet
        ("Zm9v-w==", 4),
        ("Zm9v_w==", 4),
        ("Z===", 1),  # padding too early
        ("====", 0),
        ("Zm9v=", 4),
        ("Zg==Zg==", 4),  # data after padding
        ("Zm=x", 2),  # "==" expected, something else found: Go reports the first "="
        ("Zm9 v", 3),  # spaces are not skipped
        ("Zm9vé", 4),
    ],
)
def test_bytes_reject_unpadded_and_url_safe_with_go_offset(text: str, offset: int) -> None:
    assert reject(PutRequest, body({"key": text})) == f"illegal base64 data at input byte {offset}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", b""), ("Zm9v\nYmFy", b"foobar"), ("Zg=\r\n=", b"f"), ("Zh==", b"f"), ("Zm9=\n", b"fo")],
)
def test_bytes_accept_empty_newlines_and_loose_trailing_bits_like_go(text: str, expected: bytes) -> None:
    assert decode_request(PutRequest, body({"key": text})).key == expected


@pytest.mark.parametrize(("value", "kind"), [(5, "number"), (True, "bool"), (["YQ=="], "array")])
def test_bytes_must_be_a_string(value: Any, kind: str) -> None:
    assert reject(PutRequest, body({"key": value})) == (
        f"json: cannot unmarshal {kind} into Go value of type []uint8"
    )


# --- oneofs


def test_request_op_keeps_put_over_range() -> None:
    raw = b'{"request_range":{"key":"YQ=="},"request_put":{"key":"Yg=="}}'
    op = decode_request(RequestOp, raw)
    assert op.request_range is None
    assert op.request_put == PutRequest(key=b"b")


@settings(derandomize=True, max_examples=60)
@given(st.sets(st.sampled_from(RequestOp.REQUEST), min_size=1))
def test_request_op_keeps_exactly_the_highest_numbered_member(members: set[str]) -> None:
    op = decode_request(RequestOp, body({name: {"key": "YQ=="} for name in members}))
    present = [name for name in RequestOp.REQUEST if getattr(op, name) is not None]
    assert present == [max(members, key=RequestOp.REQUEST.index)]


def test_watch_request_oneof_and_empty_members() -> None:
    both = decode_request(WatchRequest, b'{"create_request":{"key":"YQ=="},"cancel_request":{"watch_id":1}}')
    assert both.create_request is None
    assert both.cancel_request == WatchCancelRequest(watch_id=1)
    progress = decode_request(WatchRequest, b'{"progressRequest":{}}')
    assert progress.progress_request == WatchProgressRequest()
    assert decode_request(WatchRequest, b"{}") == WatchRequest()


def test_compare_target_union_keeps_one_member() -> None:
    compare = decode_request(Compare, b'{"version":"1","value":"YQ==","lease":2}')
    assert (compare.version, compare.value, compare.lease) == (None, None, 2)
    only_value = decode_request(Compare, b'{"target":"VALUE","key":"YQ==","value":""}')
    assert (only_value.version, only_value.value) == (None, b"")


def test_nested_message_must_be_an_object() -> None:
    assert reject(RequestOp, b'{"request_put":"x"}') == (
        "json: cannot unmarshal string into Go value of type map[string]json.RawMessage"
    )
    assert reject(TxnRequest, b'{"success":{}}') == (
        "json: cannot unmarshal object into Go value of type []json.RawMessage"
    )


# --- whole messages


def test_full_txn_request_with_nested_txn_and_errors_deep_inside() -> None:
    raw = body(
        {
            "compare": [{"result": "EQUAL", "target": "CREATE", "key": "bG9jaw==", "create_revision": 0}],
            "success": [
                {"requestPut": {"key": "bG9jaw==", "value": "bWU=", "lease": "7"}},
                {"request_txn": {"success": [{"request_delete_range": {"key": "YQ==", "prev_kv": True}}]}},
            ],
            "failure": [{"request_range": {"key": "bG9jaw=="}}, None],
        }
    )
    txn = decode_request(TxnRequest, raw)
    assert txn.compare == (
        Compare(result=CompareResult.EQUAL, target=CompareTarget.CREATE, key=b"lock", create_revision=0),
    )
    assert txn.success[0].request_put == PutRequest(key=b"lock", value=b"me", lease=7)
    nested = txn.success[1].request_txn
    assert nested is not None
    assert nested.success[0].request_delete_range == DeleteRangeRequest(key=b"a", prev_kv=True)
    assert txn.failure == (RequestOp(request_range=RangeRequest(key=b"lock")), RequestOp())
    bad = b'{"success":[{"request_txn":{"failure":[{"request_put":{"lease":1.5}}]}}]}'
    assert "int64" in reject(TxnRequest, bad)


def test_every_request_model_decodes_its_fields() -> None:
    cases: list[tuple[type[Any], bytes, Any]] = [
        (
            CompactionRequest,
            b'{"revision":"9","physical":true}',
            CompactionRequest(revision=9, physical=True),
        ),
        (LeaseGrantRequest, b'{"TTL":30,"ID":-4}', LeaseGrantRequest(TTL=30, ID=-4)),
        (LeaseRevokeRequest, b'{"ID":"100"}', LeaseRevokeRequest(ID=100)),
        (LeaseKeepAliveRequest, b'{"ID":100}', LeaseKeepAliveRequest(ID=100)),
        (LeaseTimeToLiveRequest, b'{"ID":1,"keys":true}', LeaseTimeToLiveRequest(ID=1, keys=True)),
        (LeaseLeasesRequest, b'{"x":1}', LeaseLeasesRequest()),
        (StatusRequest, b"{}", StatusRequest()),
        (MemberListRequest, b'{"linearizable":true}', MemberListRequest(linearizable=True)),
        (
            WatchCreateRequest,
            b'{"key":"YQ==","filters":["NODELETE",0,null],"prev_kv":true,"fragment":true}',
            WatchCreateRequest(
                key=b"a",
                filters=(FilterType.NODELETE, FilterType.NOPUT, FilterType.NOPUT),
                prev_kv=True,
                fragment=True,
            ),
        ),
    ]
    for model, raw, expected in cases:
        assert decode_request(model, raw) == expected


def test_models_are_immutable() -> None:
    request = RangeRequest(key=b"a")
    with pytest.raises(ValueError):
        request.key = b"b"  # type: ignore[misc, unused-ignore]


# --- stream bodies


@pytest.mark.parametrize(
    "raw",
    [
        b'{"ID":1}{"ID":2}{"ID":3}',
        b'{"ID":1}\n{"ID":2}\n{"ID":3}\n',
        b'  {"ID":1} \r\n\t{"ID":2}{"ID":3}  ',
    ],
)
def test_iter_json_values_splits_back_to_back_objects(raw: bytes) -> None:
    ids = [validate_request(LeaseKeepAliveRequest, value).ID for value in iter_json_values(raw)]
    assert ids == [1, 2, 3]


def test_iter_json_values_empty_body_yields_nothing() -> None:
    assert list(iter_json_values(b"")) == []
    assert list(iter_json_values(b" \n ")) == []


def test_iter_json_values_yields_good_values_before_the_error() -> None:
    values = iter_json_values(b'{"ID":1}\n{"ID":')
    assert next(values) == {"ID": 1}
    with pytest.raises(InvalidArgument, match="unexpected EOF"):
        next(values)


def test_validate_request_treats_none_as_defaults_and_rejects_non_objects() -> None:
    assert validate_request(WatchRequest, None) == WatchRequest()
    with pytest.raises(InvalidArgument):
        validate_request(WatchRequest, [1])


def _base64_outcome(decode: Any, text: Any) -> bytes | str:
    try:
        return bytes(decode(text))
    except PydanticCustomError as exc:
        return exc.message()


@settings(derandomize=True, max_examples=300)
@given(st.binary(max_size=40), st.lists(st.integers(min_value=0, max_value=60), max_size=4))
def test_go_base64_port_decodes_valid_input_with_newlines_anywhere(data: bytes, cuts: list[int]) -> None:
    text = base64.b64encode(data).decode()
    for cut in sorted(cuts, reverse=True):
        text = text[:cut] + "\r\n"[cut % 2] + text[cut:]
    assert _decode_base64_go(text.encode()) == data
    assert _decode_base64(text) == data


@settings(derandomize=True, max_examples=500)
@given(st.text(alphabet="AZaz09+/=-_\n. ", max_size=14))
def test_fast_base64_paths_agree_with_the_go_port(text: str) -> None:
    assert _base64_outcome(_decode_base64, text) == _base64_outcome(_decode_base64_go, text.encode())
