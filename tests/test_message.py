"""The lab's wire format, both ways, and every way a payload can be wrong."""

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from trashlab.errors import BadMessage
from trashlab.message import TrashLevel, decode_fields, encode


def test_encodes_exactly_like_sim_js():
    # sim.js: '{"can_id":"' + can_id + '", "level":"' + lvl + '"}'
    assert encode("135", 42.930236081376314) == b'{"can_id":"135", "level":"42.930236081376314"}'
    assert TrashLevel("826", 73.63959586423843).encode() == b'{"can_id":"826", "level":"73.63959586423843"}'


def test_encoded_values_are_json_strings():
    obj = json.loads(encode("7", 0.5))
    assert obj == {"can_id": "7", "level": "0.5"}


def test_sequence_number_is_an_extra_field_the_lab_fields_stay():
    obj = json.loads(TrashLevel("1", 2.0, seq=9).encode())
    assert obj == {"can_id": "1", "level": "2.0", "seq": 9}


@pytest.mark.parametrize("payload, expected", [
    (b'{"can_id":"135", "level":"42.930236081376314"}', ("135", 42.930236081376314, None)),
    (b'{"can_id":135, "level":42.5}', ("135", 42.5, None)),
    (b'{"can_id":"0", "level":"0"}', ("0", 0.0, None)),
    (b'{"can_id":"1000", "level":100}', ("1000", 100.0, None)),
    (b'{"can_id":" 12 ", "level":" 3.5 ", "seq": 4}', ("12", 3.5, 4)),
    ('{"can_id":"x", "level":"1e1"}', ("x", 10.0, None)),
])
def test_decodes_strings_or_numbers(payload, expected):
    assert decode_fields(payload) == expected
    r = TrashLevel.decode(payload)
    assert (r.can_id, r.level, r.seq) == expected


@pytest.mark.parametrize("payload, kind, words", [
    (b"hello", "not-json", "not JSON"),
    (b"", "not-json", "not JSON"),
    (b"[1, 2]", "not-object", "list"),
    (b'"135"', "not-object", "str"),
    (b'{"level":"4"}', "missing-field", "can_id"),
    (b'{"can_id":"4"}', "missing-field", "level"),
    (b'{"can_id":"", "level":"4"}', "bad-value", "empty"),
    (b'{"can_id":null, "level":"4"}', "bad-type", "can_id"),
    (b'{"can_id":true, "level":"4"}', "bad-type", "can_id"),
    (b'{"can_id":"1", "level":"full"}', "bad-type", "not a number"),
    (b'{"can_id":"1", "level":true}', "bad-type", "level"),
    (b'{"can_id":"1", "level":[1]}', "bad-type", "level"),
    (b'{"can_id":"1", "level":"101"}', "out-of-range", "outside 0-100"),
    (b'{"can_id":"1", "level":-0.5}', "out-of-range", "outside 0-100"),
    (b'{"can_id":"1", "level":"NaN"}', "not-finite", "finite"),
    (b'{"can_id":"1", "level":"inf"}', "not-finite", "finite"),
    (b'{"can_id":"1", "level":1e999}', "not-finite", "finite"),
    (b'{"can_id":"1", "level":"5", "seq":"7"}', "bad-type", "seq"),
    (b"\xff\xfe{}", "not-utf8", "UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "too-large", "larger"),
    (b"[" * 5000 + b"]" * 5000, "too-deep", "nested"),
    (b'{"can_id":"1", "level":"5", "pad":"' + b"x" * 70000 + b'"}', "too-large", "larger"),
])
def test_bad_payloads_raise_bad_message_with_a_reason(payload, kind, words):
    with pytest.raises(BadMessage) as err:
        decode_fields(payload)
    assert err.value.kind == kind
    assert words in err.value.reason


def test_value_type_validates_on_construction():
    with pytest.raises(BadMessage, match="outside 0-100"):
        TrashLevel("1", 150)
    assert TrashLevel(7, 5).can_id == "7"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_bad_message(data):
    try:
        can_id, level, seq = decode_fields(data)
    except BadMessage as e:
        assert e.reason and e.kind
    else:
        assert can_id and 0 <= level <= 100 and math.isfinite(level)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={"can_id": json_values, "level": json_values, "seq": json_values}))
def test_any_json_object_decodes_or_raises_bad_message(obj):
    try:
        payload = json.dumps(obj).encode()
    except ValueError:
        return
    try:
        can_id, level, _ = decode_fields(payload)
    except BadMessage as e:
        assert e.reason
    else:
        assert isinstance(can_id, str) and can_id and 0 <= level <= 100


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=20).filter(lambda s: s.strip()), st.floats(0, 100))
def test_round_trip(can_id, level):
    back = TrashLevel.decode(TrashLevel(can_id, level).encode())
    assert back.can_id == can_id.strip() and back.level == level
