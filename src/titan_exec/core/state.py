"""The execution state and its fold: ``apply(state, event) -> state``. Pure.

The state is a deterministic function of the service's own events in stream order. The
active applies the events it writes; a standby (later) applies the same events from its
own consumer; a restart replays them. `state_hash` makes two states comparable.

For speed the `State` object is updated in place by `step`/`apply` and returned; it is
owned by exactly one writer. Nothing else mutates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from titan_exec.core import orders as om
from titan_exec.core.events import (
    ControlDecided,
    Event,
    Genesis,
    IntentDecided,
    OrderAccepted,
    OrderAcknowledged,
    OrderCanceled,
    OrderCancelRequested,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    PositionReconciled,
    RiskStateDecided,
    StateCompacted,
)
from titan_exec.core.model import DECIMAL_CONTEXT, ZERO, ClientOrderId, ControlAction, Side, day_of
from titan_exec.core.nonces import NonceWindow
from titan_exec.core.orders import Order
from titan_exec.core.overlay import LimitsOverlay, effective, overlay_from_doc
from titan_exec.core.policy import RiskPolicy, parse_policy
from titan_exec.core.positions import ClosedTrade, Opening, Position, set_from_venue
from titan_exec.core.positions import apply_fill as position_fill

PositionKey = tuple[str, str]
"""(venue, symbol)"""

RECENT_TRADES = 200
RISK_ORDER = ("Normal", "Cautious", "Defensive", "Emergency")
BPS = Decimal(10_000)


@dataclass(slots=True)
class State:
    policy: RiskPolicy | None = None
    is_armed: bool = False
    is_halted: bool = False
    orders: dict[ClientOrderId, Order] = field(default_factory=dict)
    open_orders: dict[PositionKey, set[ClientOrderId]] = field(default_factory=dict)
    positions: dict[PositionKey, Position] = field(default_factory=dict)
    decided_cmds: set[int] = field(default_factory=set)
    """Decided command sequences at or above `cmd_floor` (below it every one counts)."""
    cmd_floor: int = 0
    accepted_signals: dict[str, tuple[ClientOrderId, ...]] = field(default_factory=dict)
    seen_fills: dict[tuple[str, str], int] = field(default_factory=dict)
    """(venue, trade id) -> exchange time of the trades applied, down to `fills_floor_ms`."""
    fills_floor_ms: int = 0
    orders_floor_ms: int = 0
    """Closed orders decided before this were compacted away (with their signal ids)."""
    daily_realized: dict[int, Decimal] = field(default_factory=dict)
    recent_trades: list[ClosedTrade] = field(default_factory=list)
    trade_count: int = 0
    event_count: int = 0
    anomalies: int = 0
    """Late fills, overfills, fills for unknown orders: venue truth that surprised us."""
    reconciliations: int = 0
    """Positions set from an authoritative venue report (`PositionReconciled`)."""
    risk_state: str = "Normal"
    """The brain's risk posture (`events.RISK_STATES`), or one the slippage breaker set."""
    risk_state_source: str = ""
    """What set it: `risk_guardian`, `policy cmd <seq>`, `slippage ...`, `control cmd <seq>`."""
    risk_state_seq: int = 0
    """`TITAN_EVT` sequence of the last risk-state message decided (the reader resumes after
    it)."""
    overlay: LimitsOverlay | None = None
    """Unsigned limits that tighten the policy (`core/overlay.py`)."""
    ref_prices: dict[ClientOrderId, Decimal] = field(default_factory=dict)
    """Reference prices of open orders (slippage breaker)."""
    slippage_breaches: int = 0
    control_counts: dict[str, int] = field(default_factory=dict)
    """`<action>:<outcome>:<authentication>` -> how many (a display; not hashed)."""
    nonces: NonceWindow = field(default_factory=NonceWindow)
    """The verified nonces of the commands decided (`core/nonces.py`; not hashed)."""

    @property
    def is_initialized(self) -> bool:
        return self.policy is not None

    @property
    def limits(self) -> RiskPolicy | None:
        """The policy the risk guard applies: the active policy tightened by the overlay."""
        if self.policy is None:
            return None
        return effective(self.policy, self.overlay)

    def position(self, venue: str, symbol: str) -> Position:
        return self.positions.get((venue, symbol)) or Position(venue=venue, symbol=symbol)

    def open_order_count(self, venue: str, symbol: str) -> int:
        return len(self.open_orders.get((venue, symbol), ()))

    def open_symbols(self, venue: str) -> list[str]:
        """The symbols of `venue` with an open order (no order visited)."""
        return [symbol for v, symbol in self.open_orders if v == venue]

    def iter_open_orders(self) -> list[Order]:
        return [self.orders[c] for cs in self.open_orders.values() for c in sorted(cs)]

    def realized_on(self, day: int) -> Decimal:
        return self.daily_realized.get(day, ZERO)

    def is_decided(self, cmd_seq: int) -> bool:
        return cmd_seq < self.cmd_floor or cmd_seq in self.decided_cmds

    def is_fill_seen(self, venue: str, trade_id: str, t_exchange: int) -> bool:
        """Applied already, or older than the compacted trade ids (never applied again)."""
        return t_exchange < self.fills_floor_ms or (venue, trade_id) in self.seen_fills


