"""HMAC signatures: the TypeScript vectors verify, any change to what is signed fails,
and the key id picks the secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from titan_exec.wire.signing import (
    SIGNATURE_MISMATCH,
    Keyring,
    Verification,
    sign,
    signing_string,
    verify,
)

CONTRACT = Path(__file__).resolve().parents[1] / "fixtures" / "contract"
VECTORS: list[dict[str, Any]] = json.loads((CONTRACT / "hmac-vectors.json").read_text())["vectors"]
HEX = "0123456789abcdef"


@pytest.fixture(params=VECTORS, ids=lambda v: v["name"])
def vector(request: pytest.FixtureRequest) -> dict[str, Any]:
    v: dict[str, Any] = request.param
    return v


def _verify(v: dict[str, Any], **changes: Any) -> Verification:
    args: dict[str, Any] = {
        "keyring": Keyring.single(v["secret"].encode()),
        "key_id": None,
        "ts": v["ts"],
        "nonce": v["nonce"],
        "payload": json.loads(v["payload_wire"]),
        "sig": v["sig"],
    }
    args.update(changes)
    return verify(**args)


def test_vector_signing_string_and_signature_match(vector: dict[str, Any]) -> None:
    payload = json.loads(vector["payload_wire"])
    assert signing_string(vector["ts"], vector["nonce"], payload) == vector["canonical"]
    assert sign(vector["secret"].encode(), vector["ts"], vector["nonce"], payload) == vector["sig"]


def test_vector_verifies(vector: dict[str, Any]) -> None:
    result = _verify(vector)
    assert result == Verification(ok=True)
    assert result


def test_upper_case_hex_signature_verifies(vector: dict[str, Any]) -> None:
    assert _verify(vector, sig=vector["sig"].upper()).ok


def test_every_single_signature_digit_change_fails(vector: dict[str, Any]) -> None:
    sig: str = vector["sig"]
    for i, ch in enumerate(sig):
        for replacement in (HEX[(HEX.index(ch) + 1) % 16], HEX[(HEX.index(ch) + 8) % 16]):
            result = _verify(vector, sig=sig[:i] + replacement + sig[i + 1 :])
            assert result == Verification(False, SIGNATURE_MISMATCH), (i, replacement)


def test_malformed_signature_fails_with_a_reason(vector: dict[str, Any]) -> None:
    for bad in ("", vector["sig"][:-1], vector["sig"] + "0", "z" * 64):
        result = _verify(vector, sig=bad)
        assert not result.ok
        assert result.reason.startswith(SIGNATURE_MISMATCH)


def test_every_single_nonce_character_change_fails(vector: dict[str, Any]) -> None:
    nonce: str = vector["nonce"]
    for i, ch in enumerate(nonce):
        changed = nonce[:i] + HEX[(HEX.index(ch) + 1) % 16] + nonce[i + 1 :]
        assert not _verify(vector, nonce=changed).ok, i
    assert not _verify(vector, nonce=nonce + "0").ok
    assert not _verify(vector, nonce=nonce[:-1]).ok


def test_every_single_timestamp_digit_change_fails(vector: dict[str, Any]) -> None:
    ts = str(vector["ts"])
    for i, ch in enumerate(ts):
        changed = ts[:i] + str((int(ch) + 1) % 10) + ts[i + 1 :]
        assert not _verify(vector, ts=int(changed)).ok, i
    assert not _verify(vector, ts=vector["ts"] + 1).ok


def test_different_secret_fails(vector: dict[str, Any]) -> None:
    assert not _verify(vector, keyring=Keyring.single(b"another-secret")).ok


def test_key_id_selects_the_secret(vector: dict[str, Any]) -> None:
    keyring = Keyring({"default": b"wrong", "brain-2": vector["secret"].encode()})
    assert _verify(vector, keyring=keyring, key_id="brain-2").ok
    assert not _verify(vector, keyring=keyring, key_id="default").ok
    assert not _verify(vector, keyring=keyring, key_id=None).ok  # missing -> "default"


def test_missing_key_id_uses_the_default_key(vector: dict[str, Any]) -> None:
    keyring = Keyring({"default": vector["secret"].encode(), "other": b"x"})
    assert _verify(vector, keyring=keyring, key_id=None).ok
    assert _verify(vector, keyring=keyring, key_id="default").ok


def test_unknown_key_id_fails_with_the_key_id_in_the_reason(vector: dict[str, Any]) -> None:
    result = _verify(vector, key_id="rotated-out")
    assert not result.ok
    assert result.reason == f"{SIGNATURE_MISMATCH}: unknown key_id 'rotated-out'"


def test_keyring_refuses_to_be_empty_or_hold_empty_secrets() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Keyring({})
    with pytest.raises(ValueError, match="non-empty bytes"):
        Keyring({"default": b""})
    with pytest.raises(ValueError, match="non-empty"):
        Keyring({"": b"s"})


def test_keyring_repr_never_shows_secrets_and_is_read_only() -> None:
    keyring = Keyring({"default": b"super-secret-value", "k2": b"another-secret"})
    assert "secret-value" not in repr(keyring)
    assert "another" not in repr(keyring)
    assert keyring.key_ids == {"default", "k2"}
    with pytest.raises(TypeError):
        keyring.secrets["k3"] = b"x"  # type: ignore[index]


def test_signature_covers_unknown_fields_and_key_order_does_not_matter() -> None:
    payload = {"b": 1, "a": [0.5, "x"], "extra": {"z": None, "y": True}}
    reordered = {"extra": {"y": True, "z": None}, "a": [0.5, "x"], "b": 1}
    sig = sign(b"s", 1, "n", payload)
    assert sign(b"s", 1, "n", reordered) == sig
    assert sign(b"s", 1, "n", {**payload, "extra": {"z": None, "y": False}}) != sig
