"""Control commands in every form the Titan deployment sends them, and the one security rule
over all of them: **without a valid signature a command may only reduce risk.** Pure.

Everything that affects how a control command is read and authorised lives here.

    subject                               body (as upstream producers send it)       action
    titan.cmd.<ns>.control.v1.<action>    signed envelope, payload {action, ...}      <action>
    titan.cmd.sys.halt.v1                 {state: HARD_HALT | SOFT_HALT, ...}         halt
                                          {state: OPEN, ...}                          open
                                          {action: HALT, ...} (RiskManager, signed)   halt
                                          no state/action, or text (a runbook's)      halt
    titan.cmd.risk.flatten.v1 | .flatten  {command: FLATTEN_ALL, ...} or anything     flatten
    titan.cmd.operator.arm.v1             {type: ARM_SYSTEM, ...}                     arm
    titan.cmd.operator.disarm.v1          {type: DISARM_SYSTEM, ...}                  disarm
    titan.cmd.risk.policy.v1              {policy: <camelCase>, ...} | snake_case     policy
    titan.cmd.risk.control.v1             {action: OVERRIDE_ALLOCATION | HALT | ...}  per action

A body is either a signed envelope (`{..., sig, nonce, payload}`: the command is its payload),
an unsigned envelope (no `sig`), or the bare command. Authentication, in this order:
`signed` (the envelope's HMAC verified and its nonce fresh), `inner_signed` (RiskManager's
own `signature` = HMAC(`timestamp:action:actor_id:command_id`) verified, the timestamp
within the tolerance and the command id not seen before), else `bad_signature` (a signature
was there and did not verify) or `unsigned`. A bad signature counts as none.

Risk-reducing: halt, disarm, flatten, a policy whose every limit is at or inside the active
policy's (it becomes the limits overlay, `core/overlay.py`). Accepted signed, and unsigned
unless `security.unsigned_risk_reducing = "refuse"`. Risk-increasing: open (resume after a
halt), arm, a policy that loosens any limit (only a signed, complete camelCase policy may
replace the active one), allocation overrides. Only signed; otherwise refused with a reason
naming the signed way (`titan-exec send control <action>`).

A body that contradicts its subject (a `type: ARM_SYSTEM` on the disarm subject, an unknown
`state` on the halt subject, an unknown `action`) is refused (`schema_invalid` /
`unknown_action`): the command does not say what it wants. An allocation override that is
signed is recorded as `ignored` (allocation is the brain's; nothing to execute here).
Every command ends in exactly one `ControlDecided`: accepted, rejected or ignored.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from decimal import localcontext
from typing import Any

from titan_exec.core.decide import (
    Decision,
    DecisionConfig,
    ReceivedCommand,
    Refusal,
    invalid_subject,
    parse_any,
    parse_signed,
    verify_signed,
    with_nonce,
)
from titan_exec.core.events import (
    RISK_STATES,
    ControlDecided,
    OrderAccepted,
    RiskStateDecided,
    SeenNonce,
)
from titan_exec.core.model import (
    DECIMAL_CONTEXT,
    ClientOrderId,
    ControlAction,
    OrderType,
    Side,
    client_order_id,
)
from titan_exec.core.overlay import loosened, read_limits
from titan_exec.core.policy import PolicyError, parse_policy
from titan_exec.core.state import State
from titan_exec.wire.canonical import js_number_to_string, parse_json_strict
from titan_exec.wire.envelope import kept_view
from titan_exec.wire.errors import WireError
from titan_exec.wire.replay import NonceCache
from titan_exec.wire.subjects import (
    UPSTREAM_ARM,
    UPSTREAM_DISARM,
    UPSTREAM_FLATTEN,
    UPSTREAM_HALT,
    UPSTREAM_POLICY,
    UPSTREAM_RISK_CONTROL,
)
from titan_exec.wire.text import has_raw_bytes, has_surrogates

__all__ = [
    "RISK_REDUCING",
    "decide_control",
    "decide_risk_state",
    "is_control_subject",
    "read_risk_state",
]

RISK_REDUCING = frozenset({ControlAction.HALT, ControlAction.DISARM, ControlAction.FLATTEN})
RISK_INCREASING = frozenset({ControlAction.OPEN, ControlAction.ARM})
SIGNED = frozenset({"signed", "inner_signed"})
INNER_KEY_ID = "riskmanager"
"""Replay-cache scope of RiskManager's inner signatures (their command id is the nonce)."""
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
_TEXT_LIMIT = 200