def apply(state: State, event: Event) -> State:
    return step(state, event)[0]


def step(state: State, event: Event) -> tuple[State, ClosedTrade | None]:
    """Apply one event; also return the round trip it closed, if any (a TradeRecord)."""
    with localcontext(DECIMAL_CONTEXT):
        return _step(state, event)


def _step(state: State, event: Event) -> tuple[State, ClosedTrade | None]:
    state.event_count += 1
    closed: ClosedTrade | None = None
    match event:
        case Genesis():
            state.policy = parse_policy(event.policy)
            state.is_armed = event.is_armed
            state.is_halted = event.is_halted
        case IntentDecided():
            state.decided_cmds.add(event.cmd_seq)
            if event.nonce is not None:
                state.nonces.remember(event.nonce, event.ts_ms)
            if event.outcome == "accepted" and event.signal_id is not None:
                state.accepted_signals[event.signal_id] = event.client_order_ids
        case ControlDecided():
            state.decided_cmds.add(event.cmd_seq)
            if event.nonce is not None:
                state.nonces.remember(event.nonce, event.ts_ms)
            _count(state, event.action or "unknown", event.outcome, event.authentication)
            if event.outcome == "accepted":
                _apply_control(state, event)
        case RiskStateDecided():
            state.risk_state_seq = max(state.risk_state_seq, event.src_seq)
            _count(state, "risk_state", event.outcome, "unsigned")
            if event.outcome == "accepted":
                state.risk_state = event.risk_state
                state.risk_state_source = f"risk_guardian seq {event.src_seq}"
        case OrderAccepted():
            if event.client_order_id in state.orders:
                raise om.IllegalTransition(f"order {event.client_order_id} accepted twice")
            order = om.new_order(event)
            state.orders[order.client_order_id] = order
            state.open_orders.setdefault((order.venue, order.symbol), set()).add(
                order.client_order_id
            )
            if event.reference_price is not None:
                state.ref_prices[order.client_order_id] = event.reference_price
        case (
            OrderSubmitted()
            | OrderAcknowledged()
            | OrderCancelRequested()
            | OrderCanceled()
            | OrderRejected()
            | OrderExpired()
        ):
            order = _order(state, event.client_order_id)
            _put(state, om.apply_lifecycle(order, event))
        case OrderFilled():
            closed = _apply_fill(state, event)
        case StateCompacted():
            _compact(state, event)
        case PositionReconciled():
            key = (event.venue, event.symbol)
            state.positions[key] = set_from_venue(
                state.position(*key),
                qty=event.qty_after,
                entry_price=event.venue_entry_price,
                ts_ms=event.ts_ms,
            )
            state.reconciliations += 1
    return state, closed


def _order(state: State, coid: ClientOrderId) -> Order:
    order = state.orders.get(coid)
    if order is None:
        raise om.IllegalTransition(f"event for unknown order {coid}")
    return order


def _count(state: State, action: str, outcome: str, authentication: str) -> None:
    key = f"{action}:{outcome}:{authentication}"
    state.control_counts[key] = state.control_counts.get(key, 0) + 1


def _put(state: State, order: Order) -> None:
    state.orders[order.client_order_id] = order
    if order.status.is_terminal:
        state.ref_prices.pop(order.client_order_id, None)
        key = (order.venue, order.symbol)
        open_set = state.open_orders.get(key)
        if open_set is not None:
            open_set.discard(order.client_order_id)
            if not open_set:
                del state.open_orders[key]


def _apply_control(state: State, event: ControlDecided) -> None:
    action = ControlAction(event.action)
    if action is ControlAction.HALT:
        state.is_halted = True
    elif action is ControlAction.OPEN:
        state.is_halted = False
    elif action is ControlAction.ARM:
        state.is_armed = True
    elif action is ControlAction.DISARM:
        state.is_armed = False
    elif action is ControlAction.POLICY:
        if event.policy is None and event.overlay is None and event.risk_state is None:
            raise ValueError(f"policy control {event.cmd_seq} carries no policy")
        if event.policy is not None:
            state.policy = parse_policy(event.policy)
        if event.overlay is not None:
            state.overlay = overlay_from_doc(event.overlay)
    if event.risk_state is not None:
        state.risk_state = event.risk_state
        state.risk_state_source = f"{event.action} cmd {event.cmd_seq}"
    # FLATTEN acts through the orders it created (their own events).


def _slippage_bps(order: Order, ref: Decimal, fill: OrderFilled) -> Decimal:
    """How much worse than `ref` the fill is, in basis points (negative: better)."""
    worse = fill.price - ref if order.side is Side.BUY else ref - fill.price
    return worse / ref * BPS


