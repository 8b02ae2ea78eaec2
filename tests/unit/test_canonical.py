"""Canonical JSON must equal what a TypeScript producer signs, and the strict reader must
refuse everything that is not plain JSON with the documented WireError code."""

from __future__ import annotations

import json
import math
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from titan_exec.wire.canonical import (
    canonical_json,
    js_number_to_string,
    json_depth,
    parse_json_strict,
    sha256_hex_canonical,
)
from titan_exec.wire.errors import WireError

CONTRACT = Path(__file__).resolve().parents[1] / "fixtures" / "contract"
MAX_BYTES = 262_144
MAX_DEPTH = 32

# (wire text, JSON.stringify(JSON.parse(wire)) as printed by Node.js 20)
JS_NUMBERS = [
    ("49000.0", "49000"),
    ("0.1", "0.1"),
    ("0.000001", "0.000001"),
    ("0.0000001", "1e-7"),
    ("1e-7", "1e-7"),
    ("1.5e-7", "1.5e-7"),
    ("1e21", "1e+21"),
    ("1e20", "100000000000000000000"),
    ("123456789012345678901234", "1.2345678901234569e+23"),
    ("9007199254740993", "9007199254740992"),
    ("9007199254740992", "9007199254740992"),
    ("-0.0", "0"),
    ("-0", "0"),
    ("1152921504606846976", "1152921504606847000"),
    ("5e-324", "5e-324"),
    ("1.7976931348623157e308", "1.7976931348623157e+308"),
    ("2.2250738585072014e-308", "2.2250738585072014e-308"),
    ("0.30000000000000004", "0.30000000000000004"),
    ("1.2e-6", "0.0000012"),
    ("123e-20", "1.23e-18"),
    ("-1.5", "-1.5"),
    ("100.0", "100"),
    ("1E2", "100"),
    ("1e+2", "100"),
    ("12345678901234567890", "12345678901234567000"),
    ("0.1e1", "1"),
    ("1234.5678e-3", "1.2345678"),
    ("999999999999999999999", "1e+21"),
    ("1e-6", "0.000001"),
    ("0.00001234", "0.00001234"),
    ("-1e-7", "-1e-7"),
    ("4.35", "4.35"),
    ("0.000001000", "0.000001"),
    ("1.0000000000000002", "1.0000000000000002"),
    ("50500.5", "50500.5"),
    ("3000.0", "3000"),
    ("1e300", "1e+300"),
    ("-123456789.125", "-123456789.125"),
    ("2e-7", "2e-7"),
    ("99.99999999999999999", "100"),
]

# (wire text, JSON.stringify(sortKeysDeep(JSON.parse(wire))) as printed by Node.js 20)
JS_DOCUMENTS = [
    ('{"b":1,"a":2,"B":3,"_":4,"aa":0,"":5}', '{"":5,"B":3,"_":4,"a":2,"aa":0,"b":1}'),
    # UTF-16 order: the astral emoji (D83D DE00) sorts before U+FFFF.
    (
        '{"\\uffff":1,"\\ud83d\\ude00":2,"\\u00e9":3,"z":4}',
        '{"z":4,"\xe9":3,"\U0001f600":2,"\uffff":1}',
    ),
    # Array-index keys are enumerated first, numerically; "4294967295" is not an index.
    (
        '{"b":1,"10":2,"9":3,"4294967295":4,"4294967294":5,"01":6,"-1":7}',
        '{"9":3,"10":2,"4294967294":5,"-1":7,"01":6,"4294967295":4,"b":1}',
    ),
    (
        '{"s":"\\u0000\\u0001\\u001f\\u007f\\b\\f\\n\\r\\t\\"\\\\/\\u2028\\u00e9\\ud83d\\ude00"}',
        '{"s":"\\u0000\\u0001\\u001f\x7f\\b\\f\\n\\r\\t\\"\\\\/\u2028\xe9\U0001f600"}',
    ),
    (
        '{"lone":"\\ud800x\\udc00","pair":"\\ud83d\\ude00"}',
        '{"lone":"\\ud800x\\udc00","pair":"\U0001f600"}',
    ),
    (
        '{"n":[1,2.50,{"z":null,"y":true,"x":false}],"m":{}}',
        '{"m":{},"n":[1,2.5,{"x":false,"y":true,"z":null}]}',
    ),
]

_JS_NUMBER_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?(e[+-][1-9][0-9]*)?")


@pytest.mark.parametrize(("wire", "js"), JS_NUMBERS)
def test_numbers_format_like_ecmascript(wire: str, js: str) -> None:
    assert canonical_json(json.loads(wire)) == js


@pytest.mark.parametrize(("wire", "js"), JS_DOCUMENTS)
def test_documents_match_typescript_sort_keys_deep(wire: str, js: str) -> None:
    assert canonical_json(json.loads(wire)) == js


def test_decimal_is_read_as_the_double_its_text_denotes() -> None:
    assert canonical_json(Decimal("49000.0")) == "49000"
    assert canonical_json(Decimal("0.10000000000000000001")) == "0.1"
    assert canonical_json([Decimal("1E-7")]) == "[1e-7]"


def test_tuples_and_ints_are_json_values() -> None:
    assert canonical_json((1, True, None, "x")) == '[1,true,null,"x"]'
    assert canonical_json(-(2**53) - 1) == "-9007199254740992"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, Decimal("NaN"), 10**400])
def test_non_finite_numbers_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"JSON|range"):
        canonical_json({"x": value})


@pytest.mark.parametrize("value", [{1: "a"}, {"a": {1, 2}}, b"bytes"])
def test_non_json_types_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        canonical_json(value)