def _ours(subject: str, ns: str) -> str | None:
    prefix = f"titan.cmd.{ns}.control.v1."
    return subject[len(prefix) :] if subject.startswith(prefix) else None


def is_control_subject(subject: str, ns: str) -> bool:
    """Whether a `TITAN_CMD` subject is a control command (ours or an upstream form)."""
    if subject in (
        UPSTREAM_HALT,
        *UPSTREAM_FLATTEN,
        UPSTREAM_ARM,
        UPSTREAM_DISARM,
        UPSTREAM_POLICY,
        UPSTREAM_RISK_CONTROL,
    ):
        return True
    parts = subject.split(".")
    return len(parts) >= 4 and parts[2] == ns and parts[3] == "control"


@dataclass(frozen=True, slots=True)
class _Body:
    fields: dict[str, Any] | None
    """The command object as the signer's JavaScript sees it (`kept_view`); None: not one."""
    raw: dict[str, Any] | None
    """The command object as parsed (numbers as the signer hashed them: policies)."""
    text: str
    """A printable form of a body that is not an object (a runbook's `nats pub` text)."""
    authentication: str
    why: str = ""
    """Why a signature did not verify (`bad_signature`)."""
    envelope_id: str = "N/A"
    why_code: str = "hmac_signature_mismatch"
    """The refusal code of that (`nonce_replayed`, `stale_timestamp`, ...)."""


def _printable(data: bytes) -> str:
    text = data[:_TEXT_LIMIT].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


def _string(fields: dict[str, Any] | None, key: str) -> str | None:
    value = fields.get(key) if fields is not None else None
    return value if isinstance(value, str) else None


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


def _inner_signed(
    raw: dict[str, Any], cfg: DecisionConfig, nonces: NonceCache, now_ms: int, seen: list[SeenNonce]
) -> str | None:
    """'inner_signed', 'bad_signature' or None (no inner signature) for a RiskManager body."""
    signature = raw.get("signature")
    if not isinstance(signature, str):
        return None
    parts = [_raw_text(raw.get(k)) for k in ("timestamp", "action", "actor_id", "command_id")]
    ts = raw.get("timestamp")
    if any(p is None for p in parts) or isinstance(ts, bool) or not isinstance(ts, int):
        return "bad_signature"
    message = ":".join(p for p in parts if p is not None).encode()
    matched = False
    for key_id in sorted(cfg.keyring.key_ids):
        secret = cfg.keyring.secret_for(key_id)
        if secret is None:
            continue
        expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(expected, signature.lower())
    if not matched or abs(now_ms - ts) > cfg.tolerance_ms:
        return "bad_signature"
    command_id = str(parts[3])[:128]
    if not nonces.check_and_remember(INNER_KEY_ID, command_id, ts, now_ms):
        return "bad_signature"
    seen.append(SeenNonce(key_id=INNER_KEY_ID, nonce=command_id, ts_ms=ts))
    return "inner_signed"


def _read(
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    nonces: NonceCache,
    now_ms: int,
    seen: list[SeenNonce],
) -> _Body | Refusal:
    try:
        parsed = parse_any(cmd.data, cfg)
    except WireError as err:
        if err.code in ("too_large", "too_deep"):
            return Refusal("invalid_envelope", f"invalid control: {err.message}")
        return _Body(None, None, _printable(cmd.data), "unsigned")
    if not isinstance(parsed, dict):
        return _Body(None, None, _printable(cmd.data), "unsigned")
    payload = parsed.get("payload")
    if isinstance(payload, dict) and ("sig" in parsed or "nonce" in parsed or "type" in parsed):
        env_id = parsed.get("id")
        envelope_id = env_id if isinstance(env_id, str) and env_id else "N/A"
        fields = kept_view(payload)
        if parsed.get("sig") is None:
            auth = _inner_signed(payload, cfg, nonces, now_ms, seen) or "unsigned"
            return _Body(fields, payload, "", auth, envelope_id=envelope_id)
        try:
            env = parse_signed(cmd, cfg)
        except WireError as err:
            auth = _inner_signed(payload, cfg, nonces, now_ms, seen) or "bad_signature"
            return _Body(fields, payload, "", auth, err.message, envelope_id)
        refusal = verify_signed(env, cfg, nonces, now_ms, seen)
        if refusal is None:
            return _Body(fields, payload, "", "signed", envelope_id=envelope_id)
        auth = _inner_signed(payload, cfg, nonces, now_ms, seen) or "bad_signature"
        return _Body(fields, payload, "", auth, refusal.message, envelope_id, refusal.code)
    auth = _inner_signed(parsed, cfg, nonces, now_ms, seen) or "unsigned"
    return _Body(kept_view(parsed), parsed, "", auth)