def _slippage_breaker(state: State, order: Order, fill: OrderFilled) -> None:
    """A fill worse than its order's reference price by more than the policy's
    `maxSlippageBps` moves the risk state to Cautious, by more than twice to Defensive.
    It only ever escalates; `Normal` from the brain (or a signed control) lifts it."""
    ref = state.ref_prices.get(order.client_order_id) or order.limit_price
    limits = state.limits
    if ref is None or ref <= ZERO or limits is None or limits.max_slippage_bps <= 0:
        return
    bps = _slippage_bps(order, ref, fill)
    bound = Decimal(limits.max_slippage_bps)
    target = "Defensive" if bps > 2 * bound else "Cautious" if bps > bound else None
    if target is None:
        return
    state.slippage_breaches += 1
    if RISK_ORDER.index(target) > RISK_ORDER.index(state.risk_state):
        state.risk_state = target
        state.risk_state_source = (
            f"slippage {bps.quantize(Decimal('0.01'))} bps on {order.client_order_id} "
            f"(fill {fill.price}, reference {ref}, max {bound})"
        )


def compaction(
    state: State, *, acked_cmd_seq: int, now_ms: int, horizon_ms: int
) -> StateCompacted | None:
    """The compaction the active appends before a checkpoint: commands up to the last one
    acknowledged in order (`acked_cmd_seq`, the consumer's ack floor) count as decided;
    closed orders and trade ids older than `horizon_ms` go. None when no bound moved (the
    same event again would carry the same message id: dropped by the stream's duplicate
    window, yet applied by the writer)."""
    cmd_floor = max(state.cmd_floor, acked_cmd_seq + 1 if acked_cmd_seq else 0)
    before = now_ms - horizon_ms
    orders_before = max(state.orders_floor_ms, before)
    fills_before = max(state.fills_floor_ms, before)
    if (cmd_floor, orders_before, fills_before) == (
        state.cmd_floor,
        state.orders_floor_ms,
        state.fills_floor_ms,
    ):
        return None
    return StateCompacted(
        ts_ms=now_ms,
        cmd_floor=cmd_floor,
        orders_before_ms=orders_before,
        fills_before_ms=fills_before,
    )


def _compact(state: State, ev: StateCompacted) -> None:
    if ev.cmd_floor > state.cmd_floor:
        state.cmd_floor = ev.cmd_floor
        state.decided_cmds = {s for s in state.decided_cmds if s >= ev.cmd_floor}
    state.orders_floor_ms = max(state.orders_floor_ms, ev.orders_before_ms)
    state.nonces.prune(ev.orders_before_ms)  # the horizon is at least twice the tolerance
    dropped = [
        coid
        for coid, order in state.orders.items()
        if order.status.is_terminal and order.t_decision < ev.orders_before_ms
    ]
    for coid in dropped:
        del state.orders[coid]
    if dropped:
        state.accepted_signals = {
            sid: coids
            for sid, coids in state.accepted_signals.items()
            if any(c in state.orders for c in coids)
        }
    if ev.orders_before_ms > 0:
        first_day = day_of(ev.orders_before_ms)
        state.daily_realized = {d: v for d, v in state.daily_realized.items() if d >= first_day}
    if ev.fills_before_ms > state.fills_floor_ms:
        state.fills_floor_ms = ev.fills_before_ms
        state.seen_fills = {k: t for k, t in state.seen_fills.items() if t >= ev.fills_before_ms}


def _apply_fill(state: State, fill: OrderFilled) -> ClosedTrade | None:
    key = (fill.venue, fill.execution_id)
    if state.is_fill_seen(fill.venue, fill.execution_id, fill.t_exchange):
        return None  # duplicate venue trade (or older than the compacted ids): ignored
    state.seen_fills[key] = fill.t_exchange
    order = state.orders.get(fill.client_order_id)
    if order is None:
        state.anomalies += 1
        opening = Opening(signal_id=fill.signal_id)
    else:
        _slippage_breaker(state, order, fill)
        updated = om.apply_fill(order, fill)
        if updated.is_anomalous and not order.is_anomalous:
            state.anomalies += 1
        _put(state, updated)
        opening = Opening(
            signal_id=order.signal_id, stop_loss=order.stop_loss, take_profits=order.take_profits
        )
    pos_key = (fill.venue, fill.symbol)
    outcome = position_fill(
        state.position(*pos_key),
        side=fill.side,
        qty=fill.qty,
        price=fill.price,
        fee=fill.fee,
        ts_ms=fill.t_exchange,
        opening=opening,
    )
    state.positions[pos_key] = outcome.position
    if outcome.realized_delta != ZERO:
        day = day_of(fill.t_exchange)
        state.daily_realized[day] = state.realized_on(day) + outcome.realized_delta
    if outcome.closed is not None:
        state.trade_count += 1
        state.recent_trades.append(outcome.closed)
        del state.recent_trades[:-RECENT_TRADES]
    return outcome.closed


def replay(events: list[Event]) -> State:
    state = State()
    for ev in events:
        apply(state, ev)
    return state


def state_hash(state: State) -> str:
    """SHA-256 over the canonical snapshot lines of everything the fold decides
    (`core/snapshot.py`, hash version 2): two instances that folded the same events have
    the same hash, and a snapshot's hash is checked against its own lines on load."""
    from titan_exec.core.snapshot import hash_state  # the snapshot codec builds on State

    return hash_state(state)
