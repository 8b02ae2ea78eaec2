"""The wire codec's one error type, `WireError`, and its closed set of codes.

A `WireError` means "the peer sent something we refuse": it is raised by the parsers in
this package and returned (as a value) by the verifiers. Each carries a machine-readable
`code` (stable, used for metrics, reject telemetry and DLQ reasons) and a human `message`
that names the offending field or limit.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

WireErrorCode = Literal[
    "too_large",  # payload over the byte limit
    "invalid_utf8",  # bytes are not UTF-8
    "not_json",  # not strict JSON (syntax, NaN/Infinity, duplicate key, number out of range)
    "too_deep",  # nesting deeper than the limit
    "envelope",  # envelope fields missing or mistyped (type, version, ts, nonce, sig, ...)
    "schema",  # intent payload violates the intent JSON Schema
    "signature",  # HMAC mismatch or unknown key_id (telemetry reason hmac_signature_mismatch)
    "stale_timestamp",  # envelope ts outside the signature tolerance
    "replayed",  # nonce seen before within the tolerance window
    "expired",  # intent older than the freshness threshold (decided by the core)
    "subject",  # a NATS subject that does not match the expected shape
]

WIRE_ERROR_CODES: Final[frozenset[str]] = frozenset(get_args(WireErrorCode))


class WireError(Exception):
    """A refused wire input: `code` for machines, `message` for humans."""

    code: WireErrorCode
    message: str

    def __init__(self, code: WireErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"WireError({self.code!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WireError):
            return NotImplemented
        return (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))
