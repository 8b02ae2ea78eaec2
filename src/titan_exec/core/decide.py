"""Deciding a command: the whole gate pipeline as one pure function per command kind.

    halt (drop) → armed → envelope → signature (timestamp, key, HMAC, nonce) → schema
    → policy hash → routing (venue, status, duplicate signal) → risk guard (`risk.py`)

The result is a `Decision`: the events to append (always exactly one `IntentDecided` /
`ControlDecided` per command, plus the orders it creates), the orders to send after the
append is acknowledged (persist before side effect), the cancels to request, and for a
refusal the reject telemetry / dead letter to publish. No I/O; time comes in `MarketView`.
The nonce replay cache is the only mutable input (owned by the caller, passed explicitly).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import localcontext
from typing import Any

import msgspec

from titan_exec.core import risk
from titan_exec.core.events import (
    ControlDecided,
    Event,
    IntentDecided,
    OrderAccepted,
    SeenNonce,
)
from titan_exec.core.model import (
    DECIMAL_CONTEXT,
    ClientOrderId,
    ControlAction,
    IntentType,
    OrderType,
    Side,
    client_order_id,
)
from titan_exec.core.policy import PolicyError, parse_policy
from titan_exec.core.state import State
from titan_exec.wire.envelope import (
    DEFAULT_MAX_VALUES,
    Envelope,
    Intent,
    parse_envelope,
    parse_intent,
    verify_envelope,
)
from titan_exec.wire.errors import WireError
from titan_exec.wire.replay import NonceCache
from titan_exec.wire.signing import Keyring
from titan_exec.wire.subjects import Subjects
from titan_exec.wire.text import has_raw_bytes, has_surrogates, printable_subject

EXECUTABLE_STATUSES = frozenset({"PENDING", "VALIDATED"})


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    seq: int
    """Stream sequence in TITAN_CMD: the command's identity."""
    subject: str
    data: bytes
    t_ingress_ms: int


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    subjects: Subjects
    keyring: Keyring
    venues: frozenset[str]
    default_venue: str
    tolerance_ms: int = 300_000
    order_ttl_ms: int = 60_000
    max_payload_bytes: int = 256 * 1024
    max_depth: int = 32
    max_values: int = DEFAULT_MAX_VALUES
    limits: risk.RiskLimits = field(default_factory=risk.RiskLimits)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    """Reject telemetry reason (`system_disarmed`, `hmac_signature_mismatch`, ...)."""
    message: str
    """Readable dead-letter reason."""
    intent_id: str = "N/A"
    expected_policy_hash: str = "N/A"
    got_policy_hash: str = "N/A"
    brain_instance_id: str = "N/A"


@dataclass(frozen=True, slots=True)
class Decision:
    events: tuple[Event, ...] = ()
    submit: tuple[ClientOrderId, ...] = ()
    cancel: tuple[ClientOrderId, ...] = ()
    refusal: Refusal | None = None
    is_duplicate: bool = False
    """The command was decided before (a redelivery): acknowledge it, change nothing."""
    summary: str = ""

    @property
    def is_accepted(self) -> bool:
        return self.refusal is None and not self.is_duplicate


def _refuse(
    cmd: ReceivedCommand, ts_ms: int, refusal: Refusal, intent: Intent | None = None, **route: str
) -> Decision:
    ev = IntentDecided(
        ts_ms=ts_ms,
        cmd_seq=cmd.seq,
        outcome="rejected",
        reason=f"{refusal.code}: {refusal.message}",
        signal_id=intent.signal_id if intent else None,
        venue=route.get("venue", ""),
        account=route.get("account", ""),
        symbol=route.get("symbol", ""),
    )
    return Decision(
        events=(ev,),
        refusal=refusal,
        summary=f"cmd {cmd.seq} rejected: {refusal.message}",
    )


def _invalid_subject(cmd: ReceivedCommand) -> Refusal:
    return Refusal(
        "invalid_subject", f"subject is not UTF-8: {printable_subject(cmd.subject)[:300]}"
    )


def _parse(cmd: ReceivedCommand, cfg: DecisionConfig) -> Envelope:
    return parse_envelope(
        cmd.data,
        max_bytes=cfg.max_payload_bytes,
        max_depth=cfg.max_depth,
        max_values=cfg.max_values,
    )


