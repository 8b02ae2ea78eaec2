"""The ingress edge: a `TITAN_CMD` message, (subject, bytes, now), to one typed command
(`core/commands.py`). Pure: time and secrets are arguments.

The subject is read once (`Subjects.command`); the body within the command limits; the
envelope's HMAC and timestamp, and RiskManager's inner signature, are verified here. What
is left to the core is what needs the state: whether a verified nonce was seen before (the
nonce window is folded state), and every decision after it.

    place subject    -> PlaceOrder | InvalidInput(invalid_subject, invalid_envelope,
                        hmac_signature_mismatch, stale_timestamp, schema_invalid)
    control subject  -> ControlCommand | InvalidInput(invalid_subject, invalid_envelope)
    anything else    -> InvalidInput(unknown_command)

The control forms and how each is read are listed in `core/controls.py`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from titan_exec.core.commands import (
    Command,
    ControlBody,
    ControlCommand,
    ControlRequest,
    Failure,
    InvalidInput,
    PlaceOrder,
    Signature,
)
from titan_exec.core.events import RISK_STATES, SeenNonce
from titan_exec.core.model import ControlAction
from titan_exec.wire.canonical import js_number_to_string, parse_json_strict
from titan_exec.wire.envelope import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_VALUES,
    DEFAULT_TOLERANCE_MS,
    Envelope,
    kept_view,
    parse_envelope,
    parse_intent,
    verify_envelope,
)
from titan_exec.wire.errors import WireError
from titan_exec.wire.signing import Keyring
from titan_exec.wire.subjects import (
    UPSTREAM_ARM,
    UPSTREAM_DISARM,
    UPSTREAM_FLATTEN,
    UPSTREAM_HALT,
    UPSTREAM_POLICY,
    UPSTREAM_RISK_CONTROL,
    CommandSubject,
    Subjects,
)
from titan_exec.wire.text import has_raw_bytes, has_surrogates, printable_subject

__all__ = [
    "INNER_KEY_ID",
    "IngressConfig",
    "ReceivedCommand",
    "read_command",
    "read_risk_state",
]

INNER_KEY_ID = "riskmanager"
"""Nonce scope of RiskManager's inner signatures (their command id is the nonce)."""
_TEXT_LIMIT = 200
_HALT_STATES = {"HARD_HALT": ControlAction.HALT, "SOFT_HALT": ControlAction.HALT}
_RESUME_STATES = {"OPEN": ControlAction.OPEN}
_NAMED_ACTIONS = {
    "HALT": ControlAction.HALT,
    "FLATTEN": ControlAction.FLATTEN,
    "FLATTEN_ALL": ControlAction.FLATTEN,
    "DISARM": ControlAction.DISARM,
    "ARM": ControlAction.ARM,
    "OPEN": ControlAction.OPEN,
    "RESUME": ControlAction.OPEN,
}
_NOT_FOR_US = frozenset({"OVERRIDE_ALLOCATION"})


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    seq: int
    """Stream sequence in TITAN_CMD: the command's identity."""
    subject: str
    data: bytes
    t_ingress_ms: int


@dataclass(frozen=True, slots=True)
class IngressConfig:
    subjects: Subjects
    keyring: Keyring
    tolerance_ms: int = DEFAULT_TOLERANCE_MS
    max_payload_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_values: int = DEFAULT_MAX_VALUES


def read_command(
    cmd: ReceivedCommand, cfg: IngressConfig, now_ms: int, route: CommandSubject | None = None
) -> Command:
    """The typed command of one message (`route`: its subject, when already read)."""
    route = route if route is not None else cfg.subjects.command(cmd.subject)
    if route.kind == "place":
        return _read_place(cmd, route, cfg, now_ms)
    if route.kind == "control":
        return _read_control(cmd, route, cfg, now_ms)
    return InvalidInput(
        cmd.seq,
        cmd.t_ingress_ms,
        "other",
        "unknown_command",
        f"no handler for subject {printable_subject(cmd.subject)[:300]}",
    )


def _parse_any(data: bytes, cfg: IngressConfig) -> object:
    return parse_json_strict(
        data, max_bytes=cfg.max_payload_bytes, max_depth=cfg.max_depth, max_values=cfg.max_values
    )


