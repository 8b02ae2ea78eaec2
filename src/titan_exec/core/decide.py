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
    IntentType,
    OrderType,
    Side,
    client_order_id,
)
from titan_exec.core.state import State
from titan_exec.wire.canonical import parse_json_strict
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
from titan_exec.wire.text import has_raw_bytes, printable_subject

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
    accept_unsigned_risk_reducing: bool = True
    """`security.unsigned_risk_reducing`: an unsigned halt/disarm/flatten/tightening is
    accepted (logged and counted) or refused (`core/controls.py`)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    """Reject telemetry reason (`system_disarmed`, `hmac_signature_mismatch`, ...)."""
    message: str
    """Readable dead-letter reason."""
    intent_id: str = "N/A"
    """The intent's `signal_id` (as the old service reported it), `N/A` when unknown."""
    expected_policy_hash: str = "N/A"
    got_policy_hash: str = "N/A"
    brain_instance_id: str = "N/A"
    envelope_id: str = "N/A"
    """The envelope's own `id` (a ULID upstream)."""


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


def invalid_subject(cmd: ReceivedCommand) -> Refusal:
    return Refusal(
        "invalid_subject", f"subject is not UTF-8: {printable_subject(cmd.subject)[:300]}"
    )


def parse_signed(cmd: ReceivedCommand, cfg: DecisionConfig) -> Envelope:
    return parse_envelope(
        cmd.data,
        max_bytes=cfg.max_payload_bytes,
        max_depth=cfg.max_depth,
        max_values=cfg.max_values,
    )


def verify_signed(
    env: Envelope,
    cfg: DecisionConfig,
    nonces: NonceCache,
    now_ms: int,
    seen: list[SeenNonce],
) -> Refusal | None:
    failure = verify_envelope(env, cfg.keyring, now_ms=now_ms, tolerance_ms=cfg.tolerance_ms)
    if failure is not None:
        code = "hmac_signature_mismatch" if failure.code == "signature" else failure.code
        return Refusal(code, failure.message, **_ids(env))
    key_id = env.key_id or "default"
    if not nonces.check_and_remember(key_id, env.nonce, env.ts_ms, now_ms):
        return Refusal("nonce_replayed", f"nonce {env.nonce} was seen before", **_ids(env))
    seen.append(SeenNonce(key_id=key_id, nonce=env.nonce, ts_ms=env.ts_ms))
    return None


def _ids(env: Envelope) -> dict[str, str]:
    """The ids reject telemetry carries: the payload's `signal_id` as `intent_id` (as the
    old service and the upstream consumers read it) and the envelope's own id."""
    payload = env.payload_exact
    signal = payload.get("signal_id") if isinstance(payload, dict) else None
    return {
        "intent_id": signal if isinstance(signal, str) and signal else "N/A",
        "envelope_id": env.id or "N/A",
    }


def _peek_signal_id(data: bytes, cfg: DecisionConfig) -> str:
    """The `signal_id` of a command refused before its envelope is read (halted, disarmed),
    for the telemetry; `N/A` if the bytes do not hold one."""
    try:
        env = parse_any(data, cfg)
    except WireError:
        return "N/A"
    payload = env.get("payload") if isinstance(env, dict) else None
    signal = payload.get("signal_id") if isinstance(payload, dict) else None
    return signal if isinstance(signal, str) and signal and signal.isprintable() else "N/A"


def parse_any(data: bytes, cfg: DecisionConfig) -> object:
    """Strict JSON within the command limits (raises `WireError`)."""
    return parse_json_strict(
        data, max_bytes=cfg.max_payload_bytes, max_depth=cfg.max_depth, max_values=cfg.max_values
    )


def with_nonce(decision: Decision, seen: list[SeenNonce]) -> Decision:
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
        return with_nonce(_decide_place(state, cmd, cfg, market, nonces, seen), seen)


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
        sid = _peek_signal_id(cmd.data, cfg)
        return _refuse(
            cmd, now, Refusal("system_halted", "system halted: intent dropped", intent_id=sid)
        )
    if not state.is_armed:
        sid = _peek_signal_id(cmd.data, cfg)
        return _refuse(cmd, now, Refusal("system_disarmed", "system disarmed", intent_id=sid))
    if has_raw_bytes(cmd.subject):
        return _refuse(cmd, now, invalid_subject(cmd))
    try:
        route = cfg.subjects.parse_place(cmd.subject)
        env = parse_signed(cmd, cfg)
    except WireError as err:
        if err.code == "signature":
            return _refuse(cmd, now, Refusal("hmac_signature_mismatch", err.message))
        return _refuse(cmd, now, Refusal("invalid_envelope", f"invalid envelope: {err.message}"))
    sig_refusal = verify_signed(env, cfg, nonces, now, seen)
    if sig_refusal is not None:
        return _refuse(cmd, now, sig_refusal)
    try:
        intent = parse_intent(env)
    except WireError as err:
        return _refuse(cmd, now, Refusal("schema_invalid", err.message, **_ids(env)))
    got_hash = env.policy_hash or intent.policy_hash
    if got_hash is not None and got_hash != policy.hash:
        return _refuse(
            cmd,
            now,
            Refusal(
                "policy_hash_mismatch",
                f"policy hash {got_hash} does not match the active policy {policy.hash}",
                **_ids(env),
                expected_policy_hash=policy.hash,
                got_policy_hash=got_hash,
            ),
            intent,
        )

    venue = intent.exchange or (route.venue if route.venue != "auto" else cfg.default_venue)
    where = {"venue": venue, "account": route.account, "symbol": intent.symbol}

    def refuse(code: str, message: str) -> Decision:
        return _refuse(cmd, now, Refusal(code, message, **_ids(env)), intent, **where)

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

    if state.risk_state == "Emergency":
        return refuse(
            "risk_state_emergency",
            f"RISK REJECTION: risk state Emergency ({state.risk_state_source}): no intent "
            "executes (flatten still works)",
        )
    limits = state.limits or policy
    pre = risk.check_symbol(limits, intent.symbol, intent.size)
    if pre is not None:
        return refuse(pre.code, pre.message)
    plan_or_reason = _plan(state, intent, intent_type, venue)
    if isinstance(plan_or_reason, str):
        return refuse("risk_rejection", f"RISK REJECTION: {plan_or_reason}")
    plan = plan_or_reason
    if state.risk_state == "Defensive" and not plan.is_reduce_only:
        return refuse(
            "risk_state_defensive",
            f"RISK REJECTION: risk state Defensive ({state.risk_state_source}): close-only, "
            f"an opening {intent_type.value} is refused",
        )
    refusal = risk.check_order(state, limits, plan, market, cfg.limits)
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
        reference_price=risk.reference_price(plan, market),
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
