"""The risk guard: the contract's checks after the intent is parsed, in the contract's order.

    whitelist → size > 0 → open orders per symbol → daily realised loss → position
    notional cap → account leverage → brain heartbeat (stale: reduce-only) → market data
    staleness → freshness

Reduce-only orders (CLOSE* intents, flatten) are exempt from the daily loss, notional,
leverage, heartbeat and market-data checks: getting out of risk is always allowed. They
are not exempt from the whitelist, size, open-order and freshness checks.

The price of the caps. Notional (``abs(position after) * price``) and leverage grow with the
price, so the cap holds at every price the order can fill at when it holds at the highest
one. With the book as the ticker shows it (the reference price: the ask for a buy, the bid
for a sell):

* a MARKET order fills at the book: the reference price;
* a marketable LIMIT (buy: limit >= ask, sell: limit <= bid) fills at once at the book, the
  limit being only its bound (price improvement): the reference price. A limit far through
  the book (a sell at 1) is therefore no cheaper than a market order;
* a resting LIMIT fills later, at its own price: a buy only at or below its limit, which
  is below the ask, so the ask still bounds every price it can fill at; a sell only at or
  above its limit, which is above the bid, so the limit is the highest price it can get.

Hence the cap price (`cap_price`) is the reference price, or the limit of a resting order
when it is the worse price (the larger notional): the ask for every buy, ``max(bid, limit)``
for every sell. For a resting buy this is stricter than its own fill price (by the distance
from its limit to the ask): a resting buy is never easier to open than a market buy at the
same book. Leverage adds to that notional the other positions on the venue at their mid.
As for a market order, the book is the ticker at decision time (its age is checked below,
market data staleness); a move between the decision and the venue is not priced in. With
no ticker there is no reference price and an opening is refused (``no reference price``),
limit or not; a limit that is not a positive number is refused too.

A refusal is a value (`RiskRefusal`) with a readable reason, never an exception. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from titan_exec.core.model import ZERO, Side, day_of
from titan_exec.core.policy import RiskPolicy
from titan_exec.core.state import PositionKey, State


@dataclass(frozen=True, slots=True)
class Ticker:
    bid: Decimal
    ask: Decimal
    ts_ms: int

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True, slots=True)
class MarketView:
    """What the shell knows of the outside world at decision time."""

    now_ms: int
    last_heartbeat_ms: int | None
    tickers: Mapping[PositionKey, Ticker]
    equity: Mapping[str, Decimal]
    """Account equity per venue in quote currency (from the venue's balances)."""


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Service settings that complement the policy."""

    freshness_ms: int = 5000
    heartbeat_stale_ms: int = 5000
    require_heartbeat: bool = True


@dataclass(frozen=True, slots=True)
class OrderPlan:
    venue: str
    symbol: str
    side: Side
    qty: Decimal
    limit_price: Decimal | None
    is_reduce_only: bool
    t_signal: int


@dataclass(frozen=True, slots=True)
class RiskRefusal:
    code: str
    """Telemetry reason code (`risk_rejection`, `intent_expired`, ...)."""
    message: str
    """Readable reason for the dead letter (`RISK REJECTION: ...`)."""


def _risk(message: str) -> RiskRefusal:
    return RiskRefusal("risk_rejection", f"RISK REJECTION: {message}")


def check_symbol(policy: RiskPolicy, symbol: str, size: Decimal) -> RiskRefusal | None:
    """The checks that precede resolving the order (whitelist, size)."""
    if symbol not in policy.symbol_whitelist:
        return _risk(f"Symbol '{symbol}' not in whitelist")
    if not size.is_finite() or size <= ZERO:
        return _risk(f"size must be > 0, got {size}")
    return None


def reference_price(plan: OrderPlan, market: MarketView) -> Decimal | None:
    """The book price the order meets now: the ask for a buy, the bid for a sell (None
    without a ticker). The limit, if any, plays no part here."""
    ticker = market.tickers.get((plan.venue, plan.symbol))
    if ticker is None:
        return None
    return ticker.ask if plan.side is Side.BUY else ticker.bid


def cap_price(plan: OrderPlan, market: MarketView) -> Decimal | None:
    """The price notional and leverage are computed at: the highest price the order can
    fill at (module docstring). None without a reference price."""
    ref = reference_price(plan, market)
    limit = plan.limit_price
    if ref is None or limit is None:
        return ref
    marketable = limit >= ref if plan.side is Side.BUY else limit <= ref
    if marketable:
        return ref  # fills at the book: a limit through it is only a bound
    return max(ref, limit)  # resting: the limit when it is the worse price


def check_order(
    state: State,
    policy: RiskPolicy,
    plan: OrderPlan,
    market: MarketView,
    limits: RiskLimits,
) -> RiskRefusal | None:
    """The checks after the order is resolved, from open orders to freshness."""
    key = (plan.venue, plan.symbol)
    open_count = state.open_order_count(*key)
    if open_count >= policy.max_open_orders_per_symbol:
        return _risk(
            f"{open_count} open orders on {plan.symbol} (max {policy.max_open_orders_per_symbol})"
        )
    if not plan.is_reduce_only:
        refusal = _check_exposure(state, policy, plan, market, limits)
        if refusal is not None:
            return refusal
    latency = market.now_ms - plan.t_signal
    if latency > limits.freshness_ms:
        return RiskRefusal("intent_expired", f"Intent EXPIRED: {latency} ms latency")
    return None


def _check_exposure(
    state: State,
    policy: RiskPolicy,
    plan: OrderPlan,
    market: MarketView,
    limits: RiskLimits,
) -> RiskRefusal | None:
    realized = state.realized_on(day_of(market.now_ms))
    if realized <= policy.max_daily_loss:
        return _risk(f"daily realised PnL {realized} reached the limit {policy.max_daily_loss}")

    limit = plan.limit_price
    if limit is not None and not (limit.is_finite() and limit > ZERO):
        return _risk(f"limit price must be a positive number, got {limit}")
    price = cap_price(plan, market)
    if price is None:
        return _risk(f"no reference price for {plan.symbol} on {plan.venue}")
    pos = state.position(plan.venue, plan.symbol)
    after = pos.qty + plan.qty * plan.side.sign
    notional = abs(after) * price
    if notional > policy.max_position_notional:
        return _risk(
            f"position notional {notional} on {plan.symbol} would exceed "
            f"{policy.max_position_notional}"
        )

    equity = market.equity.get(plan.venue)
    if equity is None or equity <= ZERO:
        return _risk(f"account equity on {plan.venue} unknown or not positive")
    gross = notional
    for (venue, symbol), other in state.positions.items():
        if venue != plan.venue or symbol == plan.symbol or other.is_flat:
            continue
        ticker = market.tickers.get((venue, symbol))
        mark = ticker.mid if ticker is not None else other.avg_entry
        gross += abs(other.qty) * mark
    leverage = gross / equity
    if leverage > policy.max_account_leverage:
        return _risk(f"account leverage {leverage:.2f} would exceed {policy.max_account_leverage}")

    if limits.require_heartbeat:
        hb = market.last_heartbeat_ms
        if hb is None or market.now_ms - hb > limits.heartbeat_stale_ms:
            age = "never seen" if hb is None else f"{market.now_ms - hb} ms old"
            return RiskRefusal(
                "brain_heartbeat_stale",
                f"RISK REJECTION: brain heartbeat stale ({age}): reduce-only",
            )

    ticker = market.tickers.get((plan.venue, plan.symbol))
    if ticker is None:
        return _risk(f"no market data for {plan.symbol} on {plan.venue}")
    age_ms = market.now_ms - ticker.ts_ms
    if age_ms > policy.max_staleness_ms:
        return _risk(
            f"market data for {plan.symbol} is {age_ms} ms old (max {policy.max_staleness_ms})"
        )
    return None