def _invalid_subject(subject: str) -> str:
    return f"subject is not UTF-8: {printable_subject(subject)[:300]}"


def _signal_of(payload: object) -> str:
    signal = payload.get("signal_id") if isinstance(payload, dict) else None
    return signal if isinstance(signal, str) and signal and signal.isprintable() else "N/A"


def _peek_signal_id(data: bytes, cfg: IngressConfig) -> str:
    """The `signal_id` of bytes that are not a readable envelope, for the telemetry of a
    command refused unread (halted, disarmed); `N/A` if the bytes do not hold one."""
    try:
        env = _parse_any(data, cfg)
    except WireError:
        return "N/A"
    return _signal_of(env.get("payload") if isinstance(env, dict) else None)


def _ids(env: Envelope) -> dict[str, str]:
    """The ids reject telemetry carries: the payload's `signal_id` as `intent_id` (as the
    old service and the upstream consumers read it) and the envelope's own id."""
    signal = env.payload_exact.get("signal_id")
    return {
        "intent_id": signal if isinstance(signal, str) and signal else "N/A",
        "envelope_id": env.id or "N/A",
    }


def _verify(env: Envelope, cfg: IngressConfig, now_ms: int) -> SeenNonce | Failure:
    failure = verify_envelope(env, cfg.keyring, now_ms=now_ms, tolerance_ms=cfg.tolerance_ms)
    if failure is not None:
        code = "hmac_signature_mismatch" if failure.code == "signature" else failure.code
        return Failure(code, failure.message)
    return SeenNonce(key_id=env.key_id or "default", nonce=env.nonce, ts_ms=env.ts_ms)


def _read_place(
    cmd: ReceivedCommand, route: CommandSubject, cfg: IngressConfig, now_ms: int
) -> PlaceOrder | InvalidInput:
    def invalid(code: str, message: str, hint: str, **more: Any) -> InvalidInput:
        return InvalidInput(
            cmd.seq, cmd.t_ingress_ms, "place", code, message, signal_hint=hint, **more
        )

    if has_raw_bytes(cmd.subject):
        return invalid("invalid_subject", _invalid_subject(cmd.subject), _peek(cmd, cfg))
    try:
        if route.place is None:
            raise WireError("subject", route.error)
        env = parse_envelope(
            cmd.data,
            max_bytes=cfg.max_payload_bytes,
            max_depth=cfg.max_depth,
            max_values=cfg.max_values,
        )
    except WireError as err:
        hint = _peek(cmd, cfg)
        if err.code == "signature":
            return invalid("hmac_signature_mismatch", err.message, hint)
        return invalid("invalid_envelope", f"invalid envelope: {err.message}", hint)
    hint, ids = _signal_of(env.payload_raw), _ids(env)
    verified = _verify(env, cfg, now_ms)
    if isinstance(verified, Failure):
        return invalid(verified.code, verified.message, hint, **ids)
    try:
        intent = parse_intent(env)
    except WireError as err:
        return invalid("schema_invalid", err.message, hint, nonce=verified, **ids)
    return PlaceOrder(
        seq=cmd.seq,
        t_ingress_ms=cmd.t_ingress_ms,
        venue=route.place.venue,
        account=route.place.account,
        symbol=route.place.symbol,
        intent=intent,
        nonce=verified,
        policy_hash=env.policy_hash or intent.policy_hash,
        correlation_id=env.correlation_id or intent.signal_id,
        signal_hint=hint,
        **ids,
    )


def _peek(cmd: ReceivedCommand, cfg: IngressConfig) -> str:
    return _peek_signal_id(cmd.data, cfg)


# --- controls ----------------------------------------------------------------------------


def _read_control(
    cmd: ReceivedCommand, route: CommandSubject, cfg: IngressConfig, now_ms: int
) -> ControlCommand | InvalidInput:
    if has_raw_bytes(cmd.subject):
        message = _invalid_subject(cmd.subject)
        return InvalidInput(cmd.seq, cmd.t_ingress_ms, "control", "invalid_subject", message)
    body = _read_body(cmd.data, cfg, now_ms)
    if isinstance(body, Failure):
        return InvalidInput(cmd.seq, cmd.t_ingress_ms, "control", body.code, body.message)
    return ControlCommand(cmd.seq, cmd.t_ingress_ms, _wanted(cmd.subject, route, body), body)