@dataclass(frozen=True, slots=True)
class _Wanted:
    """What a command asks for, before it is authorised."""

    action: ControlAction | None
    form: str
    not_for_us: str = ""
    """Set: a well-formed command that is not this service's business (recorded, ignored)."""


def _upper(fields: dict[str, Any] | None, key: str) -> str | None:
    value = _string(fields, key)
    return value.strip().upper() if value is not None else None


def _wanted(cmd: ReceivedCommand, body: _Body, ns: str) -> _Wanted | Refusal:
    subject, fields = cmd.subject, body.fields
    ours = _ours(subject, ns)
    if ours is not None:
        try:
            action = ControlAction(ours)
        except ValueError:
            return Refusal("unknown_action", f"unknown control action {ours[:60]!r}")
        named = fields.get("action") if fields is not None else None
        if named is not None and named != ours:
            return Refusal(
                "schema_invalid",
                f"payload action {named!r} does not match subject action {ours!r}",
            )
        return _Wanted(action, f"control.v1.{ours}")
    if subject == UPSTREAM_HALT:
        state, named = _upper(fields, "state"), _upper(fields, "action")
        if state is not None:
            by_state = _HALT_STATES.get(state) or _RESUME_STATES.get(state)
            if by_state is None:
                return Refusal("unknown_action", f"unknown system state {state[:60]!r}")
            return _Wanted(by_state, "sys.halt")
        if named is not None and named != "HALT":
            return Refusal("unknown_action", f"action {named[:60]!r} on the halt subject")
        return _Wanted(ControlAction.HALT, "sys.halt")
    if subject in UPSTREAM_FLATTEN:
        command = _upper(fields, "command") or _upper(fields, "action")
        if command is not None and command not in ("FLATTEN_ALL", "FLATTEN"):
            return Refusal("unknown_action", f"command {command[:60]!r} on the flatten subject")
        return _Wanted(ControlAction.FLATTEN, "risk.flatten")
    if subject in (UPSTREAM_ARM, UPSTREAM_DISARM):
        action = ControlAction.ARM if subject == UPSTREAM_ARM else ControlAction.DISARM
        expected = "ARM_SYSTEM" if action is ControlAction.ARM else "DISARM_SYSTEM"
        kind, named = _upper(fields, "type"), _upper(fields, "action")
        if (kind is not None and kind != expected) or (
            named is not None and _NAMED_ACTIONS.get(named) is not action
        ):
            return Refusal(
                "schema_invalid",
                f"body ({kind or named}) contradicts the {action.value} subject",
            )
        return _Wanted(action, f"operator.{action.value}")
    if subject == UPSTREAM_POLICY:
        return _Wanted(ControlAction.POLICY, "risk.policy")
    if subject == UPSTREAM_RISK_CONTROL:
        named = _upper(fields, "action")
        if named is None:
            return Refusal("schema_invalid", "risk control without an action")
        if named in _NOT_FOR_US:
            return _Wanted(None, "risk.control", not_for_us=named)
        by_name = _NAMED_ACTIONS.get(named)
        if by_name is None:
            return Refusal("unknown_action", f"unknown risk control action {named[:60]!r}")
        return _Wanted(by_name, "risk.control")
    return Refusal("unknown_command", f"no control handler for subject {subject[:200]}")


