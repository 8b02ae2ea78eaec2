"""HMAC-SHA256 intent signatures: the signed string, signing, constant-time verification,
and the `Keyring` of secrets selected by `key_id`.

    sig = hex(HMAC_SHA256(secret, f"{ts}.{nonce}.{canonical_json(payload)}"))

`payload` is the float-parsed payload (see `canonical.py`), so the string is the one a
TypeScript producer signs. Verification failures are values (`Verification`), never
exceptions: the reject telemetry reason for any of them is `hmac_signature_mismatch`.
Secrets never appear in a repr.

Pure: no I/O, clock or logging.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from titan_exec.wire.canonical import canonical_json

__all__ = [
    "DEFAULT_KEY_ID",
    "SIGNATURE_MISMATCH",
    "Keyring",
    "Verification",
    "sign",
    "signing_string",
    "verify",
]

DEFAULT_KEY_ID: Final = "default"
SIGNATURE_MISMATCH: Final = "hmac_signature_mismatch"
_SIG_RE: Final = re.compile(r"[0-9a-fA-F]{64}\Z")


def signing_string(ts: int, nonce: str, payload: object) -> str:
    """The exact string that is MAC'd: `"{ts}.{nonce}.{canonical_json(payload)}"`."""
    return f"{ts}.{nonce}.{canonical_json(payload)}"


def sign(secret: bytes, ts: int, nonce: str, payload: object) -> str:
    """Lower-case hex HMAC-SHA256 of `signing_string(ts, nonce, payload)`."""
    message = signing_string(ts, nonce, payload).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    """Outcome of a signature check: `ok`, or a `reason` starting with
    `hmac_signature_mismatch` followed by the detail."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


_VERIFIED: Final = Verification(ok=True)


@dataclass(frozen=True, slots=True)
class Keyring:
    """HMAC secrets by key id. An envelope without `key_id` uses `default_key_id`.

    Build with `Keyring({"default": b"..."})` or `Keyring.single(b"...")`. Refuses to be
    empty or to hold an empty secret, so "no secret configured" cannot reach verification.
    """

    secrets: Mapping[str, bytes] = field(repr=False)
    default_key_id: str = DEFAULT_KEY_ID

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("a keyring needs at least one secret")
        for key_id, secret in self.secrets.items():
            if not key_id:
                raise ValueError("key ids must be non-empty")
            if not isinstance(secret, bytes) or not secret:
                raise ValueError(f"secret for key id {key_id!r} must be non-empty bytes")
        object.__setattr__(self, "secrets", MappingProxyType(dict(self.secrets)))

    @classmethod
    def single(cls, secret: bytes, key_id: str = DEFAULT_KEY_ID) -> Keyring:
        """A keyring holding one secret, which is also the default."""
        return cls({key_id: secret}, default_key_id=key_id)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self.secrets)

    def secret_for(self, key_id: str | None) -> bytes | None:
        """The secret for `key_id` (None means the default key id), or None if unknown."""
        return self.secrets.get(self.default_key_id if key_id is None else key_id)

    def __repr__(self) -> str:
        return f"Keyring(key_ids={sorted(self.secrets)!r}, default_key_id={self.default_key_id!r})"


def verify(
    keyring: Keyring,
    key_id: str | None,
    ts: int,
    nonce: str,
    payload: object,
    sig: str,
) -> Verification:
    """Check `sig` against the secret selected by `key_id`, in constant time."""
    secret = keyring.secret_for(key_id)
    if secret is None:
        shown = keyring.default_key_id if key_id is None else key_id
        return Verification(False, f"{SIGNATURE_MISMATCH}: unknown key_id {shown[:64]!r}")
    if _SIG_RE.match(sig) is None:
        return Verification(False, f"{SIGNATURE_MISMATCH}: sig is not 64 hex digits")
    message = signing_string(ts, nonce, payload).encode("utf-8")
    expected = hmac.new(secret, message, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, bytes.fromhex(sig)):
        return Verification(False, SIGNATURE_MISMATCH)
    return _VERIFIED
