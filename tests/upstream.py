"""The upstream producers' messages (`tests/fixtures/upstream/producer_*.json`), made ready
to publish: placeholders filled in, envelopes signed the way the shared `publishEnvelope`
signs them, RiskManager's inner signature added where its producer adds one.

Placeholders: `$NOW` (ms), `$NOW_ISO`, `$T_SIGNAL` (the signal's own time, earlier than
`$NOW`), `$SIGNAL`, `$VENUE`, `$UUID`, `$POLICY_HASH`, `$POLICY` (the canonical policy)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.builders import FIXTURES, NOW, SECRET, default_policy
from titan_exec.wire.canonical import sha256_hex_canonical
from titan_exec.wire.envelope import sign_envelope

UPSTREAM = FIXTURES / "upstream"


@dataclass(frozen=True, slots=True)
class Message:
    subject: str
    data: bytes
    headers: dict[str, str]
    source: str


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((UPSTREAM / f"{name}.json").read_text())
    return doc


def _fill(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if value in values:
            return values[value]
        for key, v in values.items():
            if key in value and isinstance(v, str | int):
                value = value.replace(key, str(v))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def message(
    name: str,
    *,
    now: int = NOW,
    signal: str = "sig-up-1",
    venue: str = "sim",
    t_signal_ago_ms: int = 40,
    secret: bytes = SECRET,
    policy: dict[str, Any] | None = None,
    ns: str = "execution",
    sign: bool | None = None,
) -> Message:
    """The fixture `name` as its producer publishes it (`sign` overrides whether it is)."""
    doc = fixture(name)
    pol = policy if policy is not None else default_policy()
    values: dict[str, Any] = {
        "$NOW_ISO": datetime.fromtimestamp(now / 1000, UTC).isoformat(),
        "$NOW": now,
        "$T_SIGNAL": now - t_signal_ago_ms,
        "$SIGNAL": signal,
        "$VENUE": venue,
        "$UUID": str(uuid.uuid4()),
        "$POLICY_HASH": sha256_hex_canonical(pol),
        "$POLICY": pol,
    }
    subject = _fill(doc["subject"], values).replace("titan.cmd.execution.", f"titan.cmd.{ns}.")
    headers: dict[str, str] = {}
    if "nats_msg_id" in doc:
        headers["Nats-Msg-Id"] = _fill(doc["nats_msg_id"], values)
    is_signed = doc.get("signed", "payload" in doc) if sign is None else sign
    if "payload" in doc:
        payload = _fill(doc["payload"], values)
        if doc.get("inner_signed"):
            text = ":".join(
                str(payload[k]) for k in ("timestamp", "action", "actor_id", "command_id")
            )
            payload["signature"] = hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
        env = _fill(doc["envelope"], values)
        if is_signed:
            data = sign_envelope(
                payload,
                secret=secret,
                ts_ms=now,
                nonce=uuid.uuid4().hex,
                type_=env["type"].replace("titan.cmd.execution.", f"titan.cmd.{ns}."),
                producer=env["producer"],
                id=str(uuid.uuid4()),
                correlation_id=env.get("correlation_id"),
                idempotency_key=env.get("idempotency_key"),
                version=env.get("version", 1),
            )
        else:
            data = json.dumps({**env, "ts": now, "payload": payload}).encode()
    else:
        data = json.dumps(_fill(doc["body"], values)).encode()
    return Message(subject, data, headers, doc["_source"])


def risk_state_bodies() -> list[bytes]:
    return [b.encode() for b in fixture("producer_risk_state")["bodies"]]