def decide_control(
    state: State,
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    now_ms: int,
    nonces: NonceCache,
) -> Decision:
    """One control command, in any of the forms above, to exactly one `ControlDecided`."""
    seen: list[SeenNonce] = []
    with localcontext(DECIMAL_CONTEXT):
        return with_nonce(_decide(state, cmd, cfg, now_ms, nonces, seen), seen)


def _refused(
    cmd: ReceivedCommand,
    now_ms: int,
    refusal: Refusal,
    *,
    action: str = "",
    authentication: str = "unsigned",
    form: str = "",
) -> Decision:
    ev = ControlDecided(
        ts_ms=now_ms,
        cmd_seq=cmd.seq,
        action=action,
        outcome="rejected",
        reason=f"{refusal.code}: {refusal.message}",
        authentication=authentication,
        form=form,
    )
    return Decision(
        events=(ev,),
        refusal=refusal,
        summary=f"control cmd {cmd.seq} ({form or 'unknown form'}, {authentication}) "
        f"rejected: {refusal.message}",
    )


def _decide(
    state: State,
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    now_ms: int,
    nonces: NonceCache,
    seen: list[SeenNonce],
) -> Decision:
    if state.is_decided(cmd.seq):
        return Decision(is_duplicate=True, summary=f"cmd {cmd.seq} already decided")
    if has_raw_bytes(cmd.subject):
        return _refused(cmd, now_ms, invalid_subject(cmd))
    body = _read(cmd, cfg, nonces, now_ms, seen)
    if isinstance(body, Refusal):
        return _refused(cmd, now_ms, body)
    auth = body.authentication
    wanted = _wanted(cmd, body, cfg.subjects.ns)
    if isinstance(wanted, Refusal):
        return _refused(
            cmd,
            now_ms,
            Refusal(wanted.code, wanted.message, intent_id=body.envelope_id),
            authentication=auth,
        )

    def refuse(code: str, message: str, action: str) -> Decision:
        refusal = Refusal(code, message, intent_id=body.envelope_id)
        return _refused(cmd, now_ms, refusal, action=action, authentication=auth, form=wanted.form)

    def needs_signature(action: str, what: str) -> Decision:
        if auth == "bad_signature":
            return refuse(
                body.why_code,
                f"{what} needs a valid signature ({body.why or 'it did not verify'}); "
                f"send it signed: titan-exec send control {action}",
                action,
            )
        return refuse(
            "unsigned_control",
            f"{what} increases risk and needs a signed command: titan-exec send control {action}",
            action,
        )

    if wanted.not_for_us:
        if auth not in SIGNED:
            code = "hmac_signature_mismatch" if auth == "bad_signature" else "unsigned_control"
            return refuse(
                code,
                f"{wanted.not_for_us} is accepted only signed (RiskManager's envelope); "
                f"this one is {auth}",
                wanted.not_for_us.lower(),
            )
        ev = ControlDecided(
            ts_ms=now_ms,
            cmd_seq=cmd.seq,
            action=wanted.not_for_us.lower(),
            outcome="ignored",
            reason=f"{wanted.not_for_us} is the brain's allocation: nothing to execute",
            authentication=auth,
            form=wanted.form,
        )
        return Decision(
            events=(ev,),
            summary=f"control cmd {cmd.seq} ({wanted.form}, {auth}) ignored: "
            f"{wanted.not_for_us} is not for the execution service",
        )
    action = wanted.action
    assert action is not None
    reason = (_string(body.fields, "reason") or body.text or "")[:_TEXT_LIMIT]
    policy_doc: dict[str, Any] | None = None
    overlay_doc: dict[str, Any] | None = None
    risk_state: str | None = None
    if action in RISK_INCREASING and auth not in SIGNED:
        return needs_signature(action.value, action.value)
    if action is ControlAction.POLICY:
        change = _policy_change(state, body, auth in SIGNED)
        if isinstance(change, Refusal):
            if change.code == "unsigned_control":
                return needs_signature("policy", change.message)
            return refuse(change.code, change.message, action.value)
        policy_doc, overlay_doc, risk_state = change
        is_reducing = policy_doc is None
    else:
        is_reducing = action in RISK_REDUCING
    if is_reducing and auth not in SIGNED and not cfg.accept_unsigned_risk_reducing:
        return refuse(
            "unsigned_control",
            f"unsigned {action.value} refused (security.unsigned_risk_reducing = refuse): "
            f"send it signed: titan-exec send control {action.value}",
            action.value,
        )
    orders: list[OrderAccepted] = []
    cancels: tuple[ClientOrderId, ...] = ()
    if action is ControlAction.FLATTEN:
        # a runbook's `{"symbol": "ALL"}` (or none) is every position; a symbol, that one
        only = _string(body.fields, "symbol")
        only = None if only is None or only.strip().upper() == "ALL" else only
        orders = _flatten_orders(state, cmd, cfg, now_ms, only)
        cancels = tuple(
            o.client_order_id
            for o in state.iter_open_orders()
            if not o.is_cancel_requested and (only is None or o.symbol == only)
        )
    decided = ControlDecided(
        ts_ms=now_ms,
        cmd_seq=cmd.seq,
        action=action.value,
        outcome="accepted",
        reason=reason,
        policy=policy_doc,
        client_order_ids=tuple(o.client_order_id for o in orders),
        authentication=auth,
        form=wanted.form,
        overlay=overlay_doc,
        risk_state=risk_state,
    )
    detail = ""
    if orders or cancels:
        detail = f" ({len(orders)} reduce-only orders, {len(cancels)} cancels)"
    if overlay_doc is not None or risk_state is not None:
        detail += f" (overlay {overlay_doc}, risk state {risk_state})"
    return Decision(
        events=(decided, *orders),
        submit=tuple(o.client_order_id for o in orders),
        cancel=cancels,
        summary=f"control cmd {cmd.seq} ({wanted.form}, {auth}) accepted: {action.value}{detail}",
    )