def _printable(data: bytes) -> str:
    text = data[:_TEXT_LIMIT].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def _raw_text(value: object) -> str | None:
    """A value as JavaScript's template literal writes it (`${value}`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number_to_string(value)
    if isinstance(value, str):
        return value
    return None


def _inner(raw: dict[str, Any], cfg: IngressConfig, now_ms: int) -> Signature:
    """RiskManager's inner signature of a body: verified (its command id as the nonce),
    failed, or None (the body carries none)."""
    signature = raw.get("signature")
    if not isinstance(signature, str):
        return None
    bad = Failure("hmac_signature_mismatch", "the inner signature did not verify")
    parts = [_raw_text(raw.get(k)) for k in ("timestamp", "action", "actor_id", "command_id")]
    ts = raw.get("timestamp")
    if any(p is None for p in parts) or isinstance(ts, bool) or not isinstance(ts, int):
        return bad
    message = ":".join(p for p in parts if p is not None).encode()
    matched = False
    for key_id in sorted(cfg.keyring.key_ids):
        secret = cfg.keyring.secret_for(key_id)
        if secret is None:
            continue
        expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(expected, signature.lower())
    if not matched or abs(now_ms - ts) > cfg.tolerance_ms:
        return bad
    return SeenNonce(key_id=INNER_KEY_ID, nonce=str(parts[3])[:128], ts_ms=ts)


def _policy_surrogates(raw: dict[str, Any]) -> bool:
    nested = raw.get("policy")
    return _has_surrogate_text(nested if isinstance(nested, dict) else raw)


def _has_surrogate_text(value: object) -> bool:
    if isinstance(value, str):
        return has_surrogates(value)
    if isinstance(value, dict):
        return any(has_surrogates(k) or _has_surrogate_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate_text(v) for v in value)
    return False


def _object_body(
    raw: dict[str, Any], cfg: IngressConfig, now_ms: int, envelope: Signature, envelope_id: str
) -> ControlBody:
    return ControlBody(
        kept_view(raw),
        raw,
        "",
        envelope=envelope,
        inner=_inner(raw, cfg, now_ms),
        envelope_id=envelope_id,
        policy_has_surrogates=_policy_surrogates(raw),
    )


def _read_body(data: bytes, cfg: IngressConfig, now_ms: int) -> ControlBody | Failure:
    try:
        parsed = _parse_any(data, cfg)
    except WireError as err:
        if err.code in ("too_large", "too_deep"):
            return Failure("invalid_envelope", f"invalid control: {err.message}")
        return ControlBody(None, None, _printable(data))
    if not isinstance(parsed, dict):
        return ControlBody(None, None, _printable(data))
    payload = parsed.get("payload")
    if not (
        isinstance(payload, dict) and ("sig" in parsed or "nonce" in parsed or "type" in parsed)
    ):
        return _object_body(parsed, cfg, now_ms, None, "N/A")
    env_id = parsed.get("id")
    envelope_id = env_id if isinstance(env_id, str) and env_id else "N/A"
    if parsed.get("sig") is None:
        return _object_body(payload, cfg, now_ms, None, envelope_id)
    try:
        env = parse_envelope(
            data,
            max_bytes=cfg.max_payload_bytes,
            max_depth=cfg.max_depth,
            max_values=cfg.max_values,
        )
    except WireError as err:
        failed = Failure("hmac_signature_mismatch", err.message)
        return _object_body(payload, cfg, now_ms, failed, envelope_id)
    return _object_body(payload, cfg, now_ms, _verify(env, cfg, now_ms), envelope_id)


def _upper(fields: dict[str, Any] | None, key: str) -> str | None:
    value = fields.get(key) if fields is not None else None
    return value.strip().upper() if isinstance(value, str) else None


def _wanted(subject: str, route: CommandSubject, body: ControlBody) -> ControlRequest | Failure:
    """What the subject and body ask for (the table in `core/controls.py`)."""
    fields, ours = body.fields, route.action
    if ours is not None:
        try:
            action = ControlAction(ours)
        except ValueError:
            return Failure("unknown_action", f"unknown control action {ours[:60]!r}")
        named = fields.get("action") if fields is not None else None
        if named is not None and named != ours:
            return Failure(
                "schema_invalid",
                f"payload action {named!r} does not match subject action {ours!r}",
            )
        return ControlRequest(action, f"control.v1.{ours}")
    if subject == UPSTREAM_HALT:
        return _halt(fields)
    if subject in UPSTREAM_FLATTEN:
        command = _upper(fields, "command") or _upper(fields, "action")
        if command is not None and command not in ("FLATTEN_ALL", "FLATTEN"):
            return Failure("unknown_action", f"command {command[:60]!r} on the flatten subject")
        return ControlRequest(ControlAction.FLATTEN, "risk.flatten")
    if subject in (UPSTREAM_ARM, UPSTREAM_DISARM):
        return _operator(fields, ControlAction.ARM if subject == UPSTREAM_ARM else None)
    if subject == UPSTREAM_POLICY:
        return ControlRequest(ControlAction.POLICY, "risk.policy")
    if subject == UPSTREAM_RISK_CONTROL:
        named = _upper(fields, "action")
        if named is None:
            return Failure("schema_invalid", "risk control without an action")
        if named in _NOT_FOR_US:
            return ControlRequest(None, "risk.control", not_for_us=named)
        by_name = _NAMED_ACTIONS.get(named)
        if by_name is None:
            return Failure("unknown_action", f"unknown risk control action {named[:60]!r}")
        return ControlRequest(by_name, "risk.control")
    return Failure("unknown_command", f"no control handler for subject {subject[:200]}")


def _halt(fields: dict[str, Any] | None) -> ControlRequest | Failure:
    state, named = _upper(fields, "state"), _upper(fields, "action")
    if state is not None:
        by_state = _HALT_STATES.get(state) or _RESUME_STATES.get(state)
        if by_state is None:
            return Failure("unknown_action", f"unknown system state {state[:60]!r}")
        return ControlRequest(by_state, "sys.halt")
    if named is not None and named != "HALT":
        return Failure("unknown_action", f"action {named[:60]!r} on the halt subject")
    return ControlRequest(ControlAction.HALT, "sys.halt")


def _operator(fields: dict[str, Any] | None, arm: ControlAction | None) -> ControlRequest | Failure:
    action = arm or ControlAction.DISARM
    expected = "ARM_SYSTEM" if action is ControlAction.ARM else "DISARM_SYSTEM"
    kind, named = _upper(fields, "type"), _upper(fields, "action")
    if (kind is not None and kind != expected) or (
        named is not None and _NAMED_ACTIONS.get(named) is not action
    ):
        return Failure(
            "schema_invalid", f"body ({kind or named}) contradicts the {action.value} subject"
        )
    return ControlRequest(action, f"operator.{action.value}")


# --- the brain's risk posture (RiskGuardian, `titan.evt.risk.state.v1`) ---------------------


def read_risk_state(data: bytes, max_bytes: int = 4096) -> str | Failure:
    """The risk state a RiskGuardian message names (a bare JSON string, `"Defensive"`; an
    object with `state` is read too), matched without regard to case, or why not."""
    try:
        parsed = parse_json_strict(data, max_bytes=max_bytes, max_depth=4, max_values=64)
    except WireError as err:
        return Failure("unknown_risk_state", f"risk state message unreadable: {err.message}")
    if isinstance(parsed, dict):
        parsed = parsed.get("state", parsed.get("risk_state"))
    if not isinstance(parsed, str):
        return Failure("unknown_risk_state", "a risk state must be a JSON string")
    by_name = {s.lower(): s for s in RISK_STATES}
    name = by_name.get(parsed.strip().lower())
    if name is None:
        shown = "".join(c if c.isprintable() else "?" for c in parsed[:40])
        return Failure(
            "unknown_risk_state",
            f"risk state {shown!r} is not one of {', '.join(RISK_STATES)}",
        )
    return name
