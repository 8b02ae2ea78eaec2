"""Signed intent envelopes: strict parsing of the envelope and of the intent payload,
signature + timestamp verification, and signing for producers.

Owns the contract sections "Intent envelope" and "Signature" (see also the JSON Schema
`nats-intent.v1.schema.json`):

* `parse_envelope(data)` reads the wire bytes once with the strict parser
  (`canonical.parse_json_strict`), after a byte-count bound on the number of values
  (`max_values`), so a message costs at most a few milliseconds whatever it holds. The
  parsed payload is kept as `Envelope.payload_raw` because the signature covers *that*
  value (`canonical_json` of it). What the service reads and keeps is
  `Envelope.payload_exact`: the same tree as the signer's JavaScript sees it (`_kept`):
  every non-integer number (and every integer beyond 2**53) is the IEEE double the text
  denotes, as a `decimal.Decimal` of its shortest round-trip digits (`1e-400` is 0,
  `0.1` is exactly 0.1: the value the signature covers is the value executed), and
  every string is its `text.js_view` (a lone surrogate becomes the text ``\udc00``), so
  whatever is derived from it always encodes. The envelope's own fields are read from
  the same view. Money never passes through arithmetic on a float.
* `parse_intent(envelope)` checks the payload against the schema and returns an `Intent`
  with Decimal money. Business rules (size > 0, whitelist, freshness, ...) are the core's.
* `verify_envelope(...)` checks the HMAC (first, so anything unauthenticated is reported
  as a signature failure) then `|now - ts| <= tolerance`. Nonce replay is `replay.py`'s.
* `sign_envelope(...)` builds signed envelope bytes the way a producer does.

Errors: parsers raise `WireError`; the verifier returns one. Codes used here: too_large
(bytes or values), invalid_utf8, not_json, too_deep (reading), envelope (envelope
fields), schema (payload), signature, stale_timestamp. Messages name the field:
`payload.size: expected a number, got str`. Optional fields given as `null` count as
absent. Unknown fields are allowed.

Pure: no I/O, clock or logging; time and secrets are arguments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Literal, TypeVar, cast, get_args

import msgspec

from titan_exec.core.commands import Direction, Intent, IntentType
from titan_exec.wire.canonical import canonical_json, js_decimal, parse_json_strict
from titan_exec.wire.errors import WireError, WireErrorCode
from titan_exec.wire.signing import DEFAULT_KEY_ID, Keyring, sign, verify
from titan_exec.wire.text import js_view

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_VALUES",
    "DEFAULT_TOLERANCE_MS",
    "Direction",
    "Envelope",
    "Intent",
    "IntentStatus",
    "IntentType",
    "parse_envelope",
    "parse_intent",
    "sign_envelope",
    "verify_envelope",
]

DEFAULT_MAX_BYTES: Final = 256 * 1024
DEFAULT_MAX_DEPTH: Final = 32
DEFAULT_MAX_VALUES: Final = 512
"""JSON values in one message at most, checked before parsing (an intent the brain sends
holds 50 to 70: tests/fixtures/contract/hmac-vectors.json; a policy change about 20). The
cost of what follows the parse grows with it (README, "Hostile input")."""
DEFAULT_TOLERANCE_MS: Final = 300_000
_MAX_SAFE_INTEGER: Final = 2**53
_T = TypeVar("_T")

IntentStatus = Literal["PENDING", "VALIDATED", "REJECTED", "EXECUTED", "EXPIRED"]
_DIRECTIONS: Final[tuple[int, ...]] = get_args(Direction)
_INTENT_TYPES: Final[tuple[str, ...]] = get_args(IntentType)

_NONCE_RE: Final = re.compile(r"[\x21-\x7e]{1,128}\Z")

# Optional payload properties of the JSON Schema that Intent does not expose, by type;
# they are still type-checked when present.
_OTHER_STRINGS: Final = ("rejection_reason", "trap_type")
_OTHER_INTEGERS: Final = ("t_analysis", "t_decision", "t_ingress", "t_exchange")
_OTHER_INTEGERS_2: Final = ("regime_state", "phase")
_OTHER_NUMBERS: Final = ("expected_impact_bps", "fill_feasibility", "velocity")


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed (not yet verified) envelope. `payload_raw` is what the signature covers."""

    type: str
    version: int
    producer: str
    ts_ms: int
    nonce: str
    sig: str
    payload_raw: dict[str, Any]
    payload_exact: dict[str, Any]
    id: str | None = None
    key_id: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    policy_hash: str | None = None