def _verify(
    env: Envelope,
    cfg: DecisionConfig,
    nonces: NonceCache,
    now_ms: int,
    seen: list[SeenNonce],
) -> Refusal | None:
    failure = verify_envelope(env, cfg.keyring, now_ms=now_ms, tolerance_ms=cfg.tolerance_ms)
    if failure is not None:
        code = "hmac_signature_mismatch" if failure.code == "signature" else failure.code
        return Refusal(code, failure.message, intent_id=env.id or "N/A")
    key_id = env.key_id or "default"
    if not nonces.check_and_remember(key_id, env.nonce, env.ts_ms, now_ms):
        return Refusal(
            "nonce_replayed", f"nonce {env.nonce} was seen before", intent_id=env.id or "N/A"
        )
    seen.append(SeenNonce(key_id=key_id, nonce=env.nonce, ts_ms=env.ts_ms))
    return None


def _with_nonce(decision: Decision, seen: list[SeenNonce]) -> Decision:
    """Record the verified nonce on the decision event (first event of every decision)."""
    if not seen or not decision.events:
        return decision
    first = decision.events[0]
    if isinstance(first, IntentDecided | ControlDecided):
        first = msgspec.structs.replace(first, nonce=seen[0])
    return replace(decision, events=(first, *decision.events[1:]))


def decide_place(
    state: State,
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    market: risk.MarketView,
    nonces: NonceCache,
) -> Decision:
    seen: list[SeenNonce] = []
    with localcontext(DECIMAL_CONTEXT):
        return _with_nonce(_decide_place(state, cmd, cfg, market, nonces, seen), seen)