_POLICY_KEYS = ("maxAccountLeverage", "maxPositionNotional", "maxDailyLoss")


def _policy_change(
    state: State, body: _Body, is_signed: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None] | Refusal:
    """(policy to make active, overlay, risk state) of a policy command, or a refusal.

    A signed, complete camelCase policy replaces the active one. Anything else — unsigned,
    or a partial or snake_case document (BudgetService's broadcast) — is a limits overlay,
    accepted only if it loosens no limit of the active policy."""
    active = state.policy
    if active is None or body.fields is None or body.raw is None:
        return Refusal("schema_invalid", "a policy command must be a JSON object")
    nested_raw = body.raw.get("policy")
    nested = body.fields.get("policy")
    doc_raw = nested_raw if isinstance(nested_raw, dict) else body.raw
    doc = nested if isinstance(nested, dict) else body.fields
    state_name = doc.get("current_state", doc.get("currentState"))
    if state_name is not None and state_name not in RISK_STATES:
        return Refusal(
            "schema_invalid",
            f"current_state {str(state_name)[:40]!r} is not one of {', '.join(RISK_STATES)}",
        )
    risk_state = state_name if isinstance(state_name, str) else None
    if is_signed and all(k in doc for k in _POLICY_KEYS):
        if _has_surrogate_text(doc_raw):
            return Refusal("schema_invalid", "policy holds text that is not well-formed Unicode")
        try:
            parse_policy(doc_raw)
        except PolicyError as err:
            return Refusal("schema_invalid", str(err))
        return doc_raw, None, risk_state
    overlay = read_limits(doc)
    if isinstance(overlay, str):
        return Refusal("schema_invalid", f"risk policy: {overlay}")
    loose = loosened(overlay, active)
    if loose:
        return Refusal(
            "unsigned_control",
            f"a policy that loosens the active one ({'; '.join(loose)[:300]})"
            + (" and is not a complete camelCase policy" if is_signed else ""),
        )
    overlay_doc = overlay.to_doc()
    if not overlay_doc and risk_state is None:
        return Refusal("schema_invalid", "the policy names no limit and no risk state")
    return None, (overlay_doc or None), risk_state


def _has_surrogate_text(value: object) -> bool:
    if isinstance(value, str):
        return has_surrogates(value)
    if isinstance(value, dict):
        return any(has_surrogates(k) or _has_surrogate_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate_text(v) for v in value)
    return False