# ---------------------------------------------------------------------------------------
# Field reading with readable errors


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float | Decimal):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _Fields:
    """Reads typed fields of one JSON object; errors carry `code` and the field path."""

    def __init__(self, obj: dict[str, Any], prefix: str, code: WireErrorCode) -> None:
        self._obj = obj
        self._prefix = prefix
        self._code = code

    def path(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def fail(self, name: str, problem: str) -> WireError:
        return WireError(self._code, f"{self.path(name)}: {problem}")

    def _mistyped(self, name: str, expected: str, value: object) -> WireError:
        return self.fail(name, f"expected {expected}, got {_kind(value)}")

    def get(self, name: str, *, required: bool) -> object:
        value = self._obj.get(name)
        if value is None and required:
            if name in self._obj:
                return value  # present but null: let the type check name it
            raise self.fail(name, "required field missing")
        return value

    def string(self, name: str, *, required: bool, non_empty: bool = False) -> str | None:
        value = self.get(name, required=required)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self._mistyped(name, "a string", value)
        if non_empty and not value:
            raise self.fail(name, "must not be empty")
        return value

    def integer(self, name: str, *, required: bool, lo: int | None = None) -> int | None:
        value = self.get(name, required=required)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._mistyped(name, "an integer", value)
        if lo is not None and value < lo:
            raise self.fail(name, f"must be >= {lo}, got {value}")
        if not -_MAX_SAFE_INTEGER < value < _MAX_SAFE_INTEGER:
            raise self.fail(name, "integer out of the safe range (|n| < 2**53)")
        return value

    def _as_decimal(self, name: str, value: object) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise self._mistyped(name, "a number", value)
        result = js_decimal(value) if isinstance(value, int) else value
        if not result.is_finite():  # unreachable after parse_json_strict; kept as a guard
            raise self.fail(name, "must be a finite number")
        return result

    def number(self, name: str, *, required: bool) -> Decimal | None:
        value = self.get(name, required=required)
        if value is None and not required:
            return None
        return self._as_decimal(name, value)

    def numbers(self, name: str) -> tuple[Decimal, ...]:
        value = self.get(name, required=False)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._mistyped(name, "an array of numbers", value)
        return tuple(self._as_decimal(f"{name}[{i}]", item) for i, item in enumerate(value))

    def one_of(self, name: str, allowed: tuple[str, ...]) -> str:
        value = _required(self.string(name, required=True))
        if value not in allowed:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise self.fail(name, f"expected one of {', '.join(allowed)}, got {shown!r}")
        return value


# ---------------------------------------------------------------------------------------
# Parsing


def _kept(value: Any) -> Any:
    """The parsed tree as the signer's JavaScript sees it, in values that always encode:
    floats as the Decimal of the double's shortest digits, strings (and keys) as their
    `js_view`. Integers stay integers (the integer fields check their own range).
    Recursion is bounded by the depth limit checked by the parser."""
    if isinstance(value, str):
        return js_view(value)
    if isinstance(value, float):
        return js_decimal(value)
    if isinstance(value, dict):
        return {js_view(k): _kept(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_kept(v) for v in value]
    return value


def kept_view(value: Any) -> Any:
    """A parsed JSON tree as the signer's JavaScript sees it (see `_kept`)."""
    return _kept(value)


def parse_envelope(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_values: int = DEFAULT_MAX_VALUES,
) -> Envelope:
    """Wire bytes -> `Envelope`, or raise `WireError` (too_large, invalid_utf8, not_json,
    too_deep, envelope)."""
    parsed = parse_json_strict(
        data, max_bytes=max_bytes, max_depth=max_depth, max_values=max_values
    )
    if not isinstance(parsed, dict):
        raise WireError("envelope", f"envelope: expected an object, got {_kind(parsed)}")
    payload_raw = parsed.get("payload")
    kept = _kept(parsed)
    f = _Fields(kept, "", "envelope")
    if not isinstance(payload_raw, dict):
        if "payload" not in kept:
            raise f.fail("payload", "required field missing")
        raise f.fail("payload", f"expected an object, got {_kind(payload_raw)}")
    # an envelope without a signature is refused as a signature failure (before its other
    # fields), as the consumers of the reject telemetry count it
    if parsed.get("sig") is None:
        raise WireError("signature", "hmac_signature_mismatch: the envelope is not signed")
    # nonce and sig are checked as sent: printable ASCII only (a lone surrogate in a nonce
    # must not pass as its six-character view)
    nonce = _Fields(parsed, "", "envelope").string("nonce", required=True)
    assert nonce is not None
    if not _NONCE_RE.match(nonce):
        raise f.fail("nonce", "must be 1 to 128 printable ASCII characters")
    # a sig that is not 64 hex digits does not verify (signing.verify)
    sig = _Fields(parsed, "", "envelope").string("sig", required=True)
    assert sig is not None
    return Envelope(
        type=_required(f.string("type", required=True, non_empty=True)),
        version=_required(f.integer("version", required=True)),
        producer=_required(f.string("producer", required=True)),
        ts_ms=_required(f.integer("ts", required=True, lo=0)),
        nonce=nonce,
        sig=sig,
        payload_raw=payload_raw,
        payload_exact=kept["payload"],
        id=f.string("id", required=False),
        key_id=f.string("key_id", required=False, non_empty=True),
        correlation_id=f.string("correlation_id", required=False),
        idempotency_key=f.string("idempotency_key", required=False),
        policy_hash=f.string("policy_hash", required=False),
    )


def _required(value: _T | None) -> _T:
    # `_Fields` never returns None for a required field; this only narrows the type.
    assert value is not None
    return value


def parse_intent(envelope: Envelope) -> Intent:
    """The envelope's payload checked against the intent schema, or WireError("schema")."""
    f = _Fields(envelope.payload_exact, "payload.", "schema")
    t_signal = f.integer("t_signal", required=False, lo=0)
    timestamp = f.integer("timestamp", required=False, lo=0)
    if t_signal is None and timestamp is None:
        raise f.fail("t_signal", "required field missing (or its alias timestamp)")
    # both present: t_signal wins (the brain's SignalProcessor sets `timestamp` to the
    # publish time, `t_signal` to the signal's; freshness is measured from the signal)
    direction = f.integer("direction", required=True)
    if direction not in _DIRECTIONS:
        raise f.fail("direction", f"expected one of -1, 0, 1, got {direction}")
    for name in _OTHER_STRINGS:
        f.string(name, required=False)
    for name in _OTHER_INTEGERS + _OTHER_INTEGERS_2:
        f.integer(name, required=False)
    for name in _OTHER_NUMBERS:
        f.number(name, required=False)
    metadata = envelope.payload_exact.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise f.fail("metadata", f"expected an object, got {_kind(metadata)}")
    return Intent(
        signal_id=_required(f.string("signal_id", required=True, non_empty=True)),
        symbol=_required(f.string("symbol", required=True, non_empty=True)),
        direction=cast(Direction, direction),
        type=cast(IntentType, f.one_of("type", _INTENT_TYPES)),
        size=_required(f.number("size", required=True)),
        # any status is read; only PENDING / VALIDATED execute (the core's rule), so an
        # upstream FAILED is `intent_not_executable`, not a schema error
        status=_required(f.string("status", required=True, non_empty=True)),
        t_signal_ms=_required(t_signal if t_signal is not None else timestamp),
        entry_zone=f.numbers("entry_zone"),
        # upstream writes 0 for "none": `stop_loss: 0`, `take_profits: [0]`
        stop_loss=f.number("stop_loss", required=False) or None,
        take_profits=tuple(tp for tp in f.numbers("take_profits") if tp != 0),
        exchange=f.string("exchange", required=False),
        position_mode=f.string("position_mode", required=False),
        policy_hash=f.string("policy_hash", required=False),
        leverage=f.number("leverage", required=False),
        confidence=f.number("confidence", required=False),
        max_slippage_bps=f.integer("max_slippage_bps", required=False),
        source=f.string("source", required=False),
        schema_version=f.string("schema_version", required=False),
        metadata=metadata if metadata is not None else {},
        child_fills=envelope.payload_exact.get("child_fills"),
    )


# ---------------------------------------------------------------------------------------
# Verification and signing


def verify_envelope(
    envelope: Envelope,
    keyring: Keyring,
    *,
    now_ms: int,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> WireError | None:
    """None if the HMAC verifies and `|now_ms - ts| <= tolerance_ms`, else the refusal:
    `signature` (message starts with `hmac_signature_mismatch`) or `stale_timestamp`."""
    result = verify(
        keyring, envelope.key_id, envelope.ts_ms, envelope.nonce, envelope.payload_raw, envelope.sig
    )
    if not result.ok:
        return WireError("signature", result.reason)
    skew_ms = now_ms - envelope.ts_ms
    if abs(skew_ms) > tolerance_ms:
        return WireError(
            "stale_timestamp",
            f"ts {envelope.ts_ms} is {skew_ms} ms from now, tolerance is {tolerance_ms} ms",
        )
    return None


def sign_envelope(
    payload: Mapping[str, Any],
    *,
    secret: bytes,
    ts_ms: int,
    nonce: str,
    type_: str,
    producer: str,
    key_id: str | None = DEFAULT_KEY_ID,
    id: str | None = None,  # the wire name
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
    policy_hash: str | None = None,
    version: int = 1,
) -> bytes:
    """Signed envelope bytes, as a TypeScript producer would send them.

    The payload goes on the wire in canonical form (Decimals as the double they denote),
    and the signature is computed over exactly what a receiver will parse from it.
    Optional fields that are None are left out.
    """
    wire_payload = json.loads(canonical_json(payload))
    envelope: dict[str, Any] = {
        "type": type_,
        "version": version,
        "producer": producer,
        "ts": ts_ms,
        "nonce": nonce,
        "sig": sign(secret, ts_ms, nonce, wire_payload),
        "payload": wire_payload,
    }
    optional = {
        "id": id,
        "key_id": key_id,
        "correlation_id": correlation_id,
        "idempotency_key": idempotency_key,
        "policy_hash": policy_hash,
    }
    envelope.update({k: v for k, v in optional.items() if v is not None})
    return canonical_json(envelope).encode("utf-8")
