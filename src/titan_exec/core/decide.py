"""Deciding a command: the whole gate pipeline as one pure function per command kind.

    halt (drop) → armed → replayed nonce → the ingress's refusal (envelope, signature,
    schema) → policy hash → routing (venue, status, duplicate signal) → risk guard

The command comes typed from the ingress (`wire/ingress.py`, `core/commands.py`): the
envelope was parsed and its signature verified there; whether its nonce was seen before is
read from the folded state (`State.nonces`). The result is a `Decision`: the events to
append (always exactly one `IntentDecided` / `ControlDecided` per command, plus the orders
it creates, the verified nonce on the first), the orders to send after the append is
acknowledged (persist before side effect), the cancels to request, and for a refusal the
reject telemetry / dead letter to publish. No I/O; time comes in `MarketView`; no input is
mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import localcontext

import msgspec

from titan_exec.core import risk
from titan_exec.core.commands import Intent, InvalidInput, PlaceOrder
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

EXECUTABLE_STATUSES = frozenset({"PENDING", "VALIDATED"})
DEFAULT_TOLERANCE_MS = 300_000


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    venues: frozenset[str]
    default_venue: str
    tolerance_ms: int = DEFAULT_TOLERANCE_MS
    """The signature tolerance: how long a verified nonce stays in the window."""
    order_ttl_ms: int = 60_000
    limits: risk.RiskLimits = field(default_factory=risk.RiskLimits)
    accept_unsigned_risk_reducing: bool = True
    """`security.unsigned_risk_reducing`: an unsigned halt/disarm/flatten/tightening is
    accepted (logged and counted) or refused (`core/controls.py`)."""
    accounts: Mapping[str, str] = field(default_factory=dict)
    """The account each venue trades: an order's account (the subject's account token for
    a venue not listed: the brain always sends `main`)."""


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
    seq: int, ts_ms: int, refusal: Refusal, intent: Intent | None = None, **route: str
) -> Decision:
    ev = IntentDecided(
        ts_ms=ts_ms,
        cmd_seq=seq,
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
        summary=f"cmd {seq} rejected: {refusal.message}",
    )


def is_replayed(state: State, nonce: SeenNonce, cfg: DecisionConfig, now_ms: int) -> bool:
    """Whether a verified nonce was decided before and is still in the window."""
    return state.nonces.is_replayed(nonce, now_ms, cfg.tolerance_ms)


def replayed(nonce: SeenNonce) -> tuple[str, str]:
    """The refusal code and message of a replayed nonce."""
    return "nonce_replayed", f"nonce {nonce.nonce} was seen before"


def with_nonce(decision: Decision, nonce: SeenNonce | None) -> Decision:
    """Record the verified nonce on the decision event (first event of every decision)."""
    if nonce is None or not decision.events:
        return decision
    first = decision.events[0]
    if isinstance(first, IntentDecided | ControlDecided):
        first = msgspec.structs.replace(first, nonce=nonce)
    return replace(decision, events=(first, *decision.events[1:]))


def decide_unknown(state: State, cmd: InvalidInput, now_ms: int) -> Decision:
    """A command on a subject nothing handles: one rejected `IntentDecided`."""
    if state.is_decided(cmd.seq):
        return Decision(is_duplicate=True)
    refusal = Refusal(cmd.code, cmd.message)
    ev = IntentDecided(
        ts_ms=now_ms, cmd_seq=cmd.seq, outcome="rejected", reason=f"{cmd.code}: {cmd.message}"
    )
    return Decision(events=(ev,), refusal=refusal, summary=f"cmd {cmd.seq}: {cmd.message}")


def decide_place(
    state: State, cmd: PlaceOrder | InvalidInput, cfg: DecisionConfig, market: risk.MarketView
) -> Decision:
    with localcontext(DECIMAL_CONTEXT):
        decision, nonce = _decide_place(state, cmd, cfg, market)
        return with_nonce(decision, nonce)


def _decide_place(
    state: State, cmd: PlaceOrder | InvalidInput, cfg: DecisionConfig, market: risk.MarketView
) -> tuple[Decision, SeenNonce | None]:
    """The decision and the nonce it records (a verified one that was not replayed)."""
    now = market.now_ms
    if state.is_decided(cmd.seq):
        return Decision(is_duplicate=True, summary=f"cmd {cmd.seq} already decided"), None
    if state.policy is None:
        raise RuntimeError("decide_place before genesis")
    if state.is_halted:
        refusal = Refusal("system_halted", "system halted: intent dropped", cmd.signal_hint)
        return _refuse(cmd.seq, now, refusal), None
    if not state.is_armed:
        return _refuse(
            cmd.seq, now, Refusal("system_disarmed", "system disarmed", cmd.signal_hint)
        ), None
    ids = {"intent_id": cmd.intent_id, "envelope_id": cmd.envelope_id}
    if cmd.nonce is not None and is_replayed(state, cmd.nonce, cfg, now):
        return _refuse(cmd.seq, now, Refusal(*replayed(cmd.nonce), **ids)), None
    if isinstance(cmd, InvalidInput):
        return _refuse(cmd.seq, now, Refusal(cmd.code, cmd.message, **ids)), cmd.nonce
    return _place(state, cmd, cfg, market), cmd.nonce


def _place(state: State, cmd: PlaceOrder, cfg: DecisionConfig, market: risk.MarketView) -> Decision:
    """A signed, fresh intent: policy hash → routing → risk guard → the order."""
    now, intent, policy = market.now_ms, cmd.intent, state.policy
    assert policy is not None
    ids = {"intent_id": cmd.intent_id, "envelope_id": cmd.envelope_id}
    got_hash = cmd.policy_hash
    if got_hash is not None and got_hash != policy.hash:
        message = f"policy hash {got_hash} does not match the active policy {policy.hash}"
        refusal = Refusal(
            "policy_hash_mismatch",
            message,
            **ids,
            expected_policy_hash=policy.hash,
            got_policy_hash=got_hash,
        )
        return _refuse(cmd.seq, now, refusal, intent)
    venue = route_venue(intent.exchange, cmd.venue, cfg)
    where = {"venue": venue, "account": cmd.account, "symbol": intent.symbol}

    def refuse(code: str, message: str) -> Decision:
        return _refuse(cmd.seq, now, Refusal(code, message, **ids), intent, **where)

    refused = _route_refusal(state, cmd, cfg, venue)
    if refused is not None:
        return refuse(*refused)
    intent_type = IntentType(intent.type)
    plan = _guard(state, intent, intent_type, venue, market, cfg)
    if not isinstance(plan, risk.OrderPlan):
        return refuse(*plan)
    coid = client_order_id(intent.signal_id, venue, 0)
    if coid in state.orders:
        return refuse("duplicate_signal", f"order {coid} exists already")
    return _accepted(cmd, cfg, market, plan, coid, intent_type, venue)


def route_venue(exchange: str | None, token: str, cfg: DecisionConfig) -> str:
    """The venue an intent goes to: its `exchange`, else its subject's venue token, as
    configured or lower-cased (the brain lower-cases its exchange names); neither, or
    `auto`: the default venue. A name no venue has is returned as it is (refused next)."""
    for asked in (exchange, token):
        if asked and asked.lower() != "auto":
            return asked if asked in cfg.venues else asked.lower()
    return cfg.default_venue


def _route_refusal(
    state: State, cmd: PlaceOrder, cfg: DecisionConfig, venue: str
) -> tuple[str, str] | None:
    """Routing: the venue, the subject against the payload, the status, a duplicate."""
    intent = cmd.intent
    if venue not in cfg.venues:
        return "unknown_venue", f"venue '{venue}' is not configured"
    if cmd.symbol != intent.symbol:
        return (
            "schema_invalid",
            f"subject symbol '{cmd.symbol}' does not match payload symbol '{intent.symbol}'",
        )
    if intent.status not in EXECUTABLE_STATUSES:
        return "intent_not_executable", f"intent status {intent.status} is not executable"
    intent_type = IntentType(intent.type)
    if intent_type is IntentType.BUY_SETUP and intent.direction != 1:
        return "schema_invalid", f"direction {intent.direction} contradicts BUY_SETUP"
    if intent_type is IntentType.SELL_SETUP and intent.direction != -1:
        return "schema_invalid", f"direction {intent.direction} contradicts SELL_SETUP"
    if intent.signal_id in state.accepted_signals:
        return "duplicate_signal", f"signal {intent.signal_id} was already executed"
    return None


def _guard(
    state: State,
    intent: Intent,
    intent_type: IntentType,
    venue: str,
    market: risk.MarketView,
    cfg: DecisionConfig,
) -> risk.OrderPlan | tuple[str, str]:
    """The risk guard: the risk state, the symbol's limits, the plan, the order's limits."""
    if state.risk_state == "Emergency":
        return (
            "risk_state_emergency",
            f"RISK REJECTION: risk state Emergency ({state.risk_state_source}): no intent "
            "executes (flatten still works)",
        )
    limits = state.limits
    assert limits is not None
    pre = risk.check_symbol(limits, intent.symbol, intent.size)
    if pre is not None:
        return pre.code, pre.message
    plan = _plan(state, intent, intent_type, venue)
    if isinstance(plan, str):
        return "risk_rejection", f"RISK REJECTION: {plan}"
    if state.risk_state == "Defensive" and not plan.is_reduce_only:
        return (
            "risk_state_defensive",
            f"RISK REJECTION: risk state Defensive ({state.risk_state_source}): close-only, "
            f"an opening {intent_type.value} is refused",
        )
    refusal = risk.check_order(state, limits, plan, market, cfg.limits)
    if refusal is not None:
        return refusal.code, refusal.message
    return plan


def _accepted(
    cmd: PlaceOrder,
    cfg: DecisionConfig,
    market: risk.MarketView,
    plan: risk.OrderPlan,
    coid: ClientOrderId,
    intent_type: IntentType,
    venue: str,
) -> Decision:
    now, intent = market.now_ms, cmd.intent
    account = cfg.accounts.get(venue, cmd.account)
    accepted = OrderAccepted(
        ts_ms=now,
        client_order_id=coid,
        venue=venue,
        account=account,
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
        correlation_id=cmd.correlation_id,
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
        account=account,
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