def _decide_place(
    state: State,
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    market: risk.MarketView,
    nonces: NonceCache,
    seen: list[SeenNonce],
) -> Decision:
    now = market.now_ms
    if state.is_decided(cmd.seq):
        return Decision(is_duplicate=True, summary=f"cmd {cmd.seq} already decided")
    policy = state.policy
    if policy is None:
        raise RuntimeError("decide_place before genesis")
    if state.is_halted:
        return _refuse(cmd, now, Refusal("system_halted", "system halted: intent dropped"))
    if not state.is_armed:
        return _refuse(cmd, now, Refusal("system_disarmed", "system disarmed"))
    if has_raw_bytes(cmd.subject):
        return _refuse(cmd, now, _invalid_subject(cmd))
    try:
        route = cfg.subjects.parse_place(cmd.subject)
        env = _parse(cmd, cfg)
    except WireError as err:
        if err.code == "signature":
            return _refuse(cmd, now, Refusal("hmac_signature_mismatch", err.message))
        return _refuse(cmd, now, Refusal("invalid_envelope", f"invalid envelope: {err.message}"))
    sig_refusal = _verify(env, cfg, nonces, now, seen)
    if sig_refusal is not None:
        return _refuse(cmd, now, sig_refusal)
    try:
        intent = parse_intent(env)
    except WireError as err:
        return _refuse(cmd, now, Refusal("schema_invalid", err.message, intent_id=env.id or "N/A"))
    got_hash = env.policy_hash or intent.policy_hash
    if got_hash is not None and got_hash != policy.hash:
        return _refuse(
            cmd,
            now,
            Refusal(
                "policy_hash_mismatch",
                f"policy hash {got_hash} does not match the active policy {policy.hash}",
                intent_id=env.id or "N/A",
                expected_policy_hash=policy.hash,
                got_policy_hash=got_hash,
            ),
            intent,
        )

    venue = intent.exchange or (route.venue if route.venue != "auto" else cfg.default_venue)
    where = {"venue": venue, "account": route.account, "symbol": intent.symbol}

    def refuse(code: str, message: str) -> Decision:
        return _refuse(cmd, now, Refusal(code, message, intent_id=env.id or "N/A"), intent, **where)

    if venue not in cfg.venues:
        return refuse("unknown_venue", f"venue '{venue}' is not configured")
    if route.symbol != intent.symbol:
        return refuse(
            "schema_invalid",
            f"subject symbol '{route.symbol}' does not match payload symbol '{intent.symbol}'",
        )
    if intent.status not in EXECUTABLE_STATUSES:
        return refuse("intent_not_executable", f"intent status {intent.status} is not executable")
    intent_type = IntentType(intent.type)
    if intent_type is IntentType.BUY_SETUP and intent.direction != 1:
        return refuse("schema_invalid", f"direction {intent.direction} contradicts BUY_SETUP")
    if intent_type is IntentType.SELL_SETUP and intent.direction != -1:
        return refuse("schema_invalid", f"direction {intent.direction} contradicts SELL_SETUP")
    if intent.signal_id in state.accepted_signals:
        return refuse("duplicate_signal", f"signal {intent.signal_id} was already executed")

    pre = risk.check_symbol(policy, intent.symbol, intent.size)
    if pre is not None:
        return refuse(pre.code, pre.message)
    plan_or_reason = _plan(state, intent, intent_type, venue)
    if isinstance(plan_or_reason, str):
        return refuse("risk_rejection", f"RISK REJECTION: {plan_or_reason}")
    plan = plan_or_reason
    refusal = risk.check_order(state, policy, plan, market, cfg.limits)
    if refusal is not None:
        return refuse(refusal.code, refusal.message)

    coid = client_order_id(intent.signal_id, venue, 0)
    if coid in state.orders:
        return refuse("duplicate_signal", f"order {coid} exists already")
    accepted = OrderAccepted(
        ts_ms=now,
        client_order_id=coid,
        venue=venue,
        account=route.account,
        symbol=intent.symbol,
        signal_id=intent.signal_id,
        cmd_seq=cmd.seq,
        side=plan.side,
        order_type=OrderType.MARKET if plan.limit_price is None else OrderType.LIMIT,
        qty=plan.qty,
        limit_price=plan.limit_price,
        is_reduce_only=plan.is_reduce_only,
        intent_type=intent_type,
        expires_at_ms=now + cfg.order_ttl_ms,
        t_signal=intent.t_signal_ms,
        t_ingress=cmd.t_ingress_ms,
        correlation_id=env.correlation_id or intent.signal_id,
        stop_loss=intent.stop_loss,
        take_profits=intent.take_profits,
    )
    decided = IntentDecided(
        ts_ms=now,
        cmd_seq=cmd.seq,
        outcome="accepted",
        reason="accepted",
        signal_id=intent.signal_id,
        client_order_ids=(coid,),
        venue=venue,
        account=route.account,
        symbol=intent.symbol,
    )
    kind = "market" if plan.limit_price is None else f"limit {plan.limit_price}"
    return Decision(
        events=(decided, accepted),
        submit=(coid,),
        summary=(
            f"cmd {cmd.seq} accepted: {plan.side} {plan.qty} {intent.symbol} {kind} on {venue} "
            f"as {coid}{' reduce-only' if plan.is_reduce_only else ''}"
        ),
    )


def _plan(state: State, intent: Intent, kind: IntentType, venue: str) -> risk.OrderPlan | str:
    # an entry zone that is empty, missing or all zeros (the brain's value when it has no
    # entry price) is a market order; otherwise its first price is the limit
    has_entry = any(p != 0 for p in intent.entry_zone)
    limit = intent.entry_zone[0] if has_entry else None
    if not kind.is_close:
        side = Side.BUY if kind is IntentType.BUY_SETUP else Side.SELL
        return risk.OrderPlan(
            venue, intent.symbol, side, intent.size, limit, False, intent.t_signal_ms
        )
    pos = state.position(venue, intent.symbol)
    if pos.is_flat:
        return f"no open position on {intent.symbol} at {venue} to close"
    if kind is IntentType.CLOSE_LONG and pos.qty < 0:
        return f"CLOSE_LONG but the position on {intent.symbol} is short"
    if kind is IntentType.CLOSE_SHORT and pos.qty > 0:
        return f"CLOSE_SHORT but the position on {intent.symbol} is long"
    side = Side.SELL if pos.qty > 0 else Side.BUY
    qty = min(intent.size, abs(pos.qty))
    return risk.OrderPlan(venue, intent.symbol, side, qty, limit, True, intent.t_signal_ms)