def _flatten_orders(
    state: State, cmd: ReceivedCommand, cfg: DecisionConfig, now_ms: int, only: str | None
) -> list[OrderAccepted]:
    signal = f"flatten-{cmd.seq}"
    out: list[OrderAccepted] = []
    keys = sorted(
        k for k, p in state.positions.items() if not p.is_flat and (only is None or k[1] == only)
    )
    for i, key in enumerate(keys):
        pos = state.positions[key]
        venue, symbol = key
        out.append(
            OrderAccepted(
                ts_ms=now_ms,
                client_order_id=client_order_id(signal, venue, i),
                venue=venue,
                account=_account_of(state, venue, symbol),
                symbol=symbol,
                signal_id=signal,
                cmd_seq=cmd.seq,
                side=Side.SELL if pos.qty > 0 else Side.BUY,
                order_type=OrderType.MARKET,
                qty=abs(pos.qty),
                limit_price=None,
                is_reduce_only=True,
                intent_type=None,
                expires_at_ms=now_ms + cfg.order_ttl_ms,
                t_signal=now_ms,
                t_ingress=cmd.t_ingress_ms,
                correlation_id=signal,
            )
        )
    return out


def _account_of(state: State, venue: str, symbol: str) -> str:
    for order in reversed(list(state.orders.values())):
        if order.venue == venue and order.symbol == symbol:
            return order.account
    return "main"


# --- the brain's risk posture (RiskGuardian, `titan.evt.risk.state.v1`) ---------------------


def read_risk_state(data: bytes, max_bytes: int = 4096) -> str | Refusal:
    """The risk state a RiskGuardian message names (a bare JSON string, `"Defensive"`; an
    object with `state` is read too), matched without regard to case, or a refusal."""
    try:
        parsed = parse_json_strict(data, max_bytes=max_bytes, max_depth=4, max_values=64)
    except WireError as err:
        return Refusal("unknown_risk_state", f"risk state message unreadable: {err.message}")
    if isinstance(parsed, dict):
        parsed = parsed.get("state", parsed.get("risk_state"))
    if not isinstance(parsed, str):
        return Refusal("unknown_risk_state", "a risk state must be a JSON string")
    by_name = {s.lower(): s for s in RISK_STATES}
    name = by_name.get(parsed.strip().lower())
    if name is None:
        shown = "".join(c if c.isprintable() else "?" for c in parsed[:40])
        return Refusal(
            "unknown_risk_state",
            f"risk state {shown!r} is not one of {', '.join(RISK_STATES)}",
        )
    return name


def decide_risk_state(state: State, src_seq: int, data: bytes, now_ms: int) -> Decision:
    """One RiskGuardian message (at `src_seq` in `TITAN_EVT`) to one `RiskStateDecided`.
    Accepted in both directions without a signature (RiskGuardian sends them unsigned on one
    channel; only signed intents can trade, and a halt is lifted only by a signed command)."""
    if src_seq <= state.risk_state_seq:
        return Decision(is_duplicate=True, summary=f"risk state {src_seq} already decided")
    name = read_risk_state(data)
    if isinstance(name, Refusal):
        ev = RiskStateDecided(
            ts_ms=now_ms,
            src_seq=src_seq,
            risk_state="",
            outcome="rejected",
            reason=f"{name.code}: {name.message}",
        )
        return Decision(
            events=(ev,), refusal=name, summary=f"risk state {src_seq} rejected: {name.message}"
        )
    ev = RiskStateDecided(
        ts_ms=now_ms, src_seq=src_seq, risk_state=name, outcome="accepted", reason="risk_guardian"
    )
    # Emergency is a full stop of new risk (RiskState.ts: "cancel all open orders"): the
    # open orders that could add to a position are canceled; reduce-only ones stay
    cancels: tuple[ClientOrderId, ...] = ()
    if name == "Emergency":
        cancels = tuple(
            o.client_order_id
            for o in state.iter_open_orders()
            if not o.is_reduce_only and not o.is_cancel_requested
        )
    return Decision(
        events=(ev,),
        cancel=cancels,
        summary=f"risk state {src_seq} accepted: {state.risk_state} -> {name} (risk_guardian)"
        + (f", {len(cancels)} opening orders canceled" if cancels else ""),
    )
