"""The notional and leverage caps hold at every price an order can fill at (issue 12, item 4).

Book in these tests: BTC/USDT bid 50000 / ask 50010; cap 50000 notional, 10x leverage.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.builders import NOW, decide_received, genesis, intent_payload, signed
from titan_exec.core.decide import DecisionConfig
from titan_exec.core.model import Side
from titan_exec.core.policy import RiskPolicy
from titan_exec.core.positions import Position
from titan_exec.core.risk import (
    MarketView,
    OrderPlan,
    RiskLimits,
    RiskRefusal,
    Ticker,
    cap_price,
    check_order,
    reference_price,
)
from titan_exec.core.state import State, replay
from titan_exec.wire.ingress import ReceivedCommand

D = Decimal
KEY = ("sim", "BTC/USDT")
BID, ASK = D("50000"), D("50010")
CAP = D("50000")
LIMITS = RiskLimits()


def state(position: str = "0") -> State:
    s = replay([genesis(armed=True)])
    assert policy(s).max_position_notional == CAP
    if D(position) != 0:
        s.positions[KEY] = Position(venue="sim", symbol="BTC/USDT", qty=D(position))
    return s


def policy(s: State) -> RiskPolicy:
    assert s.policy is not None
    return s.policy


def view(
    *, bid: Decimal = BID, ask: Decimal = ASK, ticker: bool = True, equity: str = "1000000"
) -> MarketView:
    return MarketView(
        now_ms=NOW,
        last_heartbeat_ms=NOW,
        tickers={KEY: Ticker(bid, ask, NOW)} if ticker else {},
        equity={"sim": D(equity)},
    )


def plan(side: Side, qty: str, limit: str | None = None, *, reduce_only: bool = False) -> OrderPlan:
    return OrderPlan(
        venue="sim",
        symbol="BTC/USDT",
        side=side,
        qty=D(qty),
        limit_price=None if limit is None else D(limit),
        is_reduce_only=reduce_only,
        t_signal=NOW,
    )


def check(
    p: OrderPlan, s: State | None = None, market: MarketView | None = None
) -> RiskRefusal | None:
    s = s if s is not None else state()
    return check_order(s, policy(s), p, market or view(), LIMITS)


def notional_refusal(refusal: RiskRefusal | None, notional: str) -> bool:
    return (
        refusal is not None
        and refusal.code == "risk_rejection"
        and f"position notional {D(notional)} on BTC/USDT would exceed {CAP}" in refusal.message
    )


# --- market orders: the book ------------------------------------------------------------------


def test_a_market_buy_is_capped_at_the_ask() -> None:
    assert reference_price(plan(Side.BUY, "1"), view()) == ASK
    assert cap_price(plan(Side.BUY, "1"), view()) == ASK
    assert notional_refusal(check(plan(Side.BUY, "1")), "50010")
    assert check(plan(Side.BUY, "0.99")) is None  # 49509.90


def test_a_market_sell_is_capped_at_the_bid() -> None:
    assert cap_price(plan(Side.SELL, "1"), view()) == BID
    assert check(plan(Side.SELL, "1")) is None  # 50000: at the cap, not over it
    assert notional_refusal(check(plan(Side.SELL, "1.001")), "50050.000")


# --- marketable limits: the book too, the limit is only a bound -------------------------------


def test_the_issues_sell_at_1_is_refused_like_the_market_sell() -> None:
    # SELL 100 with limit 1 is marketable (1 <= bid): it fills at the bid, 100 BTC short
    through = plan(Side.SELL, "100", "1")
    assert cap_price(through, view()) == BID
    refusal = check(through)
    assert notional_refusal(refusal, "5000000")
    assert refusal == check(plan(Side.SELL, "100"))  # exactly the market order's refusal


@pytest.mark.parametrize("limit", ["50000", "49000", "0.01"])
def test_a_marketable_sell_limit_uses_the_bid(limit: str) -> None:
    assert cap_price(plan(Side.SELL, "1", limit), view()) == BID
    assert check(plan(Side.SELL, "1", limit)) is None
    assert notional_refusal(check(plan(Side.SELL, "1.001", limit)), "50050.000")


@pytest.mark.parametrize("limit", ["50010", "60000", "1000000"])
def test_a_marketable_buy_limit_uses_the_ask_not_its_limit(limit: str) -> None:
    # it fills at once at the ask (price improvement); its limit is not what it pays
    assert cap_price(plan(Side.BUY, "0.99", limit), view()) == ASK
    assert check(plan(Side.BUY, "0.99", limit)) is None
    assert notional_refusal(check(plan(Side.BUY, "1", limit)), "50010")


# --- resting limits: the limit only when it is the worse price --------------------------------


def test_a_resting_sell_limit_is_capped_at_its_limit_above_the_bid() -> None:
    # it can only fill at 60000 or better for us (higher): 0.9 * 60000 = 54000 > cap,
    # although the same size at the market (0.9 * 50000 = 45000) is within it
    resting = plan(Side.SELL, "0.9", "60000")
    assert cap_price(resting, view()) == D("60000")
    assert notional_refusal(check(resting), "54000.0")
    assert check(plan(Side.SELL, "0.9")) is None
    assert check(plan(Side.SELL, "0.8", "60000")) is None  # 48000


def test_a_resting_buy_limit_below_the_ask_is_capped_at_the_ask() -> None:
    # it fills at 40000 or below, so the ask bounds every price it can fill at; the guard
    # keeps the ask (the reference) rather than the lower limit: never easier than a market buy
    resting = plan(Side.BUY, "1", "40000")
    assert cap_price(resting, view()) == ASK
    assert notional_refusal(check(resting), "50010")
    assert check(plan(Side.BUY, "0.99", "40000")) is None


def test_leverage_is_computed_at_the_same_price() -> None:
    # equity 2000, 10x: 20000 of gross notional at most
    poor = view(equity="2000")
    refusal = check(plan(Side.SELL, "0.5", "1"), market=poor)  # 0.5 * 50000 / 2000 = 12.5x
    assert refusal is not None and "account leverage 12.50 would exceed" in refusal.message
    assert check(plan(Side.SELL, "0.4", "1"), market=poor) is None  # 10x exactly
    refusal = check(plan(Side.SELL, "0.4", "60000"), market=poor)  # resting: 0.4 * 60000
    assert refusal is not None and "account leverage 12.00 would exceed" in refusal.message


# --- no reference price, bad limits, reduce-only ---------------------------------------------


@pytest.mark.parametrize(
    ("side", "limit"),
    [
        (Side.BUY, None),
        (Side.SELL, None),
        (Side.BUY, "40000"),
        (Side.SELL, "1"),
        (Side.SELL, "60000"),
    ],
)
def test_without_a_ticker_an_opening_is_refused(side: Side, limit: str | None) -> None:
    p = plan(side, "0.001", limit)
    assert reference_price(p, view(ticker=False)) is None
    assert cap_price(p, view(ticker=False)) is None
    refusal = check(p, market=view(ticker=False))
    assert refusal is not None
    assert refusal.message == "RISK REJECTION: no reference price for BTC/USDT on sim"


@pytest.mark.parametrize("limit", ["0", "-1", "Infinity", "NaN"])
def test_a_limit_that_is_not_a_positive_number_is_refused(limit: str) -> None:
    refusal = check(plan(Side.SELL, "0.001", limit))
    assert refusal is not None
    assert refusal.message.startswith("RISK REJECTION: limit price must be a positive number")


@pytest.mark.parametrize("ticker", [True, False])
@pytest.mark.parametrize("limit", [None, "1", "1000000"])
def test_reduce_only_is_still_exempt(ticker: bool, limit: str | None) -> None:
    # closing a 100 BTC short: far over the notional cap, with or without a ticker or limit
    closing = plan(Side.BUY, "100", limit, reduce_only=True)
    assert check(closing, state("-100"), view(ticker=ticker, equity="1")) is None
    assert check(plan(Side.BUY, "100", limit), state("-50"), view()) is not None  # not exempt


# --- through the decision: the issue's intent ------------------------------------------------


def test_the_issues_intent_is_refused_by_the_decision() -> None:
    cfg = DecisionConfig(
        venues=frozenset({"sim"}),
        default_venue="sim",
    )
    subject = "titan.cmd.exec.place.v1.sim.main.BTC_USDT"
    entries: list[list[float] | None] = [[1], None]  # limit 1, then market
    for seq, entry in enumerate(entries, start=1):
        data = signed(intent_payload(f"short-{seq}", type_="SELL_SETUP", size=100, entry=entry))
        cmd = ReceivedCommand(seq=seq, subject=subject, data=data, t_ingress_ms=NOW)
        decision = decide_received(state(), cmd, cfg, view())
        assert decision.refusal is not None
        assert decision.refusal.code == "risk_rejection"
        assert "position notional 5000000" in decision.refusal.message
        assert decision.submit == ()


# --- the property ----------------------------------------------------------------------------

prices = st.decimals(min_value="100", max_value="100000", places=2)
factors = st.none() | st.decimals(min_value="0.0001", max_value="3", places=4)
"""The limit as a multiple of the bid (None: a market order): through the book, inside the
spread, resting on either side."""
quantities = st.decimals(min_value="0.001", max_value="100", places=3)
positions = st.decimals(min_value="-100", max_value="100", places=3)
equities = st.decimals(min_value="1000", max_value="10000000", places=0)


@given(
    side=st.sampled_from(Side),
    qty=quantities,
    before=positions,
    bid=prices,
    spread=st.decimals(min_value="0", max_value="100", places=2),
    factor=factors,
    equity=equities,
    where=st.decimals(min_value="0", max_value="1", places=4),
)
def test_accepted_means_within_the_caps_at_every_price_it_can_fill_at(
    side: Side,
    qty: Decimal,
    before: Decimal,
    bid: Decimal,
    spread: Decimal,
    factor: Decimal | None,
    equity: Decimal,
    where: Decimal,
) -> None:
    ask = bid + spread
    limit = None if factor is None else (bid * factor).quantize(D("0.01"))
    s = state(str(before))
    market = view(bid=bid, ask=ask, equity=str(equity))
    p = OrderPlan("sim", "BTC/USDT", side, qty, limit, False, NOW)
    refusal = check_order(s, policy(s), p, market, LIMITS)
    market_refusal = check_order(s, policy(s), plan(side, str(qty)), market, LIMITS)
    if market_refusal is not None:
        # a limit never makes an opening easier than the market order at the same book
        assert refusal is not None
    if refusal is not None:
        return
    # Every price it can fill at: a buy at the ask when marketable, at its limit or below
    # when resting, so anything up to min(limit, ask); a sell at the bid when marketable,
    # at its limit when resting: max(limit, bid).
    if side is Side.BUY:
        highest = ask if limit is None else min(limit, ask)
        fills = [highest, highest * where]
    else:
        fills = [bid if limit is None else max(limit, bid)]
    after = abs(before + qty * side.sign)
    for price in fills:
        assert after * price <= policy(s).max_position_notional
        assert after * price / equity <= policy(s).max_account_leverage