def decide_control(
    state: State,
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    now_ms: int,
    nonces: NonceCache,
) -> Decision:
    """halt / open / arm / disarm / flatten / policy: signed like intents."""
    seen: list[SeenNonce] = []
    with localcontext(DECIMAL_CONTEXT):
        return _with_nonce(_decide_control(state, cmd, cfg, now_ms, nonces, seen), seen)


def _decide_control(
    state: State,
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    now_ms: int,
    nonces: NonceCache,
    seen: list[SeenNonce],
) -> Decision:
    if state.is_decided(cmd.seq):
        return Decision(is_duplicate=True, summary=f"cmd {cmd.seq} already decided")

    def refuse(code: str, message: str, intent_id: str = "N/A") -> Decision:
        ev = ControlDecided(
            ts_ms=now_ms,
            cmd_seq=cmd.seq,
            action="",
            outcome="rejected",
            reason=f"{code}: {message}",
        )
        return Decision(
            events=(ev,),
            refusal=Refusal(code, message, intent_id=intent_id),
            summary=f"control cmd {cmd.seq} rejected: {message}",
        )

    if has_raw_bytes(cmd.subject):
        refusal = _invalid_subject(cmd)
        return refuse(refusal.code, refusal.message)
    try:
        subject_action = cfg.subjects.parse_control(cmd.subject)
        env = _parse(cmd, cfg)
    except WireError as err:
        if err.code == "signature":
            return refuse("hmac_signature_mismatch", err.message)
        return refuse("invalid_envelope", f"invalid control envelope: {err.message}")
    sig_refusal = _verify(env, cfg, nonces, now_ms, seen)
    if sig_refusal is not None:
        return refuse(sig_refusal.code, sig_refusal.message, env.id or "N/A")
    payload: Any = env.payload_exact
    action_raw = payload.get("action") if isinstance(payload, dict) else None
    if action_raw != subject_action:
        return refuse(
            "schema_invalid",
            f"payload action {action_raw!r} does not match subject action {subject_action!r}",
        )
    try:
        action = ControlAction(subject_action)
    except ValueError:
        return refuse("schema_invalid", f"unknown control action {subject_action!r}")
    policy_doc: dict[str, Any] | None = None
    if action is ControlAction.POLICY:
        # the document as signed (its numbers as the brain hashes them), whose text must
        # then be well-formed: it is kept in the event as it is
        policy_doc = env.payload_raw.get("policy")
        if _has_surrogate_text(policy_doc):
            return refuse("schema_invalid", "policy holds text that is not well-formed Unicode")
        try:
            parse_policy(policy_doc)
        except PolicyError as err:
            return refuse("schema_invalid", str(err))
    orders: list[OrderAccepted] = []
    cancels: tuple[ClientOrderId, ...] = ()
    if action is ControlAction.FLATTEN:
        orders = _flatten_orders(state, cmd, cfg, now_ms)
        cancels = tuple(
            o.client_order_id for o in state.iter_open_orders() if not o.is_cancel_requested
        )
    decided = ControlDecided(
        ts_ms=now_ms,
        cmd_seq=cmd.seq,
        action=action.value,
        outcome="accepted",
        reason=str(payload.get("reason", "")),
        policy=policy_doc,
        client_order_ids=tuple(o.client_order_id for o in orders),
    )
    return Decision(
        events=(decided, *orders),
        submit=tuple(o.client_order_id for o in orders),
        cancel=cancels,
        summary=f"control cmd {cmd.seq} accepted: {action.value}"
        + (
            f" ({len(orders)} reduce-only orders, {len(cancels)} cancels)"
            if orders or cancels
            else ""
        ),
    )


def _has_surrogate_text(value: object) -> bool:
    if isinstance(value, str):
        return has_surrogates(value)
    if isinstance(value, dict):
        return any(has_surrogates(k) or _has_surrogate_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate_text(v) for v in value)
    return False


def _flatten_orders(
    state: State, cmd: ReceivedCommand, cfg: DecisionConfig, now_ms: int
) -> list[OrderAccepted]:
    signal = f"flatten-{cmd.seq}"
    out: list[OrderAccepted] = []
    for i, key in enumerate(sorted(k for k, p in state.positions.items() if not p.is_flat)):
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
