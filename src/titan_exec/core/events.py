"""The service's own events: the only input of the state fold.

Events are past tense, immutable and carry everything `apply` needs (prices, fees,
venue ids, timestamps), so replaying them needs no clock and no venue. The wire form is
the msgspec encoding of these structs (camelCase), tagged by ``event``; `OrderFilled`
is, field for field, the contract's FillReport (plus ``venue``/``account``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from titan_exec.core.model import (
    ClientOrderId,
    IntentType,
    OrderType,
    Side,
    VenueOrderId,
)

Outcome = Literal["accepted", "rejected", "ignored"]
"""`ignored`: a well-formed command that is not for this service (an allocation override is
the brain's own business): recorded, never a refusal."""

RISK_STATES: tuple[str, ...] = ("Normal", "Cautious", "Defensive", "Emergency")
"""The brain's risk posture (RiskGuardian), mildest first. Cautious is reported only;
Defensive is close-only; Emergency refuses every intent (flatten still works)."""


class SeenNonce(msgspec.Struct, frozen=True, rename="camel"):
    """The verified nonce of a decided command, so that a restarted instance (or a standby)
    rebuilds its replay cache from the stream instead of starting empty."""

    key_id: str
    nonce: str
    ts_ms: int


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", rename="camel"):
    ts_ms: int


class Genesis(_Event, frozen=True, kw_only=True, tag="genesis"):
    """First event of a namespace: the initial policy and switches."""

    policy: dict[str, Any]
    is_armed: bool
    is_halted: bool


class IntentDecided(_Event, frozen=True, kw_only=True, tag="intent.decided"):
    """Exactly one per place command: accepted (with the orders it created) or rejected."""

    cmd_seq: int
    outcome: Outcome
    reason: str
    signal_id: str | None = None
    venue: str = ""
    account: str = ""
    symbol: str = ""
    client_order_ids: tuple[ClientOrderId, ...] = ()
    nonce: SeenNonce | None = None


class ControlDecided(_Event, frozen=True, kw_only=True, tag="control.decided"):
    """Exactly one per control command (ours or an upstream form, `core/controls.py`).
    Accepted halt/open/arm/disarm/policy change state.

    `authentication`: how the command proved where it came from — `signed` (the envelope's
    HMAC), `inner_signed` (RiskManager's signature inside the body), `unsigned`, or
    `bad_signature` (a signature that did not verify: treated as unsigned). Only a signed
    command may increase risk. A policy control either replaces the policy (`policy`,
    signed) or sets the limits overlay (`overlay`: limits that only tighten the policy,
    `core/overlay.py`), and may carry the brain's risk state (`risk_state`)."""

    cmd_seq: int
    action: str
    outcome: Outcome
    reason: str
    policy: dict[str, Any] | None = None
    client_order_ids: tuple[ClientOrderId, ...] = ()
    nonce: SeenNonce | None = None
    authentication: str = "signed"
    form: str = ""
    overlay: dict[str, Any] | None = None
    risk_state: str | None = None


class RiskStateDecided(_Event, frozen=True, kw_only=True, tag="risk_state.decided"):
    """Exactly one per message on the brain's risk-state subject (`titan.evt.risk.state.v1`,
    in `TITAN_EVT` at `src_seq`): accepted (the posture changes) or rejected (not one of
    `RISK_STATES`)."""

    src_seq: int
    risk_state: str
    outcome: Outcome
    reason: str


class _OrderEvent(_Event, frozen=True, kw_only=True):
    client_order_id: ClientOrderId
    venue: str
    account: str
    symbol: str


class OrderAccepted(_OrderEvent, frozen=True, kw_only=True, tag="order.accepted"):
    """The risk guard accepted an order; it is recorded but not yet sent."""

    signal_id: str
    cmd_seq: int
    side: Side
    order_type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    is_reduce_only: bool
    intent_type: IntentType | None
    expires_at_ms: int
    t_signal: int
    t_ingress: int
    correlation_id: str = ""
    stop_loss: Decimal | None = None
    take_profits: tuple[Decimal, ...] = ()
    reference_price: Decimal | None = None
    """The book price the order met at decision time (ask for a buy, bid for a sell): the
    slippage breaker measures its fills against it (absent: the limit price, if any)."""


class OrderSubmitted(_OrderEvent, frozen=True, kw_only=True, tag="order.submitted"):
    """Write-ahead: the order is about to be sent to the venue."""


class OrderAcknowledged(_OrderEvent, frozen=True, kw_only=True, tag="order.acknowledged"):
    venue_order_id: VenueOrderId


class OrderCancelRequested(_OrderEvent, frozen=True, kw_only=True, tag="order.cancel_requested"):
    """Write-ahead of a cancel (time-to-live, flatten, halt)."""

    reason: str


class OrderCanceled(_OrderEvent, frozen=True, kw_only=True, tag="order.canceled"):
    reason: str


class OrderRejected(_OrderEvent, frozen=True, kw_only=True, tag="order.rejected"):
    reason: str


class OrderExpired(_OrderEvent, frozen=True, kw_only=True, tag="order.expired"):
    """Canceled because its time-to-live ran out (or the venue expired it)."""

    reason: str = "ttl"


class OrderFilled(_Event, frozen=True, kw_only=True, tag="order.filled"):
    """One venue fill. Field for field the contract's FillReport, plus venue and account."""

    fill_id: str
    signal_id: str
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_currency: str
    t_signal: int
    t_ingress: int
    t_decision: int
    t_ack: int
    t_exchange: int
    client_order_id: ClientOrderId
    execution_id: str
    status: Literal["FILLED", "PARTIALLY_FILLED"]
    timestamp: int
    venue: str
    account: str
    dex_proof: None = None


class StateCompacted(_Event, frozen=True, kw_only=True, tag="state.compacted"):
    """The active prunes closed history it no longer needs, so that the state (and its
    snapshot) depends on the trading rate over a horizon, not on the length of history.
    Both instances fold the same explicit bounds, so a difference in their clocks or
    configuration cannot make them drift.

    - commands below ``cmd_floor`` count as decided (every one was acknowledged after its
      decision was durable); the set of decided command sequences keeps those above it;
    - terminal orders decided before ``orders_before_ms`` are dropped (open orders stay,
      whatever their age), and with them the signal ids whose orders are all gone, and
      the realised PnL of the days before that day;
    - venue trade ids older than ``fills_before_ms`` are dropped: a trade older than that
      is never applied again (the venue adapters never re-read so far back)."""

    cmd_floor: int
    orders_before_ms: int
    fills_before_ms: int


class PositionReconciled(_Event, frozen=True, kw_only=True, tag="position.reconciled"):
    """The venue's explicit position report contradicted ours for longer than the confirm
    time, with no order of ours open on the symbol: the venue is authoritative, so our
    position is set to its quantity (and entry price, when given). Realised PnL is kept.
    Written by the active's venue reconciliation (`core/reconcile.py`), never guessed:
    a symbol missing from the venue's report is unknown, not flat."""

    venue: str
    account: str
    symbol: str
    qty_before: Decimal
    qty_after: Decimal
    venue_entry_price: Decimal | None = None
    reason: str


OrderEvent = (
    OrderAccepted
    | OrderSubmitted
    | OrderAcknowledged
    | OrderCancelRequested
    | OrderCanceled
    | OrderRejected
    | OrderExpired
)
Event = (
    Genesis
    | IntentDecided
    | ControlDecided
    | RiskStateDecided
    | OrderEvent
    | OrderFilled
    | StateCompacted
    | PositionReconciled
)

EVENT_TYPES: tuple[type[Any], ...] = (
    Genesis,
    IntentDecided,
    ControlDecided,
    RiskStateDecided,
    OrderAccepted,
    OrderSubmitted,
    OrderAcknowledged,
    OrderCancelRequested,
    OrderCanceled,
    OrderRejected,
    OrderExpired,
    OrderFilled,
    StateCompacted,
    PositionReconciled,
)


def event_id(event: Event) -> str:
    """Deterministic id of an event (the envelope id and the JetStream `Nats-Msg-Id`).

    Re-publishing the same event after an ambiguous failure is then dropped by the
    stream's duplicate window instead of being applied twice.
    """
    match event:
        case Genesis():
            return f"genesis:{event.ts_ms}"
        case IntentDecided() | ControlDecided():
            return f"cmd:{event.cmd_seq}:decided"
        case RiskStateDecided():
            return f"risk_state:{event.src_seq}:decided"
        case OrderFilled():
            return f"fill:{event.venue}:{event.execution_id}"
        case OrderAccepted():
            return f"{event.client_order_id}:accepted"
        case OrderSubmitted():
            return f"{event.client_order_id}:submitted"
        case OrderAcknowledged():
            return f"{event.client_order_id}:acknowledged"
        case OrderCancelRequested():
            return f"{event.client_order_id}:cancel_requested:{event.ts_ms}"
        case OrderCanceled():
            return f"{event.client_order_id}:canceled"
        case OrderRejected():
            return f"{event.client_order_id}:rejected"
        case OrderExpired():
            return f"{event.client_order_id}:expired"
        case StateCompacted():
            return f"compacted:{event.cmd_floor}:{event.orders_before_ms}:{event.fills_before_ms}"
        case PositionReconciled():
            return f"position:{event.venue}:{event.account}:{event.symbol}:{event.ts_ms}"
