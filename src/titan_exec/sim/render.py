"""The simulator's objects as Binance USDⓈ-M JSON documents (pure).

This module owns the response shapes of the `/fapi` endpoints — exchange info, book
tickers, orders, user trades, position risk (v2 and v3), account (v2 and v3), balance,
leverage brackets — with the field names and string-number formatting Binance uses, so
that ccxt's `binanceusdm` parsers read them as they read the real venue's.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

from titan_exec.adapters.venue.exchange.market import Book, SymbolSpec, fixed
from titan_exec.adapters.venue.exchange.records import (
    AccountView,
    PositionView,
    Rejection,
    SimOrder,
    SimTrade,
)
from titan_exec.core.model import DECIMAL_CONTEXT

ONBOARD_MS = 1569398400000
PERPETUAL_DELIVERY_MS = 4133404800000


def _e8(value: Decimal) -> str:
    return fixed(value, 8)


def symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    price = spec.price_decimals
    qty = spec.qty_decimals
    return {
        "symbol": spec.symbol,
        "pair": spec.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY_MS,
        "onboardDate": ONBOARD_MS,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": spec.base,
        "quoteAsset": spec.quote,
        "marginAsset": spec.quote,
        "pricePrecision": price,
        "quantityPrecision": qty,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fixed(spec.min_price, price),
                "maxPrice": fixed(spec.max_price, price),
                "tickSize": fixed(spec.tick_size, price),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fixed(spec.min_qty, qty),
                "maxQty": fixed(spec.max_qty, qty),
                "stepSize": fixed(spec.step_size, qty),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": fixed(spec.min_qty, qty),
                "maxQty": fixed(spec.max_qty, qty),
                "stepSize": fixed(spec.step_size, qty),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": f"{spec.min_notional:f}"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC"],
    }


def exchange_info(specs: list[SymbolSpec], now_ms: int) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [symbol_info(s) for s in specs],
    }  # fmt: skip


def book_ticker(spec: SymbolSpec, book: Book, now_ms: int) -> dict[str, Any]:
    p = spec.price_decimals
    size = fixed(spec.max_qty.scaleb(-2), spec.qty_decimals)
    return {
        "symbol": spec.symbol,
        "bidPrice": fixed(book.bid, p),
        "bidQty": size,
        "askPrice": fixed(book.ask, p),
        "askQty": size,
        "time": now_ms,
        "lastUpdateId": now_ms,
    }


def price_ticker(spec: SymbolSpec, book: Book, now_ms: int) -> dict[str, Any]:
    return {"symbol": spec.symbol, "price": fixed(book.mid, spec.price_decimals), "time": now_ms}


def premium_index(spec: SymbolSpec, book: Book, now_ms: int) -> dict[str, Any]:
    mid = fixed(book.mid, spec.price_decimals)
    return {
        "symbol": spec.symbol,
        "markPrice": mid,
        "indexPrice": mid,
        "estimatedSettlePrice": mid,
        "lastFundingRate": "0.00000000",
        "interestRate": "0.00000000",
        "nextFundingTime": (now_ms // 28_800_000 + 1) * 28_800_000,
        "time": now_ms,
    }


def ticker_24hr(spec: SymbolSpec, book: Book, now_ms: int) -> dict[str, Any]:
    mid = fixed(book.mid, spec.price_decimals)
    return {
        "symbol": spec.symbol,
        "priceChange": "0",
        "priceChangePercent": "0",
        "weightedAvgPrice": mid,
        "lastPrice": mid,
        "lastQty": fixed(spec.min_qty, spec.qty_decimals),
        "openPrice": mid,
        "highPrice": mid,
        "lowPrice": mid,
        "volume": "0",
        "quoteVolume": "0",
        "openTime": now_ms - 86_400_000,
        "closeTime": now_ms,
        "firstId": 0,
        "lastId": 0,
        "count": 0,
    }


def order_json(order: SimOrder, spec: SymbolSpec, *, with_time: bool) -> dict[str, Any]:
    """``with_time``: the query form (GET order, openOrders, allOrders) carries ``time``."""
    p, q = spec.price_decimals, spec.qty_decimals
    doc: dict[str, Any] = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": fixed(order.price, p),
        "avgPrice": fixed(order.avg_price, 8) if order.executed_qty else "0.00",
        "origQty": fixed(order.orig_qty, q),
        "executedQty": fixed(order.executed_qty, q),
        "cumQty": fixed(order.executed_qty, q),
        "cumQuote": fixed(order.cum_quote, p + q),  # exact: prices x quantities
        "timeInForce": order.time_in_force,
        "type": order.type,
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": order.side,
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE",
        "goodTillDate": 0,
        "updateTime": order.update_time_ms,
    }
    if with_time:
        doc["time"] = order.time_ms
    return doc


def trade_json(trade: SimTrade, spec: SymbolSpec) -> dict[str, Any]:
    return {
        "buyer": trade.side == "BUY",
        "commission": _e8(trade.commission),
        "commissionAsset": trade.commission_asset,
        "id": trade.trade_id,
        "maker": trade.maker,
        "orderId": trade.order_id,
        "price": fixed(trade.price, spec.price_decimals),
        "qty": fixed(trade.qty, spec.qty_decimals),
        "quoteQty": fixed(trade.quote_qty, spec.price_decimals + spec.qty_decimals),
        "realizedPnl": _e8(trade.realized_pnl),
        "side": trade.side,
        "positionSide": "BOTH",
        "symbol": trade.symbol,
        "time": trade.time_ms,
    }


def rejection_json(rej: Rejection) -> dict[str, Any]:
    return {
        "time": rej.time_ms,
        "symbol": rej.symbol,
        "side": rej.side,
        "type": rej.type,
        "quantity": rej.quantity,
        "price": rej.price,
        "clientOrderId": rej.client_order_id,
        "reduceOnly": rej.reduce_only,
        "code": rej.code,
        "msg": rej.msg,
    }


def _liquidation_price(v: PositionView, account: AccountView) -> Decimal:
    """A rough cross-margin liquidation price (0 when flat or never reached)."""
    if not v.amount:
        return Decimal(0)
    # the price at which the margin balance falls to this position's maintenance margin:
    # others + amount * (P - entry) = |amount| * P * mmr
    with localcontext(DECIMAL_CONTEXT):
        others = account.margin_balance - v.unrealized_pnl
        denom = v.amount - abs(v.amount) * v.spec.maint_margin_ratio
        if not denom:
            return Decimal(0)
        return max((v.amount * v.entry_price - others) / denom, Decimal(0))


def position_v3(v: PositionView, account: AccountView) -> dict[str, Any]:
    p = v.spec.price_decimals
    return {
        "symbol": v.spec.symbol,
        "positionSide": "BOTH",
        "positionAmt": fixed(v.amount, v.spec.qty_decimals),
        "entryPrice": _e8(v.entry_price) if v.amount else "0.0",
        "breakEvenPrice": _e8(v.entry_price) if v.amount else "0.0",
        "markPrice": _e8(v.mark_price),
        "unRealizedProfit": _e8(v.unrealized_pnl),
        "liquidationPrice": fixed(_liquidation_price(v, account), p),
        "isolatedMargin": "0",
        "notional": _e8(v.notional),
        "marginAsset": v.spec.quote,
        "isolatedWallet": "0",
        "initialMargin": _e8(v.initial_margin),
        "maintMargin": _e8(v.maint_margin),
        "positionInitialMargin": _e8(v.initial_margin),
        "openOrderInitialMargin": "0",
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": v.update_time_ms,
    }


def position_v2(v: PositionView, account: AccountView) -> dict[str, Any]:
    doc = position_v3(v, account)
    return {
        "symbol": doc["symbol"],
        "positionAmt": doc["positionAmt"],
        "entryPrice": doc["entryPrice"],
        "breakEvenPrice": doc["breakEvenPrice"],
        "markPrice": doc["markPrice"],
        "unRealizedProfit": doc["unRealizedProfit"],
        "liquidationPrice": doc["liquidationPrice"],
        "leverage": str(v.spec.leverage),
        "maxNotionalValue": "1000000000",
        "marginType": "cross",
        "isolatedMargin": "0.00000000",
        "isAutoAddMargin": "false",
        "positionSide": "BOTH",
        "notional": doc["notional"],
        "isolatedWallet": "0",
        "updateTime": v.update_time_ms,
    }


def _asset(account: AccountView) -> dict[str, Any]:
    return {
        "asset": "USDT",
        "walletBalance": _e8(account.wallet_balance),
        "unrealizedProfit": _e8(account.unrealized_pnl),
        "marginBalance": _e8(account.margin_balance),
        "maintMargin": _e8(account.maint_margin),
        "initialMargin": _e8(account.initial_margin),
        "positionInitialMargin": _e8(account.position_initial_margin),
        "openOrderInitialMargin": _e8(account.open_order_initial_margin),
        "crossWalletBalance": _e8(account.wallet_balance),
        "crossUnPnl": _e8(account.unrealized_pnl),
        "availableBalance": _e8(account.available_balance),
        "maxWithdrawAmount": _e8(max(account.available_balance, Decimal(0))),
        "marginAvailable": True,
        # ccxt skips assets whose updateTime is 0: the wallet always shows a time
        "updateTime": account.update_time_ms or 1,
    }


def account_json(
    account: AccountView, views: list[PositionView], *, version: int
) -> dict[str, Any]:
    asset = _asset(account)
    doc: dict[str, Any] = {
        "totalInitialMargin": asset["initialMargin"],
        "totalMaintMargin": asset["maintMargin"],
        "totalWalletBalance": asset["walletBalance"],
        "totalUnrealizedProfit": asset["unrealizedProfit"],
        "totalMarginBalance": asset["marginBalance"],
        "totalPositionInitialMargin": asset["positionInitialMargin"],
        "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
        "totalCrossWalletBalance": asset["crossWalletBalance"],
        "totalCrossUnPnl": asset["crossUnPnl"],
        "availableBalance": asset["availableBalance"],
        "maxWithdrawAmount": asset["maxWithdrawAmount"],
        "assets": [asset],
    }
    positions = []
    for v in views:
        if version == 3 and not v.amount:
            continue  # v3 lists only symbols with a position
        pos = {
            "symbol": v.spec.symbol,
            "positionSide": "BOTH",
            "positionAmt": fixed(v.amount, v.spec.qty_decimals),
            "unrealizedProfit": _e8(v.unrealized_pnl),
            "isolatedMargin": "0",
            "notional": _e8(v.notional),
            "isolatedWallet": "0",
            "initialMargin": _e8(v.initial_margin),
            "maintMargin": _e8(v.maint_margin),
            "updateTime": v.update_time_ms,
        }
        if version == 2:
            pos.update(
                {
                    "entryPrice": _e8(v.entry_price),
                    "leverage": str(v.spec.leverage),
                    "isolated": False,
                    "positionInitialMargin": _e8(v.initial_margin),
                    "openOrderInitialMargin": "0",
                    "maxNotional": "1000000000",
                    "bidNotional": "0",
                    "askNotional": "0",
                }
            )
        positions.append(pos)
    doc["positions"] = positions
    if version == 2:
        doc.update(
            {"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
             "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1}
        )  # fmt: skip
    return doc


def balance_json(account: AccountView) -> list[dict[str, Any]]:
    asset = _asset(account)
    return [
        {
            "accountAlias": "SgsR",
            "asset": "USDT",
            "balance": asset["walletBalance"],
            "crossWalletBalance": asset["crossWalletBalance"],
            "crossUnPnl": asset["crossUnPnl"],
            "availableBalance": asset["availableBalance"],
            "maxWithdrawAmount": asset["maxWithdrawAmount"],
            "marginAvailable": True,
            "updateTime": asset["updateTime"],
        }
    ]


def leverage_brackets(specs: list[SymbolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "symbol": s.symbol,
            "brackets": [
                {
                    "bracket": 1,
                    "initialLeverage": s.leverage,
                    "notionalCap": 1_000_000_000,
                    "notionalFloor": 0,
                    "maintMarginRatio": f"{s.maint_margin_ratio:f}",
                    "cum": "0",
                }
            ],
        }
        for s in specs
    ]