def test_policy_hash_of_the_default_risk_policy_equals_the_brains() -> None:
    policy = json.loads((CONTRACT / "risk_policy.json").read_text())
    assert (
        sha256_hex_canonical(policy)
        == "7ff820b56b12d89d64dcb78a261a8062087cde3bc3d47e03e11037a4de354a7d"
    )


def test_every_hmac_vector_payload_canonicalises_to_the_vector() -> None:
    vectors = json.loads((CONTRACT / "hmac-vectors.json").read_text())["vectors"]
    assert len(vectors) >= 3
    for v in vectors:
        payload = json.loads(v["payload_wire"])
        assert f"{v['ts']}.{v['nonce']}.{canonical_json(payload)}" == v["canonical"], v["name"]


# ---------------------------------------------------------------------------------------
# Properties


@given(st.floats(allow_nan=False, allow_infinity=False))
@example(0.1)
@example(1e21)
@example(1e-7)
@example(5e-324)
@example(-0.0)
def test_float_formatting_round_trips_and_follows_the_ecmascript_layout(x: float) -> None:
    text = canonical_json(x)
    assert float(json.loads(text)) == x  # JS reads every number as a double
    assert _JS_NUMBER_RE.fullmatch(text), text
    magnitude = abs(x)
    uses_exponent = magnitude != 0 and (magnitude >= 1e21 or magnitude < 1e-6)
    assert ("e" in text) == uses_exponent, text
    significant = re.sub(r"e.*|[-.]", "", text).strip("0")
    assert len(significant) <= 17
    assert js_number_to_string(x) == text


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_integers_format_as_the_double_javascript_parses(n: int) -> None:
    assert canonical_json(n) == canonical_json(float(n))
    if abs(n) < 2**53:
        assert canonical_json(n) == str(n)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_json_values)
def test_canonical_form_is_a_fixed_point(value: object) -> None:
    text = canonical_json(value)
    text.encode("utf-8")  # never contains an unpaired surrogate
    assert canonical_json(json.loads(text)) == text


# ---------------------------------------------------------------------------------------
# Strict parsing


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        (b"not json", "not_json", "not valid JSON"),
        (b'{"a":1,}', "not_json", "not valid JSON"),
        (b'{"a":1} x', "not_json", "not valid JSON"),
        (b"", "not_json", "not valid JSON"),
        (b'{"a":NaN}', "not_json", "NaN"),
        (b'{"a":Infinity}', "not_json", "Infinity"),
        (b'{"a":-Infinity}', "not_json", "-Infinity"),
        (b'{"a":1e400}', "not_json", "out of the range"),
        (b'{"a":' + b"9" * 400 + b"}", "not_json", "out of the range"),
        (b'{"a":1,"a":2}', "not_json", "duplicate object key 'a'"),
        (b'{"a":"\xff"}', "invalid_utf8", "byte 6"),
        (b'{"a":"\xed\xa0\x80"}', "invalid_utf8", "invalid UTF-8"),
        (b'\xef\xbb\xbf{"a":1}', "not_json", "BOM"),
    ],
)
def test_malformed_input_is_refused_with_a_code(data: bytes, code: str, fragment: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_json_strict(data, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
    assert caught.value.code == code
    assert fragment in caught.value.message


def test_size_limit_is_inclusive_and_named_in_the_message() -> None:
    doc = b'{"a":"' + b"x" * 100 + b'"}'
    assert parse_json_strict(doc, max_bytes=len(doc), max_depth=4) == {"a": "x" * 100}
    with pytest.raises(WireError) as caught:
        parse_json_strict(doc, max_bytes=len(doc) - 1, max_depth=4)
    assert caught.value.code == "too_large"
    assert str(len(doc)) in caught.value.message


def test_one_mebibyte_is_too_large() -> None:
    doc = b'{"a":"' + b"x" * (1 << 20) + b'"}'
    with pytest.raises(WireError) as caught:
        parse_json_strict(doc, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
    assert caught.value.code == "too_large"
    assert "262144" in caught.value.message


@pytest.mark.parametrize("opener", [b"[", b'{"k":'])
def test_ten_thousand_levels_are_too_deep_and_refused_quickly(opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    doc = opener * 10_000 + b"1" + closer * 10_000
    started = time.perf_counter()
    with pytest.raises(WireError) as caught:
        parse_json_strict(doc, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
    assert caught.value.code == "too_deep"
    assert time.perf_counter() - started < 1.0


def test_depth_limit_boundary() -> None:
    assert (
        parse_json_strict(b"[" * 32 + b"]" * 32, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
        is not None
    )
    with pytest.raises(WireError) as caught:
        parse_json_strict(b"[" * 33 + b"]" * 33, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
    assert caught.value.code == "too_deep"
    assert "33" in caught.value.message


def test_depth_is_counted_in_containers() -> None:
    assert json_depth(1) == 0
    assert json_depth([]) == 1
    assert json_depth({"a": [1, {"b": []}]}) == 4


def test_floats_and_decimals_are_read_from_the_same_text() -> None:
    doc = b'{"size":0.1,"n":3,"big":12345678901234567890.5}'
    as_float = parse_json_strict(doc, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
    exact = parse_json_strict(doc, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH, parse_float=Decimal)
    assert as_float == {"size": 0.1, "n": 3, "big": 12345678901234567890.5}
    assert exact == {"size": Decimal("0.1"), "n": 3, "big": Decimal("12345678901234567890.5")}
    assert type(exact["n"]) is int
