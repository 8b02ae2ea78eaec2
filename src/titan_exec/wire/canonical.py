"""TypeScript-compatible canonical JSON, and the strict JSON reader in front of it.

Owns two things:

* `canonical_json(value)`: byte-for-byte what a TypeScript producer computes as
  `JSON.stringify(sortKeysDeep(JSON.parse(wire)))`, given the value Python's `json.loads`
  returns for the same wire text. This string is what HMAC signatures and the policy hash
  are computed over, so every rule below mirrors ECMAScript:

  - object keys sorted by UTF-16 code units (`Array.prototype.sort` on strings), except
    that keys which are array indices ("0", "1", ... up to 2**32 - 2) come first in
    ascending numeric order: JavaScript objects always enumerate such keys first, so the
    sorted insertion order is overridden for them;
  - numbers as ECMAScript `Number::toString` on the IEEE double the wire text parses to
    (`49000.0` -> `49000`, `1e-7` -> `1e-7`, `1e21` -> `1e+21`, `-0.0` -> `0`, integers
    above 2**53 rounded to a double first);
  - strings as `JSON.stringify` escapes them (well-formed variant: lone surrogates as
    `\\udxxx`, other non-ASCII raw, control characters as `\\u00xx`);
  - compact output, `true`/`false`/`null`.

  A `decimal.Decimal` is accepted and treated as its text parsed to a double, which is
  exactly what JavaScript does with that text on the wire.
  Not reproduced: a `"__proto__"` key (what JS does with it depends on how the producer's
  `sortKeysDeep` builds its objects).

* `parse_json_strict(data, ...)`: the only way wire bytes become Python values here. It
  rejects, with a `WireError`, oversize input, invalid UTF-8, anything that is not strict
  JSON (including `NaN`/`Infinity` literals, numbers a double cannot hold and duplicate
  keys), nesting deeper than a limit, and (before parsing) more values than a limit.

Pure: no I/O, clock or logging.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from titan_exec.wire.errors import WireError

__all__ = [
    "canonical_json",
    "count_values_bound",
    "js_decimal",
    "js_number_to_string",
    "json_depth",
    "parse_json_strict",
    "sha256_hex_canonical",
]

_MAX_SAFE_INTEGER: Final = 2**53
_MAX_ARRAY_INDEX: Final = 2**32 - 2
_ARRAY_INDEX_RE: Final = re.compile(r"(?:0|[1-9][0-9]{0,9})\Z")
_ESCAPE_RE: Final = re.compile(r'[\x00-\x1f"\\\ud800-\udfff]')
_SHORT_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


# ---------------------------------------------------------------------------------------
# Numbers


def js_number_to_string(x: float) -> str:
    """ECMAScript `Number::toString(x)` (radix 10) for a finite double.

    Python's `repr(float)` already yields the shortest digits that round-trip (the same
    digit string ECMAScript specifies); only the layout rules differ.
    """
    if not math.isfinite(x):
        raise ValueError(f"{x!r} has no JSON representation")
    if x == 0:
        return "0"  # covers -0.0
    if x < 0:
        return "-" + js_number_to_string(-x)
    mantissa, _, exp_text = repr(x).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    stripped = all_digits.lstrip("0")
    # n: position of the decimal point relative to the first significant digit,
    # so that x = 0.d1d2...dk * 10**n (ECMA-262 Number::toString, step 5).
    n = len(int_part) + (int(exp_text) if exp_text else 0) - (len(all_digits) - len(stripped))
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    exponent = ("+" if e >= 0 else "-") + str(abs(e))
    if k == 1:
        return digits + "e" + exponent
    return digits[0] + "." + digits[1:] + "e" + exponent


def _number_to_string(value: int | float | Decimal) -> str:
    if isinstance(value, int):
        if -_MAX_SAFE_INTEGER < value < _MAX_SAFE_INTEGER:
            return str(int(value))  # int(): an int-derived enum must not print its name
        try:
            as_double = float(value)
        except OverflowError:
            raise ValueError("integer out of the range of a double") from None
        return js_number_to_string(as_double)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value!r} has no JSON representation")
        as_double = float(value)
        if not math.isfinite(as_double):
            raise ValueError(f"{value!r} is out of the range of a double")
        return js_number_to_string(as_double)
    return js_number_to_string(value)


def js_decimal(value: int | float) -> Decimal:
    """The number JavaScript holds for a parsed JSON number, exactly, as a Decimal: an
    integer below 2**53 as it is, anything else as the IEEE double's shortest digits
    (`0.1` -> 0.1, `1e-400` -> 0, `12345678.123456789012345678` -> 12345678.12345679)."""
    if isinstance(value, int) and -_MAX_SAFE_INTEGER < value < _MAX_SAFE_INTEGER:
        return Decimal(value)
    return Decimal(js_number_to_string(float(value)))


# ---------------------------------------------------------------------------------------
# Strings and keys


def _escape_match(match: re.Match[str]) -> str:
    ch = match.group()
    short = _SHORT_ESCAPES.get(ch)
    return short if short is not None else f"\\u{ord(ch):04x}"


def _as_js_string(s: str) -> str:
    """Join adjacent surrogate code points into the character they encode, as a JS string
    (a UTF-16 sequence) would; genuinely lone surrogates stay as they are."""
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _quote(s: str) -> str:
    if not s.isascii():
        s = _as_js_string(s)
    return '"' + _ESCAPE_RE.sub(_escape_match, s) + '"'


def _utf16_key(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like the sequence of 16-bit code units.
    return key.encode("utf-16-be", "surrogatepass")


def _is_array_index(key: str) -> bool:
    return _ARRAY_INDEX_RE.match(key) is not None and int(key) <= _MAX_ARRAY_INDEX


def _js_key_order(keys: Sequence[str]) -> list[str]:
    ordered = sorted(keys, key=_utf16_key)
    indices = [k for k in ordered if _is_array_index(k)]
    if not indices:
        return ordered
    indices.sort(key=int)
    return indices + [k for k in ordered if not _is_array_index(k)]


# ---------------------------------------------------------------------------------------
# Values


def _write(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int | float | Decimal):
        out.append(_number_to_string(value))
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be str, got {type(key).__name__}")
        out.append("{")
        for i, key in enumerate(_js_key_order(keys)):
            if i:
                out.append(",")
            out.append(_quote(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: object) -> str:
    """`JSON.stringify(sortKeysDeep(value))` as a TypeScript producer computes it.

    `value` is a JSON value as `json.loads` returns it (dict, list, str, int, float, bool,
    None); tuples and other Mappings are accepted too. Raises ValueError for NaN/Infinity
    (never produced by `parse_json_strict`) and TypeError for non-JSON types.
    """
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def sha256_hex_canonical(value: object) -> str:
    """`sha256_hex(canonical_json(value))`, e.g. the risk policy hash the brain computes."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------
# Strict parsing


def _reject_constant(name: str) -> Any:
    raise WireError("not_json", f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireError("not_json", f"number {text[:40]} is out of the range of a double")
    return value


def _double_range_int(text: str) -> int:
    value = int(text)
    if not -_MAX_SAFE_INTEGER < value < _MAX_SAFE_INTEGER:
        try:
            float(value)
        except OverflowError:
            raise WireError(
                "not_json", f"number {text[:40]}... is out of the range of a double"
            ) from None
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise WireError("not_json", f"duplicate object key {key[:64]!r}")
            seen.add(key)
    return obj


def json_depth(value: object) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, `[]` is 1, `[[]]` is 2),
    computed iteratively."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def count_values_bound(data: bytes) -> int:
    """An upper bound of the number of JSON values in `data`, from three byte counts
    (C speed, no parsing): every value after the first is preceded by `,` or opens a
    container. Bytes inside strings are counted too, so it can only over-count."""
    return data.count(b",") + data.count(b"[") + data.count(b"{") + 1


def parse_json_strict(
    data: bytes,
    *,
    max_bytes: int,
    max_depth: int,
    max_values: int | None = None,
    parse_float: Callable[[str], Any] = _finite_float,
) -> Any:
    """Parse wire bytes as strict JSON (RFC 8259) or raise `WireError`.

    Codes: `too_large` (over `max_bytes`, or more than `max_values` values by the
    byte-count bound `count_values_bound`: both checked before any parsing, so that the
    cost of a message is bounded whatever it holds), `invalid_utf8`, `not_json` (syntax
    error, `NaN`/`Infinity`, a number a double cannot hold, duplicate keys), `too_deep`
    (nesting over `max_depth`). Floats are Python floats unless `parse_float` says
    otherwise; ints are ints.
    """
    if len(data) > max_bytes:
        raise WireError(
            "too_large", f"message is {len(data)} bytes, the limit is {max_bytes} bytes"
        )
    if max_values is not None:
        bound = count_values_bound(data)
        if bound > max_values:
            raise WireError(
                "too_large",
                f"message holds up to {bound} JSON values (by its separators), "
                f"the limit is {max_values}",
            )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("invalid_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(
            text,
            parse_float=parse_float,
            parse_int=_double_range_int,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicate_keys,
        )
    except WireError:
        raise
    except RecursionError:
        # CPython's scanner guards its own recursion; far deeper than any limit we allow.
        raise WireError("too_deep", f"nesting is deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, or int() over the digit limit
        raise WireError("not_json", f"not valid JSON: {exc}") from None
    depth = json_depth(value)
    if depth > max_depth:
        raise WireError("too_deep", f"nesting depth {depth} exceeds the limit of {max_depth}")
    return value
